//! Same inputs, same adapter: same bits. The reductions that could depend on thread
//! timing (split-k weight gradients, per-code sums, tree sums) must not.

mod common;

use common::*;
use vqvae_wgpu::kernels::conv::{self, ConvShape};
use vqvae_wgpu::kernels::{loss, quantize, vq_backward};
use vqvae_wgpu::{DType, Gpu, Tensor};

/// Runs a weight gradient with split-k, the quantiser's backward pass over many chunks
/// and the loss from fresh buffers, and returns every output's bits.
fn outputs(gpu: &Gpu) -> Vec<Vec<u32>> {
    let mut rng = Rng::new(99);
    let s = ConvShape {
        batch: 8,
        cin: 5,
        cout: 6,
        hin: 32,
        win: 32,
        kh: 4,
        kw: 4,
        stride: 2,
        pad: 1,
    };
    let x = upload(gpu, &s.x_shape(), &rng.vec(s.x_shape().iter().product()));
    let dy = upload(gpu, &s.y_shape(), &rng.vec(s.y_shape().iter().product()));
    let dw = zeros(gpu, &s.w_shape());

    let zs = [8, 16, 8, 8];
    let n = 8 * 64;
    let ze = upload(gpu, &zs, &rng.vec(n * 16));
    let cb = upload(gpu, &[37, 16], &rng.vec(37 * 16));
    let (idx, dist, zq) = (
        Tensor::zeros(gpu, &[n], DType::U32).unwrap(),
        zeros(gpu, &[n]),
        zeros(gpu, &zs),
    );
    let gzq = upload(gpu, &zs, &rng.vec(n * 16));
    let (gze, gcb) = (zeros(gpu, &zs), zeros(gpu, &[37, 16]));
    let xs = [4, 3, 32, 32];
    let (x_hat, target) = (
        upload(gpu, &xs, &rng.vec(4 * 3 * 1024)),
        upload(gpu, &xs, &rng.vec(4 * 3 * 1024)),
    );
    let (grad, terms) = (zeros(gpu, &xs), zeros(gpu, &[4]));

    gpu.run(&[
        &conv::conv2d_weight_grad(gpu, &s, &x, &dy, &dw, true).unwrap(),
        &quantize::quantize(gpu, &ze, &cb, &idx, Some(&dist), Some(&zq)).unwrap(),
        &vq_backward::vq_backward(gpu, &ze, &zq, &idx, &cb, &gzq, 0.25, &gze, Some(&gcb)).unwrap(),
        &loss::vqvae_loss(
            gpu,
            &x_hat,
            &target,
            &dist,
            n * 16,
            0.25,
            true,
            &grad,
            &terms,
        )
        .unwrap(),
    ])
    .unwrap();
    [dw, dist, zq, gze, gcb, grad, terms]
        .iter()
        .map(|t| t.to_f32(gpu).unwrap().iter().map(|v| v.to_bits()).collect())
        .chain([idx.to_u32(gpu).unwrap()])
        .collect()
}

#[test]
fn two_runs_give_identical_bits() {
    for gpu in gpus() {
        assert_eq!(outputs(gpu), outputs(gpu), "{:?}", gpu.tuning());
    }
}
