// Deterministic reductions: every sum is taken in a fixed order, so the same inputs give
// the same bits on the same adapter (no float atomics).

override WG: u32 = 256u;

struct Params {
    len: u32,    // sum_splits: elements per split; channel_sum: channels; sum_blocks: inputs
    parts: u32,  // sum_splits: splits; channel_sum: batch; sum_blocks: elements per workgroup
    inner: u32,  // channel_sum: elements per channel and image
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

var<workgroup> scratch: array<f32, WG>;

// Adds the threads' partial sums pairwise; thread 0 returns the total.
fn tree_sum(t: u32, v: f32) -> f32 {
    scratch[t] = v;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (t < half) {
            scratch[t] += scratch[t + half];
        }
        workgroupBarrier();
    }
    return scratch[0];
}

// dst[i] = sum over z < parts of src[z * len + i], in order of z.
@compute @workgroup_size(WG)
fn sum_splits(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = group_index(wid, nwg) * WG + lid.x;
    if (i >= p.len) {
        return;
    }
    var s = 0.0;
    for (var z = 0u; z < p.parts; z++) {
        s += src[z * p.len + i];
    }
    dst[i] = s;
}

// dst[c] = sum over b < parts and s < inner of src[(b * len + c) * inner + s]: the sum
// of channel c of a [parts, len, inner] tensor (a bias gradient). One workgroup a channel;
// thread t adds elements t, t + WG, ... of the channel, their image b and offset s stepped
// along rather than divided out of each (lavapipe has no vector integer division).
@compute @workgroup_size(WG)
fn channel_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let c = group_index(wid, nwg);
    if (c >= p.len) {
        return;
    }
    var s = 0.0;
    let per_channel = p.parts * p.inner;
    let step_b = WG / p.inner;
    let step_s = WG % p.inner;
    var b = lid.x / p.inner;
    var at = lid.x % p.inner;
    for (var e = lid.x; e < per_channel; e += WG) {
        s += src[(b * p.len + c) * p.inner + at];
        at += step_s;
        b += step_b;
        if (at >= p.inner) {
            at -= p.inner;
            b += 1u;
        }
    }
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        dst[c] = total;
    }
}

// dst[g] = the sum of src[g * parts .. (g + 1) * parts] (clipped to len): one level of a
// tree reduction. Repeated until one value is left.
@compute @workgroup_size(WG)
fn sum_blocks(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = group_index(wid, nwg);
    let begin = g * p.parts;
    if (begin >= p.len) {
        return;
    }
    let end = min(begin + p.parts, p.len);
    var s = 0.0;
    for (var e = begin + lid.x; e < end; e += WG) {
        s += src[e];
    }
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        dst[g] = total;
    }
}
