//! `vqvae`: train a VQ-VAE on the GPU, reconstruct, encode to codes, decode, show the
//! adapters (DESIGN.md section 3), and benchmark the adapter.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vqvae_wgpu::bench::{self, Report};
use vqvae_wgpu::checkpoint::{MODEL_FILE, STATE_FILE, TensorFile};
use vqvae_wgpu::data::{Dataset, LoadOptions};
use vqvae_wgpu::error::{Error, Result};
use vqvae_wgpu::gpu::{self, Gpu, GpuOptions};
use vqvae_wgpu::model::Config;
use vqvae_wgpu::network::Vqvae;
use vqvae_wgpu::params::Params;
use vqvae_wgpu::prior::{
    self, CodeGrids, PRIOR_FILE, PRIOR_STATE_FILE, PriorConfig, PriorNet, PriorRun, PriorSettings,
    PriorStart, SampleSettings,
};
use vqvae_wgpu::train::{self, CodebookInit, OptimizerKind, Run, Settings, Start};
use vqvae_wgpu::{images, npy};

#[derive(Parser)]
#[command(
    name = "vqvae",
    version,
    about = "Train and run a VQ-VAE on the GPU (wgpu: Vulkan, Metal, DX12)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model; writes DIR/checkpoint.safetensors, DIR/metrics.jsonl and DIR/reconstructions.png.
    Train(Box<TrainArgs>),
    /// Write one PNG per input image: its reconstruction.
    Reconstruct {
        /// The model checkpoint.
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Images per GPU batch.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Write the codes of every input image as a [N, h/4, w/4] .npy file (int64).
    Encode {
        /// The model checkpoint.
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Output .npy file.
        #[arg(long)]
        out: PathBuf,
        /// Images per GPU batch.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Decode a [N, h, w] .npy file of codes into N PNG images.
    Decode {
        /// The model checkpoint.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The codes (.npy, any integer type).
        #[arg(long)]
        codes: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Images per GPU batch.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Train a PixelCNN prior over the codes a trained model gives the data; writes
    /// DIR/prior.safetensors, DIR/prior_state.safetensors and DIR/prior_metrics.jsonl.
    TrainPrior(Box<TrainPriorArgs>),
    /// Draw code grids from a prior on the GPU, decode them, and write them as one image.
    Sample(SampleArgs),
    /// List the adapters found and the one chosen, with its backend and limits.
    Info(AdapterArgs),
    /// Measure the kernels, the quantiser, training steps and inference on one adapter;
    /// or compare saved results.
    Bench(BenchArgs),
}

#[derive(Args)]
struct TrainPriorArgs {
    /// The trained autoencoder whose codes the prior models.
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Condition on the data's classes (CIFAR-10, or IDX with its labels file beside it).
    #[arg(long)]
    conditional: bool,
    /// Steps to train in all [default: 2000]; a resumed run continues up to this.
    #[arg(long)]
    steps: Option<u64>,
    /// Code grids per step [default: 64].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam's learning rate [default: 1e-3].
    #[arg(long)]
    lr: Option<f64>,
    /// Seed of initialisation and batch order [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Channels of the code embedding [default: 32].
    #[arg(long)]
    embed_dim: Option<usize>,
    /// Channels between the prior's layers [default: 64].
    #[arg(long)]
    prior_channels: Option<usize>,
    /// Residual blocks [default: 4].
    #[arg(long)]
    prior_blocks: Option<usize>,
    /// Grids held out from the end of the data [default: 5%, at most 1000].
    #[arg(long)]
    val_grids: Option<usize>,
    /// Steps between loss read-backs [default: 50].
    #[arg(long)]
    log_every: Option<u64>,
    /// Steps between held-out evaluations and checkpoints [default: 500].
    #[arg(long)]
    val_every: Option<u64>,
    /// Continue the prior run saved in this folder.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct SampleArgs {
    /// The trained autoencoder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The prior trained on its codes (`vqvae train-prior`).
    #[arg(long)]
    prior: PathBuf,
    /// Images to draw.
    #[arg(long, default_value_t = 16)]
    count: usize,
    /// Output PNG: the images in a grid.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Softmax temperature: below 1 safer, above 1 more varied.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f32,
    /// The class to draw (conditional priors); without it, classes take turns.
    #[arg(long)]
    class: Option<usize>,
    /// Also write the sampled codes [count, h, w] as .npy.
    #[arg(long, value_name = "FILE")]
    codes_out: Option<PathBuf>,
    /// Grids drawn at once.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

#[derive(Args)]
struct AdapterArgs {
    /// Backends to search, comma-separated: vulkan, metal, dx12, gl [default:
    /// WGPU_BACKEND, else all].
    #[arg(long)]
    backend: Option<String>,
    /// Part of the adapter's name [default: WGPU_ADAPTER_NAME, else the best adapter].
    #[arg(long)]
    adapter: Option<String>,
}

impl AdapterArgs {
    /// wgpu's environment conventions, overridden by the flags given.
    fn options(&self) -> Result<GpuOptions> {
        let mut options = GpuOptions::default().with_env();
        if let Some(list) = &self.backend {
            options.backends =
                gpu::parse_backends(list).map_err(|e| Error::Usage(format!("--backend: {e}")))?;
        }
        if let Some(name) = &self.adapter {
            options.adapter_name = Some(name.clone());
        }
        Ok(options)
    }
}

#[derive(Args)]
struct BenchArgs {
    /// The small suite: under a minute on a CPU adapter.
    #[arg(long)]
    quick: bool,
    /// Also write every figure, with the adapter, driver and limits, to this JSON file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Print saved JSON results side by side with ratios to the first; runs nothing.
    #[arg(long, value_name = "FILE", num_args = 2.., conflicts_with_all = ["quick", "json", "runs", "wall_clock", "only"])]
    compare: Vec<PathBuf>,
    /// Timed runs per benchmark [default: 5; 3 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Time with the host clock even where the GPU has timestamp queries.
    #[arg(long)]
    wall_clock: bool,
    /// Only the benchmarks whose name or shape contains this.
    #[arg(long)]
    only: Option<String>,
    #[command(flatten)]
    adapter: AdapterArgs,
}

#[derive(Args)]
struct DataArgs {
    /// A folder of images, an IDX file (.gz or not) or CIFAR-10 .bin batches; the
    /// built-in shapes when omitted.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Centre-crop and resize every image to this size (a multiple of 4).
    #[arg(long)]
    image_size: Option<usize>,
}

#[derive(Args)]
struct ModelArgs {
    /// Image channels C (1 or 3); default: the data's.
    #[arg(long)]
    channels: Option<usize>,
    /// Hidden channels H [default: 128].
    #[arg(long)]
    hidden: Option<usize>,
    /// Residual hidden channels R [default: 32].
    #[arg(long)]
    res_hidden: Option<usize>,
    /// Residual blocks L [default: 2].
    #[arg(long)]
    res_layers: Option<usize>,
    /// Codebook size K [default: 512].
    #[arg(long)]
    codes: Option<usize>,
    /// Code dimension D [default: 64].
    #[arg(long)]
    code_dim: Option<usize>,
    /// Commitment weight beta [default: 0.25].
    #[arg(long)]
    beta: Option<f32>,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Images per step [default: 32].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Steps to train in all [default: 1000]; a resumed run continues up to this.
    #[arg(long)]
    steps: Option<u64>,
    /// Learning rate [default: 2e-4].
    #[arg(long)]
    lr: Option<f64>,
    /// Optimizer [default: adam].
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// Seed of initialisation and data order [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the data order: batch i holds images i*B..(i+1)*B.
    #[arg(long)]
    no_shuffle: bool,
    /// Images held out from the end of the data for validation [default: 5%, at most 1000].
    #[arg(long)]
    val_images: Option<usize>,
    /// How the codebook starts [default: data].
    #[arg(long, value_enum)]
    codebook_init: Option<CodebookInit>,
    /// Restart codes unused over this many steps on encoder outputs [default: 25 with
    /// Adam; 0 turns it off; SGD never restarts].
    #[arg(long)]
    codebook_restart: Option<u64>,
    /// Steps between metric read-backs [default: 10].
    #[arg(long)]
    log_every: Option<u64>,
    /// Steps between checkpoints [default: 500].
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Steps between validations [default: 500].
    #[arg(long)]
    val_every: Option<u64>,
    /// Start from exactly these weights (codebook included).
    #[arg(long, conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Continue the run saved in this folder.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    // The Vulkan loader complains on stderr without XDG_RUNTIME_DIR; give it one.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train_command(*args),
        Command::Reconstruct {
            checkpoint,
            data,
            out,
            batch_size,
        } => reconstruct(&checkpoint, &data, &out, batch_size),
        Command::Encode {
            checkpoint,
            data,
            out,
            batch_size,
        } => encode(&checkpoint, &data, &out, batch_size),
        Command::Decode {
            checkpoint,
            codes,
            out,
            batch_size,
        } => decode(&checkpoint, &codes, &out, batch_size),
        Command::TrainPrior(args) => train_prior(&args),
        Command::Sample(args) => sample(&args),
        Command::Info(adapter) => info(&adapter),
        Command::Bench(args) => bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open_gpu() -> Result<Gpu> {
    let gpu = Gpu::open()?;
    eprintln!("adapter: {}", gpu::describe(gpu.info()));
    Ok(gpu)
}

/// A model checkpoint and the architecture its shapes describe.
fn load_model(path: &Path) -> Result<(TensorFile, Config)> {
    let file = TensorFile::read(path)?;
    let beta = file
        .metadata
        .get("beta")
        .and_then(|b| b.parse().ok())
        .unwrap_or(0.25);
    let config = Config::from_shapes(&file.shapes(), beta, path)?;
    Ok((file, config))
}

/// Errors when a model flag contradicts the checkpoint's architecture.
fn check_flags(m: &ModelArgs, c: &Config, path: &Path) -> Result<()> {
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

fn train_command(a: TrainArgs) -> Result<()> {
    // What the checkpoint fixes, if there is one.
    let (start, fixed, saved): (Start, Option<Config>, Option<Settings>) = match (
        &a.resume, &a.init,
    ) {
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
            let (ms, ss) = (model.metadata.get("step"), state.metadata.get("step"));
            if ms != ss {
                return Err(Error::Checkpoint {
                    path: state_path,
                    message: format!(
                        "is from step {ss:?} but the model checkpoint from step {ms:?}; they must come from one save"
                    ),
                });
            }
            check_flags(&a.model, &config, &dir.join(MODEL_FILE))?;
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
    let config = fixed.unwrap_or_else(|| {
        let r = Config::reference(data.channels);
        Config {
            channels: data.channels,
            hidden: a.model.hidden.unwrap_or(r.hidden),
            res_hidden: a.model.res_hidden.unwrap_or(r.res_hidden),
            res_layers: a.model.res_layers.unwrap_or(r.res_layers),
            codes: a.model.codes.unwrap_or(r.codes),
            code_dim: a.model.code_dim.unwrap_or(r.code_dim),
            beta: a.model.beta.unwrap_or(r.beta),
        }
    });
    config.validate()?;
    let optimizer = a
        .optimizer
        .or(saved.as_ref().map(|s| s.optimizer))
        .unwrap_or(OptimizerKind::Adam);
    if optimizer == OptimizerKind::Sgd && a.codebook_restart.is_some_and(|r| r > 0) {
        return Err(Error::Usage("--codebook-restart: --optimizer sgd changes parameters by -lr * gradient alone, with no codebook restarts".into()));
    }
    let wanted = Settings {
        batch_size: a.batch_size.unwrap_or(32),
        steps: a.steps.unwrap_or(1000),
        lr: a.lr.unwrap_or(2e-4),
        optimizer,
        seed,
        shuffle: !a.no_shuffle,
        val_images: a.val_images.unwrap_or((data.len / 20).min(1000)),
        codebook_init: a.codebook_init.unwrap_or(CodebookInit::Data),
        log_every: a.log_every.unwrap_or(10),
        checkpoint_every: a.checkpoint_every.unwrap_or(500),
        val_every: a.val_every.unwrap_or(500),
        data: data_path.as_ref().map(|p| p.display().to_string()),
        image_size,
        codebook_restart: a
            .codebook_restart
            .unwrap_or(if optimizer == OptimizerKind::Adam {
                25
            } else {
                0
            }),
    };
    let settings = match saved {
        Some(saved) => resumed_settings(&a, saved, wanted)?,
        None => wanted,
    };
    let out = a.out.clone();
    let gpu = open_gpu()?;
    let summary = Run {
        gpu: &gpu,
        data: &data,
        config,
        settings,
        out: out.clone(),
        start,
        progress: !a.quiet,
    }
    .train()?;
    println!("trained to step {}", summary.step);
    if let Some(m) = summary.last {
        println!(
            "last step: loss {:.5}, reconstruction MSE {:.5}, perplexity {:.1}, codes in use {}/{}",
            m.loss, m.recon, m.perplexity, m.codes_used, config.codes
        );
    }
    if let Some(v) = summary.val_mse {
        println!("held-out reconstruction MSE: {v:.5}");
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
    println!("checkpoint:      {}", out.join(MODEL_FILE).display());
    println!(
        "reconstructions: {}",
        out.join("reconstructions.png").display()
    );
    println!("metrics:         {}", out.join("metrics.jsonl").display());
    Ok(())
}

/// A resumed run keeps the saved settings; flags may change only the step target and
/// how often it logs, validates and saves.
fn resumed_settings(a: &TrainArgs, saved: Settings, wanted: Settings) -> Result<Settings> {
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
        ..saved
    })
}

/// Loads a checkpoint and the data for it, and builds an inference graph.
fn inference(
    checkpoint: &Path,
    data: &DataArgs,
    batch_size: usize,
) -> Result<(Gpu, Dataset, Params, Vqvae)> {
    if batch_size == 0 {
        return Err(Error::Usage("--batch-size 0: must be at least 1".into()));
    }
    let (file, config) = load_model(checkpoint)?;
    let dataset = Dataset::load(
        data.data.as_deref(),
        &LoadOptions {
            channels: Some(config.channels),
            image_size: data.image_size,
            seed: 0,
        },
    )?;
    let gpu = open_gpu()?;
    let params = Params::new(&gpu, config.params())?;
    params.upload(
        &gpu,
        &params.join(&file.values(), &checkpoint.display().to_string())?,
    )?;
    let net = Vqvae::new(
        &gpu,
        &params,
        &config,
        batch_size.min(dataset.len),
        [dataset.height, dataset.width],
        false,
    )?;
    Ok((gpu, dataset, params, net))
}

fn reconstruct(checkpoint: &Path, data: &DataArgs, out: &Path, batch_size: usize) -> Result<()> {
    let (gpu, dataset, _params, net) = inference(checkpoint, data, batch_size)?;
    std::fs::create_dir_all(out).map_err(vqvae_wgpu::error::io("creating", out))?;
    let all: Vec<usize> = (0..dataset.len).collect();
    let outs = train::run_batches(
        &gpu,
        &net,
        &dataset,
        &all,
        &[net.encode(), net.decode()],
        &net.x_hat,
    )?;
    for (name, bits) in dataset.names.iter().zip(&outs) {
        let x: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        images::save_png(
            &out.join(format!("{name}.png")),
            dataset.channels,
            dataset.height,
            dataset.width,
            &images::to_pixels(&x),
        )?;
    }
    println!("wrote {} reconstructions to {}", outs.len(), out.display());
    Ok(())
}

fn encode(checkpoint: &Path, data: &DataArgs, out: &Path, batch_size: usize) -> Result<()> {
    let (gpu, dataset, _params, net) = inference(checkpoint, data, batch_size)?;
    let all: Vec<usize> = (0..dataset.len).collect();
    let codes = train::run_batches(&gpu, &net, &dataset, &all, &[net.encode()], &net.indices)?;
    let (h, w) = (dataset.height / 4, dataset.width / 4);
    let flat: Vec<i64> = codes.iter().flatten().map(|&c| i64::from(c)).collect();
    npy::write_codes(out, [dataset.len, h, w], &flat)?;
    println!(
        "wrote codes of shape [{}, {h}, {w}] to {}",
        dataset.len,
        out.display()
    );
    Ok(())
}

fn decode(checkpoint: &Path, codes: &Path, out: &Path, batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::Usage("--batch-size 0: must be at least 1".into()));
    }
    let (file, config) = load_model(checkpoint)?;
    let (values, [n, h, w]) = npy::read_codes(codes)?;
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
                "code {bad} at flat index {i} is outside 0..{} (the checkpoint's codebook size)",
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

/// Decodes code grids `[n, h, w]` (each code below K) with the model in `file`, `batch`
/// grids at a time, into 8-bit planar images of `4h x 4w`.
fn decode_codes(
    gpu: &Gpu,
    file: &TensorFile,
    config: &Config,
    checkpoint: &Path,
    codes: &[u32],
    [h, w]: [usize; 2],
    batch: usize,
) -> Result<Vec<Vec<u8>>> {
    let per = h * w;
    let n = codes.len() / per;
    let params = Params::new(gpu, config.params())?;
    params.upload(
        gpu,
        &params.join(&file.values(), &checkpoint.display().to_string())?,
    )?;
    let batch = batch.min(n);
    let net = Vqvae::new(gpu, &params, config, batch, [4 * h, 4 * w], false)?;
    let image_len = config.channels * 16 * per;
    let mut out = Vec::with_capacity(n);
    for first in (0..n).step_by(batch) {
        let count = batch.min(n - first);
        let mut idx = codes[first * per..(first + count) * per].to_vec();
        idx.resize(batch * per, 0);
        net.indices.write(gpu, bytemuck::cast_slice(&idx))?;
        gpu.run(&[net.gather(), net.decode()])?;
        let x = net.x_hat.to_f32(gpu)?;
        out.extend((0..count).map(|k| images::to_pixels(&x[k * image_len..(k + 1) * image_len])));
    }
    Ok(out)
}

fn bench(a: &BenchArgs) -> Result<()> {
    if !a.compare.is_empty() {
        let reports = a
            .compare
            .iter()
            .map(|p| Ok((p.clone(), Report::read(p)?)))
            .collect::<Result<Vec<_>>>()?;
        print!("{}", bench::compare(&reports));
        return Ok(());
    }
    let gpu = Gpu::open_with(&a.adapter.options()?)?;
    println!("adapter: {}", gpu::describe(gpu.info()));
    println!("{}", bench::header());
    let mut previous: Option<bench::Entry> = None;
    let report = bench::run(
        &gpu,
        &bench::Options {
            quick: a.quick,
            runs: a.runs.unwrap_or(if a.quick { 3 } else { 5 }),
            wall_clock: a.wall_clock,
            only: a.only.clone(),
        },
        |entry| {
            if let Some(heading) = bench::group_break(previous.as_ref(), entry) {
                println!("{heading}");
            }
            println!("{}", bench::row(entry));
            previous = Some(entry.clone());
        },
    )?;
    println!("\ntiming: {}", report.environment.summary());
    if let Some(path) = &a.json {
        report.write(path)?;
        println!("results: {}", path.display());
    }
    let failed = report.results.iter().filter(|e| e.error.is_some()).count();
    if failed > 0 {
        return Err(Error::Usage(format!(
            "{failed} of {} benchmarks failed (their errors are above)",
            report.results.len()
        )));
    }
    Ok(())
}

fn info(adapter: &AdapterArgs) -> Result<()> {
    let options = adapter.options()?;
    let all = gpu::adapters(&GpuOptions {
        backends: wgpu::Backends::all(),
        ..options.clone()
    });
    println!("adapters found:");
    for a in &all {
        println!("  {}", gpu::describe(&a.get_info()));
    }
    let gpu = Gpu::open_with(&options)?;
    let l = gpu.limits();
    println!("chosen: {}", gpu::describe(gpu.info()));
    println!("  backend: {:?}", gpu.info().backend);
    println!("  tuning: {:?}", gpu.tuning());
    println!("  features: {:?}", gpu.device().features());
    println!(
        "  max_storage_buffer_binding_size: {}",
        l.max_storage_buffer_binding_size
    );
    println!("  max_buffer_size: {}", l.max_buffer_size);
    println!(
        "  max_compute_workgroup_storage_size: {}",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    Ok(())
}

fn train_prior(a: &TrainPriorArgs) -> Result<()> {
    let resumed = match &a.resume {
        Some(dir) => Some((
            TensorFile::read(&dir.join(PRIOR_FILE))?,
            TensorFile::read(&dir.join(PRIOR_STATE_FILE))?,
        )),
        None => None,
    };
    let (gpu, data, params, net) = inference(&a.checkpoint, &a.data, 64)?;
    let codes_k = net.config.codes;
    eprintln!(
        "data: {} images of {}x{}x{} from {}",
        data.len, data.channels, data.height, data.width, data.source
    );
    let saved_config = match &resumed {
        Some((model, _)) => {
            let path = a.resume.as_ref().expect("resuming").join(PRIOR_FILE);
            Some(PriorConfig::of_checkpoint(model, &path)?)
        }
        None => None,
    };
    let conditional = a.conditional || saved_config.is_some_and(|c| c.classes > 0);
    let labels: Option<Vec<usize>> = match (&data.labels, conditional) {
        (_, false) => None,
        (Some(l), true) => Some(l.iter().map(|&c| usize::from(c)).collect()),
        (None, true) => {
            return Err(Error::Usage(format!(
                "--conditional: {} has no labels (CIFAR-10 batches have them; an IDX images file needs its *-labels-idx1-ubyte file beside it)",
                data.source
            )));
        }
    };
    let grid = [data.height / 4, data.width / 4];
    let classes = labels
        .as_ref()
        .map_or(0, |l| l.iter().max().map_or(0, |&m| m + 1));
    let config = match saved_config {
        Some(c) => {
            if c.codes != codes_k || c.grid != grid || c.classes < classes {
                return Err(Error::Usage(format!(
                    "--resume: the saved prior models K={} codes on a {:?} grid with {} classes; {} and this data give K={codes_k}, a {grid:?} grid and {classes} classes",
                    c.codes,
                    c.grid,
                    c.classes,
                    a.checkpoint.display()
                )));
            }
            c
        }
        None => {
            let d = PriorConfig::new(codes_k, grid, classes);
            PriorConfig {
                embed: a.embed_dim.unwrap_or(d.embed),
                channels: a.prior_channels.unwrap_or(d.channels),
                blocks: a.prior_blocks.unwrap_or(d.blocks),
                ..d
            }
        }
    };
    config.validate()?;
    let wanted = PriorSettings {
        batch_size: a.batch_size.unwrap_or(64),
        steps: a.steps.unwrap_or(2000),
        lr: a.lr.unwrap_or(1e-3),
        seed: a.seed.unwrap_or(0),
        val_grids: a.val_grids.unwrap_or((data.len / 20).min(1000)),
        log_every: a.log_every.unwrap_or(50),
        checkpoint_every: a.val_every.unwrap_or(500),
        val_every: a.val_every.unwrap_or(500),
    };
    let (settings, start) = match resumed {
        Some((model, state)) => {
            let saved: PriorSettings = state
                .metadata
                .get("settings")
                .and_then(|s| serde_json::from_str(s).ok())
                .ok_or_else(|| Error::Checkpoint {
                    path: a.resume.as_ref().expect("resuming").join(PRIOR_STATE_FILE),
                    message: "no run settings in its metadata".into(),
                })?;
            for (flag, given, same) in [
                (
                    "--batch-size",
                    a.batch_size.is_some(),
                    wanted.batch_size == saved.batch_size,
                ),
                ("--lr", a.lr.is_some(), wanted.lr == saved.lr),
                ("--seed", a.seed.is_some(), wanted.seed == saved.seed),
            ] {
                if given && !same {
                    return Err(Error::Usage(format!(
                        "{flag} differs from the resumed prior run's; --resume continues with its saved settings"
                    )));
                }
            }
            let settings = PriorSettings {
                steps: wanted.steps,
                ..saved
            };
            let start = PriorStart::Resume {
                model: Box::new(model),
                state: Box::new(state),
            };
            (settings, start)
        }
        None => (wanted, PriorStart::Fresh),
    };
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(data.len as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "encoding {pos}/{len} images [{bar:30}] (eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        )
    };
    let all: Vec<usize> = (0..data.len).collect();
    let mut codes = Vec::with_capacity(data.len * grid[0] * grid[1]);
    for chunk in all.chunks(16 * net.batch) {
        let grids = train::run_batches(&gpu, &net, &data, chunk, &[net.encode()], &net.indices)?;
        codes.extend(grids.concat());
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let grids = CodeGrids {
        codes,
        n: data.len,
        grid,
        labels,
    };
    let autoencoder = prior::codebook_fingerprint(&params.value("codebook.weight").to_f32(&gpu)?);
    let summary = PriorRun {
        gpu: &gpu,
        grids: &grids,
        config,
        settings,
        out: a.out.clone(),
        start,
        progress: !a.quiet,
        autoencoder,
    }
    .train()?;
    println!("trained the prior to step {}", summary.step);
    if let Some(bits) = summary.val_bits {
        println!(
            "held-out NLL: {bits:.3} bits per code (uniform prior {:.3}, training-set code frequencies {:.3})",
            summary.uniform_bits, summary.frequency_bits
        );
    }
    println!("{:.1} ms per training step", summary.ms_per_step);
    println!("prior:   {}", a.out.join(PRIOR_FILE).display());
    println!("metrics: {}", a.out.join("prior_metrics.jsonl").display());
    Ok(())
}

fn sample(a: &SampleArgs) -> Result<()> {
    let (file, config) = load_model(&a.checkpoint)?;
    let prior_file = TensorFile::read(&a.prior)?;
    let pc = PriorConfig::of_checkpoint(&prior_file, &a.prior)?;
    let mismatch = |message: String| Error::Checkpoint {
        path: a.prior.clone(),
        message,
    };
    if pc.codes != config.codes {
        return Err(mismatch(format!(
            "models K={} codes, but {} has a codebook of K={}",
            pc.codes,
            a.checkpoint.display(),
            config.codes
        )));
    }
    if let Some(size) = file.metadata.get(train::IMAGE_SIZE_KEY)
        && let Some((h, w)) = size.split_once('x')
        && [h.parse().unwrap_or(0) / 4, w.parse().unwrap_or(0) / 4] != pc.grid
    {
        return Err(mismatch(format!(
            "models {}x{} code grids, but {} was trained on {size} images ({}x{} grids)",
            pc.grid[0],
            pc.grid[1],
            a.checkpoint.display(),
            h.parse::<usize>().unwrap_or(0) / 4,
            w.parse::<usize>().unwrap_or(0) / 4
        )));
    }
    let values = file.values();
    if let (Some(want), Some(codebook)) = (
        prior_file.metadata.get(prior::AUTOENCODER_KEY),
        values.get("codebook.weight"),
    ) && *want != prior::codebook_fingerprint(codebook)
    {
        return Err(mismatch(format!(
            "was trained on the codes of another autoencoder (its codebook differs from {}'s)",
            a.checkpoint.display()
        )));
    }
    let settings = SampleSettings {
        count: a.count,
        temperature: a.temperature,
        seed: a.seed,
        class: a.class,
    };
    settings.check(&pc)?;
    if a.batch_size == 0 {
        return Err(Error::Usage("--batch-size 0: must be at least 1".into()));
    }
    let gpu = open_gpu()?;
    let params = Params::new(&gpu, pc.params())?;
    params.upload(
        &gpu,
        &params.join(&prior_file.values(), &a.prior.display().to_string())?,
    )?;
    let net = PriorNet::new(&gpu, &params, &pc, a.batch_size.min(a.count), false)?;
    let started = std::time::Instant::now();
    let codes = prior::sample_codes(&gpu, &net, &settings)?;
    let seconds = started.elapsed().as_secs_f64();
    let pixels = decode_codes(
        &gpu,
        &file,
        &config,
        &a.checkpoint,
        &codes,
        pc.grid,
        a.batch_size,
    )?;
    let (h, w) = (4 * pc.grid[0], 4 * pc.grid[1]);
    let tiles: Vec<&[u8]> = pixels.iter().map(Vec::as_slice).collect();
    // Classes taking turns fill one column each.
    let columns = match (pc.classes, a.class) {
        (n, None) if n > 1 && a.count >= n => n,
        _ => (a.count as f64).sqrt().ceil() as usize,
    };
    let zoom = 64usize.div_ceil(h.max(w)).max(1);
    let (gh, gw, grid) = images::grid(&tiles, config.channels, h, w, columns, zoom);
    images::save_png(&a.out, config.channels, gh, gw, &grid)?;
    println!(
        "sampled {} code grids of {}x{} in {seconds:.2} s ({:.1} ms per image), decoded to {}",
        a.count,
        pc.grid[0],
        pc.grid[1],
        seconds * 1e3 / a.count as f64,
        a.out.display()
    );
    if let Some(path) = &a.codes_out {
        let flat: Vec<i64> = codes.iter().map(|&c| i64::from(c)).collect();
        npy::write_codes(path, [a.count, pc.grid[0], pc.grid[1]], &flat)?;
        println!("codes: {}", path.display());
    }
    Ok(())
}
