//! The launcher for `shaders/subpixel.wgsl`: the transposed convolution of the decoder's
//! last upsampling (kernel 4, stride 2, padding 1) to a few output channels.
//!
//! The implicit GEMM gives such a layer only as many rows as output channels (3 for an RGB
//! image), so each input it loads feeds 3 multiply-adds; this kernel loads each input once
//! per 2 x 2 output block for all 16 taps of every output channel.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::conv::{ConvShape, Epilogue, Relu};
use crate::kernels::unrolled;
use crate::launch::{Bind, Launch};
use crate::tensor::Tensor;

/// The most output channels the kernel holds per thread.
pub const MAX_OUTPUTS: usize = 4;
/// Input columns per thread: a whole row of the reference model's 16 x 16 map. On
/// lavapipe, decoder.deconv2 forward ran 1.5x as fast as with 8 and 2.4x as with 4.
const COLS: u32 = 16;
const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    cin: u32,
    h: u32,
    w: u32,
    groups: u32,
    threads: u32,
    _pad: [u32; 3],
}

/// Whether the kernel computes the transposed convolution `s` (in
/// [`ConvShape::transposed`]'s terms) of weight `w`: kernel 4, stride 2, padding 1, an
/// output twice the input's size, at most [`MAX_OUTPUTS`] output channels, sizes that fit
/// its indices, and a weight that starts on a vec4 (its rows are read as vec4s).
pub(crate) fn applies(s: &ConvShape, w: &Tensor) -> bool {
    let small = |v: usize| i32::try_from(v).is_ok();
    (s.kh, s.kw, s.stride, s.pad) == (4, 4, 2, 1)
        && (s.hin, s.win) == (2 * s.hout(), 2 * s.wout())
        && s.cin <= MAX_OUTPUTS
        && small(s.batch * s.cout * s.hout() * s.wout())
        && small(s.batch * s.cin * s.hin * s.win)
        && w.offset().is_multiple_of(16)
}

/// `out = conv_transpose2d(x, w) + bias` for a shape that [`applies`], the `relu` and the
/// `epilogue` fused in; operands as [`crate::kernels::conv::conv_transpose2d`] checked them.
#[allow(clippy::too_many_arguments)] // operands, output, ReLUs, epilogue: each its own role
pub(crate) fn conv_transpose2d(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    out: &Tensor,
    relu: Relu,
    epilogue: Epilogue<'_>,
) -> Result<Launch> {
    let op = "conv_transpose2d";
    let outputs = s.cin as u32;
    let flag = |on: bool| f64::from(u8::from(on));
    let kernel = gpu.kernel_of(
        &unrolled::subpixel_module_name(outputs, COLS),
        || unrolled::subpixel_source(outputs, COLS),
        "subpixel",
        &[
            ("WG", f64::from(WG)),
            ("RELU_IN", flag(relu.input)),
            ("RELU_OUT", flag(relu.output)),
            ("GATE_OUT", epilogue.flags()[0]),
            ("ADD_OUT", epilogue.flags()[1]),
        ],
        &[
            Bind::Uniform,
            Bind::Read,
            Bind::Read,
            Bind::Read,
            Bind::Write,
            Bind::Read,
            Bind::Read,
        ],
    )?;
    // Shapes that apply fit i32, so these fit u32.
    let (h, w_in) = (s.hout(), s.wout());
    let groups = w_in.div_ceil(COLS as usize);
    let threads = s.batch * h * groups;
    let uniform = gpu.uniform(&Params {
        cin: s.cout as u32,
        h: h as u32,
        w: w_in as u32,
        groups: groups as u32,
        threads: threads as u32,
        _pad: [0; 3],
    });
    let resources = [
        uniform.as_entire_binding(),
        w.binding(),
        x.binding(),
        bias.binding(),
        out.binding(),
        gpu.optional(epilogue.gate, 5),
        gpu.optional(epilogue.add, 6),
    ];
    let workgroups = threads.div_ceil(WG as usize) as u64;
    Ok(gpu.dispatch(op, &kernel, &resources, workgroups)?.into())
}
