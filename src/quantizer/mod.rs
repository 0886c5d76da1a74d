//! Nearest-code vector quantisation as a component for other wgpu programs: your device
//! and queue, your buffers (any binding offsets the device allows), your command encoder.

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::quantize;
use crate::launch::Launch;
use crate::tensor::{DType, Tensor};

mod bindings;
mod residual;
mod top_k;

pub use bindings::CACHED_BINDINGS;
use bindings::{
    BindingKey, Cache, check, check_config, key_of, plane, record_in_new_pass, slot, view,
};
pub use residual::{ResidualBindings, ResidualConfig, ResidualQuantizer};
pub use top_k::TopKBindings;
use top_k::TopKKey;

type LaunchKey = (u32, [BindingKey; 5]);

/// How the input vectors lie in their buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// A row-major `[n, dim]` matrix.
    Rows,
    /// Channels-first feature maps `[batch, dim, h, w]` with `plane = h * w`; vector
    /// `r` is pixel `r % plane` of image `r / plane`.
    ChannelsFirst {
        /// Pixels per feature map, `h * w`.
        plane: u32,
    },
}

/// What "nearest" means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Euclidean distance.
    #[default]
    L2,
    /// The angle: inputs and codebook are L2-normalised first (into buffers of the
    /// quantiser's own; yours are only read), so the quantised output is the normalised
    /// code and the distances are `2 - 2 cos`.
    Cosine,
}

/// What a [`Quantizer`] quantises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantizerConfig {
    /// Codebook size K.
    pub codes: u32,
    /// Vector dimension D.
    pub dim: u32,
    /// Layout of the input (and of the quantised output).
    pub layout: Layout,
    /// What "nearest" means.
    pub metric: Metric,
}

/// The buffers of one quantisation: `n` input vectors, the `[codes, dim]` codebook, and
/// at least one output: code indices (`u32`, `[n]`), quantised vectors (the input's
/// layout) or squared distances (`f32`, `[n]`).
#[derive(Clone, Debug)]
pub struct QuantizeBindings<'a> {
    /// Number of vectors.
    pub n: u32,
    /// The vectors (f32).
    pub input: wgpu::BufferBinding<'a>,
    /// The codebook (f32, `[codes, dim]`).
    pub codebook: wgpu::BufferBinding<'a>,
    /// Where each vector's nearest code goes.
    pub indices: Option<wgpu::BufferBinding<'a>>,
    /// Where each vector's code vector goes.
    pub quantized: Option<wgpu::BufferBinding<'a>>,
    /// Where each vector's squared distance to its code goes.
    pub distances: Option<wgpu::BufferBinding<'a>>,
}

/// Nearest-code quantisation recorded into your command encoder, and the k nearest codes
/// of each vector ([`Quantizer::record_top_k`]).
///
/// Pipelines are built once per device; the dispatches for a set of bindings are built
/// on first use (or by [`Quantizer::prepare`], so that a frame loop never waits on a
/// shader compile) and replayed after, so recording the same buffers again allocates
/// nothing. The dispatches of the last [`CACHED_BINDINGS`] binding sets are kept, and
/// each holds its buffers alive until it is dropped: per-frame buffers are released
/// once that many other sets have been recorded, or with the `Quantizer`.
///
/// An output may not share a buffer with any other binding (wgpu tracks a writable
/// storage binding per buffer, not per range): such bindings are an error of `record`.
///
/// ```no_run
/// # fn demo(device: &wgpu::Device, queue: &wgpu::Queue, vectors: &wgpu::Buffer, codebook: &wgpu::Buffer, codes: &wgpu::Buffer) -> vqvae_wgpu::Result<()> {
/// use vqvae_wgpu::quantizer::{Layout, Metric, QuantizeBindings, Quantizer, QuantizerConfig};
///
/// let config = QuantizerConfig { codes: 256, dim: 3, layout: Layout::Rows, metric: Metric::L2 };
/// let quantizer = Quantizer::new(device, queue, config)?;
/// let mut encoder = device.create_command_encoder(&Default::default());
/// quantizer.record(&mut encoder, &QuantizeBindings {
///     n: 1024,
///     input: vectors.as_entire_buffer_binding(),
///     codebook: codebook.as_entire_buffer_binding(),
///     indices: Some(codes.as_entire_buffer_binding()),
///     quantized: None,
///     distances: None,
/// })?;
/// queue.submit([encoder.finish()]);
/// # Ok(()) }
/// ```
pub struct Quantizer {
    gpu: Gpu,
    config: QuantizerConfig,
    launches: Mutex<Cache<LaunchKey>>,
    top_k_launches: Mutex<Cache<TopKKey>>,
}

