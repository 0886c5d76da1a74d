//! Residual VQ against its reference on awkward sizes (both layouts, one vector, odd
//! dimensions, K not a power of two, S = 1 to 4), one stage against plain VQ bit for
//! bit, the component on a caller's device and buffers (separate codebooks at aligned
//! and unaligned stage sizes, a shared one), and the bindings it refuses.

mod common;

use common::caller::{ALIGN, binding, buffer_at_offset, device, read};
use common::*;
use vqvae_wgpu::kernels::quantize::{Rows, quantize};
use vqvae_wgpu::kernels::rvq::{self, Outputs, residual_quantize};
use vqvae_wgpu::quantizer::{Layout, ResidualBindings, ResidualConfig, ResidualQuantizer};
use vqvae_wgpu::reference::quantize as r;
use vqvae_wgpu::{DType, Gpu, Tensor};

/// (z shape, codes, stages).
const CASES: &[(&[usize], usize, usize)] = &[
    (&[1, 3], 5, 1),
    (&[37, 7], 13, 3),
    (&[129, 16], 100, 2),
    (&[1, 5, 3, 7], 11, 4),
    (&[2, 33, 5, 5], 31, 2),
    (&[70, 8], 4, 4),
];

struct Got {
    codes: Vec<u32>,
    quantized: Vec<f32>,
    distances: Vec<f32>,
    stage_distances: Vec<f32>,
}

fn run(gpu: &Gpu, shape: &[usize], z: &[f32], books: &[Vec<f32>], keep: bool) -> Got {
    let zt = upload(gpu, shape, z);
    let rows = Rows::of("test", &zt).unwrap();
    let stages = books.len();
    let tensors: Vec<Tensor> = books
        .iter()
        .map(|b| upload(gpu, &[b.len() / rows.dim, rows.dim], b))
        .collect();
    let codes = Tensor::zeros(gpu, &[rows.n, stages], DType::U32).unwrap();
    let (quantized, distances) = (zeros(gpu, shape), zeros(gpu, &[rows.n]));
    let stage_distances = zeros(gpu, &[rows.n, stages]);
    let outputs = Outputs {
        codes: &codes,
        quantized: &quantized,
        stage_distances: Some(&stage_distances),
        distances: Some(&distances),
    };
    let refs: Vec<&Tensor> = tensors.iter().collect();
    let rvq = residual_quantize(gpu, &zt, &refs, &outputs, keep).unwrap();
    gpu.run(&[&rvq.launch]).unwrap();
    Got {
        codes: codes.to_u32(gpu).unwrap(),
        quantized: quantized.to_f32(gpu).unwrap(),
        distances: distances.to_f32(gpu).unwrap(),
        stage_distances: stage_distances.to_f32(gpu).unwrap(),
    }
}

