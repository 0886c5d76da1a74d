//! Learning-rate schedules: the rate each step logs, the rate the optimizer uses, a
//! resume that keeps the curve (its horizon saved with the run), steps past the horizon
//! at the floor, and the refusals.

mod common;

use std::path::Path;

use common::*;
use vqvae_wgpu::checkpoint::TensorFile;
use vqvae_wgpu::data::{Dataset, LoadOptions};
use vqvae_wgpu::model::Config;
use vqvae_wgpu::stop::{Signal, Stop};
use vqvae_wgpu::train::{Run, Settings, Start};
use vqvae_wgpu::{Error, Gpu};

fn train(out: &Path, extra: &[&str]) -> String {
    let flags = [
        &["--log-every", "1", "--val-every", "100", "--quiet"][..],
        extra,
    ]
    .concat();
    let args = tiny_train(out, &flags);
    let (code, text) = vqvae(&args);
    assert_eq!(code, Some(0), "vqvae {args:?}:\n{text}");
    text
}

fn read(dir: &Path, name: &str) -> TensorFile {
    TensorFile::read(&dir.join(name)).unwrap()
}

fn logged_rates(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["lr"].as_f64().unwrap())
        .collect()
}

fn settings(dir: &Path) -> Settings {
    serde_json::from_str(&read(dir, "training_state.safetensors").metadata["settings"]).unwrap()
}

/// Trains in-process from the weights in `from`, with `settings`, stopping after the
/// first step: what a run of those settings saves at step 1.
fn first_step(gpu: &Gpu, from: &Path, settings: Settings, out: &Path) {
    let model = read(from, "checkpoint.safetensors");
    let config = Config::from_shapes(&model.shapes(), Default::default(), 0.25, from).unwrap();
    let data = Dataset::load(None, &LoadOptions::default()).unwrap();
    let stop = Stop::default();
    stop.request(Signal::Interrupt);
    let run = Run {
        gpu,
        data: &data,
        config,
        settings,
        out: out.to_path_buf(),
        start: Start::Init(model),
        progress: false,
        stop,
        workers: 2,
        ranks: &vqvae_wgpu::ranks::OneProcess,
    };
    match run.train() {
        Err(Error::Stopped { step: 1, .. }) => {}
        other => panic!(
            "a stop after the first step gave {:?}",
            other.map(|s| s.step)
        ),
    }
}

#[test]
fn a_cosine_after_a_warmup_is_logged_kept_across_a_resume_and_ends_at_its_floor() {
    let (straight, resumed) = (temp_dir("cosine"), temp_dir("cosine-resumed"));
    let schedule = [
        "--lr",
        "0.01",
        "--lr-schedule",
        "cosine",
        "--warmup-steps",
        "2",
        "--codebook-restart",
        "2",
    ];
    train(&straight, &[&["--steps", "6"][..], &schedule].concat());
    // Warmup 0.005, 0.01; then half a cosine over the 4 steps to the horizon, from
    // 0.01 towards the floor 0.001, which step 7 reaches.
    let cosine = |done: f64| 0.001 + 0.009 * 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
    let want = [0.005, 0.01, 0.01, cosine(0.25), cosine(0.5), cosine(0.75)];
    let got = logged_rates(&straight);
    assert_eq!(got.len(), 6, "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "logged {got:?}, expected {want:?}");
    }

    // One step in-process (the run's own settings, horizon 6), then the CLI to 6: the
    // straight run's bits.
    let mut s = settings(&straight);
    assert_eq!((s.lr_horizon, s.warmup_steps), (6, 2));
    s.steps = 6;
    let init = temp_dir("cosine-init");
    train(&init, &["--steps", "0"]);
    first_step(gpu(), &init, s, &resumed);
    let dir = resumed.to_str().unwrap();
    let (code, text) = vqvae(&["train", "--resume", dir, "--out", dir, "--quiet"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        model_bits(&resumed),
        model_bits(&straight),
        "stopped at step 1 and resumed differs from the straight run"
    );

    // Past the horizon: the floor, and a note that says so.
    let dir = straight.to_str().unwrap();
    let (code, text) = vqvae(&[
        "train", "--resume", dir, "--out", dir, "--steps", "8", "--quiet",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("the cosine schedule ends at step 6") && text.contains("steps 7..8"),
        "{text}"
    );
    let got = logged_rates(&straight);
    assert_eq!(got.len(), 8, "{got:?}");
    assert!(
        got[6..].iter().all(|&r| (r - 0.001).abs() < 1e-12),
        "{got:?}"
    );
}

#[test]
fn a_warmup_step_moves_sgd_parameters_by_its_fraction_of_the_rate() {
    // SGD is linear in the rate: the first of 4 warmup steps moves every parameter a
    // quarter as far as a step at the full rate.
    let gpu = gpu();
    let (init, full, warm) = (
        temp_dir("warmup-init"),
        temp_dir("warmup-full"),
        temp_dir("warmup-warm"),
    );
    let sgd = ["--optimizer", "sgd", "--lr", "0.5", "--no-shuffle"];
    train(&init, &[&["--steps", "0"][..], &sgd].concat());
    let base = Settings {
        steps: 10,
        lr_horizon: 10,
        ..settings(&init)
    };
    first_step(gpu, &init, base.clone(), &full);
    first_step(
        gpu,
        &init,
        Settings {
            warmup_steps: 4,
            ..base
        },
        &warm,
    );
    let p0 = read(&init, "checkpoint.safetensors").values();
    let (p_full, p_warm) = (
        read(&full, "checkpoint.safetensors").values(),
        read(&warm, "checkpoint.safetensors").values(),
    );
    for (name, before) in &p0 {
        let quarter: Vec<f64> = before
            .iter()
            .zip(&p_full[name])
            .map(|(&b, &a)| f64::from(b) + f64::from(a - b) / 4.0)
            .collect();
        assert_close(name, &p_warm[name], &quarter, 1e-5, 1e-6);
        assert!(
            p_full[name] != *before,
            "{name}: a full step did not move it"
        );
    }
}

#[test]
fn schedules_that_cannot_run_and_resumes_that_change_them_are_refused() {
    let dir = temp_dir("schedule-errors");
    let out = dir.to_str().unwrap();
    let base = tiny_train(&dir, &["--quiet"]);
    for (extra, says) in [
        (
            &["--steps", "5", "--warmup-steps", "6"][..],
            "--warmup-steps 6 is beyond --steps 5",
        ),
        (
            &[
                "--steps",
                "5",
                "--warmup-steps",
                "5",
                "--lr-schedule",
                "cosine",
            ][..],
            "--warmup-steps 5 is beyond --steps 5",
        ),
        (&["--lr-schedule", "linear"][..], "linear"),
    ] {
        let (code, text) = vqvae(&[&base[..], extra].concat());
        assert_ne!(code, Some(0), "{extra:?}");
        assert!(text.contains(says), "{extra:?}: {text}");
    }
    train(&dir, &["--steps", "2", "--lr-schedule", "cosine"]);
    for (flag, value) in [("--lr-schedule", "constant"), ("--warmup-steps", "1")] {
        let (code, text) = vqvae(&[
            "train", "--resume", out, "--out", out, "--steps", "3", flag, value,
        ]);
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains(&format!("{flag} differs from the resumed run's")),
            "{text}"
        );
    }
}
