//! The prior as a graph of launches for one batch size, forward and backward side by
//! side, on the layers the autoencoder uses.

use super::PriorConfig;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::causal_mask::Mask;
use crate::kernels::conv::{ConvShape, Relu};
use crate::kernels::{elementwise, embedding, reduce, softmax};
use crate::launch::Launch;
use crate::layers::{Conv, ResShape, ResStack};
use crate::params::Params;
use crate::tensor::{DType, Tensor, zeros_f32 as zeros};

/// The prior bound to its parameters for `batch` code grids.
pub struct PriorNet {
    /// The sizes.
    pub config: PriorConfig,
    /// Grids per batch.
    pub batch: usize,
    /// Codes `[batch * h * w]` (u32), grid after grid, row by row: the input, and the
    /// targets of the loss.
    pub codes: Tensor,
    /// One-hot class planes `[batch, classes, h, w]` (conditional priors).
    pub classes: Option<Tensor>,
    /// Logits `[batch, K, h, w]`.
    pub logits: Tensor,
    /// Each position's cross-entropy in nats `[batch * h * w]` (training graphs).
    pub losses: Option<Tensor>,
    /// The sum of `losses` `[1]` (training graphs).
    pub loss_sum: Option<Tensor>,
    /// The gradient at the logits, which the loss writes and the backward pass reads.
    pub d_logits: Option<Tensor>,
    /// The gradient at the code embedding `[batch, embed, h, w]`.
    pub d_embed: Option<Tensor>,
    /// Floating-point operations of the convolutions in one forward pass.
    pub forward_flops: f64,
    forward: Launch,
    loss: Option<Launch>,
    backward: Option<Launch>,
}

