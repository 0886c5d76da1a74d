//! The quantiser inside a graph, between the encoder's `z_e` and the decoder's `z_q`:
//! one codebook, residual VQ's stages or FSQ's levels, with its backward pass, its code
//! counts and a view of each codebook for the training loop's per-codebook updates.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::fsq::Fsq;
use crate::kernels::rvq::{self, Outputs, ResidualVq};
use crate::kernels::{codes, quantize, vq_backward};
use crate::launch::Launch;
use crate::model::{Config, QuantizerKind};
use crate::params::Params;
use crate::tensor::{DType, Tensor, zeros_f32 as zeros};

/// One codebook of a training graph, for what works per codebook: the EMA update,
/// restarts of dead codes, initialisation from data.
pub struct Stage {
    /// The codebook's parameter name.
    pub codebook: String,
    /// What it quantises, `[batch, D, h, w]`: `z_e`, or the residual the stages before
    /// it left.
    pub input: Tensor,
    /// Its codes `[rows]` (u32).
    pub codes: Tensor,
    /// How often each of its codes was chosen in the batch `[K]` (u32).
    pub counts: Tensor,
}

enum Kind {
    Vq,
    /// The stages, and the joint codes' dispatch after them.
    Rvq(ResidualVq, Launch),
    Fsq(Fsq),
}

/// The quantiser bound to a graph's tensors.
pub(super) struct Latent {
    kind: Kind,
    /// `z_e` to `z_q`, `codes` and `symbols`.
    pub forward: Launch,
    /// `codes` to `z_q`.
    pub gather: Launch,
    /// Codes `[rows, P]`: P = S for residual VQ, else 1.
    pub codes: Tensor,
    /// Each position's joint code `[rows]` (the codes themselves when P = 1).
    pub symbols: Tensor,
    /// The squared distances whose sum over `z_e`'s elements is the codebook term: per
    /// row, per row and stage, or one zero for FSQ.
    pub dist: Tensor,
    /// How often each joint code was chosen in the batch `[symbols]` (training graphs).
    pub counts: Option<Tensor>,
    /// The codebooks (training graphs).
    pub stages: Vec<Stage>,
}

impl Latent {
    /// Binds the quantiser `config` names between `z_e` and `z_q`; with `train`, also
    /// the per-codebook views and counts a training step needs.
    pub fn new(
        gpu: &Gpu,
        params: &Params,
        config: &Config,
        [z_e, z_q]: [&Tensor; 2],
        train: bool,
    ) -> Result<Latent> {
        let rows = z_e.len() / config.code_dim;
        let codebooks: Vec<&Tensor> = (0..config.quantizer.codebooks())
            .map(|s| params.value(&config.quantizer.codebook_name(s)))
            .collect();
        let u32s = |shape: &[usize]| Tensor::zeros(gpu, shape, DType::U32);
        let joint_counts = train
            .then(|| u32s(&[config.symbols() as usize]))
            .transpose()?;
        // One codebook's counts are the joint ones; residual stages count their own.
        let stage = |s: usize, input: &Tensor, codes: &Tensor| -> Result<Stage> {
            Ok(Stage {
                codebook: config.quantizer.codebook_name(s),
                input: input.clone(),
                codes: codes.clone(),
                counts: match (&config.quantizer, &joint_counts) {
                    (QuantizerKind::Vq, Some(c)) => c.clone(),
                    _ => u32s(&[config.codes])?,
                },
            })
        };
        Ok(match config.quantizer {
            QuantizerKind::Vq => {
                let codes = u32s(&[rows])?;
                let dist = zeros(gpu, &[rows])?;
                let cb = codebooks[0];
                Latent {
                    forward: quantize::quantize(gpu, z_e, cb, &codes, Some(&dist), Some(z_q))?,
                    gather: quantize::gather(gpu, &codes, cb, z_q)?,
                    stages: match train {
                        true => vec![stage(0, z_e, &codes)?],
                        false => Vec::new(),
                    },
                    kind: Kind::Vq,
                    counts: joint_counts,
                    symbols: codes.clone(),
                    codes,
                    dist,
                }
            }
            QuantizerKind::Rvq { stages } => {
                let codes = u32s(&[rows, stages])?;
                let dist = zeros(gpu, &[rows, stages])?;
                let outputs = Outputs {
                    codes: &codes,
                    quantized: z_q,
                    stage_distances: Some(&dist),
                    distances: None,
                };
                let rvq = rvq::residual_quantize(gpu, z_e, &codebooks, &outputs, train)?;
                let symbols = u32s(&[rows])?;
                let stages = match train {
                    true => (0..stages)
                        .map(|s| stage(s, &rvq.residuals[s], &rvq.stage_codes[s]))
                        .collect::<Result<_>>()?,
                    false => Vec::new(),
                };
                let joint = rvq::joint_codes(gpu, &codes, config.codes, &symbols)?;
                Latent {
                    forward: rvq.launch.clone().then(joint.clone()),
                    gather: rvq::decode(gpu, &codes, &codebooks, z_q)?,
                    kind: Kind::Rvq(rvq, joint),
                    counts: joint_counts,
                    codes,
                    symbols,
                    dist,
                    stages,
                }
            }
            QuantizerKind::Fsq(levels) => {
                let fsq = Fsq::new(gpu, levels.as_slice())?;
                let codes = u32s(&[rows])?;
                Latent {
                    forward: fsq.quantize(gpu, z_e, z_q, &codes)?,
                    gather: fsq.decode(gpu, &codes, z_q)?,
                    kind: Kind::Fsq(fsq),
                    counts: joint_counts,
                    symbols: codes.clone(),
                    codes,
                    dist: zeros(gpu, &[1])?,
                    stages: Vec::new(),
                }
            }
        })
    }

