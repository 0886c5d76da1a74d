//! Launchers for `shaders/optim.wgsl`: Adam and SGD over flat parameter buffers.

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
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    bc2_sqrt: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    _pad: [u32; 3],
}

/// Adam's hyper-parameters; the defaults are `torch.optim.Adam`'s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

fn check_same(op: &'static str, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let first = tensors[0].1;
    for (name, t) in tensors {
        t.expect_dtype(op, DType::F32)?;
        ensure(t.len() == first.len(), op, || {
            format!(
                "{name} has {} elements, expected {} like {}",
                t.len(),
                first.len(),
                tensors[0].0
            )
        })?;
    }
    Ok(())
}

/// An Adam update bound to its tensors. Call [`Adam::set_step`] before submitting each
/// step's work: the bias corrections depend on the step number, and a schedule changes
/// the learning rate.
pub struct Adam {
    launch: Launch,
    uniform: wgpu::Buffer,
    config: AdamConfig,
    len: u32,
}

impl Adam {
    /// Binds an update of `params` by `grads` with the moments `m` and `v` (all the
    /// same length; moments start at zero).
    pub fn new(
        gpu: &Gpu,
        params: &Tensor,
        grads: &Tensor,
        m: &Tensor,
        v: &Tensor,
        config: AdamConfig,
    ) -> Result<Adam> {
        let op = "adam";
        check_same(
            op,
            &[("params", params), ("grads", grads), ("m", m), ("v", v)],
        )?;
        let kernel = gpu.kernel(
            &shaders::OPTIM,
            "adam",
            &[("WG", f64::from(WG))],
            &[
                Bind::Uniform,
                Bind::Read,
                Bind::Write,
                Bind::Write,
                Bind::Write,
            ],
        )?;
        let len = params.len() as u32;
        let uniform = gpu.uniform(&adam_params(len, &config, 1));
        let resources = [
            uniform.as_entire_binding(),
            grads.binding(),
            params.binding(),
            m.binding(),
            v.binding(),
        ];
        let launch = gpu
            .dispatch(
                op,
                &kernel,
                &resources,
                params.len().div_ceil(WG as usize) as u64,
            )?
            .into();
        Ok(Adam {
            launch,
            uniform,
            config,
            len,
        })
    }

    /// Sets the step number (1 for the first update) and the learning rate used by the
    /// next submitted launch.
    pub fn set_step(&self, gpu: &Gpu, step: u64, lr: f64) {
        let config = AdamConfig { lr, ..self.config };
        let params = adam_params(self.len, &config, step);
        gpu.queue()
            .write_buffer(&self.uniform, 0, bytemuck::bytes_of(&params));
    }

    /// The update's dispatches.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }
}

/// Bias corrections as torch computes them: in f64, then rounded once.
fn adam_params(len: u32, c: &AdamConfig, step: u64) -> Params {
    let t = step.max(1) as i32;
    let bc1 = 1.0 - c.beta1.powi(t);
    let bc2 = 1.0 - c.beta2.powi(t);
    Params {
        len,
        lr: c.lr as f32,
        beta1: c.beta1 as f32,
        beta2: c.beta2 as f32,
        eps: c.eps as f32,
        step_size: (c.lr / bc1) as f32,
        bc2_sqrt: bc2.sqrt() as f32,
        one_minus_beta1: (1.0 - c.beta1) as f32,
        one_minus_beta2: (1.0 - c.beta2) as f32,
        _pad: [0; 3],
    }
}

/// Plain SGD bound to its tensors: `params -= lr * grads`.
pub struct Sgd {
    launch: Launch,
    uniform: wgpu::Buffer,
    len: u32,
}

impl Sgd {
    /// Binds an update of `params` by `grads` (the same length) at rate `lr`.
    pub fn new(gpu: &Gpu, params: &Tensor, grads: &Tensor, lr: f32) -> Result<Sgd> {
        let op = "sgd";
        check_same(op, &[("params", params), ("grads", grads)])?;
        let kernel = gpu.kernel(
            &shaders::OPTIM,
            "sgd",
            &[("WG", f64::from(WG))],
            &[Bind::Uniform, Bind::Read, Bind::Write],
        )?;
        let len = params.len() as u32;
        let uniform = gpu.uniform(&sgd_params(len, lr));
        let resources = [
            uniform.as_entire_binding(),
            grads.binding(),
            params.binding(),
        ];
        let launch = gpu
            .dispatch(
                op,
                &kernel,
                &resources,
                params.len().div_ceil(WG as usize) as u64,
            )?
            .into();
        Ok(Sgd {
            launch,
            uniform,
            len,
        })
    }

    /// Sets the learning rate of the next submitted launch.
    pub fn set_lr(&self, gpu: &Gpu, lr: f32) {
        gpu.queue().write_buffer(
            &self.uniform,
            0,
            bytemuck::bytes_of(&sgd_params(self.len, lr)),
        );
    }

    /// The update's dispatch.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }
}

fn sgd_params(len: u32, lr: f32) -> Params {
    Params {
        len,
        lr,
        ..bytemuck::Zeroable::zeroed()
    }
}
