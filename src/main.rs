//! `vqvae`: train a VQ-VAE on the GPU, reconstruct, encode to codes, decode, train a
//! prior over the codes and sample new images, show the adapters (DESIGN.md section 3),
//! and benchmark them. The handlers live in `cli/`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vqvae_wgpu::Error;

use cli::adapters::{BenchArgs, bench, info};
use cli::apply::{decode, encode, reconstruct};
use cli::common::{AdapterArgs, DataArgs, ShardArgs};
use cli::prior::{SampleArgs, TrainPriorArgs, sample, train_prior};
use cli::train::{TrainArgs, train_command};
use cli::tune::{TuneArgs, tune_command};

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
        #[command(flatten)]
        shard: ShardArgs,
    },
    /// Write the codes of every input image as a [N, h/4, w/4] .npy file (int64;
    /// [N, h/4, w/4, S] for residual VQ).
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
        #[command(flatten)]
        shard: ShardArgs,
    },
    /// Decode a [N, h, w] .npy file of codes ([N, h, w, S] for residual VQ) into N PNG
    /// images.
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
    /// Time kernel variants and tile shapes for a model on this adapter and cache the
    /// fastest (in the user's cache folder, or VQVAE_TUNING); prints the tuning as JSON.
    Tune(Box<TuneArgs>),
    /// List the adapters found and the one chosen, with its backend and limits.
    Info(AdapterArgs),
    /// Measure the kernels, the quantiser, training steps and inference on one adapter;
    /// or compare saved results.
    Bench(BenchArgs),
}

/// `vqvae train`, on the ranks of an MPI world under `mpirun` (the `mpi` feature) or in
/// this process alone. A rank's error ends every rank, so that none waits for it.
fn train(args: TrainArgs) -> Result<(), Error> {
    #[cfg(feature = "mpi")]
    if let Some(world) = vqvae_wgpu::ranks::MpiRanks::init() {
        use vqvae_wgpu::ranks::Ranks;
        if world.size() > 1 {
            let result = train_command(args, &world);
            if let Err(e) = &result
                && !matches!(e, Error::Stopped { .. })
            {
                // One write, and a moment for mpirun to pass it on before the abort.
                let line = format!("error on rank {} of {}: {e}\n", world.rank(), world.size());
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                std::thread::sleep(std::time::Duration::from_millis(300));
                world.abort(1);
            }
            return result;
        }
        return train_command(args, &world);
    }
    train_command(args, &vqvae_wgpu::ranks::OneProcess)
}

fn main() -> ExitCode {
    // The Vulkan loader complains on stderr without XDG_RUNTIME_DIR; give it one.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train(*args),
        Command::Reconstruct {
            checkpoint,
            data,
            out,
            batch_size,
            shard,
        } => reconstruct(&checkpoint, &data, &out, batch_size, &shard),
        Command::Encode {
            checkpoint,
            data,
            out,
            batch_size,
            shard,
        } => encode(&checkpoint, &data, &out, batch_size, &shard),
        Command::Decode {
            checkpoint,
            codes,
            out,
            batch_size,
        } => decode(&checkpoint, &codes, &out, batch_size),
        Command::TrainPrior(args) => train_prior(&args),
        Command::Sample(args) => sample(&args),
        Command::Tune(args) => tune_command(&args),
        Command::Info(adapter) => info(&adapter),
        Command::Bench(args) => bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A stop is the user's doing, not an error.
            let prefix = match e {
                Error::Stopped { .. } => "",
                _ => "error: ",
            };
            eprintln!("{prefix}{e}");
            ExitCode::from(e.exit_status())
        }
    }
}