/// Checks `got` against the reference: every stage's code is the nearest to the residual
/// the earlier stages' codes left (up to f32 rounding of near ties), the sum is those
/// code vectors added in stage order, the distances are the residuals' norms.
fn check(tag: &str, rows: &Rows, z: &[f32], books: &[Vec<f32>], got: &Got) {
    let stages = books.len();
    let mut exact = 0;
    let (want_codes, _, _) = r::residual(
        rows,
        &widen(z),
        &books
            .iter()
            .map(|b| widen(b))
            .collect::<Vec<_>>()
            .iter()
            .map(Vec::as_slice)
            .collect::<Vec<_>>(),
    );
    for v in 0..rows.n {
        let mut residual: Vec<f64> = r::row(rows, &widen(z), v);
        let mut sum = vec![0f32; rows.dim];
        let mut tie = false;
        for (s, book) in books.iter().enumerate() {
            let c = got.codes[v * stages + s] as usize;
            let dists: Vec<f64> = book
                .chunks(rows.dim)
                .map(|e| r::sq_dist(&residual, &widen(e)))
                .collect();
            let best = dists.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(
                c < dists.len(),
                "{tag}: vector {v} stage {s}: code {c} past K"
            );
            assert!(
                dists[c] <= best + 1e-5 * (1.0 + best),
                "{tag}: vector {v} stage {s}: code {c} at {} but the nearest is at {best}",
                dists[c]
            );
            let near = dists
                .iter()
                .filter(|&&d| d <= best + 1e-4 * (1.0 + best))
                .count();
            tie |= near > 1;
            assert_close(
                &format!("{tag}: vector {v} stage {s}'s distance"),
                &[got.stage_distances[v * stages + s]],
                &[dists[c]],
                1e-4,
                1e-5,
            );
            let e = &book[c * rows.dim..(c + 1) * rows.dim];
            for d in 0..rows.dim {
                residual[d] -= f64::from(e[d]);
                sum[d] = if s == 0 { e[d] } else { sum[d] + e[d] };
            }
        }
        for (d, &want) in sum.iter().enumerate() {
            assert_eq!(
                got.quantized[r::at(rows, v, d)],
                want,
                "{tag}: vector {v}'s sum at {d}"
            );
        }
        let norm: f64 = residual.iter().map(|x| x * x).sum();
        assert_close(
            &format!("{tag}: vector {v}'s distance"),
            &[got.distances[v]],
            &[norm],
            1e-4,
            1e-5,
        );
        if !tie {
            exact += 1;
            assert_eq!(
                &got.codes[v * stages..(v + 1) * stages],
                &want_codes[v * stages..(v + 1) * stages],
                "{tag}: vector {v}'s codes"
            );
        }
    }
    assert!(
        exact * 2 > rows.n,
        "{tag}: too few vectors free of near ties to compare"
    );
}

#[test]
fn residual_quantize_matches_reference_in_both_modes() {
    for gpu in gpus() {
        for (i, &(shape, codes, stages)) in CASES.iter().enumerate() {
            let mut rng = Rng::new(40 + i as u64);
            let rows = Rows::of("test", &zeros(gpu, shape)).unwrap();
            let z = rng.vec(rows.n * rows.dim);
            // Later stages' codes are smaller, as trained residual codebooks are.
            let books: Vec<Vec<f32>> = (0..stages)
                .map(|s| {
                    rng.vec(codes * rows.dim)
                        .iter()
                        .map(|v| v / (1 + s) as f32)
                        .collect()
                })
                .collect();
            for keep in [false, true] {
                let tag = format!(
                    "z {shape:?} K {codes} S {stages} keep {keep} {:?}",
                    gpu.tuning()
                );
                check(&tag, &rows, &z, &books, &run(gpu, shape, &z, &books, keep));
            }
        }
    }
}

#[test]
fn one_stage_is_plain_vq_bit_for_bit() {
    let gpu = gpu();
    for &(shape, codes) in &[(&[37usize, 7][..], 13usize), (&[2, 33, 5, 5], 31)] {
        let mut rng = Rng::new(7);
        let zt = zeros(gpu, shape);
        let rows = Rows::of("test", &zt).unwrap();
        let z = rng.vec(rows.n * rows.dim);
        let book = rng.vec(codes * rows.dim);
        let got = run(gpu, shape, &z, std::slice::from_ref(&book), false);
        let (zt, cb) = (
            upload(gpu, shape, &z),
            upload(gpu, &[codes, rows.dim], &book),
        );
        let idx = Tensor::zeros(gpu, &[rows.n], DType::U32).unwrap();
        let (dist, zq) = (zeros(gpu, &[rows.n]), zeros(gpu, shape));
        gpu.run(&[&quantize(gpu, &zt, &cb, &idx, Some(&dist), Some(&zq)).unwrap()])
            .unwrap();
        assert_eq!(got.codes, idx.to_u32(gpu).unwrap(), "{shape:?}: codes");
        assert_eq!(got.quantized, zq.to_f32(gpu).unwrap(), "{shape:?}: vectors");
        assert_eq!(
            got.distances,
            dist.to_f32(gpu).unwrap(),
            "{shape:?}: distances"
        );
    }
}

