//! The EMA codebooks of a training run: their statistics (DESIGN.md section 2's
//! `ema.cluster_size` and `ema.embed_sum`, `ema.{s}.*` per residual stage), where they
//! start, and the update each step records after the optimizer's.

use crate::checkpoint::Tensors;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::ema::ema_update_parts;
use crate::launch::Launch;
use crate::network::Stage;
use crate::params::Params;
use crate::tensor::{DType, Tensor};

/// The training-state names of the statistics.
pub const CLUSTER_SIZE: &str = "ema.cluster_size";
/// See [`CLUSTER_SIZE`].
pub const EMBED_SUM: &str = "ema.embed_sum";

/// One codebook's statistics and the update bound to them.
pub(crate) struct EmaCodebook {
    /// The codebook's parameter name.
    codebook: String,
    /// What the statistics' training-state names begin with: `ema.` or `ema.{s}.`.
    prefix: String,
    /// Decayed count of the encoder outputs assigned to each code `[K]`.
    pub cluster: Tensor,
    /// Decayed sum of the encoder outputs assigned to each code `[K, D]`.
    pub sums: Tensor,
    /// The batch's per-code sums `[chunks, K, D]`, which ranks training together sum
    /// before the update.
    pub partial: Tensor,
    statistics: Launch,
    apply: Launch,
    launch: Launch,
}

impl EmaCodebook {
    /// Binds the update of `stage`'s codebook from its inputs and codes, counted by the
    /// training graph; `prefix` begins the statistics' names.
    pub fn new(
        gpu: &Gpu,
        stage: &Stage,
        prefix: String,
        params: &Params,
        decay: f64,
        eps: f64,
    ) -> Result<Self> {
        let codebook = params.value(&stage.codebook);
        let cluster = Tensor::zeros(gpu, &[codebook.shape()[0]], DType::F32)?;
        let sums = Tensor::zeros(gpu, codebook.shape(), DType::F32)?;
        let parts = ema_update_parts(
            gpu,
            &stage.input,
            &stage.codes,
            &stage.counts,
            codebook,
            &cluster,
            &sums,
            decay as f32,
            eps as f32,
        )?;
        Ok(EmaCodebook {
            codebook: stage.codebook.clone(),
            prefix,
            cluster,
            sums,
            partial: parts.partial,
            launch: parts.statistics.clone().then(parts.apply.clone()),
            statistics: parts.statistics,
            apply: parts.apply,
        })
    }

    /// The update: record after the step's backward pass and optimizer.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// The update's first half, the batch's statistics into `partial` (see
    /// [`crate::kernels::ema::EmaParts`]).
    pub fn statistics(&self) -> &Launch {
        &self.statistics
    }

    /// The update's second half, from `partial` and `counts`.
    pub fn apply(&self) -> &Launch {
        &self.apply
    }

    /// Starts the statistics from the codebook as it is now, every count 1.
    pub fn start_from_codebook(&self, gpu: &Gpu, params: &Params) -> Result<()> {
        let codebook = params.value(&self.codebook).to_f32(gpu)?;
        self.cluster
            .write(gpu, bytemuck::cast_slice(&vec![1.0f32; self.cluster.len()]))?;
        self.sums.write(gpu, bytemuck::cast_slice(&codebook))
    }

    /// The statistics' training-state names and tensors.
    fn named(&self) -> [(String, &Tensor); 2] {
        let name = |full: &str| format!("{}{}", self.prefix, &full["ema.".len()..]);
        [
            (name(CLUSTER_SIZE), &self.cluster),
            (name(EMBED_SUM), &self.sums),
        ]
    }

    /// The statistics by their training-state names.
    pub fn download(&self, gpu: &Gpu) -> Result<Tensors> {
        self.named()
            .into_iter()
            .map(|(name, t)| Ok((name, (t.shape().to_vec(), t.to_f32(gpu)?))))
            .collect()
    }

    /// Restores the statistics a stopped run saved; `what` names the file for errors.
    pub fn restore(&self, gpu: &Gpu, saved: &Tensors, what: &str) -> Result<()> {
        for (name, tensor) in self.named() {
            let Some((shape, values)) = saved.get(&name) else {
                return Err(Error::Usage(format!(
                    "{what} holds no {name}: it was not written by an EMA run"
                )));
            };
            if shape != tensor.shape() {
                return Err(Error::Usage(format!(
                    "{what}: {name} has shape {shape:?}, expected {:?}",
                    tensor.shape()
                )));
            }
            tensor.write(gpu, bytemuck::cast_slice(values))?;
        }
        Ok(())
    }
}
