//! The training loop: one command buffer and one submit per step, metrics read back
//! without stalls, validation on held-out images, atomic checkpoints, and resuming that
//! ends bit for bit where an uninterrupted run would.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint::{MODEL_FILE, STATE_FILE, TensorFile};
use crate::data::Dataset;
use crate::error::{Error, Result, io};
use crate::gpu::Gpu;
use crate::images;
use crate::kernels::optim::{Adam, AdamConfig, sgd};
use crate::kernels::restart::Restart;
use crate::launch::Launch;
use crate::metrics::{MetricsRing, StepMetrics};
use crate::model::Config;
use crate::network::Vqvae;
use crate::params::Params;
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};

/// The optimizer.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.Adam` (beta1 0.9, beta2 0.999, eps 1e-8).
    Adam,
    /// Plain SGD: every step changes each parameter by exactly `-lr * gradient`.
    Sgd,
}

/// How the codebook starts.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum CodebookInit {
    /// Encoder outputs of the first batch (avoids early codebook collapse).
    Data,
    /// Uniform in ±1/K, as PyTorch ports usually do.
    Uniform,
}

/// Everything that decides what a run computes, saved with its checkpoints.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Images per step.
    pub batch_size: usize,
    /// Steps to train in all (a resumed run continues up to this).
    pub steps: u64,
    /// Learning rate.
    pub lr: f64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Seed of the initialisation, the codebook's data init and the data order.
    pub seed: u64,
    /// Shuffle the training images each epoch (else batch i holds images i*B..(i+1)*B).
    pub shuffle: bool,
    /// Images held out from the end of the data for validation.
    pub val_images: usize,
    /// How the codebook starts.
    pub codebook_init: CodebookInit,
    /// Steps per metrics read-back (and progress update).
    pub log_every: u64,
    /// Steps between checkpoints (the last step always writes one).
    pub checkpoint_every: u64,
    /// Steps between validations (the last step always validates).
    pub val_every: u64,
    /// The data's path (`None`: the built-in images).
    pub data: Option<String>,
    /// The `--image-size` the data was loaded with.
    pub image_size: Option<usize>,
    /// Restart codes unused over this many steps on encoder outputs (0: never).
    pub codebook_restart: u64,
}

/// Where a run's weights come from.
pub enum Start {
    /// PyTorch-style initialisation.
    Fresh,
    /// Exactly these weights (a model checkpoint), codebook included.
    Init(TensorFile),
    /// A stopped run: its model and its training state.
    Resume {
        /// The model checkpoint.
        model: TensorFile,
        /// Optimizer moments and step.
        state: TensorFile,
    },
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The step reached.
    pub step: u64,
    /// The last step's metrics.
    pub last: Option<StepMetrics>,
    /// Reconstruction MSE on the held-out images at the end.
    pub val_mse: Option<f64>,
    /// Training images per second over this run's steps.
    pub images_per_sec: f64,
    /// Convolution GFLOP/s of the whole training step (all kernels' time counted).
    pub conv_gflops: f64,
    /// Bytes of GPU buffers the run allocated.
    pub gpu_bytes: u64,
    /// Bytes of parameters (and likewise of gradients).
    pub param_bytes: u64,
    /// Bytes of optimizer state (Adam's moments).
    pub optimizer_bytes: u64,
}

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
}

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

/// Reconstruction MSE of images `indices` through `net`.
fn validate(gpu: &Gpu, net: &Vqvae, data: &Dataset, indices: &[usize]) -> Result<f64> {
    let outs = run_batches(
        gpu,
        net,
        data,
        indices,
        &[net.encode(), net.decode()],
        &net.x_hat,
    )?;
    let mut sse = 0.0;
    for (&i, out) in indices.iter().zip(&outs) {
        for (p, x) in images::to_input(data.image(i)).zip(as_f32(out)) {
            sse += f64::from(x - p).powi(2);
        }
    }
    Ok(sse / (indices.len() * data.image_len()) as f64)
}

/// Parameter values for a fresh run: PyTorch-style, from the seed.
pub(crate) fn fresh_values(params: &Params, seed: u64) -> HashMap<String, Vec<f32>> {
    let mut rng = Rng::for_purpose(seed, 0x1417);
    params
        .specs()
        .iter()
        .map(|s| (s.name.clone(), s.initial(&mut rng)))
        .collect()
}

