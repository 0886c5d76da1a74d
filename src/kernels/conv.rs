//! Launchers for `shaders/conv.wgsl`: 2-D convolution and transposed convolution,
//! forward and gradients, as implicit GEMMs.

use crate::error::{Error, Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::{reduce, subgroups, subpixel, unrolled};
use crate::launch::{Bind, Dispatch, Launch, Tuning};
use crate::shaders;
use crate::tensor::{DType, Tensor};

/// The geometry of a 2-D convolution (PyTorch's `Conv2d`, square stride and padding).
///
/// A transposed convolution is described by the convolution whose input gradient it
/// is: see [`ConvShape::transposed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Input height.
    pub hin: usize,
    /// Input width.
    pub win: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride along both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl ConvShape {
    /// A `k x k` convolution of `[batch, cin, hin, win]` images to `cout` channels.
    pub fn new(
        batch: usize,
        cin: usize,
        cout: usize,
        [hin, win]: [usize; 2],
        k: usize,
        stride: usize,
        pad: usize,
    ) -> ConvShape {
        ConvShape {
            batch,
            cin,
            cout,
            hin,
            win,
            kh: k,
            kw: k,
            stride,
            pad,
        }
    }

    /// The convolution whose input gradient is `ConvTranspose2d(cin_t, cout_t, k,
    /// stride, pad)` applied to a `[batch, cin_t, h, w]` input. Its X side is the
    /// transposed convolution's output, its Y side the transposed convolution's input,
    /// and its weight layout `[cin_t, cout_t, k, k]` is `ConvTranspose2d`'s.
    pub fn transposed(
        batch: usize,
        cin_t: usize,
        cout_t: usize,
        [h, w]: [usize; 2],
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<ConvShape> {
        let out = |n: usize| (n.saturating_sub(1) * stride + k).checked_sub(2 * pad);
        let (Some(hin), Some(win)) = (out(h), out(w)) else {
            return Err(Error::shape(
                "conv_transpose2d",
                format!("padding {pad} is too large for kernel {k} on a {h}x{w} input"),
            ));
        };
        let s = ConvShape::new(batch, cout_t, cin_t, [hin, win], k, stride, pad);
        s.validate("conv_transpose2d")?;
        Ok(s)
    }

    /// Output height.
    pub fn hout(&self) -> usize {
        (self.hin + 2 * self.pad - self.kh) / self.stride + 1
    }

    /// Output width.
    pub fn wout(&self) -> usize {
        (self.win + 2 * self.pad - self.kw) / self.stride + 1
    }

    /// `[batch, cin, hin, win]`.
    pub fn x_shape(&self) -> [usize; 4] {
        [self.batch, self.cin, self.hin, self.win]
    }

    /// `[batch, cout, hout, wout]`.
    pub fn y_shape(&self) -> [usize; 4] {
        [self.batch, self.cout, self.hout(), self.wout()]
    }

    /// `[cout, cin, kh, kw]`.
    pub fn w_shape(&self) -> [usize; 4] {
        [self.cout, self.cin, self.kh, self.kw]
    }

    /// Multiply-adds times two of the forward convolution (each gradient costs the same).
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.cout * self.hout() * self.wout() * self.cin * self.kh * self.kw)
            as f64
    }

    /// Checks that the sizes are positive and the kernel fits the padded input.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        let sizes = [
            self.batch,
            self.cin,
            self.cout,
            self.hin,
            self.win,
            self.kh,
            self.kw,
            self.stride,
        ];
        ensure(!sizes.contains(&0), op, || format!("zero size in {self:?}"))?;
        ensure(
            self.kh <= self.hin + 2 * self.pad && self.kw <= self.win + 2 * self.pad,
            op,
            || {
                format!(
                    "kernel {}x{} is larger than the padded input in {self:?}",
                    self.kh, self.kw
                )
            },
        )?;
        ensure(self.pad < self.kh && self.pad < self.kw, op, || {
            format!(
                "padding {} must be smaller than the kernel in {self:?}",
                self.pad
            )
        })
    }
}

/// ReLUs fused into a convolution: on the input as it is read, on the output as it
/// is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relu {
    /// Apply `max(0, x)` to the input.
    pub input: bool,
    /// Apply `max(0, y)` to the output.
    pub output: bool,
}

impl Relu {
    /// No ReLU.
    pub const NONE: Relu = Relu {
        input: false,
        output: false,
    };
    /// ReLU on the output only.
    pub const OUTPUT: Relu = Relu {
        input: false,
        output: true,
    };
    /// ReLU on the input only.
    pub const INPUT: Relu = Relu {
        input: true,
        output: false,
    };
    /// ReLU on the input and on the output.
    pub const BOTH: Relu = Relu {
        input: true,
        output: true,
    };
}

