// Convolution as an implicit GEMM, C[m][n] = sum_k A[m][k] * B[k][n], where A and B are
// gathered from the tensors on the fly: no im2col buffer is ever written.
//
// The X side is a tensor [batch, cin, hin, win], the Y side [batch, cout, hout, wout],
// the weight [cout, cin, kh, kw] (PyTorch's Conv2d layout, and ConvTranspose2d's with
// X and Y swapped). MODE picks the product:
//   0  conv forward:         m = co, n = (b, oy, ox),          k = (ci, ky, kx)   Y = W * X
//   1  conv input gradient:  m = ci, n = (b, y, x) of phase z, k = (co, ty, tx)   X = W^T * Y
//      (also the transposed conv's forward). Output rows y = ry + s*yy of one stride
//      phase (ry, rx) only meet taps ky = ky0 + s*ty, so each phase is its own GEMM
//      and no multiply is spent on taps that fall between input pixels.
//   2  conv weight gradient: m = co, n = (ci, ky, kx),         k = (b, oy, ox)    dW = Y * X^T
//      split along k into `splits` chunks whose partial sums a second pass adds in a
//      fixed order (deterministic, no atomics).
//
// Two ways to run a product:
// - Direct: each thread owns a TM x TN register tile of C (both overridable) and gathers
//   its operands itself. `main_reg` reads them straight from memory (CPU drivers, where
//   barriers are dear); `main_shared` stages BK-deep slices in workgroup memory (GPUs).
// - Packed (CPU drivers, products of at least `packed_from` rows and columns): `pack_a`
//   and `pack_b` gather a slice of A and B once (ReLUs applied, zeros outside the
//   problem) into row-major scratch matrices of whole vec4 rows padded to the tile, and
//   `gemm_reg`, whose body src/kernels/unrolled.rs writes out per tile shape and appends
//   to this file, reads both as vec4 with no bounds checks and stores through the parts
//   of `store` below (or `put4`, a vec4 at a time, where the output allows). On lavapipe
//   a load costs the same per lane whether scalar or vec4, and only straight-line code
//   keeps a large tile in registers.
//   A packed: [mp][kp], the job's rows, depth k0 .. k0 + kc.
//   B packed: [kp][np], the same depth, columns n0 .. n0 + nc of the job's.
//   MODE 2 stacks `chunks` such pairs, one per depth chunk (k0 + c kc, to at most kend),
//   so one dispatch of each kernel packs and multiplies them all.

override MODE: u32 = 0u;
override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override HAS_BIAS: bool = false;
// max(0, v) applied when loading the X side, the Y side, or storing the result.
override RELU_X: bool = false;
override RELU_Y: bool = false;
override RELU_OUT: bool = false;
// The epilogue of MODE 0 and 1, after the bias and RELU_OUT, on tensors shaped like the
// output: zero the result where `gate` is not positive (a gradient through the ReLU
// that made or read `gate`), then add `addend` (a residual connection, or two
// gradients meeting at a fork).
override GATE_OUT: bool = false;
override ADD_OUT: bool = false;

// The register tile is TM x TN, at most MAX_TM x MAX_TN; loops run to the overrides,
// so once they are resolved the compiler unrolls them and drops the unused registers.
override TM: u32 = 4u;
override TN: u32 = 4u;
const MAX_TM: u32 = 8u;
const MAX_TN: u32 = 12u;
const BK: u32 = 16u;

