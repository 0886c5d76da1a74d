//! The prior as a graph of launches for one batch size, forward and backward side by
//! side, on the layers the autoencoder uses.

use super::{PriorConfig, gated};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::causal_mask::Mask;
use crate::kernels::conv::{ConvShape, Relu};
use crate::kernels::{embedding, reduce, softmax};
use crate::launch::Launch;
use crate::layers::{Conv, InputGrad, ResShape, ResStack, StackGrads};
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
        let classes = match c.classes {
            0 => None,
            n => Some(zeros(gpu, &plane(n))?),
        };
        let e = zeros(gpu, &plane(c.embed))?;
        let d_e = if train {
            Some(zeros(gpu, e.shape())?)
        } else {
            None
        };
        let o1 = zeros(gpu, &plane(c.channels))?;
        let logits = zeros(gpu, &plane(c.codes))?;
        let table = params.value("embedding.weight");
        let input = BodyInput {
            params,
            config: c,
            batch,
            e: &e,
            classes: classes.as_ref(),
            d_e: d_e.as_ref(),
        };
        let body = if c.gated {
            gated::body(gpu, &input)?
        } else {
            residual_body(gpu, &input)?
        };
        let forward = embedding::embedding(gpu, &codes, table, &e)?
            .then(body.forward)
            .then(out1.forward(gpu, &body.top, &o1)?)
            .then(out2.forward(gpu, &o1, &logits)?);
        let forward_flops = body.flops + out1.shape.flops() + out2.shape.flops();

        let (mut losses, mut loss_sum, mut d_logits) = (None, None, None);
        let (mut loss, mut backward) = (None, None);
        if let (Some(de), Some(d_top), Some(body_backward)) = (&d_e, &body.d_top, body.backward) {
            let (per, total) = (zeros(gpu, &[rows])?, zeros(gpu, &[1])?);
            let dl = zeros(gpu, logits.shape())?;
            let like = |t: &Tensor| zeros(gpu, t.shape());
            let d_o1 = like(&o1)?;
            loss = Some(
                softmax::softmax_xent(gpu, &logits, &codes, &dl, &per)?
                    .then(reduce::sum(gpu, &per, &total)?),
            );
            backward = Some(
                out2.backward(gpu, &o1, &dl, Some(InputGrad::through_relu(&d_o1, &o1)))?
                    .then(out1.backward(
                        gpu,
                        &body.top,
                        &d_o1,
                        Some(InputGrad::through_relu(d_top, &body.top)),
                    )?)
                    .then(body_backward)
                    .then(embedding::embedding_grad(
                        gpu,
                        &codes,
                        de,
                        params.grad("embedding.weight"),
                    )?),
            );
            (losses, loss_sum, d_logits) = (Some(per), Some(total), Some(dl));
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
            d_embed: d_e,
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

/// What a prior's body (between the code embedding and the output layers) is built from.
pub(super) struct BodyInput<'a> {
    pub params: &'a Params,
    pub config: &'a PriorConfig,
    pub batch: usize,
    /// The embedded codes `[batch, embed, h, w]`.
    pub e: &'a Tensor,
    /// One-hot class planes (conditional priors).
    pub classes: Option<&'a Tensor>,
    /// Where the backward pass leaves the gradient at `e` (training graphs).
    pub d_e: Option<&'a Tensor>,
}

/// A prior's body: `e` (and the classes) to `top` `[batch, channels, h, w]`, and back.
pub(super) struct Body {
    pub forward: Launch,
    pub top: Tensor,
    /// The gradient at `top`, which the output layers' backward pass writes.
    pub d_top: Option<Tensor>,
    /// From `d_top` to the body's parameter gradients and `d_e`.
    pub backward: Option<Launch>,
    /// Floating-point operations of its convolutions, forward.
    pub flops: f64,
}

/// The original PixelCNN body: a mask-A convolution (plus a per-class bias), then
/// residual blocks whose 3x3 convolutions are under mask B.
fn residual_body(gpu: &Gpu, b: &BodyInput<'_>) -> Result<Body> {
    let (c, batch, side) = (b.config, b.batch, b.config.grid);
    let conv = |cin, cout, k: usize| ConvShape::new(batch, cin, cout, side, k, 1, k / 2);
    let conv_in = Conv::new(
        b.params,
        "conv_in",
        conv(c.embed, c.channels, c.first_kernel),
        false,
        Relu::NONE,
    )
    .masked(Mask::A);
    let cond = b.classes.map(|onehot| {
        let layer = Conv::new(
            b.params,
            "cond",
            conv(c.classes, c.channels, 1),
            false,
            Relu::NONE,
        );
        (layer, onehot)
    });
    let shape = ResShape {
        channels: c.channels,
        hidden: c.hidden,
        blocks: c.blocks,
        batch,
        side,
        mask: Some(Mask::B),
    };
    let stack = ResStack::new(
        gpu,
        b.params,
        "res",
        &shape,
        match b.d_e {
            Some(_) => Some(StackGrads::new(gpu, &shape)?),
            None => None,
        },
    )?;
    let plane = [batch, c.channels, side[0], side[1]];
    // With classes, the stack's input is conv_in(e) + cond(one-hot classes).
    let mut forward = match &cond {
        Some((layer, onehot)) => {
            let x = zeros(gpu, &plane)?;
            conv_in.forward(gpu, b.e, &x)?.then(layer.forward_plus(
                gpu,
                onehot,
                &x,
                stack.input(),
            )?)
        }
        None => conv_in.forward(gpu, b.e, stack.input())?,
    };
    forward = forward.then(stack.forward(gpu)?);
    let flops = conv_in.shape.flops()
        + cond.as_ref().map_or(0.0, |(l, _)| l.shape.flops())
        + stack
            .blocks
            .iter()
            .map(|r| r.conv1.shape.flops() + r.conv2.shape.flops())
            .sum::<f64>();
    let backward = match b.d_e {
        Some(de) => {
            let mut launch = stack.backward(gpu)?;
            if let Some((layer, onehot)) = &cond {
                launch = launch.then(layer.backward(gpu, onehot, &stack.grads[0], None)?);
            }
            Some(launch.then(conv_in.backward(
                gpu,
                b.e,
                &stack.grads[0],
                Some(InputGrad::into(de)),
            )?))
        }
        None => None,
    };
    Ok(Body {
        forward,
        top: stack.output().clone(),
        d_top: stack.grads.last().cloned(),
        backward,
        flops,
    })
}
