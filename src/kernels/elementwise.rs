//! Launchers for `shaders/elementwise.wgsl`.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    _pad: [u32; 3],
}

fn binary(gpu: &Gpu, op: &'static str, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Launch> {
    for t in [a, b, out] {
        t.expect_dtype(op, DType::F32)?;
    }
    ensure(
        a.shape() == b.shape() && a.shape() == out.shape(),
        op,
        || {
            format!(
                "shapes {:?}, {:?} and output {:?} differ",
                a.shape(),
                b.shape(),
                out.shape()
            )
        },
    )?;
    let kernel = gpu.kernel(
        &shaders::ELEMENTWISE,
        op,
        &[("WG", f64::from(WG))],
        &[Bind::Uniform, Bind::Read, Bind::Read, Bind::Write],
    )?;
    let uniform = gpu.uniform(&Params {
        len: a.len() as u32,
        _pad: [0; 3],
    });
    let groups = a.len().div_ceil(WG as usize) as u64;
    let resources = [
        uniform.as_entire_binding(),
        a.binding(),
        b.binding(),
        out.binding(),
    ];
    Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
}

/// `out = a + b`.
pub fn add(gpu: &Gpu, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Launch> {
    binary(gpu, "add", a, b, out)
}
