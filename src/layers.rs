//! Layers: a layer's parameters, its forward launch and its backward launch side by
//! side. A new layer is its forward and backward kernels wired here.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::causal_mask::{Mask, causal_mask};
use crate::kernels::conv::{self, ConvShape, Epilogue, Relu};
use crate::kernels::reduce;
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
        self.forward_with(gpu, x, y, Epilogue::NONE)
    }

    /// `y = layer(x) + add`: a residual connection, added as the result is stored.
    pub fn forward_plus(&self, gpu: &Gpu, x: &Tensor, add: &Tensor, y: &Tensor) -> Result<Launch> {
        let epilogue = Epilogue {
            add: Some(add),
            ..Epilogue::NONE
        };
        self.forward_with(gpu, x, y, epilogue)
    }

    fn forward_with(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        epilogue: Epilogue<'_>,
    ) -> Result<Launch> {
        let (s, w, b, relu) = (&self.shape, &self.w, &self.b, self.relu);
        let conv = if self.transposed {
            conv::conv_transpose2d(gpu, s, x, w, b, y, relu, epilogue)?
        } else {
            conv::conv2d(gpu, s, x, w, b, y, relu, epilogue)?
        };
        match self.mask {
            Some(mask) => Ok(causal_mask(gpu, &self.w, mask)?.then(conv)),
            None => Ok(conv),
        }
    }

    /// Given the input `x` and the gradient `dy` at the output before its ReLU, writes
    /// the weight and bias gradients and, if asked, the gradient at the input as the
    /// kernel read it ([`InputGrad`]: through the ReLU that made or read `x`, if the
    /// caller asks, and plus another gradient).
    pub fn backward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<InputGrad<'_>>,
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
        if let Some(InputGrad { dx, epilogue }) = dx {
            launch = launch.then(if self.transposed {
                conv::conv_transpose2d_input_grad(gpu, s, dy, &self.w, dx, epilogue)?
            } else {
                conv::conv2d_input_grad(gpu, s, dy, &self.w, dx, epilogue)?
            });
        }
        Ok(launch)
    }
}

/// Where a layer's backward pass writes the gradient at its input, and what it fuses
/// into writing it (no separate ReLU-backward or add pass).
#[derive(Clone, Copy, Debug)]
pub struct InputGrad<'a> {
    /// The gradient at the input.
    pub dx: &'a Tensor,
    /// Done to it as it is stored.
    pub epilogue: Epilogue<'a>,
}

impl<'a> InputGrad<'a> {
    /// The gradient at the input as the kernel read it, into `dx`.
    pub fn into(dx: &'a Tensor) -> InputGrad<'a> {
        InputGrad {
            dx,
            epilogue: Epilogue::NONE,
        }
    }

    /// The gradient through the ReLU that made (or read) the layer's input `x`: zero
    /// where `x` is not positive.
    pub fn through_relu(dx: &'a Tensor, x: &'a Tensor) -> InputGrad<'a> {
        InputGrad {
            dx,
            epilogue: Epilogue {
                gate: Some(x),
                add: None,
            },
        }
    }

    /// This gradient plus `other`, where two gradients meet at a fork.
    pub fn plus(self, other: &'a Tensor) -> InputGrad<'a> {
        InputGrad {
            epilogue: Epilogue {
                add: Some(other),
                ..self.epilogue
            },
            ..self
        }
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
        })
    }

    fn forward(&self, gpu: &Gpu, a: &Tensor, out: &Tensor) -> Result<Launch> {
        Ok(self
            .conv1
            .forward(gpu, a, &self.t)?
            .then(self.conv2.forward_plus(gpu, &self.t, a, out)?))
    }
}

/// The gradient buffers of a residual stack's backward pass. Two stacks of one shape
/// whose backward passes run one after the other (the decoder's, then the encoder's)
/// can share them: each is dead once its stack's input gradient has been read.
#[derive(Clone)]
pub(crate) struct StackGrads {
    /// `at[i]`: the gradient at the stack's activation `i`.
    at: Vec<Tensor>,
    /// Inside a block, the gradient before its 3x3 convolution's output ReLU; the
    /// blocks run one after another and share it.
    hidden: Tensor,
}

impl StackGrads {
    /// Buffers for a stack of `r`'s shape.
    pub fn new(gpu: &Gpu, r: &ResShape) -> Result<StackGrads> {
        let act = [r.batch, r.channels, r.side[0], r.side[1]];
        Ok(StackGrads {
            at: (0..=r.blocks)
                .map(|_| zeros(gpu, &act))
                .collect::<Result<_>>()?,
            hidden: zeros(gpu, &[r.batch, r.hidden, r.side[0], r.side[1]])?,
        })
    }
}

/// A residual stack's forward and backward: blocks, the activation between each pair,
/// and the gradient buffers of the backward pass.
pub(crate) struct ResStack {
    pub blocks: Vec<ResBlock>,
    /// acts[0] is the stack's input, acts[i + 1] block i's output.
    pub acts: Vec<Tensor>,
    /// grads[i]: the gradient at acts[i] (training graphs).
    pub grads: Vec<Tensor>,
    hidden: Option<Tensor>,
}

impl ResStack {
    /// The stack of `r.blocks` blocks named `{prefix}.{i}`; with `grads` (training),
    /// the buffers of its backward pass.
    pub fn new(
        gpu: &Gpu,
        params: &Params,
        prefix: &str,
        r: &ResShape,
        grads: Option<StackGrads>,
    ) -> Result<ResStack> {
        let act = [r.batch, r.channels, r.side[0], r.side[1]];
        let blocks = (0..r.blocks)
            .map(|i| ResBlock::new(gpu, params, &format!("{prefix}.{i}"), r))
            .collect::<Result<Vec<_>>>()?;
        let acts = (0..=r.blocks)
            .map(|_| zeros(gpu, &act))
            .collect::<Result<_>>()?;
        let (grads, hidden) = match grads {
            Some(g) => (g.at, Some(g.hidden)),
            None => (Vec::new(), None),
        };
        Ok(ResStack {
            blocks,
            acts,
            grads,
            hidden,
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

    /// From the gradient at the output (`grads[L]`) to the gradient at the input
    /// (`grads[0]`): per block, two input gradients whose stores apply the ReLUs'
    /// gradients and the residual fork's sum.
    pub fn backward(&self, gpu: &Gpu) -> Result<Launch> {
        let hidden = self.hidden.as_ref().expect("a training stack");
        let mut launch = Launch::default();
        for (i, b) in self.blocks.iter().enumerate().rev() {
            let (a, d_out) = (&self.acts[i], &self.grads[i + 1]);
            let d_a = InputGrad::through_relu(&self.grads[i], a).plus(d_out);
            launch = launch
                .then(b.conv2.backward(
                    gpu,
                    &b.t,
                    d_out,
                    Some(InputGrad::through_relu(hidden, &b.t)),
                )?)
                .then(b.conv1.backward(gpu, a, hidden, Some(d_a))?);
        }
        Ok(launch)
    }
}
