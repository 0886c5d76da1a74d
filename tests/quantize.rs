//! The quantiser, its backward pass and code usage against the references.

mod common;

use common::*;
use vqvae_wgpu::kernels::quantize::{self, Rows, gather, quantize};
use vqvae_wgpu::kernels::restart::{Reset, Restart};
use vqvae_wgpu::kernels::{codes, ema, topk, vq_backward};
use vqvae_wgpu::reference::quantize as r;
use vqvae_wgpu::{DType, Gpu, Tensor};

/// (z shape, codes): row-major and channels-first, batch 1, odd dimensions, K not a
/// power of two, D below, at and past the shared tile depth of 16.
const CASES: &[(&[usize], usize)] = &[
    (&[1, 3], 5),
    (&[37, 7], 13),
    (&[300, 16], 100),
    (&[129, 33], 17),
    (&[1, 5, 3, 7], 11),
    (&[2, 64, 5, 5], 31),
    (&[3, 19, 4, 6], 512),
    (&[70, 16], 8192),
];

fn run_quantize(
    gpu: &Gpu,
    zs: &[usize],
    z: &[f32],
    cb: &[f32],
    codes: usize,
) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    let rows = Rows::of("test", &upload(gpu, zs, z)).unwrap();
    let zt = upload(gpu, zs, z);
    let cbt = upload(gpu, &[codes, rows.dim], cb);
    let idx = Tensor::zeros(gpu, &[rows.n], DType::U32).unwrap();
    let dist = zeros(gpu, &[rows.n]);
    let zq = zeros(gpu, zs);
    gpu.run(&[&quantize(gpu, &zt, &cbt, &idx, Some(&dist), Some(&zq)).unwrap()])
        .unwrap();
    (
        idx.to_u32(gpu).unwrap(),
        dist.to_f32(gpu).unwrap(),
        zq.to_f32(gpu).unwrap(),
    )
}

#[test]
fn quantize_matches_reference() {
    for gpu in gpus() {
        for (i, &(zs, codes)) in CASES.iter().enumerate() {
            let mut rng = Rng::new(i as u64);
            let rows = Rows::of("test", &upload(gpu, zs, &vec![0.0; zs.iter().product()])).unwrap();
            let z = rng.vec(rows.n * rows.dim);
            let cb = rng.vec(codes * rows.dim);
            let (idx, dist, zq) = run_quantize(gpu, zs, &z, &cb, codes);
            let (z64, cb64) = (widen(&z), widen(&cb));
            let (want_idx, want_dist) = r::nearest(&rows, &z64, &cb64);
            let tag = format!("z {zs:?} codes {codes} {:?}", gpu.tuning());
            for row in 0..rows.n {
                // f32 rounding may pick a code whose distance ties the best to ~1e-6;
                // anything further is a wrong answer.
                let v = r::row(&rows, &z64, row);
                let got = r::sq_dist(&v, &cb64[idx[row] as usize * rows.dim..][..rows.dim]);
                assert!(
                    idx[row] == want_idx[row]
                        || got - want_dist[row] <= 1e-5 * (1.0 + want_dist[row]),
                    "{tag}: row {row} got code {} at {got}, nearest is {} at {}",
                    idx[row],
                    want_idx[row],
                    want_dist[row]
                );
            }
            let want_zq = r::gather(&rows, &idx, &cb64);
            assert_close(&format!("zq {tag}"), &zq, &want_zq, 0.0, 0.0);
            let exact: Vec<f64> = (0..rows.n)
                .map(|row| r::sq_dist(&r::row(&rows, &z64, row), &r::row(&rows, &want_zq, row)))
                .collect();
            assert_close(&format!("dist {tag}"), &dist, &exact, 1e-5, 1e-6);
        }
    }
}

