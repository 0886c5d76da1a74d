//! Bad input to `vqvae`: a clear error that names the file or value, exit status 1, no
//! panic, no damaged files.

mod common;

use std::path::Path;

use common::{temp_dir, vqvae, vqvae_fails};

/// Runs `vqvae` expecting failure; returns what it printed.
const TINY: &[&str] = &[
    "--hidden",
    "4",
    "--res-hidden",
    "2",
    "--res-layers",
    "1",
    "--code-dim",
    "2",
    "--quiet",
];

/// `train` of a tiny model into `out` with `extra` flags; batch size 2 and 8 codes
/// unless `extra` says otherwise.
fn train_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend_from_slice(TINY);
    for (flag, value) in [("--batch-size", "2"), ("--codes", "8")] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    args
}

fn png(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]))
        .save(path)
        .unwrap();
}

#[test]
fn corrupt_image_is_named() {
    let dir = temp_dir("corrupt");
    png(&dir.join("a.png"), 8, 8);
    std::fs::write(dir.join("b.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--data", dir.to_str().unwrap()],
    ));
    assert!(text.contains("b.png") && text.contains("decode"), "{text}");
}

#[test]
fn empty_folder_says_so() {
    let dir = temp_dir("empty");
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--data", dir.to_str().unwrap()],
    ));
    assert!(text.contains("no images found"), "{text}");
}

#[test]
fn idx_with_wrong_magic_or_truncated_body() {
    let dir = temp_dir("idx");
    let bad = dir.join("bad-images-idx3-ubyte");
    std::fs::write(&bad, [0u8, 0, 8, 1, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 4]).unwrap();
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--data", bad.to_str().unwrap()],
    ));
    assert!(
        text.contains("magic")
            && text.contains("0x00000801")
            && text.contains("bad-images-idx3-ubyte"),
        "{text}"
    );

    let short = dir.join("short-images-idx3-ubyte");
    let mut bytes = vec![0u8, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 4, 0, 0, 0, 4];
    bytes.extend([7u8; 100]);
    std::fs::write(&short, bytes).unwrap();
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--data", short.to_str().unwrap()],
    ));
    assert!(
        text.contains("truncated") && text.contains("160") && text.contains("100"),
        "{text}"
    );
}

#[test]
fn sizes_that_cannot_be_used() {
    let dir = temp_dir("sizes");
    let odd = dir.join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    png(&odd.join("x.png"), 10, 10);
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--data", odd.to_str().unwrap()],
    ));
    assert!(
        text.contains("x.png") && text.contains("multiple of 4"),
        "{text}"
    );
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--data", odd.to_str().unwrap(), "--image-size", "6"],
    ));
    assert!(text.contains("--image-size 6"), "{text}");

    let mixed = dir.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    png(&mixed.join("a.png"), 8, 8);
    png(&mixed.join("b.png"), 12, 8);
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--data", mixed.to_str().unwrap()],
    ));
    assert!(
        text.contains("b.png") && text.contains("--image-size"),
        "{text}"
    );

    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--steps", "1", "--batch-size", "0"],
    ));
    assert!(text.contains("--batch-size 0"), "{text}");
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--steps", "1", "--batch-size", "100000000"],
    ));
    assert!(
        text.contains("--batch-size 100000000") && text.contains("too large"),
        "{text}"
    );
    // Large images: the batch past one binding's limit, and the largest that fits it.
    let large = dir.join("large");
    std::fs::create_dir_all(&large).unwrap();
    png(&large.join("a.png"), 40, 24);
    png(&large.join("b.png"), 24, 40);
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &[
            "--data",
            large.to_str().unwrap(),
            "--image-size",
            "256",
            "--batch-size",
            "4096",
        ],
    ));
    let fits: u64 = text
        .split("at most --batch-size ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no batch that fits named: {text}"));
    assert!(
        text.contains("--batch-size 4096 is too large") && (1..4096).contains(&fits),
        "{text}"
    );
}

