//! Shared test helpers: a device per kernel tuning, a seeded generator, comparisons.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Once, OnceLock};

use vqvae_wgpu::gpu::{GpuOptions, best_adapter, describe};
use vqvae_wgpu::{DType, Gpu, Tensor, Tuning};

pub mod caller;

/// Opens the adapter the `vqvae` command line would choose (`Gpu::open`: WGPU_BACKEND
/// and WGPU_ADAPTER_NAME when set, else hardware first and native backends before GL),
/// and says once per test binary which one it is.
pub fn open_default() -> Gpu {
    let gpu = Gpu::open().unwrap_or_else(|e| panic!("tests need a GPU adapter: {e}"));
    announce(|| describe(gpu.info()));
    gpu
}

/// The adapter [`open_default`] opens, for tests that make their device themselves.
pub fn default_adapter() -> wgpu::Adapter {
    let adapter = best_adapter(&GpuOptions::default().with_env())
        .unwrap_or_else(|e| panic!("tests need a GPU adapter: {e}"));
    announce(|| describe(&adapter.get_info()));
    adapter
}

/// Says once per test binary which adapter the tests use.
fn announce(adapter: impl FnOnce() -> String) {
    static SAID: Once = Once::new();
    SAID.call_once(|| note(&format!("tests run on: {}", adapter())));
}

/// The test adapter with `tuning`.
fn open(tuning: Tuning) -> Gpu {
    let mut gpu = open_default();
    gpu.set_tuning(tuning);
    gpu
}

/// Tiles no adapter would choose: odd workgroups, odd rows per thread, few workgroups
/// before a reduction splits, packed operands cut into many small slices, for the
/// register kernels (direct and packed) and the shared-memory ones.
pub const ODD: [Tuning; 2] = [
    Tuning {
        shared_memory: false,
        conv_workgroup: [5, 3],
        conv_tile: [3, 5],
        gemm_tile: Some([3, 8]),
        gemm_shared: false,
        gemm_subgroup: true,
        packed_from: 5,
        quantize_workgroup: 24,
        quantize_rows: 3,
        quantize_tile: Some([3, 5]),
        quantize_subgroup: true,
        parallel_groups: 5,
        pack_floats: 1500,
    },
    Tuning {
        shared_memory: true,
        conv_workgroup: [3, 5],
        conv_tile: [5, 4],
        gemm_tile: Some([3, 4]),
        gemm_shared: true,
        gemm_subgroup: false,
        packed_from: 16,
        quantize_workgroup: 40,
        quantize_rows: 2,
        quantize_tile: None,
        quantize_subgroup: false,
        parallel_groups: 7,
        pack_floats: 1500,
    },
];

/// One device per tuning (the register and shared-memory defaults, and the odd tiles
/// of each), shared by the tests of a binary.
pub fn gpus() -> [&'static Gpu; 4] {
    static GPUS: [OnceLock<Gpu>; 4] = [const { OnceLock::new() }; 4];
    let tunings = [Tuning::REGISTER, Tuning::SHARED, ODD[0], ODD[1]];
    std::array::from_fn(|i| GPUS[i].get_or_init(|| open(tunings[i])))
}

/// The device with the adapter's default tuning.
pub fn gpu() -> &'static Gpu {
    static DEFAULT: OnceLock<Gpu> = OnceLock::new();
    DEFAULT.get_or_init(open_default)
}

/// Prints a line past the test harness's capture (it captures only print macros), for
/// what a reader of the run must see: the adapter, a check that this backend cannot make.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub use vqvae_wgpu::rng::Rng;

/// Random test data.
pub trait Sample {
    /// `n` values uniform in [-1, 1).
    fn vec(&mut self, n: usize) -> Vec<f32>;
}

impl Sample for Rng {
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform(-1.0, 1.0) as f32).collect()
    }
}

/// A fresh empty folder under the system's temporary folder.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vqvae-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `vqvae` binary; returns its exit code and what it printed. Training runs
/// and benchmarks get `--no-tune` (the adapter's default tuning; no user cache is read
/// or written): tests of tuning call [`vqvae_tuned`].
pub fn vqvae(args: &[&str]) -> (Option<i32>, String) {
    let mut args = args.to_vec();
    if matches!(args.first(), Some(&"train" | &"bench")) {
        args.push("--no-tune");
    }
    run(std::process::Command::new(env!("CARGO_BIN_EXE_vqvae")).args(args))
}

/// Runs [`vqvae`], which must succeed; returns what it printed.
pub fn vqvae_ok(args: &[&str]) -> String {
    let (code, text) = vqvae(args);
    assert_eq!(code, Some(0), "vqvae {args:?}:\n{text}");
    text
}

