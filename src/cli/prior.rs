//! `vqvae train-prior` and `vqvae sample`: the prior over codes, and new images from it.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use vqvae_wgpu::checkpoint::{TensorFile, check_pair};
use vqvae_wgpu::error::{Error, Result};
use vqvae_wgpu::model::Config;
use vqvae_wgpu::params::Params;
use vqvae_wgpu::plot::PRIOR_METRICS_PNG;
use vqvae_wgpu::prior::{
    self, CodeGrids, PRIOR_FILE, PRIOR_METRICS_FILE, PRIOR_STATE_FILE, PriorConfig, PriorRun,
    PriorSettings, PriorStart, SampleSettings, Sampler,
};
use vqvae_wgpu::stop::Stop;
use vqvae_wgpu::train;
use vqvae_wgpu::{images, npy};

use super::common::{DataArgs, decode_codes, inference, load_model, open_gpu};

#[derive(Args)]
pub(crate) struct TrainPriorArgs {
    /// The trained autoencoder whose codes the prior models.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Output folder.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Condition on the data's classes (CIFAR-10, or IDX with its labels file beside it).
    #[arg(long)]
    pub(crate) conditional: bool,
    /// Steps to train in all [default: 2000]; a resumed run continues up to this.
    #[arg(long)]
    pub(crate) steps: Option<u64>,
    /// Code grids per step [default: 64].
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Adam's learning rate [default: 1e-3].
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Seed of initialisation and batch order [default: 0].
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Channels of the code embedding [default: 32].
    #[arg(long)]
    pub(crate) embed_dim: Option<usize>,
    /// Channels between the prior's layers [default: 64].
    #[arg(long)]
    pub(crate) prior_channels: Option<usize>,
    /// Residual blocks, or gated layers after the first with --gated [default: 4].
    #[arg(long)]
    pub(crate) prior_blocks: Option<usize>,
    /// Gated PixelCNN layers (vertical and horizontal stacks, gated activations, no blind
    /// spot) instead of residual blocks under mask B.
    #[arg(long)]
    pub(crate) gated: bool,
    /// Grids held out from the end of the data [default: 5%, at most 1000].
    #[arg(long)]
    pub(crate) val_grids: Option<usize>,
    /// Steps between loss read-backs [default: 50].
    #[arg(long)]
    pub(crate) log_every: Option<u64>,
    /// Steps between held-out evaluations and checkpoints [default: 500].
    #[arg(long)]
    pub(crate) val_every: Option<u64>,
    /// Continue the prior run saved in this folder.
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

#[derive(Args)]
pub(crate) struct SampleArgs {
    /// The trained autoencoder.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// The prior trained on its codes (`vqvae train-prior`).
    #[arg(long)]
    pub(crate) prior: PathBuf,
    /// Images to draw.
    #[arg(long, default_value_t = 16)]
    pub(crate) count: usize,
    /// Output PNG: the images in a grid.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Softmax temperature: below 1 safer, above 1 more varied.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub(crate) temperature: f32,
    /// The class to draw (conditional priors); without it, classes take turns.
    #[arg(long)]
    pub(crate) class: Option<usize>,
    /// Also write the sampled codes [count, h, w] as .npy.
    #[arg(long, value_name = "FILE")]
    pub(crate) codes_out: Option<PathBuf>,
    /// Grids drawn at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) batch_size: usize,
}

pub(crate) fn train_prior(a: &TrainPriorArgs) -> Result<()> {
    let resumed = match &a.resume {
        Some(dir) => {
            let (model_path, state_path) = (dir.join(PRIOR_FILE), dir.join(PRIOR_STATE_FILE));
            let (model, state) = (
                TensorFile::read(&model_path)?,
                TensorFile::read(&state_path)?,
            );
            check_pair((&model, &model_path), (&state, &state_path))?;
            Some((model, state))
        }
        None => None,
    };
    let (gpu, data, params, net) = inference(&a.checkpoint, &a.data, 64)?;
    // The prior models each position's joint code (residual VQ's S codes as one).
    let codes_k = net.config.symbols() as usize;
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
            if a.gated && !c.gated {
                return Err(Error::Usage(
                    "--gated: the resumed prior run has residual blocks, not gated layers".into(),
                ));
            }
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
                gated: a.gated,
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
        let grids = train::run_batches(&gpu, &net, &data, chunk, &[net.encode()], &net.symbols)?;
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
    let mut named = HashMap::new();
    for name in fingerprinted(&net.config) {
        named.insert(name.clone(), params.value(&name).to_f32(&gpu)?);
    }
    let autoencoder = fingerprint(&net.config, &named).expect("every tensor downloaded");
    let stop = Stop::default();
    stop.listen()?;
    let summary = PriorRun {
        gpu: &gpu,
        grids: &grids,
        config,
        settings,
        out: a.out.clone(),
        start,
        progress: !a.quiet,
        autoencoder,
        stop,
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
    println!("metrics: {}", a.out.join(PRIOR_METRICS_FILE).display());
    println!("curves:  {}", a.out.join(PRIOR_METRICS_PNG).display());
    Ok(())
}

pub(crate) fn sample(a: &SampleArgs) -> Result<()> {
    let (file, config) = load_model(&a.checkpoint)?;
    let prior_file = TensorFile::read(&a.prior)?;
    let pc = PriorConfig::of_checkpoint(&prior_file, &a.prior)?;
    let mismatch = |message: String| Error::Checkpoint {
        path: a.prior.clone(),
        message,
    };
    if pc.codes as u64 != config.symbols() {
        return Err(mismatch(format!(
            "models K={} codes, but {} makes K={} codes a position",
            pc.codes,
            a.checkpoint.display(),
            config.symbols()
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
    if let (Some(want), Some(have)) = (
        prior_file.metadata.get(prior::AUTOENCODER_KEY),
        fingerprint(&config, &values),
    ) && *want != have
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
    let sampler = Sampler::new(&gpu, &params, &pc, a.batch_size.min(a.count))?;
    let started = std::time::Instant::now();
    let joint = sampler.sample(&gpu, &settings)?;
    let seconds = started.elapsed().as_secs_f64();
    let codes = config.quantizer.split(config.codes, &joint);
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
        let per = config.quantizer.codes_per_position();
        npy::write_codes(path, &npy::grid_shape(a.count, pc.grid, per), &flat)?;
        println!("codes: {}", path.display());
    }
    Ok(())
}

/// The tensors that identify the autoencoder whose codes a prior models: its codebooks,
/// or for FSQ (no codebook) the encoder's last layer.
fn fingerprinted(config: &Config) -> Vec<String> {
    match config.quantizer.codebooks() {
        0 => vec!["pre_vq.weight".to_string()],
        n => (0..n).map(|s| config.quantizer.codebook_name(s)).collect(),
    }
}

/// The fingerprint of [`fingerprinted`]'s tensors in `values` (`None` if one is missing).
fn fingerprint(config: &Config, values: &HashMap<String, Vec<f32>>) -> Option<String> {
    let mut all = Vec::new();
    for name in fingerprinted(config) {
        all.extend_from_slice(values.get(&name)?);
    }
    Some(prior::codebook_fingerprint(&all))
}
