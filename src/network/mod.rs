//! The VQ-VAE as a graph of launches for one batch size: every activation, gradient
//! and launch made once, then replayed each step with no allocation.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::conv::{ConvShape, Relu};
use crate::kernels::loss;
use crate::launch::Launch;
use crate::layers::{Conv, InputGrad, ResShape, ResStack, StackGrads};
use crate::model::Config;
use crate::params::Params;
use crate::tensor::{Tensor, zeros_f32 as zeros};

mod latent;

use latent::Latent;
pub use latent::Stage;

/// How the codebook learns in a training graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum CodebookUpdate {
    /// By its gradient, `mean((sg[z_e] - z_q)^2)` in the loss, through the optimizer.
    #[default]
    Gradient,
    /// By exponential moving averages of the encoder outputs assigned to each code
    /// (Sonnet's `VectorQuantizerEMA`): the codebook term leaves the loss and the
    /// codebook gets no gradient; the training loop runs the update.
    Ema,
}

/// The VQ-VAE bound to its parameters for `batch` images of one size.
pub struct Vqvae {
    /// The model's sizes.
    pub config: Config,
    /// Images per batch.
    pub batch: usize,
    /// Input `[batch, C, height, width]`, scaled as DESIGN.md says.
    pub x: Tensor,
    /// Reconstruction, the shape of `x`.
    pub x_hat: Tensor,
    /// Encoder output `[batch, D, height / 4, width / 4]`.
    pub z_e: Tensor,
    /// Quantised latents, the shape of `z_e`.
    pub z_q: Tensor,
    /// Codes `[batch * height / 4 * width / 4, P]`, image by image, row by row; P is
    /// residual VQ's S stages, else 1.
    pub indices: Tensor,
    /// Each position's joint code `[batch * height / 4 * width / 4]`, below
    /// [`Config::symbols`]: the codes themselves when P = 1.
    pub symbols: Tensor,
    /// `[loss, reconstruction, codebook term, commitment term]` (training graphs).
    pub terms: Option<Tensor>,
    /// `[perplexity, codes in use]` of the batch (training graphs).
    pub usage: Option<Tensor>,
    /// How often each joint code was chosen in the batch `[symbols]` (u32; training
    /// graphs).
    pub counts: Option<Tensor>,
    /// Each codebook's input, codes and counts (training graphs; none for FSQ).
    pub stages: Vec<Stage>,
    /// Floating-point operations of the convolutions in one forward pass.
    pub forward_flops: f64,
    /// Floating-point operations of the convolutions in one training step (forward,
    /// weight gradients, input gradients).
    pub train_flops: f64,
    encode: Launch,
    decode: Launch,
    gather: Launch,
    train: Option<Launch>,
    /// For a residual-VQ training graph, `[encode, loss and backward]` with 1 to S - 1
    /// active stages.
    dropout: Vec<[Launch; 2]>,
}