    /// [`Latent::forward`] with only the first `active` residual stages adding to `z_q`
    /// and the loss (quantize dropout); other quantisers have one stage.
    pub fn forward_with(&self, active: usize) -> Result<Launch> {
        match &self.kind {
            Kind::Rvq(rvq, joint) => Ok(rvq.with_stages(active)?.then(joint.clone())),
            _ => Ok(self.forward.clone()),
        }
    }

    /// Counts the joint codes into `counts` and writes `usage` `[perplexity, codes in
    /// use]`; counts each residual stage's codes into its stage's counts.
    pub fn usage(&self, gpu: &Gpu, usage: &Tensor) -> Result<Launch> {
        let counts = self.counts.as_ref().expect("a training graph");
        let mut launch = codes::code_usage(gpu, &self.symbols, counts, usage)?;
        if let Kind::Rvq(..) = self.kind {
            let ignored = zeros(gpu, &[2])?;
            for s in &self.stages {
                launch = launch.then(codes::code_usage(gpu, &s.codes, &s.counts, &ignored)?);
            }
        }
        Ok(launch)
    }

    /// The gradient at `z_e` from the decoder's at `z_q`, passed straight through, with
    /// each codebook's commitment gradient; and the codebooks' gradients when they
    /// learn by gradient. Residual VQ differentiates its first `active` stages (those
    /// [`Latent::forward_with`] kept).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        gpu: &Gpu,
        params: &Params,
        active: usize,
        [z_e, z_q]: [&Tensor; 2],
        grad_zq: &Tensor,
        beta: f32,
        grad_ze: &Tensor,
        by_gradient: bool,
    ) -> Result<Launch> {
        let value = |s: &Stage| params.value(&s.codebook);
        let grad = |s: &Stage| params.grad(&s.codebook);
        match &self.kind {
            Kind::Vq => {
                let s = &self.stages[0];
                vq_backward::vq_backward(
                    gpu,
                    z_e,
                    z_q,
                    &s.codes,
                    value(s),
                    grad_zq,
                    beta,
                    grad_ze,
                    by_gradient.then(|| grad(s)),
                )
            }
            Kind::Rvq(rvq, _) => {
                let books: Vec<&Tensor> = self.stages.iter().map(value).collect();
                let grads: Option<Vec<&Tensor>> =
                    by_gradient.then(|| self.stages.iter().map(grad).collect());
                let grads = grads.as_deref();
                rvq::backward(gpu, rvq, active, &books, grad_zq, beta, grad_ze, grads)
            }
            Kind::Fsq(fsq) => fsq.backward(gpu, z_e, grad_zq, grad_ze),
        }
    }
}
