//! Train and run a VQ-VAE entirely on the GPU through wgpu.
//!
//! The layers, from the bottom: WGSL kernels ([`shaders`]) and their launchers
//! ([`kernels`]), which check shapes and limits and return [`Launch`]es bound to
//! [`Tensor`]s on a [`Gpu`]. Every kernel has a plain-Rust twin in [`mod@reference`], the
//! ground truth of the tests.

#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod bench;
#[cfg(feature = "cli")]
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod data;
pub mod error;
pub mod gpu;
#[cfg(feature = "cli")]
pub mod images;
pub mod kernels;
pub mod launch;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod network;
#[cfg(feature = "cli")]
pub mod npy;
pub mod params;
#[cfg(feature = "cli")]
pub mod plot;
#[cfg(feature = "cli")]
pub mod prior;
pub mod quantizer;
#[cfg(feature = "cli")]
pub mod ranks;
pub mod reference;
pub mod rng;
pub mod shaders;
#[cfg(feature = "cli")]
pub mod stop;
pub mod tensor;
#[cfg(feature = "cli")]
pub mod train;
#[cfg(feature = "cli")]
pub mod tune;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub use launch::{Dispatch, Launch, Tuning};
pub use tensor::{DType, Tensor};
/// The wgpu this crate is built on: use it for your device and buffers, and versions
/// cannot disagree.
pub use wgpu;
