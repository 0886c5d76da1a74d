//! `vqvae reconstruct`, `encode` and `decode`: a trained model applied to data or codes.

use std::path::Path;

use vqvae_wgpu::data::default_workers;
use vqvae_wgpu::error::{Error, Result};
use vqvae_wgpu::train;
use vqvae_wgpu::{images, npy};

use super::common::{DataArgs, ShardArgs, decode_codes, inference, load_model, open_gpu};

pub(crate) fn reconstruct(
    checkpoint: &Path,
    data: &DataArgs,
    out: &Path,
    batch_size: usize,
    shard: &ShardArgs,
) -> Result<()> {
    let (gpu, dataset, _params, net) = inference(checkpoint, data, batch_size)?;
    std::fs::create_dir_all(out).map_err(vqvae_wgpu::error::io("creating", out))?;
    let all: Vec<usize> = shard.range(dataset.len)?.collect();
    let launches = [net.encode(), net.decode()];
    // Each batch's images are written as it comes back.
    train::for_each_batch(
        &gpu,
        &net,
        &dataset,
        &all,
        &launches,
        &net.x_hat,
        default_workers(),
        |chunk, _, outs| {
            for (&i, bits) in chunk.iter().zip(&outs) {
                let x: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
                images::save_png(
                    &out.join(format!("{}.png", dataset.names[i])),
                    dataset.channels,
                    dataset.height,
                    dataset.width,
                    &images::to_pixels(&x),
                )?;
            }
            Ok(())
        },
    )?;
    println!("wrote {} reconstructions to {}", all.len(), out.display());
    Ok(())
}

pub(crate) fn encode(
    checkpoint: &Path,
    data: &DataArgs,
    out: &Path,
    batch_size: usize,
    shard: &ShardArgs,
) -> Result<()> {
    let (gpu, dataset, _params, net) = inference(checkpoint, data, batch_size)?;
    let all: Vec<usize> = shard.range(dataset.len)?.collect();
    let (h, w) = (dataset.height / 4, dataset.width / 4);
    let shape = npy::grid_shape(all.len(), [h, w], net.config.quantizer.codes_per_position());
    // The codes go to the file batch by batch.
    let mut file = npy::CodesWriter::create(out, &shape)?;
    train::for_each_batch(
        &gpu,
        &net,
        &dataset,
        &all,
        &[net.encode()],
        &net.indices,
        default_workers(),
        |_, _, codes| {
            let flat: Vec<i64> = codes.iter().flatten().map(|&c| i64::from(c)).collect();
            file.write(&flat)
        },
    )?;
    file.finish()?;
    println!("wrote codes of shape {shape:?} to {}", out.display());
    Ok(())
}

pub(crate) fn decode(checkpoint: &Path, codes: &Path, out: &Path, batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::Usage("--batch-size 0: must be at least 1".into()));
    }
    let (file, config) = load_model(checkpoint)?;
    let (values, [n, h, w]) = npy::read_codes(codes, config.quantizer.codes_per_position())?;
    if n == 0 || h == 0 || w == 0 {
        return Err(Error::Data {
            path: codes.to_path_buf(),
            message: format!("codes have shape [{n}, {h}, {w}]; nothing to decode"),
        });
    }
    if let Some((i, bad)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| **v < 0 || **v >= config.codes as i64)
    {
        return Err(Error::Data {
            path: codes.to_path_buf(),
            message: format!(
                "code {bad} at flat index {i} is outside 0..{} (the checkpoint's number of codes)",
                config.codes
            ),
        });
    }
    let gpu = open_gpu()?;
    let codes: Vec<u32> = values.iter().map(|&v| v as u32).collect();
    let pixels = decode_codes(&gpu, &file, &config, checkpoint, &codes, [h, w], batch_size)?;
    std::fs::create_dir_all(out).map_err(vqvae_wgpu::error::io("creating", out))?;
    for (i, image) in pixels.iter().enumerate() {
        images::save_png(
            &out.join(format!("{i:05}.png")),
            config.channels,
            4 * h,
            4 * w,
            image,
        )?;
    }
    println!("wrote {n} decoded images to {}", out.display());
    Ok(())
}