#[test]
fn training_mode_keeps_every_stage_residual_and_code_vectors() {
    let gpu = gpu();
    let (shape, codes, stages) = (&[3usize, 5, 2, 3][..], 7usize, 3usize);
    let mut rng = Rng::new(9);
    let zt = upload(gpu, shape, &rng.vec(90));
    let books: Vec<Tensor> = (0..stages)
        .map(|_| upload(gpu, &[codes, 5], &rng.vec(35)))
        .collect();
    let codes_t = Tensor::zeros(gpu, &[18, stages], DType::U32).unwrap();
    let sum = zeros(gpu, shape);
    let outputs = Outputs {
        codes: &codes_t,
        quantized: &sum,
        stage_distances: None,
        distances: None,
    };
    let refs: Vec<&Tensor> = books.iter().collect();
    let rvq = residual_quantize(gpu, &zt, &refs, &outputs, true).unwrap();
    gpu.run(&[&rvq.launch]).unwrap();
    assert_eq!(
        (
            rvq.residuals.len(),
            rvq.stage_quantized.len(),
            rvq.stage_codes.len()
        ),
        (3, 3, 3)
    );
    // r_{s+1} = r_s - q_s, and the sum is the q_s added in order.
    let read = |t: &Tensor| t.to_f32(gpu).unwrap();
    let mut total = vec![0f32; 90];
    for s in 0..stages {
        let (r, q) = (read(&rvq.residuals[s]), read(&rvq.stage_quantized[s]));
        if s + 1 < stages {
            let next = read(&rvq.residuals[s + 1]);
            let want: Vec<f32> = r.iter().zip(&q).map(|(a, b)| a - b).collect();
            assert_eq!(next, want, "stage {s}'s residual");
        }
        for (t, v) in total.iter_mut().zip(&q) {
            *t = if s == 0 { *v } else { *t + v };
        }
        let stage_codes = rvq.stage_codes[s].to_u32(gpu).unwrap();
        let interleaved = codes_t.to_u32(gpu).unwrap();
        assert!(
            (0..18).all(|v| interleaved[v * stages + s] == stage_codes[v]),
            "stage {s}'s codes"
        );
    }
    assert_eq!(read(&sum), total);

    // Quantize dropout: with the first `active` stages only, the sum holds theirs, the
    // dropped stages' distances are 0, and every stage still finds its codes.
    let dists = zeros(gpu, &[18, stages]);
    let outputs = Outputs {
        codes: &codes_t,
        quantized: &sum,
        stage_distances: Some(&dists),
        distances: None,
    };
    let rvq = residual_quantize(gpu, &zt, &refs, &outputs, true).unwrap();
    for active in 1..=stages {
        gpu.run(&[&rvq.with_stages(active).unwrap()]).unwrap();
        let mut total = vec![0f32; 90];
        for s in 0..active {
            for (t, v) in total.iter_mut().zip(&read(&rvq.stage_quantized[s])) {
                *t = if s == 0 { *v } else { *t + v };
            }
        }
        assert_eq!(read(&sum), total, "{active} active stages' sum");
        let d = read(&dists);
        for v in 0..18 {
            for s in 0..stages {
                if s >= active {
                    assert_eq!(
                        d[v * stages + s],
                        0.0,
                        "{active} active: stage {s}'s distance"
                    );
                } else {
                    assert!(
                        d[v * stages + s] > 0.0,
                        "{active} active: stage {s}'s distance"
                    );
                }
            }
        }
        assert_eq!(
            codes_t.to_u32(gpu).unwrap(),
            interleaved_codes(&rvq, stages, gpu)
        );
    }
    assert!(rvq.with_stages(0).is_err() && rvq.with_stages(stages + 1).is_err());
}

