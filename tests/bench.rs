//! `vqvae bench`: the quick suite's JSON has everything a comparison needs and only
//! sane figures; `--compare` lines runs up with ratios; bad choices are clear errors.

mod common;

use common::{cache_tuning, temp_dir, vqvae, vqvae_tuned};
use serde_json::Value;
use vqvae_wgpu::bench::{Report, Stats};
use vqvae_wgpu::launch::Tuning;
use vqvae_wgpu::model::Config;
use vqvae_wgpu::tune::Target;

/// A figure that is absent (`null`) or a positive finite number.
fn positive_or_null(entry: &Value, key: &str) -> Option<f64> {
    let v = &entry[key];
    if v.is_null() {
        return None;
    }
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{key} not a number: {entry}"));
    assert!(x.is_finite() && x > 0.0, "{key} = {x} in {entry}");
    Some(x)
}

#[test]
fn quick_suite_reports_every_group_with_sane_figures_and_compares() {
    let dir = temp_dir("bench-quick");
    let json = dir.join("quick.json");
    let (code, text) = vqvae(&["bench", "--quick", "--json", json.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["suite"], "quick");
    assert!(report["date"].as_str().unwrap().starts_with("20"));
    let env = &report["environment"];
    for key in [
        "adapter",
        "vendor",
        "device",
        "device_type",
        "backend",
        "wgpu_version",
        "os",
        "tuning",
    ] {
        assert!(
            !env[key].as_str().unwrap_or_default().is_empty(),
            "environment.{key} missing: {env}"
        );
    }
    // Vulkan names its driver and puts the version in driver_info; GL gives only the
    // version string, in driver_info.
    assert!(
        [&env["driver"], &env["driver_info"]]
            .iter()
            .any(|v| !v.as_str().unwrap_or_default().is_empty()),
        "environment.driver and driver_info both empty: {env}"
    );
    // GPU timestamps where the adapter has them (Vulkan; GL on some drivers), the wall
    // clock where it has not.
    let timestamps = common::default_adapter()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY);
    if !timestamps {
        common::note("bench: this adapter has no timestamp queries: checking wall-clock timing");
    }
    let want = if timestamps {
        "gpu-timestamps"
    } else {
        "wall-clock"
    };
    assert_eq!(env["timing"], want, "{env}");
    assert!(
        env["limits"]["maxStorageBufferBindingSize"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(env["features"].is_array());

    let results = report["results"].as_array().unwrap();
    let mut groups = std::collections::BTreeSet::new();
    let (mut gflops, mut gbps, mut images) = (0, 0, 0);
    for e in results {
        assert!(e["error"].is_null(), "{e}");
        assert!(!e["name"].as_str().unwrap().is_empty());
        assert!(!e["shape"].as_str().unwrap().is_empty());
        assert!(
            text.contains(e["name"].as_str().unwrap()),
            "row missing: {e}"
        );
        groups.insert(e["group"].as_str().unwrap().to_string());
        assert!(e["runs"].as_u64().unwrap() >= 1 && e["reps_per_run"].as_u64().unwrap() >= 1);
        let t = &e["time_ms"];
        let [median, min, max] = ["median", "min", "max"].map(|k| positive_or_null(t, k).unwrap());
        assert!(min <= median && median <= max, "{t}");
        gflops += usize::from(positive_or_null(e, "gflops").is_some());
        gbps += usize::from(positive_or_null(e, "gbps").is_some());
        images += usize::from(positive_or_null(e, "images_per_sec").is_some());
        // GPU memory for GPU work; decoding images allocates none.
        let gpu_work = e["group"] != "data";
        assert_eq!(
            positive_or_null(e, "memory_bytes").is_some(),
            gpu_work,
            "{e}"
        );
    }
    let want = ["data", "inference", "kernel", "quantizer", "train"].map(String::from);
    assert_eq!(groups, want.into_iter().collect());
    assert!(gflops > 0 && gbps > 0 && images >= 2);

    // The same report with every benchmark twice as fast and the last one missing.
    let mut faster = Report::read(&json).unwrap();
    faster.results.pop();
    for e in &mut faster.results {
        let t = e.time_ms.as_mut().unwrap();
        (t.median, t.min, t.max) = (t.median / 2.0, t.min / 2.0, t.max / 2.0);
    }
    let faster_json = dir.join("faster.json");
    faster.write(&faster_json).unwrap();
    let (code, text) = vqvae(&[
        "bench",
        "--compare",
        json.to_str().unwrap(),
        faster_json.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("A: ") && text.contains("B: "), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            results
                .iter()
                .any(|e| l.starts_with(e["name"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(rows.len(), results.len(), "{text}");
    let (last, others) = rows.split_last().unwrap();
    assert!(others.iter().all(|l| l.ends_with("2.00x")), "{text}");
    assert!(last.ends_with(" -"), "{text}");
}

#[test]
fn stats_are_median_min_and_max() {
    let odd = Stats::of(&[3.0, 1.0, 2.0]);
    assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
    let even = Stats::of(&[4.0, 1.0, 2.0, 10.0]);
    assert_eq!((even.median, even.min, even.max), (3.0, 1.0, 10.0));
    let one = Stats::of(&[5.0]);
    assert_eq!((one.median, one.min, one.max), (5.0, 5.0, 5.0));
}

/// Runs `vqvae bench` expecting a clean failure; returns what it printed.
fn fails(args: &[&str]) -> String {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    let (code, text) = vqvae(&all);
    assert_eq!(code, Some(1), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

#[test]
fn adapter_choices_that_match_nothing_list_what_there_is() {
    let text = fails(&["--quick", "--backend", "vulcan"]);
    assert!(
        text.contains("'vulcan'") && text.contains("vulkan, metal, dx12 or gl"),
        "{text}"
    );
    // A backend this OS does not have: the error lists the adapters on the others.
    let absent = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    let text = fails(&["--quick", "--backend", absent]);
    assert!(text.contains(&format!("on backend {absent}")), "{text}");
    let present = vqvae_wgpu::gpu::adapters(&vqvae_wgpu::GpuOptions::default());
    assert!(!present.is_empty());
    for adapter in present {
        let listed = vqvae_wgpu::gpu::describe(&adapter.get_info());
        assert!(text.contains(&listed), "{listed} missing from: {text}");
    }
    let text = fails(&["--quick", "--adapter", "no such adapter"]);
    assert!(
        text.contains("'no such adapter'") && text.contains("found: "),
        "{text}"
    );
}

#[test]
fn bad_options_and_files_are_named() {
    assert!(fails(&["--runs", "0"]).contains("--runs 0"));
    assert!(fails(&["--only", "no such benchmark"]).contains("'no such benchmark'"));
    assert!(fails(&["--profile", "--runs", "0"]).contains("--runs 0"));
    assert!(fails(&["--profile", "--only", "no such benchmark"]).contains("'no such benchmark'"));
    let dir = temp_dir("bench-bad");
    let missing = dir.join("missing.json");
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{\"schema\": 1}").unwrap();
    let text = fails(&[
        "--compare",
        garbage.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert!(
        text.contains("garbage.json") && text.contains("not a `vqvae bench --json` report"),
        "{text}"
    );
    let text = fails(&[
        "--compare",
        missing.to_str().unwrap(),
        garbage.to_str().unwrap(),
    ]);
    assert!(text.contains("missing.json"), "{text}");
}

#[test]
fn wall_clock_timing_is_recorded_as_such_and_only_filters() {
    let dir = temp_dir("bench-wall");
    let json = dir.join("wall.json");
    let (code, text) = vqvae(&[
        "bench",
        "--only",
        "loss",
        "--wall-clock",
        "--runs",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let report = Report::read(&json).unwrap();
    assert_eq!(
        report.environment.timing,
        vqvae_wgpu::bench::Method::WallClock
    );
    assert_eq!(report.environment.timestamp_period_ns, None);
    assert_eq!(report.results.len(), 1, "{text}");
    let entry = &report.results[0];
    assert!(entry.name.contains("loss") && entry.runs == 2);
    let t = entry.time_ms.unwrap();
    assert!(t.min > 0.0 && t.min <= t.median && t.median <= t.max);
}

#[test]
fn a_profile_splits_a_benchmark_among_its_kernels() {
    let mut gpu = common::open_default();
    let options = vqvae_wgpu::bench::Options {
        runs: 2,
        only: Some("encode + decode, quick-start model".into()),
        quick: true,
        ..Default::default()
    };
    let mut profiles = Vec::new();
    let profiled = vqvae_wgpu::bench::profile(&mut gpu, &options, |p| profiles.push(p.clone()));
    if !gpu
        .device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        let e = profiled.unwrap_err().to_string();
        assert!(e.contains("--profile needs GPU timestamp queries"), "{e}");
        return;
    }
    profiled.unwrap();
    assert_eq!(profiles.len(), 1);
    let p = &profiles[0];
    assert!(
        p.rows.windows(2).all(|w| w[0].ms >= w[1].ms),
        "{}",
        p.table()
    );
    assert!(p.rows.iter().all(|r| r.calls > 0 && r.ms >= 0.0));
    // Inference runs the encoder's convolutions, the quantiser and the decoder's.
    for kernel in ["conv2d/", "quantize/", "conv_transpose2d/"] {
        assert!(
            p.rows.iter().any(|r| r.kernel.starts_with(kernel)),
            "{kernel} missing from:\n{}",
            p.table()
        );
    }
    // The dispatches timed one by one add up to about the batch timed whole.
    let whole = vqvae_wgpu::bench::run(&mut gpu, &options, |_| {})
        .unwrap()
        .results[0]
        .time_ms
        .unwrap()
        .median;
    let ratio = p.total_ms() / whole;
    assert!(
        (0.5..3.0).contains(&ratio),
        "{} ms against {whole} ms",
        p.total_ms()
    );

    let (code, text) = vqvae(&["bench", "--profile", "--runs", "1", "--only", "loss"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ms in 4 dispatches"), "{text}");
    assert!(text.contains("vqvae_loss/mse"), "{text}");
}

/// The reference model's training step: the tuning the kernel benchmarks run with.
fn reference_target() -> Target {
    Target {
        config: Config::reference(3),
        batch: 32,
        image: [32, 32],
    }
}

#[test]
fn benchmarks_run_with_the_tuning_cached_for_their_model() {
    let mut gpu = common::open_default();
    let default = gpu.tuning();
    // No packed GEMMs: a tuning that changes which kernels the convolution runs.
    let direct = Tuning {
        gemm_tile: None,
        ..default
    };
    let only = "encoder.conv3 forward";
    let options = |tunings| vqvae_wgpu::bench::Options {
        runs: 1,
        only: Some(only.into()),
        tunings,
        ..Default::default()
    };
    let targets = vqvae_wgpu::bench::tuning_targets(&options(Vec::new())).unwrap();
    assert_eq!(targets, [reference_target()]);

    let kernels = |gpu: &mut vqvae_wgpu::gpu::Gpu, tunings| {
        let mut names = Vec::new();
        vqvae_wgpu::bench::profile(gpu, &options(tunings), |p| {
            names.extend(p.rows.iter().map(|r| r.kernel.clone()))
        })
        .map(|()| names)
    };
    if let (Ok(packed), Ok(direct_names)) = (
        kernels(&mut gpu, Vec::new()),
        kernels(&mut gpu, vec![(reference_target(), direct)]),
    ) {
        assert!(packed.iter().any(|k| k.contains("gemm")), "{packed:?}");
        assert!(
            !direct_names.iter().any(|k| k.contains("gemm")),
            "{direct_names:?}"
        );
    }
    assert_eq!(gpu.tuning(), default, "the profile restores the tuning");

    let report = vqvae_wgpu::bench::run(
        &mut gpu,
        &options(vec![(reference_target(), direct)]),
        |_| {},
    )
    .unwrap();
    assert_eq!(report.results[0].tuning, Some(format!("{direct:?}")));
    assert!(report.results[0].error.is_none(), "{:?}", report.results[0]);
    assert_eq!(gpu.tuning(), default, "the suite restores the tuning");

    // End to end: `vqvae bench` finds the tuning in the cache; `--no-tune` ignores it.
    let dir = temp_dir("bench-tuned");
    let cache = dir.join("tuning.json");
    cache_tuning(&cache, &gpu, &reference_target(), direct);
    let json = dir.join("tuned.json");
    let args = [
        "bench",
        "--only",
        only,
        "--runs",
        "1",
        "--json",
        json.to_str().unwrap(),
    ];
    let (code, text) = vqvae_tuned(&args, &cache);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "tuning: cached for {}",
            reference_target().describe()
        )),
        "{text}"
    );
    let entry = &Report::read(&json).unwrap().results[0];
    assert_eq!(entry.tuning, Some(format!("{direct:?}")));
    let (code, text) = vqvae_tuned(&[&args[..], &["--no-tune"]].concat(), &cache);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("tuning: the adapter's default (--no-tune)"),
        "{text}"
    );
    assert_eq!(Report::read(&json).unwrap().results[0].tuning, None);

    // A corrupt cache costs a notice: the benchmarks run with the default.
    std::fs::write(&cache, "{ not json").unwrap();
    let (code, text) = vqvae_tuned(&args, &cache);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ignored: not JSON"), "{text}");
    assert!(text.contains("tuning: the adapter's default for"), "{text}");
    assert_eq!(Report::read(&json).unwrap().results[0].tuning, None);
}
