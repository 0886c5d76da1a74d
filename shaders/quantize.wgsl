// Nearest-code vector quantisation, fused: each thread walks the codebook keeping its
// rows' best distance and index, so the N x K distance matrix is never stored.
//
// Rows are addressed through `plane`: element d of row r lives at
//   (r / plane) * dim * plane + d * plane + r % plane,
// which is a row-major [n, dim] matrix for plane = 1 and a channels-first
// [batch, dim, h, w] feature map for plane = h * w (no transpose pass needed).
//
// The argmin uses ||e||^2 - 2 z.e (||z||^2 is the same for every code); ties go to the
// lowest index. The distance written out is recomputed exactly as ||z - e||^2.

override WG: u32 = 64u;
override WRITE_DIST: bool = true;
override WRITE_ZQ: bool = true;

// Rows per thread: an override up to MAX_TR; loops run to TR, so once it is resolved
// the compiler unrolls them and drops the unused registers.
override TR: u32 = 4u;
const MAX_TR: u32 = 8u;
const TC: u32 = 4u;   // codes per step, register variant
// Codes per staged tile, shared variant. 16 gave wrong codes on lavapipe (Mesa 22.3)
// for K >= 4096 with 4 rows per thread; 8 is right in every configuration tested.
const CS: u32 = 8u;
const DS: u32 = 16u;  // dimensions per staged tile, shared variant

struct Params {
    n: u32,
    dim: u32,
    codes: u32,
    plane: u32,
    // The packed search: the first row of this slice, its rows (padded to whole
    // workgroups) and the vec4s of one packed row.
    r0: u32,
    rows: u32,
    dim4: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> codebook: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;
@group(0) @binding(4) var<storage, read_write> idx: array<u32>;
@group(0) @binding(5) var<storage, read_write> dist: array<f32>;
@group(0) @binding(6) var<storage, read_write> zq: array<f32>;
// The packed search: vectors and codebook as rows of whole vec4s, zero-padded.
// `pack_rows` writes them through `packed`, the search reads them (slot 7 either way).
@group(0) @binding(7) var<storage, read> z_pk: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> cb_pk: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> packed: array<vec4<f32>>;

fn row_base(r: u32) -> u32 {
    return vector_base(r, p.dim, p.plane);
}

// norms[c] = ||codebook[c]||^2.
@compute @workgroup_size(WG)
fn code_norms(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let c = group_index(wid, nwg) * WG + lid.x;
    if (c >= p.codes) {
        return;
    }
    var s = 0.0;
    for (var d = 0u; d < p.dim; d++) {
        let e = codebook[c * p.dim + d];
        s = fma(e, e, s);
    }
    norms[c] = s;
}

// Writes the outputs of row r whose nearest code is c.
fn finish_row(r: u32, c: u32) {
    if (r >= p.n) {
        return;
    }
    idx[r] = c;
    let base = row_base(r);
    var s = 0.0;
    for (var d = 0u; d < p.dim; d++) {
        let e = codebook[c * p.dim + d];
        let diff = z[base + d * p.plane] - e;
        s = fma(diff, diff, s);
        if (WRITE_ZQ) {
            zq[base + d * p.plane] = e;
        }
    }
    if (WRITE_DIST) {
        dist[r] = s;
    }
}

struct Rows {
    base: array<u32, MAX_TR>,
    best: array<f32, MAX_TR>,
    code: array<u32, MAX_TR>,
}

fn start_rows(g: u32, t: u32) -> Rows {
    var rows: Rows;
    for (var i = 0u; i < TR; i++) {
        let r = min(g * WG * TR + t + i * WG, p.n - 1u);
        rows.base[i] = row_base(r);
        rows.best[i] = bitcast<f32>(0x7f800000u);  // +inf
        rows.code[i] = 0u;
    }
    return rows;
}

fn finish_rows(g: u32, t: u32, rows: Rows) {
    for (var i = 0u; i < TR; i++) {
        finish_row(g * WG * TR + t + i * WG, rows.code[i]);
    }
}

// Register tiles: TR rows x TC codes per step, operands read straight from memory.
@compute @workgroup_size(WG)
fn nearest_reg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = group_index(wid, nwg);
    if (g * WG * TR >= p.n) {
        return;
    }
    var rows = start_rows(g, lid.x);
    for (var c0 = 0u; c0 < p.codes; c0 += TC) {
        var acc: array<array<f32, TC>, MAX_TR>;
        var cb: array<u32, TC>;
        for (var j = 0u; j < TC; j++) {
            cb[j] = min(c0 + j, p.codes - 1u) * p.dim;
        }
        for (var d = 0u; d < p.dim; d++) {
            var zv: array<f32, MAX_TR>;
            var ev: array<f32, TC>;
            for (var i = 0u; i < TR; i++) {
                zv[i] = z[rows.base[i] + d * p.plane];
            }
            for (var j = 0u; j < TC; j++) {
                ev[j] = codebook[cb[j] + d];
            }
            for (var i = 0u; i < TR; i++) {
                for (var j = 0u; j < TC; j++) {
                    acc[i][j] = fma(zv[i], ev[j], acc[i][j]);
                }
            }
        }
        for (var j = 0u; j < TC; j++) {
            let c = c0 + j;
            if (c < p.codes) {
                let nc = norms[c];
                for (var i = 0u; i < TR; i++) {
                    let dc = nc - 2.0 * acc[i][j];
                    if (dc < rows.best[i]) {
                        rows.best[i] = dc;
                        rows.code[i] = c;
                    }
                }
            }
        }
    }
    finish_rows(g, lid.x, rows);
}

