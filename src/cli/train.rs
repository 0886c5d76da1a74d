//! `vqvae train`: flags, checks against a checkpoint or a resumed run, and the run.

use std::path::{Path, PathBuf};

use clap::Args;
use vqvae_wgpu::checkpoint::{MODEL_FILE, STATE_FILE, TensorFile, check_pair};
use vqvae_wgpu::data::{Dataset, LoadOptions, default_workers};
use vqvae_wgpu::error::{Error, Result};
use vqvae_wgpu::gpu::{self, Gpu};
use vqvae_wgpu::kernels::check_tuning;
use vqvae_wgpu::launch::Tuning;
use vqvae_wgpu::model::{Config, QuantizerKind};
use vqvae_wgpu::plot::METRICS_PNG;
use vqvae_wgpu::ranks::{Ranks, differs};
use vqvae_wgpu::stop::Stop;
use vqvae_wgpu::train::{
    CodebookInit, CodebookUpdate, DEFAULT_EMA_DECAY, DEFAULT_EMA_EPS, DEFAULT_KMEANS_ITERS,
    LrSchedule, METRICS_FILE, OptimizerKind, Run, Settings, Start, USAGE_FILE, saved_tuning,
};
use vqvae_wgpu::tune::Target;

use super::common::{AdapterArgs, DataArgs, load_model, open_gpu_with};
use super::tune::tuned;

#[derive(Args)]
pub(crate) struct ModelArgs {
    /// Image channels C (1 or 3); default: the data's.
    #[arg(long)]
    pub(crate) channels: Option<usize>,
    /// Hidden channels H [default: 128].
    #[arg(long)]
    pub(crate) hidden: Option<usize>,
    /// Residual hidden channels R [default: 32].
    #[arg(long)]
    pub(crate) res_hidden: Option<usize>,
    /// Residual blocks L [default: 2].
    #[arg(long)]
    pub(crate) res_layers: Option<usize>,
    /// Codebook size K [default: 512].
    #[arg(long)]
    pub(crate) codes: Option<usize>,
    /// Code dimension D [default: 64].
    #[arg(long)]
    pub(crate) code_dim: Option<usize>,
    /// Commitment weight beta [default: 0.25].
    #[arg(long)]
    pub(crate) beta: Option<f32>,
    /// The quantiser [default: vq]: one codebook; `rvq`, --stages codebooks each
    /// quantising what the ones before left; `fsq`, fixed --fsq-levels with no codebook.
    #[arg(long, value_enum)]
    pub(crate) quantizer: Option<QuantizerArg>,
    /// Residual VQ's stages S, each a codebook of --codes codes [default: 2].
    #[arg(long)]
    pub(crate) stages: Option<usize>,
    /// FSQ's levels per code dimension, e.g. 8,5,5,5 (their product is the number of
    /// codes, their count the code dimension) [default: 8,5,5,5].
    #[arg(long)]
    pub(crate) fsq_levels: Option<String>,
}

/// `--quantizer`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum QuantizerArg {
    Vq,
    Rvq,
    Fsq,
}

impl QuantizerArg {
    fn of(kind: &QuantizerKind) -> QuantizerArg {
        match kind {
            QuantizerKind::Vq => QuantizerArg::Vq,
            QuantizerKind::Rvq { .. } => QuantizerArg::Rvq,
            QuantizerKind::Fsq(_) => QuantizerArg::Fsq,
        }
    }
}

impl ModelArgs {
    /// The quantiser these flags ask for.
    fn quantizer(&self) -> Result<QuantizerKind> {
        let arg = self.quantizer.unwrap_or(QuantizerArg::Vq);
        let misplaced = |flag: &str, wants: &str| {
            Err(Error::Usage(format!(
                "{flag} is for --quantizer {wants}, not {}",
                format!("{arg:?}").to_lowercase()
            )))
        };
        if self.stages.is_some() && arg != QuantizerArg::Rvq {
            return misplaced("--stages", "rvq");
        }
        if self.fsq_levels.is_some() && arg != QuantizerArg::Fsq {
            return misplaced("--fsq-levels", "fsq");
        }
        Ok(match arg {
            QuantizerArg::Vq => QuantizerKind::Vq,
            QuantizerArg::Rvq => QuantizerKind::Rvq {
                stages: self.stages.unwrap_or(2),
            },
            QuantizerArg::Fsq => {
                QuantizerKind::Fsq(self.fsq_levels.as_deref().unwrap_or("8,5,5,5").parse()?)
            }
        })
    }

