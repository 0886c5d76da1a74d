//! Launchers for `shaders/guard.wgsl`: a flag raised when a loss stops being finite, and
//! launches gated by it, so that a training run's updates stop at the first bad step
//! and its state stays that of the last good one.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    _pad: [u32; 3],
}

const BINDS: [Bind; 5] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Write,
    Bind::Write,
];

fn check_flag(op: &'static str, flag: &Tensor) -> Result<()> {
    flag.expect_dtype(op, DType::U32)?;
    ensure(flag.len() == 1, op, || {
        format!("the flag has shape {:?}, expected [1]", flag.shape())
    })
}

/// Raises `flag` (`[1]`, u32; start it at 0) when `value[0]` is NaN or infinite. It is
/// never lowered by a launch: write 0 to start over.
pub fn mark_non_finite(gpu: &Gpu, value: &Tensor, flag: &Tensor) -> Result<Launch> {
    let op = "mark_non_finite";
    value.expect_dtype(op, DType::F32)?;
    check_flag(op, flag)?;
    let kernel = gpu.kernel(&shaders::GUARD, "mark", &[("WG", f64::from(WG))], &BINDS)?;
    let uniform = gpu.uniform(&Params {
        len: 0,
        _pad: [0; 3],
    });
    let resources = [
        uniform.as_entire_binding(),
        value.binding(),
        gpu.unused(2),
        flag.binding(),
        gpu.unused(4),
    ];
    Ok(gpu.dispatch(op, &kernel, &resources, 1)?.into())
}

/// `launch` gated by `flag`: its dispatches run as they are while the flag is 0 and do
/// nothing once it is raised. Where the device cannot dispatch indirectly (some GL
/// drivers; [`Gpu::indirect_dispatch`] says), `launch` as it is, ungated.
pub fn guarded(gpu: &Gpu, launch: &Launch, flag: &Tensor) -> Result<Launch> {
    let op = "guarded";
    check_flag(op, flag)?;
    if !gpu.indirect_dispatch() || launch.is_empty() {
        return Ok(launch.clone());
    }
    let counts: Vec<u32> = launch.grids().concat();
    let counts_t = Tensor::from_u32(gpu, &[counts.len()], &counts)?;
    let args = gpu.scoped("allocating a guard's dispatch counts", || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("guarded counts"),
            size: 4 * counts.len() as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::INDIRECT,
            mapped_at_creation: false,
        })
    })?;
    let kernel = gpu.kernel(&shaders::GUARD, "gate", &[("WG", f64::from(WG))], &BINDS)?;
    let uniform = gpu.uniform(&Params {
        len: counts.len() as u32,
        _pad: [0; 3],
    });
    let resources = [
        uniform.as_entire_binding(),
        gpu.unused(1),
        counts_t.binding(),
        flag.binding(),
        args.as_entire_binding(),
    ];
    let gate = gpu.dispatch(
        op,
        &kernel,
        &resources,
        counts.len().div_ceil(WG as usize) as u64,
    )?;
    Ok(Launch::from(gate).then(launch.indirect(&args)))
}
