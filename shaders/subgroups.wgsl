// How the device lays out its subgroups (src/kernels/subgroups.rs). The packed GEMM's
// shared loads of A need each subgroup to be `size` consecutive invocations of a
// one-dimensional workgroup, starting at a multiple of `size`; Vulkan, Metal and DX12
// leave the layout to the driver. Invocation i writes its subgroup's size where the
// subgroup's first lane is invocation i - lane (a multiple of the size), and 0 where not:
// all writing one size S means every run of S consecutive invocations from a multiple of
// S shares one first lane, so is one subgroup.

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> sizes: array<u32>;

@compute @workgroup_size(WG)
fn subgroup_layout(@builtin(local_invocation_index) li: u32,
          @builtin(subgroup_invocation_id) lane: u32,
          @builtin(subgroup_size) size: u32) {
    let first = subgroupBroadcast(li, 0u);
    sizes[li] = select(0u, size, first + lane == li && first % size == 0u);
}