var<workgroup> tile: array<f32, CS * DS>;

// Shared tiles: CS codes x DS dimensions of the codebook staged in workgroup memory
// and shared by the workgroup's WG * TR rows.
@compute @workgroup_size(WG)
fn nearest_shared(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = group_index(wid, nwg);
    if (g * WG * TR >= p.n) {
        return;
    }
    var rows = start_rows(g, lid.x);
    for (var c0 = 0u; c0 < p.codes; c0 += CS) {
        var acc: array<array<f32, CS>, MAX_TR>;
        for (var d0 = 0u; d0 < p.dim; d0 += DS) {
            for (var e = lid.x; e < CS * DS; e += WG) {
                let c = c0 + e / DS;
                let d = d0 + e % DS;
                var v = 0.0;
                if (c < p.codes && d < p.dim) {
                    v = codebook[c * p.dim + d];
                }
                tile[e] = v;
            }
            workgroupBarrier();
            let dn = min(DS, p.dim - d0);
            for (var dd = 0u; dd < dn; dd++) {
                var zv: array<f32, MAX_TR>;
                for (var i = 0u; i < TR; i++) {
                    zv[i] = z[rows.base[i] + (d0 + dd) * p.plane];
                }
                for (var j = 0u; j < CS; j++) {
                    let ev = tile[j * DS + dd];
                    for (var i = 0u; i < TR; i++) {
                        acc[i][j] = fma(zv[i], ev, acc[i][j]);
                    }
                }
            }
            workgroupBarrier();
        }
        for (var j = 0u; j < CS; j++) {
            let c = c0 + j;
            if (c < p.codes) {
                let nc = norms[c];
                for (var i = 0u; i < TR; i++) {
                    let dc = nc - 2.0 * acc[i][j];
                    if (dc < rows.best[i]) {
                        rows.best[i] = dc;
                        rows.code[i] = c;
                    }
                }
            }
        }
    }
    finish_rows(g, lid.x, rows);
}

// zq rows = codebook[idx[r]]: decoding given codes. Codes past the end are clamped.
@compute @workgroup_size(WG)
fn gather(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    let c = min(idx[r], p.codes - 1u);
    let base = row_base(r);
    for (var d = 0u; d < p.dim; d++) {
        zq[base + d * p.plane] = codebook[c * p.dim + d];
    }
}

// Packs rows r0 .. r0 + rows of `z` (its layout from `plane`) into rows of dim4 vec4s,
// zeros past the last row and the last dimension. The codebook goes through the same
// kernel, bound as `z` with plane 1.
@compute @workgroup_size(WG)
fn pack_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let e = group_index(wid, nwg) * WG + lid.x;
    if (e >= p.rows * p.dim4) {
        return;
    }
    let r = p.r0 + e / p.dim4;
    let d = 4u * (e % p.dim4);
    var v = vec4<f32>();
    if (r < p.n) {
        let base = row_base(r);
        for (var i = 0u; i < 4u; i++) {
            if (d + i < p.dim) {
                v[i] = z[base + (d + i) * p.plane];
            }
        }
    }
    packed[e] = v;
}
