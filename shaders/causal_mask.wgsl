// Causal masks of PixelCNN convolutions (van den Oord et al. 2016) on weights
// [cout, cin, kh, kw], applied in place to the weights before a convolution and to their
// gradients after one. Mode 0 (mask A) keeps the taps above the centre row and those left
// of the centre on it; mode 1 (mask B) also the centre. The Gated PixelCNN's stacks:
// mode 2 (vertical) keeps every row down to the centre row, whole; modes 3 and 4
// (horizontal A and B) keep only the centre row, left of the centre (and the centre).

override WG: u32 = 256u;

struct Params {
    len: u32,      // elements of the weight tensor
    kh: u32,
    kw: u32,
    mode: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;

@compute @workgroup_size(WG)
fn apply_mask(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = group_index(wid, nwg) * WG + lid.x;
    if (i >= p.len) {
        return;
    }
    let kx = i % p.kw;
    let ky = (i / p.kw) % p.kh;
    let cy = p.kh / 2u;
    let cx = p.kw / 2u;
    let left = ky == cy && (kx < cx || (kx == cx && (p.mode == 1u || p.mode == 4u)));
    var keep = false;
    switch p.mode {
        case 0u, 1u: { keep = ky < cy || left; }
        case 2u: { keep = ky <= cy; }
        default: { keep = left; }
    }
    if (!keep) {
        w[i] = 0.0;
    }
}
