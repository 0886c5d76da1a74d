//! Launcher for `shaders/subgroups.wgsl`: how the device lays out its subgroups.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

/// Whether every subgroup of a one-dimensional workgroup of `invocations` threads is
/// `size` consecutive invocations starting at a multiple of `size`, as the packed GEMM's
/// shared loads of A need. Vulkan, Metal and DX12 leave the layout to the driver; every
/// driver known lays subgroups out so, and this asks the device rather than trust it
/// (once per workgroup size; `size` must divide `invocations`, and the device must have
/// subgroup operations: [`Gpu::subgroup_size`]).
pub fn consecutive(gpu: &Gpu, invocations: u32, size: u32) -> Result<bool> {
    let mut known = gpu
        .pipelines
        .subgroup_layouts
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(&answer) = known.get(&(invocations, size)) {
        return Ok(answer);
    }
    let kernel = gpu.kernel(
        &shaders::SUBGROUPS,
        "subgroup_layout",
        &[("WG", f64::from(invocations))],
        &[Bind::Write],
    )?;
    let sizes = Tensor::zeros(gpu, &[invocations as usize], DType::U32)?;
    let launch: Launch = gpu
        .dispatch("subgroup layout", &kernel, &[sizes.binding()], 1)?
        .into();
    gpu.run(&[&launch])?;
    let answer = sizes.to_u32(gpu)?.iter().all(|&s| s == size);
    known.insert((invocations, size), answer);
    Ok(answer)
}
