//! Where a fresh run's weights come from: PyTorch-style initialisation from the seed,
//! and a codebook drawn from the encoder's outputs, or clustered from them by k-means.

use std::collections::HashMap;

use crate::data::Dataset;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::network::Vqvae;
use crate::params::Params;
use crate::rng::Rng;

use super::batches::{Order, upload_batch};
use crate::kernels::kmeans::kmeans;
use crate::tensor::{DType, Tensor};

/// Parameter values for a fresh run: PyTorch-style, from the seed.
pub(crate) fn fresh_values(params: &Params, seed: u64) -> HashMap<String, Vec<f32>> {
    let mut rng = Rng::for_purpose(seed, 0x1417);
    params
        .specs()
        .iter()
        .map(|s| (s.name.clone(), s.initial(&mut rng)))
        .collect()
}

/// The images of the run's first `batches` batches of `batch_size`, in slices of the
/// graph's batch: with several ranks every rank encodes every slice, so that each
/// initialises its codebook from the global batch as one process does.
pub(super) fn slices(
    order: &mut Order,
    batches: usize,
    batch_size: usize,
    net: &Vqvae,
) -> Vec<Vec<usize>> {
    (0..batches as u64)
        .flat_map(|b| {
            let batch = order.batch(b, batch_size);
            batch
                .chunks(net.batch)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Replaces each codebook by K of its inputs in the images of `slices` (encoder
/// outputs, or what the stages before it left, which are initialised first), chosen by
/// the seed; with fewer inputs than codes, they repeat with a little noise.
pub(super) fn init_codebook_from_data(
    gpu: &Gpu,
    net: &Vqvae,
    params: &Params,
    slices: &[Vec<usize>],
    data: &Dataset,
    seed: u64,
) -> Result<()> {
    for (s, stage) in net.stages.iter().enumerate() {
        let mut z = Vec::new();
        for slice in slices {
            upload_batch(gpu, &net.x, data, slice)?;
            gpu.run(&[net.encode()])?;
            z.extend(stage.input.to_f32(gpu)?);
        }
        let mut shape = stage.input.shape().to_vec();
        shape[0] *= slices.len();
        let codebook = codebook_from(&z, &shape, net.config.codes, seed.wrapping_add(s as u64));
        params
            .value(&stage.codebook)
            .write(gpu, bytemuck::cast_slice(&codebook))?;
    }
    Ok(())
}

/// K rows of `z` (`[batch, D, h, w]`) drawn by `seed`, repeated with noise past its
/// rows.
fn codebook_from(z: &[f32], shape: &[usize], k: usize, seed: u64) -> Vec<f32> {
    let [b, d, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    let plane = h * w;
    let rows = b * plane;
    let row = |r: usize| (0..d).map(move |c| z[(r / plane) * d * plane + c * plane + r % plane]);
    let mut rng = Rng::for_purpose(seed, 0xc0de);
    let order = rng.permutation(rows);
    let scale = (z.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / z.len() as f64)
        .sqrt()
        .max(1e-3)
        * 0.01;
    let mut codebook = Vec::with_capacity(k * d);
    for i in 0..k {
        let noisy = i >= rows;
        for v in row(order[i % rows]) {
            codebook.push(if noisy {
                v + (scale * rng.normal()) as f32
            } else {
                v
            });
        }
    }
    codebook
}

/// How many batches of `batch_size` give k-means about 20 encoder outputs per code.
pub(super) fn kmeans_batches(net: &Vqvae, batch_size: usize) -> usize {
    let per_batch = net.symbols.len() / net.batch * batch_size;
    (20 * net.config.codes).div_ceil(per_batch).max(1)
}

/// Replaces each codebook by k-means (k-means++ seeding from `seed`, then `iters` Lloyd
/// iterations) of its inputs in the images of `slices`: the encoder outputs, or what the
/// stages before it (clustered first) left.
pub(super) fn init_codebook_kmeans(
    gpu: &Gpu,
    (net, params): (&Vqvae, &Params),
    slices: &[Vec<usize>],
    data: &Dataset,
    iters: usize,
    seed: u64,
) -> Result<()> {
    let shape = net.z_e.shape();
    let mut all = shape.to_vec();
    all[0] *= slices.len();
    let outputs = Tensor::zeros(gpu, &all, DType::F32)?;
    for (s, stage) in net.stages.iter().enumerate() {
        for (b, slice) in slices.iter().enumerate() {
            upload_batch(gpu, &net.x, data, slice)?;
            let mut encoder =
                gpu.device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("k-means data"),
                    });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                net.encode().record(&mut pass);
            }
            let (input, bytes) = (&stage.input, stage.input.bytes());
            encoder.copy_buffer_to_buffer(
                input.buffer(),
                input.offset(),
                outputs.buffer(),
                outputs.offset() + b as u64 * bytes,
                bytes,
            );
            gpu.submit(encoder, "encoding the k-means data")?;
        }
        let codebook = params.value(&stage.codebook);
        let seed = seed.wrapping_add(s as u64) ^ 0x6b6d_6561_6e73;
        let clustering = kmeans(gpu, &outputs, codebook, iters, seed)?;
        gpu.run(&[clustering.launch()])?;
    }
    Ok(())
}
