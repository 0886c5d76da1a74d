//! Drawing code grids from the prior on the GPU, position by position, with no round
//! trip to the CPU between positions, each position recomputing only the band of rows
//! it can see.

use super::{PriorConfig, PriorNet};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::rows::{RowCopy, copy_rows};
use crate::kernels::softmax;
use crate::launch::{Launch, Tuning};
use crate::params::Params;
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};

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

/// The fewest rows a sampling band of `config`'s prior needs, for `batch` grids at a
/// time under `tuning`: the rows a position's logits can see above it, and its own. A
/// band also keeps at least [`Tuning::packed_from`] columns where the whole grids have
/// them, so that every convolution takes the path it takes over the whole grids and the
/// draws are the same bits.
pub fn band_rows(config: &PriorConfig, batch: usize, tuning: &Tuning) -> usize {
    let [h, w] = config.grid;
    let sees = config.rows_above() + 1;
    let packed = (tuning.packed_from as usize).div_ceil(batch * w);
    sees.max(packed).min(h)
}

/// Draws code grids from a prior, `batch` at a time, in raster order.
///
/// A position's logits depend only on the codes before it, within
/// [`PriorConfig::rows_above`] rows. So the network runs over a band of rows, not the
/// whole grid: for row `r` the band holds rows `r + 1 - band ..= r` (the top rows while
/// `r` is near the top), copied from the whole grids; each position of the row is one
/// forward pass over the band and one draw, hashed with its position in the whole grid;
/// then the row goes back into the whole grids. Every position costs `band / h` of a
/// forward pass over the whole grid, and the draws are those of the whole-grid pass.
pub struct Sampler {
    /// The network over the band.
    net: PriorNet,
    /// The whole grid, `[h, w]`.
    grid: [usize; 2],
    /// The whole grids, where the band is shorter than they are.
    grids: Option<Tensor>,
}

impl Sampler {
    /// A sampler with the band [`band_rows`] chooses.
    pub fn new(gpu: &Gpu, params: &Params, config: &PriorConfig, batch: usize) -> Result<Sampler> {
        let rows = band_rows(config, batch, &gpu.tuning());
        Sampler::with_band(gpu, params, config, batch, rows)
    }

    /// A sampler whose band has `rows` rows (at most the grid's height; the whole grid
    /// recomputes everything for every position). Too few rows give other draws.
    pub fn with_band(
        gpu: &Gpu,
        params: &Params,
        config: &PriorConfig,
        batch: usize,
        rows: usize,
    ) -> Result<Sampler> {
        let [h, w] = config.grid;
        let rows = rows.clamp(1, h);
        let band = PriorConfig {
            grid: [rows, w],
            ..*config
        };
        let net = PriorNet::new(gpu, params, &band, batch, false)?;
        let grids = match rows < h {
            true => Some(Tensor::zeros(gpu, &[batch * h * w], DType::U32)?),
            false => None,
        };
        Ok(Sampler {
            net,
            grid: config.grid,
            grids,
        })
    }

    /// Grids drawn at a time.
    pub fn batch(&self) -> usize {
        self.net.batch
    }

    /// Floating-point operations of one forward pass over the band.
    pub fn forward_flops(&self) -> f64 {
        self.net.forward_flops
    }

    /// Rows of the band the network runs over.
    pub fn band(&self) -> usize {
        self.net.config.grid[0]
    }

    /// Row `r` of a batch's draws: the band moved into place, each position's forward
    /// pass and draw, and the row moved back into the whole grids.
    pub(crate) fn row(&self, gpu: &Gpu, r: usize, temperature: f32, seed: u32) -> Result<Launch> {
        let net = &self.net;
        let ([h, w], band, batch) = (self.grid, self.band(), self.batch());
        let top = (r + 1).saturating_sub(band);
        let copy = |src, dst, rows, from, to| {
            let c = RowCopy {
                batch,
                width: w,
                rows,
                from,
                to,
            };
            copy_rows(gpu, src, dst, &c)
        };
        let mut launch = match &self.grids {
            Some(grids) => copy(grids, &net.codes, band, [h, top], [band, 0])?,
            None => Launch::default(),
        };
        for c in 0..w {
            let (pos, at) = ((r - top) * w + c, r * w + c);
            let draw = softmax::sample(gpu, &net.logits, &net.codes, pos, at, temperature, seed)?;
            launch = launch.then(net.forward().clone()).then(draw);
        }
        if let Some(grids) = &self.grids {
            launch = launch.then(copy(&net.codes, grids, 1, [band, r - top], [h, r])?);
        }
        Ok(launch)
    }

    /// The draws of one batch (`seed` its own): every position recorded into one compute
    /// pass, submitted once.
    fn draw_batch(&self, gpu: &Gpu, temperature: f32, seed: u32) -> Result<Vec<u32>> {
        let net = &self.net;
        for t in std::iter::once(&net.codes).chain(&self.grids) {
            t.write(gpu, &vec![0u8; t.bytes() as usize])?;
        }
        let rows = (0..self.grid[0])
            .map(|r| self.row(gpu, r, temperature, seed))
            .collect::<Result<Vec<_>>>()?;
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sample"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for row in &rows {
                row.record(&mut pass);
            }
        }
        gpu.submit(encoder, "sampling")?;
        self.grids.as_ref().unwrap_or(&net.codes).to_u32(gpu)
    }

    /// Draws `settings.count` grids. Returns the codes, grid after grid, row by row.
    pub fn sample(&self, gpu: &Gpu, settings: &SampleSettings) -> Result<Vec<u32>> {
        let c = &self.net.config;
        settings.check(c)?;
        let (batch, plane) = (self.batch(), self.grid[0] * self.grid[1]);
        let mut all = Vec::with_capacity(settings.count * plane);
        for (chunk, first) in (0..settings.count).step_by(batch).enumerate() {
            let count = batch.min(settings.count - first);
            // Without --class, a conditional prior draws classes round-robin.
            let labels: Vec<usize> = (first..first + batch)
                .map(|i| settings.class.unwrap_or(i % c.classes.max(1)))
                .collect();
            self.net.set_classes(gpu, &labels)?;
            let seed =
                Rng::for_purpose(settings.seed, 0x5A3B_0000 + chunk as u64).next_u64() as u32;
            let codes = self.draw_batch(gpu, settings.temperature, seed)?;
            all.extend_from_slice(&codes[..count * plane]);
        }
        Ok(all)
    }
}