/// Runs [`vqvae`], which must fail cleanly (status 1, no panic); returns what it printed.
pub fn vqvae_fails(args: &[&str]) -> String {
    let (code, text) = vqvae(args);
    assert_eq!(code, Some(1), "vqvae {args:?} should fail cleanly:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

/// Writes a tuning cache at `cache` holding `tuning` for `target` on `gpu`, as if
/// `vqvae tune` had found it.
pub fn cache_tuning(
    cache: &std::path::Path,
    gpu: &Gpu,
    target: &vqvae_wgpu::tune::Target,
    tuning: Tuning,
) {
    use vqvae_wgpu::tune::cache::{Cache, Entry, Key};
    Cache::open(Some(cache.to_path_buf()), &mut |n| panic!("{n}"))
        .put(Entry {
            key: Key::of(gpu, target),
            tuning,
            default_step_ms: 1.0,
            step_ms: 1.0,
            date: "now".into(),
        })
        .unwrap();
}

/// Runs the `vqvae` binary as given, its tuning cache at `cache` (`VQVAE_TUNING`).
pub fn vqvae_tuned(args: &[&str], cache: &std::path::Path) -> (Option<i32>, String) {
    run(std::process::Command::new(env!("CARGO_BIN_EXE_vqvae"))
        .args(args)
        .env("VQVAE_TUNING", cache))
}

fn run(command: &mut std::process::Command) -> (Option<i32>, String) {
    announce(|| match best_adapter(&GpuOptions::default().with_env()) {
        Ok(adapter) => describe(&adapter.get_info()),
        Err(e) => e.to_string(),
    });
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

pub fn upload(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_f32(gpu, shape, data).unwrap()
}

pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Tensor {
    Tensor::zeros(gpu, shape, DType::F32).unwrap()
}

pub fn widen(x: &[f32]) -> Vec<f64> {
    vqvae_wgpu::reference::widen(x)
}

/// Asserts |got - want| <= atol + rtol * |want| element-wise.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs() - (atol + rtol * w.abs());
        if err > worst.0 || !g.is_finite() {
            worst = (err.max(f64::MAX * f64::from(u8::from(!g.is_finite()))), i);
        }
    }
    let i = worst.1;
    assert!(
        worst.0 <= 0.0,
        "{what}: element {i} is {} but the reference says {}",
        got[i],
        want[i]
    );
}

/// Central finite differences of `f` at `x` in f64.
pub fn numeric_grad(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let h = 1e-6;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let v = x[i];
            x[i] = v + h;
            let up = f(&x);
            x[i] = v - h;
            let down = f(&x);
            x[i] = v;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Asserts two f64 gradients agree to finite-difference precision.
pub fn assert_grad(what: &str, analytic: &[f64], numeric: &[f64]) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: length");
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= 1e-6 + 1e-6 * n.abs(),
            "{what}: element {i}: analytic {a}, numeric {n}"
        );
    }
}

/// Checks a run's curves (`metrics.png`, `prior_metrics.png`): a 1200x800 picture with
/// lines in each of `colors` and text (dark pixels) in the panel titles, which the
/// built-in font draws on any machine.
pub fn assert_curves(png: &std::path::Path, colors: &[[u8; 3]]) {
    let img = image::open(png)
        .unwrap_or_else(|e| panic!("{}: {e}", png.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), (1200, 800), "{}", png.display());
    for color in colors {
        let n = img.pixels().filter(|p| p.0 == *color).count();
        assert!(n > 50, "{}: {n} pixels of {color:?}", png.display());
    }
    let text = (0..img.width())
        .flat_map(|x| (0..30).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 80))
        .count();
    assert!(
        text > 100,
        "{}: no title text ({text} dark pixels)",
        png.display()
    );
}

/// A tiny model that trains in milliseconds a step on lavapipe, batch 4.
pub const TINY_MODEL: [&str; 12] = [
    "--hidden",
    "8",
    "--res-hidden",
    "4",
    "--res-layers",
    "1",
    "--codes",
    "16",
    "--code-dim",
    "4",
    "--batch-size",
    "4",
];

/// `vqvae train --out OUT`, the tiny model, then `flags`: arguments for [`vqvae`].
pub fn tiny_train<'a>(out: &'a std::path::Path, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend_from_slice(&TINY_MODEL);
    args.extend_from_slice(flags);
    args
}

/// Every tensor of the model checkpoint in `dir` as bits, sorted by name: two runs give
/// equal lists exactly when their weights are the same.
pub fn model_bits(dir: &std::path::Path) -> Vec<(String, Vec<u32>)> {
    let file = vqvae_wgpu::checkpoint::TensorFile::read(&dir.join("checkpoint.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tensors: Vec<_> = file
        .tensors
        .into_iter()
        .map(|(k, (_, v))| (k, v.iter().map(|x| x.to_bits()).collect()))
        .collect();
    tensors.sort();
    tensors
}
