//! The training loop: one command buffer and one submit per step (`step.rs`), metrics
//! read back without stalls (`log.rs`), validation on held-out images (`batches.rs`),
//! atomic checkpoints (`state.rs`), an EMA codebook (`ema.rs`), a checkpoint on SIGINT or
//! SIGTERM, and resuming that ends bit for bit where an uninterrupted run would. The loop itself is [`Run::train`].

mod batches;
mod ema;
mod init;
mod log;
mod schedule;
mod settings;
mod state;
mod step;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::Dataset;
use crate::error::{Error, Result, io};
use crate::gpu::Gpu;
use crate::images;
use crate::model::Config;
pub use crate::network::CodebookUpdate;
use crate::network::Vqvae;
use crate::params::Params;
use crate::plot::{self, METRICS_PNG};
use crate::ranks::Ranks;
use crate::stop::{Signal, Stop};

pub(crate) use batches::Order;
use batches::{Validation, validate};
pub use batches::{for_each_batch, run_batches, save_reconstructions, upload_batch};
pub(crate) use ema::EmaCodebook;
pub use ema::{CLUSTER_SIZE, EMBED_SUM};
pub(crate) use init::fresh_values;
use init::{init_codebook_from_data, init_codebook_kmeans, kmeans_batches, slices};
pub use log::METRICS_FILE;
use log::Progress;
pub(crate) use log::{Log, progress_bar};
pub use schedule::{COSINE_FLOOR, LrSchedule};
pub use settings::{
    CodebookInit, DEFAULT_EMA_DECAY, DEFAULT_EMA_EPS, DEFAULT_KMEANS_ITERS, OptimizerKind,
    Settings, Start, Summary, USAGE_FILE,
};
pub use state::{IMAGE_SIZE_KEY, TUNING_KEY, saved_tuning};
use state::{Saver, restore};
use step::TrainStep;

/// A training run.
pub struct Run<'a> {
    /// The GPU.
    pub gpu: &'a Gpu,
    /// All images; the last `settings.val_images` are held out.
    pub data: &'a Dataset,
    /// The model.
    pub config: Config,
    /// The run's settings.
    pub settings: Settings,
    /// Output folder.
    pub out: PathBuf,
    /// Where the weights come from.
    pub start: Start,
    /// Show a progress bar.
    pub progress: bool,
    /// Asked after each step: a request ends the run with a checkpoint and
    /// [`Error::Stopped`].
    pub stop: Stop,
    /// Threads that decode batches ahead of the GPU (at least 1; the results do not
    /// depend on it).
    pub workers: usize,
    /// The processes training this model together ([`crate::ranks::OneProcess`] alone):
    /// each takes its slice of every batch, their gradients are summed before each
    /// update, and rank 0 alone writes files.
    pub ranks: &'a dyn Ranks,
}

