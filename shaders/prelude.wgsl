// Joined in front of every shader in this folder (src/shaders.rs): helpers they share.

// The linear number of a workgroup in a grid of up to three dimensions: launchers fold
// counts past one dimension's limit into a 3-D grid, and kernels skip numbers past the end.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + nwg.x * (wid.y + nwg.y * wid.z);
}

// PCG hash (Jarzynski and Olano, 2020): restarts and sampling draw their random numbers
// from it; rng::pcg is its CPU twin.
fn pcg(x: u32) -> u32 {
    let s = x * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

// Where element 0 of vector r of n vectors of `dim` lives; element d is `plane` further
// on for each d. plane = 1 is a row-major [n, dim] matrix, plane = h * w a channels-first
// [batch, dim, h, w] map whose positions are the vectors (no transpose pass).
fn vector_base(r: u32, dim: u32, plane: u32) -> u32 {
    return (r / plane) * dim * plane + r % plane;
}
