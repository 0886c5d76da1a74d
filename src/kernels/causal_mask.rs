//! Launcher for `shaders/causal_mask.wgsl`: the masks that make a convolution causal in
//! raster order, as PixelCNN's are.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

/// Which taps a masked convolution keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// The first layer's: the taps above the centre row and left of the centre on it; a
    /// position does not see its own input.
    A,
    /// Every later layer's: mask A and the centre, for a position's own features saw
    /// only the past.
    B,
    /// The Gated PixelCNN's vertical stack: every row down to the centre row, whole. Its
    /// output reaches a position only shifted down a row.
    Vertical,
    /// The horizontal stack's first layer: the centre row left of the centre.
    HorizontalA,
    /// The horizontal stack's later layers: the centre row up to the centre.
    HorizontalB,
}

impl Mask {
    /// Whether tap `(ky, kx)` of a `kh x kw` kernel is kept.
    pub fn keeps(self, [ky, kx]: [usize; 2], [kh, kw]: [usize; 2]) -> bool {
        let (cy, cx) = (kh / 2, kw / 2);
        let centre = matches!(self, Mask::B | Mask::HorizontalB);
        let left = ky == cy && (kx < cx || (kx == cx && centre));
        match self {
            Mask::A | Mask::B => ky < cy || left,
            Mask::Vertical => ky <= cy,
            Mask::HorizontalA | Mask::HorizontalB => left,
        }
    }

    fn mode(self) -> u32 {
        match self {
            Mask::A => 0,
            Mask::B => 1,
            Mask::Vertical => 2,
            Mask::HorizontalA => 3,
            Mask::HorizontalB => 4,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    kh: u32,
    kw: u32,
    mode: u32,
}

/// Zeroes, in place, the taps of conv weights `[cout, cin, kh, kw]` that `mask` removes.
pub fn causal_mask(gpu: &Gpu, weights: &Tensor, mask: Mask) -> Result<Launch> {
    let op = "causal_mask";
    weights.expect_dtype(op, DType::F32)?;
    let &[_, _, kh, kw] = weights.shape() else {
        return Err(crate::Error::Shape {
            op,
            message: format!(
                "weights have shape {:?}, expected [cout, cin, kh, kw]",
                weights.shape()
            ),
        });
    };
    ensure(kh % 2 == 1 && kw % 2 == 1, op, || {
        format!("a {kh}x{kw} kernel has no centre tap; masked kernels have odd sizes")
    })?;
    let kernel = gpu.kernel(
        &shaders::CAUSAL_MASK,
        "apply_mask",
        &[("WG", f64::from(WG))],
        &[Bind::Uniform, Bind::Write],
    )?;
    let uniform = gpu.uniform(&Params {
        len: weights.len() as u32,
        kh: kh as u32,
        kw: kw as u32,
        mode: mask.mode(),
    });
    let groups = weights.len().div_ceil(WG as usize) as u64;
    let resources = [uniform.as_entire_binding(), weights.binding()];
    Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
}