/// Replaces the codebook by K encoder outputs of the first batch, chosen by the seed;
/// with fewer outputs than codes, the outputs repeat with a little noise.
fn init_codebook_from_data(
    gpu: &Gpu,
    net: &Vqvae,
    params: &Params,
    first: &[usize],
    data: &Dataset,
    seed: u64,
) -> Result<()> {
    upload_batch(gpu, &net.x, data, first)?;
    gpu.run(&[net.encode()])?;
    let z = net.z_e.to_f32(gpu)?;
    let [b, d, h, w] = [
        net.z_e.shape()[0],
        net.z_e.shape()[1],
        net.z_e.shape()[2],
        net.z_e.shape()[3],
    ];
    let plane = h * w;
    let rows = b * plane;
    let z = &z;
    let row = |r: usize| (0..d).map(move |c| z[(r / plane) * d * plane + c * plane + r % plane]);
    let mut rng = Rng::for_purpose(seed, 0xc0de);
    let order = rng.permutation(rows);
    let k = net.config.codes;
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
    params
        .value("codebook.weight")
        .write(gpu, bytemuck::cast_slice(&codebook))
}

/// The update step bound to the flat parameters.
#[allow(clippy::large_enum_variant)] // one per run
enum Update {
    Adam { adam: Adam, m: Tensor, v: Tensor },
    Sgd(Launch),
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
            OptimizerKind::Sgd => Update::Sgd(sgd(gpu, flat, grads, s.lr as f32)?),
        })
    }

    /// Adam's moments, laid out like the parameters.
    fn moments(&self) -> Option<(&Tensor, &Tensor)> {
        match self {
            Update::Adam { m, v, .. } => Some((m, v)),
            Update::Sgd(_) => None,
        }
    }

    fn launch(&self) -> &Launch {
        match self {
            Update::Adam { adam, .. } => adam.launch(),
            Update::Sgd(l) => l,
        }
    }
}

/// Restores a stopped run's optimizer moments and code usage; returns its step.
fn restore(
    gpu: &Gpu,
    state: &TensorFile,
    params: &Params,
    update: &Update,
    window: &Tensor,
) -> Result<u64> {
    if let Some((_, usage)) = state.tensors.get(WINDOW_TENSOR) {
        let counts: Vec<u32> = usage.iter().map(|&c| c as u32).collect();
        window.write(gpu, bytemuck::cast_slice(&counts))?;
    }
    if let Some((m, v)) = update.moments() {
        let values = state.values();
        for (tensor, prefix) in [(m, "exp_avg."), (v, "exp_avg_sq.")] {
            params.upload_named(gpu, tensor, &values, prefix, "training state")?;
        }
    }
    Ok(state
        .metadata
        .get("step")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Model metadata stored in the checkpoint (strings, as safetensors requires).
fn model_metadata(config: &Config, step: u64, [h, w]: [usize; 2]) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), "vqvae-wgpu".to_string()),
        ("beta".to_string(), config.beta.to_string()),
        ("step".to_string(), step.to_string()),
        (IMAGE_SIZE_KEY.to_string(), format!("{h}x{w}")),
    ])
}

/// The model checkpoint's metadata key for the image size it was trained at (`HxW`).
pub const IMAGE_SIZE_KEY: &str = "image_size";

struct Writer<'a> {
    gpu: &'a Gpu,
    params: &'a Params,
    config: &'a Config,
    settings: &'a Settings,
    out: &'a Path,
    update: &'a Update,
    window: &'a Tensor,
    image: [usize; 2],
}

/// The training-state tensor holding code usage since the last restart.
const WINDOW_TENSOR: &str = "codebook_usage";

impl Writer<'_> {
    fn save(&self, step: u64) -> Result<()> {
        let named =
            |flat: &Tensor, prefix: &str| self.params.download_named(self.gpu, flat, prefix);
        let mut state = TensorFile {
            tensors: HashMap::new(),
            metadata: HashMap::from([
                ("step".to_string(), step.to_string()),
                (
                    "settings".to_string(),
                    serde_json::to_string(self.settings).expect("settings serialise"),
                ),
            ]),
        };
        let usage = self
            .window
            .to_u32(self.gpu)?
            .into_iter()
            .map(|c| c as f32)
            .collect();
        state
            .tensors
            .insert(WINDOW_TENSOR.to_string(), (vec![self.config.codes], usage));
        if let Some((m, v)) = self.update.moments() {
            state.tensors.extend(named(m, "exp_avg.")?);
            state.tensors.extend(named(v, "exp_avg_sq.")?);
        }
        let model = TensorFile {
            tensors: named(self.params.flat_values(), "")?,
            metadata: model_metadata(self.config, step, self.image),
        };
        model.write(&self.out.join(MODEL_FILE))?;
        state.write(&self.out.join(STATE_FILE))
    }
}

