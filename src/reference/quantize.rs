//! Nearest-code quantisation, its backward pass and code usage.

use crate::kernels::quantize::Rows;
pub use crate::rng::pcg;

/// Flat index of element `d` of row `r`.
pub fn at(rows: &Rows, r: usize, d: usize) -> usize {
    (r / rows.plane) * rows.dim * rows.plane + d * rows.plane + r % rows.plane
}

/// Row `r` of `z` as a vector.
pub fn row(rows: &Rows, z: &[f64], r: usize) -> Vec<f64> {
    (0..rows.dim).map(|d| z[at(rows, r, d)]).collect()
}

/// Squared distance between two vectors.
pub fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Each vector of `z` divided by its L2 norm (by 1e-12 where that is smaller).
pub fn normalize(rows: &Rows, z: &[f64]) -> Vec<f64> {
    let mut out = z.to_vec();
    for r in 0..rows.n {
        let norm = row(rows, z, r).iter().map(|v| v * v).sum::<f64>().sqrt();
        for d in 0..rows.dim {
            out[at(rows, r, d)] = z[at(rows, r, d)] / norm.max(1e-12);
        }
    }
    out
}

/// Each row's `k` nearest codes and their squared distances, nearest first, ties to the
/// lowest index: `[n, k]` each.
pub fn top_k(rows: &Rows, z: &[f64], codebook: &[f64], k: usize) -> (Vec<u32>, Vec<f64>) {
    let mut indices = Vec::with_capacity(rows.n * k);
    let mut distances = Vec::with_capacity(rows.n * k);
    for r in 0..rows.n {
        let v = row(rows, z, r);
        let mut all: Vec<(f64, u32)> = codebook
            .chunks(rows.dim)
            .enumerate()
            .map(|(c, e)| (sq_dist(&v, e), c as u32))
            .collect();
        // A stable sort keeps equal distances in index order.
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        for &(d, c) in &all[..k] {
            indices.push(c);
            distances.push(d);
        }
    }
    (indices, distances)
}

/// Each row's nearest code (ties to the lowest index) and its squared distance.
pub fn nearest(rows: &Rows, z: &[f64], codebook: &[f64]) -> (Vec<u32>, Vec<f64>) {
    (0..rows.n)
        .map(|r| {
            let v = row(rows, z, r);
            let mut best = (0u32, f64::INFINITY);
            for (k, e) in codebook.chunks(rows.dim).enumerate() {
                let d = sq_dist(&v, e);
                if d < best.1 {
                    best = (k as u32, d);
                }
            }
            best
        })
        .unzip()
}

/// Residual VQ: stage s takes the nearest code of `codebooks[s]` to what the stages
/// before it left. Returns the codes `[n, S]`, the sum of the stages' code vectors (in
/// the layout of `rows`) and each vector's squared distance to that sum.
pub fn residual(rows: &Rows, z: &[f64], codebooks: &[&[f64]]) -> (Vec<u32>, Vec<f64>, Vec<f64>) {
    let stages = codebooks.len();
    let mut residual = z.to_vec();
    let mut sum = vec![0.0; z.len()];
    let mut codes = vec![0; rows.n * stages];
    for (s, codebook) in codebooks.iter().enumerate() {
        let (indices, _) = nearest(rows, &residual, codebook);
        let q = gather(rows, &indices, codebook);
        for i in 0..z.len() {
            residual[i] -= q[i];
            sum[i] += q[i];
        }
        for (r, &k) in indices.iter().enumerate() {
            codes[r * stages + s] = k;
        }
    }
    let dist = (0..rows.n)
        .map(|r| sq_dist(&row(rows, z, r), &row(rows, &sum, r)))
        .collect();
    (codes, sum, dist)
}

/// `z_q`: the code vectors `indices` name, in the layout of `rows`.
pub fn gather(rows: &Rows, indices: &[u32], codebook: &[f64]) -> Vec<f64> {
    let mut zq = vec![0.0; rows.n * rows.dim];
    for (r, &k) in indices.iter().enumerate() {
        for d in 0..rows.dim {
            zq[at(rows, r, d)] = codebook[k as usize * rows.dim + d];
        }
    }
    zq
}

/// The commitment term `beta * mean((z_e - z_q)^2)` with `z_q` fixed.
pub fn commitment_loss(ze: &[f64], zq: &[f64], beta: f64) -> f64 {
    beta * sq_dist(ze, zq) / ze.len() as f64
}

/// The codebook term `mean((z_e - codebook[indices])^2)` with `z_e` and the indices fixed.
pub fn codebook_loss(rows: &Rows, ze: &[f64], indices: &[u32], codebook: &[f64]) -> f64 {
    sq_dist(ze, &gather(rows, indices, codebook)) / ze.len() as f64
}

/// The quantiser's backward pass: `grad_ze = grad_zq + d commitment / d z_e` (the
/// straight-through estimator) and `grad_codebook = d codebook term / d codebook`.
pub fn vq_backward(
    rows: &Rows,
    ze: &[f64],
    indices: &[u32],
    codebook: &[f64],
    grad_zq: &[f64],
    beta: f64,
) -> (Vec<f64>, Vec<f64>) {
    let zq = gather(rows, indices, codebook);
    let numel = ze.len() as f64;
    let grad_ze = (0..ze.len())
        .map(|i| grad_zq[i] + 2.0 * beta * (ze[i] - zq[i]) / numel)
        .collect();
    let mut grad_cb = vec![0.0; codebook.len()];
    for (r, &k) in indices.iter().enumerate() {
        for d in 0..rows.dim {
            let i = at(rows, r, d);
            grad_cb[k as usize * rows.dim + d] += 2.0 * (zq[i] - ze[i]) / numel;
        }
    }
    (grad_ze, grad_cb)
}

