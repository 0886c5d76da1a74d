// Code usage: a histogram of code indices and its perplexity.

override WG: u32 = 256u;

struct Params {
    n: u32,       // indices
    codes: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;

var<workgroup> scratch: array<vec2<f32>, WG>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return group_index(wid, nwg) * WG + lid.x;
}

@compute @workgroup_size(WG)
fn clear(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let k = index(wid, nwg, lid);
    if (k < p.codes) {
        atomicStore(&counts[k], 0u);
    }
}

// Integer atomics: the counts do not depend on the order of the adds.
// Indices past the codebook are not counted.
@compute @workgroup_size(WG)
fn histogram(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = index(wid, nwg, lid);
    if (r < p.n && idx[r] < p.codes) {
        atomicAdd(&counts[idx[r]], 1u);
    }
}

// stats = [perplexity exp(-sum q log q) with q = count / n, codes in use]. One workgroup.
@compute @workgroup_size(WG)
fn perplexity(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = vec2<f32>(0.0);
    for (var k = lid.x; k < p.codes; k += WG) {
        let c = atomicLoad(&counts[k]);
        if (c > 0u) {
            let q = f32(c) / f32(p.n);
            acc += vec2<f32>(-q * log(q), 1.0);
        }
    }
    scratch[lid.x] = acc;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid.x < half) {
            scratch[lid.x] += scratch[lid.x + half];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        stats[0] = exp(scratch[0].x);
        stats[1] = scratch[0].y;
    }
}
