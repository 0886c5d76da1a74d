//! Shared test helpers: a device per kernel tuning, a seeded generator, comparisons.
#![allow(dead_code)]

use std::sync::OnceLock;

use vqvae_wgpu::{DType, Gpu, GpuOptions, Tensor, Tuning};

/// Opens the test adapter (Vulkan unless WGPU_BACKEND says otherwise) with `tuning`.
fn open(tuning: Tuning) -> Gpu {
    let options = GpuOptions {
        backends: wgpu::Backends::VULKAN,
        ..GpuOptions::default()
    }
    .with_env();
    let mut gpu =
        Gpu::open_with(&options).unwrap_or_else(|e| panic!("tests need a GPU adapter: {e}"));
    gpu.set_tuning(tuning);
    gpu
}

/// One device per tuning, shared by the tests of a binary.
pub fn gpus() -> [&'static Gpu; 2] {
    static REG: OnceLock<Gpu> = OnceLock::new();
    static SHARED: OnceLock<Gpu> = OnceLock::new();
    [
        REG.get_or_init(|| open(Tuning::REGISTER)),
        SHARED.get_or_init(|| open(Tuning::SHARED)),
    ]
}

/// The device with the adapter's default tuning.
pub fn gpu() -> &'static Gpu {
    static DEFAULT: OnceLock<Gpu> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        let g = open(Tuning::REGISTER);
        let tuning = Tuning::for_adapter(g.info());
        open(tuning)
    })
}

/// SplitMix64: small, seeded, the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }
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
