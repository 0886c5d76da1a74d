// k-means++ seeding (Arthur and Vassilvitskii, 2007) on the GPU. Centre c is a row of
// the data drawn with probability proportional to its squared distance to the nearest
// of centres 0 .. c-1 (centre 0 and, once every row sits on a centre, any later one
// uniformly), the variate a PCG hash of (seed, c) and the distribution summed in a
// fixed order: the same seed gives the same centres. Per centre: `pick` (one
// workgroup) chooses the row and copies it into the codebook, then `distances` lowers
// every row's distance to the nearest centre. Rows are addressed by the prelude's
// vector_base.

override WG: u32 = 256u;

struct Params {
    n: u32,
    dim: u32,
    plane: u32,
    seed: u32,
    centre: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data: array<f32>;
@group(0) @binding(2) var<storage, read_write> codebook: array<f32>;
// Each row's squared distance to its nearest centre so far.
@group(0) @binding(3) var<storage, read_write> dist: array<f32>;
// The row each centre was drawn from.
@group(0) @binding(4) var<storage, read_write> picked: array<u32>;

fn element(r: u32, d: u32) -> u32 {
    return vector_base(r, p.dim, p.plane) + d * p.plane;
}

var<workgroup> chunk_sums: array<f32, WG>;
var<workgroup> chosen: u32;

// Thread t sums the distances of rows t * chunk .. (t + 1) * chunk; thread 0 walks the
// chunk sums, then the rows of the chunk that holds the goal, in order.
@compute @workgroup_size(WG)
fn pick(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let chunk = (p.n + WG - 1u) / WG;
    let begin = min(t * chunk, p.n);
    let end = min(begin + chunk, p.n);
    var s = 0.0;
    for (var r = begin; r < end; r++) {
        s += dist[r];
    }
    chunk_sums[t] = s;
    workgroupBarrier();
    if (t == 0u) {
        var total = 0.0;
        for (var i = 0u; i < WG; i++) {
            total += chunk_sums[i];
        }
        let u = f32(pcg(p.seed ^ pcg(p.centre)) >> 8u) * (1.0 / 16777216.0);
        var row = min(u32(u * f32(p.n)), p.n - 1u);
        if (p.centre > 0u && total > 0.0) {
            // The first row past the goal; where rounding leaves the sums short of it,
            // the last row with any weight.
            let goal = u * total;
            var acc = 0.0;
            var c = 0u;
            var before = 0.0;
            for (var i = 0u; i < WG; i++) {
                if (chunk_sums[i] > 0.0) {
                    c = i;
                    before = acc;
                    if (acc + chunk_sums[i] > goal) {
                        break;
                    }
                }
                acc += chunk_sums[i];
            }
            acc = before;
            let first = c * chunk;
            let last = min(first + chunk, p.n);
            for (var r = first; r < last; r++) {
                if (dist[r] > 0.0) {
                    row = r;
                    acc += dist[r];
                    if (acc > goal) {
                        break;
                    }
                }
            }
        }
        picked[p.centre] = row;
        chosen = row;
    }
    workgroupBarrier();
    let row = chosen;
    for (var d = t; d < p.dim; d += WG) {
        codebook[p.centre * p.dim + d] = data[element(row, d)];
    }
}

@compute @workgroup_size(WG)
fn distances(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = group_index(wid, nwg) * WG + lid.x;
    if (r >= p.n) {
        return;
    }
    var d2 = 0.0;
    for (var d = 0u; d < p.dim; d++) {
        let diff = data[element(r, d)] - codebook[p.centre * p.dim + d];
        d2 += diff * diff;
    }
    if (p.centre == 0u) {
        dist[r] = d2;
    } else {
        dist[r] = min(dist[r], d2);
    }
}
