//! `vqvae train-prior` and `vqvae sample` end to end on the built-in images, and their
//! errors for input that does not fit.

mod common;

use std::path::Path;

use common::{assert_curves, temp_dir, vqvae, vqvae_fails};

/// Trains a tiny autoencoder with `codes` codes into `dir`, on the built-in images or
/// `extra`'s data; returns its checkpoint.
fn autoencoder(dir: &Path, codes: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "--hidden",
        "8",
        "--res-hidden",
        "4",
        "--res-layers",
        "1",
    ];
    args.extend([
        "--codes",
        codes,
        "--code-dim",
        "4",
        "--steps",
        "10",
        "--batch-size",
        "8",
    ]);
    args.extend(["--quiet", "--out", dir.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let (code, text) = vqvae(&args);
    assert_eq!(code, Some(0), "{text}");
    dir.join("checkpoint.safetensors").display().to_string()
}

const TINY_PRIOR: &[&str] = &[
    "--prior-channels",
    "8",
    "--prior-blocks",
    "1",
    "--embed-dim",
    "4",
    "--batch-size",
    "16",
    "--quiet",
];

#[test]
fn train_prior_then_sample_writes_images_and_codes_and_resumes() {
    let dir = temp_dir("prior-cli");
    let ae = autoencoder(&dir.join("ae"), "16", &[]);
    let prior_dir = dir.join("prior");
    let out = prior_dir.to_str().unwrap();
    let mut args = vec![
        "train-prior",
        "--checkpoint",
        &ae,
        "--out",
        out,
        "--steps",
        "20",
    ];
    args.extend_from_slice(TINY_PRIOR);
    let (code, text) = vqvae(&args);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("bits per code") && text.contains("uniform prior 4.000"),
        "{text}"
    );
    let metrics = std::fs::read_to_string(prior_dir.join("prior_metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    for key in ["val_bits", "uniform_bits", "frequency_bits"] {
        assert!(last[key].as_f64().unwrap() > 0.0, "{key}: {last}");
    }
    // Training, held-out, uniform and frequency lines.
    assert_curves(
        &prior_dir.join("prior_metrics.png"),
        &[[40, 70, 160], [210, 90, 20], [120, 120, 120], [60, 150, 60]],
    );

    // Resuming continues to the new step count from the saved step.
    let mut more = vec![
        "train-prior",
        "--checkpoint",
        &ae,
        "--out",
        out,
        "--steps",
        "30",
    ];
    more.extend(["--resume", out, "--quiet"]);
    let (code, text) = vqvae(&more);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("trained the prior to step 30"), "{text}");

    let prior = prior_dir.join("prior.safetensors");
    let png = dir.join("samples.png");
    let npy = dir.join("samples.npy");
    let (code, text) = vqvae(&[
        "sample",
        "--checkpoint",
        &ae,
        "--prior",
        prior.to_str().unwrap(),
        "--count",
        "5",
        "--seed",
        "3",
        "--temperature",
        "0.8",
        "--out",
        png.to_str().unwrap(),
        "--codes-out",
        npy.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let img = image::open(&png).unwrap();
    assert!(
        img.width() > 3 * 32 && img.height() > 2 * 32,
        "{}x{}",
        img.width(),
        img.height()
    );
    let codes: npyz::NpyFile<_> = npyz::NpyFile::new(std::fs::File::open(&npy).unwrap()).unwrap();
    assert_eq!(codes.shape(), &[5, 8, 8]);
    let values: Vec<i64> = codes.into_vec().unwrap();
    assert!(values.iter().all(|&c| (0..16).contains(&c)));
}

#[test]
fn priors_that_do_not_fit_and_bad_sampling_values_are_errors() {
    let dir = temp_dir("prior-cli-errors");
    let ae = autoencoder(&dir.join("ae"), "16", &[]);
    let other = autoencoder(&dir.join("other"), "12", &[]);
    let prior_dir = dir.join("prior");
    let mut args = vec!["train-prior", "--checkpoint", &ae, "--out"];
    args.extend([prior_dir.to_str().unwrap(), "--steps", "2"]);
    args.extend_from_slice(TINY_PRIOR);
    let (code, text) = vqvae(&args);
    assert_eq!(code, Some(0), "{text}");
    let prior = prior_dir.join("prior.safetensors").display().to_string();
    let png = dir.join("s.png").display().to_string();
    let sample = |checkpoint: &str, extra: &[&str]| {
        let mut a = vec![
            "sample",
            "--checkpoint",
            checkpoint,
            "--prior",
            &prior,
            "--out",
            &png,
        ];
        a.extend_from_slice(extra);
        vqvae_fails(&a)
    };
    let text = sample(&other, &[]);
    assert!(text.contains("K=16") && text.contains("K=12"), "{text}");
    assert!(sample(&ae, &["--count", "0"]).contains("--count 0"));
    assert!(sample(&ae, &["--temperature", "0"]).contains("--temperature 0"));
    assert!(sample(&ae, &["--temperature", "-1"]).contains("--temperature -1"));
    assert!(sample(&ae, &["--class", "2"]).contains("trained without classes"));
    // The built-in images have no labels to condition on.
    let mut cond = vec!["train-prior", "--checkpoint", &ae, "--conditional", "--out"];
    cond.push(prior_dir.to_str().unwrap());
    assert!(vqvae_fails(&cond).contains("has no labels"));
    // A prior of 4x4 grids (16x16 images) for a model trained on 32x32 images.
    let small = dir.join("small");
    let mut args = vec![
        "train-prior",
        "--checkpoint",
        &ae,
        "--image-size",
        "16",
        "--out",
    ];
    args.extend([small.to_str().unwrap(), "--steps", "1"]);
    args.extend_from_slice(TINY_PRIOR);
    let (code, text) = vqvae(&args);
    assert_eq!(code, Some(0), "{text}");
    let small_prior = small.join("prior.safetensors").display().to_string();
    let text = vqvae_fails(&[
        "sample",
        "--checkpoint",
        &ae,
        "--prior",
        &small_prior,
        "--out",
        &png,
    ]);
    assert!(
        text.contains("4x4 code grids") && text.contains("32x32 images"),
        "{text}"
    );
    // --gated cannot turn a resumed plain prior into a gated one.
    let mut resume = vec!["train-prior", "--checkpoint", &ae, "--out"];
    resume.extend([
        prior_dir.to_str().unwrap(),
        "--resume",
        prior_dir.to_str().unwrap(),
    ]);
    resume.extend(["--steps", "3", "--gated"]);
    assert!(vqvae_fails(&resume).contains("--gated"));
    // One image gives one code grid: nothing to hold out.
    let one = dir.join("one");
    std::fs::create_dir_all(&one).unwrap();
    image::GrayImage::new(32, 32)
        .save(one.join("a.png"))
        .unwrap();
    let mut args = vec![
        "train-prior",
        "--checkpoint",
        &ae,
        "--data",
        one.to_str().unwrap(),
    ];
    args.extend(["--out", small.to_str().unwrap()]);
    assert!(vqvae_fails(&args).contains("at least 2"));
    // A model checkpoint is not a prior.
    let text = vqvae_fails(&["sample", "--checkpoint", &ae, "--prior", &ae, "--out", &png]);
    assert!(text.contains("not a prior"), "{text}");
    // A prior from step 1 beside the training state of step 2: not one save.
    let mixed = dir.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(&small_prior, mixed.join("prior.safetensors")).unwrap();
    std::fs::copy(
        prior_dir.join("prior_state.safetensors"),
        mixed.join("prior_state.safetensors"),
    )
    .unwrap();
    let mixed = mixed.to_str().unwrap();
    let text = vqvae_fails(&[
        "train-prior",
        "--checkpoint",
        &ae,
        "--out",
        mixed,
        "--resume",
        mixed,
    ]);
    assert!(
        text.contains("prior_state.safetensors: is from step 2")
            && text.contains("prior.safetensors from step 1"),
        "{text}"
    );
}

/// Writes `n` 8x8 IDX images of stripes whose width is the label, and the labels file
/// beside them; returns the images file.
fn labelled_idx(dir: &Path, n: usize, labels: &[u8]) -> String {
    let mut images = vec![0, 0, 8, 3];
    images.extend((n as u32).to_be_bytes());
    images.extend(8u32.to_be_bytes());
    images.extend(8u32.to_be_bytes());
    for i in 0..n {
        let stripe = usize::from(labels[i % labels.len()]) + 1;
        images.extend((0..64).map(|p| if (p % 8 / stripe) % 2 == 0 { 255u8 } else { 0 }));
    }
    let path = dir.join("toy-images-idx3-ubyte");
    std::fs::write(&path, images).unwrap();
    let mut file = vec![0, 0, 8, 1];
    file.extend((labels.len() as u32).to_be_bytes());
    file.extend(labels);
    std::fs::write(dir.join("toy-labels-idx1-ubyte"), file).unwrap();
    path.display().to_string()
}

#[test]
fn class_conditioning_reads_idx_labels_and_checks_classes() {
    let dir = temp_dir("prior-cli-classes");
    let labels: Vec<u8> = (0..24).map(|i| (i % 3) as u8).collect();
    let data = labelled_idx(&dir, 24, &labels);
    let ae = autoencoder(&dir.join("ae"), "8", &["--data", &data]);
    let prior_dir = dir.join("prior").display().to_string();
    let mut args = vec![
        "train-prior",
        "--checkpoint",
        &ae,
        "--data",
        &data,
        "--conditional",
    ];
    args.extend(["--out", &prior_dir, "--steps", "3"]);
    args.extend_from_slice(TINY_PRIOR);
    let (code, text) = vqvae(&args);
    assert_eq!(code, Some(0), "{text}");
    let prior = format!("{prior_dir}/prior.safetensors");
    let png = dir.join("s.png").display().to_string();
    let base = [
        "sample",
        "--checkpoint",
        &ae,
        "--prior",
        &prior,
        "--out",
        &png,
        "--count",
        "2",
    ];
    let (code, text) = vqvae(&[&base[..], &["--class", "2"]].concat());
    assert_eq!(code, Some(0), "{text}");
    let text = vqvae_fails(&[&base[..], &["--class", "3"]].concat());
    assert!(
        text.contains("--class 3") && text.contains("classes 0..2"),
        "{text}"
    );

    // A labels file that does not match the images is named.
    std::fs::write(
        dir.join("toy-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 2, 1, 1],
    )
    .unwrap();
    let text = vqvae_fails(&args);
    assert!(
        text.contains("toy-labels-idx1-ubyte") && text.contains("number 24"),
        "{text}"
    );
}

#[test]
fn cifar_batches_carry_their_labels() {
    let dir = temp_dir("prior-cifar-labels");
    let path = dir.join("data_batch_1.bin");
    let record = |label: u8| std::iter::once(label).chain(std::iter::repeat_n(label * 20, 3072));
    let bytes: Vec<u8> = [3u8, 0, 9].into_iter().flat_map(record).collect();
    std::fs::write(&path, bytes).unwrap();
    let data = vqvae_wgpu::data::Dataset::load(Some(&path), &Default::default()).unwrap();
    assert_eq!(data.labels, Some(vec![3, 0, 9]));
    assert_eq!(data.image(2).unwrap()[0], 180);
}
