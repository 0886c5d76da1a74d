// Residual vector quantisation, one stage: after the nearest-code search has found code
// c of each vector's residual (quantize.wgsl), the stage subtracts e_c from the residual,
// adds it to the quantised sum, and files c (and its distance) in column `stage` of the
// [n, stages] outputs. Stage s quantises what stages 0 .. s-1 left:
//   r_0 = z, c_s = argmin_k ||r_s - e_k||^2, r_{s+1} = r_s - e_{c_s}, z_q = sum_s e_{c_s}.
// One invocation per vector, its elements `plane` apart (vector_base in the prelude).

override WG: u32 = 64u;
// Stage 0: the sum is the code vector itself (so one stage is plain VQ, bit for bit).
override FIRST: bool = true;
// Read the residual from `source` (the input, or the previous stage's kept residual);
// otherwise update `residual` in place.
override FROM_SOURCE: bool = true;
// Write r_{s+1} (no later stage needs the last one).
override WRITE_RESIDUAL: bool = true;
// Copy the stage's squared distances into column `stage` of `dists`.
override WRITE_DISTS: bool = false;
// Whether the stage adds to the sum: a stage dropped for a step (quantize dropout) still
// finds its codes and leaves its residual, but adds nothing to z_q and 0 to the loss.
override ACTIVE: bool = true;

struct Params {
    n: u32,
    dim: u32,
    plane: u32,
    codes: u32,
    stages: u32,
    stage: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> codebook: array<f32>;      // this stage's [K, D]
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;     // this stage's codes [n]
@group(0) @binding(3) var<storage, read> source: array<f32>;        // r_s (FROM_SOURCE)
@group(0) @binding(4) var<storage, read_write> residual: array<f32>; // r_{s+1}
@group(0) @binding(5) var<storage, read_write> sum: array<f32>;     // z_q
@group(0) @binding(6) var<storage, read_write> codes: array<u32>;   // [n, stages]
@group(0) @binding(7) var<storage, read> dist: array<f32>;          // this stage's [n]
@group(0) @binding(8) var<storage, read_write> dists: array<f32>;   // [n, stages]

@compute @workgroup_size(WG)
fn stage(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    let c = min(idx[r], p.codes - 1u);
    let base = vector_base(r, p.dim, p.plane);
    for (var d = 0u; d < p.dim; d++) {
        let e = base + d * p.plane;
        let v = codebook[c * p.dim + d];
        if (WRITE_RESIDUAL) {
            var before: f32;
            if (FROM_SOURCE) {
                before = source[e];
            } else {
                before = residual[e];
            }
            residual[e] = before - v;
        }
        if (FIRST) {
            sum[e] = v;
        } else if (ACTIVE) {
            sum[e] += v;
        }
    }
    codes[r * p.stages + p.stage] = c;
    if (WRITE_DISTS) {
        dists[r * p.stages + p.stage] = select(0.0, dist[r], ACTIVE);
    }
}

// Decoding: the sum gains stage p.stage's code vectors, its codes read from column
// p.stage of `codes`. Codes past the end are clamped.
@compute @workgroup_size(WG)
fn decode_stage(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    let c = min(codes[r * p.stages + p.stage], p.codes - 1u);
    let base = vector_base(r, p.dim, p.plane);
    for (var d = 0u; d < p.dim; d++) {
        let e = base + d * p.plane;
        let v = codebook[c * p.dim + d];
        if (FIRST) {
            sum[e] = v;
        } else {
            sum[e] += v;
        }
    }
}

// Each vector's joint code into `idx`: its S codes as the digits of one number in base
// K, stage 0 the least significant (what the training metrics count and the prior
// models).
@compute @workgroup_size(WG)
fn joint(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    var j = 0u;
    for (var s = 0u; s < p.stages; s++) {
        let stage = p.stages - 1u - s;
        j = j * p.codes + codes[r * p.stages + stage];
    }
    idx[r] = j;
}

// Stacks S codebooks of [K, D] (`source`, contiguous) into `residual` with `stride`
// floats between stages (p.stage), so that each stage's codebook starts at a binding
// offset the device allows. One invocation per element.
@compute @workgroup_size(WG)
fn stack(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = group_index(wid, nwg) * WG + lid.x;
    let per_stage = p.codes * p.dim;
    if (i >= per_stage * p.stages) {
        return;
    }
    residual[(i / per_stage) * p.stage + i % per_stage] = source[i];
}
