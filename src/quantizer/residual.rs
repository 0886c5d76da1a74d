//! Residual vector quantisation as a component: S nearest-code stages chained in one
//! compute pass of your encoder, each on the residual the stages before it left.

use std::sync::Mutex;

use super::Layout;
use super::bindings::{
    BindingKey, Cache, check, check_config, input_shape, key_of, record_in_new_pass, slot, view,
};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::rvq::{self, Outputs};
use crate::launch::Launch;
use crate::tensor::{DType, Tensor};

/// What a [`ResidualQuantizer`] quantises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidualConfig {
    /// Codes per stage K.
    pub codes: u32,
    /// Vector dimension D.
    pub dim: u32,
    /// Stages S (at least 1; one stage is plain VQ, bit for bit).
    pub stages: u32,
    /// Layout of the input (and of the quantised output).
    pub layout: Layout,
    /// One `[K, D]` codebook for every stage, rather than `[S, K, D]`, one per stage.
    pub shared_codebook: bool,
}

/// The buffers of one residual quantisation: `n` input vectors, the codebooks and at
/// least one output.
#[derive(Clone, Debug)]
pub struct ResidualBindings<'a> {
    /// Number of vectors.
    pub n: u32,
    /// The vectors (f32).
    pub input: wgpu::BufferBinding<'a>,
    /// The codebooks (f32): `[S, K, D]`, stage after stage, or `[K, D]` when shared.
    pub codebook: wgpu::BufferBinding<'a>,
    /// Where each vector's codes go, stage by stage: `[n, S]` (u32).
    pub codes: Option<wgpu::BufferBinding<'a>>,
    /// Where the sum of each vector's code vectors goes (the input's layout).
    pub quantized: Option<wgpu::BufferBinding<'a>>,
    /// Where each vector's squared distance to that sum goes (f32, `[n]`).
    pub distances: Option<wgpu::BufferBinding<'a>>,
}

type LaunchKey = (u32, [BindingKey; 5]);

/// Residual VQ recorded into your command encoder: stage s finds the nearest of its
/// codebook's codes to `r_s` (`r_0` the input, `r_{s+1} = r_s - e_{c_s}`), and the output
/// is the codes `[n, S]` and the sum of the S code vectors. The stages follow one another
/// on the GPU with no read-back.
///
/// Dispatches, scratch buffers (one residual, each stage's codes) and their caching work
/// as [`Quantizer`](super::Quantizer)'s: built on first use or by
/// [`ResidualQuantizer::prepare`], the last [`super::CACHED_BINDINGS`] binding sets kept.
/// Separate codebooks whose stage size (K x D x 4 bytes) is not a multiple of the
/// device's storage-offset alignment are copied into an aligned stack of the
/// quantiser's own by the first dispatch of each record.
pub struct ResidualQuantizer {
    gpu: Gpu,
    config: ResidualConfig,
    launches: Mutex<Cache<LaunchKey>>,
}

