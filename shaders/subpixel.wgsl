// The transposed convolution with kernel 4, stride 2 and padding 1 (the decoder's
// upsampling) to a few output channels, as its four sub-pixel convolutions at once.
//
// Output (2a + py, 2x + px) sums the inputs at rows a - 1 + r and columns x - 1 + q for
// r in {py, py + 1} and q in {px, px + 1}, with tap (py + 3 - 2r, px + 3 - 2q). So thread
// (b, a, g) owns output rows 2a, 2a + 1 and columns 2c .. 2c + 2T - 1 (c = T g) of every
// output channel: per input channel it loads the 3 x (T + 2) inputs around them once and
// spends each on up to 4 taps of every output channel, where the implicit GEMM loads an
// input once per output pixel that reads it (16 times) for OC multiply-adds each.
// Its body, written out per OC and T, is src/kernels/unrolled.rs's `subpixel_source`.
//
// Input [batch, cin, h, w]; weight [cin, OC, 4, 4] (ConvTranspose2d's); bias [OC];
// output [batch, OC, 2h, 2w].

override WG: u32 = 64u;
override RELU_IN: bool = false;
override RELU_OUT: bool = false;
// The epilogue after bias and ReLU: zero where `gate` is not positive, then add `addend`.
override GATE_OUT: bool = false;
override ADD_OUT: bool = false;

struct Params {
    cin: u32,
    h: u32,
    w: u32,
    // Threads per input row (ceil(w / T)) and in all.
    groups: u32,
    threads: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The weight as vec4 rows: row (ci OC + o) 4 + ky holds taps kx = 0 .. 3.
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> gate: array<f32>;
@group(0) @binding(6) var<storage, read> addend: array<f32>;

// Whether input (y, x) lies inside the image, and its offset in a plane (clamped inside):
// a thread decodes both once for all input channels.
fn inside(y: i32, x: i32) -> bool {
    return y >= 0 && y < i32(p.h) && x >= 0 && x < i32(p.w);
}

fn offset(y: i32, x: i32) -> u32 {
    return u32(clamp(y, 0, i32(p.h) - 1)) * p.w + u32(clamp(x, 0, i32(p.w) - 1));
}

// Input element `at`, ReLU'd where RELU_IN, or zero where it lies outside the image.
fn load_in(at: u32, inside: bool) -> f32 {
    let v = xs[at];
    return select(0.0, select(v, max(v, 0.0), RELU_IN), inside);
}

// Stores output (y, x) of channel o of image b (of `oc`) with bias, ReLU and epilogue;
// nothing for a column past the image's.
fn store_out(b: u32, o: u32, oc: u32, y: u32, x: u32, acc: f32) {
    if (x >= 2u * p.w) {
        return;
    }
    let at = ((b * oc + o) * 2u * p.h + y) * 2u * p.w + x;
    var v = acc + bias[o];
    v = select(v, max(v, 0.0), RELU_OUT);
    if (GATE_OUT && !(gate[at] > 0.0)) {
        v = 0.0;
    }
    if (ADD_OUT) {
        v += addend[at];
    }
    out[at] = v;
}
