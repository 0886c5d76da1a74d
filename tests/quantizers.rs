//! `vqvae train --quantizer rvq|fsq` end to end on the built-in images: one residual
//! stage trains the bits of plain VQ, residual VQ's `[N, h, w, S]` codes decode to the
//! reconstructions and resume exactly, FSQ trains without a codebook, the prior models
//! either's codes, and the flags that do not fit are errors.

mod common;

use std::path::Path;

use common::{TINY_MODEL, model_bits, temp_dir, tiny_train, vqvae_fails, vqvae_ok};
use vqvae_wgpu::checkpoint::TensorFile;

/// The codes `encode` writes for the built-in images with `dir`'s checkpoint, with
/// their shape.
fn encode(dir: &Path) -> (Vec<u64>, Vec<i64>) {
    let (ckpt, npy) = (dir.join("checkpoint.safetensors"), dir.join("codes.npy"));
    vqvae_ok(&[
        "encode",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        npy.to_str().unwrap(),
    ]);
    let file: npyz::NpyFile<_> = npyz::NpyFile::new(std::fs::File::open(&npy).unwrap()).unwrap();
    (file.shape().to_vec(), file.into_vec().unwrap())
}

/// Decodes `dir`'s codes.npy and reconstructs the built-in images; both must give the
/// same pictures, the decoder seeing the same quantised vectors.
fn decode_matches_reconstruct(dir: &Path) {
    let ckpt = dir.join("checkpoint.safetensors");
    let (decoded, rebuilt) = (dir.join("decoded"), dir.join("rebuilt"));
    vqvae_ok(&[
        "decode",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--codes",
        dir.join("codes.npy").to_str().unwrap(),
        "--out",
        decoded.to_str().unwrap(),
    ]);
    vqvae_ok(&[
        "reconstruct",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        rebuilt.to_str().unwrap(),
    ]);
    let mut names: Vec<_> = std::fs::read_dir(&rebuilt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for (i, name) in names.iter().enumerate().take(20) {
        let a = image::open(rebuilt.join(name)).unwrap().to_rgb8();
        let b = image::open(decoded.join(format!("{i:05}.png")))
            .unwrap()
            .to_rgb8();
        assert!(a == b, "image {i}: decode and reconstruct differ");
    }
}

/// Trains the tiny model with 3 residual stages of 4 codes for `steps` into `out`.
fn rvq_train(out: &Path, steps: &str, extra: &[&str]) -> String {
    let mut args = vec!["train", "--out", out.to_str().unwrap(), "--hidden", "8"];
    args.extend(["--res-hidden", "4", "--res-layers", "1", "--codes", "4"]);
    args.extend(["--code-dim", "4", "--batch-size", "4", "--quantizer", "rvq"]);
    args.extend(["--stages", "3", "--quiet", "--steps", steps]);
    args.extend_from_slice(extra);
    vqvae_ok(&args)
}

#[test]
fn one_residual_stage_trains_the_bits_of_plain_vq() {
    let dir = temp_dir("rvq-one-stage");
    // The defaults (EMA codebook, restarts at step 25), then a gradient codebook drawn
    // from the data.
    for (i, flags) in [
        &[][..],
        &["--codebook-update", "gradient", "--codebook-init", "data"],
    ]
    .iter()
    .enumerate()
    {
        let (vq, rvq) = (dir.join(format!("vq{i}")), dir.join(format!("rvq{i}")));
        let mut common = vec!["--steps", "30", "--quiet"];
        common.extend_from_slice(flags);
        vqvae_ok(&tiny_train(&vq, &common));
        let mut one = common.clone();
        one.extend(["--quantizer", "rvq", "--stages", "1"]);
        vqvae_ok(&tiny_train(&rvq, &one));
        let renamed: Vec<_> = model_bits(&rvq)
            .into_iter()
            .map(|(k, v)| (k.replace("codebook.0.", "codebook."), v))
            .collect();
        assert!(
            model_bits(&vq) == renamed,
            "flags {flags:?}: the weights differ"
        );
    }
}

#[test]
fn residual_vq_trains_encodes_decodes_resumes_and_feeds_the_prior() {
    let dir = temp_dir("rvq-cli");
    let (straight, stopped) = (dir.join("straight"), dir.join("stopped"));
    // Four codes a stage: 64 joint codes.
    let text = rvq_train(&straight, "30", &[]);
    assert!(text.contains("/64 in use"), "{text}");
    let model = TensorFile::read(&straight.join("checkpoint.safetensors")).unwrap();
    assert_eq!(model.metadata["quantizer"], "rvq");
    assert_eq!(model.metadata["stages"], "3");
    for s in 0..3 {
        assert_eq!(model.tensors[&format!("codebook.{s}.weight")].0, vec![4, 4]);
    }
    assert!(!model.tensors.contains_key("codebook.weight"));
    let state = TensorFile::read(&straight.join("training_state.safetensors")).unwrap();
    for s in 0..3 {
        assert!(
            state.tensors.contains_key(&format!("ema.{s}.cluster_size")),
            "stage {s}"
        );
    }

    // Stopping at 15 and resuming gives the straight run's bits.
    rvq_train(&stopped, "15", &[]);
    let stopped_s = stopped.to_str().unwrap();
    vqvae_ok(&[
        "train", "--resume", stopped_s, "--steps", "30", "--out", stopped_s, "--quiet",
    ]);
    assert!(
        model_bits(&stopped) == model_bits(&straight),
        "resumed weights differ"
    );

    let (shape, codes) = encode(&straight);
    assert_eq!(shape, [*shape.first().unwrap(), 8, 8, 3]);
    assert!(codes.iter().all(|c| (0..4).contains(c)));
    // Later stages refine: some position uses more than one code in stage 2.
    assert!(
        codes
            .chunks(3)
            .map(|c| c[2])
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1
    );
    decode_matches_reconstruct(&straight);

    // The prior models each position's 3 codes as one of 64 and samples them back.
    let ckpt = straight.join("checkpoint.safetensors");
    let prior = dir.join("prior");
    let text = vqvae_ok(&[
        "train-prior",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        prior.to_str().unwrap(),
        "--steps",
        "10",
        "--prior-channels",
        "8",
        "--prior-blocks",
        "1",
        "--embed-dim",
        "4",
        "--batch-size",
        "16",
        "--quiet",
    ]);
    assert!(text.contains("uniform prior 6.000"), "{text}");
    let (png, npy) = (dir.join("samples.png"), dir.join("samples.npy"));
    vqvae_ok(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--prior",
        prior.join("prior.safetensors").to_str().unwrap(),
        "--count",
        "3",
        "--out",
        png.to_str().unwrap(),
        "--codes-out",
        npy.to_str().unwrap(),
    ]);
    let file: npyz::NpyFile<_> = npyz::NpyFile::new(std::fs::File::open(&npy).unwrap()).unwrap();
    assert_eq!(file.shape(), &[3, 8, 8, 3]);
    let sampled: Vec<i64> = file.into_vec().unwrap();
    assert!(sampled.iter().all(|c| (0..4).contains(c)));
}

