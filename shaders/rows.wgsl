// Copies rows between stacks of grids of u32 codes: `rows` rows of each of the `batch`
// grids, from row `src_row` of grids `src_h` rows high to row `dst_row` of grids `dst_h`
// rows high, all `width` wide. Sampling moves rows between the whole grids and the band
// its network sees. One thread an element.

override WG: u32 = 256u;

struct Params {
    batch: u32,
    width: u32,
    rows: u32,
    src_h: u32,
    src_row: u32,
    dst_h: u32,
    dst_row: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(WG)
fn copy_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = group_index(wid, nwg) * WG + lid.x;
    let per_grid = p.rows * p.width;
    if (i >= p.batch * per_grid) {
        return;
    }
    let b = i / per_grid;
    let r = (i % per_grid) / p.width;
    let c = i % p.width;
    dst[(b * p.dst_h + p.dst_row + r) * p.width + c] =
        src[(b * p.src_h + p.src_row + r) * p.width + c];
}
