//! Launchers for `shaders/loss.wgsl`: the VQ-VAE loss, its terms and the
//! reconstruction gradient.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::reduce;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;
const BLOCK: usize = WG as usize * 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    block: u32,
    vq_len: u32,
    beta: f32,
}

const BINDINGS: [Bind; 5] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Write,
    Bind::Write,
];

/// The loss of DESIGN.md section 1 and the reconstruction gradient.
///
/// Writes `grad_xhat = 2 (x_hat - x) / numel` and `terms` `[4]` =
/// `[loss, mean((x_hat - x)^2), mean(||z_e - z_q||^2) (codebook term),
/// beta * the same (commitment term)]`, given the quantiser's per-row squared
/// distances `dist` and the element count of `z_e`. Without `codebook_term` (an EMA
/// codebook) that term is 0 and leaves the loss.
#[allow(clippy::too_many_arguments)]
pub fn vqvae_loss(
    gpu: &Gpu,
    x_hat: &Tensor,
    x: &Tensor,
    dist: &Tensor,
    ze_len: usize,
    beta: f32,
    codebook_term: bool,
    grad_xhat: &Tensor,
    terms: &Tensor,
) -> Result<Launch> {
    let op = "vqvae_loss";
    for t in [x_hat, x, dist, grad_xhat, terms] {
        t.expect_dtype(op, DType::F32)?;
    }
    ensure(
        x_hat.shape() == x.shape() && grad_xhat.shape() == x.shape(),
        op,
        || {
            format!(
                "reconstruction {:?}, input {:?} and gradient {:?} must have one shape",
                x_hat.shape(),
                x.shape(),
                grad_xhat.shape()
            )
        },
    )?;
    ensure(terms.shape() == [4], op, || {
        format!("terms have shape {:?}, expected [4]", terms.shape())
    })?;
    ensure(ze_len > 0, op, || "z_e has no elements".into())?;
    let constants = [
        ("WG", f64::from(WG)),
        ("CODEBOOK_TERM", f64::from(u8::from(codebook_term))),
    ];
    // The MSE pass reads only WG, so both losses share its pipeline.
    let kernel = |entry, n| gpu.kernel(&shaders::LOSS, entry, &constants[..n], &BINDINGS);
    let groups = x.len().div_ceil(BLOCK);
    let partial = Tensor::zeros(gpu, &[groups], DType::F32)?;
    let sse = Tensor::zeros(gpu, &[1], DType::F32)?;
    let dist_sum = Tensor::zeros(gpu, &[1], DType::F32)?;
    let uniform = gpu.uniform(&Params {
        len: x.len() as u32,
        block: BLOCK as u32,
        vq_len: ze_len as u32,
        beta,
    });
    let u = uniform.as_entire_binding();
    let mse = gpu.dispatch(
        op,
        &kernel("mse", 1)?,
        &[
            u.clone(),
            x_hat.binding(),
            x.binding(),
            grad_xhat.binding(),
            partial.binding(),
        ],
        groups as u64,
    )?;
    let combine = gpu.dispatch(
        op,
        &kernel("terms", 2)?,
        &[
            u,
            sse.binding(),
            dist_sum.binding(),
            gpu.unused(3),
            terms.binding(),
        ],
        1,
    )?;
    Ok(Launch::from(mse)
        .then(reduce::sum(gpu, &partial, &sse)?)
        .then(reduce::sum(gpu, dist, &dist_sum)?)
        .then(combine.into()))
}