/// Element-wise work fused into storing a convolution's result (forward, or input
/// gradient), after the bias and the output ReLU: zero the result where `gate` is not
/// positive (the gradient through the ReLU that made or read `gate`: PyTorch's
/// `grad * (gate > 0)`), then add `add`. Both are shaped like the output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Zero the result where this is not positive.
    pub gate: Option<&'a Tensor>,
    /// Add this to the result.
    pub add: Option<&'a Tensor>,
}

impl Epilogue<'_> {
    /// Nothing after the bias and the output ReLU.
    pub const NONE: Epilogue<'static> = Epilogue {
        gate: None,
        add: None,
    };

    fn check(&self, op: &'static str, out: &[usize]) -> Result<()> {
        for (name, t) in [("gate", self.gate), ("addend", self.add)] {
            if let Some(t) = t {
                check(op, name, t, out)?;
            }
        }
        Ok(())
    }

    /// `GATE_OUT` and `ADD_OUT`, as override values.
    pub(crate) fn flags(&self) -> [f64; 2] {
        [self.gate, self.add].map(|t| f64::from(u8::from(t.is_some())))
    }
}

/// Which products `conv.wgsl` computes (its `MODE`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward = 0,
    InputGrad = 1,
    WeightGrad = 2,
}

/// Element-wise work fused into a convolution kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fuse {
    relu_x: bool,
    relu_y: bool,
    relu_out: bool,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    cin: u32,
    hin: u32,
    win: u32,
    cout: u32,
    hout: u32,
    wout: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    zcount: u32,
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
    tiles_m: u32,
    k_chunk: u32,
    _pad: [u32; 2],
    z: u32,
    n0: u32,
    nc: u32,
    k0: u32,
    kc: u32,
    kp: u32,
    np: u32,
    mp: u32,
    split: u32,
    chunks: u32,
    kend: u32,
    _pad2: u32,
}

/// `conv.wgsl`'s bindings: parameters; weight, X side, Y side (the packed GEMM reads its
/// A and B in slots 1 and 2); bias; output (where the packing kernels write); the
/// epilogue's gate and addend.
const BINDINGS: [Bind; 8] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Read,
    Bind::Read,
    Bind::Write,
    Bind::Read,
    Bind::Read,
];

/// Depth of the k slices the shared variant stages.
const BK: u32 = 16;
/// The largest register tile `conv.wgsl` holds, `[m, n]`.
const MAX_TILE: [u32; 2] = [8, 12];

/// The tuned workgroup shape, narrowed along m when the GEMM has few rows (3 output
/// channels, say) so that threads are not spent on rows that do not exist. With `widen`
/// (kernels that stage tiles in workgroup memory: GPUs) it widens along n to keep its
/// threads. Without, it stays narrow: a CPU driver runs a workgroup's invocations one
/// SIMD slice after another, so a wider workgroup only spreads its B columns over more
/// slices, and fewer of them find those columns still in cache (on lavapipe,
/// `res.conv1`'s forward, 32 rows, ran about 1.5x as fast narrow).
fn workgroup([wg_x, wg_y]: [u32; 2], tile_m: u32, m: usize, widen: bool) -> [u32; 2] {
    let rows = (m.div_ceil(tile_m as usize).next_power_of_two() as u32).min(wg_y);
    if rows == wg_y || !widen {
        return [wg_x, rows];
    }
    [(wg_x * wg_y / rows).min(wg_x.max(64)), rows]
}

/// Workgroup memory of the direct kernels' workgroups of shape `[wg_x, wg_y]`.
fn shared_bytes(tuning: &Tuning, [wg_x, wg_y]: [u32; 2]) -> u32 {
    let [tm, tn] = tuning.conv_tile;
    if tuning.shared_memory {
        BK * 4 * (tm * wg_y + tn * wg_x)
    } else {
        0
    }
}

/// Every workgroup shape `tuning` can give a convolution (as tuned, and narrowed for
/// GEMMs of few rows), with its workgroup memory: what a device must allow.
pub(crate) fn workgroups(tuning: &Tuning) -> Vec<([u32; 2], u32)> {
    let [_, wg_y] = tuning.conv_workgroup;
    let gemm = tuning
        .gemm_tile
        .map_or([0, 0], |[rows, cols]| [rows, cols / 4]);
    (0..=wg_y.max(1).ilog2())
        .map(|i| 1 << i)
        .chain([wg_y as usize])
        .flat_map(|rows| {
            let direct = workgroup(tuning.conv_workgroup, 1, rows, tuning.shared_memory);
            let packed = workgroup(tuning.conv_workgroup, 1, rows, tuning.gemm_shared);
            [
                (direct, shared_bytes(tuning, direct)),
                (packed, gemm_shared_bytes(tuning, packed, gemm)),
            ]
        })
        .collect()
}

