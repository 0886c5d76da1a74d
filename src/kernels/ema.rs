//! Launchers for `shaders/ema.wgsl`: the exponential-moving-average codebook update.

use crate::error::{Error, Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::quantize::{self, Rows};
use crate::kernels::vq_backward::CodeSums;
use crate::kernels::{codes, reduce};
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    codes: u32,
    dim: u32,
    chunks: u32,
    decay: f32,
    eps: f32,
    _pad: [u32; 3],
}

/// One EMA update of `codebook` `[K, D]` (f32) from the rows of `z` (f32, `[n, D]` or
/// `[batch, D, h, w]`) and their codes `indices` `[n]` (u32, the quantiser's output):
/// `cluster` `[K]` and `ema_w` `[K, D]` (f32) hold the moving averages (start them at zero, or
/// at counts and sums of a first batch). With `decay` 0 and `eps` 0 one update is one
/// Lloyd (k-means) iteration; codes never chosen keep their vectors.
#[allow(clippy::too_many_arguments)]
pub fn ema_update(
    gpu: &Gpu,
    z: &Tensor,
    indices: &Tensor,
    codebook: &Tensor,
    cluster: &Tensor,
    ema_w: &Tensor,
    decay: f32,
    eps: f32,
) -> Result<Launch> {
    let op = "ema_update";
    let k = quantize::codebook_shape(op, codebook, Rows::of(op, z)?.dim)?;
    let counts = Tensor::zeros(gpu, &[k], DType::U32)?;
    let stats = Tensor::zeros(gpu, &[2], DType::F32)?;
    Ok(
        codes::code_usage(gpu, indices, &counts, &stats)?.then(ema_update_counted(
            gpu, z, indices, &counts, codebook, cluster, ema_w, decay, eps,
        )?),
    )
}

/// [`ema_update`] for a caller that already counts the codes: `counts` `[K]` (u32) must
/// hold how often each code occurs in `indices` when the launch runs, as
/// [`codes::code_usage`] leaves it.
#[allow(clippy::too_many_arguments)]
pub fn ema_update_counted(
    gpu: &Gpu,
    z: &Tensor,
    indices: &Tensor,
    counts: &Tensor,
    codebook: &Tensor,
    cluster: &Tensor,
    ema_w: &Tensor,
    decay: f32,
    eps: f32,
) -> Result<Launch> {
    let parts = ema_update_parts(
        gpu, z, indices, counts, codebook, cluster, ema_w, decay, eps,
    )?;
    Ok(parts.statistics.then(parts.apply))
}

/// [`ema_update_counted`] in its two halves, for data-parallel training: between them
/// several processes can replace `partial` and `counts` by their sums over all the
/// processes' batches, and every process then applies the same update.
pub struct EmaParts {
    /// The batch's per-code sums of the assigned vectors into `partial`.
    pub statistics: Launch,
    /// The decayed statistics and the codebook, from `partial` and the counts.
    pub apply: Launch,
    /// `[chunks, K, D]`: the per-code sums, chunk by chunk (the update adds the chunks).
    pub partial: Tensor,
}

/// The halves of [`ema_update_counted`] ([`EmaParts`]).
#[allow(clippy::too_many_arguments)]
pub fn ema_update_parts(
    gpu: &Gpu,
    z: &Tensor,
    indices: &Tensor,
    counts: &Tensor,
    codebook: &Tensor,
    cluster: &Tensor,
    ema_w: &Tensor,
    decay: f32,
    eps: f32,
) -> Result<EmaParts> {
    let op = "ema_update";
    let rows = Rows::of(op, z)?;
    let (k, d) = (quantize::codebook_shape(op, codebook, rows.dim)?, rows.dim);
    for (name, t, dtype) in [
        ("z", z, DType::F32),
        ("indices", indices, DType::U32),
        ("codebook", codebook, DType::F32),
        ("cluster", cluster, DType::F32),
        ("ema_w", ema_w, DType::F32),
    ] {
        ensure(t.dtype() == dtype, op, || {
            format!("{name} holds {:?}, expected {dtype:?}", t.dtype())
        })?;
    }
    ensure(cluster.shape() == [k], op, || {
        format!(
            "cluster sizes have shape {:?}, expected [{k}]",
            cluster.shape()
        )
    })?;
    ensure(ema_w.shape() == codebook.shape(), op, || {
        format!(
            "EMA sums have shape {:?}, expected {:?}",
            ema_w.shape(),
            codebook.shape()
        )
    })?;
    ensure(indices.len() == rows.n, op, || {
        format!(
            "indices have shape {:?}, expected {} elements",
            indices.shape(),
            rows.n
        )
    })?;
    if !((0.0..1.0).contains(&decay) && eps >= 0.0 && eps.is_finite()) {
        return Err(Error::shape(
            op,
            format!("decay {decay} must be in [0, 1) and eps {eps} finite and >= 0"),
        ));
    }
    counts.expect_dtype(op, DType::U32)?;
    ensure(counts.shape() == [k], op, || {
        format!("counts have shape {:?}, expected [{k}]", counts.shape())
    })?;
    let total = Tensor::zeros(gpu, &[1], DType::F32)?;
    let sums = CodeSums::new(gpu, op, z, indices, codebook, false)?;
    let partial = sums.partial.clone();
    let params = Params {
        codes: k as u32,
        dim: d as u32,
        chunks: sums.chunks,
        decay,
        eps,
        _pad: [0; 3],
    };
    let binds = [
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Write,
        Bind::Write,
        Bind::Write,
    ];
    let kernel = |entry| gpu.kernel(&shaders::EMA, entry, &[("WG", f64::from(WG))], &binds);
    let uniform = gpu.uniform(&params);
    let resources = [
        uniform.as_entire_binding(),
        counts.binding(),
        sums.partial.binding(),
        total.binding(),
        cluster.binding(),
        ema_w.binding(),
        codebook.binding(),
    ];
    let wg = WG as usize;
    let sizes = gpu.dispatch(
        op,
        &kernel("cluster_sizes")?,
        &resources,
        k.div_ceil(wg) as u64,
    )?;
    let update = gpu.dispatch(
        op,
        &kernel("update")?,
        &resources,
        (k * d).div_ceil(wg) as u64,
    )?;
    Ok(EmaParts {
        statistics: sums.dispatch.into(),
        apply: Launch::from(sizes)
            .then(reduce::sum(gpu, cluster, &total)?)
            .then(update.into()),
        partial,
    })
}