struct Params {
    batch: u32, cin: u32, hin: u32, win: u32,
    cout: u32, hout: u32, wout: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, zcount: u32,
    m: u32, n: u32, k: u32, tiles_n: u32,
    tiles_m: u32, k_chunk: u32, _pad0: u32, _pad1: u32,
    // The packed path's sub-GEMM: job z, columns n0 .. n0 + nc, depth k0 .. k0 + kc
    // (padded to kp), B row length np, A rows mp; MODE 2's first depth chunk `split`,
    // the chunks stacked, and where the last ends.
    z: u32, n0: u32, nc: u32, k0: u32,
    kc: u32, kp: u32, np: u32, mp: u32,
    split: u32, chunks: u32, kend: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read> ys: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> gate: array<f32>;
@group(0) @binding(7) var<storage, read> addend: array<f32>;
// The packed path's vec4 views of slots 1, 2 and 5 to 7 (no entry point uses both views
// of a slot): the packed operands, written to slot 5 by `pack_a` and `pack_b`; and the
// output, gate and addend of a `gemm_reg` that stores whole vec4s (`put4`).
@group(0) @binding(1) var<storage, read> a_pk: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b_pk: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> gate4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> addend4: array<vec4<f32>>;

// The part of the problem that workgroup z solves.
struct Job {
    n: u32,        // columns
    k_begin: u32,
    k_end: u32,
    ry: u32, rx: u32,   // MODE 1: the output phase
    ky0: u32, kx0: u32, // MODE 1: its first tap
    nty: u32, ntx: u32, // MODE 1: its taps per axis
    hy: u32, wx: u32,   // MODE 1: its rows and columns
}

fn ceil_div(a: u32, b: u32) -> u32 {
    return (a + b - 1u) / b;
}

fn taps(first: u32, size: u32) -> u32 {
    return select(0u, ceil_div(size - first, p.stride), first < size);
}

fn job_of(z: u32) -> Job {
    var j: Job;
    j.k_begin = 0u;
    j.k_end = p.k;
    j.n = p.n;
    if (MODE == 1u) {
        let s = p.stride;
        j.ry = z / s;
        j.rx = z % s;
        j.ky0 = (j.ry + p.pad) % s;
        j.kx0 = (j.rx + p.pad) % s;
        j.nty = taps(j.ky0, p.kh);
        j.ntx = taps(j.kx0, p.kw);
        j.hy = taps(j.ry, p.hin);
        j.wx = taps(j.rx, p.win);
        j.n = p.batch * j.hy * j.wx;
        j.k_end = p.cout * j.nty * j.ntx;
    } else if (MODE == 2u) {
        j.k_begin = min(z * p.k_chunk, p.k);
        j.k_end = min(j.k_begin + p.k_chunk, p.k);
    }
    return j;
}

// The dimensions of the k coordinate (outer, mid, inner).
fn k_dims(j: Job) -> vec3<u32> {
    if (MODE == 0u) {
        return vec3<u32>(p.cin, p.kh, p.kw);
    } else if (MODE == 1u) {
        return vec3<u32>(p.cout, j.nty, j.ntx);
    }
    return vec3<u32>(p.batch, p.hout, p.wout);
}

fn k_coord(k: u32, d: vec3<u32>) -> vec3<u32> {
    return vec3<u32>(k / (d.y * d.z), (k / d.z) % d.y, k % d.z);
}

// Steps a k coordinate by one without dividing.
fn k_next(c: vec3<u32>, d: vec3<u32>) -> vec3<u32> {
    var r = c;
    r.z += 1u;
    if (r.z == d.z) {
        r.z = 0u;
        r.y += 1u;
        if (r.y == d.y) {
            r.y = 0u;
            r.x += 1u;
        }
    }
    return r;
}

// Every operand address splits into a part that depends on the row (m) or column (n)
// alone, decoded once per thread, and a part that depends on k alone, computed once per
// step and shared by the thread's whole tile:
//   A[m][k] = a_src[row(m) + ko.a]
//   B[k][n] = b_src[col.off + ko.b] if (col.y + ko.dy, col.x + ko.dx) lies inside the
//             B-side image, else 0.
struct KOff {
    a: u32,
    b: i32,
    dy: i32,
    dx: i32,
}

struct Col {
    off: i32,
    y: i32,
    x: i32,
}

fn k_off(kc: vec3<u32>, j: Job) -> KOff {
    var o: KOff;
    let s = p.stride;
    if (MODE == 0u) {
        // k = (ci, ky, kx): A = W[m][k] row-major, B = X[b][ci][y0 + ky][x0 + kx].
        o.a = (kc.x * p.kh + kc.y) * p.kw + kc.z;
        o.b = i32((kc.x * p.hin + kc.y) * p.win + kc.z);
        o.dy = i32(kc.y);
        o.dx = i32(kc.z);
    } else if (MODE == 1u) {
        // k = (co, ty, tx), tap (ky0 + s ty, kx0 + s tx): A = W[co][m][ky][kx],
        // B = Y[b][co][qy - ty][qx - tx].
        o.a = ((kc.x * p.cin) * p.kh + j.ky0 + s * kc.y) * p.kw + j.kx0 + s * kc.z;
        o.b = i32(kc.x * p.hout * p.wout) - i32(kc.y * p.wout + kc.z);
        o.dy = -i32(kc.y);
        o.dx = -i32(kc.z);
    } else {
        // k = (b, oy, ox): A = Y[b][m][oy][ox], B = X[b][ci][s oy + ky - pad][s ox + kx - pad].
        o.a = kc.x * p.cout * p.hout * p.wout + kc.y * p.wout + kc.z;
        o.b = i32(kc.x * p.cin * p.hin * p.win + s * (kc.y * p.win + kc.z));
        o.dy = i32(s * kc.y);
        o.dx = i32(s * kc.z);
    }
    return o;
}

// The A offset of row m (clamped: rows past the end compute garbage nobody stores).
fn row_of(m_in: u32) -> u32 {
    let m = min(m_in, p.m - 1u);
    if (MODE == 0u) {
        return m * p.cin * p.kh * p.kw;
    } else if (MODE == 1u) {
        return m * p.kh * p.kw;
    }
    return m * p.hout * p.wout;
}

fn col_of(n_in: u32, j: Job) -> Col {
    let n = min(n_in, max(j.n, 1u) - 1u);
    var c: Col;
    let s = p.stride;
    if (MODE == 0u) {
        let ox = n % p.wout;
        let oy = (n / p.wout) % p.hout;
        let b = n / (p.wout * p.hout);
        c.y = i32(oy * s) - i32(p.pad);
        c.x = i32(ox * s) - i32(p.pad);
        c.off = i32(b * p.cin * p.hin * p.win) + c.y * i32(p.win) + c.x;
    } else if (MODE == 1u) {
        // Output (y, x) = (ry + s yy, rx + s xx) meets input row qy - ty, where
        // qy = (ry + pad - ky0) / s + yy.
        let xx = n % j.wx;
        let yy = (n / j.wx) % j.hy;
        let b = n / (j.wx * j.hy);
        c.y = i32((j.ry + p.pad - j.ky0) / s + yy);
        c.x = i32((j.rx + p.pad - j.kx0) / s + xx);
        c.off = i32(b * p.cout * p.hout * p.wout) + c.y * i32(p.wout) + c.x;
    } else {
        let kx = n % p.kw;
        let ky = (n / p.kw) % p.kh;
        let ci = n / (p.kw * p.kh);
        c.y = i32(ky) - i32(p.pad);
        c.x = i32(kx) - i32(p.pad);
        c.off = i32(ci * p.hin * p.win) + c.y * i32(p.win) + c.x;
    }
    return c;
}

fn relu_if(v: f32, on: bool) -> f32 {
    return select(v, max(v, 0.0), on);
}

fn load_a(row: u32, o: KOff) -> f32 {
    if (MODE == 2u) {
        return relu_if(ys[row + o.a], RELU_Y);
    }
    return wt[row + o.a];
}

fn load_b(c: Col, o: KOff) -> f32 {
    let y = u32(c.y + o.dy);
    let x = u32(c.x + o.dx);
    if (MODE == 1u) {
        if (y >= p.hout || x >= p.wout) {
            return 0.0;
        }
        return relu_if(ys[u32(c.off + o.b)], RELU_Y);
    }
    if (y >= p.hin || x >= p.win) {
        return 0.0;
    }
    return relu_if(xs[u32(c.off + o.b)], RELU_X);
}

// Where output (m, n) goes: the output tensor's offset of column n.
fn out_col(n_in: u32, j: Job) -> u32 {
    let n = min(n_in, max(j.n, 1u) - 1u);
    if (MODE == 0u) {
        let plane = p.hout * p.wout;
        return (n / plane) * p.cout * plane + n % plane;
    } else if (MODE == 1u) {
        let xx = n % j.wx;
        let yy = (n / j.wx) % j.hy;
        let b = n / (j.wx * j.hy);
        return b * p.cin * p.hin * p.win + (j.ry + p.stride * yy) * p.win + j.rx + p.stride * xx;
    }
    return n;
}

fn store(m: u32, n: u32, oc: u32, j: Job, z: u32, acc: f32) {
    if (m < p.m && n < j.n) {
        put(row_base(m, z) + oc, acc, row_bias(m));
    }
}

// `store` in parts, so that a thread storing a tile computes each row's share once: the
// output offset of row m (of split z), to which `out_col` adds the column's; the row's
// bias; and the store of one result at offset `at`.
fn row_base(m: u32, z: u32) -> u32 {
    if (MODE == 2u) {
        return (z * p.m + m) * p.n;
    } else if (MODE == 1u) {
        return m * p.hin * p.win;
    }
    return m * p.hout * p.wout;
}

fn row_bias(m: u32) -> f32 {
    if (HAS_BIAS && MODE != 2u) {
        return bias[m];
    }
    return 0.0;
}

fn put(at: u32, acc: f32, b: f32) {
    if (MODE == 2u) {
        out[at] = acc;
        return;
    }
    var v = acc;
    if (HAS_BIAS) {
        v += b;
    }
    v = relu_if(v, RELU_OUT);
    if (GATE_OUT && !(gate[at] > 0.0)) {
        v = 0.0;
    }
    if (ADD_OUT) {
        v += addend[at];
    }
    out[at] = v;
}

// `put` for four results at once, at vec4 `at4` of the output (where the launcher has
// checked that a vec4 of columns is four consecutive floats of it): the same operations
// on each, with a quarter of the stores and of the gate's and addend's loads.
fn put4(at4: u32, acc: vec4<f32>, b: f32) {
    if (MODE == 2u) {
        out4[at4] = acc;
        return;
    }
    var v = acc;
    if (HAS_BIAS) {
        v += b;
    }
    if (RELU_OUT) {
        v = max(v, vec4<f32>());
    }
    if (GATE_OUT) {
        v = select(vec4<f32>(), v, gate4[at4] > vec4<f32>());
    }
    if (ADD_OUT) {
        v += addend4[at4];
    }
    out4[at4] = v;
}

// Workgroups are numbered linearly over all three grid dimensions, so a problem with
// more tiles than one grid dimension allows still runs in one dispatch.
struct Tile {
    tn: u32,
    tm: u32,
    z: u32,
}

fn tile_of(wid: vec3<u32>, nwg: vec3<u32>) -> Tile {
    let g = group_index(wid, nwg);
    var t: Tile;
    t.tn = g % p.tiles_n;
    t.tm = (g / p.tiles_n) % p.tiles_m;
    t.z = g / (p.tiles_n * p.tiles_m);
    return t;
}

fn finish(t: Tile, j: Job, lx: u32, ly: u32, acc: array<array<f32, MAX_TN>, MAX_TM>) {
    for (var jj = 0u; jj < TN; jj++) {
        let n = t.tn * TN * WG_X + lx + jj * WG_X;
        let oc = out_col(n, j);
        for (var i = 0u; i < TM; i++) {
            store(t.tm * TM * WG_Y + ly + i * WG_Y, n, oc, j, t.z, acc[i][jj]);
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main_reg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let t = tile_of(wid, nwg);
    if (t.z >= p.zcount) {
        return;
    }
    let j = job_of(t.z);
    var rows: array<u32, MAX_TM>;
    for (var i = 0u; i < TM; i++) {
        rows[i] = row_of(t.tm * TM * WG_Y + lid.y + i * WG_Y);
    }
    var cols: array<Col, MAX_TN>;
    for (var jj = 0u; jj < TN; jj++) {
        cols[jj] = col_of(t.tn * TN * WG_X + lid.x + jj * WG_X, j);
    }
    var acc: array<array<f32, MAX_TN>, MAX_TM>;
    let d = k_dims(j);
    var kc = k_coord(j.k_begin, d);
    for (var k = j.k_begin; k < j.k_end; k++) {
        let o = k_off(kc, j);
        var a: array<f32, MAX_TM>;
        var b: array<f32, MAX_TN>;
        for (var i = 0u; i < TM; i++) {
            a[i] = load_a(rows[i], o);
        }
        for (var jj = 0u; jj < TN; jj++) {
            b[jj] = load_b(cols[jj], o);
        }
        for (var i = 0u; i < TM; i++) {
            for (var jj = 0u; jj < TN; jj++) {
                acc[i][jj] = fma(a[i], b[jj], acc[i][jj]);
            }
        }
        kc = k_next(kc, d);
    }
    finish(t, j, lid.x, lid.y, acc);
}

var<workgroup> a_tile: array<f32, BK * TM * WG_Y>;
var<workgroup> b_tile: array<f32, BK * TN * WG_X>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main_shared(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let t = tile_of(wid, nwg);
    if (t.z >= p.zcount) {
        return;
    }
    let j = job_of(t.z);
    let d = k_dims(j);
    let threads = WG_X * WG_Y;
    let tid = lid.y * WG_X + lid.x;
    let bm = TM * WG_Y;
    let bn = TN * WG_X;
    var acc: array<array<f32, MAX_TN>, MAX_TM>;
    for (var k0 = j.k_begin; k0 < j.k_end; k0 += BK) {
        for (var e = tid; e < BK * bm; e += threads) {
            let k = k0 + e / bm;
            var v = 0.0;
            if (k < j.k_end) {
                v = load_a(row_of(t.tm * bm + e % bm), k_off(k_coord(k, d), j));
            }
            a_tile[e] = v;
        }
        for (var e = tid; e < BK * bn; e += threads) {
            let k = k0 + e / bn;
            var v = 0.0;
            if (k < j.k_end) {
                v = load_b(col_of(t.tn * bn + e % bn, j), k_off(k_coord(k, d), j));
            }
            b_tile[e] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, MAX_TM>;
            var b: array<f32, MAX_TN>;
            for (var i = 0u; i < TM; i++) {
                a[i] = a_tile[kk * bm + lid.y + i * WG_Y];
            }
            for (var jj = 0u; jj < TN; jj++) {
                b[jj] = b_tile[kk * bn + lid.x + jj * WG_X];
            }
            for (var i = 0u; i < TM; i++) {
                for (var jj = 0u; jj < TN; jj++) {
                    acc[i][jj] = fma(a[i], b[jj], acc[i][jj]);
                }
            }
        }
        workgroupBarrier();
    }
    finish(t, j, lid.x, lid.y, acc);
}

// Packing. Integer division is scalar on CPU drivers, so each invocation decodes its
// coordinates once and steps through the rest: pack_a writes one vec4 (four depths of
// one row), pack_b PACK_K vec4s (PACK_K depths of four columns; kp is a multiple of it).
const PACK_WG: u32 = 64u;
const PACK_K: u32 = 16u;

// Depth chunk c of a packed product: its first depth and how many it holds.
fn chunk(c: u32) -> vec2<u32> {
    let k0 = p.k0 + c * p.kc;
    return vec2<u32>(k0, min(p.kc, p.kend - k0));
}

// Workgroup g of a packed product: its chunk, its tile within the chunk, and where the
// chunk's packed A and B begin (in vec4s).
struct PackedTile {
    chunk: u32,
    tile: u32,
    a0: u32,
    b0: u32,
}

fn packed_tile(g: u32) -> PackedTile {
    var t: PackedTile;
    let tiles = p.tiles_m * p.tiles_n;
    t.chunk = g / tiles;
    t.tile = g % tiles;
    t.a0 = t.chunk * p.mp * (p.kp / 4u);
    t.b0 = t.chunk * p.kp * (p.np / 4u);
    return t;
}

@compute @workgroup_size(PACK_WG)
fn pack_a(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let e = group_index(wid, nwg) * PACK_WG + li;
    let q = p.kp / 4u;
    if (e >= p.chunks * p.mp * q) {
        return;
    }
    let at = chunk(e / (p.mp * q));
    let j = job_of(p.z);
    let d = k_dims(j);
    let m = (e / q) % p.mp;
    let k = 4u * (e % q);
    let row = row_of(m);
    var kc = k_coord(at.x + min(k, at.y), d);
    var v = vec4<f32>();
    for (var i = 0u; i < 4u; i++) {
        if (m < p.m && k + i < at.y) {
            v[i] = load_a(row, k_off(kc, j));
        }
        kc = k_next(kc, d);
    }
    out4[e] = v;
}

@compute @workgroup_size(PACK_WG)
fn pack_b(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let e = group_index(wid, nwg) * PACK_WG + li;
    let q = p.np / 4u;
    let per_chunk = (p.kp / PACK_K) * q;
    if (e >= p.chunks * per_chunk) {
        return;
    }
    let ch = e / per_chunk;
    let at = chunk(ch);
    let j = job_of(p.z);
    let d = k_dims(j);
    let k = PACK_K * ((e % per_chunk) / q);
    let c = 4u * (e % q);
    var cols: array<Col, 4>;
    for (var i = 0u; i < 4u; i++) {
        cols[i] = col_of(p.n0 + c + i, j);
    }
    var kc = k_coord(at.x + min(k, at.y), d);
    for (var r = 0u; r < PACK_K; r++) {
        let o = k_off(kc, j);
        var v = vec4<f32>();
        for (var i = 0u; i < 4u; i++) {
            if (k + r < at.y && c + i < p.nc) {
                v[i] = load_b(cols[i], o);
            }
        }
        out4[(ch * p.kp + k + r) * q + e % q] = v;
        kc = k_next(kc, d);
    }
}

// The packed product on GPUs. Each WG_X x WG_Y workgroup computes a (GS_TM WG_Y) x
// (4 GS_TN4 WG_X) tile of C from GBK-deep slices of both packed operands staged in
// workgroup memory, double-buffered: the next slice is written into one buffer while
// the current one is read from the other, so one barrier a slice suffices. A is staged
// transposed (depth-major), so the threads of a row read one depth's values from
// consecutive words; B is staged as it lies, in vec4s. Thread (x, y) owns rows
// y + i WG_Y and vec4 columns x + j WG_X, as in `gemm_reg`, and sums every output over
// the depth in the same order with the same fused multiply-adds: the same bits.
override GS_TM: u32 = 4u;
override GS_TN4: u32 = 1u;
const MAX_GS_TM: u32 = 8u;
const MAX_GS_TN4: u32 = 2u;
const GBK: u32 = 8u;

var<workgroup> gs_a: array<f32, 2u * GBK * GS_TM * WG_Y>;
var<workgroup> gs_b: array<vec4<f32>, 2u * GBK * GS_TN4 * WG_X>;

// Stages depths k0 .. k0 + GBK of the workgroup's rows of A and columns of B in buffer
// `buf`.
fn gs_stage(buf: u32, k0: u32, row0: u32, col0: u32, tid: u32, t: PackedTile) {
    let threads = WG_X * WG_Y;
    let bm = GS_TM * WG_Y;
    let bn4 = GS_TN4 * WG_X;
    let kq = p.kp / 4u;
    let nq = p.np / 4u;
    for (var e = tid; e < bm * (GBK / 4u); e += threads) {
        let r = e / (GBK / 4u);
        let q = e % (GBK / 4u);
        let v = a_pk[t.a0 + (row0 + r) * kq + k0 / 4u + q];
        let base = buf * GBK * bm + 4u * q * bm + r;
        gs_a[base] = v.x;
        gs_a[base + bm] = v.y;
        gs_a[base + 2u * bm] = v.z;
        gs_a[base + 3u * bm] = v.w;
    }
    for (var e = tid; e < GBK * bn4; e += threads) {
        let kk = e / bn4;
        let c = e % bn4;
        gs_b[buf * GBK * bn4 + e] = b_pk[t.b0 + (k0 + kk) * nq + col0 + c];
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn gemm_shared(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // Every thread of a workgroup takes part in the staging and its barriers; those
    // past the end compute nothing and store nothing.
    let g = group_index(wid, nwg);
    let live = g < p.chunks * p.tiles_m * p.tiles_n;
    let t = packed_tile(select(0u, g, live));
    let bm = GS_TM * WG_Y;
    let bn4 = GS_TN4 * WG_X;
    let row0 = (t.tile / p.tiles_n) * bm;
    let col0 = (t.tile % p.tiles_n) * bn4;
    let tid = lid.y * WG_X + lid.x;
    var acc: array<array<vec4<f32>, MAX_GS_TN4>, MAX_GS_TM>;
    let steps = p.kp / GBK;
    gs_stage(0u, 0u, row0, col0, tid, t);
    workgroupBarrier();
    for (var s = 0u; s < steps; s++) {
        let buf = s % 2u;
        if (s + 1u < steps) {
            gs_stage(1u - buf, (s + 1u) * GBK, row0, col0, tid, t);
        }
        for (var kk = 0u; kk < GBK; kk++) {
            let a_at = buf * GBK * bm + kk * bm + lid.y;
            let b_at = buf * GBK * bn4 + kk * bn4 + lid.x;
            for (var i = 0u; i < GS_TM; i++) {
                let a = vec4<f32>(gs_a[a_at + i * WG_Y]);
                for (var j = 0u; j < GS_TN4; j++) {
                    acc[i][j] = fma(a, gs_b[b_at + j * WG_X], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    if (!live) {
        return;
    }
    let job = job_of(p.z);
    for (var j = 0u; j < GS_TN4; j++) {
        for (var c = 0u; c < 4u; c++) {
            let n = 4u * (col0 + lid.x + j * WG_X) + c;
            if (n < p.nc) {
                let oc = out_col(p.n0 + n, job);
                for (var i = 0u; i < GS_TM; i++) {
                    store(row0 + lid.y + i * WG_Y, p.n0 + n, oc, job, p.split + t.chunk, acc[i][j][c]);
                }
            }
        }
    }
}
