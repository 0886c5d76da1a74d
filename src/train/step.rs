//! One training step: the graph, the update, the EMA codebook and the codebook
//! restarts bound once for a batch size; each step takes its batch from the workers that
//! decode ahead, uploads it, records forward, loss, backward, update, EMA update,
//! restarts and metrics into one command buffer and submits it, with at most two steps
//! in flight.

mod ranks;

use std::collections::VecDeque;

use crate::data::{Dataset, Prefetch};
use crate::error::Result;
use crate::gpu::{Gpu, describe};
use crate::kernels::guard::{guarded, mark_non_finite};
use crate::kernels::optim::{Adam, AdamConfig, Sgd};
use crate::kernels::restart::{Reset, Restart};
use crate::launch::Launch;
use crate::metrics::{MetricsRing, StepMetrics};
use crate::network::Vqvae;
use crate::params::Params;
use crate::ranks::{Ranks, differs};
use crate::tensor::{DType, Tensor};

use super::batches::{Order, batch_values, flips};
use super::ema::EmaCodebook;
use super::{CodebookUpdate, OptimizerKind, Settings};

/// The update step bound to the flat parameters.
#[allow(clippy::large_enum_variant)] // one per run
pub(super) enum Update {
    Adam { adam: Adam, m: Tensor, v: Tensor },
    Sgd(Sgd),
}

impl Update {
    fn new(gpu: &Gpu, params: &Params, s: &Settings) -> Result<Update> {
        let (flat, grads) = (params.flat_values(), params.flat_grads());
        Ok(match s.optimizer {
            OptimizerKind::Adam => {
                let m = Tensor::zeros(gpu, flat.shape(), DType::F32)?;
                let v = Tensor::zeros(gpu, flat.shape(), DType::F32)?;
                let config = AdamConfig {
                    lr: s.lr,
                    ..AdamConfig::default()
                };
                let adam = Adam::new(gpu, flat, grads, &m, &v, config)?;
                Update::Adam { adam, m, v }
            }
            OptimizerKind::Sgd => Update::Sgd(Sgd::new(gpu, flat, grads, s.lr as f32)?),
        })
    }

    /// Adam's moments, laid out like the parameters.
    pub fn moments(&self) -> Option<(&Tensor, &Tensor)> {
        match self {
            Update::Adam { m, v, .. } => Some((m, v)),
            Update::Sgd(_) => None,
        }
    }

    fn launch(&self) -> &Launch {
        match self {
            Update::Adam { adam, .. } => adam.launch(),
            Update::Sgd(sgd) => sgd.launch(),
        }
    }
}

/// What changes a run's state, each gated by the guard: after the first step whose loss
/// is not finite none of them runs, and the state stays that of the last good step.
struct Gated {
    mark: Launch,
    update: Launch,
    /// One per codebook, as the three below; and the EMA update's halves, for ranks
    /// that sum its statistics between them.
    ema: Vec<Launch>,
    ema_apply: Vec<Launch>,
    accumulate: Vec<Launch>,
    restart: Vec<Launch>,
}

/// Everything a step runs, bound once.
pub(super) struct TrainStep<'a> {
    gpu: &'a Gpu,
    data: &'a Dataset,
    /// The ranks training together; each takes its slice of every batch.
    ranks: &'a dyn Ranks,
    /// The flat gradients, summed across ranks after the backward pass.
    grads: Tensor,
    /// The flat parameters, and whether every step compares them across ranks
    /// (`VQVAE_CHECK_RANKS` set: a test's check that the ranks never drift apart).
    values: Tensor,
    check_ranks: bool,
    /// Whether rank 0's state goes to every rank after every step: ranks on different
    /// adapters, whose kernels may round differently.
    resync: bool,
    /// Seconds spent on the sums across ranks so far.
    pub sum_seconds: f64,
    /// Batches decoded ahead, from the step they were started at.
    batches: Option<Prefetch<Vec<f32>>>,
    workers: usize,
    /// The run's settings.
    settings: Settings,
    /// The training graph.
    pub net: Vqvae,
    /// The optimizer.
    pub update: Update,
    /// Each codebook's code usage since the last restart.
    pub windows: Vec<Tensor>,
    /// Each codebook's EMA statistics and update (with [`CodebookUpdate::Ema`]).
    pub ema: Vec<EmaCodebook>,
    restarts: Vec<Restart>,
    /// Whether the updates are gated by a guard that the first step whose loss is not
    /// finite raises (`kernels::guard`; not on devices without indirect dispatch).
    pub guarded: bool,
    gated: Gated,
    /// The batches' order.
    pub order: Order,
    ring: MetricsRing,
    in_flight: VecDeque<wgpu::SubmissionIndex>,
}

