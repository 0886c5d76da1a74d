//! The prior's kernels against their references, the references against finite
//! differences, the network's causality and reach, band sampling against whole-grid sampling, and a
//! tiny prior that learns a pattern.

mod common;

use common::*;
use vqvae_wgpu::checkpoint::TensorFile;
use vqvae_wgpu::kernels::causal_mask::{Mask, causal_mask};
use vqvae_wgpu::kernels::conv::{self, ConvShape, Relu};
use vqvae_wgpu::kernels::embedding::{embedding, embedding_grad};
use vqvae_wgpu::kernels::gated::{gate, gate_backward, shift_down, shift_up};
use vqvae_wgpu::kernels::quantize::Rows;
use vqvae_wgpu::kernels::rows::{RowCopy, copy_rows};
use vqvae_wgpu::kernels::softmax::{sample, softmax_xent};
use vqvae_wgpu::params::Params;
use vqvae_wgpu::prior::{
    CodeGrids, PriorConfig, PriorNet, PriorRun, PriorSettings, PriorStart, PriorSummary,
    SampleSettings, Sampler,
};
use vqvae_wgpu::reference::prior as r;
use vqvae_wgpu::stop::{Signal, Stop};
use vqvae_wgpu::{DType, Error, Gpu, Tensor};

fn codes_tensor(gpu: &Gpu, codes: &[u32]) -> Tensor {
    Tensor::from_u32(gpu, &[codes.len()], codes).unwrap()
}

#[test]
fn causal_masks_match_reference() {
    let gpu = gpu();
    for (i, shape) in [[5, 3, 7, 7], [3, 2, 3, 3], [1, 1, 1, 1], [2, 3, 5, 3]]
        .iter()
        .enumerate()
    {
        for mask in [
            Mask::A,
            Mask::B,
            Mask::Vertical,
            Mask::HorizontalA,
            Mask::HorizontalB,
        ] {
            let w = Rng::new(i as u64).vec(shape.iter().product());
            let t = upload(gpu, shape, &w);
            gpu.run(&[&causal_mask(gpu, &t, mask).unwrap()]).unwrap();
            let want = r::causal_mask(&widen(&w), [shape[2], shape[3]], mask);
            assert_close(
                &format!("{shape:?} {mask:?}"),
                &t.to_f32(gpu).unwrap(),
                &want,
                0.0,
                0.0,
            );
            // A 3x3 mask B keeps 5 taps, mask A 4: the reference is not all zeros.
            let kept = want.iter().filter(|v| **v != 0.0).count();
            let taps = [shape[2], shape[3]];
            let per = (0..taps[0] * taps[1])
                .filter(|t| mask.keeps([t / taps[1], t % taps[1]], taps))
                .count();
            assert_eq!(kept, per * shape[0] * shape[1], "{shape:?} {mask:?}");
        }
    }
    let even = upload(gpu, &[1, 1, 4, 4], &[0.0; 16]);
    assert!(causal_mask(gpu, &even, Mask::A).is_err());
}

#[test]
fn masked_convolutions_match_reference() {
    for gpu in gpus() {
        for (i, &(batch, cin, cout, [h, w], k, mask)) in [
            (1, 3, 5, [5, 7], 3, Mask::B),
            (2, 5, 3, [6, 5], 7, Mask::A),
            (1, 1, 1, [1, 1], 3, Mask::A),
            (3, 4, 7, [4, 4], 5, Mask::B),
        ]
        .iter()
        .enumerate()
        {
            let s = ConvShape {
                batch,
                cin,
                cout,
                hin: h,
                win: w,
                kh: k,
                kw: k,
                stride: 1,
                pad: k / 2,
            };
            let mut rng = Rng::new(10 + i as u64);
            let (x, wt, b) = (
                rng.vec(s.x_shape().iter().product()),
                rng.vec(s.w_shape().iter().product()),
                rng.vec(cout),
            );
            let (xt, wtt, bt) = (
                upload(gpu, &s.x_shape(), &x),
                upload(gpu, &s.w_shape(), &wt),
                upload(gpu, &[cout], &b),
            );
            let y = zeros(gpu, &s.y_shape());
            let launch = causal_mask(gpu, &wtt, mask).unwrap().then(
                conv::conv2d(
                    gpu,
                    &s,
                    &xt,
                    &wtt,
                    &bt,
                    &y,
                    Relu::NONE,
                    conv::Epilogue::NONE,
                )
                .unwrap(),
            );
            gpu.run(&[&launch]).unwrap();
            let want = r::masked_conv2d(&s, &widen(&x), &widen(&wt), &widen(&b), mask);
            assert_close(
                &format!("{s:?} {mask:?} {:?}", gpu.tuning()),
                &y.to_f32(gpu).unwrap(),
                &want,
                1e-4,
                1e-5,
            );
        }
    }
}

