//! bloomlink: privacy-preserving multi-agency record linkage.
//!
//! The layout follows the trust model. [`agency`] is the only code that sees
//! plaintext identifiers or the shared key; [`extract`] is the file format the
//! agencies and the hub share; [`hub`] links extracts and never imports
//! `agency`; [`report`] renders the quality report; [`cli`] holds one file per
//! subcommand. Data flows one way: agency → extract → hub → report.

pub mod agency;
pub mod alloc;
pub mod bloom;
pub mod cli;
pub mod error;
pub mod extract;
pub mod hub;
pub mod identify;
pub mod io;
pub mod progress;
pub mod release;
pub mod report;
pub mod synth;
#[cfg(test)]
pub(crate) mod testing;

pub use error::{Error, Result};