#[test]
fn broken_checkpoints_name_the_tensor() {
    let dir = temp_dir("ckpt");
    let run = dir.join("run");
    let (code, text) = vqvae(&train_args(&run, &["--steps", "0"]));
    assert_eq!(code, Some(0), "{text}");
    let good =
        vqvae_wgpu::checkpoint::TensorFile::read(&run.join("checkpoint.safetensors")).unwrap();

    let mut missing = good.clone();
    missing.tensors.remove("decoder.conv1.bias");
    let path = dir.join("missing.safetensors");
    missing.write(&path).unwrap();
    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &["--init", path.to_str().unwrap()],
    ));
    assert!(
        text.contains("missing tensor 'decoder.conv1.bias'")
            && text.contains("missing.safetensors"),
        "{text}"
    );

    let mut bent = good.clone();
    bent.tensors
        .insert("pre_vq.weight".into(), (vec![3, 4, 1, 1], vec![0.0; 12]));
    let path = dir.join("bent.safetensors");
    bent.write(&path).unwrap();
    let text = vqvae_fails(&[
        "reconstruct",
        "--checkpoint",
        path.to_str().unwrap(),
        "--out",
        dir.join("r").to_str().unwrap(),
    ]);
    assert!(
        text.contains("pre_vq.weight")
            && text.contains("[3, 4, 1, 1]")
            && text.contains("[2, 4, 1, 1]"),
        "{text}"
    );

    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"definitely not").unwrap();
    let text = vqvae_fails(&[
        "encode",
        "--checkpoint",
        junk.to_str().unwrap(),
        "--out",
        dir.join("c.npy").to_str().unwrap(),
    ]);
    assert!(text.contains("junk.safetensors"), "{text}");

    let text = vqvae_fails(&train_args(
        &dir.join("out"),
        &[
            "--init",
            run.join("checkpoint.safetensors").to_str().unwrap(),
            "--codes",
            "9",
        ],
    ));
    assert!(text.contains("--codes 9") && text.contains("8"), "{text}");
}

#[test]
fn a_nan_loss_stops_and_saves_the_last_good_step() {
    // Adam at 1e30 sends the loss to infinity within a few steps; metrics come back 10
    // steps at a time, long after. The guard stops every update (Adam, the EMA codebook,
    // restarts) from the first bad step, so the run saves the last good one: bit for bit
    // a straight run to that step.
    let dir = temp_dir("nan");
    let (out, straight) = (dir.join("run"), dir.join("straight"));
    let diverging = [
        "--lr",
        "1e30",
        "--log-every",
        "10",
        "--codebook-restart",
        "1",
    ];
    let text = vqvae_fails(&train_args(
        &out,
        &[&["--steps", "50"][..], &diverging].concat(),
    ));
    let bad: u64 = text
        .split("at step ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step named: {text}"));
    assert!(
        text.contains("the loss became")
            && text.contains(&format!(
                "the checkpoint of step {}, the last good one",
                bad - 1
            )),
        "{text}"
    );
    let read = |dir: &Path| {
        vqvae_wgpu::checkpoint::TensorFile::read(&dir.join("checkpoint.safetensors")).unwrap()
    };
    let kept = read(&out);
    assert_eq!(kept.metadata["step"], (bad - 1).to_string());
    let good = (bad - 1).to_string();
    let (code, text) = vqvae(&train_args(
        &straight,
        &[&["--steps", good.as_str()][..], &diverging].concat(),
    ));
    assert_eq!(code, Some(0), "{text}");
    let bits = |f: &vqvae_wgpu::checkpoint::TensorFile| {
        let mut t: Vec<_> = f
            .tensors
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()))
            .collect();
        t.sort();
        t
    };
    assert!(
        bits(&kept) == bits(&read(&straight)),
        "the saved step {good} differs from a straight run to it"
    );
}

