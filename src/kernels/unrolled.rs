//! WGSL text for the kernels whose register tiles are written out per tile shape:
//! `conv.wgsl`'s packed GEMM, `subpixel.wgsl`'s transposed convolution and
//! `quantize.wgsl`'s packed nearest-code search.
//!
//! On lavapipe, Mesa unrolls loops over a tile only while they are small: a 16 x 12 tile
//! written as loops over override-sized arrays keeps its accumulators in per-lane
//! scratch memory and ran a 1024^3 product at 12 GFLOP/s, while the same tile written
//! out, every accumulator a named variable, ran it at 28-31 (BENCHMARKS.md). So these
//! kernel bodies are generated per tile shape, and each shape is its own shader module.

use std::fmt::Write;

use crate::shaders::{CONV, QUANTIZE, SUBPIXEL};

const LANES: [&str; 4] = ["x", "y", "z", "w"];

/// WGSL text: a file's source, then lines appended to it.
struct Source(String);

impl Source {
    fn line(&mut self, text: String) {
        self.0.push_str(&text);
        self.0.push('\n');
    }
}

/// The largest tile, rows x vec4 columns, that [`Gemm`] writes out.
pub const MAX_TILE: [u32; 2] = [16, 4];

/// A written-out `gemm_reg`: each thread of a `WG_X x WG_Y` workgroup accumulates rows
/// `row + i WG_Y` (i < `rows`) and vec4 columns `col + j WG_X` (j < `cols4`) of C over
/// the packed operands, then stores them.
///
/// With `subgroup` S (which must divide `rows` and `WG_X`), the workgroup is
/// one-dimensional (subgroup builtins require it) and each subgroup must be S
/// consecutive threads from a multiple of S (the launcher asks the device,
/// `kernels::subgroups`), so S threads of one workgroup row, which all need the same A
/// rows: thread l of it loads rows l, l + S, ... and `subgroupBroadcast` hands each row
/// to the others. On lavapipe, whose loads cost per lane, that made a 1024^3 product
/// about 1.4x as fast. It adds the same products in the same order as the plain loads.
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    /// Rows of C per thread.
    pub rows: u32,
    /// vec4 columns of C per thread.
    pub cols4: u32,
    /// The subgroup size across which A's rows are shared, if they are.
    pub subgroup: Option<u32>,
    /// Whether each vec4 of C is stored whole, through `put4` (where the launcher has
    /// checked that it is four consecutive floats of the output); else each float
    /// through `put`. lavapipe compiles a pipeline at its first dispatch, and a quarter
    /// of the stores cut that by about a quarter for a training step.
    pub vec4_stores: bool,
}

impl Gemm {
    /// The name of the module holding `conv.wgsl` and this `gemm_reg`.
    pub fn module_name(&self) -> String {
        format!(
            "conv+gemm_reg_{}x{}{}{}",
            self.rows,
            self.cols4,
            subgroup_suffix(self.subgroup),
            if self.vec4_stores { "_vec4out" } else { "" }
        )
    }

    /// `conv.wgsl` followed by this `gemm_reg`.
    pub fn source(&self) -> String {
        let Gemm {
            rows,
            cols4,
            subgroup,
            vec4_stores,
        } = *self;
        let mut s = Source(CONV.source.to_string());
        s.line(format!(
            "\n// Written out by src/kernels/unrolled.rs for a {rows} x {} tile.",
            4 * cols4
        ));
        match subgroup {
            Some(_) => {
                s.line("@compute @workgroup_size(WG_X * WG_Y)".into());
                s.line("fn gemm_reg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {".into());
                s.line("    let lid = vec2<u32>(li % WG_X, li / WG_X);".into());
            }
            None => {
                s.line("@compute @workgroup_size(WG_X, WG_Y, 1)".into());
                s.line("fn gemm_reg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {".into());
            }
        }
        s.line("    let g = group_index(wid, nwg);".into());
        s.line("    if (g >= p.chunks * p.tiles_m * p.tiles_n) {\n        return;\n    }".into());
        s.line("    let t = packed_tile(g);".into());
        s.line(format!(
            "    let row = (t.tile / p.tiles_n) * {rows}u * WG_Y + lid.y;"
        ));
        s.line(format!(
            "    let col = (t.tile % p.tiles_n) * {cols4}u * WG_X + lid.x;"
        ));
        s.line("    let kq = p.kp / 4u;\n    let nq = p.np / 4u;".into());
        for i in 0..rows {
            for j in 0..cols4 {
                s.line(format!("    var c{i}_{j} = vec4<f32>();"));
            }
        }
        let a_loads: Vec<String> = match subgroup {
            Some(size) => (0..rows / size)
                .map(|q| {
                    format!(
                        "        let own{q} = a_pk[t.a0 + (row + ({q}u * {size}u + lane) * WG_Y) * kq + k4];"
                    )
                })
                .chain((0..rows).map(|i| {
                    format!(
                        "        let a{i} = subgroupBroadcast(own{}, {}u);",
                        i / size,
                        i % size
                    )
                }))
                .collect(),
            None => plain_a_loads(rows),
        };
        gemm_k_loop(&mut s, rows, cols4, &a_loads);
        gemm_stores(&mut s, rows, cols4, vec4_stores);
        s.line("}".into());
        s.0
    }
}

