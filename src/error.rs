//! The crate's error type: every failure a caller can meet, with the value, the shape or
//! the limit that caused it.

use std::fmt;

/// Anything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter matched the request.
    #[error("no GPU adapter found{request}. {hint}")]
    NoAdapter {
        /// What was asked for, e.g. ` for WGPU_BACKEND=vulkan`, or empty.
        request: String,
        /// How to get one.
        hint: &'static str,
    },
    /// The adapter refused to create a device.
    #[error("could not open a device on adapter '{adapter}': {message}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// The driver's reason.
        message: String,
    },
    /// Shapes that do not fit together, or a size that is not allowed.
    #[error("{op}: {message}")]
    Shape {
        /// The operation that checked the shapes.
        op: &'static str,
        /// What was given and what was expected.
        message: String,
    },
    /// Work that needs more than the device allows.
    #[error("{op}: {what} needs {needed}, but this device allows at most {limit}")]
    Limit {
        /// The operation that checked the limit.
        op: &'static str,
        /// The limited quantity (a wgpu limit name where one applies).
        what: &'static str,
        /// What the work needs.
        needed: u64,
        /// What the device allows.
        limit: u64,
    },
    /// An error reported by wgpu: validation, out of memory, or an internal error.
    #[error("GPU error during {context}: {message}")]
    Gpu {
        /// What the crate was doing.
        context: String,
        /// wgpu's message.
        message: String,
    },
    /// The device was lost or a wait on it failed.
    #[error("GPU device lost or unresponsive during {context}: {message}")]
    DeviceLost {
        /// What the crate was doing.
        context: String,
        /// wgpu's message.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A shape error for `op`.
    pub(crate) fn shape(op: &'static str, message: impl fmt::Display) -> Self {
        Error::Shape {
            op,
            message: message.to_string(),
        }
    }
}

/// Returns a shape error for `op` unless `cond` holds.
pub(crate) fn ensure(cond: bool, op: &'static str, message: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::shape(op, message()))
    }
}
