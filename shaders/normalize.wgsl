// Each vector divided by its L2 norm (by 1e-12 where the norm is smaller, as PyTorch's
// F.normalize), for nearest codes by angle: after it the squared distance between two
// vectors is 2 - 2 cos of the angle between them. Vectors are rows of a [n, dim] matrix
// (plane 1) or pixels of channels-first [batch, dim, h, w] maps (plane h * w).

override WG: u32 = 64u;

struct Params {
    n: u32,
    dim: u32,
    plane: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn normalize_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    let base = vector_base(r, p.dim, p.plane);
    var s = 0.0;
    for (var d = 0u; d < p.dim; d++) {
        let v = x[base + d * p.plane];
        s = fma(v, v, s);
    }
    let inv = 1.0 / max(sqrt(s), 1e-12);
    for (var d = 0u; d < p.dim; d++) {
        y[base + d * p.plane] = x[base + d * p.plane] * inv;
    }
}