#[test]
fn embedding_and_its_gradient_match_reference_and_repeat_exactly() {
    let gpu = gpu();
    for (i, &(shape, k)) in [
        (&[1usize, 3][..], 2usize),
        (&[37, 5], 7),
        (&[2, 5, 3, 5], 11),
        (&[1, 1, 7, 3], 1),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(20 + i as u64);
        let out = zeros(gpu, shape);
        let rows = Rows::of("test", &out).unwrap();
        let idx: Vec<u32> = (0..rows.n).map(|_| rng.below(k) as u32).collect();
        let table = rng.vec(k * rows.dim);
        let idx_t = codes_tensor(gpu, &idx);
        let table_t = upload(gpu, &[k, rows.dim], &table);
        gpu.run(&[&embedding(gpu, &idx_t, &table_t, &out).unwrap()])
            .unwrap();
        let want = r::embedding(&rows, &idx, &widen(&table));
        assert_close(
            &format!("{shape:?}"),
            &out.to_f32(gpu).unwrap(),
            &want,
            0.0,
            0.0,
        );

        let g = rng.vec(rows.n * rows.dim);
        let g_t = upload(gpu, shape, &g);
        let dt = zeros(gpu, &[k, rows.dim]);
        let launch = embedding_grad(gpu, &idx_t, &g_t, &dt).unwrap();
        gpu.run(&[&launch]).unwrap();
        let first = dt.to_f32(gpu).unwrap();
        let want = r::embedding_grad(&rows, &idx, &widen(&g), k);
        assert_close(&format!("grad {shape:?}"), &first, &want, 1e-5, 1e-6);
        gpu.run(&[&launch]).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&first), bits(&dt.to_f32(gpu).unwrap()), "{shape:?}");
    }
}

#[test]
fn embedding_grad_reference_matches_finite_differences() {
    let rows = Rows {
        n: 12,
        dim: 3,
        plane: 4,
    };
    let mut rng = Rng::new(30);
    let idx: Vec<u32> = (0..rows.n).map(|_| rng.below(5) as u32).collect();
    let g = widen(&rng.vec(rows.n * rows.dim));
    let table = widen(&rng.vec(5 * rows.dim));
    // L(table) = sum(g * embedding(table)), whose gradient is embedding_grad(g).
    let loss = |t: &[f64]| -> f64 {
        r::embedding(&rows, &idx, t)
            .iter()
            .zip(&g)
            .map(|(a, b)| a * b)
            .sum()
    };
    assert_grad(
        "embedding",
        &r::embedding_grad(&rows, &idx, &g, 5),
        &numeric_grad(loss, &table),
    );
}