#[test]
fn the_packed_search_gives_the_same_bits_with_codes_shared_across_subgroups() {
    // lavapipe's subgroups have 8 threads, which divide the default tile's 8 codes.
    let mut gpu = open_default();
    let mut runs = Vec::new();
    for shared in [true, false] {
        gpu.set_tuning(vqvae_wgpu::Tuning {
            quantize_subgroup: shared,
            ..vqvae_wgpu::Tuning::REGISTER
        });
        for (i, &(zs, codes)) in CASES.iter().enumerate() {
            let mut rng = Rng::new(i as u64);
            let n: usize = zs.iter().product();
            let dim = zs[1];
            let (z, cb) = (rng.vec(n), rng.vec(codes * dim));
            let (idx, dist, _) = run_quantize(&gpu, zs, &z, &cb, codes);
            let bits: Vec<u32> = dist.iter().map(|v| v.to_bits()).collect();
            runs.push((idx, bits));
        }
    }
    let (with, without) = runs.split_at(CASES.len());
    assert!(with == without, "sharing the codes changed the search");
}

#[test]
fn quantize_ties_go_to_the_lowest_index() {
    for gpu in gpus() {
        // Codes 0..6 hold three distinct vectors, each twice; every row is nearest to a
        // pair and must get the pair's lower index.
        let dim = 5;
        let mut rng = Rng::new(42);
        let distinct: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(dim)).collect();
        let order = [1, 0, 2, 1, 0, 2];
        let cb: Vec<f32> = order.iter().flat_map(|&k| distinct[k].clone()).collect();
        let first = |k: usize| order.iter().position(|&o| o == k).unwrap() as u32;
        let z: Vec<f32> = (0..40)
            .flat_map(|i| distinct[i % 3].iter().map(|v| v + 0.01).collect::<Vec<_>>())
            .collect();
        let (idx, _, _) = run_quantize(gpu, &[40, dim], &z, &cb, 6);
        for (i, &k) in idx.iter().enumerate() {
            assert_eq!(k, first(i % 3), "row {i} {:?}", gpu.tuning());
        }
        // All-equal codes: everything goes to code 0.
        let (idx, _, _) = run_quantize(gpu, &[9, 3], &rng.vec(27), &[0.5; 21], 7);
        assert!(idx.iter().all(|&k| k == 0), "{idx:?}");
    }
}

#[test]
fn gather_writes_the_named_codes() {
    let gpu = gpu();
    for &(zs, codes) in CASES {
        let mut rng = Rng::new(3);
        let zq = zeros(gpu, zs);
        let rows = Rows::of("test", &zq).unwrap();
        let cb = rng.vec(codes * rows.dim);
        let idx: Vec<u32> = (0..rows.n).map(|_| rng.below(codes) as u32).collect();
        let it = Tensor::from_u32(gpu, &[rows.n], &idx).unwrap();
        gpu.run(&[&gather(gpu, &it, &upload(gpu, &[codes, rows.dim], &cb), &zq).unwrap()])
            .unwrap();
        assert_close(
            "gather",
            &zq.to_f32(gpu).unwrap(),
            &r::gather(&rows, &idx, &widen(&cb)),
            0.0,
            0.0,
        );
    }
}

