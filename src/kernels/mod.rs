//! Rust launchers for the WGSL kernels, one module per file in `shaders/`: each checks
//! shapes and limits, builds its pipelines (once per device) and bind groups, and
//! returns a [`Launch`](crate::Launch) to record into a compute pass.

pub mod causal_mask;
pub mod codes;
pub mod conv;
pub mod elementwise;
pub mod ema;
pub mod embedding;
pub mod fsq;
pub mod gated;
pub mod guard;
pub mod kmeans;
pub mod loss;
pub mod optim;
pub mod quantize;
pub mod reduce;
pub mod restart;
pub mod rows;
pub mod rvq;
pub mod softmax;
pub mod subgroups;
pub mod subpixel;
pub mod topk;
pub mod unrolled;
pub mod vq_backward;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::launch::Tuning;

/// Checks every workgroup shape and workgroup memory `tuning` gives the kernels against
/// `gpu`'s limits: a tuning from elsewhere (a resumed run's) is refused up front, with
/// the limit it exceeds, rather than at the first kernel it breaks.
pub fn check_tuning(gpu: &Gpu, tuning: &Tuning) -> Result<()> {
    let op = "the kernel tuning";
    for (wg, bytes) in conv::workgroups(tuning) {
        gpu.check_workgroup(op, wg, bytes)?;
    }
    gpu.check_workgroup(
        op,
        [tuning.quantize_workgroup, 1],
        quantize::shared_bytes(tuning),
    )
}
