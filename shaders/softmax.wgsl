// Softmax over the K channels of channels-first logits [batch, K, plane] (plane = h * w
// positions per image): cross-entropy against target codes with its gradient, and
// categorical sampling at one position. One thread a position (xent) or an image
// (sample), walking the K logits with stride `plane`.

override WG: u32 = 64u;

struct Params {
    rows: u32,      // xent: batch * plane positions; sample: batch images
    codes: u32,     // K
    plane: u32,
    pos: u32,       // sample: the position drawn
    scale: f32,     // xent: factor of the gradient (1 / positions for a mean)
    inv_temp: f32,  // sample: 1 / temperature
    seed: u32,      // sample
    at: u32,        // sample: the grid position the draw is hashed with
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
// xent: the targets; sample: the codes, of which position `pos` is written.
@group(0) @binding(2) var<storage, read_write> codes: array<u32>;
// xent: the gradient at the logits, shaped like them.
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
// xent: each position's loss, -log softmax(logits)[target].
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return group_index(wid, nwg) * WG + lid.x;
}

// loss[i] = logsumexp(l) - l[t] and grad[k] = scale * (softmax(l)[k] - [k == t]) at
// position i = b * plane + s, whose logits are logits[(b * K + k) * plane + s].
@compute @workgroup_size(WG)
fn xent(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, nwg, lid);
    if (i >= p.rows) {
        return;
    }
    let base = (i / p.plane) * p.codes * p.plane + i % p.plane;
    var m = logits[base];
    for (var k = 1u; k < p.codes; k++) {
        m = max(m, logits[base + k * p.plane]);
    }
    var sum = 0.0;
    for (var k = 0u; k < p.codes; k++) {
        sum += exp(logits[base + k * p.plane] - m);
    }
    let t = codes[i];
    loss[i] = m + log(sum) - logits[base + t * p.plane];
    for (var k = 0u; k < p.codes; k++) {
        let q = exp(logits[base + k * p.plane] - m) / sum;
        grad[base + k * p.plane] = p.scale * (q - select(0.0, 1.0, k == t));
    }
}

// Draws code codes[b * plane + pos] from softmax(logits[b, :, pos] / temperature) by
// inverting the cumulative distribution at u = uniform(seed, b, at) in [0, 1), `at`
// being the position in the whole grid (`pos` when the logits cover the whole grid). As the
// temperature nears 0 every weight but the largest underflows: the argmax.
@compute @workgroup_size(WG)
fn sample(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let b = index(wid, nwg, lid);
    if (b >= p.rows) {
        return;
    }
    let base = b * p.codes * p.plane + p.pos;
    var m = logits[base];
    var best = 0u;
    for (var k = 1u; k < p.codes; k++) {
        let l = logits[base + k * p.plane];
        if (l > m) {
            m = l;
            best = k;
        }
    }
    var sum = 0.0;
    for (var k = 0u; k < p.codes; k++) {
        sum += exp((logits[base + k * p.plane] - m) * p.inv_temp);
    }
    let bits = pcg(p.seed ^ pcg(b ^ pcg(p.at)));
    let goal = f32(bits >> 8u) * (1.0 / 16777216.0) * sum;
    // Rounding can leave the running sum short of the goal: keep the argmax then.
    var chosen = best;
    var acc = 0.0;
    for (var k = 0u; k < p.codes; k++) {
        acc += exp((logits[base + k * p.plane] - m) * p.inv_temp);
        if (acc > goal) {
            chosen = k;
            break;
        }
    }
    codes[b * p.plane + p.pos] = chosen;
}
