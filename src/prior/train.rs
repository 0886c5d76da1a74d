//! Training the prior on code grids: batches, Adam, held-out negative log-likelihood
//! beside two baselines, atomic checkpoints and resuming.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{AUTOENCODER_KEY, CONFIG_KEY, PriorConfig, PriorNet};
use crate::checkpoint::{TensorFile, write_together};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::optim::{Adam, AdamConfig};
use crate::params::Params;
use crate::plot::{self, PRIOR_METRICS_PNG};
use crate::stop::Stop;
use crate::tensor::zeros_f32 as zeros;
use crate::train::{Log, Order, fresh_values, progress_bar};

/// The prior's checkpoint in its output folder.
pub const PRIOR_FILE: &str = "prior.safetensors";
/// Its optimizer state, for `--resume`.
pub const PRIOR_STATE_FILE: &str = "prior_state.safetensors";
/// File name of a prior run's metrics log.
pub const PRIOR_METRICS_FILE: &str = "prior_metrics.jsonl";

/// Code grids `[n, h, w]`, with a class label per grid when the data has them.
#[derive(Clone, Debug)]
pub struct CodeGrids {
    /// Codes, grid after grid, row by row.
    pub codes: Vec<u32>,
    /// Number of grids.
    pub n: usize,
    /// `[h, w]`.
    pub grid: [usize; 2],
    /// One class per grid.
    pub labels: Option<Vec<usize>>,
}

impl CodeGrids {
    /// Codes per grid.
    pub fn plane(&self) -> usize {
        self.grid[0] * self.grid[1]
    }

    /// Grid `i`'s codes.
    pub fn grid(&self, i: usize) -> &[u32] {
        &self.codes[i * self.plane()..(i + 1) * self.plane()]
    }
}

/// How the prior trains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriorSettings {
    /// Grids per step.
    pub batch_size: usize,
    /// Steps in all.
    pub steps: u64,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seed of the initialisation and the batch order.
    pub seed: u64,
    /// Grids held out from the end for the negative log-likelihood.
    pub val_grids: usize,
    /// Steps between loss read-backs.
    pub log_every: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Steps between held-out evaluations.
    pub val_every: u64,
}

/// Where the prior's weights come from.
pub enum PriorStart {
    /// Fresh weights from the seed.
    Fresh,
    /// A stopped run's checkpoint and optimizer state.
    Resume {
        /// The prior checkpoint.
        model: Box<TensorFile>,
        /// Its optimizer state.
        state: Box<TensorFile>,
    },
}

/// A prior training run.
pub struct PriorRun<'a> {
    /// The GPU.
    pub gpu: &'a Gpu,
    /// Every grid; the last `settings.val_grids` are held out.
    pub grids: &'a CodeGrids,
    /// The prior's sizes.
    pub config: PriorConfig,
    /// How it trains.
    pub settings: PriorSettings,
    /// Output folder.
    pub out: PathBuf,
    /// Fresh or resumed.
    pub start: PriorStart,
    /// Show a progress bar.
    pub progress: bool,
    /// [`codebook_fingerprint`](super::codebook_fingerprint) of the autoencoder whose
    /// codes these are, recorded in the checkpoint.
    pub autoencoder: String,
    /// Asked after each step: a request ends the run with a checkpoint and
    /// [`Error::Stopped`].
    pub stop: Stop,
}

/// What a run reached.
#[derive(Clone, Debug)]
pub struct PriorSummary {
    /// The step trained to.
    pub step: u64,
    /// Training loss of the last logged step, bits per code.
    pub train_bits: Option<f64>,
    /// Held-out negative log-likelihood, bits per code.
    pub val_bits: Option<f64>,
    /// The uniform prior's: log2 K.
    pub uniform_bits: f64,
    /// The training set's code frequencies' on the held-out codes.
    pub frequency_bits: f64,
    /// Milliseconds per training step (GPU work of a whole step, waited for).
    pub ms_per_step: f64,
}

