// Restarting dead codes: a code that no vector chose for a whole window of steps is
// moved onto an encoder output of the current batch, and what would drag it back is
// reset with it (RESET): 0 nothing; 1 its Adam moments (`m`, `v`: [K, D]) cleared;
// 2 its EMA statistics (`m`: cluster sizes [K], set to 1; `v`: sums [K, D], set to
// the new vector, so the next update keeps it where it was put).
// Which output is a hash of the seed, the step and the code: deterministic, no
// read-back, nothing random on the host.

override WG: u32 = 64u;
override RESET: u32 = 1u;

struct Params {
    codes: u32,
    dim: u32,
    n: u32,        // rows of z_e
    plane: u32,    // row addressing as in quantize.wgsl
    seed: u32,
    step: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> window: array<u32>;
@group(0) @binding(3) var<storage, read> ze: array<f32>;
@group(0) @binding(4) var<storage, read_write> codebook: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

fn code_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return group_index(wid, nwg) * WG + lid.x;
}

// window[k] += counts[k]: usage over the steps since the last restart.
@compute @workgroup_size(WG)
fn accumulate(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let k = code_index(wid, nwg, lid);
    if (k < p.codes) {
        window[k] += counts[k];
    }
}

// Moves every code unused over the window onto a hashed row of z_e; starts a new window.
@compute @workgroup_size(WG)
fn restart(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let k = code_index(wid, nwg, lid);
    if (k >= p.codes) {
        return;
    }
    if (window[k] == 0u && RESET == 2u) {
        m[k] = 1.0;
    }
    if (window[k] == 0u) {
        let r = pcg(pcg(p.seed ^ pcg(p.step)) ^ k) % p.n;
        let base = vector_base(r, p.dim, p.plane);
        for (var d = 0u; d < p.dim; d++) {
            let i = k * p.dim + d;
            let value = ze[base + d * p.plane];
            codebook[i] = value;
            if (RESET == 1u) {
                m[i] = 0.0;
                v[i] = 0.0;
            } else if (RESET == 2u) {
                v[i] = value;
            }
        }
    }
    window[k] = 0u;
}
