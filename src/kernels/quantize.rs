//! Launchers for `shaders/quantize.wgsl`: the fused nearest-code quantiser.

use crate::error::{Error, Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::unrolled;
use crate::launch::{Bind, Dispatch, Launch, Tuning};
use crate::shaders;
use crate::tensor::{DType, Tensor};

/// The most rows one thread of the nearest-code kernels can own.
const MAX_ROWS_PER_THREAD: u32 = 8;
/// Codes x dimensions staged per tile by the shared variant.
const SHARED_TILE_BYTES: u32 = 8 * 16 * 4;

/// Workgroup memory of the unpacked search under `tuning`.
pub(crate) fn shared_bytes(tuning: &Tuning) -> u32 {
    if tuning.shared_memory {
        SHARED_TILE_BYTES
    } else {
        0
    }
}

/// How the vectors to quantise lie in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    /// Number of vectors.
    pub n: usize,
    /// Their dimension.
    pub dim: usize,
    /// Elements between consecutive dimensions of one vector: 1 for a row-major
    /// `[n, dim]` matrix, `h * w` for a channels-first `[batch, dim, h, w]` map.
    pub plane: usize,
}

impl Rows {
    /// The layout of `z`: `[n, dim]` rows or a `[batch, dim, h, w]` feature map.
    pub fn of(op: &'static str, z: &Tensor) -> Result<Rows> {
        match *z.shape() {
            [n, dim] => Ok(Rows { n, dim, plane: 1 }),
            [b, dim, h, w] => Ok(Rows {
                n: b * h * w,
                dim,
                plane: h * w,
            }),
            _ => Err(Error::shape(
                op,
                format!(
                    "vectors have shape {:?}, expected [n, dim] or [batch, dim, h, w]",
                    z.shape()
                ),
            )),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    dim: u32,
    codes: u32,
    plane: u32,
    r0: u32,
    rows: u32,
    dim4: u32,
    _pad: u32,
}

const BINDINGS: [Bind; 7] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Write,
    Bind::Write,
    Bind::Write,
    Bind::Write,
];

/// The number of codes in `codebook`, which must be f32 `[codes, dim]`.
pub(crate) fn codebook_shape(op: &'static str, codebook: &Tensor, dim: usize) -> Result<usize> {
    codebook.expect_dtype(op, DType::F32)?;
    match *codebook.shape() {
        [k, d] if d == dim => Ok(k),
        _ => Err(Error::shape(
            op,
            format!(
                "codebook has shape {:?}, expected [codes, {dim}]",
                codebook.shape()
            ),
        )),
    }
}

fn params(op: &'static str, rows: Rows, codes: usize) -> Result<Params> {
    let fits = |v: usize| {
        u32::try_from(v).map_err(|_| Error::Limit {
            op,
            what: "rows, codes or dimensions",
            needed: v as u64,
            limit: u64::from(u32::MAX),
        })
    };
    Ok(Params {
        n: fits(rows.n)?,
        dim: fits(rows.dim)?,
        codes: fits(codes)?,
        plane: fits(rows.plane)?,
        r0: 0,
        rows: 0,
        dim4: fits(rows.dim.div_ceil(4))?,
        _pad: 0,
    })
}

/// Finds each vector's nearest code (ties to the lowest index) without storing the
/// N x K distance matrix. Writes `indices` `[n]` (u32), and where given the squared
/// distances `dist` `[n]` and the quantised vectors `zq` (the shape of `z`).
///
/// `z` is `[n, dim]` or `[batch, dim, h, w]`; `codebook` is `[codes, dim]`.
pub fn quantize(
    gpu: &Gpu,
    z: &Tensor,
    codebook: &Tensor,
    indices: &Tensor,
    dist: Option<&Tensor>,
    zq: Option<&Tensor>,
) -> Result<Launch> {
    let op = "quantize";
    z.expect_dtype(op, DType::F32)?;
    let rows = Rows::of(op, z)?;
    let codes = codebook_shape(op, codebook, rows.dim)?;
    indices.expect_dtype(op, DType::U32)?;
    ensure(indices.len() == rows.n, op, || {
        format!(
            "indices have shape {:?}, expected {} elements for vectors {:?}",
            indices.shape(),
            rows.n,
            z.shape()
        )
    })?;
    if let Some(d) = dist {
        d.expect_dtype(op, DType::F32)?;
        ensure(d.len() == rows.n, op, || {
            format!(
                "distances have shape {:?}, expected {} elements",
                d.shape(),
                rows.n
            )
        })?;
    }
    if let Some(q) = zq {
        q.expect_dtype(op, DType::F32)?;
        ensure(q.shape() == z.shape(), op, || {
            format!(
                "quantised vectors have shape {:?}, expected {:?}",
                q.shape(),
                z.shape()
            )
        })?;
    }
    let tuning = gpu.tuning();
    let wg = tuning.quantize_workgroup;
    if let Some(tile) = tuning.quantize_tile {
        return packed(gpu, z, rows, codebook, codes, indices, dist, zq, tile);
    }
    let tr = tuning.quantize_rows;
    if !(1..=MAX_ROWS_PER_THREAD).contains(&tr) {
        return Err(Error::shape(
            op,
            format!("{tr} rows per thread is outside 1..={MAX_ROWS_PER_THREAD}"),
        ));
    }
    gpu.check_workgroup(op, [wg, 1], shared_bytes(&tuning))?;
    let constants = [
        ("WG", f64::from(wg)),
        ("TR", f64::from(tr)),
        ("WRITE_DIST", f64::from(u8::from(dist.is_some()))),
        ("WRITE_ZQ", f64::from(u8::from(zq.is_some()))),
    ];
    let entry = if tuning.shared_memory {
        "nearest_shared"
    } else {
        "nearest_reg"
    };
    let nearest = gpu.kernel(&shaders::QUANTIZE, entry, &constants, &BINDINGS)?;
    let uniform = gpu.uniform(&params(op, rows, codes)?);
    let (norms, first) = code_norms(gpu, &uniform, codebook, codes)?;
    let second = gpu.dispatch(
        op,
        &nearest,
        &[
            uniform.as_entire_binding(),
            z.binding(),
            codebook.binding(),
            norms.binding(),
            indices.binding(),
            gpu.optional(dist, 5),
            gpu.optional(zq, 6),
        ],
        rows.n.div_ceil((wg * tr) as usize) as u64,
    )?;
    Ok([first, second].into_iter().collect())
}

/// The codes' squared norms, which both searches need, and the dispatch that writes them.
fn code_norms(
    gpu: &Gpu,
    uniform: &wgpu::Buffer,
    codebook: &Tensor,
    codes: usize,
) -> Result<(Tensor, Dispatch)> {
    let wg = gpu.tuning().quantize_workgroup;
    let constants = [("WG", f64::from(wg))];
    let kernel = gpu.kernel(&shaders::QUANTIZE, "code_norms", &constants, &BINDINGS[..4])?;
    let norms = Tensor::zeros(gpu, &[codes], DType::F32)?;
    let wg = wg as usize;
    let dispatch = gpu.dispatch(
        "quantize",
        &kernel,
        &[
            uniform.as_entire_binding(),
            gpu.unused(1),
            codebook.binding(),
            norms.binding(),
        ],
        codes.div_ceil(wg) as u64,
    )?;
    Ok((norms, dispatch))
}

/// The packed search's bindings: [`BINDINGS`], then the packed vectors and codebook.
const PACKED_BINDINGS: [Bind; 9] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Write,
    Bind::Write,
    Bind::Write,
    Bind::Write,
    Bind::Read,
    Bind::Read,
];
/// What `pack_rows` binds: slot 7 is its output.
const PACK_BINDINGS: [Bind; 8] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Write,
    Bind::Write,
    Bind::Write,
    Bind::Write,
    Bind::Write,
];