/// The operands of one implicit GEMM; `None` binds nothing there.
struct Operands<'a> {
    w: Option<&'a Tensor>,
    x: Option<&'a Tensor>,
    y: Option<&'a Tensor>,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
    epilogue: Epilogue<'a>,
}

fn check(op: &'static str, name: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    t.expect_dtype(op, DType::F32)?;
    ensure(t.shape() == want, op, || {
        format!("{name} has shape {:?}, expected {want:?}", t.shape())
    })
}

/// The product `mode` asks for: packed where the tuning has a GEMM tile and the product
/// has rows enough, direct otherwise.
fn gemm(
    gpu: &Gpu,
    op: &'static str,
    mode: Mode,
    s: &ConvShape,
    fuse: Fuse,
    ops: Operands<'_>,
) -> Result<Launch> {
    s.validate(op)?;
    let (rows, cols) = match mode {
        Mode::Forward => (s.cout, s.batch * s.hout() * s.wout()),
        Mode::InputGrad => (
            s.cin,
            s.batch * s.hin.div_ceil(s.stride) * s.win.div_ceil(s.stride),
        ),
        Mode::WeightGrad => (s.cout, s.cin * s.kh * s.kw),
    };
    match gpu.tuning().gemm_tile {
        Some(tile) if rows.min(cols) >= gpu.tuning().packed_from as usize => {
            packed(gpu, op, mode, s, fuse, ops, tile)
        }
        _ => direct(gpu, op, mode, s, fuse, ops),
    }
}

/// The direct implicit GEMM: every thread gathers its own operands.
fn direct(
    gpu: &Gpu,
    op: &'static str,
    mode: Mode,
    s: &ConvShape,
    fuse: Fuse,
    ops: Operands<'_>,
) -> Result<Launch> {
    let tuning = gpu.tuning();
    let (m, n, k, zcount) = match mode {
        Mode::Forward => (
            s.cout,
            s.batch * s.hout() * s.wout(),
            s.cin * s.kh * s.kw,
            1,
        ),
        // Columns and depth of the largest stride phase; the kernel derives each phase's.
        Mode::InputGrad => (
            s.cin,
            s.batch * s.hin.div_ceil(s.stride) * s.win.div_ceil(s.stride),
            0,
            s.stride * s.stride,
        ),
        Mode::WeightGrad => (
            s.cout,
            s.cin * s.kh * s.kw,
            s.batch * s.hout() * s.wout(),
            1,
        ),
    };
    let [tm, tn] = tuning.conv_tile;
    if !(1..=MAX_TILE[0]).contains(&tm) || !(1..=MAX_TILE[1]).contains(&tn) {
        return Err(Error::shape(
            op,
            format!(
                "register tile {tm} x {tn} is outside 1..={} x 1..={}",
                MAX_TILE[0], MAX_TILE[1]
            ),
        ));
    }
    // No rows of the register tile past the GEMM's (3 output channels, say).
    let tm = tm.min(m as u32);
    let [wg_x, wg_y] = workgroup(tuning.conv_workgroup, tm, m, tuning.shared_memory);
    gpu.check_workgroup(op, [wg_x, wg_y], shared_bytes(&tuning, [wg_x, wg_y]))?;
    let (bm, bn) = ((tm * wg_y) as usize, (tn * wg_x) as usize);
    let tiles = m.div_ceil(bm) * n.div_ceil(bn);
    // The grid's z: the weight gradient's chunks of its long reduction, split until the
    // grid fills the device (chunks kept long), whose partial sums a second pass adds; or
    // the input gradient's stride phases, each storing its own pixels.
    let (zcount, splits, k_chunk) = if mode == Mode::WeightGrad {
        let want = (tuning.parallel_groups as usize).div_ceil(tiles);
        let splits = want.clamp(1, k.div_ceil(256).max(1));
        (splits, splits, k.div_ceil(splits))
    } else {
        (zcount, 1, 0)
    };
    let fits = |v: usize| fits(op, v);
    let params = Params {
        zcount: fits(zcount)?,
        m: fits(m)?,
        n: fits(n)?,
        k: fits(k)?,
        tiles_n: fits(n.div_ceil(bn))?,
        tiles_m: fits(m.div_ceil(bm))?,
        k_chunk: fits(k_chunk)?,
        ..Params::geometry(op, s)?
    };
    let kernel = gpu.kernel(
        &shaders::CONV,
        if tuning.shared_memory {
            "main_shared"
        } else {
            "main_reg"
        },
        &[
            ("MODE", mode as u32 as f64),
            ("WG_X", f64::from(wg_x)),
            ("WG_Y", f64::from(wg_y)),
            ("TM", f64::from(tm)),
            ("TN", f64::from(tn)),
            ("HAS_BIAS", f64::from(u8::from(ops.bias.is_some()))),
            ("RELU_X", f64::from(u8::from(fuse.relu_x))),
            ("RELU_Y", f64::from(u8::from(fuse.relu_y))),
            ("RELU_OUT", f64::from(u8::from(fuse.relu_out))),
            ("GATE_OUT", ops.epilogue.flags()[0]),
            ("ADD_OUT", ops.epilogue.flags()[1]),
        ],
        &BINDINGS,
    )?;
    let partial;
    let target = if splits > 1 {
        partial = Tensor::zeros(gpu, &[splits, m, n], DType::F32)?;
        &partial
    } else {
        ops.out
    };
    let uniform = gpu.uniform(&params);
    let main = gpu.dispatch(
        op,
        &kernel,
        &[
            uniform.as_entire_binding(),
            gpu.optional(ops.w, 1),
            gpu.optional(ops.x, 2),
            gpu.optional(ops.y, 3),
            gpu.optional(ops.bias, 4),
            target.binding(),
            gpu.optional(ops.epilogue.gate, 6),
            gpu.optional(ops.epilogue.add, 7),
        ],
        (tiles * zcount) as u64,
    )?;
    let launch = Launch::from(main);
    if splits > 1 {
        Ok(launch.then(reduce::sum_splits(gpu, target, splits, ops.out)?))
    } else {
        Ok(launch)
    }
}

