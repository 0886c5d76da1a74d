// Causal masks of PixelCNN convolutions (van den Oord et al. 2016): weights
// [cout, cin, kh, kw] keep the taps above the centre row and those left of the centre on
// the centre row; mask B also keeps the centre, mask A (the first layer) does not. Applied
// in place to the weights before a convolution and to their gradients after one.

override WG: u32 = 256u;

struct Params {
    len: u32,      // elements of the weight tensor
    kh: u32,
    kw: u32,
    centre: u32,   // 1: mask B (keep the centre tap), 0: mask A
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;

@compute @workgroup_size(WG)
fn apply_mask(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * WG + lid.x;
    if (i >= p.len) {
        return;
    }
    let kx = i % p.kw;
    let ky = (i / p.kw) % p.kh;
    let cy = p.kh / 2u;
    let cx = p.kw / 2u;
    let keep = ky < cy || (ky == cy && (kx < cx || (kx == cx && p.centre == 1u)));
    if (!keep) {
        w[i] = 0.0;
    }
}