    /// The model these flags ask for on data of `channels`, the reference elsewhere.
    pub(crate) fn config(&self, channels: usize) -> Result<Config> {
        let r = Config::reference(channels);
        let quantizer = self.quantizer()?;
        // FSQ's levels fix K and D; --codes and --code-dim may only repeat them.
        let (codes, code_dim) = match quantizer {
            QuantizerKind::Fsq(levels) => (levels.codes() as usize, levels.as_slice().len()),
            _ => (r.codes, r.code_dim),
        };
        let config = Config {
            channels,
            hidden: self.hidden.unwrap_or(r.hidden),
            res_hidden: self.res_hidden.unwrap_or(r.res_hidden),
            res_layers: self.res_layers.unwrap_or(r.res_layers),
            codes: self.codes.unwrap_or(codes),
            code_dim: self.code_dim.unwrap_or(code_dim),
            beta: self.beta.unwrap_or(r.beta),
            quantizer,
        };
        config.validate()?;
        Ok(config)
    }
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[command(flatten)]
    pub(crate) adapter: AdapterArgs,
    /// Images per step [default: 32].
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Steps to train in all [default: 1000]; a resumed run continues up to this.
    #[arg(long)]
    pub(crate) steps: Option<u64>,
    /// Learning rate [default: 2e-4].
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Optimizer [default: adam].
    #[arg(long, value_enum)]
    pub(crate) optimizer: Option<OptimizerKind>,
    /// Seed of initialisation and data order [default: 0].
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Keep the data order: batch i holds images i*B..(i+1)*B.
    #[arg(long)]
    pub(crate) no_shuffle: bool,
    /// Images held out from the end of the data for validation [default: 5%, at most 1000].
    #[arg(long)]
    pub(crate) val_images: Option<usize>,
    /// How the codebook starts [default: uniform, the winner of docs/codebook-sweep-builtin.md].
    /// `data`: encoder outputs of the first batch; `kmeans`: their k-means.
    #[arg(long, value_enum)]
    pub(crate) codebook_init: Option<CodebookInit>,
    /// Restart codes unused over this many steps on encoder outputs [default: 25 with
    /// Adam; 0 turns it off; SGD never restarts].
    #[arg(long)]
    pub(crate) codebook_restart: Option<u64>,
    /// Lloyd iterations of --codebook-init kmeans [default: 10].
    #[arg(long)]
    pub(crate) kmeans_iters: Option<usize>,
    /// Batches whose encoder outputs --codebook-init kmeans clusters [default: enough for
    /// about 20 per code].
    #[arg(long)]
    pub(crate) kmeans_batches: Option<usize>,
    /// How the codebook learns: by its gradient, or by exponential moving averages of
    /// the encoder outputs assigned to each code (Sonnet's VectorQuantizerEMA) [default:
    /// ema with Adam, the measured winner on Fashion-MNIST; gradient with SGD].
    #[arg(long, value_enum)]
    pub(crate) codebook_update: Option<CodebookUpdate>,
    /// The EMA's decay, in [0, 1) [default: 0.99].
    #[arg(long)]
    pub(crate) ema_decay: Option<f64>,
    /// The EMA's Laplace smoothing of the counts, > 0 [default: 1e-5].
    #[arg(long)]
    pub(crate) ema_eps: Option<f64>,
    /// How the learning rate moves after the warmup [default: constant]. `cosine`: half a
    /// cosine down to a tenth of --lr at the run's --steps.
    #[arg(long, value_enum)]
    pub(crate) lr_schedule: Option<LrSchedule>,
    /// Steps of linear warmup from 0 to --lr [default: 0].
    #[arg(long)]
    pub(crate) warmup_steps: Option<u64>,
    /// Mirror each training image left to right with probability 1/2 (seeded).
    #[arg(long)]
    pub(crate) hflip: bool,
    /// Quantize dropout (SoundStream) for --quantizer rvq: each step keeps only its first
    /// n stages, n uniform from 1 to --stages (seeded), so that fewer stages decode too.
    /// Needs the EMA codebook.
    #[arg(long)]
    pub(crate) quantize_dropout: bool,
    /// Threads that decode images ahead of the GPU [default: the cores less one, at
    /// least 1]; the results do not depend on it.
    #[arg(long)]
    pub(crate) workers: Option<usize>,
    /// Steps between metric read-backs [default: 10].
    #[arg(long)]
    pub(crate) log_every: Option<u64>,
    /// Steps between checkpoints [default: 500].
    #[arg(long)]
    pub(crate) checkpoint_every: Option<u64>,
    /// Steps between validations [default: 500].
    #[arg(long)]
    pub(crate) val_every: Option<u64>,
    /// Start from exactly these weights (codebook included).
    #[arg(long, conflicts_with = "resume")]
    pub(crate) init: Option<PathBuf>,
    /// Continue the run saved in this folder.
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Use the adapter's default kernel tuning rather than the cached one, and never
    /// time kernels before the first step.
    #[arg(long)]
    pub(crate) no_tune: bool,
}