impl Params {
    /// The convolution's sizes; the GEMM's fields zero.
    fn geometry(op: &'static str, s: &ConvShape) -> Result<Params> {
        let fits = |v: usize| fits(op, v);
        Ok(Params {
            batch: fits(s.batch)?,
            cin: fits(s.cin)?,
            hin: fits(s.hin)?,
            win: fits(s.win)?,
            cout: fits(s.cout)?,
            hout: fits(s.hout())?,
            wout: fits(s.wout())?,
            kh: fits(s.kh)?,
            kw: fits(s.kw)?,
            stride: fits(s.stride)?,
            pad: fits(s.pad)?,
            ..Params::default()
        })
    }
}

fn fits(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit {
        op,
        what: "elements along one GEMM axis",
        needed: v as u64,
        limit: u64::from(u32::MAX),
    })
}

/// One GEMM of a packed product: the job (MODE 1: a stride phase), its columns and depth.
struct Job {
    z: usize,
    n: usize,
    k: usize,
}

/// The GEMMs `mode` splits a packed product into. The input gradient runs one per
/// stride phase, with the geometry `conv.wgsl`'s `job_of` derives, skipping phases that
/// hold no pixels.
fn jobs(mode: Mode, s: &ConvShape) -> Vec<Job> {
    match mode {
        Mode::Forward => vec![Job {
            z: 0,
            n: s.batch * s.hout() * s.wout(),
            k: s.cin * s.kh * s.kw,
        }],
        Mode::InputGrad => {
            let st = s.stride;
            let taps = |first: usize, size: usize| size.saturating_sub(first).div_ceil(st);
            (0..st * st)
                .map(|z| {
                    let (ry, rx) = (z / st, z % st);
                    let (ky0, kx0) = ((ry + s.pad) % st, (rx + s.pad) % st);
                    Job {
                        z,
                        n: s.batch * taps(ry, s.hin) * taps(rx, s.win),
                        k: s.cout * taps(ky0, s.kh) * taps(kx0, s.kw),
                    }
                })
                .filter(|j| j.n > 0)
                .collect()
        }
        Mode::WeightGrad => vec![Job {
            z: 0,
            n: s.cin * s.kh * s.kw,
            k: s.batch * s.hout() * s.wout(),
        }],
    }
}