#[test]
fn softmax_cross_entropy_matches_reference() {
    let gpu = gpu();
    for (i, shape) in [[1, 2, 1, 1], [2, 11, 3, 5], [3, 130, 2, 2], [1, 7, 7, 7]]
        .iter()
        .enumerate()
    {
        let [batch, k, h, w] = *shape;
        let mut rng = Rng::new(40 + i as u64);
        let logits: Vec<f32> = rng
            .vec(shape.iter().product())
            .iter()
            .map(|v| 4.0 * v)
            .collect();
        let targets: Vec<u32> = (0..batch * h * w).map(|_| rng.below(k) as u32).collect();
        let (lt, tt) = (upload(gpu, shape, &logits), codes_tensor(gpu, &targets));
        let (grad, losses) = (zeros(gpu, shape), zeros(gpu, &[batch * h * w]));
        gpu.run(&[&softmax_xent(gpu, &lt, &tt, &grad, &losses).unwrap()])
            .unwrap();
        let (want_loss, want_grad) = r::softmax_xent(&widen(&logits), &targets, [k, h * w]);
        assert_close(
            &format!("loss {shape:?}"),
            &losses.to_f32(gpu).unwrap(),
            &want_loss,
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("grad {shape:?}"),
            &grad.to_f32(gpu).unwrap(),
            &want_grad,
            1e-4,
            1e-7,
        );
    }
    let bad = codes_tensor(gpu, &[0; 3]);
    let l = zeros(gpu, &[1, 4, 2, 2]);
    assert!(softmax_xent(gpu, &l, &bad, &zeros(gpu, &[1, 4, 2, 2]), &zeros(gpu, &[4])).is_err());
}

#[test]
fn softmax_cross_entropy_reference_matches_finite_differences() {
    let mut rng = Rng::new(50);
    let (k, plane, batch) = (5, 3, 2);
    let logits = widen(&rng.vec(batch * k * plane));
    let targets: Vec<u32> = (0..batch * plane).map(|_| rng.below(k) as u32).collect();
    let mean = |l: &[f64]| {
        let (losses, _) = r::softmax_xent(l, &targets, [k, plane]);
        losses.iter().sum::<f64>() / losses.len() as f64
    };
    let (_, grad) = r::softmax_xent(&logits, &targets, [k, plane]);
    assert_grad("softmax_xent", &grad, &numeric_grad(mean, &logits));
}

/// Draws position `pos` of `[batch, k, plane]` logits on the GPU, hashed as grid
/// position `at`; returns all codes.
fn draw(
    gpu: &Gpu,
    logits: &[f32],
    shape: [usize; 3],
    [pos, at]: [usize; 2],
    t: f32,
    seed: u32,
) -> Vec<u32> {
    let [batch, k, plane] = shape;
    let lt = upload(gpu, &[batch, k, plane, 1], logits);
    let codes = Tensor::zeros(gpu, &[batch * plane], DType::U32).unwrap();
    gpu.run(&[&sample(gpu, &lt, &codes, pos, at, t, seed).unwrap()])
        .unwrap();
    codes.to_u32(gpu).unwrap()
}

