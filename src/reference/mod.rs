//! Plain-Rust twins of every kernel, forward and backward, written for obviousness
//! rather than speed and computed in f64: the ground truth of the tests, and the CPU
//! baseline of the benchmarks.

pub mod conv;
pub mod fsq;
pub mod loss;
pub mod model;
pub mod optim;
pub mod prior;
pub mod quantize;

/// `max(v, 0)` element-wise.
pub fn relu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

/// The gradient through a ReLU: `grad` where `act > 0`, else 0.
pub fn relu_backward(grad: &[f64], act: &[f64]) -> Vec<f64> {
    grad.iter()
        .zip(act)
        .map(|(&g, &a)| if a > 0.0 { g } else { 0.0 })
        .collect()
}

/// `a + b` element-wise.
pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Widens f32 values to f64.
pub fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}