/// One sub-GEMM of a packed product: depths `k0 ..` of job `z` (whose GEMM has `n`
/// columns) in `chunks` chunks `kc` deep, the last ending at `kend`, over columns
/// `n0 .. n0 + nc`; chunk c's partial sums go to split `split + c`.
struct Sub {
    z: usize,
    n: usize,
    k0: usize,
    kc: usize,
    kend: usize,
    chunks: usize,
    n0: usize,
    nc: usize,
    split: usize,
}

/// The largest tile, rows x vec4 columns, of `conv.wgsl`'s `gemm_shared`.
const MAX_SHARED_GEMM_TILE: [u32; 2] = [8, 2];
/// Depth of the slices `gemm_shared` stages (`GBK`).
const GBK: u32 = 8;

/// Workgroup memory of the packed GEMM under `tuning` in workgroups `[wg_x, wg_y]`
/// whose threads own `rows` x `cols4` vec4s: `gemm_shared`'s two buffers of each
/// operand's slice, or none.
fn gemm_shared_bytes(tuning: &Tuning, [wg_x, wg_y]: [u32; 2], [rows, cols4]: [u32; 2]) -> u32 {
    if tuning.gemm_shared {
        2 * GBK * (4 * rows * wg_y + 16 * cols4 * wg_x)
    } else {
        0
    }
}

/// Whether each vec4 of a product's columns (every column slice starts at a multiple of
/// 4) is four consecutive floats of its output, 16-byte aligned, so that `gemm_reg` can
/// store it whole: where each image's output plane (forward), each row of the one stride
/// phase (input gradient at stride 1) or each weight's row (weight gradient) is whole
/// vec4s.
fn vec4_columns(mode: Mode, s: &ConvShape) -> bool {
    match mode {
        Mode::Forward => (s.hout() * s.wout()).is_multiple_of(4),
        Mode::InputGrad => s.stride == 1 && s.win.is_multiple_of(4),
        Mode::WeightGrad => (s.cin * s.kh * s.kw).is_multiple_of(4),
    }
}

/// Invocations per workgroup of the packing kernels, and the depths `pack_b` writes each.
const PACK_WG: u64 = 64;
const PACK_K: usize = 16;

