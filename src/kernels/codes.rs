//! Launchers for `shaders/codes.wgsl`: code usage.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    codes: u32,
    _pad: [u32; 2],
}

/// Counts how often each code occurs in `indices` into `counts` `[codes]` (u32), and
/// writes `stats` `[2]` = `[perplexity, codes in use]`. Perplexity is
/// `exp(-sum q log q)` over the code frequencies `q`.
pub fn code_usage(gpu: &Gpu, indices: &Tensor, counts: &Tensor, stats: &Tensor) -> Result<Launch> {
    let op = "code_usage";
    indices.expect_dtype(op, DType::U32)?;
    counts.expect_dtype(op, DType::U32)?;
    stats.expect_dtype(op, DType::F32)?;
    ensure(counts.shape().len() == 1, op, || {
        format!("counts have shape {:?}, expected [codes]", counts.shape())
    })?;
    ensure(stats.shape() == [2], op, || {
        format!("stats have shape {:?}, expected [2]", stats.shape())
    })?;
    let binds = [Bind::Uniform, Bind::Read, Bind::Write, Bind::Write];
    let kernel = |entry| gpu.kernel(&shaders::CODES, entry, &[("WG", f64::from(WG))], &binds);
    let uniform = gpu.uniform(&Params {
        n: indices.len() as u32,
        codes: counts.len() as u32,
        _pad: [0; 2],
    });
    let resources = [
        uniform.as_entire_binding(),
        indices.binding(),
        counts.binding(),
        stats.binding(),
    ];
    let wg = WG as usize;
    Ok([
        gpu.dispatch(
            op,
            &kernel("clear")?,
            &resources,
            counts.len().div_ceil(wg) as u64,
        )?,
        gpu.dispatch(
            op,
            &kernel("histogram")?,
            &resources,
            indices.len().div_ceil(wg) as u64,
        )?,
        gpu.dispatch(op, &kernel("perplexity")?, &resources, 1)?,
    ]
    .into_iter()
    .collect())
}
