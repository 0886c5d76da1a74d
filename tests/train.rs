//! Training end to end through the `vqvae` binary and the library: loss falls, the
//! checkpoint holds exactly DESIGN.md's tensors, resuming is exact, one SGD step matches
//! the CPU reference's gradient, and decode(encode) is reconstruct.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use vqvae_wgpu::checkpoint::TensorFile;
use vqvae_wgpu::data::{Dataset, LoadOptions};
use vqvae_wgpu::model::Config;
use vqvae_wgpu::network::Vqvae;
use vqvae_wgpu::params::Params;
use vqvae_wgpu::reference::model::loss_and_grads;
use vqvae_wgpu::train::upload_batch;
use vqvae_wgpu::{images, reference};

fn run_ok(args: &[&str]) -> String {
    let (code, text) = vqvae(args);
    assert_eq!(code, Some(0), "vqvae {args:?} failed:\n{text}");
    text
}

fn train(out: &Path, extra: &[&str]) -> String {
    train_model(out, &TINY_MODEL, extra)
}

fn train_model(out: &Path, model: &[&str], extra: &[&str]) -> String {
    let mut args = vec!["train", "--out", out.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(model);
    args.extend_from_slice(extra);
    run_ok(&args)
}

fn checkpoint(dir: &Path) -> TensorFile {
    TensorFile::read(&dir.join("checkpoint.safetensors")).unwrap()
}

fn bits(file: &TensorFile) -> HashMap<String, (Vec<usize>, Vec<u32>)> {
    file.tensors
        .iter()
        .map(|(k, (s, v))| {
            (
                k.clone(),
                (s.clone(), v.iter().map(|x| x.to_bits()).collect()),
            )
        })
        .collect()
}

/// A folder of small PNGs, some grey and some colour, in nested folders.
pub fn image_folder(name: &str, count: usize, side: u32) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut rng = Rng::new(5);
    for i in 0..count {
        let img = image::RgbImage::from_fn(side, side, |x, y| {
            let v = ((x * 8 + y * 3) as u8).wrapping_add((rng.next_u64() % 32) as u8);
            image::Rgb([v, 255 - v, (i * 40) as u8])
        });
        let path = if i % 2 == 0 {
            dir.join(format!("img{i}.png"))
        } else {
            dir.join("sub").join(format!("pic{i}.png"))
        };
        img.save(path).unwrap();
    }
    dir
}

#[test]
fn checkpoint_holds_exactly_the_design_tensors() {
    let dir = temp_dir("names");
    run_ok(&[
        "train",
        "--out",
        dir.to_str().unwrap(),
        "--quiet",
        "--steps",
        "0",
        "--channels",
        "1",
        "--hidden",
        "6",
        "--res-hidden",
        "5",
        "--res-layers",
        "3",
        "--codes",
        "7",
        "--code-dim",
        "2",
        "--batch-size",
        "2",
    ]);
    // DESIGN.md section 1, written out for C=1, H=6, R=5, L=3, K=7, D=2.
    let mut want: HashMap<String, Vec<usize>> = HashMap::new();
    let mut conv = |name: &str, shape: Vec<usize>| {
        want.insert(
            format!("{name}.bias"),
            vec![if name.contains("deconv") {
                shape[1]
            } else {
                shape[0]
            }],
        );
        want.insert(format!("{name}.weight"), shape);
    };
    conv("encoder.conv1", vec![3, 1, 4, 4]);
    conv("encoder.conv2", vec![6, 3, 4, 4]);
    conv("encoder.conv3", vec![6, 6, 3, 3]);
    for i in 0..3 {
        conv(&format!("encoder.res.{i}.conv1"), vec![5, 6, 3, 3]);
        conv(&format!("encoder.res.{i}.conv2"), vec![6, 5, 1, 1]);
        conv(&format!("decoder.res.{i}.conv1"), vec![5, 6, 3, 3]);
        conv(&format!("decoder.res.{i}.conv2"), vec![6, 5, 1, 1]);
    }
    conv("pre_vq", vec![2, 6, 1, 1]);
    conv("decoder.conv1", vec![6, 2, 3, 3]);
    conv("decoder.deconv1", vec![6, 3, 4, 4]);
    conv("decoder.deconv2", vec![3, 1, 4, 4]);
    want.insert("codebook.weight".into(), vec![7, 2]);
    assert_eq!(checkpoint(&dir).shapes(), want);
}