#[test]
fn sampling_matches_reference() {
    let gpu = gpu();
    let shape = [37, 13, 6];
    let mut rng = Rng::new(60);
    let logits: Vec<f32> = rng
        .vec(shape.iter().product())
        .iter()
        .map(|v| 3.0 * v)
        .collect();
    let mut compared = 0;
    // The last draw is of a band's position 5 that is position 41 of the whole grid.
    for (t, seed, [pos, at]) in [(1.0, 1, [4, 4]), (0.5, 2, [0, 0]), (2.0, 3, [5, 41])] {
        let got = draw(gpu, &logits, shape, [pos, at], t, seed);
        let want = r::sample(&widen(&logits), shape, pos, at, f64::from(t), seed);
        for (b, (code, margin)) in want.iter().enumerate() {
            for s in 0..shape[2] {
                let g = got[b * shape[2] + s];
                if s != pos {
                    assert_eq!(g, 0, "only position {pos} is written");
                } else if *margin > 1e-4 {
                    assert_eq!(g, *code, "image {b}, temperature {t}");
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 100);
}

#[test]
fn sampling_follows_the_softmax() {
    let gpu = gpu();
    let (n, k) = (8192, 6);
    let row = [0.5f32, -1.0, 2.0, 0.0, 1.0, -3.0];
    for t in [1.0f32, 0.7] {
        // The same logits for every image: the draws are n samples of one distribution.
        let logits: Vec<f32> = (0..n).flat_map(|_| row).collect();
        let codes = draw(gpu, &logits, [n, k, 1], [0, 0], t, 7);
        let z: f64 = row
            .iter()
            .map(|&l| (f64::from(l) / f64::from(t)).exp())
            .sum();
        for (c, &l) in row.iter().enumerate() {
            let p = (f64::from(l) / f64::from(t)).exp() / z;
            let freq = codes.iter().filter(|&&x| x == c as u32).count() as f64 / n as f64;
            let sigma = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (freq - p).abs() < 5.0 * sigma + 1e-4,
                "t {t} code {c}: {freq} vs {p}"
            );
        }
    }
}

#[test]
fn temperature_near_zero_gives_the_argmax() {
    let gpu = gpu();
    let shape = [50, 9, 3];
    let logits = Rng::new(70).vec(shape.iter().product());
    for t in [1e-3f32, 1e-6, 1e-30, f32::MIN_POSITIVE] {
        let got = draw(gpu, &logits, shape, [1, 1], t, 3);
        for b in 0..shape[0] {
            let l = |k: usize| logits[(b * shape[1] + k) * shape[2] + 1];
            let best = (0..shape[1]).fold(0, |m, k| if l(k) > l(m) { k } else { m });
            assert_eq!(
                got[b * shape[2] + 1],
                best as u32,
                "image {b}, temperature {t}"
            );
        }
    }
    let lt = upload(gpu, &[1, 2, 1, 1], &[0.0, 1.0]);
    let codes = Tensor::zeros(gpu, &[1], DType::U32).unwrap();
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(
            sample(gpu, &lt, &codes, 0, 0, bad, 0).is_err(),
            "temperature {bad}"
        );
    }
    assert!(
        sample(gpu, &lt, &codes, 1, 1, 1.0, 0).is_err(),
        "position past the grid"
    );
}

fn tiny_config(classes: usize, gated: bool) -> PriorConfig {
    PriorConfig {
        codes: 6,
        grid: [4, 5],
        embed: 3,
        channels: 5,
        hidden: 4,
        blocks: 2,
        first_kernel: 5,
        classes,
        gated,
    }
}

/// A prior with random weights (masked taps too: the network must mask them itself).
fn random_prior(gpu: &Gpu, config: &PriorConfig, batch: usize) -> (Params, PriorNet) {
    let params = Params::new(gpu, config.params()).unwrap();
    let n = params.flat_values().len();
    params.upload(gpu, &Rng::new(80).vec(n)).unwrap();
    let net = PriorNet::new(gpu, &params, config, batch, true).unwrap();
    (params, net)
}

/// d(a random mix of image 0's logits at position `p`) / d(embedded codes), through
/// the backward pass, `[batch, embed, h, w]`: nonzero where `p` can see.
fn embedding_grad_of_logits_at(gpu: &Gpu, net: &PriorNet, p: usize, rng: &mut Rng) -> Vec<f32> {
    let plane = net.config.grid[0] * net.config.grid[1];
    let dl = net.d_logits.as_ref().unwrap();
    let mut g = vec![0.0f32; dl.len()];
    for k in 0..net.config.codes {
        g[k * plane + p] = rng.uniform(-1.0, 1.0) as f32;
    }
    dl.write(gpu, bytemuck::cast_slice(&g)).unwrap();
    gpu.run(&[net.backward().unwrap()]).unwrap();
    net.d_embed.as_ref().unwrap().to_f32(gpu).unwrap()
}

#[test]
fn prior_is_causal_through_its_gradients_and_outputs() {
    let gpu = gpu();
    for (classes, gated) in [(0, false), (3, false), (0, true), (3, true)] {
        let c = tiny_config(classes, gated);
        let (_params, net) = random_prior(gpu, &c, 2);
        let (plane, w) = (c.grid[0] * c.grid[1], c.grid[1]);
        let mut rng = Rng::new(90);
        let codes: Vec<u32> = (0..2 * plane).map(|_| rng.below(c.codes) as u32).collect();
        net.codes.write(gpu, bytemuck::cast_slice(&codes)).unwrap();
        net.set_classes(gpu, &[1, 2]).unwrap();
        gpu.run(&[net.forward()]).unwrap();
        let logits = net.logits.to_f32(gpu).unwrap();
        for p in [0, 7, 12, plane - 1] {
            let d = embedding_grad_of_logits_at(gpu, &net, p, &mut rng);
            let at = |b: usize, q: usize| {
                (0..c.embed).any(|ch| d[(b * c.embed + ch) * plane + q] != 0.0)
            };
            for q in 0..plane {
                assert!(!at(1, q), "image 1 cannot affect image 0 (p {p}, q {q})");
                if q >= p {
                    assert!(
                        !at(0, q),
                        "position {p} depends on position {q} (classes {classes}, gated {gated})"
                    );
                }
            }
            if p % w > 0 {
                assert!(at(0, p - 1), "position {p} must see its left neighbour");
            }
            if p >= w {
                assert!(at(0, p - w), "position {p} must see the position above");
            }
            if gated {
                // No blind spot: every position of every row above.
                for q in 0..p - p % w {
                    assert!(at(0, q), "gated: position {p} must see position {q}");
                }
            }

            // The same through the outputs: changing codes at p and after leaves
            // position p's logits as they were.
            let mut changed = codes.clone();
            for code in &mut changed[p..plane] {
                *code = (*code + 1) % c.codes as u32;
            }
            net.codes
                .write(gpu, bytemuck::cast_slice(&changed))
                .unwrap();
            gpu.run(&[net.forward()]).unwrap();
            let after = net.logits.to_f32(gpu).unwrap();
            for k in 0..c.codes {
                assert_eq!(
                    after[k * plane + p],
                    logits[k * plane + p],
                    "p {p} code {k}"
                );
            }
            net.codes.write(gpu, bytemuck::cast_slice(&codes)).unwrap();
            gpu.run(&[net.forward()]).unwrap();
        }
    }
}

#[test]
fn rows_above_is_exactly_how_far_up_a_position_sees() {
    let gpu = gpu();
    for gated in [false, true] {
        let c = PriorConfig {
            grid: [10, 5],
            ..tiny_config(0, gated)
        };
        let (_params, net) = random_prior(gpu, &c, 1);
        let (plane, w) = (c.grid[0] * c.grid[1], c.grid[1]);
        let mut rng = Rng::new(91);
        let codes: Vec<u32> = (0..plane).map(|_| rng.below(c.codes) as u32).collect();
        net.codes.write(gpu, bytemuck::cast_slice(&codes)).unwrap();
        gpu.run(&[net.forward()]).unwrap();
        // d(logits at a position of the last row) / d(embedded codes): the rows it
        // reaches. (A position whose ReLUs are all off sees nothing; the row's others do.)
        let mut seen = 0;
        for p in plane - w..plane {
            let d = embedding_grad_of_logits_at(gpu, &net, p, &mut rng);
            let reach = (0..plane)
                .filter(|q| (0..c.embed).any(|ch| d[ch * plane + q] != 0.0))
                .map(|q| p / w - q / w)
                .max();
            seen = seen.max(reach.unwrap_or(0));
        }
        assert_eq!(seen, c.rows_above(), "gated {gated}");
    }
}

#[test]
fn band_sampling_draws_what_the_whole_grid_draws() {
    for gpu in gpus() {
        for (classes, gated) in [(0, false), (3, false), (0, true), (3, true)] {
            let c = PriorConfig {
                grid: [11, 5],
                ..tiny_config(classes, gated)
            };
            let (params, _) = random_prior(gpu, &c, 1);
            let band = Sampler::new(gpu, &params, &c, 7).unwrap();
            assert_eq!(band.band(), c.rows_above() + 1);
            let whole = Sampler::with_band(gpu, &params, &c, 7, 11).unwrap();
            assert_eq!(whole.band(), 11);
            let settings = SampleSettings {
                count: 9,
                temperature: 1.0,
                seed: 9,
                class: None,
            };
            let drawn = band.sample(gpu, &settings).unwrap();
            assert_eq!(drawn.len(), 9 * 55);
            assert_eq!(
                drawn,
                whole.sample(gpu, &settings).unwrap(),
                "classes {classes}, gated {gated}, {:?}",
                gpu.tuning()
            );
        }
    }
}

#[test]
fn row_copies_match_reference() {
    let gpu = gpu();
    // (batch, width, rows, from, to)
    for (i, (batch, width, rows, from, to)) in [
        (1, 1, 1, [1, 0], [1, 0]),
        (3, 5, 4, [11, 7], [4, 0]),
        (2, 7, 1, [3, 2], [9, 8]),
        (5, 3, 2, [2, 0], [2, 0]),
    ]
    .into_iter()
    .enumerate()
    {
        let c = RowCopy {
            batch,
            width,
            rows,
            from,
            to,
        };
        let mut rng = Rng::new(120 + i as u64);
        let src: Vec<u32> = (0..batch * from[0] * width)
            .map(|_| rng.below(1000) as u32)
            .collect();
        let dst: Vec<u32> = (0..batch * to[0] * width)
            .map(|_| rng.below(1000) as u32)
            .collect();
        let (s, d) = (codes_tensor(gpu, &src), codes_tensor(gpu, &dst));
        gpu.run(&[&copy_rows(gpu, &s, &d, &c).unwrap()]).unwrap();
        assert_eq!(
            d.to_u32(gpu).unwrap(),
            r::copy_rows(&src, &dst, &c),
            "{c:?}"
        );
    }
    let (s, d) = (codes_tensor(gpu, &[0; 12]), codes_tensor(gpu, &[0; 12]));
    let past = RowCopy {
        batch: 2,
        width: 3,
        rows: 2,
        from: [2, 1],
        to: [2, 0],
    };
    let e = copy_rows(gpu, &s, &d, &past).unwrap_err().to_string();
    assert!(
        e.contains("rows 1..3 are outside the source's 2 rows"),
        "{e}"
    );
}

/// Grids whose first code is random and every other follows: `(c0 + i + 2 j) mod K`.
fn pattern_grids(n: usize, config: &PriorConfig, seed: u64) -> CodeGrids {
    let [h, w] = config.grid;
    let k = config.codes as u32;
    let mut rng = Rng::new(seed);
    let mut codes = Vec::with_capacity(n * h * w);
    for _ in 0..n {
        let c0 = rng.below(config.codes) as u32;
        for i in 0..h as u32 {
            for j in 0..w as u32 {
                codes.push((c0 + i + 2 * j) % k);
            }
        }
    }
    CodeGrids {
        codes,
        n,
        grid: config.grid,
        labels: None,
    }
}

fn follows_pattern(grid: &[u32], config: &PriorConfig) -> bool {
    let [h, w] = config.grid;
    let k = config.codes as u32;
    (0..h * w).all(|q| grid[q] == (grid[0] + (q / w) as u32 + 2 * (q % w) as u32) % k)
}

fn pattern_run(
    out: &std::path::Path,
    steps: u64,
    start: PriorStart,
    gated: bool,
) -> (PriorConfig, f64, f64) {
    let (config, summary) = pattern_run_until(out, steps, start, gated, Stop::default());
    let summary = summary.unwrap();
    (config, summary.val_bits.unwrap(), summary.frequency_bits)
}

/// [`pattern_run`] that `stop` may end early.
fn pattern_run_until(
    out: &std::path::Path,
    steps: u64,
    start: PriorStart,
    gated: bool,
    stop: Stop,
) -> (PriorConfig, vqvae_wgpu::Result<PriorSummary>) {
    let config = PriorConfig {
        codes: 5,
        grid: [3, 4],
        embed: 8,
        channels: 16,
        hidden: 8,
        blocks: 1,
        first_kernel: 3,
        classes: 0,
        gated,
    };
    let grids = pattern_grids(256, &config, 100);
    let summary = PriorRun {
        gpu: gpu(),
        grids: &grids,
        config,
        settings: PriorSettings {
            batch_size: 32,
            steps,
            lr: 1e-2,
            seed: 0,
            val_grids: 32,
            log_every: 50,
            checkpoint_every: 150,
            val_every: 150,
        },
        out: out.to_path_buf(),
        start,
        progress: false,
        autoencoder: "test".into(),
        stop,
    }
    .train();
    (config, summary)
}

#[test]
fn tiny_prior_learns_a_pattern_its_samples_reproduce_and_resumes_exactly() {
    learns_a_pattern(false);
}

#[test]
fn tiny_gated_prior_learns_a_pattern_its_samples_reproduce_and_resumes_exactly() {
    learns_a_pattern(true);
}

fn learns_a_pattern(gated: bool) {
    let gpu = gpu();
    let dir = temp_dir(&format!("prior-pattern-{gated}"));
    let (config, val_bits, freq_bits) =
        pattern_run(&dir.join("straight"), 300, PriorStart::Fresh, gated);
    // Only the first code is uncertain: log2(5) bits over 12 positions is 0.19 bits
    // per code; the code frequencies know nothing of the pattern (about log2 5).
    assert!(freq_bits > 2.0, "{freq_bits}");
    assert!(val_bits < 0.4, "held-out {val_bits} bits per code");

    let model = TensorFile::read(&dir.join("straight/prior.safetensors")).unwrap();
    let params = Params::new(gpu, config.params()).unwrap();
    params
        .upload(gpu, &params.join(&model.values(), "test").unwrap())
        .unwrap();
    let sampler = Sampler::new(gpu, &params, &config, 50).unwrap();
    let settings = SampleSettings {
        count: 100,
        temperature: 1.0,
        seed: 5,
        class: None,
    };
    let codes = sampler.sample(gpu, &settings).unwrap();
    let plane = config.grid[0] * config.grid[1];
    let good = codes
        .chunks(plane)
        .filter(|g| follows_pattern(g, &config))
        .count();
    assert!(good >= 90, "{good} of 100 samples follow the pattern");
    let firsts: std::collections::BTreeSet<u32> = codes.chunks(plane).map(|g| g[0]).collect();
    assert!(firsts.len() >= 4, "first codes drawn: {firsts:?}");
    assert_eq!(
        codes,
        sampler.sample(gpu, &settings).unwrap(),
        "same seed, same draws"
    );

    // 150 steps, then 150 more from the checkpoint: the same weights as 300 at once.
    let split = dir.join("split");
    pattern_run(&split, 150, PriorStart::Fresh, gated);
    resumes_to(&model, &split, gated, "after resuming");
    if gated {
        return;
    }
    // A stop asked for before the first step ends the run after it, saved; resuming
    // from there gives the same weights as the straight run.
    let stopped = dir.join("stopped");
    let stop = Stop::default();
    stop.request(Signal::Terminate);
    let (_, summary) = pattern_run_until(&stopped, 300, PriorStart::Fresh, gated, stop);
    match summary {
        Err(Error::Stopped {
            signal: Signal::Terminate,
            step: 1,
            ..
        }) => {}
        other => panic!("a requested stop gave {other:?}"),
    }
    resumes_to(&model, &stopped, gated, "after a stop and a resume");
}

/// Resumes the prior run saved in `dir` to 300 steps and checks that it ends with the
/// weights of `model`, the straight run's.
fn resumes_to(model: &TensorFile, dir: &std::path::Path, gated: bool, what: &str) {
    let read = |name: &str| TensorFile::read(&dir.join(name)).unwrap();
    pattern_run(
        dir,
        300,
        PriorStart::Resume {
            model: Box::new(read("prior.safetensors")),
            state: Box::new(read("prior_state.safetensors")),
        },
        gated,
    );
    let resumed = read("prior.safetensors").values();
    for (name, v) in model.values() {
        assert_eq!(resumed[&name], v, "{name} differs {what}");
    }
}

#[test]
fn gate_and_shifts_match_reference() {
    let gpu = gpu();
    for (i, &[batch, c, h, w]) in [[1, 1, 1, 1], [2, 3, 4, 5], [1, 7, 3, 1], [3, 5, 1, 6]]
        .iter()
        .enumerate()
    {
        let mut rng = Rng::new(110 + i as u64);
        let x: Vec<f32> = rng
            .vec(batch * 2 * c * h * w)
            .iter()
            .map(|v| 3.0 * v)
            .collect();
        let dy = rng.vec(batch * c * h * w);
        let (xt, dyt) = (
            upload(gpu, &[batch, 2 * c, h, w], &x),
            upload(gpu, &[batch, c, h, w], &dy),
        );
        let (y, dx) = (
            zeros(gpu, &[batch, c, h, w]),
            zeros(gpu, &[batch, 2 * c, h, w]),
        );
        let launch = gate(gpu, &xt, &y)
            .unwrap()
            .then(gate_backward(gpu, &xt, &dyt, &dx).unwrap());
        gpu.run(&[&launch]).unwrap();
        let tag = format!("[{batch}, {c}, {h}, {w}]");
        let (x64, dy64) = (widen(&x), widen(&dy));
        assert_close(
            &tag,
            &y.to_f32(gpu).unwrap(),
            &r::gate(&x64, [c, h * w]),
            1e-5,
            1e-6,
        );
        let want = r::gate_backward(&x64, &dy64, [c, h * w]);
        assert_close(&tag, &dx.to_f32(gpu).unwrap(), &want, 1e-4, 1e-6);

        let (down, up) = (
            zeros(gpu, &[batch, 2 * c, h, w]),
            zeros(gpu, &[batch, 2 * c, h, w]),
        );
        let launch = shift_down(gpu, &xt, &down)
            .unwrap()
            .then(shift_up(gpu, &xt, &up).unwrap());
        gpu.run(&[&launch]).unwrap();
        assert_close(
            &tag,
            &down.to_f32(gpu).unwrap(),
            &r::shift_down(&x64, [h, w]),
            0.0,
            0.0,
        );
        assert_close(
            &tag,
            &up.to_f32(gpu).unwrap(),
            &r::shift_up(&x64, [h, w]),
            0.0,
            0.0,
        );
    }
    let odd = zeros(gpu, &[1, 3, 2, 2]);
    assert!(gate(gpu, &odd, &zeros(gpu, &[1, 1, 2, 2])).is_err());
}

#[test]
fn gate_and_shift_references_match_finite_differences() {
    let (c, plane) = (3, 4);
    let mut rng = Rng::new(120);
    let x = widen(&rng.vec(2 * 2 * c * plane));
    let g = widen(&rng.vec(2 * c * plane));
    let loss = |x: &[f64]| -> f64 {
        r::gate(x, [c, plane])
            .iter()
            .zip(&g)
            .map(|(a, b)| a * b)
            .sum()
    };
    assert_grad(
        "gate",
        &r::gate_backward(&x, &g, [c, plane]),
        &numeric_grad(loss, &x),
    );
    // shift_up is the gradient of shift_down: <shift_down(x), y> = <x, shift_up(y)>.
    let (hw, y) = ([2, 2], widen(&rng.vec(x.len())));
    let loss = |x: &[f64]| -> f64 {
        r::shift_down(x, hw)
            .iter()
            .zip(&y)
            .map(|(a, b)| a * b)
            .sum()
    };
    assert_grad("shift", &r::shift_up(&y, hw), &numeric_grad(loss, &x));
}
