//! Optimizer steps as PyTorch defines them.

use crate::kernels::optim::AdamConfig;

/// One `torch.optim.Adam` step (`step` counts from 1) on `params` with moments `m`, `v`.
pub fn adam(
    c: &AdamConfig,
    step: u64,
    params: &mut [f64],
    grads: &[f64],
    m: &mut [f64],
    v: &mut [f64],
) {
    let t = step as i32;
    let step_size = c.lr / (1.0 - c.beta1.powi(t));
    let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
    for i in 0..params.len() {
        let g = grads[i];
        m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
        v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
        params[i] -= step_size * m[i] / (v[i].sqrt() / bc2_sqrt + c.eps);
    }
}

/// One plain SGD step.
pub fn sgd(lr: f64, params: &mut [f64], grads: &[f64]) {
    for (p, g) in params.iter_mut().zip(grads) {
        *p -= lr * g;
    }
}