/// Errors when a model flag contradicts the checkpoint's architecture.
pub(crate) fn check_flags(m: &ModelArgs, c: &Config, path: &Path) -> Result<()> {
    let pairs = [
        ("--channels", m.channels, c.channels),
        ("--hidden", m.hidden, c.hidden),
        (
            "--res-hidden",
            m.res_hidden.filter(|_| c.res_layers > 0),
            c.res_hidden,
        ),
        ("--res-layers", m.res_layers, c.res_layers),
        ("--codes", m.codes, c.codes),
        ("--code-dim", m.code_dim, c.code_dim),
    ];
    for (flag, given, have) in pairs {
        if let Some(g) = given
            && g != have
        {
            return Err(Error::Usage(format!(
                "{flag} {g} contradicts {}, whose model has {have}",
                path.display()
            )));
        }
    }
    let contradicts = m
        .quantizer
        .is_some_and(|q| q != QuantizerArg::of(&c.quantizer))
        || m.stages
            .is_some_and(|s| c.quantizer != QuantizerKind::Rvq { stages: s })
        || m.fsq_levels
            .as_deref()
            .is_some_and(|l| l.parse().ok().map(QuantizerKind::Fsq) != Some(c.quantizer));
    if contradicts {
        return Err(Error::Usage(format!(
            "the quantizer flags contradict {}, whose model has quantizer {}",
            path.display(),
            describe_quantizer(&c.quantizer)
        )));
    }
    if let Some(b) = m.beta
        && b != c.beta
    {
        return Err(Error::Usage(format!(
            "--beta {b} contradicts {}, trained with beta {}",
            path.display(),
            c.beta
        )));
    }
    Ok(())
}

/// A quantiser as its flags would give it.
fn describe_quantizer(q: &QuantizerKind) -> String {
    match q {
        QuantizerKind::Vq => "vq".into(),
        QuantizerKind::Rvq { stages } => format!("rvq --stages {stages}"),
        QuantizerKind::Fsq(levels) => format!("fsq --fsq-levels {levels}"),
    }
}

/// Errors on a codebook flag, which FSQ (no codebook) cannot use.
fn no_codebook_flags(a: &TrainArgs) -> Result<()> {
    let codebook_flags = [
        ("--codebook-update", a.codebook_update.is_some()),
        ("--codebook-init", a.codebook_init.is_some()),
        (
            "--codebook-restart",
            a.codebook_restart.is_some_and(|r| r > 0),
        ),
        ("--ema-decay", a.ema_decay.is_some()),
        ("--ema-eps", a.ema_eps.is_some()),
        ("--kmeans-iters", a.kmeans_iters.is_some()),
        ("--kmeans-batches", a.kmeans_batches.is_some()),
    ];
    if let Some((flag, _)) = codebook_flags.iter().find(|(_, given)| *given) {
        return Err(Error::Usage(format!(
            "{flag}: --quantizer fsq has no codebook to update, initialise or restart (its levels are fixed)"
        )));
    }
    Ok(())
}

