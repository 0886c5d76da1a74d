//! The VQ-VAE loss of DESIGN.md section 1.

/// `mean((a - b)^2)`.
pub fn mse(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len() as f64
}

/// The gradient of [`mse`] with respect to `a`.
pub fn mse_grad(a: &[f64], b: &[f64]) -> Vec<f64> {
    let scale = 2.0 / a.len() as f64;
    a.iter().zip(b).map(|(x, y)| scale * (x - y)).collect()
}

/// `[loss, reconstruction, codebook term, commitment term]` from the reconstruction,
/// the input and `z_e - z_q`.
pub fn terms(x_hat: &[f64], x: &[f64], ze: &[f64], zq: &[f64], beta: f64) -> [f64; 4] {
    let recon = mse(x_hat, x);
    let vq = mse(ze, zq);
    [recon + (1.0 + beta) * vq, recon, vq, beta * vq]
}
