//! The k nearest codes of each vector through the [`Quantizer`] component, for
//! re-ranking and beam search: never the N x K distance matrix, and k = 1 is the nearest
//! code's fast path.

use super::Quantizer;
use super::bindings::{BindingKey, check, input_shape, key_of, record_in_new_pass, slot, view};
use crate::error::{Error, Result};
use crate::kernels::{quantize, topk};
use crate::launch::Launch;
use crate::tensor::{DType, Tensor};

/// The buffers of one top-k search: `n` input vectors, the `[codes, dim]` codebook, and
/// the `[n, k]` outputs, nearest first, ties to the lowest index.
#[derive(Clone, Debug)]
pub struct TopKBindings<'a> {
    /// Number of vectors.
    pub n: u32,
    /// Codes per vector, 1 to [`topk::MAX_K`] and at most the codebook's.
    pub k: u32,
    /// The vectors (f32).
    pub input: wgpu::BufferBinding<'a>,
    /// The codebook (f32, `[codes, dim]`).
    pub codebook: wgpu::BufferBinding<'a>,
    /// Each vector's k nearest codes, `[n, k]` (u32).
    pub indices: wgpu::BufferBinding<'a>,
    /// Their squared distances (under [`super::Metric::Cosine`], `2 - 2 cos`), `[n, k]`
    /// (f32), if wanted.
    pub distances: Option<wgpu::BufferBinding<'a>>,
}

/// What the top-k dispatches are cached by.
pub(super) type TopKKey = (u32, u32, [BindingKey; 4]);

impl Quantizer {
    /// Records the search for each vector's k nearest codes into a compute pass of
    /// `encoder`. Its dispatches are cached as [`Quantizer::record`]'s are.
    pub fn record_top_k(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        b: &TopKBindings<'_>,
    ) -> Result<()> {
        record_in_new_pass(encoder, "top-k codes", &self.top_k_launch(b)?);
        Ok(())
    }

    /// Records the top-k search into a compute pass you have begun.
    pub fn record_top_k_in_pass(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        b: &TopKBindings<'_>,
    ) -> Result<()> {
        self.top_k_launch(b)?.record(pass);
        Ok(())
    }

    /// Builds (and keeps) the top-k dispatches for `b` without recording them.
    pub fn prepare_top_k(&self, b: &TopKBindings<'_>) -> Result<()> {
        self.top_k_launch(b).map(drop)
    }

    fn top_k_launch(&self, b: &TopKBindings<'_>) -> Result<Launch> {
        let key = (
            b.n,
            b.k,
            [
                Some(&b.input),
                Some(&b.codebook),
                Some(&b.indices),
                b.distances.as_ref(),
            ]
            .map(key_of),
        );
        let mut cache = self
            .top_k_launches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        cache.get_or_build(key, || self.build_top_k(b))
    }

    fn build_top_k(&self, b: &TopKBindings<'_>) -> Result<Launch> {
        let op = "Quantizer::record_top_k";
        let (n, k) = (b.n as usize, b.k as usize);
        let (dim, codes) = (self.config.dim as usize, self.config.codes as usize);
        if n == 0 {
            return Err(Error::shape(op, "n is 0: nothing to search for"));
        }
        if k == 0 || k > codes.min(topk::MAX_K) {
            return Err(Error::shape(
                op,
                format!(
                    "k {k}: must be from 1 to {} (the {codes} codes, at most {})",
                    codes.min(topk::MAX_K),
                    topk::MAX_K
                ),
            ));
        }
        let vectors = (n * dim * 4) as u64;
        let listed = (n * k * 4) as u64;
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
                    Some(&b.indices),
                    listed,
                    format!("{n} x {k} u32 indices"),
                    true,
                ),
                slot(
                    "distances",
                    b.distances.as_ref(),
                    listed,
                    format!("{n} x {k} f32 distances"),
                    true,
                ),
            ],
        )?;
        let shape = input_shape(&self.gpu, op, self.config.layout, n, dim)?;
        let gpu = &self.gpu;
        let mut launch = Launch::default();
        let codebook = self.searched(
            &mut launch,
            view(gpu, &b.codebook, 0, &[codes, dim], DType::F32)?,
        )?;
        let z = self.searched(&mut launch, view(gpu, &b.input, 0, &shape, DType::F32)?)?;
        // k = 1 is the nearest-code search, its [n] outputs the [n, 1] lists.
        let listed: &[usize] = if k == 1 { &[n] } else { &[n, k] };
        let distances = match &b.distances {
            Some(d) => view(gpu, d, 0, listed, DType::F32)?,
            None => Tensor::zeros(gpu, listed, DType::F32)?,
        };
        let indices = view(gpu, &b.indices, 0, listed, DType::U32)?;
        let search = match k {
            1 => quantize::quantize(gpu, &z, &codebook, &indices, Some(&distances), None)?,
            _ => topk::top_k(gpu, &z, &codebook, k, &indices, &distances)?,
        };
        Ok(launch.then(search))
    }
}