pub(crate) fn train_command(a: TrainArgs, ranks: &dyn Ranks) -> Result<()> {
    let workers = a.workers.unwrap_or_else(default_workers);
    if workers == 0 {
        return Err(Error::Usage("--workers 0: must be at least 1".into()));
    }
    // A resumed run's saved tuning (None: saved before tunings were), and its file.
    let mut resumed_tuning: Option<(Option<Tuning>, PathBuf)> = None;
    // What the checkpoint fixes, if there is one.
    let (start, fixed, saved): (Start, Option<Config>, Option<Settings>) =
        match (&a.resume, &a.init) {
            (Some(dir), _) => {
                let (model, config) = load_model(&dir.join(MODEL_FILE))?;
                let state_path = dir.join(STATE_FILE);
                let state = TensorFile::read(&state_path)?;
                let settings: Settings = state
                    .metadata
                    .get("settings")
                    .and_then(|s| serde_json::from_str(s).ok())
                    .ok_or_else(|| Error::Checkpoint {
                        path: state_path.clone(),
                        message: "no run settings in its metadata".into(),
                    })?;
                check_pair((&model, &dir.join(MODEL_FILE)), (&state, &state_path))?;
                check_flags(&a.model, &config, &dir.join(MODEL_FILE))?;
                resumed_tuning = Some((saved_tuning(&state, &state_path)?, state_path));
                (Start::Resume { model, state }, Some(config), Some(settings))
            }
            (None, Some(path)) => {
                let (model, config) = load_model(path)?;
                check_flags(&a.model, &config, path)?;
                (Start::Init(model), Some(config), None)
            }
            (None, None) => (Start::Fresh, None, None),
        };
    let data_path = a.data.data.clone().or_else(|| {
        saved
            .as_ref()
            .and_then(|s| s.data.clone().map(PathBuf::from))
    });
    let image_size = a
        .data
        .image_size
        .or(saved.as_ref().and_then(|s| s.image_size));
    let channels = fixed.map(|c| c.channels).or(a.model.channels);
    let seed = a.seed.or(saved.as_ref().map(|s| s.seed)).unwrap_or(0);
    let data = Dataset::load(
        data_path.as_deref(),
        &LoadOptions {
            channels,
            image_size,
            seed,
        },
    )?;
    eprintln!(
        "data: {} images of {}x{}x{} from {}",
        data.len, data.channels, data.height, data.width, data.source
    );
    let config = match fixed {
        Some(c) => c,
        None => a.model.config(data.channels)?,
    };
    config.validate()?;
    let fsq = matches!(config.quantizer, QuantizerKind::Fsq(_));
    if fsq {
        no_codebook_flags(&a)?;
    }
    let optimizer = a
        .optimizer
        .or(saved.as_ref().map(|s| s.optimizer))
        .unwrap_or(OptimizerKind::Adam);
    if optimizer == OptimizerKind::Sgd && a.codebook_restart.is_some_and(|r| r > 0) {
        return Err(Error::Usage("--codebook-restart: --optimizer sgd changes parameters by -lr * gradient alone, with no codebook restarts".into()));
    }
    // The measured default (docs/codebook-sweep-*.md) with Adam; SGD's contract leaves
    // the codebook to its gradient.
    let codebook_update = a
        .codebook_update
        .or(saved.as_ref().map(|s| s.codebook_update))
        .unwrap_or(match optimizer {
            OptimizerKind::Adam if !fsq => CodebookUpdate::Ema,
            _ => CodebookUpdate::Gradient,
        });
    if a.quantize_dropout {
        let QuantizerKind::Rvq { stages } = config.quantizer else {
            return Err(Error::Usage(format!(
                "--quantize-dropout drops residual stages: it needs --quantizer rvq, not {}",
                config.quantizer.name()
            )));
        };
        if stages < 2 {
            return Err(Error::Usage(
                "--quantize-dropout: one stage has none to drop; give --stages 2 or more".into(),
            ));
        }
        if codebook_update != CodebookUpdate::Ema {
            return Err(Error::Usage("--quantize-dropout needs --codebook-update ema: a dropped stage's codebook gets no gradient that step, and the optimizer would still move it".into()));
        }
    }
    if optimizer == OptimizerKind::Sgd && codebook_update == CodebookUpdate::Ema {
        return Err(Error::Usage("--codebook-update ema: --optimizer sgd changes every parameter by exactly -lr * gradient, and an EMA moves the codebook otherwise".into()));
    }
    for (flag, value) in [
        ("--kmeans-iters", a.kmeans_iters),
        ("--kmeans-batches", a.kmeans_batches),
    ] {
        if value == Some(0) {
            return Err(Error::Usage(format!("{flag} 0: must be at least 1")));
        }
    }
    let ema_decay = a.ema_decay.unwrap_or(DEFAULT_EMA_DECAY);
    if !(0.0..1.0).contains(&ema_decay) {
        return Err(Error::Usage(format!(
            "--ema-decay {ema_decay}: must be in [0, 1)"
        )));
    }
    let ema_eps = a.ema_eps.unwrap_or(DEFAULT_EMA_EPS);
    if !(ema_eps > 0.0 && ema_eps.is_finite()) {
        return Err(Error::Usage(format!(
            "--ema-eps {ema_eps}: must be a positive number"
        )));
    }
    let steps = a.steps.unwrap_or(1000);
    let wanted = Settings {
        batch_size: a.batch_size.unwrap_or(32),
        steps,
        lr: a.lr.unwrap_or(2e-4),
        optimizer,
        seed,
        shuffle: !a.no_shuffle,
        val_images: a.val_images.unwrap_or((data.len / 20).min(1000)),
        codebook_init: a.codebook_init.unwrap_or(CodebookInit::Uniform),
        log_every: a.log_every.unwrap_or(10),
        checkpoint_every: a.checkpoint_every.unwrap_or(500),
        val_every: a.val_every.unwrap_or(500),
        data: data_path.as_ref().map(|p| p.display().to_string()),
        image_size,
        codebook_restart: a.codebook_restart.unwrap_or(
            if optimizer == OptimizerKind::Adam && !fsq {
                25
            } else {
                0
            },
        ),
        kmeans_iters: a.kmeans_iters.unwrap_or(DEFAULT_KMEANS_ITERS),
        kmeans_batches: a.kmeans_batches,
        codebook_update,
        ema_decay,
        ema_eps,
        lr_schedule: a.lr_schedule.unwrap_or_default(),
        warmup_steps: a.warmup_steps.unwrap_or(0),
        lr_horizon: steps,
        hflip: a.hflip,
        quantize_dropout: a.quantize_dropout,
    };
    let settings = match saved {
        Some(saved) => resumed_settings(&a, saved, wanted)?,
        None => wanted,
    };
    settings.check_schedule()?;
    if settings.lr_schedule == LrSchedule::Cosine && settings.steps > settings.lr_horizon {
        eprintln!(
            "note: the cosine schedule ends at step {}, the --steps of the run that started it; steps {}..{} train at its final rate {:e}",
            settings.lr_horizon,
            settings.lr_horizon + 1,
            settings.steps,
            settings.lr_at(settings.lr_horizon)
        );
    }
    let out = a.out.clone();
    let mut gpu = open_gpu_with(&rank_adapter(&a.adapter, ranks)?)?;
    let target = Target {
        config,
        batch: settings.batch_size / ranks.size(),
        image: [data.height, data.width],
    };
    start_tuning(&mut gpu, resumed_tuning, &target, a.no_tune)?;
    if ranks.size() > 1 {
        // Every rank runs rank 0's kernels, so that every rank computes the same bits.
        let json = serde_json::to_vec(&gpu.tuning()).expect("tuning serialises");
        let tuning: Tuning =
            serde_json::from_slice(&ranks.broadcast(json)).expect("rank 0's tuning reads");
        check_tuning(&gpu, &tuning)?;
        gpu.set_tuning(tuning);
        if differs(ranks, &gpu::describe(gpu.info())) && ranks.rank() == 0 {
            eprintln!(
                "note: the ranks run on different adapters, whose kernels may round differently: rank 0's parameters, optimizer moments and EMA statistics go to every rank after every step"
            );
        }
    }
    let stop = Stop::default();
    stop.listen()?;
    let summary = Run {
        gpu: &gpu,
        data: &data,
        config,
        settings,
        out: out.clone(),
        start,
        progress: !a.quiet,
        stop,
        workers,
        ranks,
    }
    .train()?;
    if ranks.rank() > 0 {
        return Ok(());
    }
    println!("trained to step {}", summary.step);
    if let Some(m) = summary.last {
        println!(
            "last step: loss {:.5}, reconstruction MSE {:.5}, perplexity {:.1}, codes in use {}/{}",
            m.loss,
            m.recon,
            m.perplexity,
            m.codes_used,
            config.symbols()
        );
    }
    if let Some(v) = summary.val_mse {
        println!("held-out reconstruction MSE: {v:.5}");
    }
    if let (Some(p), Some(used)) = (summary.val_perplexity, summary.val_codes_used) {
        println!(
            "held-out codes: perplexity {p:.1}, {used}/{} in use",
            config.symbols()
        );
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    let p = summary.param_bytes;
    let state = summary.optimizer_bytes;
    println!(
        "{:.1} images/s, {:.2} convolution GFLOP/s over whole steps",
        summary.images_per_sec, summary.conv_gflops
    );
    println!(
        "GPU memory: {:.1} MiB = parameters {:.2} + gradients {:.2} + optimizer state {:.2} + activations and scratch {:.1}",
        mib(summary.gpu_bytes),
        mib(p),
        mib(p),
        mib(state),
        mib(summary.gpu_bytes.saturating_sub(2 * p + state))
    );
    if ranks.size() > 1 {
        println!(
            "{} ranks: the sums across them took {:.1} ms a step; each sent and received {:.2} MiB of gradients a step (gathered to rank 0, summed in rank order, broadcast back)",
            ranks.size(),
            summary.sum_seconds_per_step * 1e3,
            mib(p)
        );
    }
    println!("checkpoint:      {}", out.join(MODEL_FILE).display());
    println!(
        "reconstructions: {}",
        out.join("reconstructions.png").display()
    );
    println!("metrics:         {}", out.join(METRICS_FILE).display());
    println!("curves:          {}", out.join(METRICS_PNG).display());
    if summary.val_codes_used.is_some() {
        println!("code usage:      {}", out.join(USAGE_FILE).display());
    }
    Ok(())
}

/// The adapter a rank opens: the one `--adapter` names, or with several ranks and no name,
/// the (local rank mod n)-th of the n hardware adapters `vqvae info` lists (the default
/// adapter when there is none). More ranks than GPUs share them, with a warning.
fn rank_adapter(adapter: &AdapterArgs, ranks: &dyn Ranks) -> Result<AdapterArgs> {
    let mut chosen = AdapterArgs {
        backend: adapter.backend.clone(),
        adapter: adapter.adapter.clone(),
    };
    if ranks.size() == 1
        || adapter.adapter.is_some()
        || std::env::var_os("WGPU_ADAPTER_NAME").is_some()
    {
        return Ok(chosen);
    }
    let hardware: Vec<String> = gpu::adapters(&adapter.options()?)
        .iter()
        .map(|a| a.get_info())
        .filter(|i| i.device_type != wgpu::DeviceType::Cpu)
        .map(|i| i.name)
        .collect();
    if !hardware.is_empty() {
        let local = ranks.local_rank();
        let name = &hardware[local % hardware.len()];
        if local >= hardware.len() {
            eprintln!(
                "warning: rank {} shares {name} with another rank of this machine: it has {} GPU(s) for more ranks",
                ranks.rank(),
                hardware.len()
            );
        }
        chosen.adapter = Some(name.clone());
    }
    Ok(chosen)
}

/// Sets the tuning the run starts with: a resumed run's own (refused where this adapter
/// cannot run it), the default with `--no-tune`, else the cached or a new one.
fn start_tuning(
    gpu: &mut Gpu,
    resumed: Option<(Option<Tuning>, PathBuf)>,
    target: &Target,
    no_tune: bool,
) -> Result<()> {
    match resumed {
        Some((Some(t), path)) => {
            check_tuning(gpu, &t).map_err(|e| {
                Error::Usage(format!(
                    "{} holds the kernel tuning the run was trained with, and this adapter cannot run it: {e}",
                    path.display()
                ))
            })?;
            gpu.set_tuning(t);
            eprintln!("tuning: the resumed run's own");
        }
        Some((None, _)) => eprintln!("tuning: the adapter's default (the run saved none)"),
        None if no_tune => eprintln!("tuning: the adapter's default (--no-tune)"),
        None => {
            tuned(gpu, target, false, false)?;
        }
    }
    Ok(())
}

/// A resumed run keeps the saved settings; flags may change only the step target and
/// how often it logs, validates and saves.
pub(crate) fn resumed_settings(
    a: &TrainArgs,
    saved: Settings,
    wanted: Settings,
) -> Result<Settings> {
    // (flag, given on the command line, same as saved, the saved value)
    let checks = [
        (
            "--batch-size",
            a.batch_size.is_some(),
            wanted.batch_size == saved.batch_size,
            saved.batch_size.to_string(),
        ),
        (
            "--lr",
            a.lr.is_some(),
            wanted.lr == saved.lr,
            saved.lr.to_string(),
        ),
        (
            "--optimizer",
            a.optimizer.is_some(),
            wanted.optimizer == saved.optimizer,
            format!("{:?}", saved.optimizer),
        ),
        (
            "--seed",
            a.seed.is_some(),
            wanted.seed == saved.seed,
            saved.seed.to_string(),
        ),
        (
            "--no-shuffle",
            a.no_shuffle,
            !saved.shuffle,
            format!("shuffle {}", saved.shuffle),
        ),
        (
            "--val-images",
            a.val_images.is_some(),
            wanted.val_images == saved.val_images,
            saved.val_images.to_string(),
        ),
        (
            "--codebook-restart",
            a.codebook_restart.is_some(),
            wanted.codebook_restart == saved.codebook_restart,
            saved.codebook_restart.to_string(),
        ),
        (
            "--codebook-update",
            a.codebook_update.is_some(),
            wanted.codebook_update == saved.codebook_update,
            format!("{:?}", saved.codebook_update).to_lowercase(),
        ),
        (
            "--ema-decay",
            a.ema_decay.is_some(),
            wanted.ema_decay == saved.ema_decay,
            saved.ema_decay.to_string(),
        ),
        (
            "--ema-eps",
            a.ema_eps.is_some(),
            wanted.ema_eps == saved.ema_eps,
            saved.ema_eps.to_string(),
        ),
        (
            "--hflip",
            a.hflip,
            saved.hflip,
            format!("hflip {}", saved.hflip),
        ),
        (
            "--quantize-dropout",
            a.quantize_dropout,
            saved.quantize_dropout,
            format!("quantize dropout {}", saved.quantize_dropout),
        ),
        (
            "--lr-schedule",
            a.lr_schedule.is_some(),
            wanted.lr_schedule == saved.lr_schedule,
            format!("{:?}", saved.lr_schedule).to_lowercase(),
        ),
        (
            "--warmup-steps",
            a.warmup_steps.is_some(),
            wanted.warmup_steps == saved.warmup_steps,
            saved.warmup_steps.to_string(),
        ),
    ];
    if let Some((flag, _, _, was)) = checks.iter().find(|(_, given, same, _)| *given && !same) {
        return Err(Error::Usage(format!(
            "{flag} differs from the resumed run's ({was}); --resume continues with its saved settings"
        )));
    }
    Ok(Settings {
        steps: a.steps.unwrap_or(saved.steps),
        log_every: a.log_every.unwrap_or(saved.log_every),
        checkpoint_every: a.checkpoint_every.unwrap_or(saved.checkpoint_every),
        val_every: a.val_every.unwrap_or(saved.val_every),
        data: wanted.data.or(saved.data.clone()),
        // State saved before schedules were has none: a constant rate.
        lr_horizon: if saved.lr_horizon == 0 {
            saved.steps
        } else {
            saved.lr_horizon
        },
        ..saved
    })
}
