//! Launchers for `shaders/vq_backward.wgsl`: the quantiser's backward pass.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::quantize::{self, Rows};
use crate::launch::{Bind, Dispatch, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;
/// The per-chunk partial sums of the codebook gradient stay under this many bytes.
const PARTIAL_BYTES: usize = 32 << 20;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    dim: u32,
    codes: u32,
    plane: u32,
    chunk: u32,
    chunks: u32,
    len: u32,
    commit: f32,
    scale: f32,
    _pad: [u32; 3],
}

const BINDINGS: [Bind; 6] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Read,
    Bind::Read,
    Bind::Write,
];

/// Gradients of `mean((sg[z_e] - z_q)^2) + beta * mean((z_e - sg[z_q])^2)` with the
/// decoder's gradient `grad_zq` passed straight through:
/// `grad_ze = grad_zq + 2 beta (z_e - z_q) / numel` and
/// `grad_codebook[k] = 2 / numel * sum over rows assigned to k of (e_k - z_e)`, unless
/// `grad_codebook` is `None` (an EMA codebook, which gets no gradient).
///
/// `ze`, `zq`, `grad_zq` and `grad_ze` share one shape (`[n, dim]` or
/// `[batch, dim, h, w]`); `indices` `[n]` are the quantiser's codes. The codebook
/// gradient is summed per chunk of rows, then over chunks, in a fixed order.
#[allow(clippy::too_many_arguments)]
pub fn vq_backward(
    gpu: &Gpu,
    ze: &Tensor,
    zq: &Tensor,
    indices: &Tensor,
    codebook: &Tensor,
    grad_zq: &Tensor,
    beta: f32,
    grad_ze: &Tensor,
    grad_codebook: Option<&Tensor>,
) -> Result<Launch> {
    let op = "vq_backward";
    let rows = Rows::of(op, ze)?;
    for (name, t) in [("z_q", zq), ("grad_zq", grad_zq), ("grad_ze", grad_ze)] {
        t.expect_dtype(op, DType::F32)?;
        ensure(t.shape() == ze.shape(), op, || {
            format!(
                "{name} has shape {:?}, expected z_e's {:?}",
                t.shape(),
                ze.shape()
            )
        })?;
    }
    indices.expect_dtype(op, DType::U32)?;
    ensure(indices.len() == rows.n, op, || {
        format!(
            "indices have shape {:?}, expected {} elements",
            indices.shape(),
            rows.n
        )
    })?;
    quantize::codebook_shape(op, codebook, rows.dim)?;
    if let Some(g) = grad_codebook {
        ensure(g.shape() == codebook.shape(), op, || {
            format!(
                "codebook gradient has shape {:?}, expected {:?}",
                g.shape(),
                codebook.shape()
            )
        })?;
    }
    let sums = match grad_codebook {
        Some(_) => Some(CodeSums::new(gpu, op, ze, indices, codebook, true)?),
        None => None,
    };
    let numel = ze.len() as f32;
    // ze_grad reads only the element count and the commitment factor.
    let params = Params {
        len: ze.len() as u32,
        commit: 2.0 * beta / numel,
        ..bytemuck::Zeroable::zeroed()
    };
    let kernel = |entry| {
        gpu.kernel(
            &shaders::VQ_BACKWARD,
            entry,
            &[("WG", f64::from(WG)), ("SUBTRACT_CODE", 1.0)],
            &BINDINGS,
        )
    };
    let uniform = gpu.uniform(&params);
    let wg = WG as usize;
    let ze_grad = gpu.dispatch(
        op,
        &kernel("ze_grad")?,
        &[
            uniform.as_entire_binding(),
            ze.binding(),
            zq.binding(),
            grad_zq.binding(),
            gpu.unused(4),
            grad_ze.binding(),
        ],
        ze.len().div_ceil(wg) as u64,
    )?;
    let (Some(sums), Some(grad_codebook)) = (sums, grad_codebook) else {
        return Ok(ze_grad.into());
    };
    let total = sums.total(gpu, op, -2.0 / numel, grad_codebook)?;
    Ok([ze_grad, sums.dispatch, total].into_iter().collect())
}

/// Per-code sums of the rows assigned to each code, chunk by chunk: `partial`
/// `[chunks, codes, dim]`, each chunk summed in row order by one workgroup, so that a
/// fixed-order pass over chunks gives deterministic totals.
pub(crate) struct CodeSums {
    pub dispatch: Dispatch,
    pub partial: Tensor,
    pub chunks: u32,
    params: Params,
}

impl CodeSums {
    /// Sums `z_e - codebook[k]` (`subtract`) or `z_e` alone over the rows assigned to `k`.
    pub fn new(
        gpu: &Gpu,
        op: &'static str,
        ze: &Tensor,
        indices: &Tensor,
        codebook: &Tensor,
        subtract: bool,
    ) -> Result<CodeSums> {
        let rows = Rows::of(op, ze)?;
        let codes = codebook.shape()[0];
        let per_chunk = codes * rows.dim * 4;
        let chunks = rows
            .n
            .div_ceil(64)
            .min(gpu.tuning().parallel_groups as usize)
            .min((PARTIAL_BYTES / per_chunk).max(1))
            .max(1);
        let chunk = rows.n.div_ceil(chunks);
        let chunks = rows.n.div_ceil(chunk);
        let params = Params {
            n: rows.n as u32,
            dim: rows.dim as u32,
            codes: codes as u32,
            plane: rows.plane as u32,
            chunk: chunk as u32,
            chunks: chunks as u32,
            len: ze.len() as u32,
            commit: 0.0,
            scale: 0.0,
            _pad: [0; 3],
        };
        let constants = [
            ("WG", f64::from(WG)),
            ("SUBTRACT_CODE", f64::from(u8::from(subtract))),
        ];
        let kernel = gpu.kernel(&shaders::VQ_BACKWARD, "code_sums", &constants, &BINDINGS)?;
        let partial = Tensor::zeros(gpu, &[chunks, codes, rows.dim], DType::F32)?;
        let uniform = gpu.uniform(&params);
        let dispatch = gpu.dispatch(
            op,
            &kernel,
            &[
                uniform.as_entire_binding(),
                ze.binding(),
                codebook.binding(),
                gpu.unused(3),
                indices.binding(),
                partial.binding(),
            ],
            chunks as u64,
        )?;
        Ok(CodeSums {
            dispatch,
            partial,
            chunks: params.chunks,
            params,
        })
    }

    /// The dispatch that sums the chunks in order: `out[k][d] = factor * total`.
    pub fn total(
        &self,
        gpu: &Gpu,
        op: &'static str,
        factor: f32,
        out: &Tensor,
    ) -> Result<Dispatch> {
        let params = Params {
            scale: -factor,
            ..self.params
        };
        let kernel = gpu.kernel(
            &shaders::VQ_BACKWARD,
            "codebook_grad",
            &[("WG", f64::from(WG)), ("SUBTRACT_CODE", 1.0)],
            &BINDINGS,
        )?;
        let uniform = gpu.uniform(&params);
        let len = (params.codes * params.dim) as usize;
        gpu.dispatch(
            op,
            &kernel,
            &[
                uniform.as_entire_binding(),
                gpu.unused(1),
                gpu.unused(2),
                self.partial.binding(),
                gpu.unused(4),
                out.binding(),
            ],
            len.div_ceil(WG as usize) as u64,
        )
    }
}
