//! What decides a run and what it reports: the optimizer, how the codebook starts and
//! learns, every setting saved with a run's checkpoints, where its weights come from,
//! and its summary.

use crate::checkpoint::TensorFile;
use crate::metrics::StepMetrics;
use crate::network::CodebookUpdate;
use crate::rng::Rng;

use super::LrSchedule;

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
    /// Encoder outputs of the first batch.
    Data,
    /// Uniform in ±1/K, as PyTorch ports usually do (the default: with dead-code
    /// restarts it ranked first, docs/codebook-sweep-builtin.md).
    Uniform,
    /// k-means of the encoder outputs of the first batches: k-means++ seeding, then
    /// Lloyd iterations, on the GPU.
    Kmeans,
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
    /// Lloyd iterations of [`CodebookInit::Kmeans`].
    #[serde(default = "default_kmeans_iters")]
    pub kmeans_iters: usize,
    /// Batches whose encoder outputs [`CodebookInit::Kmeans`] clusters (`None`: enough
    /// for about 20 per code).
    #[serde(default)]
    pub kmeans_batches: Option<usize>,
    /// How the codebook learns.
    #[serde(default)]
    pub codebook_update: CodebookUpdate,
    /// The EMA's decay (with [`CodebookUpdate::Ema`]).
    #[serde(default = "default_ema_decay")]
    pub ema_decay: f64,
    /// The EMA's Laplace smoothing of the cluster sizes.
    #[serde(default = "default_ema_eps")]
    pub ema_eps: f64,
    /// How the learning rate moves after the warmup.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Steps of linear warmup from 0 to `lr`.
    #[serde(default)]
    pub warmup_steps: u64,
    /// The schedule's horizon: the `steps` of the run that started it (a resumed run
    /// may train past it, at the final rate).
    #[serde(default)]
    pub lr_horizon: u64,
    /// Mirror each training image left to right with probability 1/2, seeded.
    #[serde(default)]
    pub hflip: bool,
    /// Quantize dropout (SoundStream) for residual VQ: each step keeps only its first n
    /// stages, n drawn uniformly from 1 to S by the seed and the step.
    #[serde(default)]
    pub quantize_dropout: bool,
}

impl Settings {
    /// The residual stages step `step` (0-based) keeps of `stages`: all of them, or with
    /// [`Settings::quantize_dropout`] a number from 1 to `stages` that the seed and the
    /// step decide (so a resumed run draws what the straight run drew).
    pub fn active_stages(&self, step: u64, stages: usize) -> usize {
        if !self.quantize_dropout || stages <= 1 {
            return stages.max(1);
        }
        let mut rng =
            Rng::for_purpose(self.seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15), 0xd509);
        1 + rng.below(stages)
    }
}

/// The run folder's picture of held-out code usage ([`crate::images::save_code_usage`]).
pub const USAGE_FILE: &str = "code_usage.png";

/// Sonnet's and the paper's EMA decay.
pub const DEFAULT_EMA_DECAY: f64 = 0.99;
/// Sonnet's Laplace smoothing.
pub const DEFAULT_EMA_EPS: f64 = 1e-5;

/// Lloyd iterations of a k-means codebook initialisation.
pub const DEFAULT_KMEANS_ITERS: usize = 10;

fn default_kmeans_iters() -> usize {
    DEFAULT_KMEANS_ITERS
}

fn default_ema_decay() -> f64 {
    DEFAULT_EMA_DECAY
}

fn default_ema_eps() -> f64 {
    DEFAULT_EMA_EPS
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
    /// Perplexity of the codes the held-out images use, at the end.
    pub val_perplexity: Option<f64>,
    /// Codes the held-out images use at least once, at the end.
    pub val_codes_used: Option<usize>,
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
    /// Seconds a step spent summing gradients and metrics across ranks (0 alone).
    pub sum_seconds_per_step: f64,
}