#[test]
fn loss_falls_in_a_short_run() {
    let dir = temp_dir("falls");
    train(&dir, &["--steps", "40", "--lr", "3e-3", "--log-every", "5"]);
    let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let recon: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["recon"].as_f64())
        .collect();
    assert_eq!(recon.len(), 40, "one metrics line per step:\n{log}");
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&recon[..5]), mean(&recon[35..]));
    assert!(
        last < 0.7 * first,
        "reconstruction loss went from {first} to {last}"
    );
    assert!(image::open(dir.join("reconstructions.png")).is_ok());
    // Held-out usage: in the log, and in the picture, one red column per dead code.
    let val: serde_json::Value = log
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("val_recon_mse").is_some())
        .expect("a validation line");
    let used = val["val_codes_used"].as_u64().unwrap() as usize;
    let perplexity = val["val_perplexity"].as_f64().unwrap();
    assert!((1..=16).contains(&used) && perplexity >= 1.0 && perplexity <= used as f64 + 1e-9);
    let usage = image::open(dir.join("code_usage.png")).unwrap().to_rgb8();
    let bar = usage.width() as usize / 16;
    let bottom = usage.height() - 1;
    let red = (0..usage.width())
        .filter(|&x| usage.get_pixel(x, bottom).0 == [200, 30, 30])
        .count();
    assert_eq!(red, (16 - used) * bar, "dead codes in the picture");
    // Training (blue) and held-out (orange) curves.
    assert_curves(&dir.join("metrics.png"), &[[40, 70, 160], [210, 90, 20]]);
}

/// `benchmarks/gpu.sh` holds a GPU's training run to the losses of the same run on
/// lavapipe, kept in `benchmarks/train-check-lavapipe.jsonl`: this build's first steps of
/// the script's own command must still give them (to the script's 1e-3), or the file is
/// stale (as it once was, after the codebook's defaults changed).
#[test]
fn the_gpu_check_s_lavapipe_losses_are_this_build_s() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("benchmarks");
    let script = std::fs::read_to_string(root.join("gpu.sh")).unwrap();
    let command = script.replace("\\\n", " ");
    let line = command
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"$bin\" train "))
        .expect("gpu.sh runs `\"$bin\" train`");
    // Its flags up to its output folder, `--no-tune` aside (`vqvae` adds it), and fewer
    // steps: the first steps do not depend on how many follow.
    let mut flags: Vec<&str> = line
        .split(" --out")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    flags.retain(|&f| f != "--no-tune");
    let steps = 5;
    let at = flags.iter().position(|&f| f == "--steps").expect("--steps") + 1;
    let steps_value = steps.to_string();
    flags[at] = &steps_value;
    let dir = temp_dir("gpu-check");
    let mut args = vec!["train", "--out", dir.to_str().unwrap(), "--quiet"];
    args.extend(flags);
    run_ok(&args);
    let losses = |path: &Path| -> Vec<f64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
            .collect()
    };
    let got = losses(&dir.join("metrics.jsonl"));
    let want = losses(&root.join("train-check-lavapipe.jsonl"));
    assert_eq!(got.len(), steps);
    for (step, (g, w)) in got.iter().zip(&want).enumerate() {
        let relative = (g - w).abs() / w.abs();
        assert!(
            relative <= 1e-3,
            "step {}: loss {g}, the committed lavapipe run's {w} (relative difference {relative:.1e})",
            step + 1
        );
    }
}

#[test]
fn same_seed_same_bits_and_resume_is_exact() {
    resume_is_exact("gradient");
}

#[test]
fn same_seed_same_bits_and_resume_is_exact_with_an_ema_codebook() {
    resume_is_exact("ema");
}