/// The packed search of [`quantize`]: the codebook and slices of the vectors are packed
/// into vec4 rows in the device's scratch buffer, then `nearest_packed`, written out for
/// `[rows, codes]` per thread, walks them. It finds the same codes as `nearest_reg`.
#[allow(clippy::too_many_arguments)]
fn packed(
    gpu: &Gpu,
    z: &Tensor,
    rows: Rows,
    codebook: &Tensor,
    codes: usize,
    indices: &Tensor,
    dist: Option<&Tensor>,
    zq: Option<&Tensor>,
    [tr, tc]: [u32; 2],
) -> Result<Launch> {
    let op = "quantize";
    let [max_rows, max_codes] = unrolled::MAX_SEARCH_TILE;
    if !(1..=max_rows).contains(&tr) || !(1..=max_codes).contains(&tc) {
        return Err(Error::shape(
            op,
            format!("search tile {tr} x {tc} is outside 1..={max_rows} x 1..={max_codes}"),
        ));
    }
    let wg = gpu.tuning().quantize_workgroup;
    gpu.check_workgroup(op, [wg, 1], 0)?;
    let constants = [
        ("WG", f64::from(wg)),
        ("WRITE_DIST", f64::from(u8::from(dist.is_some()))),
        ("WRITE_ZQ", f64::from(u8::from(zq.is_some()))),
    ];
    let pack = gpu.kernel(
        &shaders::QUANTIZE,
        "pack_rows",
        &constants[..1],
        &PACK_BINDINGS,
    )?;
    // A subgroup shares the codes each step reads where its threads are whole (the rows
    // are padded to whole workgroups, so none returns early alone).
    let subgroup = gpu.subgroup_size().filter(|&size| {
        gpu.tuning().quantize_subgroup && tc.is_multiple_of(size) && wg.is_multiple_of(size)
    });
    let search = gpu.kernel_of(
        &unrolled::nearest_module_name(tr, tc, subgroup),
        || unrolled::nearest_source(tr, tc, subgroup),
        "nearest_packed",
        &constants,
        &PACKED_BINDINGS,
    )?;

    // The packed codebook first, then one slice of vectors, whole workgroups of rows.
    let base = params(op, rows, codes)?;
    let dim4 = rows.dim.div_ceil(4);
    let per_group = (wg * tr) as usize;
    let cap = gpu.tuning().pack_floats as usize;
    let slice = (cap / (4 * dim4) / per_group).max(1) * per_group;
    let slice = slice.min(rows.n.div_ceil(per_group) * per_group);
    let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment);
    let cb_bytes = (codes * dim4 * 16) as u64;
    let z_offset = cb_bytes.next_multiple_of(align);
    let scratch = gpu.scratch(z_offset + (slice * dim4 * 16) as u64)?;
    let cb_pk = Tensor::from_buffer(gpu, scratch.clone(), 0, &[codes * dim4 * 4], DType::F32)?;

    let uniform = gpu.uniform(&base);
    let (norms, first) = code_norms(gpu, &uniform, codebook, codes)?;
    let mut launch = Launch::from(first);
    let pack_into = |source: &Tensor, packed: &Tensor, params: &Params| -> Result<Dispatch> {
        let uniform = gpu.uniform(params);
        let resources = [
            uniform.as_entire_binding(),
            source.binding(),
            gpu.unused(2),
            gpu.unused(3),
            gpu.unused(4),
            gpu.unused(5),
            gpu.unused(6),
            packed.binding(),
        ];
        let vec4s = (params.rows * params.dim4) as usize;
        gpu.dispatch(op, &pack, &resources, vec4s.div_ceil(wg as usize) as u64)
    };
    let cb_params = Params {
        n: base.codes,
        plane: 1,
        rows: base.codes,
        ..base
    };
    launch = launch.then(pack_into(codebook, &cb_pk, &cb_params)?.into());
    for r0 in (0..rows.n).step_by(slice) {
        let padded = slice.min((rows.n - r0).div_ceil(per_group) * per_group);
        let z_pk = Tensor::from_buffer(
            gpu,
            scratch.clone(),
            z_offset,
            &[padded * dim4 * 4],
            DType::F32,
        )?;
        let params = Params {
            r0: r0 as u32,
            rows: padded as u32,
            ..base
        };
        launch = launch.then(pack_into(z, &z_pk, &params)?.into());
        let uniform = gpu.uniform(&params);
        let resources = [
            uniform.as_entire_binding(),
            z.binding(),
            codebook.binding(),
            norms.binding(),
            indices.binding(),
            gpu.optional(dist, 5),
            gpu.optional(zq, 6),
            z_pk.binding(),
            cb_pk.binding(),
        ];
        let groups = padded.div_ceil(per_group) as u64;
        launch = launch.then(gpu.dispatch(op, &search, &resources, groups)?.into());
    }
    Ok(launch)
}

