// The loss of DESIGN.md section 1: reconstruction MSE (value and gradient) and the
// assembly of the loss terms. Sums are deterministic trees (see reduce.wgsl).

override WG: u32 = 256u;
// Whether the codebook term is part of the loss (not when an EMA moves the codebook).
override CODEBOOK_TERM: bool = true;

struct Params {
    len: u32,        // mse: elements; terms: elements of x
    block: u32,      // mse: elements per workgroup
    vq_len: u32,     // terms: elements of z_e
    beta: f32,       // terms: commitment weight
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> scratch: array<f32, WG>;

// grad = 2 (a - b) / len, and out[g] = the sum of (a - b)^2 over workgroup g's block.
@compute @workgroup_size(WG)
fn mse(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = group_index(wid, nwg);
    let begin = g * p.block;
    if (begin >= p.len) {
        return;
    }
    let end = min(begin + p.block, p.len);
    let scale = 2.0 / f32(p.len);
    var s = 0.0;
    for (var i = begin + lid.x; i < end; i += WG) {
        let diff = a[i] - b[i];
        grad[i] = scale * diff;
        s = fma(diff, diff, s);
    }
    scratch[lid.x] = s;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid.x < half) {
            scratch[lid.x] += scratch[lid.x + half];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        out[g] = scratch[0];
    }
}

// From a[0] = sum (x_hat - x)^2 and b[0] = sum ||z_e - z_q||^2, out = [loss,
// reconstruction, codebook term, commitment term].
@compute @workgroup_size(1)
fn terms() {
    let recon = a[0] / f32(p.len);
    let vq = b[0] / f32(p.vq_len);
    let codebook = select(0.0, vq, CODEBOOK_TERM);
    out[0] = recon + codebook + p.beta * vq;
    out[1] = recon;
    out[2] = codebook;
    out[3] = p.beta * vq;
}