#[test]
fn normalized_vectors_match_reference_and_give_the_nearest_code_by_angle() {
    let gpu = gpu();
    for (i, &(zs, codes)) in CASES.iter().enumerate() {
        let mut rng = Rng::new(70 + i as u64);
        let zt = zeros(gpu, zs);
        let rows = Rows::of("test", &zt).unwrap();
        let mut z = rng.vec(rows.n * rows.dim);
        // A zero vector stays zero (its norm is under the 1e-12 floor).
        for d in 0..rows.dim {
            z[r::at(&rows, 0, d)] = 0.0;
        }
        let cb: Vec<f32> = rng.vec(codes * rows.dim).iter().map(|v| 5.0 * v).collect();
        let (z_t, cb_t) = (upload(gpu, zs, &z), upload(gpu, &[codes, rows.dim], &cb));
        let (zn, cbn) = (zeros(gpu, zs), zeros(gpu, &[codes, rows.dim]));
        let idx = Tensor::zeros(gpu, &[rows.n], DType::U32).unwrap();
        let cb_rows = Rows {
            n: codes,
            dim: rows.dim,
            plane: 1,
        };
        let launch = quantize::normalize(gpu, &z_t, &zn)
            .unwrap()
            .then(quantize::normalize(gpu, &cb_t, &cbn).unwrap())
            .then(quantize(gpu, &zn, &cbn, &idx, None, None).unwrap());
        gpu.run(&[&launch]).unwrap();
        let tag = format!("z {zs:?} codes {codes}");
        let want = r::normalize(&rows, &widen(&z));
        assert_close(
            &format!("normalized {tag}"),
            &zn.to_f32(gpu).unwrap(),
            &want,
            1e-6,
            1e-7,
        );
        let want_cb = r::normalize(&cb_rows, &widen(&cb));
        assert_close(
            &format!("codebook {tag}"),
            &cbn.to_f32(gpu).unwrap(),
            &want_cb,
            1e-6,
            1e-7,
        );
        // The nearest by angle: the largest cosine, checked on the raw vectors.
        let (z64, cb64) = (widen(&z), widen(&cb));
        let cosine = |v: &[f64], e: &[f64]| {
            let dot: f64 = v.iter().zip(e).map(|(a, b)| a * b).sum();
            let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            dot / (norm(v) * norm(e))
        };
        let got = idx.to_u32(gpu).unwrap();
        for row in 1..rows.n {
            let v = r::row(&rows, &z64, row);
            let best = (0..codes)
                .map(|k| cosine(&v, &cb64[k * rows.dim..][..rows.dim]))
                .fold(f64::MIN, f64::max);
            let chosen = cosine(&v, &cb64[got[row] as usize * rows.dim..][..rows.dim]);
            assert!(
                best - chosen <= 1e-5,
                "{tag}: row {row} chose cosine {chosen}, the best is {best}"
            );
        }
    }
}

#[test]
fn top_k_matches_reference_orders_nearest_first_and_breaks_ties_by_index() {
    let gpu = gpu();
    for (i, &(zs, codes)) in CASES.iter().enumerate() {
        let mut rng = Rng::new(90 + i as u64);
        let rows = Rows::of("test", &zeros(gpu, zs)).unwrap();
        let z = rng.vec(rows.n * rows.dim);
        let mut cb = rng.vec(codes * rows.dim);
        // Exact ties: codes 0 and the last are copies of code 1 (where they exist).
        if codes >= 3 {
            let one = cb[rows.dim..2 * rows.dim].to_vec();
            cb[..rows.dim].copy_from_slice(&one);
            cb[(codes - 1) * rows.dim..].copy_from_slice(&one);
        }
        for k in [1, 5, codes.min(topk::MAX_K)] {
            let k = k.min(codes);
            let (idx, dist) = (
                Tensor::zeros(gpu, &[rows.n, k], DType::U32).unwrap(),
                zeros(gpu, &[rows.n, k]),
            );
            let launch = topk::top_k(
                gpu,
                &upload(gpu, zs, &z),
                &upload(gpu, &[codes, rows.dim], &cb),
                k,
                &idx,
                &dist,
            )
            .unwrap();
            gpu.run(&[&launch]).unwrap();
            let (got_i, got_d) = (idx.to_u32(gpu).unwrap(), dist.to_f32(gpu).unwrap());
            let (want_i, want_d) = r::top_k(&rows, &widen(&z), &widen(&cb), k);
            let tag = format!("z {zs:?} codes {codes} k {k}");
            assert_close(&format!("distances {tag}"), &got_d, &want_d, 1e-5, 1e-6);
            for row in 0..rows.n {
                let (gi, gd) = (&got_i[row * k..][..k], &got_d[row * k..][..k]);
                assert!(
                    gd.windows(2).all(|w| w[0] <= w[1]),
                    "{tag}: row {row} {gd:?}"
                );
                for j in 0..k {
                    // Equal distances (the copies) come in index order; elsewhere the
                    // reference's order unless f32 makes a near-tie.
                    if j > 0 && gd[j] == gd[j - 1] {
                        assert!(gi[j] > gi[j - 1], "{tag}: row {row} tie {gi:?}");
                    }
                    let w = row * k + j;
                    let close =
                        |o: usize| (want_d[o] - want_d[w]).abs() <= 1e-5 * (1.0 + want_d[w]);
                    let near_tie = (w > row * k && close(w - 1)) || (j + 1 < k && close(w + 1));
                    assert!(
                        gi[j] == want_i[w] || near_tie,
                        "{tag}: row {row} rank {j} got {} want {}",
                        gi[j],
                        want_i[w]
                    );
                }
            }
        }
    }
    // k outside 1..=min(codes, 32).
    let (z, cb) = (zeros(gpu, &[4, 3]), zeros(gpu, &[40, 3]));
    for k in [0, 33] {
        let (idx, dist) = (
            Tensor::zeros(gpu, &[4, k.max(1)], DType::U32).unwrap(),
            zeros(gpu, &[4, k.max(1)]),
        );
        let e = topk::top_k(gpu, &z, &cb, k, &idx, &dist)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("k {k}: must be from 1 to 32")), "{e}");
    }
    let (idx, dist) = (
        Tensor::zeros(gpu, &[4, 5], DType::U32).unwrap(),
        zeros(gpu, &[4, 5]),
    );
    let e = topk::top_k(gpu, &z, &zeros(gpu, &[4, 3]), 5, &idx, &dist)
        .unwrap_err()
        .to_string();
    assert!(e.contains("k 5: must be from 1 to 4"), "{e}");
}

