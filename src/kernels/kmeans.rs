//! k-means on the GPU: k-means++ seeding (`shaders/kmeans.wgsl`), then Lloyd
//! iterations, each an assignment by the quantiser and an update by the EMA kernel with
//! decay 0 (every used code moves to the mean of its rows; an unused one stays).

use crate::error::{Error, Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::ema::ema_update;
use crate::kernels::quantize::{self, Rows};
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    dim: u32,
    plane: u32,
    seed: u32,
    centre: u32,
    _pad: [u32; 3],
}

/// k-means bound to the caller's data and codebook.
pub struct KMeans {
    launch: Launch,
    /// The row each centre was seeded from, `[K]` (u32).
    pub seeds: Tensor,
}

impl KMeans {
    /// Seeding and every iteration: record into a compute pass, or `gpu.run` it.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }
}

/// k-means of the rows of `data` (`[n, D]`, or a `[batch, D, h, w]` map whose
/// positions are the rows) into `codebook` `[K, D]`: k-means++ seeding from `seed`, then
/// `iters` Lloyd iterations. The same seed and data give the same codebook.
pub fn kmeans(
    gpu: &Gpu,
    data: &Tensor,
    codebook: &Tensor,
    iters: usize,
    seed: u64,
) -> Result<KMeans> {
    let op = "kmeans";
    let rows = Rows::of(op, data)?;
    let k = quantize::codebook_shape(op, codebook, rows.dim)?;
    ensure(rows.n > 0, op, || "there are no rows to cluster".into())?;
    if iters == 0 {
        return Err(Error::shape(op, "0 iterations: at least 1 is needed"));
    }
    let binds = [
        Bind::Uniform,
        Bind::Read,
        Bind::Write,
        Bind::Write,
        Bind::Write,
    ];
    let kernel = |entry| gpu.kernel(&shaders::KMEANS, entry, &[("WG", f64::from(WG))], &binds);
    let (pick, distances) = (kernel("pick")?, kernel("distances")?);
    let dist = Tensor::zeros(gpu, &[rows.n], DType::F32)?;
    let seeds = Tensor::zeros(gpu, &[k], DType::U32)?;
    let mut launch = Launch::default();
    for centre in 0..k {
        let uniform = gpu.uniform(&Params {
            n: rows.n as u32,
            dim: rows.dim as u32,
            plane: rows.plane as u32,
            seed: (seed ^ (seed >> 32)) as u32,
            centre: centre as u32,
            _pad: [0; 3],
        });
        let resources = [
            uniform.as_entire_binding(),
            data.binding(),
            codebook.binding(),
            dist.binding(),
            seeds.binding(),
        ];
        launch = launch.then(gpu.dispatch(op, &pick, &resources, 1)?.into());
        let groups = rows.n.div_ceil(WG as usize) as u64;
        launch = launch.then(gpu.dispatch(op, &distances, &resources, groups)?.into());
    }
    let indices = Tensor::zeros(gpu, &[rows.n], DType::U32)?;
    let cluster = Tensor::zeros(gpu, &[k], DType::F32)?;
    let sums = Tensor::zeros(gpu, codebook.shape(), DType::F32)?;
    // With decay 0 the previous statistics are multiplied by 0: one pair of launches
    // serves every iteration.
    let iteration = quantize::quantize(gpu, data, codebook, &indices, None, None)?.then(
        ema_update(gpu, data, &indices, codebook, &cluster, &sums, 0.0, 0.0)?,
    );
    for _ in 0..iters {
        launch = launch.then(iteration.clone());
    }
    Ok(KMeans { launch, seeds })
}