fn resume_is_exact(update: &str) {
    let (a, b, c) = (
        temp_dir(&format!("straight-{update}")),
        temp_dir(&format!("again-{update}")),
        temp_dir(&format!("stopped-{update}")),
    );
    // Codebook restarts at steps 2, 4 and 6: the usage window crosses the stop at 3.
    let schedule = [
        "--log-every",
        "2",
        "--checkpoint-every",
        "100",
        "--val-every",
        "3",
        "--codebook-restart",
        "2",
        "--codebook-update",
        update,
    ];
    train(&a, &[&["--steps", "6"][..], &schedule].concat());
    train(&b, &[&["--steps", "6"][..], &schedule].concat());
    assert!(
        bits(&checkpoint(&a)) == bits(&checkpoint(&b)),
        "two runs with one seed differ"
    );
    train(&c, &[&["--steps", "3"][..], &schedule].concat());
    run_ok(&[
        "train",
        "--resume",
        c.to_str().unwrap(),
        "--out",
        c.to_str().unwrap(),
        "--steps",
        "6",
        "--quiet",
    ]);
    assert!(
        bits(&checkpoint(&a)) == bits(&checkpoint(&c)),
        "a resumed run differs from an uninterrupted one"
    );
    // The resumed log has each step once.
    let log = std::fs::read_to_string(c.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("\"loss\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
}

#[test]
fn an_ema_run_keeps_its_statistics_in_the_state_and_a_plain_checkpoint() {
    let (ema, plain) = (temp_dir("ema-run"), temp_dir("ema-plain"));
    train(&ema, &["--steps", "3", "--codebook-update", "ema"]);
    train(&plain, &["--steps", "1"]);
    let names = |f: &TensorFile| {
        let mut n: Vec<String> = f.tensors.keys().cloned().collect();
        n.sort();
        n
    };
    assert_eq!(names(&checkpoint(&ema)), names(&checkpoint(&plain)));
    let state = TensorFile::read(&ema.join("training_state.safetensors")).unwrap();
    let (cluster, sums) = (
        &state.tensors["ema.cluster_size"],
        &state.tensors["ema.embed_sum"],
    );
    assert_eq!((cluster.0.clone(), sums.0.clone()), (vec![16], vec![16, 4]));
    // Every step's assignments were counted with decay 0.99 from counts of 1.
    let total: f32 = cluster.1.iter().sum();
    assert!(total > 16.0, "cluster sizes {:?}", cluster.1);
    // The codebook gets no gradient: its Adam moments never left zero.
    let m = &state.tensors["exp_avg.codebook.weight"].1;
    assert!(m.iter().all(|&v| v == 0.0), "the codebook had a gradient");

    // A model file holds no statistics: --init starts them from its codebook, counts 1.
    let init = temp_dir("ema-init");
    let ckpt = ema.join("checkpoint.safetensors");
    train(
        &init,
        &[
            "--init",
            ckpt.to_str().unwrap(),
            "--steps",
            "0",
            "--codebook-update",
            "ema",
        ],
    );
    let state = TensorFile::read(&init.join("training_state.safetensors")).unwrap();
    assert_eq!(state.tensors["ema.cluster_size"].1, vec![1.0; 16]);
    assert_eq!(
        state.tensors["ema.embed_sum"].1,
        checkpoint(&ema).tensors["codebook.weight"].1
    );
    // And the checkpoint of an EMA run serves reconstruct and encode like any other.
    let codes = init.join("codes.npy");
    run_ok(&[
        "encode",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        codes.to_str().unwrap(),
    ]);
    run_ok(&[
        "reconstruct",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        init.join("recon").to_str().unwrap(),
    ]);
}

#[test]
fn a_kmeans_codebook_repeats_for_a_seed() {
    let (a, b, data) = (
        temp_dir("kmeans-a"),
        temp_dir("kmeans-b"),
        temp_dir("kmeans-data"),
    );
    let kmeans = [
        "--steps",
        "0",
        "--codebook-init",
        "kmeans",
        "--kmeans-iters",
        "3",
    ];
    train(&a, &kmeans);
    train(&b, &kmeans);
    let codebook = |dir: &Path| checkpoint(dir).tensors["codebook.weight"].1.clone();
    assert!(
        codebook(&a) == codebook(&b),
        "one seed, two k-means codebooks"
    );
    train(&data, &["--steps", "0"]);
    assert!(codebook(&a) != codebook(&data), "k-means changed nothing");
    let settings = TensorFile::read(&a.join("training_state.safetensors")).unwrap();
    assert!(settings.metadata["settings"].contains("\"kmeans_iters\":3"));
}

#[test]
fn init_round_trips_a_checkpoint_exactly() {
    let (a, b) = (temp_dir("init-src"), temp_dir("init-dst"));
    train(&a, &["--steps", "2"]);
    let ckpt = a.join("checkpoint.safetensors");
    run_ok(&[
        "train",
        "--init",
        ckpt.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
        "--steps",
        "0",
        "--quiet",
    ]);
    assert!(bits(&checkpoint(&a)) == bits(&checkpoint(&b)));
}

#[test]
fn one_sgd_step_moves_each_parameter_by_minus_lr_times_the_reference_gradient() {
    sgd_step_matches_reference("sgd", &TINY_MODEL, 8);
}

/// The same with 64 channels on 32x32 images: wide enough that the register tuning runs
/// convolutions of every mode (forward, input and weight gradient) as packed GEMMs.
#[test]
fn one_sgd_step_of_a_wide_model_matches_the_reference_gradient() {
    let wide = [
        "--hidden",
        "64",
        "--res-hidden",
        "64",
        "--res-layers",
        "1",
        "--codes",
        "16",
        "--code-dim",
        "4",
        "--batch-size",
        "4",
    ];
    sgd_step_matches_reference("sgd-wide", &wide, 32);
}

/// Trains `model` for one SGD step on 4 grey `side` x `side` images and checks that
/// every parameter moved by -lr times the f64 reference gradient.
fn sgd_step_matches_reference(name: &str, model: &[&str], side: u32) {
    let (a, b) = (
        temp_dir(&format!("{name}-0")),
        temp_dir(&format!("{name}-1")),
    );
    let common = [
        "--optimizer",
        "sgd",
        "--no-shuffle",
        "--val-images",
        "0",
        "--codebook-init",
        "uniform",
        "--channels",
        "1",
    ];
    let folder = image_folder(&format!("{name}-data"), 4, side);
    let data_args = ["--data", folder.to_str().unwrap()];
    train_model(
        &a,
        model,
        &[&["--steps", "0"][..], &common, &data_args].concat(),
    );
    let p0 = checkpoint(&a);
    let lr = 0.5;
    run_ok(
        &[
            &[
                "train",
                "--init",
                a.join("checkpoint.safetensors").to_str().unwrap(),
                "--out",
                b.to_str().unwrap(),
                "--steps",
                "1",
                "--quiet",
                "--lr",
                "0.5",
                "--batch-size",
                "4",
            ][..],
            &common,
            &data_args,
        ]
        .concat(),
    );
    let p1 = checkpoint(&b);

    // The reference gradient at p0 on the first batch (images 0..4 in path order), with
    // the GPU's code choice so that near-ties cannot diverge.
    let data = Dataset::load(
        Some(&folder),
        &LoadOptions {
            channels: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let config =
        Config::from_shapes(&p0.shapes(), Default::default(), 0.25, Path::new("p0")).unwrap();
    let gpu = gpu();
    let params = Params::new(gpu, config.params()).unwrap();
    params
        .upload(gpu, &params.join(&p0.values(), "p0").unwrap())
        .unwrap();
    let side = side as usize;
    let net = Vqvae::new(gpu, &params, &config, 4, [side, side], None).unwrap();
    upload_batch(gpu, &net.x, &data, &[0, 1, 2, 3]).unwrap();
    gpu.run(&[net.encode()]).unwrap();
    let codes = net.indices.to_u32(gpu).unwrap();
    let x: Vec<f64> = (0..4)
        .flat_map(|i| {
            images::to_input(&data.image(i).unwrap())
                .map(f64::from)
                .collect::<Vec<_>>()
        })
        .collect();
    let named: HashMap<String, Vec<f64>> = p0
        .values()
        .into_iter()
        .map(|(k, v)| (k, reference::widen(&v)))
        .collect();
    let (_, grads) = loss_and_grads(&config, &named, &x, 4, [side, side], Some(&codes));
    for (name, (_, before)) in &p0.tensors {
        let after = &p1.tensors[name].1;
        let moved: Vec<f32> = before
            .iter()
            .zip(after)
            .map(|(b, a)| (a - b) / -lr)
            .collect();
        let scale = grads[name].iter().fold(0.0f64, |m, g| m.max(g.abs()));
        assert_close(
            &format!("(p1 - p0) / -lr for {name}"),
            &moved,
            &grads[name],
            2e-3,
            1e-4 * scale + 1e-6,
        );
    }
}

#[test]
fn decode_of_encode_equals_reconstruct() {
    let folder = image_folder("codes-data", 5, 12);
    let run = temp_dir("codes-run");
    train(&run, &["--data", folder.to_str().unwrap(), "--steps", "3"]);
    let ckpt = run.join("checkpoint.safetensors");
    let (rec, dec) = (run.join("rec"), run.join("dec"));
    let codes = run.join("codes.npy");
    let data = folder.to_str().unwrap();
    for args in [
        vec![
            "reconstruct",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--data",
            data,
            "--out",
            rec.to_str().unwrap(),
            "--batch-size",
            "2",
        ],
        vec![
            "encode",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--data",
            data,
            "--out",
            codes.to_str().unwrap(),
            "--batch-size",
            "3",
        ],
        vec![
            "decode",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--codes",
            codes.to_str().unwrap(),
            "--out",
            dec.to_str().unwrap(),
        ],
    ] {
        run_ok(&args);
    }
    let npy_bytes = std::fs::read(&codes).unwrap();
    let npy = npyz::NpyFile::new(&npy_bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[5, 3, 3]);
    // Path order: img0, img2, img4, sub/pic1, sub/pic3.
    for (i, stem) in ["img0", "img2", "img4", "pic1", "pic3"].iter().enumerate() {
        let r = image::open(rec.join(format!("{stem}.png")))
            .unwrap()
            .to_rgb8();
        let d = image::open(dec.join(format!("{i:05}.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(r.dimensions(), (12, 12));
        assert!(
            r == d,
            "image {i} ({stem}): decode(encode) differs from reconstruct"
        );
    }
}
