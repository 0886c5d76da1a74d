//! The command handlers of `vqvae`, one module per group of commands.

pub(crate) mod adapters;
pub(crate) mod apply;
pub(crate) mod common;
pub(crate) mod prior;
pub(crate) mod train;
pub(crate) mod tune;
