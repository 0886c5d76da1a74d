//! Launchers for `shaders/gated.wgsl`: the gated activation and the row shift of the
//! Gated PixelCNN, forward and backward.

use crate::error::{Error, Result, ensure};
use crate::gpu::Gpu;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    channels: u32,
    plane: u32,
    width: u32,
}

/// `[batch, channels, h, w]` of a 4-D f32 tensor.
fn dims(op: &'static str, t: &Tensor) -> Result<[usize; 4]> {
    t.expect_dtype(op, DType::F32)?;
    match *t.shape() {
        [b, c, h, w] => Ok([b, c, h, w]),
        _ => Err(Error::shape(
            op,
            format!("expected [batch, channels, h, w], got {:?}", t.shape()),
        )),
    }
}

fn launch(
    gpu: &Gpu,
    op: &'static str,
    entry: &'static str,
    params: Params,
    [x, upstream, out]: [Option<&Tensor>; 3],
) -> Result<Launch> {
    let kernel = gpu.kernel(
        &shaders::GATED,
        entry,
        &[("WG", f64::from(WG))],
        &[Bind::Uniform, Bind::Read, Bind::Read, Bind::Write],
    )?;
    let uniform = gpu.uniform(&params);
    let resources = [
        uniform.as_entire_binding(),
        gpu.optional(x, 1),
        gpu.optional(upstream, 2),
        gpu.optional(out, 3),
    ];
    let groups = (params.len as usize).div_ceil(WG as usize) as u64;
    Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
}

/// Checks that `x` is `[b, 2c, h, w]` for the gate's `[b, c, h, w]` output `y`.
fn gate_params(op: &'static str, x: &Tensor, y: &Tensor) -> Result<Params> {
    let [b, c2, h, w] = dims(op, x)?;
    ensure(y.shape() == [b, c2 / 2, h, w] && c2 % 2 == 0, op, || {
        format!(
            "input {:?} must have twice the channels of the output {:?}",
            x.shape(),
            y.shape()
        )
    })?;
    dims(op, y)?;
    Ok(Params {
        len: y.len() as u32,
        channels: (c2 / 2) as u32,
        plane: (h * w) as u32,
        width: w as u32,
    })
}

/// `y = tanh(a) * sigmoid(b)` where `a` and `b` are the first and second channel halves
/// of `x` (`[batch, 2C, h, w]` to `[batch, C, h, w]`).
pub fn gate(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Launch> {
    let params = gate_params("gate", x, y)?;
    launch(gpu, "gate", "gate", params, [Some(x), None, Some(y)])
}

/// The gradient at the gate's input `x` from the gradient `dy` at its output.
pub fn gate_backward(gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<Launch> {
    let op = "gate_backward";
    let params = gate_params(op, x, dy)?;
    ensure(dx.shape() == x.shape(), op, || {
        format!("dx has shape {:?}, expected {:?}", dx.shape(), x.shape())
    })?;
    launch(
        gpu,
        op,
        "gate_backward",
        params,
        [Some(x), Some(dy), Some(dx)],
    )
}

fn shift(gpu: &Gpu, op: &'static str, x: &Tensor, out: &Tensor) -> Result<Launch> {
    let [_, _, h, w] = dims(op, x)?;
    ensure(out.shape() == x.shape(), op, || {
        format!(
            "output {:?} must have the input's shape {:?}",
            out.shape(),
            x.shape()
        )
    })?;
    let params = Params {
        len: x.len() as u32,
        channels: 0,
        plane: (h * w) as u32,
        width: w as u32,
    };
    launch(gpu, op, op, params, [Some(x), None, Some(out)])
}

/// `out[.., i, j] = x[.., i - 1, j]`, zero on the first row.
pub fn shift_down(gpu: &Gpu, x: &Tensor, out: &Tensor) -> Result<Launch> {
    shift(gpu, "shift_down", x, out)
}

/// `out[.., i, j] = x[.., i + 1, j]`, zero on the last row: the backward of
/// [`shift_down`].
pub fn shift_up(gpu: &Gpu, x: &Tensor, out: &Tensor) -> Result<Launch> {
    shift(gpu, "shift_up", x, out)
}