/// Writes `zq` (`[n, dim]` or `[batch, dim, h, w]`) with the code vectors that
/// `indices` name: decoding from codes. Indices past the codebook are clamped.
pub fn gather(gpu: &Gpu, indices: &Tensor, codebook: &Tensor, zq: &Tensor) -> Result<Launch> {
    let op = "gather";
    zq.expect_dtype(op, DType::F32)?;
    let rows = Rows::of(op, zq)?;
    let codes = codebook_shape(op, codebook, rows.dim)?;
    indices.expect_dtype(op, DType::U32)?;
    ensure(indices.len() == rows.n, op, || {
        format!(
            "indices have shape {:?}, expected {} elements for output {:?}",
            indices.shape(),
            rows.n,
            zq.shape()
        )
    })?;
    let wg = gpu.tuning().quantize_workgroup;
    let constants = [
        ("WG", f64::from(wg)),
        ("WRITE_DIST", 0.0),
        ("WRITE_ZQ", 1.0),
    ];
    let kernel = gpu.kernel(&shaders::QUANTIZE, "gather", &constants, &BINDINGS)?;
    let uniform = gpu.uniform(&params(op, rows, codes)?);
    let d = gpu.dispatch(
        op,
        &kernel,
        &[
            uniform.as_entire_binding(),
            gpu.unused(1),
            codebook.binding(),
            gpu.unused(3),
            indices.binding(),
            gpu.unused(5),
            zq.binding(),
        ],
        rows.n.div_ceil(wg as usize) as u64,
    )?;
    Ok(d.into())
}