impl PriorNet {
    /// Builds the graph; with `train`, also the loss and the backward pass.
    pub fn new(
        gpu: &Gpu,
        params: &Params,
        config: &PriorConfig,
        batch: usize,
        train: bool,
    ) -> Result<PriorNet> {
        let c = config;
        let side = c.grid;
        let conv = |cin, cout, k: usize| ConvShape::new(batch, cin, cout, side, k, 1, k / 2);
        let conv_in = Conv::new(
            params,
            "conv_in",
            conv(c.embed, c.channels, c.first_kernel),
            false,
            Relu::NONE,
        )
        .masked(Mask::A);
        let cond = (c.classes > 0).then(|| {
            Conv::new(
                params,
                "cond",
                conv(c.classes, c.channels, 1),
                false,
                Relu::NONE,
            )
        });
        let stack = ResStack::new(
            gpu,
            params,
            "res",
            &ResShape {
                channels: c.channels,
                hidden: c.hidden,
                blocks: c.blocks,
                batch,
                side,
                mask: Some(Mask::B),
            },
            train,
        )?;
        let out1 = Conv::new(
            params,
            "out1",
            conv(c.channels, c.channels, 1),
            false,
            Relu::BOTH,
        );
        let out2 = Conv::new(
            params,
            "out2",
            conv(c.channels, c.codes, 1),
            false,
            Relu::NONE,
        );

        let rows = batch * side[0] * side[1];
        let plane = |ch| [batch, ch, side[0], side[1]];
        let codes = Tensor::zeros(gpu, &[rows], DType::U32)?;
        let classes = match cond {
            Some(_) => Some(zeros(gpu, &plane(c.classes))?),
            None => None,
        };
        let e = zeros(gpu, &plane(c.embed))?;
        let o1 = zeros(gpu, &plane(c.channels))?;
        let logits = zeros(gpu, &plane(c.codes))?;
        let table = params.value("embedding.weight");

        let mut forward = embedding::embedding(gpu, &codes, table, &e)?;
        // With classes, the stack's input is conv_in(e) + cond(one-hot classes).
        if let (Some(cond), Some(onehot)) = (&cond, &classes) {
            let (a, b) = (
                zeros(gpu, &plane(c.channels))?,
                zeros(gpu, &plane(c.channels))?,
            );
            forward = forward
                .then(conv_in.forward(gpu, &e, &a)?)
                .then(cond.forward(gpu, onehot, &b)?)
                .then(elementwise::add(gpu, &a, &b, stack.input())?);
        } else {
            forward = forward.then(conv_in.forward(gpu, &e, stack.input())?);
        }
        forward = forward
            .then(stack.forward(gpu)?)
            .then(out1.forward(gpu, stack.output(), &o1)?)
            .then(out2.forward(gpu, &o1, &logits)?);
        let forward_flops = [&conv_in, &out1, &out2]
            .iter()
            .map(|l| l.shape.flops())
            .chain(cond.iter().map(|l| l.shape.flops()))
            .chain(
                stack
                    .blocks
                    .iter()
                    .map(|b| b.conv1.shape.flops() + b.conv2.shape.flops()),
            )
            .sum();

        let (mut losses, mut loss_sum, mut d_logits, mut d_embed) = (None, None, None, None);
        let (mut loss, mut backward) = (None, None);
        if train {
            let (per, total) = (zeros(gpu, &[rows])?, zeros(gpu, &[1])?);
            let dl = zeros(gpu, logits.shape())?;
            let de = zeros(gpu, e.shape())?;
            let like = |t: &Tensor| zeros(gpu, t.shape());
            let (d_o1, d_o1_pre, d_top) = (like(&o1)?, like(&o1)?, like(stack.output())?);
            loss = Some(
                softmax::softmax_xent(gpu, &logits, &codes, &dl, &per)?
                    .then(reduce::sum(gpu, &per, &total)?),
            );
            let mut b = out2
                .backward(gpu, &o1, &dl, Some(&d_o1))?
                .then(elementwise::relu_backward(gpu, &d_o1, &o1, &d_o1_pre)?)
                .then(out1.backward(gpu, stack.output(), &d_o1_pre, Some(&d_top))?)
                .then(elementwise::relu_backward(
                    gpu,
                    &d_top,
                    stack.output(),
                    &stack.grads[c.blocks],
                )?)
                .then(stack.backward(gpu)?);
            if let (Some(cond), Some(onehot)) = (&cond, &classes) {
                b = b.then(cond.backward(gpu, onehot, &stack.grads[0], None)?);
            }
            b = b
                .then(conv_in.backward(gpu, &e, &stack.grads[0], Some(&de))?)
                .then(embedding::embedding_grad(
                    gpu,
                    &codes,
                    &de,
                    params.grad("embedding.weight"),
                )?);
            backward = Some(b);
            (losses, loss_sum, d_logits, d_embed) = (Some(per), Some(total), Some(dl), Some(de));
        }
        Ok(PriorNet {
            config: *c,
            batch,
            codes,
            classes,
            logits,
            losses,
            loss_sum,
            d_logits,
            d_embed,
            forward_flops,
            forward,
            loss,
            backward,
        })
    }

    /// Codes (and classes) to logits.
    pub fn forward(&self) -> &Launch {
        &self.forward
    }

    /// Cross-entropy against the input codes and its gradient at the logits (training
    /// graphs).
    pub fn loss(&self) -> Option<&Launch> {
        self.loss.as_ref()
    }

    /// From the gradient at the logits to every parameter's gradient and `d_embed`
    /// (training graphs).
    pub fn backward(&self) -> Option<&Launch> {
        self.backward.as_ref()
    }

    /// Writes the one-hot planes of `labels` (one per grid, at least one; the last
    /// repeats to fill the batch) into the class input of a conditional prior.
    pub fn set_classes(&self, gpu: &Gpu, labels: &[usize]) -> Result<()> {
        let Some(t) = &self.classes else {
            return Ok(());
        };
        let plane = self.config.grid[0] * self.config.grid[1];
        let classes = self.config.classes;
        if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
            return Err(Error::Usage(format!(
                "class {bad}: the prior knows classes 0..{}",
                classes - 1
            )));
        }
        let mut v = vec![0.0f32; t.len()];
        for b in 0..self.batch {
            let label = labels[b.min(labels.len() - 1)];
            let start = (b * classes + label) * plane;
            v[start..start + plane].fill(1.0);
        }
        t.write(gpu, bytemuck::cast_slice(&v))
    }
}
