// Parameter updates over flat arrays: every parameter of a model can live in one buffer
// and be updated by one dispatch.

override WG: u32 = 256u;

struct Params {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,   // lr / (1 - beta1^t)
    bc2_sqrt: f32,    // sqrt(1 - beta2^t)
    // 1 - beta1 and 1 - beta2, rounded from f64 as torch rounds its Python floats.
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return group_index(wid, nwg) * WG + lid.x;
}

// torch.optim.Adam, step for step: exp_avg.lerp_(g, 1 - beta1),
// exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) g^2,
// param -= step_size * exp_avg / (sqrt(exp_avg_sq) / bc2_sqrt + eps).
@compute @workgroup_size(WG)
fn adam(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let g = grad[i];
    let mi = m[i] + p.one_minus_beta1 * (g - m[i]);
    let vi = v[i] * p.beta2 + p.one_minus_beta2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / p.bc2_sqrt + p.eps;
    param[i] = param[i] - p.step_size * (mi / denom);
}

// Plain SGD: param -= lr * grad.
@compute @workgroup_size(WG)
fn sgd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, nwg, lid);
    if (i < p.len) {
        param[i] = param[i] - p.lr * grad[i];
    }
}