/// What a module name gains where its loads are shared across subgroups of `subgroup`.
fn subgroup_suffix(subgroup: Option<u32>) -> String {
    subgroup.map_or(String::new(), |size| format!("_subgroup{size}"))
}

/// The tile's stores, after the depth loop: through `put4` a vec4 at a time with
/// `vec4_stores`, else a float at a time through `put`.
fn gemm_stores(s: &mut Source, rows: u32, cols4: u32, vec4_stores: bool) {
    // Each row's offset and bias once, then each column's stores: `store` written out
    // per output repeated them, and the stores were then most of the module's compile
    // time (about 3 of 3.5 s on lavapipe, which compiles a pipeline at its first
    // dispatch).
    s.line("    let job = job_of(p.z);".into());
    for i in 0..rows {
        s.line(format!("    let m{i} = row + {i}u * WG_Y;"));
        s.line(format!(
            "    let base{i} = row_base(m{i}, p.split + t.chunk);\n    let bias{i} = row_bias(min(m{i}, p.m - 1u));"
        ));
    }
    for j in 0..cols4 {
        if vec4_stores {
            // The launcher's check makes the four columns all inside or all outside.
            s.line(format!("    let n{j} = 4u * (col + {j}u * WG_X);"));
            s.line(format!("    if (n{j} < p.nc && p.n0 + n{j} < job.n) {{"));
            s.line(format!("        let oc = out_col(p.n0 + n{j}, job);"));
            for i in 0..rows {
                s.line(format!(
                    "        if (m{i} < p.m) {{ put4((base{i} + oc) / 4u, c{i}_{j}, bias{i}); }}"
                ));
            }
            s.line("    }".into());
            continue;
        }
        for (c, lane) in LANES.iter().enumerate() {
            s.line(format!(
                "    let n{j}{c} = 4u * (col + {j}u * WG_X) + {c}u;"
            ));
            s.line(format!(
                "    if (n{j}{c} < p.nc && p.n0 + n{j}{c} < job.n) {{"
            ));
            s.line(format!("        let oc = out_col(p.n0 + n{j}{c}, job);"));
            for i in 0..rows {
                s.line(format!(
                    "        if (m{i} < p.m) {{ put(base{i} + oc, c{i}_{j}.{lane}, bias{i}); }}"
                ));
            }
            s.line("    }".into());
        }
    }
}

/// Each thread's own loads of its rows of A at depth `k4`.
fn plain_a_loads(rows: u32) -> Vec<String> {
    (0..rows)
        .map(|i| format!("        let a{i} = a_pk[t.a0 + (row + {i}u * WG_Y) * kq + k4];"))
        .collect()
}

/// The loop over the depth: `a_loads` (which bind `a0`, `a1`, ...), then B's vec4 rows
/// and the tile's multiply-adds.
fn gemm_k_loop(s: &mut Source, rows: u32, cols4: u32, a_loads: &[String]) {
    s.line("    for (var k4 = 0u; k4 < kq; k4++) {".into());
    for load in a_loads {
        s.line(load.clone());
    }
    for (kk, lane) in LANES.iter().enumerate() {
        s.line(format!(
            "        let r{kk} = t.b0 + (4u * k4 + {kk}u) * nq + col;"
        ));
        for j in 0..cols4 {
            s.line(format!(
                "        let b{kk}_{j} = b_pk[r{kk} + {j}u * WG_X];"
            ));
        }
        for i in 0..rows {
            let mut fmas = String::from("       ");
            for j in 0..cols4 {
                let _ = write!(
                    fmas,
                    " c{i}_{j} = fma(vec4<f32>(a{i}.{lane}), b{kk}_{j}, c{i}_{j});"
                );
            }
            s.line(fmas);
        }
    }
    s.line("    }".into());
}