impl Quantizer {
    /// A quantiser on your device. Errors if K or D is zero, the codebook would not fit
    /// one storage binding or a channels-first plane is empty.
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        config: QuantizerConfig,
    ) -> Result<Quantizer> {
        let gpu = Gpu::from_device(device.clone(), queue.clone());
        let bytes = u64::from(config.codes) * u64::from(config.dim) * 4;
        check_config(
            &gpu,
            "Quantizer",
            [config.codes, config.dim, 1],
            bytes,
            config.layout,
        )?;
        Ok(Quantizer {
            gpu,
            config,
            launches: Mutex::new(Cache::default()),
            top_k_launches: Mutex::new(Cache::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> QuantizerConfig {
        self.config
    }

    /// The crate's view of your device, for the training-side kernels that work on
    /// [`Tensor`]s over your buffers ([`Tensor::from_buffer`]): the straight-through and
    /// codebook gradients ([`crate::kernels::vq_backward`]) and the EMA codebook update
    /// ([`crate::kernels::ema`]). Their launches record into your compute passes too.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Builds (and keeps) the dispatches for `b` without recording them: the pipelines
    /// compile here rather than at the first [`Quantizer::record`].
    pub fn prepare(&self, b: &QuantizeBindings<'_>) -> Result<()> {
        self.launch(b).map(drop)
    }

    /// Records the quantisation into a compute pass of `encoder`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        b: &QuantizeBindings<'_>,
    ) -> Result<()> {
        record_in_new_pass(encoder, "quantize", &self.launch(b)?);
        Ok(())
    }

    /// Records the quantisation into a compute pass you have begun.
    pub fn record_in_pass(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        b: &QuantizeBindings<'_>,
    ) -> Result<()> {
        self.launch(b)?.record(pass);
        Ok(())
    }

    fn launch(&self, b: &QuantizeBindings<'_>) -> Result<Launch> {
        let key = (
            b.n,
            [
                Some(&b.input),
                Some(&b.codebook),
                b.indices.as_ref(),
                b.quantized.as_ref(),
                b.distances.as_ref(),
            ]
            .map(key_of),
        );
        let mut cache = self.launches.lock().unwrap_or_else(|p| p.into_inner());
        cache.get_or_build(key, || self.build(b))
    }

    /// How many binding sets have their nearest-code dispatches kept (top-k searches keep
    /// up to [`CACHED_BINDINGS`] of their own).
    pub fn cached(&self) -> usize {
        let cache = self.launches.lock().unwrap_or_else(|p| p.into_inner());
        cache.len()
    }

    fn build(&self, b: &QuantizeBindings<'_>) -> Result<Launch> {
        let op = "Quantizer::record";
        let (n, dim, codes) = (
            b.n as usize,
            self.config.dim as usize,
            self.config.codes as usize,
        );
        if n == 0 {
            return Err(Error::shape(op, "n is 0: nothing to quantise"));
        }
        if b.indices.is_none() && b.quantized.is_none() && b.distances.is_none() {
            return Err(Error::shape(
                op,
                "no output given: pass indices, quantized or distances",
            ));
        }
        let vectors = (n * dim * 4) as u64;
        check(
            &self.gpu,
            op,
            &[
                slot(
                    "input",
                    Some(&b.input),
                    vectors,
                    format!("{n} vectors of dimension {dim}"),
                    false,
                ),
                slot(
                    "codebook",
                    Some(&b.codebook),
                    (codes * dim * 4) as u64,
                    format!("{codes} codes of dimension {dim}"),
                    false,
                ),
                slot(
                    "indices",
                    b.indices.as_ref(),
                    n as u64 * 4,
                    format!("{n} u32 indices"),
                    true,
                ),
                slot(
                    "quantized",
                    b.quantized.as_ref(),
                    vectors,
                    format!("{n} vectors of dimension {dim}"),
                    true,
                ),
                slot(
                    "distances",
                    b.distances.as_ref(),
                    n as u64 * 4,
                    format!("{n} f32 distances"),
                    true,
                ),
            ],
        )?;
        let plane = plane(op, self.config.layout, n)?;
        // Inputs larger than one storage binding are quantised in chunks of whole feature
        // maps (rows, for row-major input) whose byte offsets stay 256-aligned.
        let unit = plane * (64 / gcd(plane, 64));
        let limit = self.gpu.limits().max_storage_buffer_binding_size as usize;
        let chunk = ((limit / (dim * 4)) / unit * unit).max(unit).min(n);
        let view = |binding, offset, shape: &[usize], dtype| {
            view(&self.gpu, binding, offset, shape, dtype)
        };
        let mut launch = Launch::default();
        let codebook = self.searched(
            &mut launch,
            view(&b.codebook, 0, &[codes, dim], DType::F32)?,
        )?;
        for first in (0..n).step_by(chunk) {
            let rows = chunk.min(n - first);
            let shape: Vec<usize> = if plane == 1 {
                vec![rows, dim]
            } else {
                vec![rows / plane, dim, plane, 1]
            };
            let (row_offset, one_offset) = ((first * dim * 4) as u64, (first * 4) as u64);
            let z = self.searched(&mut launch, view(&b.input, row_offset, &shape, DType::F32)?)?;
            let indices = match &b.indices {
                Some(i) => view(i, one_offset, &[rows], DType::U32)?,
                None => Tensor::zeros(&self.gpu, &[rows], DType::U32)?,
            };
            let quantized = b
                .quantized
                .as_ref()
                .map(|q| view(q, row_offset, &shape, DType::F32))
                .transpose()?;
            let distances = b
                .distances
                .as_ref()
                .map(|d| view(d, one_offset, &[rows], DType::F32))
                .transpose()?;
            launch = launch.then(quantize::quantize(
                &self.gpu,
                &z,
                &codebook,
                &indices,
                distances.as_ref(),
                quantized.as_ref(),
            )?);
        }
        Ok(launch)
    }
}

impl Quantizer {
    /// The vectors the search compares: `t` itself, or under [`Metric::Cosine`] its
    /// L2-normalised copy, whose dispatch joins `launch`.
    fn searched(&self, launch: &mut Launch, t: Tensor) -> Result<Tensor> {
        if self.config.metric != Metric::Cosine {
            return Ok(t);
        }
        let normalized = Tensor::zeros(&self.gpu, t.shape(), DType::F32)?;
        let normalize = quantize::normalize(&self.gpu, &t, &normalized)?;
        *launch = std::mem::take(launch).then(normalize);
        Ok(normalized)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
