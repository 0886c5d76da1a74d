// Finite scalar quantisation (Mentzer et al. 2023): each dimension d is bounded to
// (L_d - 1) / 2 half-widths by a shifted tanh, rounded to one of L_d levels and scaled
// back into [-1, 1]; a vector's code is the mixed-radix number of its levels. There is
// no codebook. The backward pass passes the gradient straight through the rounding:
// it is the bound's derivative over the half width.
//   half_l = (L - 1)(1 + eps) / 2, offset = 0.5 for even L (else 0),
//   shift = atanh(offset / half_l), bound(z) = tanh(z + shift) half_l - offset,
//   zhat = round(bound(z)) / (L / 2)   (L / 2 in integers)

override WG: u32 = 64u;
const EPS: f32 = 1e-3;

struct Params {
    n: u32,
    dim: u32,
    plane: u32,  // vector addressing as in quantize.wgsl
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> levels: array<u32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;       // or the gradient at zhat
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // zhat, or the gradient at z
@group(0) @binding(4) var<storage, read_write> codes: array<u32>;
@group(0) @binding(5) var<storage, read> x: array<f32>;       // backward: z

fn half_l(l: u32) -> f32 {
    return f32(l - 1u) * (1.0 + EPS) / 2.0;
}

fn offset(l: u32) -> f32 {
    return select(0.0, 0.5, l % 2u == 0u);
}

fn shifted(v: f32, l: u32) -> f32 {
    return tanh(v + atanh(offset(l) / half_l(l)));
}

// out = zhat, codes = the mixed-radix index (dimension 0 the least significant).
@compute @workgroup_size(WG)
fn quantize(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    let base = vector_base(r, p.dim, p.plane);
    var code = 0u;
    var radix = 1u;
    for (var d = 0u; d < p.dim; d++) {
        let l = levels[d];
        let level = round(shifted(z[base + d * p.plane], l) * half_l(l) - offset(l));
        let half_width = f32(l / 2u);
        out[base + d * p.plane] = level / half_width;
        code += u32(level + half_width) * radix;
        radix *= l;
    }
    codes[r] = code;
}

// out = the gradient at z, from the gradient at zhat (in `z`) and z itself (in `x`).
@compute @workgroup_size(WG)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    let base = vector_base(r, p.dim, p.plane);
    for (var d = 0u; d < p.dim; d++) {
        let l = levels[d];
        let t = shifted(x[base + d * p.plane], l);
        let i = base + d * p.plane;
        out[i] = z[i] * (1.0 - t * t) * half_l(l) / f32(l / 2u);
    }
}

// out = the zhat of each code.
@compute @workgroup_size(WG)
fn decode(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    let base = vector_base(r, p.dim, p.plane);
    var rest = codes[r];
    for (var d = 0u; d < p.dim; d++) {
        let l = levels[d];
        let half_width = l / 2u;
        out[base + d * p.plane] = (f32(rest % l) - f32(half_width)) / f32(half_width);
        rest /= l;
    }
}