/// The name of the module holding `subpixel.wgsl` and its `subpixel` entry point for
/// `outputs` output channels and `cols` input columns per thread.
pub fn subpixel_module_name(outputs: u32, cols: u32) -> String {
    format!("subpixel_{outputs}x{cols}")
}

/// `subpixel.wgsl` followed by `subpixel`: thread (b, a, g) of the flattened grid holds
/// the 4 `cols` sums of each of `outputs` channels over output rows 2a, 2a + 1 and columns
/// 2c .. 2c + 2 `cols` - 1 (c = `cols` g). Each output sums input channels in order and,
/// within one, its (up to) four taps by input row, then column.
pub fn subpixel_source(outputs: u32, cols: u32) -> String {
    let mut s = Source(SUBPIXEL.source.to_string());
    s.line(format!(
        "\n// Written out by src/kernels/unrolled.rs for {outputs} output channels x {cols} columns."
    ));
    s.line("@compute @workgroup_size(WG)".into());
    s.line("fn subpixel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {".into());
    s.line("    let i = group_index(wid, nwg) * WG + li;".into());
    s.line("    if (i >= p.threads) {\n        return;\n    }".into());
    s.line("    let a = (i / p.groups) % p.h;\n    let b = i / (p.groups * p.h);".into());
    s.line(format!("    let c = (i % p.groups) * {cols}u;"));
    // Input rows a - 1 + r (r < 3) and columns c - 1 + q (q < cols + 2).
    let inputs = |f: &mut dyn FnMut(u32, u32)| {
        for r in 0..3 {
            for q in 0..cols + 2 {
                f(r, q);
            }
        }
    };
    inputs(&mut |r, q| {
        let (y, x) = (format!("i32(a) - 1 + {r}"), format!("i32(c) - 1 + {q}"));
        s.line(format!("    let in{r}_{q} = inside({y}, {x});"));
        s.line(format!("    let at{r}_{q} = offset({y}, {x});"));
    });
    // Output (2a + py, 2(c + t) + px) of channel o.
    let mut sums = Vec::new();
    for o in 0..outputs {
        for (py, px) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            sums.extend((0..cols).map(|t| (o, py, px, t)));
        }
    }
    for &(o, py, px, t) in &sums {
        s.line(format!("    var s{o}_{py}{px}_{t} = 0.0;"));
    }
    s.line("    let plane = p.h * p.w;".into());
    s.line("    for (var ci = 0u; ci < p.cin; ci++) {".into());
    s.line("        let base = (b * p.cin + ci) * plane;".into());
    inputs(&mut |r, q| {
        s.line(format!(
            "        let v{r}_{q} = load_in(base + at{r}_{q}, in{r}_{q});"
        ));
    });
    for o in 0..outputs {
        for ky in 0..4 {
            s.line(format!(
                "        let w{o}_{ky} = wt[(ci * {outputs}u + {o}u) * 4u + {ky}u];"
            ));
        }
        for &(_, py, px, t) in sums.iter().filter(|sum| sum.0 == o) {
            let mut fmas = String::from("       ");
            for r in [py, py + 1] {
                for q in [t + px, t + px + 1] {
                    let (ky, kx) = (py + 3 - 2 * r, px + 3 + 2 * t - 2 * q);
                    let _ = write!(
                        fmas,
                        " s{o}_{py}{px}_{t} = fma(v{r}_{q}, w{o}_{ky}.{}, s{o}_{py}{px}_{t});",
                        LANES[kx as usize]
                    );
                }
            }
            s.line(fmas);
        }
    }
    s.line("    }".into());
    for &(o, py, px, t) in &sums {
        s.line(format!(
            "    store_out(b, {o}u, {outputs}u, 2u * a + {py}u, 2u * (c + {t}u) + {px}u, s{o}_{py}{px}_{t});"
        ));
    }
    s.line("}".into());
    s.0
}

/// The largest search tile, rows x codes per thread, that [`nearest_source`] writes out.
pub const MAX_SEARCH_TILE: [u32; 2] = [16, 16];