impl Run<'_> {
    /// Trains, writing the checkpoint, training state, metrics log and
    /// `reconstructions.png` into the output folder.
    pub fn train(self) -> Result<Summary> {
        let Run {
            gpu,
            data,
            config,
            settings: s,
            out,
            start,
            progress,
            stop,
            workers,
            ranks,
        } = self;
        if s.batch_size == 0 {
            return Err(Error::Usage("--batch-size 0: must be at least 1".into()));
        }
        let lead = ranks.rank() == 0;
        if !s.batch_size.is_multiple_of(ranks.size()) {
            return Err(Error::Usage(format!(
                "--batch-size {} does not split evenly over {} ranks: give a multiple of {}",
                s.batch_size,
                ranks.size(),
                ranks.size()
            )));
        }
        // This rank's slice of every batch.
        let local_batch = s.batch_size / ranks.size();
        if data.channels != config.channels {
            return Err(Error::Usage(format!(
                "the data has {} channels but the model {}",
                data.channels, config.channels
            )));
        }
        let val = s.val_images.min(data.len.saturating_sub(1));
        let train_len = data.len - val;
        std::fs::create_dir_all(&out).map_err(io("creating", &out))?;
        let bytes_before = gpu.allocated_bytes();
        let params = Params::new(gpu, config.params())?;
        let size = [data.height, data.width];
        let net = Vqvae::new(
            gpu,
            &params,
            &config,
            local_batch,
            size,
            Some(s.codebook_update),
        )
        .map_err(|e| batch_error(e, local_batch))?;
        // Rank 0 alone validates.
        let val_net = match val {
            v if v == 0 || !lead => None,
            v => Some(Vqvae::new(
                gpu,
                &params,
                &config,
                v.min(s.batch_size),
                size,
                None,
            )?),
        };
        let mut train = TrainStep::new(gpu, &params, net, (data, train_len, workers), &s, ranks)?;
        let first_step = begin(gpu, &start, &params, &mut train, data, &s)?;
        if ranks.size() > 1 {
            train.share_state()?;
        }
        let gpu_bytes = gpu.allocated_bytes() - bytes_before;
        let saver = Saver {
            gpu,
            params: &params,
            config: &config,
            settings: &s,
            out: &out,
            image: size,
            write: lead,
        };
        let resumed = matches!(start, Start::Resume { .. });
        let mut shown = Progress::new(
            &out,
            (resumed, lead),
            first_step,
            &s,
            config.symbols() as usize,
            progress && lead,
        )?;
        let val_indices: Vec<usize> = (train_len..data.len).collect();
        let mut last_val: Option<Validation> = None;
        let usage_png = out.join(USAGE_FILE);
        let every = |n: u64, period: u64| n.is_multiple_of(period.max(1));

        for step in first_step..s.steps {
            let n = step + 1;
            let is_last = n == s.steps;
            let batch = match train.batch(step) {
                Ok(batch) => batch,
                Err(e) => {
                    // The steps before it are good: keep them.
                    shown.take(train.flush()?)?;
                    if step > first_step {
                        saver.save(step, &train)?;
                    }
                    shown.finish();
                    return Err(unreadable(e, step, &out));
                }
            };
            let rows = train.run(step, &batch, s.lr_at(n), is_last)?;
            if let Err(e) = shown.take(rows) {
                return Err(last_good(e, &mut train, &saver, first_step, &out));
            }
            shown.show(n);
            let stopped = agreed_stop(&stop, ranks, n, &out).filter(|_| !is_last);
            let validating =
                stopped.is_none() && val_net.is_some() && (is_last || every(n, s.val_every));
            let saving = is_last || every(n, s.checkpoint_every) || stopped.is_some();
            if !(validating || saving) {
                continue;
            }
            let rows = train.flush()?;
            if let Err(e) = shown.take(rows) {
                return Err(last_good(e, &mut train, &saver, first_step, &out));
            }
            let pause = Instant::now();
            if let Some(vn) = val_net.as_ref().filter(|_| validating) {
                let v = validate(gpu, vn, data, &val_indices, workers)?;
                shown.log.line(&serde_json::json!({
                    "step": n,
                    "val_recon_mse": v.mse,
                    "val_perplexity": v.perplexity(),
                    "val_codes_used": v.codes_used(),
                }))?;
                last_val = Some(v);
            }
            if saving {
                saver.save(n, &train)?;
                shown.saved = Some(n);
                if let Some(v) = &last_val {
                    images::save_code_usage(&usage_png, &v.counts)?;
                }
                if lead {
                    plot::training_curves(&out.join(METRICS_FILE), &out.join(METRICS_PNG))?;
                }
            }
            shown.aside += pause.elapsed();
            if let Some(e) = stopped {
                shown.finish();
                return Err(e);
            }
        }
        shown.finish();
        let seconds = shown.seconds().max(1e-9);
        let steps_run = s.steps.saturating_sub(first_step);
        if steps_run == 0 {
            saver.save(first_step.max(s.steps), &train)?;
            if lead {
                plot::training_curves(&out.join(METRICS_FILE), &out.join(METRICS_PNG))?;
            }
            if let Some(vn) = &val_net {
                let v = validate(gpu, vn, data, &val_indices, workers)?;
                images::save_code_usage(&usage_png, &v.counts)?;
                last_val = Some(v);
            }
        }
        let pictured: Vec<usize> = if val > 0 {
            val_indices.iter().copied().take(8).collect()
        } else {
            (0..train_len.min(8)).collect()
        };
        if lead {
            save_reconstructions(
                gpu,
                val_net.as_ref().unwrap_or(&train.net),
                data,
                &pictured,
                &out.join("reconstructions.png"),
            )?;
        }
        Ok(Summary {
            step: s.steps.max(first_step),
            last: shown.last,
            val_mse: last_val.as_ref().map(|v| v.mse),
            val_perplexity: last_val.as_ref().map(Validation::perplexity),
            val_codes_used: last_val.as_ref().map(Validation::codes_used),
            images_per_sec: steps_run as f64 * s.batch_size as f64 / seconds,
            conv_gflops: steps_run as f64 * train.net.train_flops / seconds / 1e9,
            gpu_bytes,
            param_bytes: params.flat_values().bytes(),
            optimizer_bytes: train
                .update
                .moments()
                .map_or(0, |(m, v)| m.bytes() + v.bytes()),
            sum_seconds_per_step: train.sum_seconds / steps_run.max(1) as f64,
        })
    }
}

