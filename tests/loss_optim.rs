//! Loss, reductions, element-wise kernels and optimizers against the references.

mod common;

use common::*;
use vqvae_wgpu::kernels::optim::{Adam, AdamConfig, Sgd};
use vqvae_wgpu::kernels::{elementwise, loss, reduce};
use vqvae_wgpu::reference::{self, loss as rl, optim as ro};

#[test]
fn loss_terms_and_gradient_match_reference() {
    let gpu = gpu();
    // x: [batch, channels, h, w]; z_e rows with their nearest codes' vectors.
    for (i, &(xs, rows, dim)) in [
        (&[1usize, 1, 4, 4][..], 1usize, 3usize),
        (&[3, 3, 12, 8], 37, 5),
        (&[2, 3, 64, 72], 2000, 64),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(i as u64);
        let n: usize = xs.iter().product();
        let (x, x_hat) = (rng.vec(n), rng.vec(n));
        let (ze, zq) = (rng.vec(rows * dim), rng.vec(rows * dim));
        let dist: Vec<f32> = (0..rows)
            .map(|r| {
                (0..dim)
                    .map(|d| (ze[r * dim + d] - zq[r * dim + d]).powi(2))
                    .sum()
            })
            .collect();
        let beta = 0.25;
        let grad = zeros(gpu, xs);
        let terms = zeros(gpu, &[4]);
        let (x64, xh64) = (widen(&x), widen(&x_hat));
        // Without the codebook term (an EMA codebook) it is 0 and leaves the loss.
        for codebook_term in [false, true] {
            let launch = loss::vqvae_loss(
                gpu,
                &upload(gpu, xs, &x_hat),
                &upload(gpu, xs, &x),
                &upload(gpu, &[rows], &dist),
                rows * dim,
                beta,
                codebook_term,
                &grad,
                &terms,
            )
            .unwrap();
            gpu.run(&[&launch]).unwrap();
            let mut want = rl::terms(&xh64, &x64, &widen(&ze), &widen(&zq), f64::from(beta));
            if !codebook_term {
                want[0] -= want[2];
                want[2] = 0.0;
            }
            assert_close(
                &format!("loss terms, codebook term {codebook_term}"),
                &terms.to_f32(gpu).unwrap(),
                &want,
                1e-5,
                1e-7,
            );
        }
        assert_close(
            "recon grad",
            &grad.to_f32(gpu).unwrap(),
            &rl::mse_grad(&xh64, &x64),
            1e-5,
            1e-9,
        );
    }
}

#[test]
fn mse_reference_gradient_matches_finite_differences() {
    let mut rng = Rng::new(5);
    let (a, b) = (widen(&rng.vec(29)), widen(&rng.vec(29)));
    assert_grad(
        "mse",
        &rl::mse_grad(&a, &b),
        &numeric_grad(|a| rl::mse(a, &b), &a),
    );
}