const NORMALIZE_WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormalizeParams {
    n: u32,
    dim: u32,
    plane: u32,
    _pad: u32,
}

/// Writes into `out` each vector of `z` (`[n, dim]` rows or `[batch, dim, h, w]` maps)
/// divided by its L2 norm (by 1e-12 where that is smaller, as PyTorch's `F.normalize`):
/// the nearest code of normalised vectors in a normalised codebook is the nearest by
/// angle. `out` has `z`'s shape and may not be `z`.
pub fn normalize(gpu: &Gpu, z: &Tensor, out: &Tensor) -> Result<Launch> {
    let op = "normalize";
    z.expect_dtype(op, DType::F32)?;
    out.expect_dtype(op, DType::F32)?;
    let rows = Rows::of(op, z)?;
    ensure(out.shape() == z.shape(), op, || {
        format!(
            "out has shape {:?}, expected the vectors' {:?}",
            out.shape(),
            z.shape()
        )
    })?;
    let kernel = gpu.kernel(
        &shaders::NORMALIZE,
        "normalize_rows",
        &[("WG", f64::from(NORMALIZE_WG))],
        &[Bind::Uniform, Bind::Read, Bind::Write],
    )?;
    let uniform = gpu.uniform(&NormalizeParams {
        n: rows.n as u32,
        dim: rows.dim as u32,
        plane: rows.plane as u32,
        _pad: 0,
    });
    let resources = [uniform.as_entire_binding(), z.binding(), out.binding()];
    let groups = rows.n.div_ceil(NORMALIZE_WG as usize) as u64;
    Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
}
