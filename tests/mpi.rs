//! Data-parallel training over MPI (`--features mpi`): `mpirun -np 2 vqvae train` against
//! one process, two 2-rank runs against each other, the ranks' parameters compared every
//! step, resuming across rank counts, and the errors that must end every rank. Needs
//! `mpirun` (Open MPI: openmpi-bin) on the PATH.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::Command;

use common::{TINY_MODEL, model_bits, temp_dir, vqvae_ok};

/// `mpirun` of one rank per program, rank r running `vqvae PROGRAMS[r]` (as root and
/// with more ranks than cores, as CI runs it), every rank comparing its parameters with
/// rank 0's after every step: the exit code, stdout and stderr.
fn ranks(programs: &[&[String]]) -> (Option<i32>, String) {
    let bin = env!("CARGO_BIN_EXE_vqvae");
    let mut args: Vec<String> = ["--allow-run-as-root", "--oversubscribe"]
        .map(String::from)
        .to_vec();
    for (r, program) in programs.iter().enumerate() {
        if r > 0 {
            args.push(":".into());
        }
        args.extend(["-np", "1", bin].map(String::from));
        args.extend_from_slice(program);
    }
    let out = Command::new("mpirun")
        .args(&args)
        .env("VQVAE_CHECK_RANKS", "1")
        .output()
        .expect("mpirun (Open MPI) on the PATH");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// `mpirun -np 2 vqvae ARGS` (`train` with `--no-tune`, as `common::vqvae` gives it).
fn mpirun(args: &[&str]) -> (Option<i32>, String) {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if args.first().map(String::as_str) == Some("train") {
        args.push("--no-tune".into());
    }
    ranks(&[&args, &args])
}

/// `train` of the tiny model into `out` at batch 8 (4 images a rank), quietly, otherwise
/// with the defaults (with Adam: the EMA codebook and restarts every 25 steps), `extra`
/// overriding its flags.
fn train(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["train", "--out"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    args.push(out.display().to_string());
    let batch: &[&str] = &["--batch-size", "8"];
    let model = TINY_MODEL
        .chunks(2)
        .filter(|pair| pair[0] != "--batch-size");
    for pair in model
        .chain([batch])
        .filter(|pair| !extra.contains(&pair[0]))
    {
        args.extend(pair.iter().map(|s| s.to_string()));
    }
    args.push("--quiet".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The largest norm of the difference over the norm, over the tensors of two runs.
fn relative_difference(a: &Path, b: &Path) -> f64 {
    model_bits(a)
        .iter()
        .zip(model_bits(b))
        .map(|((name, x), (other, y))| {
            assert_eq!(name, &other);
            let (mut diff, mut norm) = (0.0, 0.0);
            for (&x, &y) in x.iter().zip(&y) {
                let (x, y) = (f64::from(f32::from_bits(x)), f64::from(f32::from_bits(y)));
                diff += (x - y) * (x - y);
                norm += x * x;
            }
            diff.sqrt() / norm.sqrt().max(1e-30)
        })
        .fold(0.0, f64::max)
}

/// The largest relative difference between two runs' logged losses, which must have a
/// line for every step alike.
fn loss_curves_apart(a: &Path, b: &Path) -> f64 {
    let losses = |dir: &Path| -> Vec<f64> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64())
            .collect()
    };
    let (x, y) = (losses(a), losses(b));
    assert_eq!(x.len(), y.len(), "one line a step");
    x.iter()
        .zip(&y)
        .map(|(p, q)| (p - q).abs() / p.abs())
        .fold(0.0, f64::max)
}

#[test]
fn two_ranks_train_what_one_process_does() {
    let dir = temp_dir("mpi-equal");
    // SGD (a gradient codebook), Adam with a gradient codebook, Adam with the default
    // EMA codebook, and SGD from a codebook drawn from the global batch's encoder outputs
    // or clustered from its first batches'; 20 steps, before the first restart.
    for (name, flags) in [
        ("sgd", &["--optimizer", "sgd", "--lr", "0.05"][..]),
        ("adam", &["--codebook-update", "gradient"][..]),
        ("ema", &[][..]),
        (
            "data",
            &[
                "--optimizer",
                "sgd",
                "--lr",
                "0.05",
                "--codebook-init",
                "data",
            ][..],
        ),
        (
            "kmeans",
            &[
                "--optimizer",
                "sgd",
                "--lr",
                "0.05",
                "--codebook-init",
                "kmeans",
            ][..],
        ),
    ] {
        let (one, two, again) = (
            dir.join(format!("{name}1")),
            dir.join(format!("{name}2")),
            dir.join(format!("{name}2b")),
        );
        let mut steps = vec!["--steps", "20"];
        steps.extend_from_slice(flags);
        vqvae_ok(&strs(&train(&one, &steps)));
        for out in [&two, &again] {
            let (code, text) = mpirun(&strs(&train(out, &steps)));
            assert_eq!(code, Some(0), "{text}");
        }
        let worst = relative_difference(&one, &two);
        assert!(worst <= 1e-4, "{name}: 2 ranks against 1: {worst:e}");
        assert!(
            model_bits(&two) == model_bits(&again),
            "{name}: two 2-rank runs differ"
        );
        // Rank 0 alone logs, the global batch's loss.
        let worst = loss_curves_apart(&one, &two);
        assert!(worst <= 1e-3, "{name}: loss curves {worst:e} apart");
    }
}

#[test]
fn restarts_over_the_global_batch_match_one_process() {
    let dir = temp_dir("mpi-restarts");
    // Restarts at steps 25 and 50: the ranks agree on the dead codes (their counts are
    // summed) and move them onto the global batch's rows that one process would take;
    // every step's parameters are compared across the ranks.
    for (name, flags) in [
        ("gradient", &["--codebook-update", "gradient"][..]),
        ("ema", &[][..]),
    ] {
        let mut steps = vec!["--steps", "60"];
        steps.extend_from_slice(flags);
        let (one, two, again) = (
            dir.join(format!("{name}1")),
            dir.join(format!("{name}2")),
            dir.join(format!("{name}2b")),
        );
        vqvae_ok(&strs(&train(&one, &steps)));
        for out in [&two, &again] {
            let (code, text) = mpirun(&strs(&train(out, &steps)));
            assert_eq!(code, Some(0), "{text}");
        }
        assert!(
            model_bits(&two) == model_bits(&again),
            "{name}: two 2-rank runs with restarts differ"
        );
        let worst = loss_curves_apart(&one, &two);
        assert!(worst <= 1e-3, "{name}: loss curves {worst:e} apart");
        // The EMA codebook's restarted codes sit on one batch's outputs, close enough for
        // a vector to change code on summation order alone (at step 27 here): the loss
        // curve stays close, the tensors part by more than summation order.
        if name == "gradient" {
            let worst = relative_difference(&one, &two);
            assert!(worst <= 1e-4, "{name}: 2 ranks against 1: {worst:e}");
        }
    }
}

#[test]
fn runs_resume_across_rank_counts() {
    let dir = temp_dir("mpi-resume");
    let straight = dir.join("straight");
    vqvae_ok(&strs(&train(&straight, &["--steps", "20"])));
    // Saved at 1 rank, resumed at 2; saved at 2, resumed at 1.
    for (first_two, name) in [(false, "one-then-two"), (true, "two-then-one")] {
        let out = dir.join(name);
        let first = train(&out, &["--steps", "10"]);
        let o = out.display().to_string();
        let more = [
            "train", "--resume", &o, "--steps", "20", "--out", &o, "--quiet",
        ];
        if first_two {
            let (code, text) = mpirun(&strs(&first));
            assert_eq!(code, Some(0), "{text}");
            vqvae_ok(&more);
        } else {
            vqvae_ok(&strs(&first));
            let (code, text) = mpirun(&more);
            assert_eq!(code, Some(0), "{text}");
        }
        let worst = relative_difference(&straight, &out);
        assert!(worst <= 1e-4, "{name}: {worst:e} from the straight run");
    }
}

#[test]
fn what_ranks_cannot_do_ends_every_rank_with_an_error() {
    let dir = temp_dir("mpi-errors");
    let out = dir.join("x");
    // A batch that does not split.
    let (code, text) = mpirun(&strs(&train(&out, &["--batch-size", "7", "--steps", "2"])));
    assert_ne!(code, Some(0));
    assert!(
        text.contains("--batch-size 7 does not split evenly over 2 ranks"),
        "{text}"
    );
    // One rank asks for an adapter that is not there: every rank ends, none hangs.
    let (code, text) = ranks(&[
        &train(&out, &["--steps", "50", "--no-tune"]),
        &train(
            &out,
            &["--steps", "50", "--no-tune", "--adapter", "no such adapter"],
        ),
    ]);
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("error on rank 1 of 2") && text.contains("no such adapter"),
        "{text}"
    );
}

#[test]
fn ranks_on_different_adapters_train_on_rank_0s_state() {
    let dir = temp_dir("mpi-mixed");
    // Rank 1 on the GL adapter, rank 0 on Vulkan (both Mesa's here, so the bits happen to
    // agree; on two GPU models they need not): rank 0's state goes to every rank after
    // every step, and the ranks still train what one process does.
    let (one, two) = (dir.join("one"), dir.join("two"));
    vqvae_ok(&strs(&train(&one, &["--steps", "20"])));
    let steps = ["--steps", "20", "--no-tune"];
    let mut on_gl = steps.to_vec();
    on_gl.extend(["--backend", "gl"]);
    let (code, text) = ranks(&[&train(&two, &steps), &train(&two, &on_gl)]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("the ranks run on different adapters"),
        "{text}"
    );
    let worst = relative_difference(&one, &two);
    assert!(worst <= 1e-4, "mixed adapters against 1 process: {worst:e}");
}

#[test]
fn a_signal_stops_every_rank_at_one_step_and_rank_0_saves_it() {
    let dir = temp_dir("mpi-signal");
    let out = dir.join("run");
    let args = train(
        &out,
        &[
            "--steps",
            "1000000",
            "--no-tune",
            "--checkpoint-every",
            "1000000",
        ],
    );
    let mut child = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
        .arg(env!("CARGO_BIN_EXE_vqvae"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mpirun");
    let logged =
        || std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |t| t.lines().count());
    let started = std::time::Instant::now();
    while logged() < 30 {
        assert!(
            started.elapsed().as_secs() < 120,
            "the run did not get going"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // mpirun passes the signal on to every rank.
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(sent.unwrap().success());
    let stopped = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            stopped.elapsed().as_secs() < 60,
            "a rank hung after the signal"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Rank 0 saved the step every rank stopped after, which resumes.
    let model =
        vqvae_wgpu::checkpoint::TensorFile::read(&out.join("checkpoint.safetensors")).unwrap();
    let step: u64 = model.metadata["step"].parse().unwrap();
    assert!(step >= 30, "saved at step {step}");
    let o = out.display().to_string();
    let more = (step + 3).to_string();
    let text = vqvae_ok(&[
        "train", "--resume", &o, "--steps", &more, "--out", &o, "--quiet",
    ]);
    assert!(text.contains(&format!("trained to step {more}")), "{text}");
}