#[test]
fn vq_backward_matches_reference() {
    for gpu in gpus() {
        for (i, &(zs, codes)) in CASES.iter().enumerate() {
            let mut rng = Rng::new(10 + i as u64);
            let zt = zeros(gpu, zs);
            let rows = Rows::of("test", &zt).unwrap();
            let ze = rng.vec(rows.n * rows.dim);
            let cb = rng.vec(codes * rows.dim);
            let gzq = rng.vec(rows.n * rows.dim);
            // Few codes used, some many times: the per-code sums span chunks.
            let idx: Vec<u32> = (0..rows.n)
                .map(|_| rng.below(codes.min(4)) as u32)
                .collect();
            let zq = r::gather(&rows, &idx, &widen(&cb));
            let zq32: Vec<f32> = zq.iter().map(|&v| v as f32).collect();
            let beta = 0.25;
            let (ze_t, zq_t, gzq_t) = (
                upload(gpu, zs, &ze),
                upload(gpu, zs, &zq32),
                upload(gpu, zs, &gzq),
            );
            let cb_t = upload(gpu, &[codes, rows.dim], &cb);
            let idx_t = Tensor::from_u32(gpu, &[rows.n], &idx).unwrap();
            let (gze, gcb) = (zeros(gpu, zs), zeros(gpu, &[codes, rows.dim]));
            let launch = vq_backward::vq_backward(
                gpu,
                &ze_t,
                &zq_t,
                &idx_t,
                &cb_t,
                &gzq_t,
                beta,
                &gze,
                Some(&gcb),
            )
            .unwrap();
            gpu.run(&[&launch]).unwrap();
            // Without a codebook gradient (EMA) the gradient at z_e is the same.
            let gze_alone = zeros(gpu, zs);
            let alone = vq_backward::vq_backward(
                gpu, &ze_t, &zq_t, &idx_t, &cb_t, &gzq_t, beta, &gze_alone, None,
            )
            .unwrap();
            gpu.run(&[&alone]).unwrap();
            assert_eq!(gze_alone.to_f32(gpu).unwrap(), gze.to_f32(gpu).unwrap());
            let (want_ze, want_cb) = r::vq_backward(
                &rows,
                &widen(&ze),
                &idx,
                &widen(&cb),
                &widen(&gzq),
                f64::from(beta),
            );
            let tag = format!("z {zs:?} codes {codes} {:?}", gpu.tuning());
            assert_close(
                &format!("grad z_e {tag}"),
                &gze.to_f32(gpu).unwrap(),
                &want_ze,
                1e-5,
                1e-7,
            );
            assert_close(
                &format!("grad codebook {tag}"),
                &gcb.to_f32(gpu).unwrap(),
                &want_cb,
                1e-4,
                1e-6,
            );
        }
    }
}