#[test]
fn fsq_trains_without_a_codebook_and_its_codes_decode() {
    let dir = temp_dir("fsq-cli");
    let out = dir.join("fsq");
    let o = out.to_str().unwrap();
    let text = vqvae_ok(&[
        "train",
        "--out",
        o,
        "--hidden",
        "8",
        "--res-hidden",
        "4",
        "--res-layers",
        "1",
        "--batch-size",
        "4",
        "--steps",
        "20",
        "--quantizer",
        "fsq",
        "--fsq-levels",
        "4,4,3",
        "--quiet",
    ]);
    assert!(text.contains("/48 in use"), "{text}");
    let model = TensorFile::read(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(model.metadata["quantizer"], "fsq");
    assert_eq!(model.metadata["fsq_levels"], "4,4,3");
    assert!(model.tensors.keys().all(|k| !k.starts_with("codebook")));
    assert_eq!(model.tensors["pre_vq.weight"].0[0], 3);
    let (shape, codes) = encode(&out);
    assert_eq!(&shape[1..], [8, 8]);
    assert!(codes.iter().all(|c| (0..48).contains(c)));
    decode_matches_reconstruct(&out);
    // Resuming an FSQ run needs no flags of its own.
    vqvae_ok(&[
        "train", "--resume", o, "--steps", "25", "--out", o, "--quiet",
    ]);
}

#[test]
fn quantizer_flags_that_do_not_fit_are_errors() {
    let dir = temp_dir("quantizer-flags");
    let out = dir.join("x");
    let train = |flags: &[&str]| {
        let mut args = vec!["train", "--out", out.to_str().unwrap(), "--steps", "1"];
        args.extend_from_slice(flags);
        vqvae_fails(&args)
    };
    let fsq_ema = train(&["--quantizer", "fsq", "--codebook-update", "ema"]);
    assert!(
        fsq_ema.contains("--codebook-update") && fsq_ema.contains("no codebook"),
        "{fsq_ema}"
    );
    let kmeans = train(&["--quantizer", "fsq", "--codebook-init", "kmeans"]);
    assert!(kmeans.contains("--codebook-init"), "{kmeans}");
    let m = train(&["--quantizer", "fsq", "--fsq-levels", "8,1,5"]);
    assert!(
        m.contains("--fsq-levels 8,1,5") && m.contains("at least 2"),
        "{m}"
    );
    let m = train(&["--quantizer", "fsq", "--fsq-levels", "8,x"]);
    assert!(m.contains("whole numbers"), "{m}");
    let m = train(&["--quantizer", "fsq", "--fsq-levels", "8,8", "--codes", "60"]);
    assert!(
        m.contains("64 codes of dimension 2") && m.contains("--codes 60"),
        "{m}"
    );
    let m = train(&["--quantizer", "rvq", "--stages", "0"]);
    assert!(m.contains("--stages 0"), "{m}");
    let m = train(&["--stages", "2"]);
    assert!(m.contains("--stages is for --quantizer rvq"), "{m}");
    let m = train(&["--quantizer", "rvq", "--stages", "4", "--codes", "64"]);
    assert!(
        m.contains("16777216 codes per latent position") && m.contains("1048576"),
        "{m}"
    );

    // A residual VQ checkpoint: the flags of another quantiser contradict it, and codes
    // without their stage axis do not decode with it.
    let rvq = dir.join("rvq");
    let mut args = tiny_train(
        &rvq,
        &[
            "--quantizer",
            "rvq",
            "--stages",
            "2",
            "--steps",
            "2",
            "--quiet",
        ],
    );
    args.retain(|_| true);
    vqvae_ok(&args);
    let ckpt = rvq.join("checkpoint.safetensors");
    let mut init = vec!["--init", ckpt.to_str().unwrap(), "--quantizer", "vq"];
    init.extend_from_slice(&TINY_MODEL);
    let m = train(&init);
    assert!(m.contains("quantizer rvq --stages 2"), "{m}");
    let flat = dir.join("flat.npy");
    vqvae_wgpu::npy::write_codes(&flat, &[1, 8, 8], &[0; 64]).unwrap();
    let m = vqvae_fails(&[
        "decode",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--codes",
        flat.to_str().unwrap(),
        "--out",
        dir.join("d").to_str().unwrap(),
    ]);
    assert!(m.contains("expected [N, h, w, 2]"), "{m}");
}

#[test]
fn joint_codes_split_into_stage_codes_and_back() {
    use vqvae_wgpu::model::{Levels, QuantizerKind};
    let rvq = QuantizerKind::Rvq { stages: 3 };
    // Stage 0 the least significant digit: 1 + 2*4 + 3*16.
    assert_eq!(rvq.join(4, &[1, 2, 3, 0, 0, 0, 3, 3, 3]), [57, 0, 63]);
    assert_eq!(rvq.split(4, &[57, 0, 63]), [1, 2, 3, 0, 0, 0, 3, 3, 3]);
    let all: Vec<u32> = (0..64).collect();
    assert_eq!(rvq.join(4, &rvq.split(4, &all)), all);
    // One code a position: the joint code is the code.
    assert_eq!(QuantizerKind::Vq.split(16, &[5, 9]), [5, 9]);
    let levels: Levels = "8,5,5,5".parse().unwrap();
    assert_eq!(
        (levels.codes(), levels.as_slice()),
        (1000, &[8, 5, 5, 5][..])
    );
    assert_eq!(levels.to_string(), "8,5,5,5");
    for bad in ["", "8,,5", "8,1", "2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2"] {
        assert!(bad.parse::<Levels>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn quantize_dropout_draws_per_step_resumes_exactly_and_is_refused_where_it_cannot_apply() {
    let dir = temp_dir("quantize-dropout");
    let (plain, straight, stopped) = (dir.join("plain"), dir.join("straight"), dir.join("stopped"));
    let dropout = ["--quantize-dropout"];
    rvq_train(&plain, "20", &[]);
    rvq_train(&straight, "20", &dropout);
    assert!(
        model_bits(&plain) != model_bits(&straight),
        "dropout changed nothing"
    );
    // The draws follow the seed and the step: a stopped run resumes to the same bits.
    rvq_train(&stopped, "10", &dropout);
    let s = stopped.to_str().unwrap();
    vqvae_ok(&[
        "train", "--resume", s, "--steps", "20", "--out", s, "--quiet",
    ]);
    assert!(
        model_bits(&stopped) == model_bits(&straight),
        "resumed weights differ"
    );
    // The run's saved settings draw each step's stages: 1 to 3, about equally often.
    let state = TensorFile::read(&straight.join("training_state.safetensors")).unwrap();
    let settings: vqvae_wgpu::train::Settings =
        serde_json::from_str(&state.metadata["settings"]).unwrap();
    let mut seen = [0; 4];
    for step in 0..3000 {
        seen[settings.active_stages(step, 3)] += 1;
    }
    assert_eq!(seen[0], 0);
    assert!(
        seen[1..].iter().all(|&n| (850..1150).contains(&n)),
        "{seen:?}"
    );

    let out = dir.join("x");
    let o = out.to_str().unwrap();
    let m = vqvae_fails(&["train", "--out", o, "--steps", "1", "--quantize-dropout"]);
    assert!(m.contains("needs --quantizer rvq, not vq"), "{m}");
    let one = [
        "train",
        "--out",
        o,
        "--steps",
        "1",
        "--quantizer",
        "rvq",
        "--stages",
        "1",
    ];
    let m = vqvae_fails(&[&one[..], &["--quantize-dropout"]].concat());
    assert!(m.contains("--stages 2 or more"), "{m}");
    let m = vqvae_fails(&[
        "train",
        "--out",
        o,
        "--steps",
        "1",
        "--quantizer",
        "rvq",
        "--quantize-dropout",
        "--codebook-update",
        "gradient",
    ]);
    assert!(m.contains("needs --codebook-update ema"), "{m}");
}