/// The packed product: `pack_a` and `pack_b` gather slices of the operands into vec4 rows
/// in the device's scratch buffer, and the written-out `gemm_reg` of `tile` multiplies
/// them. Forward and input gradient cut their columns into slices whose packed B fits
/// [`crate::Tuning::pack_floats`]; the weight gradient cuts its long depth into chunks,
/// enough to fill the device and to fit, and sums them in a fixed order.
fn packed(
    gpu: &Gpu,
    op: &'static str,
    mode: Mode,
    s: &ConvShape,
    fuse: Fuse,
    ops: Operands<'_>,
    [tile_m, tile_n]: [u32; 2],
) -> Result<Launch> {
    let tuning = gpu.tuning();
    let [max_m, max_n4] = if tuning.gemm_shared {
        MAX_SHARED_GEMM_TILE
    } else {
        unrolled::MAX_TILE
    };
    if !(1..=max_m).contains(&tile_m)
        || !(4..=4 * max_n4).contains(&tile_n)
        || !tile_n.is_multiple_of(4)
    {
        return Err(Error::shape(
            op,
            format!(
                "GEMM tile {tile_m} x {tile_n} is outside 1..={max_m} x 4..={} (columns in whole vec4s)",
                4 * max_n4
            ),
        ));
    }
    let m = match mode {
        Mode::Forward | Mode::WeightGrad => s.cout,
        Mode::InputGrad => s.cin,
    };
    let tile_m = tile_m.min(m as u32);
    let mut wg = workgroup(tuning.conv_workgroup, tile_m, m, tuning.gemm_shared);
    // Narrowed along n too where the product has few columns (a weight gradient of a thin
    // layer), so that no workgroup spends most of its threads on padding.
    let widest = jobs(mode, s).iter().map(|j| j.n).max().unwrap_or(1);
    wg[0] = wg[0].min(widest.div_ceil(tile_n as usize).next_power_of_two() as u32);
    let cols4 = tile_n / 4;
    gpu.check_workgroup(op, wg, gemm_shared_bytes(&tuning, wg, [tile_m, cols4]))?;
    let (bm, bn) = ((tile_m * wg[1]) as usize, (tile_n * wg[0]) as usize);
    let mp = m.div_ceil(bm) * bm;
    let depth = |kc: usize| kc.next_multiple_of(PACK_K).max(PACK_K);
    let cap = tuning.pack_floats as usize;

    let mut subs = Vec::new();
    let mut splits = 1;
    for job in jobs(mode, s) {
        if mode == Mode::WeightGrad {
            let np = job.n.div_ceil(bn) * bn;
            let want = (tuning.parallel_groups as usize).div_ceil((mp / bm) * (np / bn));
            let fit = (cap / mp.max(np)).max(PACK_K);
            // Chunks stay deep, as the direct kernel's do: each costs a pass over its
            // output tile.
            splits = want
                .clamp(1, job.k.div_ceil(256).max(1))
                .max(job.k.div_ceil(fit));
            let kc = job.k.div_ceil(splits);
            splits = job.k.div_ceil(kc);
            // As many chunks as fit run in one dispatch of each kernel.
            let together = (cap / (depth(kc) * mp.max(np))).max(1);
            for first in (0..splits).step_by(together) {
                let chunks = together.min(splits - first);
                let k0 = first * kc;
                subs.push(Sub {
                    z: job.z,
                    n: job.n,
                    k0,
                    kc,
                    kend: (k0 + chunks * kc).min(job.k),
                    chunks,
                    n0: 0,
                    nc: job.n,
                    split: first,
                });
            }
        } else {
            let cols = (cap / depth(job.k) / bn).max(1) * bn;
            for n0 in (0..job.n).step_by(cols) {
                subs.push(Sub {
                    z: job.z,
                    n: job.n,
                    k0: 0,
                    kc: job.k,
                    kend: job.k,
                    chunks: 1,
                    n0,
                    nc: cols.min(job.n - n0),
                    split: 0,
                });
            }
        }
    }
    // Packed A at the start of the scratch buffer, packed B after it.
    let floats = |sub: &Sub| {
        let kp = sub.chunks * depth(sub.kc);
        (mp * kp, kp * sub.nc.div_ceil(bn) * bn)
    };
    let (a_max, b_max) = subs
        .iter()
        .map(floats)
        .fold((0, 0), |(a, b), (x, y)| (a.max(x), b.max(y)));
    let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment);
    let b_offset = (a_max as u64 * 4).next_multiple_of(align);
    let scratch = gpu.scratch(b_offset + b_max as u64 * 4)?;

    // Each kernel gets only the overrides it reads, so layers that differ elsewhere
    // share its pipeline.
    let mode_value = ("MODE", mode as u32 as f64);
    let pack_constants = [
        mode_value,
        ("RELU_X", f64::from(u8::from(fuse.relu_x))),
        ("RELU_Y", f64::from(u8::from(fuse.relu_y))),
    ];
    let gemm_constants = [
        mode_value,
        ("WG_X", f64::from(wg[0])),
        ("WG_Y", f64::from(wg[1])),
        ("HAS_BIAS", f64::from(u8::from(ops.bias.is_some()))),
        ("RELU_OUT", f64::from(u8::from(fuse.relu_out))),
        ("GATE_OUT", ops.epilogue.flags()[0]),
        ("ADD_OUT", ops.epilogue.flags()[1]),
    ];
    let pack_a = gpu.kernel(&shaders::CONV, "pack_a", &pack_constants, &BINDINGS)?;
    let pack_b = gpu.kernel(&shaders::CONV, "pack_b", &pack_constants, &BINDINGS)?;
    let product = if tuning.gemm_shared {
        let mut constants = gemm_constants.to_vec();
        constants.extend([("GS_TM", f64::from(tile_m)), ("GS_TN4", f64::from(cols4))]);
        gpu.kernel(&shaders::CONV, "gemm_shared", &constants, &BINDINGS)?
    } else {
        // A subgroup shares A's rows where it fits whole in one row of the workgroup, the
        // workgroup, made one-dimensional, fits the device, and the device lays its
        // subgroups out along it.
        let invocations = wg[0] * wg[1];
        let one_dimension = invocations <= gpu.limits().max_compute_workgroup_size_x;
        let subgroup = match gpu.subgroup_size() {
            Some(size)
                if tuning.gemm_subgroup
                    && one_dimension
                    && tile_m.is_multiple_of(size)
                    && wg[0].is_multiple_of(size)
                    && subgroups::consecutive(gpu, invocations, size)? =>
            {
                Some(size)
            }
            _ => None,
        };
        let written = unrolled::Gemm {
            rows: tile_m,
            cols4,
            subgroup,
            vec4_stores: vec4_columns(mode, s),
        };
        gpu.kernel_of(
            &written.module_name(),
            || written.source(),
            "gemm_reg",
            &gemm_constants,
            &BINDINGS,
        )?
    };
    let partial;
    let target = if splits > 1 {
        partial = Tensor::zeros(gpu, &[splits, m, s.cin * s.kh * s.kw], DType::F32)?;
        &partial
    } else {
        ops.out
    };
    let fits = |v: usize| fits(op, v);
    let base = Params {
        m: fits(m)?,
        mp: fits(mp)?,
        ..Params::geometry(op, s)?
    };
    let mut launch = Launch::default();
    let mut a_holds = None;
    for sub in subs {
        let (a_floats, b_floats) = floats(&sub);
        let np = sub.nc.div_ceil(bn) * bn;
        let tiles = (mp / bm) * (np / bn);
        let uniform = gpu.uniform(&Params {
            n: fits(sub.n)?,
            tiles_n: fits(np / bn)?,
            tiles_m: fits(mp / bm)?,
            z: fits(sub.z)?,
            n0: fits(sub.n0)?,
            nc: fits(sub.nc)?,
            k0: fits(sub.k0)?,
            kc: fits(sub.kc)?,
            kp: fits(depth(sub.kc))?,
            np: fits(np)?,
            split: fits(sub.split)?,
            chunks: fits(sub.chunks)?,
            kend: fits(sub.kend)?,
            ..base
        });
        let a = Tensor::from_buffer(gpu, scratch.clone(), 0, &[a_floats], DType::F32)?;
        let b = Tensor::from_buffer(gpu, scratch.clone(), b_offset, &[b_floats], DType::F32)?;
        let pack = |kernel, packed: &Tensor, vec4s: usize| -> Result<Dispatch> {
            let resources = [
                uniform.as_entire_binding(),
                gpu.optional(ops.w, 1),
                gpu.optional(ops.x, 2),
                gpu.optional(ops.y, 3),
                gpu.unused(4),
                packed.binding(),
                gpu.unused(6),
                gpu.unused(7),
            ];
            gpu.dispatch(op, kernel, &resources, (vec4s as u64).div_ceil(PACK_WG))
        };
        // Forward and input gradient keep a job's packed A for all its column slices.
        if mode == Mode::WeightGrad || a_holds != Some(sub.z) {
            launch = launch.then(pack(&pack_a, &a, a_floats / 4)?.into());
            a_holds = Some(sub.z);
        }
        launch = launch.then(pack(&pack_b, &b, b_floats / 4 / PACK_K)?.into());
        let resources = [
            uniform.as_entire_binding(),
            a.binding(),
            b.binding(),
            gpu.unused(3),
            gpu.optional(ops.bias, 4),
            target.binding(),
            gpu.optional(ops.epilogue.gate, 6),
            gpu.optional(ops.epilogue.add, 7),
        ];
        let groups = (tiles * sub.chunks) as u64;
        launch = launch.then(gpu.dispatch(op, &product, &resources, groups)?.into());
    }
    if splits > 1 {
        launch = launch.then(reduce::sum_splits(gpu, target, splits, ops.out)?);
    }
    Ok(launch)
}