#[test]
fn vq_backward_reference_matches_finite_differences() {
    for (i, &(zs, codes)) in CASES[..6].iter().enumerate() {
        let mut rng = Rng::new(20 + i as u64);
        let n: usize = zs.iter().product();
        let rows = match *zs {
            [n, dim] => Rows { n, dim, plane: 1 },
            [b, dim, h, w] => Rows {
                n: b * h * w,
                dim,
                plane: h * w,
            },
            _ => unreachable!(),
        };
        let ze = widen(&rng.vec(n));
        let cb = widen(&rng.vec(codes * rows.dim));
        let (idx, _) = r::nearest(&rows, &ze, &cb);
        let zq = r::gather(&rows, &idx, &cb);
        let zero = vec![0.0; n];
        let beta = 0.25;
        let (gze, gcb) = r::vq_backward(&rows, &ze, &idx, &cb, &zero, beta);
        assert_grad(
            "commitment",
            &gze,
            &numeric_grad(|ze| r::commitment_loss(ze, &zq, beta), &ze),
        );
        assert_grad(
            "codebook",
            &gcb,
            &numeric_grad(|cb| r::codebook_loss(&rows, &ze, &idx, cb), &cb),
        );
        // The straight-through estimator passes the upstream gradient unchanged.
        let up = widen(&rng.vec(n));
        let (gze_up, _) = r::vq_backward(&rows, &ze, &idx, &cb, &up, beta);
        let passed: Vec<f64> = gze_up.iter().zip(&gze).map(|(a, b)| a - b).collect();
        assert_grad("straight-through", &passed, &up);
    }
}

#[test]
fn code_usage_matches_reference() {
    let gpu = gpu();
    for (n, k, used) in [(1, 1, 1), (1000, 13, 13), (777, 512, 40), (4096, 100, 1)] {
        let mut rng = Rng::new(n as u64);
        let idx: Vec<u32> = (0..n).map(|_| rng.below(used as usize) as u32).collect();
        let it = Tensor::from_u32(gpu, &[n], &idx).unwrap();
        let counts = Tensor::zeros(gpu, &[k as usize], DType::U32).unwrap();
        let stats = zeros(gpu, &[2]);
        let launch = codes::code_usage(gpu, &it, &counts, &stats).unwrap();
        // Twice: the counts are cleared on every run.
        gpu.run(&[&launch, &launch]).unwrap();
        let want = r::histogram(&idx, k as usize);
        assert_eq!(counts.to_u32(gpu).unwrap(), want);
        let (ppl, in_use) = r::perplexity(&want);
        assert_close(
            "perplexity",
            &stats.to_f32(gpu).unwrap(),
            &[ppl, in_use as f64],
            1e-5,
            0.0,
        );
    }
}

/// Restarts codes 11 x 5 under `reset` after two steps of usage in which codes 0, 3 and
/// 7 are never chosen, by the kernel or `on_host` (the dead codes, their rows and the
/// moves of `Restart`'s host half); returns the codebook after, the reference's codebook
/// and which codes restarted, and the window after.
fn restart_after_two_steps(
    gpu: &Gpu,
    reset: Reset<'_>,
    on_host: bool,
) -> (Vec<f32>, Vec<f64>, Vec<bool>, Vec<u32>) {
    let (b, d, h, w, k) = (2, 5, 3, 3, 11);
    let n = b * h * w;
    let rows = Rows {
        n,
        dim: d,
        plane: h * w,
    };
    let mut rng = Rng::new(77);
    let ze = rng.vec(n * d);
    let cb = rng.vec(k * d);
    let steps: [Vec<u32>; 2] = [
        vec![0, 1, 0, 0, 1, 1, 0, 0, 3, 1, 5],
        vec![0, 2, 3, 0, 1, 2, 1, 0, 1, 4, 0],
    ];
    let (ze_t, cb_t) = (upload(gpu, &[b, d, h, w], &ze), upload(gpu, &[k, d], &cb));
    let counts = Tensor::zeros(gpu, &[k], DType::U32).unwrap();
    let window = Tensor::zeros(gpu, &[k], DType::U32).unwrap();
    let seed = 1234;
    let r = Restart::new(gpu, &cb_t, &counts, &window, &ze_t, reset, seed).unwrap();
    for c in &steps {
        counts.write(gpu, bytemuck::cast_slice(c)).unwrap();
        gpu.run(&[r.accumulate()]).unwrap();
    }
    if on_host {
        let dead = r.dead_codes(gpu).unwrap();
        let rows: Vec<usize> = dead.iter().map(|&k| r.source_row(40, k, n)).collect();
        let vectors = r.read_rows(gpu, &rows).unwrap();
        r.restart_onto(gpu, &dead, &vectors).unwrap();
    } else {
        r.set_step(gpu, 40);
        gpu.run(&[r.launch()]).unwrap();
    }
    let total: Vec<u32> = (0..k).map(|i| steps[0][i] + steps[1][i]).collect();
    let (want, restarted) = r::restart(&rows, &total, &widen(&ze), &widen(&cb), seed as u32, 40);
    assert_eq!(restarted.iter().filter(|r| **r).count(), 3);
    (
        cb_t.to_f32(gpu).unwrap(),
        want,
        restarted,
        window.to_u32(gpu).unwrap(),
    )
}

