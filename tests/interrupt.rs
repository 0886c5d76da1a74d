//! Runs that stop: SIGINT and SIGTERM sent to a real `vqvae train` process save a
//! resumable checkpoint and exit with 130 / 143; a crash inside a save (the debug
//! build's fault-injection hook) leaves the last checkpoint whole; a model file and a
//! training state from different saves are refused, naming the newer.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vqvae_wgpu::checkpoint::TensorFile;

/// How the runs below log, validate and restart codes.
const SCHEDULE: &[&str] = &[
    "--log-every",
    "1",
    "--val-every",
    "1000",
    "--codebook-restart",
    "3",
    "--quiet",
];

fn train_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    tiny_train(out, &[SCHEDULE, extra].concat())
}

fn step_of(path: &Path) -> u64 {
    TensorFile::read(path).unwrap().metadata["step"]
        .parse()
        .unwrap()
}

/// Logged training steps in `dir`'s metrics.
fn logged_steps(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"loss\""))
        .count()
}

/// Starts a long run, sends `signal` once it has logged a few steps, and returns the
/// exit code and what it printed.
fn stop_with(signal: &str, out: &Path) -> (Option<i32>, String) {
    let log = out.with_extension("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vqvae"))
        .args(train_args(out, &["--steps", "1000000", "--no-tune"]))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while logged_steps(out) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the run logged no steps"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let code = child.wait().unwrap().code();
    (code, std::fs::read_to_string(&log).unwrap())
}

#[test]
fn sigint_and_sigterm_save_a_checkpoint_that_resumes_exactly() {
    for (signal, status) in [("INT", 130), ("TERM", 143)] {
        let (stopped, straight) = (
            temp_dir(&format!("sig{signal}")),
            temp_dir(&format!("sig{signal}-straight")),
        );
        let (code, text) = stop_with(signal, &stopped);
        assert_eq!(code, Some(status), "SIG{signal}:\n{text}");
        assert!(
            text.contains(&format!("stopped by SIG{signal} after step"))
                && text.contains(&format!("--resume {}", stopped.display())),
            "SIG{signal}: no word of how to resume:\n{text}"
        );
        let step = step_of(&stopped.join("checkpoint.safetensors"));
        assert!(step >= 3, "SIG{signal}: saved at step {step}");
        assert_eq!(step_of(&stopped.join("training_state.safetensors")), step);
        // Two steps past the stop, across a codebook restart.
        let target = (step + 4).to_string();
        let resume = [
            "train",
            "--resume",
            stopped.to_str().unwrap(),
            "--out",
            stopped.to_str().unwrap(),
            "--steps",
            &target,
            "--quiet",
        ];
        let (code, text) = vqvae(&resume);
        assert_eq!(code, Some(0), "{text}");
        let (code, text) = vqvae(&train_args(&straight, &["--steps", &target]));
        assert_eq!(code, Some(0), "{text}");
        assert!(
            model_bits(&stopped) == model_bits(&straight),
            "SIG{signal}: stopped at {step} and resumed to {target} differs from a straight run"
        );
    }
}

#[test]
fn a_crash_inside_a_save_leaves_the_last_checkpoint_whole() {
    // Saves at steps 2 and 4; the second write of each file (at step 4) dies halfway.
    for file in ["checkpoint.safetensors", "training_state.safetensors"] {
        let (crashed, straight) = (temp_dir("crashed"), temp_dir("crash-straight"));
        let args = train_args(
            &crashed,
            &["--steps", "6", "--checkpoint-every", "2", "--no-tune"],
        );
        let out = Command::new(env!("CARGO_BIN_EXE_vqvae"))
            .args(&args)
            .env("VQVAE_TEST_CRASH", format!("{file}:2"))
            .output()
            .unwrap();
        assert!(
            out.status.code().is_none(),
            "{file}: the hook did not abort the run ({:?})",
            out.status
        );
        for name in ["checkpoint.safetensors", "training_state.safetensors"] {
            assert_eq!(
                step_of(&crashed.join(name)),
                2,
                "{name} after a crash in {file}"
            );
        }
        let resume = [
            "train",
            "--resume",
            crashed.to_str().unwrap(),
            "--out",
            crashed.to_str().unwrap(),
            "--quiet",
        ];
        let (code, text) = vqvae(&resume);
        assert_eq!(code, Some(0), "{text}");
        let (code, text) = vqvae(&train_args(&straight, &["--steps", "6"]));
        assert_eq!(code, Some(0), "{text}");
        assert!(
            model_bits(&crashed) == model_bits(&straight),
            "{file}: resumed after a crash differs from a straight run"
        );
    }
}

#[test]
fn a_model_and_a_state_from_different_saves_are_refused_naming_the_newer() {
    let (a, b) = (temp_dir("pair-a"), temp_dir("pair-b"));
    for (dir, steps) in [(&a, "2"), (&b, "3")] {
        let (code, text) = vqvae(&train_args(dir, &["--steps", steps]));
        assert_eq!(code, Some(0), "{text}");
    }
    std::fs::copy(
        b.join("checkpoint.safetensors"),
        a.join("checkpoint.safetensors"),
    )
    .unwrap();
    let dir = a.to_str().unwrap();
    let (code, text) = vqvae(&["train", "--resume", dir, "--out", dir, "--steps", "5"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("checkpoint.safetensors: is from step 3")
            && text.contains("training_state.safetensors from step 2")
            && text.contains("the newer one is"),
        "{text}"
    );
}