impl<'a> TrainStep<'a> {
    /// Binds the graph, optimizer and restarts for this rank's slice of `s.batch_size`
    /// images of `size` (`net` is built for the slice), drawing batches from the first
    /// `train_len` images of `data`, decoded ahead on `workers` threads.
    pub fn new(
        gpu: &'a Gpu,
        params: &Params,
        net: Vqvae,
        (data, train_len, workers): (&'a Dataset, usize, usize),
        s: &Settings,
        ranks: &'a dyn Ranks,
    ) -> Result<TrainStep<'a>> {
        let update = Update::new(gpu, params, s)?;
        let stages = &net.stages;
        let windows = stages
            .iter()
            .map(|_| Tensor::zeros(gpu, &[net.config.codes], DType::U32))
            .collect::<Result<Vec<_>>>()?;
        let ema = match s.codebook_update {
            CodebookUpdate::Ema => stages
                .iter()
                .enumerate()
                .map(|(i, stage)| {
                    let prefix = match stages.len() {
                        1 => "ema.".to_string(),
                        _ => format!("ema.{i}."),
                    };
                    EmaCodebook::new(gpu, stage, prefix, params, s.ema_decay, s.ema_eps)
                })
                .collect::<Result<Vec<_>>>()?,
            CodebookUpdate::Gradient => Vec::new(),
        };
        let mut restarts = Vec::new();
        for (i, stage) in stages.iter().enumerate().filter(|_| s.codebook_restart > 0) {
            let moments = match update.moments() {
                Some((m, v)) => Some((
                    params.view(gpu, m, &stage.codebook)?,
                    params.view(gpu, v, &stage.codebook)?,
                )),
                None => None,
            };
            // An EMA codebook gets no gradient: its Adam moments stay zero, and what
            // would drag a restarted code back is its statistics.
            let reset = match (ema.get(i), &moments) {
                (Some(e), _) => Reset::Ema {
                    cluster: &e.cluster,
                    sums: &e.sums,
                },
                (None, Some((m, v))) => Reset::Moments(m, v),
                (None, None) => Reset::Nothing,
            };
            // Each stage draws its restarts from rows of its own.
            restarts.push(Restart::new(
                gpu,
                params.value(&stage.codebook),
                &stage.counts,
                &windows[i],
                &stage.input,
                reset,
                s.seed.wrapping_add(i as u64),
            )?);
        }
        let guard = Tensor::zeros(gpu, &[1], DType::U32)?;
        let gate = |launch: &Launch| guarded(gpu, launch, &guard);
        let terms = net.terms.as_ref().expect("training graph");
        let gated = Gated {
            mark: mark_non_finite(gpu, terms, &guard)?,
            update: gate(update.launch())?,
            ema: ema
                .iter()
                .map(|e| gate(e.launch()))
                .collect::<Result<_>>()?,
            ema_apply: ema.iter().map(|e| gate(e.apply())).collect::<Result<_>>()?,
            accumulate: restarts
                .iter()
                .map(|r| gate(r.accumulate()))
                .collect::<Result<_>>()?,
            restart: restarts
                .iter()
                .map(|r| gate(r.launch()))
                .collect::<Result<_>>()?,
        };
        Ok(TrainStep {
            gpu,
            data,
            ranks,
            grads: params.flat_grads().clone(),
            values: params.flat_values().clone(),
            check_ranks: ranks.size() > 1 && std::env::var_os("VQVAE_CHECK_RANKS").is_some(),
            resync: ranks.size() > 1 && differs(ranks, &describe(gpu.info())),
            sum_seconds: 0.0,
            batches: None,
            workers,
            settings: s.clone(),
            net,
            update,
            windows,
            ema,
            restarts,
            guarded: gpu.indirect_dispatch(),
            gated,
            order: Order {
                seed: s.seed,
                shuffle: s.shuffle,
                len: train_len,
                epoch: None,
            },
            ring: MetricsRing::new(gpu, s.log_every.max(1) as usize),
            in_flight: VecDeque::new(),
        })
    }