#[test]
fn dead_codes_restart_on_hashed_rows() {
    let gpu = gpu();
    let (k, d) = (11, 5);
    for on_host in [false, true] {
        let (m, v) = (
            upload(gpu, &[k, d], &vec![0.5; k * d]),
            upload(gpu, &[k, d], &vec![0.25; k * d]),
        );
        let (got, want, restarted, window) =
            restart_after_two_steps(gpu, Reset::Moments(&m, &v), on_host);
        assert_close("restarted codebook", &got, &want, 0.0, 0.0);
        for (name, t, kept) in [("first", &m, 0.5), ("second", &v, 0.25)] {
            let moments: Vec<f64> = restarted
                .iter()
                .flat_map(|&r| vec![if r { 0.0 } else { kept }; d])
                .collect();
            let got = t.to_f32(gpu).unwrap();
            assert_close(&format!("cleared {name} moments"), &got, &moments, 0.0, 0.0);
        }
        assert_eq!(window, vec![0; k], "a restart starts a new window");
    }
}

#[test]
fn a_restarted_code_takes_fresh_ema_statistics() {
    let gpu = gpu();
    let (k, d) = (11, 5);
    for on_host in [false, true] {
        let (cluster, sums) = (
            upload(gpu, &[k], &vec![0.7; k]),
            upload(gpu, &[k, d], &vec![0.3; k * d]),
        );
        let reset = Reset::Ema {
            cluster: &cluster,
            sums: &sums,
        };
        let (got, want, restarted, _) = restart_after_two_steps(gpu, reset, on_host);
        assert_close("restarted codebook", &got, &want, 0.0, 0.0);
        // Count 1 and sum = the new vector: the next update keeps the code where it was put.
        let sizes: Vec<f64> = restarted
            .iter()
            .map(|&r| if r { 1.0 } else { 0.7 })
            .collect();
        let got = cluster.to_f32(gpu).unwrap();
        assert_close("cluster sizes", &got, &sizes, 0.0, 1e-7);
        let want_sums: Vec<f64> = (0..k * d)
            .map(|i| if restarted[i / d] { want[i] } else { 0.3 })
            .collect();
        assert_close("sums", &sums.to_f32(gpu).unwrap(), &want_sums, 0.0, 1e-7);
    }
}

#[test]
fn ema_update_matches_reference() {
    let gpu = gpu();
    // Counted: the caller's histogram (here the plain count of `idx`) instead of the
    // launch's own.
    for counted in [false, true] {
        for (i, &(zs, codes)) in CASES.iter().enumerate() {
            ema_case(gpu, 50 + i as u64, zs, codes, counted);
        }
    }
}

