//! Embedding lookup and its deterministic backward pass, for the prior's input: the
//! lookup is the quantiser's gather, the backward the per-code sums of its backward
//! pass (`shaders/quantize.wgsl` and `shaders/vq_backward.wgsl`).

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::quantize::{self, Rows};
use crate::kernels::vq_backward::CodeSums;
use crate::launch::Launch;
use crate::tensor::{DType, Tensor};

/// `out[row] = table[indices[row]]`: rows of `out` (`[n, dim]`, or channels-first
/// `[batch, dim, h, w]`) from a table `[K, dim]`.
pub fn embedding(gpu: &Gpu, indices: &Tensor, table: &Tensor, out: &Tensor) -> Result<Launch> {
    quantize::gather(gpu, indices, table, out)
}

/// `grad_table[k] = sum of grad_out's rows whose index is k`, summed per chunk of rows
/// and then over chunks in a fixed order: the same bits every run, without atomics.
pub fn embedding_grad(
    gpu: &Gpu,
    indices: &Tensor,
    grad_out: &Tensor,
    grad_table: &Tensor,
) -> Result<Launch> {
    let op = "embedding_grad";
    let rows = Rows::of(op, grad_out)?;
    indices.expect_dtype(op, DType::U32)?;
    ensure(indices.len() == rows.n, op, || {
        format!(
            "indices have shape {:?}, expected {} elements (one per row of {:?})",
            indices.shape(),
            rows.n,
            grad_out.shape()
        )
    })?;
    quantize::codebook_shape(op, grad_table, rows.dim)?;
    let sums = CodeSums::new(gpu, op, grad_out, indices, grad_table, false)?;
    let total = sums.total(gpu, op, 1.0, grad_table)?;
    Ok([sums.dispatch, total].into_iter().collect())
}