impl Vqvae {
    /// Builds the graph: with `train`, also the loss, code usage and backward pass,
    /// for a codebook that learns as `train` says.
    pub fn new(
        gpu: &Gpu,
        params: &Params,
        config: &Config,
        batch: usize,
        [height, width]: [usize; 2],
        train: Option<CodebookUpdate>,
    ) -> Result<Vqvae> {
        let c = config;
        let (hh, h) = (c.hidden / 2, c.hidden);
        let half = [height / 2, width / 2];
        let side = [height / 4, width / 4];
        let conv = |cin, cout, size, k, stride, pad| {
            ConvShape::new(batch, cin, cout, size, k, stride, pad)
        };
        let enc1 = Conv::new(
            params,
            "encoder.conv1",
            conv(c.channels, hh, [height, width], 4, 2, 1),
            false,
            Relu::OUTPUT,
        );
        let enc2 = Conv::new(
            params,
            "encoder.conv2",
            conv(hh, h, half, 4, 2, 1),
            false,
            Relu::OUTPUT,
        );
        let enc3 = Conv::new(
            params,
            "encoder.conv3",
            conv(h, h, side, 3, 1, 1),
            false,
            Relu::NONE,
        );
        let pre_vq = Conv::new(
            params,
            "pre_vq",
            conv(h, c.code_dim, side, 1, 1, 0),
            false,
            Relu::INPUT,
        );
        let dec1 = Conv::new(
            params,
            "decoder.conv1",
            conv(c.code_dim, h, side, 3, 1, 1),
            false,
            Relu::NONE,
        );
        let deconv1 = Conv::new(
            params,
            "decoder.deconv1",
            ConvShape::transposed(batch, h, hh, side, 4, 2, 1)?,
            true,
            Relu::BOTH,
        );
        let deconv2 = Conv::new(
            params,
            "decoder.deconv2",
            ConvShape::transposed(batch, hh, c.channels, half, 4, 2, 1)?,
            true,
            Relu::NONE,
        );
        let res = ResShape {
            channels: h,
            hidden: c.res_hidden,
            blocks: c.res_layers,
            batch,
            side,
            mask: None,
        };
        // The decoder's backward pass ends before the encoder's begins: the two stacks
        // share their gradient buffers.
        let stack_grads = if train.is_some() {
            Some(StackGrads::new(gpu, &res)?)
        } else {
            None
        };
        let enc_res = ResStack::new(gpu, params, "encoder.res", &res, stack_grads.clone())?;
        let dec_res = ResStack::new(gpu, params, "decoder.res", &res, stack_grads)?;

        let x = zeros(gpu, &[batch, c.channels, height, width])?;
        let h1 = zeros(gpu, &enc1.out_shape())?;
        let h2 = zeros(gpu, &enc2.out_shape())?;
        let z_e = zeros(gpu, &pre_vq.out_shape())?;
        let z_q = zeros(gpu, &pre_vq.out_shape())?;
        let latent = Latent::new(gpu, params, c, [&z_e, &z_q], train.is_some())?;
        let g1 = zeros(gpu, &deconv1.out_shape())?;
        let x_hat = zeros(gpu, &deconv2.out_shape())?;

        let res_flops: f64 = enc_res
            .blocks
            .iter()
            .chain(&dec_res.blocks)
            .map(|b| b.conv1.shape.flops() + b.conv2.shape.flops())
            .sum();
        let forward_flops = res_flops
            + [&enc1, &enc2, &enc3, &pre_vq, &dec1, &deconv1, &deconv2]
                .iter()
                .map(|l| l.shape.flops())
                .sum::<f64>();
        // Every layer has a weight gradient; all but the first an input gradient.
        let train_flops = 3.0 * forward_flops - enc1.shape.flops();

        let encoder = enc1
            .forward(gpu, &x, &h1)?
            .then(enc2.forward(gpu, &h1, &h2)?)
            .then(enc3.forward(gpu, &h2, enc_res.input())?)
            .then(enc_res.forward(gpu)?)
            .then(pre_vq.forward(gpu, enc_res.output(), &z_e)?);
        let encode = encoder.clone().then(latent.forward.clone());
        let decode = dec1
            .forward(gpu, &z_q, dec_res.input())?
            .then(dec_res.forward(gpu)?)
            .then(deconv1.forward(gpu, dec_res.output(), &g1)?)
            .then(deconv2.forward(gpu, &g1, &x_hat)?);

        let (mut terms, mut usage, mut train_launch) = (None, None, None);
        let mut dropout = Vec::new();
        if let Some(update) = train {
            let by_gradient = update == CodebookUpdate::Gradient;
            let t = zeros(gpu, &[4])?;
            let u = zeros(gpu, &[2])?;
            let like = |t: &Tensor| zeros(gpu, t.shape());
            let (dx_hat, dz_q, dz_e, dh2) = (like(&x_hat)?, like(&z_q)?, like(&z_e)?, like(&h2)?);
            // The gradients at g1 and at h1 have one shape, and the first is dead before
            // the second is written.
            let dg1 = like(&g1)?;
            let dh1 = &dg1;
            let (enc_top, dec_top) = (&enc_res.grads[c.res_layers], &dec_res.grads[c.res_layers]);
            // Every input gradient below is stored through the ReLU that made or read
            // the layer's input: no ReLU-backward passes.
            let relu = InputGrad::through_relu;
            let head = loss::vqvae_loss(
                gpu,
                &x_hat,
                &x,
                &latent.dist,
                z_e.len(),
                c.beta,
                by_gradient,
                &dx_hat,
                &t,
            )?
            .then(latent.usage(gpu, &u)?)
            .then(deconv2.backward(gpu, &g1, &dx_hat, Some(relu(&dg1, &g1)))?)
            .then(deconv1.backward(
                gpu,
                dec_res.output(),
                &dg1,
                Some(relu(dec_top, dec_res.output())),
            )?)
            .then(dec_res.backward(gpu)?)
            .then(dec1.backward(
                gpu,
                &z_q,
                &dec_res.grads[0],
                Some(InputGrad::into(&dz_q)),
            )?);
            let tail = pre_vq
                .backward(
                    gpu,
                    enc_res.output(),
                    &dz_e,
                    Some(relu(enc_top, enc_res.output())),
                )?
                .then(enc_res.backward(gpu)?)
                .then(enc3.backward(gpu, &h2, &enc_res.grads[0], Some(relu(&dh2, &h2)))?)
                .then(enc2.backward(gpu, &h1, &dh2, Some(relu(dh1, &h1)))?)
                .then(enc1.backward(gpu, &x, dh1, None)?);
            let step = |active: usize| -> Result<Launch> {
                let latent_grad = latent.backward(
                    gpu,
                    params,
                    active,
                    [&z_e, &z_q],
                    &dz_q,
                    c.beta,
                    &dz_e,
                    by_gradient,
                )?;
                Ok(head.clone().then(latent_grad).then(tail.clone()))
            };
            let launch = step(latent.stages.len().max(1))?;
            // Residual VQ's steps with fewer stages, for quantize dropout.
            for active in 1..latent.stages.len() {
                dropout.push([
                    encoder.clone().then(latent.forward_with(active)?),
                    step(active)?,
                ]);
            }
            terms = Some(t);
            usage = Some(u);
            train_launch = Some(launch);
        }
        Ok(Vqvae {
            config: *c,
            batch,
            x,
            x_hat,
            z_e,
            z_q,
            indices: latent.codes,
            symbols: latent.symbols,
            terms,
            usage,
            counts: latent.counts,
            stages: latent.stages,
            forward_flops,
            train_flops,
            encode,
            decode,
            gather: latent.gather,
            train: train_launch,
            dropout,
        })
    }

