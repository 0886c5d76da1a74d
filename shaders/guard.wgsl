// A guard that stops a training run's updates once its loss is no longer finite: `mark`
// raises the flag (for good), and `gate` writes the workgroup counts of the guarded
// dispatches, which read them indirectly: their own counts while the flag is down,
// zeros (nothing runs) once it is up. The state on the GPU then stays that of the last
// step with a finite loss, however late the host reads the loss back.

override WG: u32 = 64u;

struct Params {
    len: u32,  // gate: u32 counts to write (3 per dispatch)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> value: array<f32>;
@group(0) @binding(2) var<storage, read> counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> flag: array<u32>;
@group(0) @binding(4) var<storage, read_write> args: array<u32>;

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// flag[0] = 1 if value[0] is NaN or infinite; never lowered here.
@compute @workgroup_size(1)
fn mark() {
    if (!finite(value[0])) {
        flag[0] = 1u;
    }
}

@compute @workgroup_size(WG)
fn gate(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = group_index(wid, nwg) * WG + lid.x;
    if (i < p.len) {
        args[i] = select(counts[i], 0u, flag[0] != 0u);
    }
}