#[test]
fn sum_matches_reference_on_awkward_lengths() {
    let gpu = gpu();
    // One block, a partial block, several levels of the tree.
    for n in [1usize, 255, 4097, 70_001, 20_000_003] {
        let mut rng = Rng::new(n as u64);
        let x = rng.vec(n);
        let out = zeros(gpu, &[1]);
        gpu.run(&[&reduce::sum(gpu, &upload(gpu, &[n], &x), &out).unwrap()])
            .unwrap();
        let want: f64 = widen(&x).iter().sum();
        assert_close(
            &format!("sum of {n}"),
            &out.to_f32(gpu).unwrap(),
            &[want],
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn elementwise_kernels_match_reference() {
    let gpu = gpu();
    for n in [1usize, 257, 1000] {
        let mut rng = Rng::new(n as u64);
        let (a, b) = (rng.vec(n), rng.vec(n));
        let (at, bt) = (upload(gpu, &[n], &a), upload(gpu, &[n], &b));
        let sum = zeros(gpu, &[n]);
        gpu.run(&[&elementwise::add(gpu, &at, &bt, &sum).unwrap()])
            .unwrap();
        assert_close(
            "add",
            &sum.to_f32(gpu).unwrap(),
            &reference::add(&widen(&a), &widen(&b)),
            1e-7,
            0.0,
        );
    }
}

#[test]
fn adam_matches_torch_formula_over_several_steps() {
    let gpu = gpu();
    let n = 1001;
    let mut rng = Rng::new(11);
    let p0 = rng.vec(n);
    let config = AdamConfig {
        lr: 2e-4,
        ..AdamConfig::default()
    };
    let (p, g, m, v) = (
        upload(gpu, &[n], &p0),
        zeros(gpu, &[n]),
        zeros(gpu, &[n]),
        zeros(gpu, &[n]),
    );
    let adam = Adam::new(gpu, &p, &g, &m, &v, config).unwrap();
    let (mut p64, mut m64, mut v64) = (widen(&p0), vec![0.0; n], vec![0.0; n]);
    // A rate that changes each step, as a schedule's does.
    for step in 1..=5 {
        let grads = rng.vec(n);
        g.write(gpu, bytemuck::cast_slice(&grads)).unwrap();
        let lr = config.lr * (1.0 + step as f64) / 3.0;
        adam.set_step(gpu, step, lr);
        gpu.run(&[adam.launch()]).unwrap();
        let c = AdamConfig { lr, ..config };
        ro::adam(&c, step, &mut p64, &widen(&grads), &mut m64, &mut v64);
    }
    assert_close("adam params", &p.to_f32(gpu).unwrap(), &p64, 1e-6, 1e-7);
    assert_close("adam m", &m.to_f32(gpu).unwrap(), &m64, 1e-5, 1e-7);
    assert_close("adam v", &v.to_f32(gpu).unwrap(), &v64, 1e-5, 1e-9);
}

#[test]
fn sgd_changes_each_parameter_by_minus_lr_times_gradient() {
    let gpu = gpu();
    let n = 333;
    let mut rng = Rng::new(12);
    let (p0, grads) = (rng.vec(n), rng.vec(n));
    let p = upload(gpu, &[n], &p0);
    let sgd = Sgd::new(gpu, &p, &upload(gpu, &[n], &grads), 0.01).unwrap();
    gpu.run(&[sgd.launch()]).unwrap();
    // A second step at another rate.
    sgd.set_lr(gpu, 0.03);
    gpu.run(&[sgd.launch()]).unwrap();
    let mut want = widen(&p0);
    ro::sgd(f64::from(0.01f32), &mut want, &widen(&grads));
    ro::sgd(f64::from(0.03f32), &mut want, &widen(&grads));
    assert_close("sgd", &p.to_f32(gpu).unwrap(), &want, 1e-7, 1e-7);
}

#[test]
fn the_guard_rises_on_a_non_finite_value_for_good_and_gates_what_it_guards() {
    use vqvae_wgpu::kernels::guard::{guarded, mark_non_finite};
    use vqvae_wgpu::{DType, Tensor};
    let gpu = gpu();
    let flag = Tensor::zeros(gpu, &[1], DType::U32).unwrap();
    let value = zeros(gpu, &[1]);
    let (a, out) = (zeros(gpu, &[3]), zeros(gpu, &[3]));
    // out = a + a, gated: it runs only while the flag is down.
    let double = elementwise::add(gpu, &a, &a, &out).unwrap();
    let step = mark_non_finite(gpu, &value, &flag)
        .unwrap()
        .then(guarded(gpu, &double, &flag).unwrap());
    let mut outs = Vec::new();
    for (v, x) in [
        (2.5f32, 1.0f32),
        (f32::NAN, 2.0),
        (1.0, 3.0),
        (f32::INFINITY, 4.0),
    ] {
        value.write(gpu, bytemuck::bytes_of(&v)).unwrap();
        a.write(gpu, bytemuck::cast_slice(&[x; 3])).unwrap();
        gpu.run(&[&step]).unwrap();
        outs.push((flag.to_u32(gpu).unwrap()[0], out.to_f32(gpu).unwrap()[0]));
    }
    // Up at the NaN and kept up; from then on the doubling does nothing (where the device
    // dispatches indirectly; elsewhere the launch is ungated).
    let gated = gpu.indirect_dispatch();
    let after = |x: f32| if gated { 2.0 } else { 2.0 * x };
    assert_eq!(
        outs,
        [(0, 2.0), (1, after(2.0)), (1, after(3.0)), (1, after(4.0))]
    );
    // Lowered by the caller, the guarded work runs again.
    flag.write(gpu, bytemuck::bytes_of(&0u32)).unwrap();
    value.write(gpu, bytemuck::bytes_of(&0.5f32)).unwrap();
    gpu.run(&[&step]).unwrap();
    assert_eq!(out.to_f32(gpu).unwrap()[0], 8.0);
}