fn write_npy_i32(path: &Path, shape: &[u64], values: &[i32]) {
    use npyz::WriterBuilder;
    let file = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::<i32>::new()
        .default_dtype()
        .shape(shape)
        .writer(file)
        .begin_nd()
        .unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn decode_checks_the_codes() {
    let dir = temp_dir("codes");
    let run = dir.join("run");
    let (code, text) = vqvae(&train_args(&run, &["--steps", "0"]));
    assert_eq!(code, Some(0), "{text}");
    let ckpt = run.join("checkpoint.safetensors");
    let decode = |codes: &Path| {
        vqvae_fails(&[
            "decode",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--codes",
            codes.to_str().unwrap(),
            "--out",
            dir.join("d").to_str().unwrap(),
        ])
    };

    let far = dir.join("far.npy");
    write_npy_i32(&far, &[1, 2, 2], &[0, 7, 99, 1]);
    let text = decode(&far);
    assert!(
        text.contains("code 99 at flat index 2")
            && text.contains("0..8")
            && text.contains("far.npy"),
        "{text}"
    );

    let flat = dir.join("flat.npy");
    write_npy_i32(&flat, &[4], &[0, 1, 2, 3]);
    let text = decode(&flat);
    assert!(text.contains("[4]") && text.contains("[N, h, w]"), "{text}");

    // int32 codes in range decode fine.
    let good = dir.join("good.npy");
    write_npy_i32(&good, &[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
    let (code, text) = vqvae(&[
        "decode",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--codes",
        good.to_str().unwrap(),
        "--out",
        dir.join("ok").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(dir.join("ok").join("00001.png").exists());
}

#[test]
fn resume_keeps_its_settings_and_sgd_never_restarts() {
    let dir = temp_dir("resume");
    let run = dir.join("run");
    let (code, text) = vqvae(&train_args(&run, &["--steps", "1"]));
    assert_eq!(code, Some(0), "{text}");
    let text = vqvae_fails(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "2",
        "--batch-size",
        "3",
    ]);
    assert!(
        text.contains("--batch-size") && text.contains("(2)") && text.contains("saved settings"),
        "{text}"
    );
    let text = vqvae_fails(&train_args(
        &dir.join("sgd"),
        &["--optimizer", "sgd", "--codebook-restart", "5"],
    ));
    assert!(
        text.contains("--codebook-restart") && text.contains("sgd"),
        "{text}"
    );
}

#[test]
fn codebook_settings_that_cannot_be_used() {
    let dir = temp_dir("ema-bad");
    let out = dir.join("run");
    for (flags, says) in [
        (
            &["--codebook-update", "ema", "--ema-decay", "1"][..],
            "--ema-decay 1",
        ),
        (
            &["--codebook-update", "ema", "--ema-decay=-0.1"][..],
            "[0, 1)",
        ),
        (
            &["--codebook-update", "ema", "--ema-eps", "0"][..],
            "--ema-eps 0",
        ),
        (
            &["--codebook-update", "ema", "--optimizer", "sgd"][..],
            "--optimizer sgd",
        ),
        (
            &["--codebook-init", "kmeans", "--kmeans-iters", "0"][..],
            "--kmeans-iters 0",
        ),
        (&["--kmeans-batches", "0"][..], "--kmeans-batches 0"),
    ] {
        let text = vqvae_fails(&train_args(&out, flags));
        assert!(text.contains(says), "{flags:?}: {text}");
    }
    // A gradient run resumes as one.
    let gradient = ["--steps", "1", "--codebook-update", "gradient"];
    let (code, text) = vqvae(&train_args(&out, &gradient));
    assert_eq!(code, Some(0), "{text}");
    let run = out.to_str().unwrap();
    let text = vqvae_fails(&[
        "train",
        "--resume",
        run,
        "--out",
        run,
        "--steps",
        "2",
        "--codebook-update",
        "ema",
    ]);
    assert!(
        text.contains("--codebook-update") && text.contains("(gradient)"),
        "{text}"
    );
}

#[test]
fn an_ema_state_without_its_statistics_is_named() {
    let dir = temp_dir("ema-stateless");
    let run = dir.join("run");
    let (code, text) = vqvae(&train_args(
        &run,
        &["--steps", "1", "--codebook-update", "ema"],
    ));
    assert_eq!(code, Some(0), "{text}");
    let path = run.join("training_state.safetensors");
    let mut state = vqvae_wgpu::checkpoint::TensorFile::read(&path).unwrap();
    state.tensors.remove("ema.cluster_size");
    state.write(&path).unwrap();
    let r = run.to_str().unwrap();
    let text = vqvae_fails(&["train", "--resume", r, "--out", r, "--steps", "2"]);
    assert!(text.contains("ema.cluster_size"), "{text}");
}

#[test]
fn train_takes_the_adapter_it_is_given_or_names_the_one_missing() {
    let dir = temp_dir("train-adapter");
    let out = dir.join("out");
    let m = vqvae_fails(&train_args(&out, &["--adapter", "no such adapter"]));
    assert!(
        m.contains("no GPU adapter found named like 'no such adapter'"),
        "{m}"
    );
    let m = vqvae_fails(&train_args(&out, &["--backend", "teletype"]));
    assert!(m.contains("--backend") && m.contains("teletype"), "{m}");
    // The adapter the tests use, asked for by name, trains.
    let name = common::default_adapter().get_info().name;
    let (code, text) = vqvae(&train_args(&out, &["--adapter", &name, "--steps", "2"]));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("adapter: {name}")), "{text}");
}
