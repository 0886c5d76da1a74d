//! Launchers for `shaders/reduce.wgsl`: deterministic sums.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::launch::{Bind, Kernel, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;
/// Threads of `channel_sum`'s workgroup (one a channel). On lavapipe 64 threads summed
/// the quick-start step's bias gradients at batch 32 about 2x as fast as 256 did (fewer
/// threads to wait at each of the final tree's barriers, a shorter tree; BENCHMARKS.md).
const CHANNEL_WG: u32 = 64;
/// Elements each workgroup of `sum_blocks` adds.
const BLOCK: usize = WG as usize * 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    parts: u32,
    inner: u32,
    _pad: u32,
}

fn kernel(gpu: &Gpu, entry: &'static str, wg: u32) -> Result<Kernel> {
    gpu.kernel(
        &shaders::REDUCE,
        entry,
        &[("WG", f64::from(wg))],
        &[Bind::Uniform, Bind::Read, Bind::Write],
    )
}

fn run(
    gpu: &Gpu,
    op: &'static str,
    k: &Kernel,
    params: Params,
    src: &Tensor,
    dst: &Tensor,
    groups: u64,
) -> Result<Launch> {
    let uniform = gpu.uniform(&params);
    Ok(gpu
        .dispatch(
            op,
            k,
            &[uniform.as_entire_binding(), src.binding(), dst.binding()],
            groups,
        )?
        .into())
}

/// `out[i] = sum_z partial[z, i]` over `splits` partial results, in order of `z`.
pub(crate) fn sum_splits(
    gpu: &Gpu,
    partial: &Tensor,
    splits: usize,
    out: &Tensor,
) -> Result<Launch> {
    let len = out.len();
    let params = Params {
        len: len as u32,
        parts: splits as u32,
        inner: 0,
        _pad: 0,
    };
    run(
        gpu,
        "sum_splits",
        &kernel(gpu, "sum_splits", WG)?,
        params,
        partial,
        out,
        len.div_ceil(WG as usize) as u64,
    )
}

/// `out[c]` = the sum of channel `c` of `x` `[batch, channels, ...]`: a bias gradient.
pub fn channel_sum(gpu: &Gpu, x: &Tensor, out: &Tensor) -> Result<Launch> {
    let op = "channel_sum";
    x.expect_dtype(op, DType::F32)?;
    out.expect_dtype(op, DType::F32)?;
    ensure(x.shape().len() >= 2, op, || {
        format!("input shape {:?} has no channel axis", x.shape())
    })?;
    let (batch, channels) = (x.shape()[0], x.shape()[1]);
    ensure(out.shape() == [channels], op, || {
        format!(
            "output has shape {:?}, expected [{channels}] for input {:?}",
            out.shape(),
            x.shape()
        )
    })?;
    let inner = x.len() / (batch * channels);
    let params = Params {
        len: channels as u32,
        parts: batch as u32,
        inner: inner as u32,
        _pad: 0,
    };
    let k = kernel(gpu, "channel_sum", CHANNEL_WG)?;
    run(gpu, op, &k, params, x, out, channels as u64)
}

/// `out[0]` = the sum of every element of `x`, by a fixed tree of partial sums.
/// Scratch space for the tree is allocated here, once.
pub fn sum(gpu: &Gpu, x: &Tensor, out: &Tensor) -> Result<Launch> {
    let op = "sum";
    x.expect_dtype(op, DType::F32)?;
    out.expect_dtype(op, DType::F32)?;
    ensure(out.len() == 1, op, || {
        format!("output has shape {:?}, expected [1]", out.shape())
    })?;
    let mut launch = Launch::default();
    let mut src = x.clone();
    loop {
        let len = src.len();
        let groups = len.div_ceil(BLOCK);
        let dst = if groups == 1 {
            out.clone()
        } else {
            Tensor::zeros(gpu, &[groups], DType::F32)?
        };
        let params = Params {
            len: len as u32,
            parts: BLOCK as u32,
            inner: 0,
            _pad: 0,
        };
        launch = launch.then(run(
            gpu,
            op,
            &kernel(gpu, "sum_blocks", WG)?,
            params,
            &src,
            &dst,
            groups as u64,
        )?);
        if groups == 1 {
            return Ok(launch);
        }
        src = dst;
    }
}
