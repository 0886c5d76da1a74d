//! Rust launchers for the WGSL kernels, one module per file in `shaders/`: each checks
//! shapes and limits, builds its pipelines (once per device) and bind groups, and
//! returns a [`Launch`](crate::Launch) to record into a compute pass.

pub mod causal_mask;
pub mod codes;
pub mod conv;
pub mod elementwise;
pub mod ema;
pub mod embedding;
pub mod gated;
pub mod loss;
pub mod optim;
pub mod quantize;
pub mod reduce;
pub mod restart;
pub mod softmax;
pub mod unrolled;
pub mod vq_backward;
