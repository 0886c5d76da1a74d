//! The EMA codebook of a training run: its statistics (DESIGN.md section 2's
//! `ema.cluster_size` and `ema.embed_sum`), where they start, and the update each step
//! records after the optimizer's.

use crate::checkpoint::Tensors;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::ema::ema_update_counted;
use crate::launch::Launch;
use crate::network::Vqvae;
use crate::params::Params;
use crate::tensor::{DType, Tensor};

/// The training-state names of the statistics.
pub const CLUSTER_SIZE: &str = "ema.cluster_size";
/// See [`CLUSTER_SIZE`].
pub const EMBED_SUM: &str = "ema.embed_sum";

/// The statistics and the update bound to them.
pub(crate) struct EmaCodebook {
    /// Decayed count of the encoder outputs assigned to each code `[K]`.
    pub cluster: Tensor,
    /// Decayed sum of the encoder outputs assigned to each code `[K, D]`.
    pub sums: Tensor,
    launch: Launch,
}

impl EmaCodebook {
    /// Binds the update of `params`' codebook from `net`'s encoder outputs and codes,
    /// counted by the training graph.
    pub fn new(gpu: &Gpu, net: &Vqvae, params: &Params, decay: f64, eps: f64) -> Result<Self> {
        let codebook = params.value("codebook.weight");
        let cluster = Tensor::zeros(gpu, &[net.config.codes], DType::F32)?;
        let sums = Tensor::zeros(gpu, codebook.shape(), DType::F32)?;
        let launch = ema_update_counted(
            gpu,
            &net.z_e,
            &net.indices,
            net.counts.as_ref().expect("training graph"),
            codebook,
            &cluster,
            &sums,
            decay as f32,
            eps as f32,
        )?;
        Ok(EmaCodebook {
            cluster,
            sums,
            launch,
        })
    }

    /// The update: record after the step's backward pass and optimizer.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// Starts the statistics from the codebook as it is now, every count 1.
    pub fn start_from_codebook(&self, gpu: &Gpu, params: &Params) -> Result<()> {
        let codebook = params.value("codebook.weight").to_f32(gpu)?;
        self.cluster
            .write(gpu, bytemuck::cast_slice(&vec![1.0f32; self.cluster.len()]))?;
        self.sums.write(gpu, bytemuck::cast_slice(&codebook))
    }

    /// The statistics by their training-state names.
    pub fn download(&self, gpu: &Gpu) -> Result<Tensors> {
        Ok(Tensors::from([
            (
                CLUSTER_SIZE.to_string(),
                (self.cluster.shape().to_vec(), self.cluster.to_f32(gpu)?),
            ),
            (
                EMBED_SUM.to_string(),
                (self.sums.shape().to_vec(), self.sums.to_f32(gpu)?),
            ),
        ]))
    }

    /// Restores the statistics a stopped run saved; `what` names the file for errors.
    pub fn restore(&self, gpu: &Gpu, saved: &Tensors, what: &str) -> Result<()> {
        for (name, tensor) in [(CLUSTER_SIZE, &self.cluster), (EMBED_SUM, &self.sums)] {
            let Some((shape, values)) = saved.get(name) else {
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
