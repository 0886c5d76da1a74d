//! The crate's error type: every failure a caller can meet, with the value, the shape or
//! the limit that caused it.

use std::fmt;
use std::path::PathBuf;

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
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] Box<IoError>),
    /// A data file or folder that is not what it should be.
    #[error("{}: {message}", path.display())]
    Data {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A checkpoint that does not hold the model it should.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is missing or inconsistent.
        message: String,
    },
    /// A command-line value that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// Training produced a loss that is not a finite number.
    #[error("the loss became {value} at step {step}; training stopped. {kept}")]
    NonFinite {
        /// The step whose loss was not finite.
        step: u64,
        /// The value (NaN or infinite).
        value: f32,
        /// Where the last good checkpoint is, if any.
        kept: String,
    },
    /// A run stopped by a signal after saving a resumable checkpoint.
    #[cfg(feature = "cli")]
    #[error(
        "stopped by {} after step {step}; the checkpoint and training state are saved in {}: to continue, run the same command with --resume {}",
        signal.name(), out.display(), out.display()
    )]
    Stopped {
        /// The signal.
        signal: crate::stop::Signal,
        /// The step the saved files hold.
        step: u64,
        /// The run folder.
        out: PathBuf,
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

/// Reading or writing a file failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct IoError {
    /// What was being done ("reading", "writing", ...).
    pub action: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The operating system's reason.
    pub source: std::io::Error,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit status for this error (DESIGN.md section 3): 130 or 143 for a
    /// run stopped by SIGINT or SIGTERM, 1 for anything else.
    pub fn exit_status(&self) -> u8 {
        match self {
            #[cfg(feature = "cli")]
            Error::Stopped { signal, .. } => signal.exit_status(),
            _ => 1,
        }
    }

    /// A shape error for `op`.
    pub(crate) fn shape(op: &'static str, message: impl fmt::Display) -> Self {
        Error::Shape {
            op,
            message: message.to_string(),
        }
    }
}

/// A closure mapping an I/O error on `path` to an [`Error`].
pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| {
        Error::Io(Box::new(IoError {
            action,
            path,
            source,
        }))
    }
}

/// A data error about `path`.
pub fn data(path: impl Into<PathBuf>, message: impl fmt::Display) -> Error {
    Error::Data {
        path: path.into(),
        message: message.to_string(),
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
