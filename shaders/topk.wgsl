// The k nearest codes of each vector (k up to MAX_K) and their squared distances,
// nearest first, ties to the lowest index; the N x K distance matrix is never stored.
// One thread per vector keeps its k best, inserting each code that beats the k-th.
// Each dispatch searches one block of codes, carrying the lists over in the outputs:
// Mesa's llvmpipe ends a loop nest after 65535 iterations in all, so one dispatch may
// only loop that far (the launcher sizes the blocks).

override WG: u32 = 64u;
const MAX_K: u32 = 32u;

struct Params {
    n: u32,
    dim: u32,
    codes: u32,   // codes of this block: [first, first + codes)
    plane: u32,   // row addressing as in quantize.wgsl
    k: u32,
    first: u32,   // the block's first code; 0 starts the lists afresh
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> codebook: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> dist: array<f32>;

@compute @workgroup_size(WG)
fn top_k(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    let out = r * p.k;
    var best_d: array<f32, MAX_K>;
    var best_i: array<u32, MAX_K>;
    for (var j = 0u; j < p.k; j++) {
        if (p.first == 0u) {
            best_d[j] = 3.4e38;
            best_i[j] = 0xffffffffu;
        } else {
            best_d[j] = dist[out + j];
            best_i[j] = indices[out + j];
        }
    }
    let base = vector_base(r, p.dim, p.plane);
    for (var c = p.first; c < p.first + p.codes; c++) {
        var s = 0.0;
        for (var d = 0u; d < p.dim; d++) {
            let diff = z[base + d * p.plane] - codebook[c * p.dim + d];
            s = fma(diff, diff, s);
        }
        // Strictly better than the k-th; among equals the earlier (lower) code stays
        // ahead.
        if (s < best_d[p.k - 1u]) {
            var j = p.k - 1u;
            for (var t = 1u; t < p.k; t++) {
                if (best_d[j - 1u] <= s) {
                    break;
                }
                best_d[j] = best_d[j - 1u];
                best_i[j] = best_i[j - 1u];
                j -= 1u;
            }
            best_d[j] = s;
            best_i[j] = c;
        }
    }
    for (var j = 0u; j < p.k; j++) {
        indices[out + j] = best_i[j];
        dist[out + j] = best_d[j];
    }
}