/// The name of the module holding `quantize.wgsl` and `nearest_packed` for `rows` rows x
/// `codes` codes per thread, the codes shared across subgroups of `subgroup` threads.
pub fn nearest_module_name(rows: u32, codes: u32, subgroup: Option<u32>) -> String {
    format!(
        "quantize+nearest_packed_{rows}x{codes}{}",
        subgroup_suffix(subgroup)
    )
}

/// `quantize.wgsl` followed by `nearest_packed`: each thread of a `WG` workgroup owns
/// rows `t + i WG` (i < `rows`) of its workgroup's slice and walks the codebook `codes`
/// codes at a time, both operands read as vec4 along the dimension. Each score sums the
/// dimensions in order, as `nearest_reg` does, so both find the same codes.
///
/// Every thread reads the same codes. With `subgroup` S (which must divide `codes` and
/// `WG`, on a device whose subgroups all have S threads), thread l of a subgroup loads
/// codes l, l + S, ... of each step and `subgroupBroadcast` hands them to the others.
pub fn nearest_source(rows: u32, codes: u32, subgroup: Option<u32>) -> String {
    let mut s = Source(QUANTIZE.source.to_string());
    s.line(format!(
        "\n// Written out by src/kernels/unrolled.rs for {rows} rows x {codes} codes."
    ));
    s.line("@compute @workgroup_size(WG)".into());
    let lane = match subgroup {
        Some(_) => ", @builtin(subgroup_invocation_id) lane: u32",
        None => "",
    };
    s.line(format!("fn nearest_packed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>{lane}) {{"));
    s.line(format!(
        "    let first = group_index(wid, nwg) * WG * {rows}u + lid.x;"
    ));
    s.line("    if (first >= p.rows) {\n        return;\n    }".into());
    s.line("    let dq = p.dim4;".into());
    for i in 0..rows {
        s.line(format!("    let z{i} = (first + {i}u * WG) * dq;"));
        s.line(format!(
            "    var best{i} = bitcast<f32>(0x7f800000u);\n    var code{i} = 0u;"
        ));
    }
    s.line(format!(
        "    for (var c0 = 0u; c0 < p.codes; c0 += {codes}u) {{"
    ));
    // The codes this thread loads at each step: all of them, or its share of its
    // subgroup's.
    let own: Vec<String> = match subgroup {
        Some(size) => (0..codes / size)
            .map(|q| format!("{q}u * {size}u + lane"))
            .collect(),
        None => (0..codes).map(|j| format!("{j}u")).collect(),
    };
    for (q, offset) in own.iter().enumerate() {
        s.line(format!(
            "        let e{q} = min(c0 + {offset}, p.codes - 1u) * dq;"
        ));
    }
    for i in 0..rows {
        for j in 0..codes {
            s.line(format!("        var s{i}_{j} = 0.0;"));
        }
    }
    s.line("        for (var d4 = 0u; d4 < dq; d4++) {".into());
    for i in 0..rows {
        s.line(format!("            let a{i} = z_pk[z{i} + d4];"));
    }
    for q in 0..own.len() {
        s.line(format!("            let own{q} = cb_pk[e{q} + d4];"));
    }
    for j in 0..codes {
        let code = match subgroup {
            Some(size) => format!("subgroupBroadcast(own{}, {}u)", j / size, j % size),
            None => format!("own{j}"),
        };
        s.line(format!("            let b{j} = {code};"));
    }
    for i in 0..rows {
        for j in 0..codes {
            let mut fmas = String::from("           ");
            for lane in LANES {
                let _ = write!(fmas, " s{i}_{j} = fma(a{i}.{lane}, b{j}.{lane}, s{i}_{j});");
            }
            s.line(fmas);
        }
    }
    s.line("        }".into());
    for j in 0..codes {
        s.line(format!("        if (c0 + {j}u < p.codes) {{"));
        s.line(format!("            let n{j} = norms[c0 + {j}u];"));
        for i in 0..rows {
            s.line(format!(
                "            if (n{j} - 2.0 * s{i}_{j} < best{i}) {{ best{i} = n{j} - 2.0 * s{i}_{j}; code{i} = c0 + {j}u; }}"
            ));
        }
        s.line("        }".into());
    }
    s.line("    }".into());
    for i in 0..rows {
        s.line(format!(
            "    finish_row(p.r0 + first + {i}u * WG, code{i});"
        ));
    }
    s.line("}".into());
    s.0
}