/// How often each of `codes` codes occurs.
pub fn histogram(indices: &[u32], codes: usize) -> Vec<u32> {
    let mut counts = vec![0; codes];
    for &k in indices {
        counts[k as usize] += 1;
    }
    counts
}

/// `exp` of the entropy of the code frequencies, and the number of codes in use.
pub fn perplexity(counts: &[u32]) -> (f64, usize) {
    let n: u32 = counts.iter().sum();
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let q = f64::from(c) / f64::from(n);
            -q * q.ln()
        })
        .sum();
    (entropy.exp(), counts.iter().filter(|&&c| c > 0).count())
}

/// Dead-code restart: codes with zero `window` usage take row
/// `pcg(pcg(seed ^ pcg(step)) ^ k) % n` of `ze`. Returns the new codebook and which
/// codes restarted.
pub fn restart(
    rows: &Rows,
    window: &[u32],
    ze: &[f64],
    codebook: &[f64],
    seed: u32,
    step: u32,
) -> (Vec<f64>, Vec<bool>) {
    let mut out = codebook.to_vec();
    let restarted: Vec<bool> = window.iter().map(|&w| w == 0).collect();
    for (k, _) in restarted.iter().enumerate().filter(|(_, r)| **r) {
        let r = (pcg(pcg(seed ^ pcg(step)) ^ k as u32) % rows.n as u32) as usize;
        out[k * rows.dim..(k + 1) * rows.dim].copy_from_slice(&row(rows, ze, r));
    }
    (out, restarted)
}

/// One EMA codebook update as `shaders/ema.wgsl` documents it; returns the new cluster
/// sizes, EMA sums and codebook.
#[allow(clippy::too_many_arguments)]
pub fn ema_update(
    rows: &Rows,
    z: &[f64],
    indices: &[u32],
    codebook: &[f64],
    cluster: &[f64],
    ema_w: &[f64],
    decay: f64,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let k = cluster.len();
    let counts = histogram(indices, k);
    let mut sums = vec![0.0; codebook.len()];
    for (r, &c) in indices.iter().enumerate() {
        for (d, v) in row(rows, z, r).into_iter().enumerate() {
            sums[c as usize * rows.dim + d] += v;
        }
    }
    let cluster: Vec<f64> = cluster
        .iter()
        .zip(&counts)
        .map(|(s, &c)| decay * s + (1.0 - decay) * f64::from(c))
        .collect();
    let ema_w: Vec<f64> = ema_w
        .iter()
        .zip(&sums)
        .map(|(w, s)| decay * w + (1.0 - decay) * s)
        .collect();
    let n: f64 = cluster.iter().sum();
    let codebook = (0..codebook.len())
        .map(|i| {
            let size = cluster[i / rows.dim];
            if size <= 0.0 {
                codebook[i]
            } else {
                ema_w[i] / ((size + eps) / (n + k as f64 * eps) * n)
            }
        })
        .collect();
    (cluster, ema_w, codebook)
}

/// The rows k-means++ seeding draws for `k` centres, as `shaders/kmeans.wgsl` draws
/// them (sums in f64: a draw within rounding of a boundary may differ in f32).
pub fn kmeans_seeds(rows: &Rows, z: &[f64], k: usize, seed: u32) -> Vec<usize> {
    let mut dist = vec![0.0; rows.n];
    let mut seeds = Vec::with_capacity(k);
    for c in 0..k {
        let u = (pcg(seed ^ pcg(c as u32)) >> 8) as f32 * (1.0 / 16_777_216.0);
        let total: f64 = dist.iter().sum();
        let mut pick = ((u * rows.n as f32) as usize).min(rows.n - 1);
        if c > 0 && total > 0.0 {
            let goal = f64::from(u) * total;
            let mut acc = 0.0;
            for (r, &d) in dist.iter().enumerate().filter(|(_, d)| **d > 0.0) {
                pick = r;
                acc += d;
                if acc > goal {
                    break;
                }
            }
        }
        seeds.push(pick);
        let centre = row(rows, z, pick);
        for (r, d) in dist.iter_mut().enumerate() {
            let d2 = sq_dist(&row(rows, z, r), &centre);
            *d = if c == 0 { d2 } else { d.min(d2) };
        }
    }
    seeds
}

/// `iters` Lloyd iterations from `codebook`: assign every row to its nearest code, then
/// move every used code to the mean of its rows.
pub fn lloyd(rows: &Rows, z: &[f64], codebook: &[f64], iters: usize) -> Vec<f64> {
    let k = codebook.len() / rows.dim;
    let mut cb = codebook.to_vec();
    for _ in 0..iters {
        let assigned = nearest(rows, z, &cb).0;
        let (none, no_sums) = (vec![0.0; k], vec![0.0; k * rows.dim]);
        cb = ema_update(rows, z, &assigned, &cb, &none, &no_sums, 0.0, 0.0).2;
    }
    cb
}