/// `y = conv2d(x, w) + bias`, with the ReLUs `relu` asks for and the `epilogue` fused in.
/// Shapes: x `[b, cin, hin, win]`, w `[cout, cin, kh, kw]`, bias `[cout]`, y `[b, cout, hout, wout]`.
#[allow(clippy::too_many_arguments)] // operands, output, ReLUs, epilogue: each its own role
pub fn conv2d(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    y: &Tensor,
    relu: Relu,
    epilogue: Epilogue<'_>,
) -> Result<Launch> {
    let op = "conv2d";
    s.validate(op)?;
    check(op, "input", x, &s.x_shape())?;
    check(op, "weight", w, &s.w_shape())?;
    check(op, "bias", bias, &[s.cout])?;
    check(op, "output", y, &s.y_shape())?;
    let fuse = Fuse {
        relu_x: relu.input,
        relu_out: relu.output,
        ..Fuse::default()
    };
    epilogue.check(op, &s.y_shape())?;
    gemm(
        gpu,
        op,
        Mode::Forward,
        s,
        fuse,
        Operands {
            w: Some(w),
            x: Some(x),
            y: None,
            bias: Some(bias),
            out: y,
            epilogue,
        },
    )
}

/// The input gradient of [`conv2d`] (before any fused ReLU): `dx = conv2d^T(dy, w)`,
/// with the `epilogue` fused in (the gradient through the input's ReLU, say).
pub fn conv2d_input_grad(
    gpu: &Gpu,
    s: &ConvShape,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    epilogue: Epilogue<'_>,
) -> Result<Launch> {
    let op = "conv2d_input_grad";
    s.validate(op)?;
    check(op, "output gradient", dy, &s.y_shape())?;
    check(op, "weight", w, &s.w_shape())?;
    check(op, "input gradient", dx, &s.x_shape())?;
    epilogue.check(op, &s.x_shape())?;
    gemm(
        gpu,
        op,
        Mode::InputGrad,
        s,
        Fuse::default(),
        Operands {
            w: Some(w),
            x: None,
            y: Some(dy),
            bias: None,
            out: dx,
            epilogue,
        },
    )
}

