//! Images in and out of a graph: which images each step's batch holds (and which are
//! flipped), a batch's input values, running a graph over a list of images with the
//! images decoded ahead on worker threads, and the held-out error and picture.

use std::path::Path;
use std::sync::Arc;

use crate::data::{Dataset, ImageReader, Prefetch};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::images;
use crate::launch::Launch;
use crate::network::Vqvae;
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};

/// Which training items each step's batch holds.
#[derive(Clone)]
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

/// Which images of step `step`'s batch `--hflip` mirrors: a fair coin per image, fixed
/// by the seed and the step.
pub(crate) fn flips(seed: u64, step: u64, size: usize) -> Vec<bool> {
    let mut rng = Rng::for_purpose(seed, 0xf119_0000_0000 + step);
    (0..size).map(|_| rng.next_u64() >> 63 == 1).collect()
}

/// The input values of `batch` images: images `indices` of `reader`, scaled (DESIGN.md
/// section 1), those that `flips` marks mirrored left to right (no flips when it is
/// empty); slots past the list repeat its last image.
pub(crate) fn batch_values(
    reader: &ImageReader,
    indices: &[usize],
    batch: usize,
    flips: &[bool],
) -> Result<Vec<f32>> {
    let mut values = Vec::with_capacity(batch * reader.image_len());
    for k in 0..batch {
        let image = reader.image(indices[k.min(indices.len() - 1)])?;
        if flips.get(k) == Some(&true) {
            let mut mirrored = image.into_owned();
            for row in mirrored.chunks_mut(reader.width()) {
                row.reverse();
            }
            values.extend(images::to_input(&mirrored));
        } else {
            values.extend(images::to_input(&image));
        }
    }
    Ok(values)
}

/// Writes images `indices` of `data`, scaled, into `x`; slots past the list repeat
/// its last image.
pub fn upload_batch(gpu: &Gpu, x: &Tensor, data: &Dataset, indices: &[usize]) -> Result<()> {
    let values = batch_values(&data.reader, indices, x.shape()[0], &[])?;
    x.write(gpu, bytemuck::cast_slice(&values))
}

/// Runs `launches` over images `indices` in batches of the graph's size, the images
/// decoded ahead on `workers` threads, and hands each batch's images with their values
/// of `output` (e.g. `x_hat`, or `indices` as u32 bits), one list per image, to `take`.
#[allow(clippy::too_many_arguments)]
pub fn for_each_batch(
    gpu: &Gpu,
    net: &Vqvae,
    data: &Dataset,
    indices: &[usize],
    launches: &[&Launch],
    output: &Tensor,
    workers: usize,
    mut take: impl FnMut(&[usize], &[f32], Vec<Vec<u32>>) -> Result<()>,
) -> Result<()> {
    let per_image = output.len() / net.batch;
    let chunks: Arc<Vec<Vec<usize>>> =
        Arc::new(indices.chunks(net.batch).map(<[usize]>::to_vec).collect());
    let (reader, batch, list) = (data.reader.clone(), net.batch, chunks.clone());
    let ahead = Prefetch::new(workers, 0..chunks.len() as u64, (), move |_, k| {
        batch_values(&reader, &list[k as usize], batch, &[])
    })?;
    for (chunk, values) in chunks.iter().zip(ahead) {
        let values = values?;
        net.x.write(gpu, bytemuck::cast_slice(&values))?;
        gpu.run(launches)?;
        let bits: Vec<u32> = match output.dtype() {
            DType::F32 => output.to_f32(gpu)?.into_iter().map(f32::to_bits).collect(),
            DType::U32 => output.to_u32(gpu)?,
        };
        let outs = bits
            .chunks(per_image)
            .take(chunk.len())
            .map(<[u32]>::to_vec)
            .collect();
        take(chunk, &values, outs)?;
    }
    Ok(())
}

/// [`for_each_batch`] with every image's values of `output` gathered in order.
pub fn run_batches(
    gpu: &Gpu,
    net: &Vqvae,
    data: &Dataset,
    indices: &[usize],
    launches: &[&Launch],
    output: &Tensor,
) -> Result<Vec<Vec<u32>>> {
    let mut all = Vec::with_capacity(indices.len());
    let workers = crate::data::default_workers();
    for_each_batch(
        gpu,
        net,
        data,
        indices,
        launches,
        output,
        workers,
        |_, _, outs| {
            all.extend(outs);
            Ok(())
        },
    )?;
    Ok(all)
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
    workers: usize,
) -> Result<Validation> {
    let mut counts = vec![0u64; net.config.symbols() as usize];
    let mut sse = 0.0;
    let len = data.image_len();
    let launches = [net.encode(), net.decode()];
    for_each_batch(
        gpu,
        net,
        data,
        indices,
        &launches,
        &net.x_hat,
        workers,
        |chunk, x, outs| {
            let codes = net.symbols.to_u32(gpu)?;
            let per_image = codes.len() / net.batch;
            for (k, out) in outs.iter().enumerate().take(chunk.len()) {
                for (p, o) in x[k * len..(k + 1) * len].iter().zip(out) {
                    sse += f64::from(f32::from_bits(*o) - p).powi(2);
                }
                for &c in &codes[k * per_image..(k + 1) * per_image] {
                    counts[c as usize] += 1;
                }
            }
            Ok(())
        },
    )?;
    Ok(Validation {
        mse: sse / (indices.len() * len) as f64,
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
    let mut tiles: Vec<Vec<u8>> = shown
        .iter()
        .map(|&i| data.image(i).map(|p| p.into_owned()))
        .collect::<Result<_>>()?;
    tiles.extend(outs.iter().map(|o| images::to_pixels(&as_f32(o))));
    let tiles: Vec<&[u8]> = tiles.iter().map(Vec::as_slice).collect();
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
