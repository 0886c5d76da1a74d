//! The prior's kernels: embedding lookup and backward, causal masks, softmax
//! cross-entropy, categorical sampling, and moving rows between code grids.

use super::quantize::{at, pcg};
use crate::kernels::causal_mask::Mask;
use crate::kernels::conv::ConvShape;
use crate::kernels::quantize::Rows;
use crate::kernels::rows::RowCopy;

/// The embedding of `indices`: row `r` is `table[indices[r]]` (the quantiser's gather).
pub fn embedding(rows: &Rows, indices: &[u32], table: &[f64]) -> Vec<f64> {
    super::quantize::gather(rows, indices, table)
}

/// The gradient of a `[codes, dim]` table from the gradient at the embedding's output.
pub fn embedding_grad(rows: &Rows, indices: &[u32], grad_out: &[f64], codes: usize) -> Vec<f64> {
    let mut g = vec![0.0; codes * rows.dim];
    for (r, &k) in indices.iter().enumerate() {
        for d in 0..rows.dim {
            g[k as usize * rows.dim + d] += grad_out[at(rows, r, d)];
        }
    }
    g
}

/// Conv weights `[cout, cin, kh, kw]` with the taps `mask` removes set to zero.
pub fn causal_mask(w: &[f64], [kh, kw]: [usize; 2], mask: Mask) -> Vec<f64> {
    w.iter()
        .enumerate()
        .map(|(i, &v)| {
            let tap = [(i / kw) % kh, i % kw];
            if mask.keeps(tap, [kh, kw]) { v } else { 0.0 }
        })
        .collect()
}

/// A masked convolution: `conv2d` with the masked taps of `w` zeroed.
pub fn masked_conv2d(s: &ConvShape, x: &[f64], w: &[f64], bias: &[f64], mask: Mask) -> Vec<f64> {
    super::conv::conv2d(s, x, &causal_mask(w, [s.kh, s.kw], mask), bias)
}

/// Logit `k` at position `s` of image `b` in channels-first `[batch, K, plane]`.
fn logit(logits: &[f64], [k_all, plane]: [usize; 2], b: usize, k: usize, s: usize) -> f64 {
    logits[(b * k_all + k) * plane + s]
}

/// Each position's `-log softmax(logits)[target]`, and the gradient of their mean with
/// respect to the logits. `logits` is `[batch, K, plane]`, `targets` `[batch * plane]`.
pub fn softmax_xent(
    logits: &[f64],
    targets: &[u32],
    [k_all, plane]: [usize; 2],
) -> (Vec<f64>, Vec<f64>) {
    let rows = targets.len();
    let mut grad = vec![0.0; logits.len()];
    let losses = (0..rows)
        .map(|i| {
            let (b, s) = (i / plane, i % plane);
            let l: Vec<f64> = (0..k_all)
                .map(|k| logit(logits, [k_all, plane], b, k, s))
                .collect();
            let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = l.iter().map(|v| (v - m).exp()).sum();
            let t = targets[i] as usize;
            for (k, v) in l.iter().enumerate() {
                let q = (v - m).exp() / sum;
                let one = if k == t { 1.0 } else { 0.0 };
                grad[(b * k_all + k) * plane + s] = (q - one) / rows as f64;
            }
            m + sum.ln() - l[t]
        })
        .collect();
    (losses, grad)
}

/// The uniform variate in [0, 1) of image `b` at position `pos` (24 bits of a PCG hash).
pub fn uniform(seed: u32, b: u32, pos: u32) -> f64 {
    f64::from(pcg(seed ^ pcg(b ^ pcg(pos))) >> 8) / 16_777_216.0
}

/// A draw for each image from `softmax(logits[b, :, pos] / temperature)` by inverting
/// the cumulative distribution at [`uniform`] of grid position `at`; with it, the distance from the variate
/// to the nearest boundary of the chosen interval, relative to the total (draws within
/// rounding of a boundary may differ in f32).
pub fn sample(
    logits: &[f64],
    [batch, k_all, plane]: [usize; 3],
    pos: usize,
    at: usize,
    temperature: f64,
    seed: u32,
) -> Vec<(u32, f64)> {
    (0..batch)
        .map(|b| {
            let l: Vec<f64> = (0..k_all)
                .map(|k| logit(logits, [k_all, plane], b, k, pos))
                .collect();
            let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = l.iter().map(|v| ((v - m) / temperature).exp()).collect();
            let total: f64 = w.iter().sum();
            let u = uniform(seed, b as u32, at as u32);
            let mut acc = 0.0;
            for (k, wk) in w.iter().enumerate() {
                let next = acc + wk / total;
                if next > u {
                    return (k as u32, (u - acc).min(next - u));
                }
                acc = next;
            }
            // Only by rounding: the last code with any weight.
            let last = w.iter().rposition(|&v| v > 0.0).unwrap_or(0);
            (last as u32, 0.0)
        })
        .collect()
}

/// Index in `[batch, 2C, plane]` of the first half's element for output element `i` of
/// `[batch, C, plane]`.
fn first_half(i: usize, [c, plane]: [usize; 2]) -> usize {
    (i / (c * plane)) * 2 * c * plane + i % (c * plane)
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// The gated activation: `tanh(a) * sigmoid(b)` for the channel halves `a`, `b` of `x`
/// `[batch, 2C, plane]`; the result is `[batch, C, plane]`.
pub fn gate(x: &[f64], [c, plane]: [usize; 2]) -> Vec<f64> {
    (0..x.len() / 2)
        .map(|i| {
            let a = first_half(i, [c, plane]);
            x[a].tanh() * sigmoid(x[a + c * plane])
        })
        .collect()
}

/// The gradient at the gate's input from the gradient `dy` at its output.
pub fn gate_backward(x: &[f64], dy: &[f64], [c, plane]: [usize; 2]) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    for (i, g) in dy.iter().enumerate() {
        let a = first_half(i, [c, plane]);
        let (t, s) = (x[a].tanh(), sigmoid(x[a + c * plane]));
        dx[a] = g * (1.0 - t * t) * s;
        dx[a + c * plane] = g * t * s * (1.0 - s);
    }
    dx
}

/// Rows shifted down by one (`[.., h, w]`), zeros in the first row.
pub fn shift_down(x: &[f64], [h, w]: [usize; 2]) -> Vec<f64> {
    (0..x.len())
        .map(|i| if i % (h * w) >= w { x[i - w] } else { 0.0 })
        .collect()
}

/// Rows shifted up by one, zeros in the last row: the adjoint of [`shift_down`].
pub fn shift_up(x: &[f64], [h, w]: [usize; 2]) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            if i % (h * w) < (h - 1) * w {
                x[i + w]
            } else {
                0.0
            }
        })
        .collect()
}

/// [`crate::kernels::rows::copy_rows`]: `dst` with the rows `c` names replaced by
/// `src`'s.
pub fn copy_rows(src: &[u32], dst: &[u32], c: &RowCopy) -> Vec<u32> {
    let mut out = dst.to_vec();
    for b in 0..c.batch {
        for r in 0..c.rows {
            let from = ((b * c.from[0] + c.from[1] + r) * c.width)..;
            let to = (b * c.to[0] + c.to[1] + r) * c.width;
            out[to..to + c.width].copy_from_slice(&src[from][..c.width]);
        }
    }
    out
}