/// Bits per code of `-log2` the training frequencies (add-one smoothed) of `held_out`.
fn frequency_bits(train: &[u32], held_out: &[u32], codes: usize) -> f64 {
    let mut counts = vec![1.0f64; codes];
    for &c in train {
        counts[c as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    held_out
        .iter()
        .map(|&c| -(counts[c as usize] / total).log2())
        .sum::<f64>()
        / held_out.len() as f64
}

/// Writes grids `indices` (and their classes) into `net`; slots past the list repeat its
/// last grid.
fn upload(gpu: &Gpu, net: &PriorNet, grids: &CodeGrids, indices: &[usize]) -> Result<()> {
    let mut codes = Vec::with_capacity(net.codes.len());
    let mut labels = Vec::with_capacity(net.batch);
    for b in 0..net.batch {
        let i = indices[b.min(indices.len() - 1)];
        codes.extend_from_slice(grids.grid(i));
        labels.push(grids.labels.as_ref().map_or(0, |l| l[i]));
    }
    net.codes.write(gpu, bytemuck::cast_slice(&codes))?;
    net.set_classes(gpu, &labels)
}

/// Mean negative log-likelihood of grids `indices` in bits per code.
fn held_out_bits(gpu: &Gpu, net: &PriorNet, grids: &CodeGrids, indices: &[usize]) -> Result<f64> {
    let (forward, loss) = (net.forward(), net.loss().expect("a training graph"));
    let losses = net.losses.as_ref().expect("a training graph");
    let plane = grids.plane();
    let mut nats = 0.0;
    for chunk in indices.chunks(net.batch) {
        upload(gpu, net, grids, chunk)?;
        gpu.run(&[forward, loss])?;
        nats += losses.to_f32(gpu)?[..chunk.len() * plane]
            .iter()
            .map(|&v| f64::from(v))
            .sum::<f64>();
    }
    Ok(nats / (indices.len() * plane) as f64 / std::f64::consts::LN_2)
}

impl PriorRun<'_> {
    /// Trains, writing `prior.safetensors`, `prior_state.safetensors`,
    /// `prior_metrics.jsonl` and its curves, `prior_metrics.png`, into the output folder.
    pub fn train(self) -> Result<PriorSummary> {
        let PriorRun {
            gpu,
            grids,
            config: c,
            settings: s,
            out,
            start,
            progress,
            autoencoder,
            stop,
        } = self;
        if s.batch_size == 0 {
            return Err(Error::Usage("--batch-size 0: must be at least 1".into()));
        }
        if grids.n < 2 {
            return Err(Error::Usage(format!(
                "{} code grid(s): a prior needs at least 2 (one to train on, one held out)",
                grids.n
            )));
        }
        if c.classes > 0 && grids.labels.is_none() {
            return Err(Error::Usage(
                "a conditional prior needs labelled data".into(),
            ));
        }
        let val = s.val_grids.clamp(1, grids.n - 1);
        let train_len = grids.n - val;
        std::fs::create_dir_all(&out).map_err(crate::error::io("creating", &out))?;
        let params = Params::new(gpu, c.params())?;
        let net = PriorNet::new(gpu, &params, &c, s.batch_size, true)?;
        let val_net = PriorNet::new(gpu, &params, &c, s.batch_size.min(val), true)?;
        let (flat, grads) = (params.flat_values(), params.flat_grads());
        let (m, v) = (zeros(gpu, flat.shape())?, zeros(gpu, flat.shape())?);
        let adam = Adam::new(
            gpu,
            flat,
            grads,
            &m,
            &v,
            AdamConfig {
                lr: s.lr,
                ..AdamConfig::default()
            },
        )?;
        let first_step = match &start {
            PriorStart::Fresh => {
                params.upload(
                    gpu,
                    &params.join(&fresh_values(&params, s.seed), "initialisation")?,
                )?;
                0
            }
            PriorStart::Resume { model, state } => {
                params.upload(gpu, &params.join(&model.values(), "--resume")?)?;
                let values = state.values();
                params.upload_named(gpu, &m, &values, "exp_avg.", "prior state")?;
                params.upload_named(gpu, &v, &values, "exp_avg_sq.", "prior state")?;
                state
                    .metadata
                    .get("step")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            }
        };
        let save = |step: u64| -> Result<()> {
            let mut state = TensorFile {
                tensors: params.download_named(gpu, &m, "exp_avg.")?,
                metadata: [
                    ("step".to_string(), step.to_string()),
                    (
                        "settings".to_string(),
                        serde_json::to_string(&s).expect("settings serialise"),
                    ),
                ]
                .into(),
            };
            state
                .tensors
                .extend(params.download_named(gpu, &v, "exp_avg_sq.")?);
            let model = TensorFile {
                tensors: params.download_named(gpu, flat, "")?,
                metadata: [
                    (
                        "format".to_string(),
                        "vqvae-wgpu pixelcnn prior".to_string(),
                    ),
                    (
                        CONFIG_KEY.to_string(),
                        serde_json::to_string(&c).expect("config serialises"),
                    ),
                    (AUTOENCODER_KEY.to_string(), autoencoder.clone()),
                    ("step".to_string(), step.to_string()),
                ]
                .into(),
            };
            write_together(&[
                (&model, &out.join(PRIOR_FILE)),
                (&state, &out.join(PRIOR_STATE_FILE)),
            ])?;
            plot::prior_curves(&out.join(PRIOR_METRICS_FILE), &out.join(PRIOR_METRICS_PNG))
        };

        let plane = grids.plane();
        let train_codes = &grids.codes[..train_len * plane];
        let val_indices: Vec<usize> = (train_len..grids.n).collect();
        let uniform_bits = (c.codes as f64).log2();
        let freq_bits = frequency_bits(train_codes, &grids.codes[train_len * plane..], c.codes);
        let mut log = Log::open(
            out.join(PRIOR_METRICS_FILE),
            matches!(start, PriorStart::Resume { .. }).then_some(first_step),
        )?;
        log.line(&serde_json::json!({
            "step": first_step,
            "uniform_bits": uniform_bits,
            "frequency_bits": freq_bits,
        }))?;
        let mut order = Order {
            seed: s.seed,
            shuffle: true,
            len: train_len,
            epoch: None,
        };
        let bar = progress_bar(progress, first_step, s.steps);
        let step_launches = [
            net.forward(),
            net.loss().expect("a training graph"),
            net.backward().expect("a training graph"),
            adam.launch(),
        ];
        let loss_sum = net.loss_sum.as_ref().expect("a training graph");
        let (mut train_bits, mut val_bits) = (None, None);
        let started = Instant::now();
        let mut aside = std::time::Duration::ZERO;
        // Up to two steps in flight: the next batch's upload queues behind them, and only
        // the loss read-back and validation wait for the GPU.
        let mut in_flight = std::collections::VecDeque::new();
        for step in first_step..s.steps {
            upload(gpu, &net, grids, &order.batch(step, s.batch_size))?;
            adam.set_step(gpu, step + 1, s.lr);
            in_flight.push_back(gpu.enqueue(&step_launches, "a prior training step")?);
            if in_flight.len() > 2 {
                gpu.wait(in_flight.pop_front(), "prior training")?;
            }
            let n = step + 1;
            let last = n == s.steps;
            let pause = Instant::now();
            if last || n % s.log_every.max(1) == 0 {
                let nats = f64::from(loss_sum.to_f32(gpu)?[0]) / (s.batch_size * plane) as f64;
                if !nats.is_finite() {
                    return Err(Error::NonFinite {
                        step: n,
                        value: nats as f32,
                        kept: "The last checkpoint written is in the output folder, if any.".into(),
                    });
                }
                let bits = nats / std::f64::consts::LN_2;
                log.line(&serde_json::json!({ "step": n, "train_bits": bits }))?;
                bar.set_message(format!(
                    "{bits:.3} bits/code (uniform {uniform_bits:.2}, frequencies {freq_bits:.3})"
                ));
                train_bits = Some(bits);
            }
            if last || n % s.val_every.max(1) == 0 {
                let bits = held_out_bits(gpu, &val_net, grids, &val_indices)?;
                log.line(&serde_json::json!({
                    "step": n,
                    "val_bits": bits,
                    "uniform_bits": uniform_bits,
                    "frequency_bits": freq_bits,
                }))?;
                val_bits = Some(bits);
            }
            let stopped = stop.stopped(n, &out).filter(|_| !last);
            if last || n % s.checkpoint_every.max(1) == 0 || stopped.is_some() {
                save(n)?;
            }
            aside += pause.elapsed();
            bar.set_position(n);
            if let Some(e) = stopped {
                bar.finish_and_clear();
                return Err(e);
            }
        }
        gpu.wait(None, "prior training")?;
        bar.finish_and_clear();
        let steps_run = s.steps.saturating_sub(first_step);
        if steps_run == 0 {
            save(first_step.max(s.steps))?;
        }
        let seconds = (started.elapsed() - aside).as_secs_f64();
        Ok(PriorSummary {
            step: s.steps.max(first_step),
            train_bits,
            val_bits,
            uniform_bits,
            frequency_bits: freq_bits,
            ms_per_step: seconds * 1e3 / steps_run.max(1) as f64,
        })
    }
}