    /// Encoder and quantiser: `x` to `z_e`, `indices` and `z_q`.
    pub fn encode(&self) -> &Launch {
        &self.encode
    }

    /// Decoder: `z_q` to `x_hat`.
    pub fn decode(&self) -> &Launch {
        &self.decode
    }

    /// Code vectors of `indices` into `z_q`.
    pub fn gather(&self) -> &Launch {
        &self.gather
    }

    /// Loss, code usage and every gradient (after [`Vqvae::encode`] and
    /// [`Vqvae::decode`]); `None` for an inference graph.
    pub fn loss_and_backward(&self) -> Option<&Launch> {
        self.train.as_ref()
    }

    /// [`Vqvae::encode`] and [`Vqvae::loss_and_backward`] of a training step whose
    /// residual VQ keeps only its first `active` stages (quantize dropout: the others
    /// find their codes but add nothing to `z_q`, the loss or the gradients). `None` past
    /// the graph's stages or for an inference graph; all stages are the plain step.
    pub fn with_stages(&self, active: usize) -> Option<[&Launch; 2]> {
        let train = self.train.as_ref()?;
        match active.checked_sub(1).and_then(|i| self.dropout.get(i)) {
            Some([encode, step]) => Some([encode, step]),
            None if active == self.stages.len().max(1) => Some([&self.encode, train]),
            None => None,
        }
    }
}
