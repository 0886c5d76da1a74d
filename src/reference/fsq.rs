//! Finite scalar quantisation in f64: the forward pass with codes, the straight-through
//! backward pass, and the surrogate it is the gradient of.

use crate::kernels::quantize::Rows;
use crate::reference::quantize::at;

const EPS: f64 = 1e-3;

fn half_l(l: u32) -> f64 {
    f64::from(l - 1) * (1.0 + EPS) / 2.0
}

fn offset(l: u32) -> f64 {
    if l.is_multiple_of(2) { 0.5 } else { 0.0 }
}

/// The bound of dimension `l`: `tanh(v + atanh(offset / half_l)) half_l - offset`.
pub fn bound(v: f64, l: u32) -> f64 {
    (v + (offset(l) / half_l(l)).atanh()).tanh() * half_l(l) - offset(l)
}

/// `zhat` (the layout of `z`) and each vector's mixed-radix code (dimension 0 the least
/// significant); rounding half to even, as the GPU does.
pub fn quantize(rows: &Rows, levels: &[u32], z: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let mut zhat = vec![0.0; z.len()];
    let codes = (0..rows.n)
        .map(|r| {
            let (mut code, mut radix) = (0u32, 1u32);
            for (d, &l) in levels.iter().enumerate() {
                let i = at(rows, r, d);
                let level = bound(z[i], l).round_ties_even();
                let half_width = f64::from(l / 2);
                zhat[i] = level / half_width;
                code += (level + half_width) as u32 * radix;
                radix = radix.wrapping_mul(l);
            }
            code
        })
        .collect();
    (zhat, codes)
}

/// What the straight-through estimator differentiates: `bound(z) / (L / 2)`, the
/// quantised value without its rounding.
pub fn surrogate(rows: &Rows, levels: &[u32], z: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; z.len()];
    for r in 0..rows.n {
        for (d, &l) in levels.iter().enumerate() {
            let i = at(rows, r, d);
            out[i] = bound(z[i], l) / f64::from(l / 2);
        }
    }
    out
}

/// The gradient at `z` from the gradient at `zhat`: that of [`surrogate`].
pub fn backward(rows: &Rows, levels: &[u32], z: &[f64], grad_zhat: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; z.len()];
    for r in 0..rows.n {
        for (d, &l) in levels.iter().enumerate() {
            let i = at(rows, r, d);
            let t = (z[i] + (offset(l) / half_l(l)).atanh()).tanh();
            out[i] = grad_zhat[i] * (1.0 - t * t) * half_l(l) / f64::from(l / 2);
        }
    }
    out
}
