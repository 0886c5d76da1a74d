//! Launchers for `shaders/restart.wgsl`: restarting codes that no vector chose.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::quantize::{self, Rows};
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    codes: u32,
    dim: u32,
    n: u32,
    plane: u32,
    seed: u32,
    step: u32,
    _pad: [u32; 2],
}

/// Dead-code restarts bound to a codebook, its usage and the encoder output.
pub struct Restart {
    accumulate: Launch,
    restart: Launch,
    uniform: wgpu::Buffer,
    params: Params,
}

impl Restart {
    /// Binds the restart of `codebook` `[K, D]` from rows of `z_e` (`[n, D]` or
    /// `[batch, D, h, w]`), counting usage from the per-step `counts` `[K]` (u32) into
    /// `window` `[K]` (u32). `moments` are the codebook's Adam moments, cleared on restart.
    pub fn new(
        gpu: &Gpu,
        codebook: &Tensor,
        counts: &Tensor,
        window: &Tensor,
        z_e: &Tensor,
        moments: Option<(&Tensor, &Tensor)>,
        seed: u64,
    ) -> Result<Restart> {
        let op = "restart";
        let rows = Rows::of(op, z_e)?;
        let (codes, dim) = (quantize::codebook_shape(op, codebook, rows.dim)?, rows.dim);
        for (name, t) in [("counts", counts), ("window", window)] {
            t.expect_dtype(op, DType::U32)?;
            ensure(t.len() == codes, op, || {
                format!("{name} has shape {:?}, expected [{codes}]", t.shape())
            })?;
        }
        if let Some((m, v)) = moments {
            ensure(
                m.shape() == codebook.shape() && v.shape() == codebook.shape(),
                op,
                || "moments must have the codebook's shape".into(),
            )?;
        }
        let constants = [
            ("WG", f64::from(WG)),
            ("HAS_MOMENTS", f64::from(u8::from(moments.is_some()))),
        ];
        let binds = [
            Bind::Uniform,
            Bind::Read,
            Bind::Write,
            Bind::Read,
            Bind::Write,
            Bind::Write,
            Bind::Write,
        ];
        let params = Params {
            codes: codes as u32,
            dim: dim as u32,
            n: rows.n as u32,
            plane: rows.plane as u32,
            seed: (seed ^ (seed >> 32)) as u32,
            step: 0,
            _pad: [0; 2],
        };
        let uniform = gpu.uniform(&params);
        let resources = [
            uniform.as_entire_binding(),
            counts.binding(),
            window.binding(),
            z_e.binding(),
            codebook.binding(),
            gpu.optional(moments.map(|m| m.0), 5),
            gpu.optional(moments.map(|m| m.1), 6),
        ];
        let groups = codes.div_ceil(WG as usize) as u64;
        let dispatch = |entry| -> Result<Launch> {
            Ok(gpu
                .dispatch(
                    op,
                    &gpu.kernel(&shaders::RESTART, entry, &constants, &binds)?,
                    &resources,
                    groups,
                )?
                .into())
        };
        Ok(Restart {
            accumulate: dispatch("accumulate")?,
            restart: dispatch("restart")?,
            uniform,
            params,
        })
    }

    /// Adds a step's counts to the window: record after every step's code usage.
    pub fn accumulate(&self) -> &Launch {
        &self.accumulate
    }

    /// The restart for `step`: call before submitting, then record the launch.
    pub fn restart(&self, gpu: &Gpu, step: u64) -> &Launch {
        let params = Params {
            step: step as u32,
            ..self.params
        };
        gpu.queue()
            .write_buffer(&self.uniform, 0, bytemuck::bytes_of(&params));
        &self.restart
    }
}
