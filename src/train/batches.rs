//! Images in and out of a graph: which images each step's batch holds, uploading a
//! batch, running a graph over a list of images, and the held-out error and picture.

use std::path::Path;

use crate::data::Dataset;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::images;
use crate::launch::Launch;
use crate::network::Vqvae;
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};

/// Which training items each step's batch holds.
pub(crate) struct Order {
    pub seed: u64,
    pub shuffle: bool,
    pub len: usize,
    pub epoch: Option<(usize, Vec<usize>)>,
}

impl Order {
    /// Indices of the batch of `step` (0-based): positions step*B.. of the epochs laid
    /// end to end, each epoch a permutation fixed by the seed.
    pub fn batch(&mut self, step: u64, size: usize) -> Vec<usize> {
        (0..size)
            .map(|k| {
                let pos = step as usize * size + k;
                let (epoch, i) = (pos / self.len, pos % self.len);
                if !self.shuffle {
                    return i;
                }
                if self.epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    let perm = Rng::for_purpose(self.seed, 0x5eed_0000 + epoch as u64)
                        .permutation(self.len);
                    self.epoch = Some((epoch, perm));
                }
                self.epoch.as_ref().expect("set above").1[i]
            })
            .collect()
    }
}

/// Writes images `indices` of `data`, scaled, into `x`; slots past the list repeat
/// its last image.
pub fn upload_batch(gpu: &Gpu, x: &Tensor, data: &Dataset, indices: &[usize]) -> Result<()> {
    let batch = x.shape()[0];
    let mut values = Vec::with_capacity(x.len());
    for k in 0..batch {
        let i = indices[k.min(indices.len() - 1)];
        values.extend(images::to_input(data.image(i)));
    }
    x.write(gpu, bytemuck::cast_slice(&values))
}

/// Runs `launches` over images `indices` in batches of the graph's size and returns each
/// image's values of `output` (e.g. `x_hat`, or `indices` as u32 bits).
pub fn run_batches(
    gpu: &Gpu,
    net: &Vqvae,
    data: &Dataset,
    indices: &[usize],
    launches: &[&Launch],
    output: &Tensor,
) -> Result<Vec<Vec<u32>>> {
    let per_image = output.len() / net.batch;
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(net.batch) {
        upload_batch(gpu, &net.x, data, chunk)?;
        gpu.run(launches)?;
        let bits: Vec<u32> = match output.dtype() {
            DType::F32 => output.to_f32(gpu)?.into_iter().map(f32::to_bits).collect(),
            DType::U32 => output.to_u32(gpu)?,
        };
        out.extend(
            bits.chunks(per_image)
                .take(chunk.len())
                .map(<[u32]>::to_vec),
        );
    }
    Ok(out)
}

fn as_f32(bits: &[u32]) -> Vec<f32> {
    bits.iter().map(|&b| f32::from_bits(b)).collect()
}

/// What the held-out images say of a model.
pub(super) struct Validation {
    /// Reconstruction MSE.
    pub mse: f64,
    /// How often each code was chosen.
    pub counts: Vec<u64>,
}

impl Validation {
    /// `exp` of the entropy of the code frequencies: the number of equally used codes
    /// that would be as uncertain.
    pub fn perplexity(&self) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let entropy: f64 = self
            .counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let q = c as f64 / total as f64;
                -q * q.ln()
            })
            .sum();
        entropy.exp()
    }

    /// Codes chosen at least once.
    pub fn codes_used(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 0).count()
    }
}

/// Runs images `indices` through `net` (an inference graph): their reconstruction MSE
/// and code usage.
pub(super) fn validate(
    gpu: &Gpu,
    net: &Vqvae,
    data: &Dataset,
    indices: &[usize],
) -> Result<Validation> {
    let per_image = net.indices.len() / net.batch;
    let mut counts = vec![0u64; net.config.codes];
    let mut sse = 0.0;
    for chunk in indices.chunks(net.batch) {
        upload_batch(gpu, &net.x, data, chunk)?;
        gpu.run(&[net.encode(), net.decode()])?;
        let (x_hat, codes) = (net.x_hat.to_f32(gpu)?, net.indices.to_u32(gpu)?);
        for (k, &i) in chunk.iter().enumerate() {
            let out = &x_hat[k * data.image_len()..(k + 1) * data.image_len()];
            for (p, x) in images::to_input(data.image(i)).zip(out) {
                sse += f64::from(x - p).powi(2);
            }
            for &c in &codes[k * per_image..(k + 1) * per_image] {
                counts[c as usize] += 1;
            }
        }
    }
    Ok(Validation {
        mse: sse / (indices.len() * data.image_len()) as f64,
        counts,
    })
}

/// Writes `path`: the images `shown` above their reconstructions.
pub fn save_reconstructions(
    gpu: &Gpu,
    net: &Vqvae,
    data: &Dataset,
    shown: &[usize],
    path: &Path,
) -> Result<()> {
    if shown.is_empty() {
        return Ok(());
    }
    let outs = run_batches(
        gpu,
        net,
        data,
        shown,
        &[net.encode(), net.decode()],
        &net.x_hat,
    )?;
    let recons: Vec<Vec<u8>> = outs.iter().map(|o| images::to_pixels(&as_f32(o))).collect();
    let mut tiles: Vec<&[u8]> = shown.iter().map(|&i| data.image(i)).collect();
    tiles.extend(recons.iter().map(Vec::as_slice));
    let zoom = 96usize.div_ceil(data.height.max(data.width)).max(1);
    let (h, w, pixels) = images::grid(
        &tiles,
        data.channels,
        data.height,
        data.width,
        shown.len(),
        zoom,
    );
    images::save_png(path, data.channels, h, w, &pixels)
}
