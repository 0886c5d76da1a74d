//! A run's files: the model checkpoint and the training state beside it (optimizer
//! moments, EMA statistics, code usage, step, settings and the kernel tuning), written
//! atomically together, and read back by `--resume`.

use std::collections::HashMap;
use std::path::Path;

use crate::checkpoint::{MODEL_FILE, STATE_FILE, TensorFile, write_together};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::launch::Tuning;
use crate::model::Config;
use crate::params::Params;

use super::Settings;
use super::step::TrainStep;

/// The model checkpoint's metadata key for the image size it was trained at (`HxW`).
pub const IMAGE_SIZE_KEY: &str = "image_size";

/// The training state's metadata key for the kernel tuning the run used (JSON).
pub const TUNING_KEY: &str = "tuning";

/// The training-state tensor holding code usage since the last restart (one codebook;
/// `codebook_usage.{s}` for each of several).
const WINDOW_TENSOR: &str = "codebook_usage";

/// The name of codebook `s`'s usage window among `stages` codebooks.
fn window_name(s: usize, stages: usize) -> String {
    match stages {
        1 => WINDOW_TENSOR.to_string(),
        _ => format!("{WINDOW_TENSOR}.{s}"),
    }
}

/// Model metadata stored in the checkpoint (strings, as safetensors requires).
fn model_metadata(config: &Config, step: u64, [h, w]: [usize; 2]) -> HashMap<String, String> {
    let mut metadata = HashMap::from([
        ("format".to_string(), "vqvae-wgpu".to_string()),
        ("beta".to_string(), config.beta.to_string()),
        ("step".to_string(), step.to_string()),
        (IMAGE_SIZE_KEY.to_string(), format!("{h}x{w}")),
    ]);
    metadata.extend(config.quantizer.metadata());
    metadata
}

/// Writes a run's checkpoint and training state into its output folder.
pub(super) struct Saver<'a> {
    pub gpu: &'a Gpu,
    pub params: &'a Params,
    pub config: &'a Config,
    pub settings: &'a Settings,
    pub out: &'a Path,
    pub image: [usize; 2],
    /// Whether this process writes (rank 0 of several; the others save nothing).
    pub write: bool,
}

impl Saver<'_> {
    /// Saves the state of `train` after `step` steps (on the writing rank).
    pub fn save(&self, step: u64, train: &TrainStep) -> Result<()> {
        if !self.write {
            return Ok(());
        }
        let named = |flat: &crate::tensor::Tensor, prefix: &str| {
            self.params.download_named(self.gpu, flat, prefix)
        };
        let mut state = TensorFile {
            tensors: HashMap::new(),
            metadata: HashMap::from([
                ("step".to_string(), step.to_string()),
                (
                    "settings".to_string(),
                    serde_json::to_string(self.settings).expect("settings serialise"),
                ),
                (
                    TUNING_KEY.to_string(),
                    serde_json::to_string(&self.gpu.tuning()).expect("tuning serialises"),
                ),
            ]),
        };
        for (s, window) in train.windows.iter().enumerate() {
            let usage = window
                .to_u32(self.gpu)?
                .into_iter()
                .map(|c| c as f32)
                .collect();
            state.tensors.insert(
                window_name(s, train.windows.len()),
                (vec![self.config.codes], usage),
            );
        }
        if let Some((m, v)) = train.update.moments() {
            state.tensors.extend(named(m, "exp_avg.")?);
            state.tensors.extend(named(v, "exp_avg_sq.")?);
        }
        for e in &train.ema {
            state.tensors.extend(e.download(self.gpu)?);
        }
        let model = TensorFile {
            tensors: named(self.params.flat_values(), "")?,
            metadata: model_metadata(self.config, step, self.image),
        };
        write_together(&[
            (&model, &self.out.join(MODEL_FILE)),
            (&state, &self.out.join(STATE_FILE)),
        ])
    }
}

/// Restores a stopped run's optimizer moments and code usage into `train`; returns its
/// step.
pub(super) fn restore(
    gpu: &Gpu,
    state: &TensorFile,
    params: &Params,
    train: &TrainStep,
) -> Result<u64> {
    for (s, window) in train.windows.iter().enumerate() {
        if let Some((_, usage)) = state.tensors.get(&window_name(s, train.windows.len())) {
            let counts: Vec<u32> = usage.iter().map(|&c| c as u32).collect();
            window.write(gpu, bytemuck::cast_slice(&counts))?;
        }
    }
    if let Some((m, v)) = train.update.moments() {
        let values = state.values();
        for (tensor, prefix) in [(m, "exp_avg."), (v, "exp_avg_sq.")] {
            params.upload_named(gpu, tensor, &values, prefix, "training state")?;
        }
    }
    for e in &train.ema {
        e.restore(gpu, &state.tensors, "the training state")?;
    }
    Ok(state
        .metadata
        .get("step")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// The tuning a stopped run used (`None` for state written before tunings were saved),
/// or an error naming `path` when it is unreadable.
pub fn saved_tuning(state: &TensorFile, path: &Path) -> Result<Option<Tuning>> {
    let Some(text) = state.metadata.get(TUNING_KEY) else {
        return Ok(None);
    };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("its saved kernel tuning is unreadable: {e}"),
        })
}
