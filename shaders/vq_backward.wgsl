// The quantiser's backward pass for the loss of DESIGN.md section 1,
//   mean((sg[z_e] - z_q)^2) + beta * mean((z_e - sg[z_q])^2),
// with the decoder's gradient at z_q passed straight through to z_e.

override WG: u32 = 64u;
// code_sums: subtract the assigned code (codebook gradient) or not (EMA statistics).
override SUBTRACT_CODE: bool = true;

struct Params {
    n: u32,           // rows (latent positions)
    dim: u32,
    codes: u32,
    plane: u32,       // row addressing as in quantize.wgsl
    chunk: u32,       // rows per chunk of code_sums
    chunks: u32,
    len: u32,         // elements of z_e
    commit: f32,      // 2 * beta / (n * dim)
    scale: f32,       // 2 / (n * dim)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ze: array<f32>;
@group(0) @binding(2) var<storage, read> zq_or_codebook: array<f32>;
@group(0) @binding(3) var<storage, read> upstream: array<f32>;
@group(0) @binding(4) var<storage, read> idx: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// out = upstream + commit * (z_e - z_q): straight-through plus the commitment term.
@compute @workgroup_size(WG)
fn ze_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = group_index(wid, nwg) * WG + lid.x;
    if (i < p.len) {
        out[i] = fma(p.commit, ze[i] - zq_or_codebook[i], upstream[i]);
    }
}

// out[c][k][d] = sum over rows r of chunk c (in order) with idx[r] == k of
// (z_e[r][d] - codebook[k][d]), or of z_e[r][d] alone without SUBTRACT_CODE. One workgroup a chunk, one thread a dimension: no two
// threads touch the same element, so no atomics are needed.
@compute @workgroup_size(WG)
fn code_sums(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let c = group_index(wid, nwg);
    if (c >= p.chunks) {
        return;
    }
    let part = c * p.codes * p.dim;
    for (var d = lid.x; d < p.dim; d += WG) {
        for (var k = 0u; k < p.codes; k++) {
            out[part + k * p.dim + d] = 0.0;
        }
        let end = min((c + 1u) * p.chunk, p.n);
        for (var r = c * p.chunk; r < end; r++) {
            let k = idx[r];
            let zr = ze[vector_base(r, p.dim, p.plane) + d * p.plane];
            var v = zr;
            if (SUBTRACT_CODE) {
                v -= zq_or_codebook[k * p.dim + d];
            }
            out[part + k * p.dim + d] += v;
        }
    }
}

// out[k][d] = -scale * sum over chunks (in order) of upstream[c][k][d]: the gradient of
// the codebook term, scale * sum over rows assigned to k of (e_k - z_e).
@compute @workgroup_size(WG)
fn codebook_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = group_index(wid, nwg) * WG + lid.x;
    let total = p.codes * p.dim;
    if (i >= total) {
        return;
    }
    var s = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        s += upstream[c * total + i];
    }
    out[i] = -p.scale * s;
}
