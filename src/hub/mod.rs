//! The hub side: link extracts without the key.
//!
//! load (compatibility checks, packed arenas) → block (candidate pairs) →
//! compare (SIMD Dice) → score (Fellegi–Sunter, EM) → resolve (clusters) →
//! output (pseudonymised linked dataset). This module never imports
//! `agency`, never holds the linkage key and never sees plaintext.

pub mod block;
pub mod compare;
pub mod config;
pub mod evaluate;
pub mod link;
pub mod load;
pub mod output;
pub mod posterior;
pub mod pseudonym;
pub mod refresh;
pub mod residual;
pub mod resolve;
pub mod score;
pub mod state;
pub mod stream;
pub mod train;
pub mod units;
pub mod values;

pub use config::JobConfig;
pub use link::{LinkOptions, LinkRun};
