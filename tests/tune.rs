//! The autotuner end to end: `vqvae tune` writes the cache, training uses it and
//! records the tuning in its state, `--resume` keeps the run's own tuning whatever the
//! cache says, and bad caches or tunings cost a notice or a clear error.

mod common;

use std::path::Path;

use common::{ODD, cache_tuning, open_default, temp_dir, vqvae, vqvae_tuned};
use vqvae_wgpu::checkpoint::{MODEL_FILE, STATE_FILE, TensorFile};
use vqvae_wgpu::launch::Tuning;
use vqvae_wgpu::model::Config;
use vqvae_wgpu::train::TUNING_KEY;
use vqvae_wgpu::tune::Target;

/// A model small enough to tune in seconds, on the built-in images at 8x8.
const TINY: [&str; 12] = [
    "--hidden",
    "8",
    "--res-hidden",
    "4",
    "--codes",
    "8",
    "--code-dim",
    "4",
    "--image-size",
    "8",
    "--batch-size",
    "2",
];

/// `command`'s subcommand, TINY, then the rest of `command`.
fn args<'a>(command: &[&'a str]) -> Vec<&'a str> {
    let (sub, rest) = command.split_first().expect("a subcommand");
    [*sub]
        .into_iter()
        .chain(TINY)
        .chain(rest.iter().copied())
        .collect()
}

/// TINY's target, as the command line makes it.
fn target() -> Target {
    Target {
        config: Config {
            hidden: 8,
            res_hidden: 4,
            codes: 8,
            code_dim: 4,
            ..Config::reference(3)
        },
        batch: 2,
        image: [8, 8],
    }
}

fn saved_tuning(run: &Path) -> Tuning {
    let state = TensorFile::read(&run.join(STATE_FILE)).unwrap();
    serde_json::from_str(&state.metadata[TUNING_KEY]).unwrap()
}

fn cache_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tune_writes_the_cache_and_training_uses_it() {
    let dir = temp_dir("tune-cache");
    let cache = dir.join("new folder").join("tuning.json");
    let (code, text) = vqvae_tuned(&args(&["tune"]), &cache);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("the adapter's default"), "{text}");
    let json = text
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("the tuning, printed");
    let printed: Tuning = serde_json::from_str(json).unwrap();
    let file = cache_json(&cache);
    let entries = file["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let cached: Tuning = serde_json::from_value(entries[0]["tuning"].clone()).unwrap();
    assert_eq!(cached, printed);
    assert_eq!(entries[0]["key"]["target"], target().describe());

    let (code, text) = vqvae_tuned(&args(&["tune"]), &cache);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("tuning: cached"), "{text}");

    let run = dir.join("run");
    let mut train = args(&["train", "--steps", "2", "--out"]);
    let run_arg = run.to_str().unwrap();
    train.push(run_arg);
    let (code, text) = vqvae_tuned(&train, &cache);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("tuning: cached"), "{text}");
    assert_eq!(saved_tuning(&run), printed);
}

#[test]
fn bad_caches_cost_a_notice_and_nothing_else() {
    let dir = temp_dir("tune-bad");
    let cache = dir.join("tuning.json");
    std::fs::write(&cache, "{ not json").unwrap();
    let (code, text) = vqvae_tuned(&args(&["tune"]), &cache);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ignored: not JSON"), "{text}");
    assert_eq!(cache_json(&cache)["entries"].as_array().unwrap().len(), 1);

    // An entry another build made is not used: the run tunes anew beside it.
    let mut file = cache_json(&cache);
    file["entries"][0]["key"]["wgpu"] = "0.0.0".into();
    std::fs::write(&cache, file.to_string()).unwrap();
    let (code, text) = vqvae_tuned(&args(&["tune"]), &cache);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("come from another build"), "{text}");
    assert!(text.contains("timing kernel variants"), "{text}");
    assert_eq!(cache_json(&cache)["entries"].as_array().unwrap().len(), 2);

    // A cache that cannot be written: the run keeps its tuning for itself.
    let blocker = dir.join("a file");
    std::fs::write(&blocker, "").unwrap();
    let unwritable = blocker.join("tuning.json");
    let (code, text) = vqvae_tuned(&args(&["tune"]), &unwritable);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("not cached"), "{text}");
    assert!(text.contains("a file"), "{text}");
}

#[test]
fn resume_keeps_the_runs_own_tuning_whatever_the_cache_says() {
    let dir = temp_dir("tune-resume");
    let cache = dir.join("tuning.json");
    // A tuning no search would pick. (On a model this small every tuning gives the same
    // bits, as no reduction is long enough to split; the state's tuning shows which one
    // the resumed steps ran with.)
    let odd = ODD[0];
    let gpu = open_default();
    cache_tuning(&cache, &gpu, &target(), odd);
    let train = |steps: &str, out: &Path, extra: &[&str]| {
        let mut a = args(&["train", "--steps", steps, "--out", out.to_str().unwrap()]);
        a.extend(extra);
        vqvae_tuned(&a, &cache)
    };
    let whole = dir.join("whole");
    let (code, text) = train("4", &whole, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(saved_tuning(&whole), odd);
    let default = dir.join("default");
    let (code, text) = train("1", &default, &["--no-tune"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(saved_tuning(&default), Tuning::for_adapter(gpu.info()));

    let part = dir.join("part");
    let (code, text) = train("2", &part, &[]);
    assert_eq!(code, Some(0), "{text}");
    std::fs::write(&cache, "garbage").unwrap();
    let resume = [
        "train",
        "--resume",
        part.to_str().unwrap(),
        "--steps",
        "4",
        "--out",
        part.to_str().unwrap(),
    ];
    let (code, text) = vqvae_tuned(&resume, &cache);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("the resumed run's own"), "{text}");
    assert_eq!(saved_tuning(&part), odd);
    let weights = |run: &Path| TensorFile::read(&run.join(MODEL_FILE)).unwrap().tensors;
    assert!(
        weights(&part) == weights(&whole),
        "resumed run differs from the uninterrupted one"
    );
}

#[test]
fn resume_refuses_a_tuning_this_adapter_cannot_run() {
    let dir = temp_dir("tune-limits");
    let run = dir.join("run");
    let run_arg = run.to_str().unwrap();
    let mut first = args(&["train", "--steps", "1", "--out"]);
    first.push(run_arg);
    let (code, text) = vqvae(&first);
    assert_eq!(code, Some(0), "{text}");
    let state_path = run.join(STATE_FILE);
    let resume = [
        "train", "--resume", run_arg, "--steps", "2", "--out", run_arg,
    ];
    let with_tuning = |json: String| {
        let mut state = TensorFile::read(&state_path).unwrap();
        state.metadata.insert(TUNING_KEY.into(), json);
        state.write(&state_path).unwrap();
        vqvae(&resume)
    };
    let huge = Tuning {
        conv_workgroup: [64, 64],
        ..Tuning::REGISTER
    };
    let (code, text) = with_tuning(serde_json::to_string(&huge).unwrap());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("this adapter cannot run it"), "{text}");
    assert!(
        text.contains("max_compute_invocations_per_workgroup"),
        "{text}"
    );
    assert!(text.contains(STATE_FILE), "{text}");

    let (code, text) = with_tuning("{\"conv_tile\": 3}".into());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("saved kernel tuning is unreadable"), "{text}");
}