    /// The input values of step `step`'s batch (0-based), decoded ahead on the workers;
    /// an error names an image that cannot be read.
    pub fn batch(&mut self, step: u64) -> Result<Vec<f32>> {
        if self.batches.as_ref().is_none_or(|b| b.position() != step) {
            let (reader, size) = (self.data.reader.clone(), self.settings.batch_size);
            let (seed, hflip) = (self.order.seed, self.settings.hflip);
            // This rank's slice of each batch: images r*b .. (r+1)*b of its B.
            let b = size / self.ranks.size();
            let mine = self.ranks.rank() * b..(self.ranks.rank() + 1) * b;
            let job = move |order: &mut Order, k: u64| {
                let flipped = if hflip {
                    flips(seed, k, size)[mine.clone()].to_vec()
                } else {
                    Vec::new()
                };
                batch_values(&reader, &order.batch(k, size)[mine.clone()], b, &flipped)
            };
            self.batches = Some(Prefetch::new(
                self.workers,
                step..self.settings.steps,
                self.order.clone(),
                job,
            )?);
        }
        let batches = self.batches.as_mut().expect("started above");
        batches.next().expect("steps are taken within the run")
    }

    /// Runs step `step` (0-based) on `batch` (its [`TrainStep::batch`]) at learning rate
    /// `lr` (`last` reads its metrics back at once) and returns the metrics of earlier
    /// steps that have arrived meanwhile.
    pub fn run(
        &mut self,
        step: u64,
        batch: &[f32],
        lr: f64,
        last: bool,
    ) -> Result<Vec<StepMetrics>> {
        let gpu = self.gpu;
        let net = &self.net;
        net.x.write(gpu, bytemuck::cast_slice(batch))?;
        match &self.update {
            Update::Adam { adam, .. } => adam.set_step(gpu, step + 1, lr),
            Update::Sgd(sgd) => sgd.set_lr(gpu, lr as f32),
        }
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("train step"),
            });
        // Quantize dropout keeps the first `active` residual stages; a dropped stage's
        // codebook does not move either.
        let active = self.settings.active_stages(step, net.stages.len());
        let [encode, backward] = net.with_stages(active).expect("a training graph");
        let g = &self.gated;
        let several = self.ranks.size() > 1;
        let restarting = (step + 1).is_multiple_of(self.settings.codebook_restart.max(1));
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for l in [encode, net.decode(), backward, &g.mark] {
                l.record(&mut pass);
            }
            if several {
                for e in self.ema.iter().take(active) {
                    e.statistics().record(&mut pass);
                }
            }
        }
        if several {
            // The ranks' gradients and statistics meet on the host: one submit more.
            gpu.submit(encoder, "a training step's backward pass")?;
            let started = std::time::Instant::now();
            self.sum_gradients(step)?;
            // The metrics read the codes' counts before their sums replace them.
            self.sum_metrics()?;
            self.sum_statistics(active)?;
            self.sum_seconds += started.elapsed().as_secs_f64();
            encoder = gpu
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("train step update"),
                });
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            g.update.record(&mut pass);
            let ema = if several { &g.ema_apply } else { &g.ema };
            for e in ema.iter().take(active) {
                e.record(&mut pass);
            }
            for ((r, accumulate), restart) in
                self.restarts.iter().zip(&g.accumulate).zip(&g.restart)
            {
                accumulate.record(&mut pass);
                // Ranks restart on the host, over the global batch.
                if restarting && !several {
                    r.set_step(gpu, step + 1);
                    restart.record(&mut pass);
                }
            }
        }
        let (terms, usage) = (
            net.terms.as_ref().expect("training graph"),
            net.usage.as_ref().expect("training graph"),
        );
        let mut rows = self
            .ring
            .record(gpu, &mut encoder, step, terms, usage, last)?;
        let index = gpu.scoped("submitting a training step", || {
            gpu.queue().submit([encoder.finish()])
        })?;
        self.ring.submitted();
        self.in_flight.push_back(index);
        if self.in_flight.len() > 2 {
            gpu.wait(self.in_flight.pop_front(), "training")?;
        }
        rows.extend(self.ring.poll(gpu)?);
        if several && restarting {
            self.restart_across_ranks(step)?;
        }
        if self.resync {
            self.share_state()?;
        }
        if self.check_ranks {
            self.same_parameters(step)?;
        }
        Ok(rows)
    }

    /// Waits for every recorded step's metrics.
    pub fn flush(&mut self) -> Result<Vec<StepMetrics>> {
        self.ring.flush(self.gpu)
    }
}
