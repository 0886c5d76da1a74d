//! Stopping a run cleanly. SIGINT and SIGTERM (Ctrl-C, `kill`, a scheduler's
//! preemption) are noted, not acted on: a training loop looks after each step, writes a
//! resumable checkpoint and ends with [`Error::Stopped`], which the command line turns
//! into exit status 130 or 143. A second signal during that save changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{Error, Result, io};

/// The signals that stop a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, a scheduler).
    Terminate,
}

impl Signal {
    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// The shell's exit status for a process ended by the signal: 128 + its number.
    pub fn exit_status(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    fn code(self) -> usize {
        match self {
            Signal::Interrupt => 1,
            Signal::Terminate => 2,
        }
    }
}

/// A request to stop a run: made by [`Stop::request`], or by a signal once
/// [`Stop::listen`] was called. Clones share one request. The default never fires unless
/// asked.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicUsize>);

impl Stop {
    /// Asks the run to stop after the step in flight (for a program that handles signals
    /// itself, or a test).
    pub fn request(&self, signal: Signal) {
        self.0.store(signal.code(), Ordering::SeqCst);
    }

    /// The stop asked for, if any (the latest signal when several came).
    pub fn requested(&self) -> Option<Signal> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(Signal::Interrupt),
            2 => Some(Signal::Terminate),
            _ => None,
        }
    }

    /// Turns SIGINT and SIGTERM into stop requests from now until the process ends: call
    /// it when the work that a stop should save begins.
    pub fn listen(&self) -> Result<()> {
        for (signal, number) in [(Signal::Interrupt, SIGINT), (Signal::Terminate, SIGTERM)] {
            signal_hook::flag::register_usize(number, self.0.clone(), signal.code())
                .map_err(io("installing a handler for", signal.name()))?;
        }
        Ok(())
    }

    /// The error that ends a run stopped after `step` steps, its files saved in `out`.
    pub(crate) fn stopped(&self, step: u64, out: impl Into<PathBuf>) -> Option<Error> {
        self.requested().map(|signal| Error::Stopped {
            signal,
            step,
            out: out.into(),
        })
    }
}