impl ResidualQuantizer {
    /// A residual quantiser on your device. Errors if K, D or S is zero or the codebooks
    /// would not fit one storage binding.
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        config: ResidualConfig,
    ) -> Result<ResidualQuantizer> {
        let op = "ResidualQuantizer";
        let gpu = Gpu::from_device(device.clone(), queue.clone());
        let sizes = [config.codes, config.dim, config.stages];
        check_config(&gpu, op, sizes, codebook_bytes(&config), config.layout)?;
        Ok(ResidualQuantizer {
            gpu,
            config,
            launches: Mutex::new(Cache::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> ResidualConfig {
        self.config
    }

    /// The crate's view of your device, for the kernels that work on [`Tensor`]s over
    /// your buffers ([`Tensor::from_buffer`]): decoding codes
    /// ([`crate::kernels::rvq::decode`]), k-means of residuals
    /// ([`crate::kernels::kmeans`]), the backward pass ([`crate::kernels::rvq::backward`]).
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Builds (and keeps) the dispatches for `b` without recording them.
    pub fn prepare(&self, b: &ResidualBindings<'_>) -> Result<()> {
        self.launch(b).map(drop)
    }

    /// Records the quantisation into a compute pass of `encoder`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        b: &ResidualBindings<'_>,
    ) -> Result<()> {
        record_in_new_pass(encoder, "residual quantize", &self.launch(b)?);
        Ok(())
    }

    /// Records the quantisation into a compute pass you have begun.
    pub fn record_in_pass(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        b: &ResidualBindings<'_>,
    ) -> Result<()> {
        self.launch(b)?.record(pass);
        Ok(())
    }

    /// How many binding sets have their dispatches kept.
    pub fn cached(&self) -> usize {
        let cache = self.launches.lock().unwrap_or_else(|p| p.into_inner());
        cache.len()
    }

    fn launch(&self, b: &ResidualBindings<'_>) -> Result<Launch> {
        let key = (
            b.n,
            [
                Some(&b.input),
                Some(&b.codebook),
                b.codes.as_ref(),
                b.quantized.as_ref(),
                b.distances.as_ref(),
            ]
            .map(key_of),
        );
        let mut cache = self.launches.lock().unwrap_or_else(|p| p.into_inner());
        cache.get_or_build(key, || self.build(b))
    }

    fn build(&self, b: &ResidualBindings<'_>) -> Result<Launch> {
        let op = "ResidualQuantizer::record";
        let c = &self.config;
        let (n, dim, codes, stages) = (
            b.n as usize,
            c.dim as usize,
            c.codes as usize,
            c.stages as usize,
        );
        if n == 0 {
            return Err(Error::shape(op, "n is 0: nothing to quantise"));
        }
        if b.codes.is_none() && b.quantized.is_none() && b.distances.is_none() {
            return Err(Error::shape(
                op,
                "no output given: pass codes, quantized or distances",
            ));
        }
        let vectors = n as u64 * dim as u64 * 4;
        let books = if c.shared_codebook { 1 } else { stages };
        let book_holds = if c.shared_codebook {
            format!("one shared codebook of {codes} codes of dimension {dim}")
        } else {
            format!("{stages} codebooks of {codes} codes of dimension {dim}")
        };
        let rows_of = |what: &str| format!("{n} vectors of dimension {dim}{what}");
        check(
            &self.gpu,
            op,
            &[
                slot("input", Some(&b.input), vectors, rows_of(""), false),
                slot(
                    "codebook",
                    Some(&b.codebook),
                    codebook_bytes(c),
                    book_holds,
                    false,
                ),
                slot(
                    "codes",
                    b.codes.as_ref(),
                    n as u64 * stages as u64 * 4,
                    format!("{n} vectors' u32 codes for {stages} stages"),
                    true,
                ),
                slot(
                    "quantized",
                    b.quantized.as_ref(),
                    vectors,
                    rows_of(""),
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
        let shape = input_shape(&self.gpu, op, c.layout, n, dim)?;
        let gpu = &self.gpu;
        let input = view(gpu, &b.input, 0, &shape, DType::F32)?;
        let (launch, books) = self.codebooks(b, books)?;
        let stage_books: Vec<&Tensor> = (0..stages).map(|s| &books[s % books.len()]).collect();
        let output = |binding: &Option<wgpu::BufferBinding<'_>>, shape: &[usize], dtype| {
            binding.as_ref().map_or_else(
                || Tensor::zeros(gpu, shape, dtype),
                |x| view(gpu, x, 0, shape, dtype),
            )
        };
        let codes_out = output(&b.codes, &[n, stages], DType::U32)?;
        let quantized = output(&b.quantized, &shape, DType::F32)?;
        let distances = b
            .distances
            .as_ref()
            .map(|d| view(gpu, d, 0, &[n], DType::F32))
            .transpose()?;
        let outputs = Outputs {
            codes: &codes_out,
            quantized: &quantized,
            stage_distances: None,
            distances: distances.as_ref(),
        };
        let rvq = rvq::residual_quantize(gpu, &input, &stage_books, &outputs, false)?;
        Ok(launch.then(rvq.launch))
    }

    /// Each stage's codebook as a tensor: views of the caller's binding where every
    /// stage starts at an aligned offset, else views of an aligned copy and the dispatch
    /// that makes it.
    fn codebooks(&self, b: &ResidualBindings<'_>, books: usize) -> Result<(Launch, Vec<Tensor>)> {
        let gpu = &self.gpu;
        let (codes, dim) = (self.config.codes as usize, self.config.dim as usize);
        let per_book = codes * dim;
        let align = gpu.limits().min_storage_buffer_offset_alignment as usize / 4;
        if books == 1 || per_book.is_multiple_of(align) {
            let views = (0..books)
                .map(|s| {
                    view(
                        gpu,
                        &b.codebook,
                        (s * per_book * 4) as u64,
                        &[codes, dim],
                        DType::F32,
                    )
                })
                .collect::<Result<_>>()?;
            return Ok((Launch::default(), views));
        }
        let stride = per_book.next_multiple_of(align);
        let source = view(gpu, &b.codebook, 0, &[books * per_book], DType::F32)?;
        let stacked = Tensor::zeros(gpu, &[books * stride], DType::F32)?;
        let launch = rvq::stack_codebooks(gpu, &source, [books, codes, dim], &stacked, stride)?;
        let views = (0..books)
            .map(|s| {
                Tensor::from_buffer(
                    gpu,
                    stacked.buffer().clone(),
                    stacked.offset() + (s * stride * 4) as u64,
                    &[codes, dim],
                    DType::F32,
                )
            })
            .collect::<Result<_>>()?;
        Ok((launch, views))
    }
}

/// The bytes of the codebooks `config` names.
fn codebook_bytes(config: &ResidualConfig) -> u64 {
    let books = if config.shared_codebook {
        1
    } else {
        config.stages
    };
    u64::from(books) * u64::from(config.codes) * u64::from(config.dim) * 4
}