/// Every stage's own codes, interleaved as `[n, S]`.
fn interleaved_codes(rvq: &rvq::ResidualVq, stages: usize, gpu: &Gpu) -> Vec<u32> {
    let per: Vec<Vec<u32>> = rvq
        .stage_codes
        .iter()
        .map(|c| c.to_u32(gpu).unwrap())
        .collect();
    (0..per[0].len() * stages)
        .map(|i| per[i % stages][i / stages])
        .collect()
}

#[test]
fn backward_matches_finite_differences_of_the_straight_through_surrogate() {
    let gpu = gpu();
    for (i, &(shape, codes, stages)) in [
        (&[2usize, 3, 2, 2][..], 5usize, 3usize),
        (&[7, 5], 4, 1),
        (&[5, 4], 3, 2),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(60 + i as u64);
        let zt = zeros(gpu, shape);
        let rows = Rows::of("test", &zt).unwrap();
        let len = rows.n * rows.dim;
        let (z, upstream) = (rng.vec(len), rng.vec(len));
        let books: Vec<Vec<f32>> = (0..stages).map(|_| rng.vec(codes * rows.dim)).collect();
        let zt = upload(gpu, shape, &z);
        let book_t: Vec<Tensor> = books
            .iter()
            .map(|b| upload(gpu, &[codes, rows.dim], b))
            .collect();
        let grads: Vec<Tensor> = books
            .iter()
            .map(|_| zeros(gpu, &[codes, rows.dim]))
            .collect();
        let codes_t = Tensor::zeros(gpu, &[rows.n, stages], DType::U32).unwrap();
        let sum = zeros(gpu, shape);
        let outputs = Outputs {
            codes: &codes_t,
            quantized: &sum,
            stage_distances: None,
            distances: None,
        };
        let refs: Vec<&Tensor> = book_t.iter().collect();
        let grad_refs: Vec<&Tensor> = grads.iter().collect();
        let rvq_graph = residual_quantize(gpu, &zt, &refs, &outputs, true).unwrap();
        let up = upload(gpu, shape, &upstream);
        let beta = 0.25;
        gpu.run(&[&rvq_graph.launch]).unwrap();
        let chosen = codes_t.to_u32(gpu).unwrap();
        let code = |v: usize, s: usize| chosen[v * stages + s] as usize;
        let numel = len as f64;
        // With the codes fixed: <upstream, z> (the straight-through term) plus, per
        // stage, beta * mean((r_s - sg[e])^2) for z and mean((sg[r_s] - e)^2) for the
        // codebooks, where r_s = z - the earlier stages' sg[e].
        let residuals = |z: &[f64], books: &[Vec<f64>]| -> Vec<Vec<f64>> {
            let mut r = vec![z.to_vec()];
            for s in 0..stages {
                let mut next = r[s].clone();
                for v in 0..rows.n {
                    for d in 0..rows.dim {
                        next[r::at(&rows, v, d)] -= books[s][code(v, s) * rows.dim + d];
                    }
                }
                r.push(next);
            }
            r
        };
        let wide_books: Vec<Vec<f64>> = books.iter().map(|b| widen(b)).collect();
        let fixed = residuals(&widen(&z), &wide_books);
        // All stages, and (quantize dropout) the first few: the dropped stages add no
        // term, and their codebook gradients are not written.
        for active in 1..=stages {
            let sentinel = vec![7.0; codes * rows.dim];
            for g in &grads {
                g.write(gpu, bytemuck::cast_slice(&sentinel)).unwrap();
            }
            let grad_z = zeros(gpu, shape);
            let backward = rvq::backward(
                gpu,
                &rvq_graph,
                active,
                &refs,
                &up,
                beta,
                &grad_z,
                Some(&grad_refs),
            )
            .unwrap();
            gpu.run(&[&backward]).unwrap();
            let z_loss = |z: &[f64]| {
                let r = residuals(z, &wide_books);
                let linear: f64 = z
                    .iter()
                    .zip(&upstream)
                    .map(|(a, &b)| a * f64::from(b))
                    .sum();
                // r_s - e_s is r_{s+1}.
                linear
                    + (1..=active)
                        .map(|s| beta as f64 * r[s].iter().map(|x| x * x).sum::<f64>() / numel)
                        .sum::<f64>()
            };
            let tag = format!("z {shape:?} K {codes} S {stages}, {active} active");
            assert_close(
                &format!("{tag}: grad z"),
                &grad_z.to_f32(gpu).unwrap(),
                &numeric_grad(z_loss, &widen(&z)),
                1e-4,
                1e-6,
            );
            for s in 0..stages {
                let got = grads[s].to_f32(gpu).unwrap();
                if s >= active {
                    assert!(
                        got == sentinel,
                        "{tag}: dropped stage {s}'s gradient was written"
                    );
                    continue;
                }
                let book_loss = |e: &[f64]| {
                    let mut total = 0.0;
                    for v in 0..rows.n {
                        for d in 0..rows.dim {
                            let diff = fixed[s][r::at(&rows, v, d)] - e[code(v, s) * rows.dim + d];
                            total += diff * diff;
                        }
                    }
                    total / numel
                };
                assert_close(
                    &format!("{tag}: stage {s}'s codebook gradient"),
                    &got,
                    &numeric_grad(book_loss, &wide_books[s]),
                    1e-4,
                    1e-6,
                );
            }
        }
    }
}

