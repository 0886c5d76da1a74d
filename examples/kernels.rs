//! The kernel library in thirty lines: open a GPU, run a convolution and the fused
//! quantiser, and check both against the plain-Rust references.
//!
//! `cargo run --release --example kernels`

use vqvae_wgpu::kernels::conv::{self, ConvShape};
use vqvae_wgpu::kernels::quantize::{self, Rows};
use vqvae_wgpu::reference;
use vqvae_wgpu::{DType, Gpu, Tensor};

fn main() -> vqvae_wgpu::Result<()> {
    let gpu = Gpu::open()?;
    println!("adapter: {}", vqvae_wgpu::gpu::describe(gpu.info()));

    // A 4x4, stride-2 convolution of a [2, 3, 16, 16] batch to 8 channels, then ReLU.
    let s = ConvShape {
        batch: 2,
        cin: 3,
        cout: 8,
        hin: 16,
        win: 16,
        kh: 4,
        kw: 4,
        stride: 2,
        pad: 1,
    };
    let data = |n: usize, k: u32| {
        (0..n as u32)
            .map(|i| ((i * 7919 + k) % 97) as f32 / 48.0 - 1.0)
            .collect::<Vec<f32>>()
    };
    let (x, w, b) = (data(2 * 3 * 16 * 16, 1), data(8 * 3 * 16, 2), data(8, 3));
    let xt = Tensor::from_f32(&gpu, &s.x_shape(), &x)?;
    let wt = Tensor::from_f32(&gpu, &s.w_shape(), &w)?;
    let bt = Tensor::from_f32(&gpu, &[8], &b)?;
    let y = Tensor::zeros(&gpu, &s.y_shape(), DType::F32)?;

    // Quantise the [2, 8, 8, 8] feature map against 5 codes of dimension 8.
    let codebook = Tensor::from_f32(&gpu, &[5, 8], &data(40, 4))?;
    let codes = Tensor::zeros(&gpu, &[2 * 8 * 8], DType::U32)?;
    let zq = Tensor::zeros(&gpu, &s.y_shape(), DType::F32)?;

    // Build the launches once, record them into one pass, submit, wait.
    let c = conv::conv2d(
        &gpu,
        &s,
        &xt,
        &wt,
        &bt,
        &y,
        conv::Relu::OUTPUT,
        conv::Epilogue::NONE,
    )?;
    let q = quantize::quantize(&gpu, &y, &codebook, &codes, None, Some(&zq))?;
    gpu.run(&[&c, &q])?;

    let w64 = |v: &[f32]| reference::widen(v);
    let want = reference::relu(&reference::conv::conv2d(&s, &w64(&x), &w64(&w), &w64(&b)));
    let got = y.to_f32(&gpu)?;
    let err = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max);
    println!("conv2d: largest difference from the reference {err:.2e}");
    let rows = Rows {
        n: 128,
        dim: 8,
        plane: 64,
    };
    let (nearest, _) = reference::quantize::nearest(
        &rows,
        &reference::widen(&got),
        &w64(&codebook.to_f32(&gpu)?),
    );
    let codes = codes.to_u32(&gpu)?;
    let agree = codes.iter().zip(&nearest).filter(|(a, b)| a == b).count();
    println!(
        "quantize: {agree} of {} codes as the reference chose; first row's: {:?}",
        codes.len(),
        &codes[..8]
    );
    Ok(())
}
