//! Launchers for `shaders/topk.wgsl`: the k nearest codes of each vector, for
//! re-ranking and beam search, in one dispatch per block of codes. For the nearest code
//! alone, [`super::quantize::quantize`] is the fast path.

use crate::error::{Error, Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::quantize::{Rows, codebook_shape};
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

/// The largest k.
pub const MAX_K: usize = 32;

const WG: u32 = 64;

/// Loop iterations one dispatch may run on Mesa's llvmpipe (it ends a loop nest after
/// 65535), with room to spare.
const LOOP_BUDGET: usize = 60_000;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    dim: u32,
    codes: u32,
    plane: u32,
    k: u32,
    first: u32,
    _pad: [u32; 2],
}

/// Writes the `k` nearest codes of each vector of `z` (`[n, dim]` or
/// `[batch, dim, h, w]`, f32) in `codebook` (`[codes, dim]`, f32) into `indices`
/// (`[n, k]`, u32) and their squared distances into `distances` (`[n, k]`, f32), nearest
/// first, ties to the lowest index. `k` is 1 to [`MAX_K`] and at most the codes.
pub fn top_k(
    gpu: &Gpu,
    z: &Tensor,
    codebook: &Tensor,
    k: usize,
    indices: &Tensor,
    distances: &Tensor,
) -> Result<Launch> {
    let op = "top_k";
    z.expect_dtype(op, DType::F32)?;
    let rows = Rows::of(op, z)?;
    let codes = codebook_shape(op, codebook, rows.dim)?;
    if k == 0 || k > MAX_K || k > codes {
        return Err(Error::shape(
            op,
            format!(
                "k {k}: must be from 1 to {} (the codes, at most {MAX_K})",
                codes.min(MAX_K)
            ),
        ));
    }
    if rows.n == 0 {
        return Err(Error::shape(op, "no vectors to search for"));
    }
    for (name, t, dtype) in [
        ("indices", indices, DType::U32),
        ("distances", distances, DType::F32),
    ] {
        t.expect_dtype(op, dtype)?;
        ensure(t.shape() == [rows.n, k], op, || {
            format!(
                "{name} have shape {:?}, expected [{}, {k}]",
                t.shape(),
                rows.n
            )
        })?;
    }
    let kernel = gpu.kernel(
        &shaders::TOPK,
        "top_k",
        &[("WG", f64::from(WG))],
        &[
            Bind::Uniform,
            Bind::Read,
            Bind::Read,
            Bind::Write,
            Bind::Write,
        ],
    )?;
    // Each code costs its distance loop and, at worst, a walk down the whole list.
    let block = (LOOP_BUDGET / (rows.dim + k + 2)).max(1);
    let groups = rows.n.div_ceil(WG as usize) as u64;
    (0..codes)
        .step_by(block)
        .map(|first| {
            let uniform = gpu.uniform(&Params {
                n: rows.n as u32,
                dim: rows.dim as u32,
                codes: block.min(codes - first) as u32,
                plane: rows.plane as u32,
                k: k as u32,
                first: first as u32,
                _pad: [0; 2],
            });
            let resources = [
                uniform.as_entire_binding(),
                z.binding(),
                codebook.binding(),
                indices.binding(),
                distances.binding(),
            ];
            gpu.dispatch(op, &kernel, &resources, groups)
        })
        .collect()
}