/// Appends JSON lines to the metrics log.
pub(crate) struct Log {
    file: std::fs::File,
    path: PathBuf,
}

impl Log {
    /// Opens `path`; a resumed run keeps the lines up to its step and drops the rest.
    pub fn open(path: PathBuf, keep_until: Option<u64>) -> Result<Log> {
        let kept = match keep_until {
            Some(step) => std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect(),
            None => String::new(),
        };
        std::fs::write(&path, kept).map_err(io("writing", &path))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io("writing", &path))?;
        Ok(Log { file, path })
    }

    pub fn line(&mut self, value: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}").map_err(io("writing", &self.path))
    }
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
        } = self;
        if s.batch_size == 0 {
            return Err(Error::Usage("--batch-size 0: must be at least 1".into()));
        }
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
        let net = Vqvae::new(gpu, &params, &config, s.batch_size, size, true)
            .map_err(|e| batch_error(e, s.batch_size))?;
        let val_net = match val {
            0 => None,
            v => Some(Vqvae::new(
                gpu,
                &params,
                &config,
                v.min(s.batch_size),
                size,
                false,
            )?),
        };
        let update = Update::new(gpu, &params, &s)?;
        let window = Tensor::zeros(gpu, &[config.codes], DType::U32)?;
        let restart = if s.codebook_restart > 0 {
            let codebook = params.value("codebook.weight");
            let moments = match update.moments() {
                Some((m, v)) => Some((
                    params.view(gpu, m, "codebook.weight")?,
                    params.view(gpu, v, "codebook.weight")?,
                )),
                None => None,
            };
            let counts = net.counts.as_ref().expect("training graph");
            Some(Restart::new(
                gpu,
                codebook,
                counts,
                &window,
                &net.z_e,
                moments.as_ref().map(|(m, v)| (m, v)),
                s.seed,
            )?)
        } else {
            None
        };
        let mut order = Order {
            seed: s.seed,
            shuffle: s.shuffle,
            len: train_len,
            epoch: None,
        };

        let mut first_step = 0;
        match &start {
            Start::Fresh => {
                params.upload(
                    gpu,
                    &params.join(&fresh_values(&params, s.seed), "initialisation")?,
                )?;
                if s.codebook_init == CodebookInit::Data {
                    init_codebook_from_data(
                        gpu,
                        &net,
                        &params,
                        &order.batch(0, s.batch_size),
                        data,
                        s.seed,
                    )?;
                }
            }
            Start::Init(model) => params.upload(gpu, &params.join(&model.values(), "--init")?)?,
            Start::Resume { model, state } => {
                params.upload(gpu, &params.join(&model.values(), "--resume")?)?;
                first_step = restore(gpu, state, &params, &update, &window)?;
            }
        }
        let gpu_bytes = gpu.allocated_bytes() - bytes_before;
        let writer = Writer {
            gpu,
            params: &params,
            config: &config,
            settings: &s,
            out: &out,
            update: &update,
            window: &window,
            image: size,
        };
        let mut log = Log::open(
            out.join("metrics.jsonl"),
            matches!(start, Start::Resume { .. }).then_some(first_step),
        )?;
        let val_indices: Vec<usize> = (train_len..data.len).collect();

        let bar = progress_bar(progress, first_step, s.steps);
        let mut ring = MetricsRing::new(gpu, s.log_every.max(1) as usize);
        let mut in_flight = std::collections::VecDeque::new();
        let mut last = None;
        let mut saved: Option<u64> = None;
        let mut val_mse = None;
        let started = Instant::now();
        // Time spent validating and saving, left out of images/s.
        let mut aside = std::time::Duration::ZERO;
        let train = net.loss_and_backward().expect("a training graph");
        let handle = |rows: Vec<StepMetrics>,
                      log: &mut Log,
                      last: &mut Option<StepMetrics>,
                      saved: Option<u64>|
         -> Result<()> {
            for r in rows {
                if !r.loss.is_finite() {
                    let kept = match saved {
                        Some(step) => format!(
                            "The last good checkpoint (step {step}) is {}.",
                            out.join(MODEL_FILE).display()
                        ),
                        None => "No checkpoint had been written yet.".to_string(),
                    };
                    return Err(Error::NonFinite {
                        step: r.step,
                        value: r.loss,
                        kept,
                    });
                }
                log.line(&serde_json::to_value(r).expect("metrics serialise"))?;
                *last = Some(r);
            }
            Ok(())
        };

        for step in first_step..s.steps {
            upload_batch(gpu, &net.x, data, &order.batch(step, s.batch_size))?;
            if let Update::Adam { adam, .. } = &update {
                adam.set_step(gpu, step + 1);
            }
            let mut encoder =
                gpu.device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("train step"),
                    });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                for l in [net.encode(), net.decode(), train, update.launch()] {
                    l.record(&mut pass);
                }
                if let Some(r) = &restart {
                    r.accumulate().record(&mut pass);
                    if (step + 1) % s.codebook_restart == 0 {
                        r.restart(gpu, step + 1).record(&mut pass);
                    }
                }
            }
            let is_last = step + 1 == s.steps;
            let (terms, usage) = (
                net.terms.as_ref().expect("training graph"),
                net.usage.as_ref().expect("training graph"),
            );
            let freed = ring.record(gpu, &mut encoder, step, terms, usage, is_last)?;
            let index = gpu.scoped("submitting a training step", || {
                gpu.queue().submit([encoder.finish()])
            })?;
            ring.submitted();
            in_flight.push_back(index);
            if in_flight.len() > 2 {
                gpu.wait(in_flight.pop_front(), "training")?;
            }
            let mut rows = freed;
            rows.extend(ring.poll(gpu)?);
            handle(rows, &mut log, &mut last, saved)?;
            bar.set_position(step + 1);
            if let Some(r) = &last {
                let done = (step + 1 - first_step) as f64 * s.batch_size as f64;
                bar.set_message(format!(
                    "loss {:.4} recon {:.4} perplexity {:.1} codes {}/{} {:.0} img/s",
                    r.loss,
                    r.recon,
                    r.perplexity,
                    r.codes_used,
                    config.codes,
                    done / (started.elapsed() - aside).as_secs_f64()
                ));
            }
            let n = step + 1;
            if is_last || n % s.checkpoint_every.max(1) == 0 || n % s.val_every.max(1) == 0 {
                let rows = ring.flush(gpu)?;
                handle(rows, &mut log, &mut last, saved)?;
            }
            let pause = Instant::now();
            if let Some(vn) = &val_net
                && (is_last || n % s.val_every.max(1) == 0)
            {
                let mse = validate(gpu, vn, data, &val_indices)?;
                log.line(&serde_json::json!({ "step": n, "val_recon_mse": mse }))?;
                val_mse = Some(mse);
            }
            if is_last || n % s.checkpoint_every.max(1) == 0 {
                writer.save(n)?;
                saved = Some(n);
            }
            aside += pause.elapsed();
        }
        bar.finish_and_clear();
        let seconds = (started.elapsed() - aside).as_secs_f64();
        let steps_run = s.steps.saturating_sub(first_step);
        if steps_run == 0 {
            writer.save(first_step.max(s.steps))?;
        }
        let shown: Vec<usize> = if val > 0 {
            val_indices.iter().copied().take(8).collect()
        } else {
            (0..train_len.min(8)).collect()
        };
        let recon_net = val_net.as_ref().unwrap_or(&net);
        save_reconstructions(
            gpu,
            recon_net,
            data,
            &shown,
            &out.join("reconstructions.png"),
        )?;
        Ok(Summary {
            step: s.steps.max(first_step),
            last,
            val_mse,
            images_per_sec: steps_run as f64 * s.batch_size as f64 / seconds.max(1e-9),
            conv_gflops: steps_run as f64 * net.train_flops / seconds.max(1e-9) / 1e9,
            gpu_bytes,
            param_bytes: params.flat_values().bytes(),
            optimizer_bytes: update.moments().map_or(0, |(m, v)| m.bytes() + v.bytes()),
        })
    }
}

fn batch_error(e: Error, batch: usize) -> Error {
    match e {
        Error::Limit { .. } | Error::Gpu { .. } => Error::Usage(format!(
            "--batch-size {batch} is too large for this device: {e}"
        )),
        other => other,
    }
}

pub(crate) fn progress_bar(show: bool, position: u64, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] step {pos}/{len} {msg} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(position);
    bar
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
