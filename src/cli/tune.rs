//! `vqvae tune`, and the tuning a training run starts with: a resumed run's own, the
//! cached one for this adapter and model, or one found now (before the first step) and
//! cached.

use clap::Args;
use vqvae_wgpu::data::{Dataset, LoadOptions};
use vqvae_wgpu::error::Result;
use vqvae_wgpu::gpu::Gpu;
use vqvae_wgpu::launch::Tuning;
use vqvae_wgpu::tune::cache::{Cache, Entry, Key};
use vqvae_wgpu::tune::{self, Target, Trial};

use super::common::{DataArgs, open_gpu};
use super::train::ModelArgs;

#[derive(Args)]
pub(crate) struct TuneArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Images per step [default: 32].
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Tune anew even where the cache holds a tuning for this adapter and model.
    #[arg(long)]
    pub(crate) force: bool,
}

pub(crate) fn tune_command(a: &TuneArgs) -> Result<()> {
    let data = Dataset::load(
        a.data.data.as_deref(),
        &LoadOptions {
            channels: a.model.channels,
            image_size: a.data.image_size,
            seed: 0,
        },
    )?;
    let config = a.model.config(data.channels)?;
    config.validate()?;
    let target = Target {
        config,
        batch: a.batch_size.unwrap_or(32),
        image: [data.height, data.width],
    };
    let mut gpu = open_gpu()?;
    let tuning = tuned(&mut gpu, &target, a.force, true)?;
    println!(
        "{}",
        serde_json::to_string(&tuning).expect("tuning serialises")
    );
    Ok(())
}

/// The tuning for `target` on `gpu`: the cached one (unless `force`), else one found now
/// and written to the cache; `verbose` prints each candidate. Leaves `gpu` set to it.
pub(crate) fn tuned(gpu: &mut Gpu, target: &Target, force: bool, verbose: bool) -> Result<Tuning> {
    let mut notice = |line: String| eprintln!("{line}");
    let mut cache = Cache::open(Cache::default_path(), &mut notice);
    let key = Key::of(gpu, target);
    if !force && let Some(t) = cache.get(&key, &mut notice) {
        eprintln!(
            "tuning: cached for this adapter and model in {}",
            cache.display()
        );
        gpu.set_tuning(t);
        return Ok(t);
    }
    eprintln!(
        "tuning: timing kernel variants for {} (once per adapter and model; --no-tune skips)",
        target.describe()
    );
    let show = |t: &Trial| {
        if verbose {
            let time = match &t.ms {
                Ok(ms) => format!("{ms:9.2} ms"),
                Err(e) => format!("failed: {e}"),
            };
            eprintln!(
                "  {:<40} {time}{}",
                t.what,
                if t.kept { "  kept" } else { "" }
            );
        }
    };
    let found = tune::tune(gpu, target, show)?;
    eprintln!(
        "tuning: a step takes {:.1} ms with the tuning found, {:.1} ms with the default ({:.2}x), found in {:.0} s",
        found.step_ms,
        found.default_step_ms,
        found.default_step_ms / found.step_ms,
        found.seconds
    );
    match cache.put(Entry::new(key, &found)) {
        Ok(()) => eprintln!("tuning: saved in {}", cache.display()),
        Err(why) => eprintln!("tuning: not cached ({why}); it serves this run only"),
    }
    Ok(found.tuning)
}
