//! Launcher for `shaders/rows.wgsl`: copying rows between stacks of code grids.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

/// Which rows move: `rows` rows of each of `batch` grids `width` wide, from row
/// `from[1]` of grids `from[0]` rows high to row `to[1]` of grids `to[0]` rows high.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowCopy {
    /// Grids in each stack.
    pub batch: usize,
    /// Columns of every grid.
    pub width: usize,
    /// Rows copied from each grid.
    pub rows: usize,
    /// The source grids' height and the first row copied.
    pub from: [usize; 2],
    /// The destination grids' height and the row the copy starts at.
    pub to: [usize; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    width: u32,
    rows: u32,
    src_h: u32,
    src_row: u32,
    dst_h: u32,
    dst_row: u32,
    _pad: u32,
}

/// Copies the rows `c` names from the u32 grids `src` to the u32 grids `dst`.
pub fn copy_rows(gpu: &Gpu, src: &Tensor, dst: &Tensor, c: &RowCopy) -> Result<Launch> {
    let op = "copy_rows";
    for t in [src, dst] {
        t.expect_dtype(op, DType::U32)?;
    }
    for (what, t, [h, row]) in [("source", src, c.from), ("destination", dst, c.to)] {
        ensure(t.len() == c.batch * h * c.width, op, || {
            format!(
                "the {what} holds {} codes, expected {} grids of {h} x {}",
                t.len(),
                c.batch,
                c.width
            )
        })?;
        ensure(row + c.rows <= h, op, || {
            format!(
                "rows {row}..{} are outside the {what}'s {h} rows",
                row + c.rows
            )
        })?;
    }
    let kernel = gpu.kernel(
        &shaders::ROWS,
        op,
        &[("WG", f64::from(WG))],
        &[Bind::Uniform, Bind::Read, Bind::Write],
    )?;
    let u = |v: usize| v as u32;
    let uniform = gpu.uniform(&Params {
        batch: u(c.batch),
        width: u(c.width),
        rows: u(c.rows),
        src_h: u(c.from[0]),
        src_row: u(c.from[1]),
        dst_h: u(c.to[0]),
        dst_row: u(c.to[1]),
        _pad: 0,
    });
    let groups = (c.batch * c.rows * c.width).div_ceil(WG as usize) as u64;
    let resources = [uniform.as_entire_binding(), src.binding(), dst.binding()];
    Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
}