/// The weight gradient of [`conv2d`]: `dw = dy * x^T` summed over the batch, with `x`
/// passed through ReLU first when `relu_in` (as the forward pass saw it).
pub fn conv2d_weight_grad(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
    relu_in: bool,
) -> Result<Launch> {
    let op = "conv2d_weight_grad";
    s.validate(op)?;
    check(op, "input", x, &s.x_shape())?;
    check(op, "output gradient", dy, &s.y_shape())?;
    check(op, "weight gradient", dw, &s.w_shape())?;
    let fuse = Fuse {
        relu_x: relu_in,
        ..Fuse::default()
    };
    gemm(
        gpu,
        op,
        Mode::WeightGrad,
        s,
        fuse,
        Operands {
            w: None,
            x: Some(x),
            y: Some(dy),
            bias: None,
            out: dw,
            epilogue: Epilogue::NONE,
        },
    )
}

/// `out = conv_transpose2d(x, w) + bias`, with the ReLUs `relu` asks for and the
/// `epilogue` fused in,
/// for `s` = [`ConvShape::transposed`]. Shapes: x `[b, cout, hout, wout]` (the Y side),
/// w `[cout, cin, kh, kw]` (`ConvTranspose2d`'s `[in, out, kh, kw]`), bias `[cin]`,
/// out `[b, cin, hin, win]` (the X side).
#[allow(clippy::too_many_arguments)] // operands, output, ReLUs, epilogue: each its own role
pub fn conv_transpose2d(
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
    s.validate(op)?;
    check(op, "input", x, &s.y_shape())?;
    check(op, "weight", w, &s.w_shape())?;
    check(op, "bias", bias, &[s.cin])?;
    check(op, "output", out, &s.x_shape())?;
    let fuse = Fuse {
        relu_y: relu.input,
        relu_out: relu.output,
        ..Fuse::default()
    };
    epilogue.check(op, &s.x_shape())?;
    if subpixel::applies(s, w) {
        return subpixel::conv_transpose2d(gpu, s, x, w, bias, out, relu, epilogue);
    }
    gemm(
        gpu,
        op,
        Mode::InputGrad,
        s,
        fuse,
        Operands {
            w: Some(w),
            x: None,
            y: Some(x),
            bias: Some(bias),
            out,
            epilogue,
        },
    )
}

/// The input gradient of [`conv_transpose2d`]: a plain convolution of `dout` by `w`,
/// with the `epilogue` fused in.
pub fn conv_transpose2d_input_grad(
    gpu: &Gpu,
    s: &ConvShape,
    dout: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    epilogue: Epilogue<'_>,
) -> Result<Launch> {
    let op = "conv_transpose2d_input_grad";
    s.validate(op)?;
    check(op, "output gradient", dout, &s.x_shape())?;
    check(op, "weight", w, &s.w_shape())?;
    check(op, "input gradient", dx, &s.y_shape())?;
    epilogue.check(op, &s.y_shape())?;
    gemm(
        gpu,
        op,
        Mode::Forward,
        s,
        Fuse::default(),
        Operands {
            w: Some(w),
            x: Some(dout),
            y: None,
            bias: None,
            out: dx,
            epilogue,
        },
    )
}

/// The weight gradient of [`conv_transpose2d`], with `x` passed through ReLU first
/// when `relu_in`.
pub fn conv_transpose2d_weight_grad(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    dout: &Tensor,
    dw: &Tensor,
    relu_in: bool,
) -> Result<Launch> {
    let op = "conv_transpose2d_weight_grad";
    s.validate(op)?;
    check(op, "input", x, &s.y_shape())?;
    check(op, "output gradient", dout, &s.x_shape())?;
    check(op, "weight gradient", dw, &s.w_shape())?;
    let fuse = Fuse {
        relu_y: relu_in,
        ..Fuse::default()
    };
    gemm(
        gpu,
        op,
        Mode::WeightGrad,
        s,
        fuse,
        Operands {
            w: None,
            x: Some(dout),
            y: Some(x),
            bias: None,
            out: dw,
            epilogue: Epilogue::NONE,
        },
    )
}
