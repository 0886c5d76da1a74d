//! Helpers the commands share: data and adapter flags, opening a GPU, loading a model,
//! decoding codes.

use std::path::{Path, PathBuf};

use clap::Args;
use vqvae_wgpu::checkpoint::TensorFile;
use vqvae_wgpu::data::{Dataset, LoadOptions};
use vqvae_wgpu::error::{Error, Result};
use vqvae_wgpu::gpu::{self, Gpu, GpuOptions};
use vqvae_wgpu::images;
use vqvae_wgpu::model::{Config, QuantizerKind};
use vqvae_wgpu::network::Vqvae;
use vqvae_wgpu::params::Params;

#[derive(Args, Default)]
pub(crate) struct AdapterArgs {
    /// Backends to search, comma-separated: vulkan, metal, dx12, gl [default:
    /// WGPU_BACKEND, else all].
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// Part of the adapter's name [default: WGPU_ADAPTER_NAME, else the best adapter].
    #[arg(long)]
    pub(crate) adapter: Option<String>,
}

impl AdapterArgs {
    /// wgpu's environment conventions, overridden by the flags given.
    pub(crate) fn options(&self) -> Result<GpuOptions> {
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
pub(crate) struct ShardArgs {
    /// Only slice I of N equal slices of the data, in data order (I from 0 to N-1), for
    /// job arrays: the slices' outputs, taken in order of I, are the whole data's.
    #[arg(long, value_name = "I/N")]
    pub(crate) shard: Option<String>,
}

impl ShardArgs {
    /// The images of `len` this shard takes: slice I holds images `I*len/N` up to
    /// `(I+1)*len/N`.
    pub(crate) fn range(&self, len: usize) -> Result<std::ops::Range<usize>> {
        let Some(text) = &self.shard else {
            return Ok(0..len);
        };
        let bad = |why: &str| Error::Usage(format!("--shard {text}: {why}"));
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| bad("expected I/N, e.g. 0/4"))?;
        let (i, n): (usize, usize) = (
            i.trim()
                .parse()
                .map_err(|_| bad("I must be a whole number"))?,
            n.trim()
                .parse()
                .map_err(|_| bad("N must be a whole number"))?,
        );
        if n == 0 || i >= n {
            return Err(bad("I counts from 0 to N-1, and N is at least 1"));
        }
        let at = |k: usize| (k as u128 * len as u128 / n as u128) as usize;
        Ok(at(i)..at(i + 1))
    }
}

#[derive(Args)]
pub(crate) struct DataArgs {
    /// A folder of images, an IDX file (.gz or not) or CIFAR-10 .bin batches; the
    /// built-in shapes when omitted.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Centre-crop and resize every image to this size (a multiple of 4).
    #[arg(long)]
    pub(crate) image_size: Option<usize>,
}

pub(crate) fn open_gpu() -> Result<Gpu> {
    open_gpu_with(&AdapterArgs::default())
}

/// Opens the adapter `adapter`'s flags (and wgpu's environment variables) choose, and
/// says which.
pub(crate) fn open_gpu_with(adapter: &AdapterArgs) -> Result<Gpu> {
    let gpu = Gpu::open_with(&adapter.options()?)?;
    eprintln!("adapter: {}", gpu::describe(gpu.info()));
    Ok(gpu)
}

/// A model checkpoint and the architecture its shapes describe.
pub(crate) fn load_model(path: &Path) -> Result<(TensorFile, Config)> {
    let file = TensorFile::read(path)?;
    let beta = file
        .metadata
        .get("beta")
        .and_then(|b| b.parse().ok())
        .unwrap_or(0.25);
    let quantizer =
        QuantizerKind::from_metadata(|k| file.metadata.get(k).cloned()).map_err(|message| {
            Error::Checkpoint {
                path: path.to_path_buf(),
                message,
            }
        })?;
    let config = Config::from_shapes(&file.shapes(), quantizer, beta, path)?;
    Ok((file, config))
}

/// Loads a checkpoint and the data for it, and builds an inference graph.
pub(crate) fn inference(
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
        None,
    )?;
    Ok((gpu, dataset, params, net))
}

/// Decodes code grids `[n, h, w]` (`[n, h, w, S]` for residual VQ; each code below K)
/// with the model in `file`, `batch` grids at a time, into 8-bit planar images of
/// `4h x 4w`.
pub(crate) fn decode_codes(
    gpu: &Gpu,
    file: &TensorFile,
    config: &Config,
    checkpoint: &Path,
    codes: &[u32],
    [h, w]: [usize; 2],
    batch: usize,
) -> Result<Vec<Vec<u8>>> {
    let per = h * w * config.quantizer.codes_per_position();
    let n = codes.len() / per;
    let params = Params::new(gpu, config.params())?;
    params.upload(
        gpu,
        &params.join(&file.values(), &checkpoint.display().to_string())?,
    )?;
    let batch = batch.min(n);
    let net = Vqvae::new(gpu, &params, config, batch, [4 * h, 4 * w], None)?;
    let image_len = config.channels * 16 * h * w;
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
