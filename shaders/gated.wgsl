// Gated PixelCNN's element-wise parts (van den Oord et al. 2016): the gated activation
// tanh(a) * sigmoid(b) over the two channel halves of a [batch, 2C, plane] tensor, and the
// one-row down shift that links the vertical stack to the horizontal one; each with its
// backward pass.

override WG: u32 = 256u;

struct Params {
    len: u32,      // elements of the output (gate), or of the tensor (shifts)
    channels: u32, // C: channels of the gated output
    plane: u32,    // h * w
    width: u32,    // w
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> upstream: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return group_index(wid, nwg) * WG + lid.x;
}

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// Flat index in x of the first half (a) for output element i; b is C planes later.
fn first_half(i: u32) -> u32 {
    let per_image = p.channels * p.plane;
    return (i / per_image) * 2u * per_image + i % per_image;
}

// out[b, c] = tanh(x[b, c]) * sigmoid(x[b, C + c]).
@compute @workgroup_size(WG)
fn gate(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let ia = first_half(i);
    out[i] = tanh(x[ia]) * sigmoid(x[ia + p.channels * p.plane]);
}

// The gradient at x from the gradient `upstream` at the gate's output: one thread per
// output element writes both halves.
@compute @workgroup_size(WG)
fn gate_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let ia = first_half(i);
    let ib = ia + p.channels * p.plane;
    let t = tanh(x[ia]);
    let s = sigmoid(x[ib]);
    out[ia] = upstream[i] * (1.0 - t * t) * s;
    out[ib] = upstream[i] * t * s * (1.0 - s);
}

// out[.., i, j] = x[.., i - 1, j], zero on the first row.
@compute @workgroup_size(WG)
fn shift_down(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    var v = 0.0;
    if (i % p.plane >= p.width) {
        v = x[i - p.width];
    }
    out[i] = v;
}

// out[.., i, j] = x[.., i + 1, j], zero on the last row: the adjoint of shift_down.
@compute @workgroup_size(WG)
fn shift_up(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    var v = 0.0;
    if (i % p.plane < p.plane - p.width) {
        v = x[i + p.width];
    }
    out[i] = v;
}