/// Puts the starting weights (and a resumed run's state) in place; returns the first
/// step to run.
fn begin(
    gpu: &Gpu,
    start: &Start,
    params: &Params,
    train: &mut TrainStep,
    data: &Dataset,
    s: &Settings,
) -> Result<u64> {
    match start {
        Start::Fresh => {
            params.upload(
                gpu,
                &params.join(&fresh_values(params, s.seed), "initialisation")?,
            )?;
            // Every rank encodes the global batches, slice by slice, as one process does.
            let (net, order) = (&train.net, &mut train.order);
            match s.codebook_init {
                CodebookInit::Data => {
                    let first = slices(order, 1, s.batch_size, net);
                    init_codebook_from_data(gpu, net, params, &first, data, s.seed)?;
                }
                CodebookInit::Kmeans => {
                    let batches = s
                        .kmeans_batches
                        .unwrap_or(kmeans_batches(net, s.batch_size));
                    let images = slices(order, batches, s.batch_size, net);
                    let (iters, seed) = (s.kmeans_iters, s.seed);
                    init_codebook_kmeans(gpu, (net, params), &images, data, iters, seed)?;
                }
                CodebookInit::Uniform => {}
            }
            for e in &train.ema {
                e.start_from_codebook(gpu, params)?;
            }
            Ok(0)
        }
        Start::Init(model) => {
            params.upload(gpu, &params.join(&model.values(), "--init")?)?;
            // A model file holds no EMA statistics (DESIGN.md section 2).
            for e in &train.ema {
                e.start_from_codebook(gpu, params)?;
            }
            Ok(0)
        }
        Start::Resume { model, state } => {
            params.upload(gpu, &params.join(&model.values(), "--resume")?)?;
            restore(gpu, state, params, train)
        }
    }
}

/// The stop asked for after `step` steps: on every rank alike when any rank was asked
/// (mpirun forwards a signal to them all, but not at the same instant), SIGTERM first.
fn agreed_stop(stop: &Stop, ranks: &dyn Ranks, step: u64, out: &Path) -> Option<Error> {
    if ranks.size() == 1 {
        return stop.stopped(step, out);
    }
    let asked = stop.requested();
    let signal = [Signal::Terminate, Signal::Interrupt]
        .into_iter()
        .find(|&signal| ranks.any(asked == Some(signal)))?;
    Some(Error::Stopped {
        signal,
        step,
        out: out.to_path_buf(),
    })
}

/// A loss that stopped being finite: the guard stopped every update from that step on,
/// so the state on the GPU is the last good step's. Saves it (when it is newer than the
/// run's start) and says so.
fn last_good(e: Error, train: &mut TrainStep, saver: &Saver, first_step: u64, out: &Path) -> Error {
    let Error::NonFinite { step, value, .. } = e else {
        return e;
    };
    if !train.guarded {
        return e;
    }
    let good = step - 1;
    let saved = train.flush().and_then(|_| {
        if good > first_step {
            saver.save(good, train)
        } else {
            Ok(())
        }
    });
    let kept = match (saved, good) {
        (Err(e), _) => format!("Saving the last good step failed: {e}"),
        (Ok(()), 0) => "No step had a finite loss; nothing was saved.".into(),
        (Ok(()), g) => format!(
            "No update ran from it on: the checkpoint of step {g}, the last good one, is in {}.",
            out.display()
        ),
    };
    Error::NonFinite { step, value, kept }
}

/// An image that a batch could not read, with what was kept of the run: the checkpoint
/// of the `done` steps before it, in `out`.
fn unreadable(e: Error, done: u64, out: &Path) -> Error {
    let kept = match done {
        0 => "training stopped before its first step".to_string(),
        n => format!(
            "training stopped; the checkpoint of step {n}, the last good one, is in {}",
            out.display()
        ),
    };
    match e {
        Error::Data { path, message } => Error::Data {
            path,
            message: format!("{message}; {kept}"),
        },
        Error::Io(e) => Error::Data {
            path: e.path,
            message: format!("{}: {}; {kept}", e.action, e.source),
        },
        other => other,
    }
}

/// A graph that does not fit the device at `batch` images: a usage error that says so,
/// with the largest batch that fits a limit the work grows with.
fn batch_error(e: Error, batch: usize) -> Error {
    let fits = match &e {
        Error::Limit { needed, limit, .. } => {
            match (batch as u64).saturating_mul(*limit) / needed.max(&1) {
                0 => ": not even one image fits; use a smaller --image-size".to_string(),
                n => format!("; at most --batch-size {n} fits this limit"),
            }
        }
        Error::Gpu { .. } => String::new(),
        _ => return e,
    };
    Error::Usage(format!(
        "--batch-size {batch} is too large for this device: {e}{fits}"
    ))
}
