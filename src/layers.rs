//! Layers: a layer's parameters, its forward launch and its backward launch side by
//! side. A new layer is its forward and backward kernels wired here.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::conv::{self, ConvShape, Relu};
use crate::kernels::reduce;
use crate::launch::Launch;
use crate::params::Params;
use crate::tensor::Tensor;

/// A convolution or transposed convolution with bias and fused ReLUs.
pub struct Conv {
    /// Geometry (for a transposed convolution, that of the convolution it transposes).
    pub shape: ConvShape,
    /// Whether this is a `ConvTranspose2d`.
    pub transposed: bool,
    /// ReLUs applied to the input as read and to the output as written.
    pub relu: Relu,
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
            w: params.value(&w).clone(),
            b: params.value(&b).clone(),
            dw: params.grad(&w).clone(),
            db: params.grad(&b).clone(),
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
        if self.transposed {
            conv::conv_transpose2d(gpu, &self.shape, x, &self.w, &self.b, y, self.relu)
        } else {
            conv::conv2d(gpu, &self.shape, x, &self.w, &self.b, y, self.relu)
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