/// Quantises `n` vectors through the component on a caller's device and buffers
/// (everything at byte offset ALIGN) and checks the outputs against the kernel-level run.
fn component_case(config: ResidualConfig, n: usize, seed: u64) {
    let (device, queue) = device();
    let q = ResidualQuantizer::new(&device, &queue, config).unwrap();
    let (k, d, s) = (
        config.codes as usize,
        config.dim as usize,
        config.stages as usize,
    );
    let mut rng = Rng::new(seed);
    let z = rng.vec(n * d);
    let books: Vec<Vec<f32>> = (0..if config.shared_codebook { 1 } else { s })
        .map(|_| rng.vec(k * d))
        .collect();
    let flat: Vec<f32> = books.concat();
    let input = buffer_at_offset(&device, &queue, bytemuck::cast_slice(&z), 0);
    let codebook = buffer_at_offset(&device, &queue, bytemuck::cast_slice(&flat), 0);
    let bytes = |floats: usize| (floats * 4) as u64;
    // Outputs start as garbage: nothing may read them before writing.
    let out = |floats: usize| buffer_at_offset(&device, &queue, &vec![0xAB; floats * 4], 64);
    let (codes, quantized, distances) = (out(n * s), out(n * d), out(n));
    let b = ResidualBindings {
        n: n as u32,
        input: binding(&input, bytes(n * d)),
        codebook: binding(&codebook, bytes(flat.len())),
        codes: Some(binding(&codes, bytes(n * s))),
        quantized: Some(binding(&quantized, bytes(n * d))),
        distances: Some(binding(&distances, bytes(n))),
    };
    q.prepare(&b).unwrap();
    let mut encoder = device.create_command_encoder(&Default::default());
    q.record(&mut encoder, &b).unwrap();
    queue.submit([encoder.finish()]);
    let f32s = |buf, floats| -> Vec<f32> {
        bytemuck::cast_slice(&read(&device, &queue, buf, ALIGN, bytes(floats))).to_vec()
    };
    let shape: Vec<usize> = match config.layout {
        Layout::Rows => vec![n, d],
        Layout::ChannelsFirst { plane } => vec![n / plane as usize, d, plane as usize, 1],
    };
    let stage_books: Vec<Vec<f32>> = (0..s).map(|i| books[i % books.len()].clone()).collect();
    let want = run(gpu(), &shape, &z, &stage_books, false);
    let tag = format!("{config:?} n {n}");
    let got_codes: Vec<u32> =
        bytemuck::cast_slice(&read(&device, &queue, &codes, ALIGN, bytes(n * s))).to_vec();
    assert_eq!(got_codes, want.codes, "{tag}: codes");
    assert_eq!(f32s(&quantized, n * d), want.quantized, "{tag}: quantised");
    assert_eq!(f32s(&distances, n), want.distances, "{tag}: distances");
}