fn ema_case(gpu: &Gpu, seed: u64, zs: &[usize], codes: usize, counted: bool) {
    let mut rng = Rng::new(seed);
    let zt = zeros(gpu, zs);
    let rows = Rows::of("test", &zt).unwrap();
    let z = rng.vec(rows.n * rows.dim);
    let cb = rng.vec(codes * rows.dim);
    let idx: Vec<u32> = (0..rows.n).map(|_| rng.below(codes) as u32).collect();
    // Earlier statistics: some clusters empty so far, the rest positive.
    let cluster: Vec<f32> = (0..codes)
        .map(|k| {
            if k % 3 == 0 {
                0.0
            } else {
                (rng.uniform(0.5, 4.0)) as f32
            }
        })
        .collect();
    let ema_w = rng.vec(codes * rows.dim);
    let (cb_t, cl_t, w_t) = (
        upload(gpu, &[codes, rows.dim], &cb),
        upload(gpu, &[codes], &cluster),
        upload(gpu, &[codes, rows.dim], &ema_w),
    );
    let idx_t = Tensor::from_u32(gpu, &[rows.n], &idx).unwrap();
    let (decay, eps) = (0.9, 1e-5);
    let z_t = upload(gpu, zs, &z);
    let launch = if counted {
        let mut counts = vec![0u32; codes];
        for &k in &idx {
            counts[k as usize] += 1;
        }
        let counts = Tensor::from_u32(gpu, &[codes], &counts).unwrap();
        ema::ema_update_counted(gpu, &z_t, &idx_t, &counts, &cb_t, &cl_t, &w_t, decay, eps)
    } else {
        ema::ema_update(gpu, &z_t, &idx_t, &cb_t, &cl_t, &w_t, decay, eps)
    }
    .unwrap();
    gpu.run(&[&launch]).unwrap();
    let (want_cl, want_w, want_cb) = r::ema_update(
        &rows,
        &widen(&z),
        &idx,
        &widen(&cb),
        &widen(&cluster),
        &widen(&ema_w),
        f64::from(decay),
        f64::from(eps),
    );
    let tag = format!("z {zs:?} codes {codes} counted {counted}");
    assert_close(
        &format!("cluster {tag}"),
        &cl_t.to_f32(gpu).unwrap(),
        &want_cl,
        1e-6,
        1e-6,
    );
    assert_close(
        &format!("ema_w {tag}"),
        &w_t.to_f32(gpu).unwrap(),
        &want_w,
        1e-5,
        1e-5,
    );
    assert_close(
        &format!("codebook {tag}"),
        &cb_t.to_f32(gpu).unwrap(),
        &want_cb,
        1e-4,
        1e-5,
    );
}

#[test]
fn ema_with_decay_zero_is_a_lloyd_iteration() {
    let gpu = gpu();
    let (n, dim, codes) = (500, 3, 7);
    let mut rng = Rng::new(9);
    let z = rng.vec(n * dim);
    let cb = rng.vec(codes * dim);
    let rows = Rows { n, dim, plane: 1 };
    let (zt, cb_t) = (upload(gpu, &[n, dim], &z), upload(gpu, &[codes, dim], &cb));
    let idx = Tensor::zeros(gpu, &[n], DType::U32).unwrap();
    let (cl, w) = (zeros(gpu, &[codes]), zeros(gpu, &[codes, dim]));
    let q = quantize(gpu, &zt, &cb_t, &idx, None, None).unwrap();
    let e = ema::ema_update(gpu, &zt, &idx, &cb_t, &cl, &w, 0.0, 0.0).unwrap();
    gpu.run(&[&q, &e]).unwrap();
    // Lloyd: each code moves to the mean of the rows nearest to it.
    let (nearest, _) = r::nearest(&rows, &widen(&z), &widen(&cb));
    let mut means = widen(&cb);
    for c in 0..codes {
        let members: Vec<usize> = (0..n).filter(|&r| nearest[r] as usize == c).collect();
        if members.is_empty() {
            continue;
        }
        for d in 0..dim {
            means[c * dim + d] = members
                .iter()
                .map(|&r| f64::from(z[r * dim + d]))
                .sum::<f64>()
                / members.len() as f64;
        }
    }
    assert_close(
        "one k-means step",
        &cb_t.to_f32(gpu).unwrap(),
        &means,
        1e-4,
        1e-5,
    );
}

