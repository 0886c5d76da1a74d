//! Layers: a layer's parameters, its forward launch and its backward launch side by
//! side. A new layer is its forward and backward kernels wired here.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::causal_mask::{Mask, causal_mask};
use crate::kernels::conv::{self, ConvShape, Relu};
use crate::kernels::{elementwise, reduce};
use crate::launch::Launch;
use crate::params::Params;
use crate::tensor::{Tensor, zeros_f32 as zeros};

/// A convolution or transposed convolution with bias and fused ReLUs, optionally with
/// a causal mask on its weights (PixelCNN).
pub struct Conv {
    /// Geometry (for a transposed convolution, that of the convolution it transposes).
    pub shape: ConvShape,
    /// Whether this is a `ConvTranspose2d`.
    pub transposed: bool,
    /// ReLUs applied to the input as read and to the output as written.
    pub relu: Relu,
    /// The causal mask of a masked convolution.
    pub mask: Option<Mask>,
    w: Tensor,
    b: Tensor,
    dw: Tensor,
    db: Tensor,
}

impl Conv {
    /// The layer whose parameters are `name.weight` and `name.bias` in `params`.
    pub fn new(
        params: &Params,
        name: &str,
        shape: ConvShape,
        transposed: bool,
        relu: Relu,
    ) -> Conv {
        let w = format!("{name}.weight");
        let b = format!("{name}.bias");
        Conv {
            shape,
            transposed,
            relu,
            mask: None,
            w: params.value(&w).clone(),
            b: params.value(&b).clone(),
            dw: params.grad(&w).clone(),
            db: params.grad(&b).clone(),
        }
    }

    /// This convolution with its weights masked: the forward pass zeroes the masked
    /// taps before it convolves, and the backward pass zeroes their gradients, so the
    /// optimizer never moves them.
    pub fn masked(self, mask: Mask) -> Conv {
        Conv {
            mask: Some(mask),
            ..self
        }
    }

    /// The output shape for this layer's input.
    pub fn out_shape(&self) -> [usize; 4] {
        if self.transposed {
            self.shape.x_shape()
        } else {
            self.shape.y_shape()
        }
    }

    /// `y = layer(x)`.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Launch> {
        let conv = if self.transposed {
            conv::conv_transpose2d(gpu, &self.shape, x, &self.w, &self.b, y, self.relu)?
        } else {
            conv::conv2d(gpu, &self.shape, x, &self.w, &self.b, y, self.relu)?
        };
        match self.mask {
            Some(mask) => Ok(causal_mask(gpu, &self.w, mask)?.then(conv)),
            None => Ok(conv),
        }
    }

    /// Given the input `x` and the gradient `dy` at the output before its ReLU, writes
    /// the weight and bias gradients and, if asked, `dx`: the gradient at the input as
    /// the kernel read it (after any input ReLU, which the caller masks).
    pub fn backward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<&Tensor>,
    ) -> Result<Launch> {
        let s = &self.shape;
        let relu_in = self.relu.input;
        let mut launch = if self.transposed {
            conv::conv_transpose2d_weight_grad(gpu, s, x, dy, &self.dw, relu_in)?
        } else {
            conv::conv2d_weight_grad(gpu, s, x, dy, &self.dw, relu_in)?
        };
        if let Some(mask) = self.mask {
            launch = launch.then(causal_mask(gpu, &self.dw, mask)?);
        }
        launch = launch.then(reduce::channel_sum(gpu, dy, &self.db)?);
        if let Some(dx) = dx {
            launch = launch.then(if self.transposed {
                conv::conv_transpose2d_input_grad(gpu, s, dy, &self.w, dx)?
            } else {
                conv::conv2d_input_grad(gpu, s, dy, &self.w, dx)?
            });
        }
        Ok(launch)
    }
}

/// The sizes of a residual stack: `blocks` blocks on `[batch, channels, side]`
/// activations, each through `hidden` channels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResShape {
    pub channels: usize,
    pub hidden: usize,
    pub blocks: usize,
    pub batch: usize,
    pub side: [usize; 2],
    /// The causal mask of each block's 3x3 convolution, if any.
    pub mask: Option<Mask>,
}

/// `out = a + conv2(relu(conv1(relu(a))))`, with its activations: conv1 3x3
/// channels -> hidden, conv2 1x1 hidden -> channels.
pub(crate) struct ResBlock {
    pub conv1: Conv,
    pub conv2: Conv,
    /// relu(conv1(relu(a))).
    t: Tensor,
    /// conv2(t).
    u: Tensor,
}