#[test]
fn the_component_quantises_a_callers_buffers() {
    let config = |codes, dim, stages, layout, shared_codebook| ResidualConfig {
        codes,
        dim,
        stages,
        layout,
        shared_codebook,
    };
    // 13 x 7 x 4 bytes per stage is not aligned: the stages are stacked; 16 x 16 x 4 is.
    component_case(config(13, 7, 3, Layout::Rows, false), 61, 1);
    component_case(config(16, 16, 2, Layout::Rows, false), 1, 2);
    component_case(
        config(9, 5, 4, Layout::ChannelsFirst { plane: 6 }, true),
        18,
        3,
    );
    component_case(
        config(9, 5, 1, Layout::ChannelsFirst { plane: 6 }, false),
        12,
        4,
    );
}

#[test]
fn bad_bindings_and_configs_are_errors_that_name_them() {
    let (device, queue) = device();
    let config = ResidualConfig {
        codes: 8,
        dim: 4,
        stages: 3,
        layout: Layout::Rows,
        shared_codebook: false,
    };
    let zero = ResidualQuantizer::new(
        &device,
        &queue,
        ResidualConfig {
            stages: 0,
            ..config
        },
    );
    assert!(zero.err().unwrap().to_string().contains("stages 0"));
    let q = ResidualQuantizer::new(&device, &queue, config).unwrap();
    let buf = |bytes: usize| buffer_at_offset(&device, &queue, &vec![0; bytes], 0);
    let (input, small_book, book, codes, other) = (
        buf(40 * 16),
        buf(2 * 8 * 16),
        buf(3 * 8 * 16),
        buf(40 * 12),
        buf(40 * 16),
    );
    let ok = ResidualBindings {
        n: 40,
        input: binding(&input, 40 * 16),
        codebook: binding(&book, 3 * 8 * 16),
        codes: Some(binding(&codes, 40 * 12)),
        quantized: Some(binding(&other, 40 * 16)),
        distances: None,
    };
    q.prepare(&ok).unwrap();
    let message = |b: ResidualBindings<'_>| {
        let mut encoder = device.create_command_encoder(&Default::default());
        q.record(&mut encoder, &b)
            .expect_err("an error")
            .to_string()
    };
    let m = message(ResidualBindings {
        codebook: binding(&small_book, 2 * 8 * 16),
        ..ok.clone()
    });
    assert!(
        m.contains("codebook")
            && m.contains("256 bytes")
            && m.contains("3 codebooks of 8 codes")
            && m.contains("384"),
        "{m}"
    );
    let m = message(ResidualBindings { n: 0, ..ok.clone() });
    assert!(m.contains("n is 0"), "{m}");
    let m = message(ResidualBindings {
        n: 41,
        ..ok.clone()
    });
    assert!(m.contains("input") && m.contains("41 vectors"), "{m}");
    let m = message(ResidualBindings {
        codes: Some(binding(&codes, 40 * 8)),
        ..ok.clone()
    });
    assert!(
        m.contains("codes") && m.contains("for 3 stages") && m.contains("480"),
        "{m}"
    );
    let m = message(ResidualBindings {
        quantized: Some(binding(&input, 40 * 16)),
        ..ok.clone()
    });
    assert!(m.contains("input and quantized"), "{m}");
    let m = message(ResidualBindings {
        codes: None,
        quantized: None,
        ..ok.clone()
    });
    assert!(m.contains("no output"), "{m}");
}
