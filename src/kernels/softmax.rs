//! Launchers for `shaders/softmax.wgsl`: cross-entropy over code logits and categorical
//! sampling, for the prior over code grids.

use crate::error::{Error, Result, ensure};
use crate::gpu::Gpu;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    codes: u32,
    plane: u32,
    pos: u32,
    scale: f32,
    inv_temp: f32,
    seed: u32,
    at: u32,
}

const BINDINGS: [Bind; 5] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Write,
    Bind::Write,
    Bind::Write,
];

/// `[batch, K, plane]` of channels-first logits `[batch, K, h, w]`.
fn logit_shape(op: &'static str, logits: &Tensor) -> Result<[usize; 3]> {
    logits.expect_dtype(op, DType::F32)?;
    match *logits.shape() {
        [batch, k, h, w] if k > 0 => Ok([batch, k, h * w]),
        _ => Err(Error::shape(
            op,
            format!(
                "logits have shape {:?}, expected [batch, K, h, w]",
                logits.shape()
            ),
        )),
    }
}

/// Softmax cross-entropy of logits `[batch, K, h, w]` against `targets` (u32,
/// `[batch * h * w]`, each below K): `losses[i] = -log softmax(logits at i)[target i]`
/// and `grad = (softmax - one_hot(target)) / positions`, the gradient of the mean loss.
pub fn softmax_xent(
    gpu: &Gpu,
    logits: &Tensor,
    targets: &Tensor,
    grad: &Tensor,
    losses: &Tensor,
) -> Result<Launch> {
    let op = "softmax_xent";
    let [batch, k, plane] = logit_shape(op, logits)?;
    let rows = batch * plane;
    targets.expect_dtype(op, DType::U32)?;
    grad.expect_dtype(op, DType::F32)?;
    losses.expect_dtype(op, DType::F32)?;
    ensure(targets.len() == rows && losses.len() == rows, op, || {
        format!(
            "targets {:?} and losses {:?} must have {rows} elements, one per position",
            targets.shape(),
            losses.shape()
        )
    })?;
    ensure(grad.shape() == logits.shape(), op, || {
        format!(
            "gradient has shape {:?}, expected the logits' {:?}",
            grad.shape(),
            logits.shape()
        )
    })?;
    let kernel = gpu.kernel(
        &shaders::SOFTMAX,
        "xent",
        &[("WG", f64::from(WG))],
        &BINDINGS,
    )?;
    let uniform = gpu.uniform(&Params {
        rows: rows as u32,
        codes: k as u32,
        plane: plane as u32,
        pos: 0,
        scale: 1.0 / rows as f32,
        inv_temp: 0.0,
        seed: 0,
        at: 0,
    });
    let resources = [
        uniform.as_entire_binding(),
        logits.binding(),
        targets.binding(),
        grad.binding(),
        losses.binding(),
    ];
    let groups = rows.div_ceil(WG as usize) as u64;
    Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
}

/// Draws, for every image `b`, code `codes[b * h * w + pos]` from
/// `softmax(logits[b, :, pos] / temperature)`, with the uniform variate a hash of
/// `seed`, `b` and `at`, the position in the whole grid (`pos` itself unless the
/// logits cover a band of it; see `reference::prior::sample`). Temperatures near 0
/// give the argmax.
pub fn sample(
    gpu: &Gpu,
    logits: &Tensor,
    codes: &Tensor,
    pos: usize,
    at: usize,
    temperature: f32,
    seed: u32,
) -> Result<Launch> {
    let op = "sample";
    let [batch, k, plane] = logit_shape(op, logits)?;
    codes.expect_dtype(op, DType::U32)?;
    ensure(codes.len() == batch * plane, op, || {
        format!(
            "codes have shape {:?}, expected {} elements (batch x h x w)",
            codes.shape(),
            batch * plane
        )
    })?;
    ensure(pos < plane, op, || {
        format!("position {pos} is outside the {plane} positions of a grid")
    })?;
    ensure(temperature > 0.0 && temperature.is_finite(), op, || {
        format!("temperature {temperature} must be a positive finite number")
    })?;
    let kernel = gpu.kernel(
        &shaders::SOFTMAX,
        "sample",
        &[("WG", f64::from(WG))],
        &BINDINGS,
    )?;
    let uniform = gpu.uniform(&Params {
        rows: batch as u32,
        codes: k as u32,
        plane: plane as u32,
        pos: pos as u32,
        scale: 0.0,
        // Past 1e30 the argmax is certain; an infinite factor would make 0 * inf = NaN.
        inv_temp: (1.0 / temperature).min(1e30),
        seed,
        at: at as u32,
    });
    let resources = [
        uniform.as_entire_binding(),
        logits.binding(),
        codes.binding(),
        gpu.unused(3),
        gpu.unused(4),
    ];
    let groups = batch.div_ceil(WG as usize) as u64;
    Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
}