impl ResBlock {
    fn new(gpu: &Gpu, params: &Params, prefix: &str, r: &ResShape) -> Result<ResBlock> {
        let (batch, side) = (r.batch, r.side);
        let shape = |cin, cout, k, pad| ConvShape::new(batch, cin, cout, side, k, 1, pad);
        let conv1 = Conv::new(
            params,
            &format!("{prefix}.conv1"),
            shape(r.channels, r.hidden, 3, 1),
            false,
            Relu::BOTH,
        );
        Ok(ResBlock {
            conv1: match r.mask {
                Some(mask) => conv1.masked(mask),
                None => conv1,
            },
            conv2: Conv::new(
                params,
                &format!("{prefix}.conv2"),
                shape(r.hidden, r.channels, 1, 0),
                false,
                Relu::NONE,
            ),
            t: zeros(gpu, &[batch, r.hidden, side[0], side[1]])?,
            u: zeros(gpu, &[batch, r.channels, side[0], side[1]])?,
        })
    }

    fn forward(&self, gpu: &Gpu, a: &Tensor, out: &Tensor) -> Result<Launch> {
        Ok(self
            .conv1
            .forward(gpu, a, &self.t)?
            .then(self.conv2.forward(gpu, &self.t, &self.u)?)
            .then(elementwise::add(gpu, a, &self.u, out)?))
    }
}

/// A residual stack's forward and backward: blocks, the activation between each pair,
/// and the gradient scratch of the backward pass.
pub(crate) struct ResStack {
    pub blocks: Vec<ResBlock>,
    /// acts[0] is the stack's input, acts[i + 1] block i's output.
    pub acts: Vec<Tensor>,
    /// grads[i]: the gradient at acts[i]; scratch for each block's backward pass.
    pub grads: Vec<Tensor>,
    scratch: Vec<[Tensor; 4]>,
}

impl ResStack {
    /// The stack of `r.blocks` blocks named `{prefix}.{i}`; with `train`, also the
    /// gradient buffers of its backward pass.
    pub fn new(
        gpu: &Gpu,
        params: &Params,
        prefix: &str,
        r: &ResShape,
        train: bool,
    ) -> Result<ResStack> {
        let act = [r.batch, r.channels, r.side[0], r.side[1]];
        let blocks = (0..r.blocks)
            .map(|i| ResBlock::new(gpu, params, &format!("{prefix}.{i}"), r))
            .collect::<Result<Vec<_>>>()?;
        let acts = (0..=r.blocks)
            .map(|_| zeros(gpu, &act))
            .collect::<Result<_>>()?;
        let (grads, scratch) = if train {
            let t = [r.batch, r.hidden, r.side[0], r.side[1]];
            (
                (0..=r.blocks)
                    .map(|_| zeros(gpu, &act))
                    .collect::<Result<_>>()?,
                (0..r.blocks)
                    .map(|_| {
                        Ok([
                            zeros(gpu, &t)?,
                            zeros(gpu, &t)?,
                            zeros(gpu, &act)?,
                            zeros(gpu, &act)?,
                        ])
                    })
                    .collect::<Result<_>>()?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(ResStack {
            blocks,
            acts,
            grads,
            scratch,
        })
    }

    /// The stack's input activation.
    pub fn input(&self) -> &Tensor {
        &self.acts[0]
    }

    /// The stack's output activation.
    pub fn output(&self) -> &Tensor {
        &self.acts[self.blocks.len()]
    }

    /// Every block, in order.
    pub fn forward(&self, gpu: &Gpu) -> Result<Launch> {
        let mut launch = Launch::default();
        for (i, b) in self.blocks.iter().enumerate() {
            launch = launch.then(b.forward(gpu, &self.acts[i], &self.acts[i + 1])?);
        }
        Ok(launch)
    }

    /// From the gradient at the output (`grads[L]`) to the gradient at the input (`grads[0]`).
    pub fn backward(&self, gpu: &Gpu) -> Result<Launch> {
        let mut launch = Launch::default();
        for (i, b) in self.blocks.iter().enumerate().rev() {
            let [dt, dt_pre, da_relu, da_branch] = &self.scratch[i];
            let d_out = &self.grads[i + 1];
            launch = launch
                .then(b.conv2.backward(gpu, &b.t, d_out, Some(dt))?)
                .then(elementwise::relu_backward(gpu, dt, &b.t, dt_pre)?)
                .then(
                    b.conv1
                        .backward(gpu, &self.acts[i], dt_pre, Some(da_relu))?,
                )
                .then(elementwise::relu_backward(
                    gpu,
                    da_relu,
                    &self.acts[i],
                    da_branch,
                )?)
                .then(elementwise::add(gpu, d_out, da_branch, &self.grads[i])?);
        }
        Ok(launch)
    }
}
