//! Drawing code grids from the prior on the GPU, position by position, with no round
//! trip to the CPU between positions.

use super::{PriorConfig, PriorNet};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::softmax;
use crate::rng::Rng;

/// How many grids to draw and how.
#[derive(Clone, Copy, Debug)]
pub struct SampleSettings {
    /// Grids to draw.
    pub count: usize,
    /// Softmax temperature (> 0): below 1 sharper, above 1 flatter; near 0 the argmax.
    pub temperature: f32,
    /// Seed of the draws: the same seed, prior and adapter give the same grids.
    pub seed: u64,
    /// The class to draw (conditional priors).
    pub class: Option<usize>,
}

impl SampleSettings {
    /// Errors unless these settings can draw from a prior of config `c`.
    pub fn check(&self, c: &PriorConfig) -> Result<()> {
        if self.count == 0 {
            return Err(Error::Usage("--count 0: must be at least 1".into()));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::Usage(format!(
                "--temperature {}: must be a positive number",
                self.temperature
            )));
        }
        match (self.class, c.classes) {
            (Some(class), 0) => {
                return Err(Error::Usage(format!(
                    "--class {class}: this prior was trained without classes"
                )));
            }
            (Some(class), n) if class >= n => {
                return Err(Error::Usage(format!(
                    "--class {class}: this prior knows classes 0..{}",
                    n - 1
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Draws `settings.count` grids with `net` (an inference graph), `net.batch` at a time:
/// for each batch, every position in raster order is one forward pass and one sampling
/// dispatch, all recorded into one compute pass and submitted once. Returns the codes,
/// grid after grid, row by row.
pub fn sample_codes(gpu: &Gpu, net: &PriorNet, settings: &SampleSettings) -> Result<Vec<u32>> {
    let c = &net.config;
    settings.check(c)?;
    let plane = c.grid[0] * c.grid[1];
    let mut all = Vec::with_capacity(settings.count * plane);
    for (chunk, first) in (0..settings.count).step_by(net.batch).enumerate() {
        let count = net.batch.min(settings.count - first);
        // Without --class, a conditional prior draws classes round-robin.
        let labels: Vec<usize> = (first..first + net.batch)
            .map(|i| settings.class.unwrap_or(i % c.classes.max(1)))
            .collect();
        net.set_classes(gpu, &labels)?;
        net.codes
            .write(gpu, &vec![0u8; net.codes.bytes() as usize])?;
        let seed = Rng::for_purpose(settings.seed, 0x5A3B_0000 + chunk as u64).next_u64() as u32;
        let draws = (0..plane)
            .map(|pos| {
                softmax::sample(
                    gpu,
                    &net.logits,
                    &net.codes,
                    pos,
                    settings.temperature,
                    seed,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sample"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for draw in &draws {
                net.forward().record(&mut pass);
                draw.record(&mut pass);
            }
        }
        gpu.submit(encoder, "sampling")?;
        all.extend_from_slice(&net.codes.to_u32(gpu)?[..count * plane]);
    }
    Ok(all)
}