#[test]
fn kmeans_matches_reference_and_repeats_for_a_seed() {
    use vqvae_wgpu::kernels::kmeans::kmeans;
    // Rows, a channels-first map, and fewer rows than codes.
    let cases: [(&[usize], usize); 3] = [(&[300, 5], 7), (&[2, 3, 6, 5], 4), (&[5, 2], 8)];
    for gpu in gpus() {
        for (i, &(shape, k)) in cases.iter().enumerate() {
            let rows = Rows::of("test", &zeros(gpu, shape)).unwrap();
            let mut rng = Rng::new(130 + i as u64);
            let z = rng.vec(shape.iter().product());
            let z_t = upload(gpu, shape, &z);
            let tag = format!("{shape:?} K={k} {:?}", gpu.tuning());
            let run = |seed: u64| {
                let cb = zeros(gpu, &[k, rows.dim]);
                let km = kmeans(gpu, &z_t, &cb, 4, seed).unwrap();
                gpu.run(&[km.launch()]).unwrap();
                (cb.to_f32(gpu).unwrap(), km.seeds.to_u32(gpu).unwrap())
            };
            let (cb, seeds) = run(11);
            let want_seeds = r::kmeans_seeds(&rows, &widen(&z), k, 11);
            let seeds: Vec<usize> = seeds.iter().map(|&s| s as usize).collect();
            assert_eq!(seeds, want_seeds, "seeds {tag}");
            let seeded: Vec<f64> = want_seeds
                .iter()
                .flat_map(|&s| r::row(&rows, &widen(&z), s))
                .collect();
            let want_cb = r::lloyd(&rows, &widen(&z), &seeded, 4);
            assert_close(&format!("centroids {tag}"), &cb, &want_cb, 1e-5, 1e-5);
            // The same assignments to the final codebooks.
            let assigned = Tensor::zeros(gpu, &[rows.n], DType::U32).unwrap();
            let cb_t = upload(gpu, &[k, rows.dim], &cb);
            gpu.run(&[&quantize(gpu, &z_t, &cb_t, &assigned, None, None).unwrap()])
                .unwrap();
            let want_assigned = r::nearest(&rows, &widen(&z), &want_cb).0;
            assert_eq!(
                assigned.to_u32(gpu).unwrap(),
                want_assigned,
                "assignments {tag}"
            );
            let again = run(11);
            assert!(again.0 == cb, "same seed, same centroids {tag}");
            assert_eq!(again.1, run(11).1, "same seed, same seeds {tag}");
            if k > 1 {
                assert_ne!(run(12).1, run(11).1, "another seed, other seeds {tag}");
            }
        }
    }
}

#[test]
fn kmeans_finds_well_separated_clusters_and_its_objective_never_rises() {
    use vqvae_wgpu::kernels::kmeans::kmeans;
    let gpu = gpu();
    // 7 blobs of 31 points in 5 dimensions, centres far apart, little noise.
    let (blobs, per, dim) = (7usize, 31usize, 5usize);
    let mut rng = Rng::new(77);
    let centres: Vec<f32> = (0..blobs * dim)
        .map(|_| 20.0 * rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let z: Vec<f32> = (0..blobs * per)
        .flat_map(|i| {
            let c = &centres[(i % blobs) * dim..][..dim];
            c.iter()
                .map(|&v| v + 0.1 * rng.uniform(-1.0, 1.0) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let rows = Rows {
        n: blobs * per,
        dim,
        plane: 1,
    };
    let zt = upload(gpu, &[rows.n, dim], &z);
    let objective = |cb: &[f32]| -> f64 {
        let (_, d) = r::nearest(&rows, &widen(&z), &widen(cb));
        d.iter().sum()
    };
    let mut last = f64::INFINITY;
    for iters in 1..=6 {
        let cb = zeros(gpu, &[blobs, dim]);
        gpu.run(&[kmeans(gpu, &zt, &cb, iters, 5).unwrap().launch()])
            .unwrap();
        let cb = cb.to_f32(gpu).unwrap();
        let now = objective(&cb);
        assert!(
            now <= last * (1.0 + 1e-6),
            "{iters} iterations: objective {now} after {last}"
        );
        last = now;
        if iters == 6 {
            // Every blob is one cluster: points of a blob share a code, blobs differ.
            let (assigned, _) = r::nearest(&rows, &widen(&z), &widen(&cb));
            for b in 0..blobs {
                let code = assigned[b];
                assert!(
                    (0..per).all(|p| assigned[p * blobs + b] == code),
                    "blob {b} is split"
                );
                assert!(
                    (0..b).all(|o| assigned[o] != code),
                    "blobs {b} and another share a code"
                );
            }
        }
    }
}
