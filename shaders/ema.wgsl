// The exponential-moving-average codebook update of the VQ-VAE paper's appendix, as
// Sonnet's VectorQuantizerEMA computes it:
//   cluster[k] = decay * cluster[k] + (1 - decay) * count[k]
//   ema_w[k]   = decay * ema_w[k]   + (1 - decay) * sum of the rows assigned to k
//   n          = sum over k of cluster[k]
//   codebook[k] = ema_w[k] / ((cluster[k] + eps) / (n + K eps) * n)
// With decay 0 and eps 0 one update moves each used code to the mean of its rows: a
// Lloyd (k-means) iteration. A code whose cluster size is exactly 0 (never chosen)
// keeps its vector, where Sonnet's formula would zero it.

override WG: u32 = 64u;

struct Params {
    codes: u32,
    dim: u32,
    chunks: u32,  // chunks of the per-code row sums
    decay: f32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> counts: array<u32>;
@group(0) @binding(2) var<storage, read> partial: array<f32>;
@group(0) @binding(3) var<storage, read> total: array<f32>;
@group(0) @binding(4) var<storage, read_write> cluster: array<f32>;
@group(0) @binding(5) var<storage, read_write> ema_w: array<f32>;
@group(0) @binding(6) var<storage, read_write> codebook: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return group_index(wid, nwg) * WG + lid.x;
}

@compute @workgroup_size(WG)
fn cluster_sizes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let k = index(wid, nwg, lid);
    if (k < p.codes) {
        cluster[k] = p.decay * cluster[k] + (1.0 - p.decay) * f32(counts[k]);
    }
}

// After cluster_sizes and total[0] = sum of cluster.
@compute @workgroup_size(WG)
fn update(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, nwg, lid);
    let len = p.codes * p.dim;
    if (i >= len) {
        return;
    }
    var sum = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        sum += partial[c * len + i];
    }
    let w = p.decay * ema_w[i] + (1.0 - p.decay) * sum;
    ema_w[i] = w;
    let n = total[0];
    if (cluster[i / p.dim] <= 0.0) {
        return;
    }
    let size = (cluster[i / p.dim] + p.eps) / (n + f32(p.codes) * p.eps) * n;
    codebook[i] = w / size;
}
