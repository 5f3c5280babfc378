//! The agency side: everything that touches plaintext identifiers or the key.
//!
//! Normalise → tokenise → keyed hash → Bloom filters and blocking keys →
//! extract. Nothing in this module writes a plaintext identifier to an
//! output, a log line or an error; the hub side never imports it.

pub mod arrow_text;
pub mod bytemap;
pub mod encode;
pub mod hash;
pub mod input;
pub mod nicknames;
pub mod normalise;
pub mod payload;
pub mod schema;
pub mod secret;
pub mod tokencache;
pub mod tokenise;

pub use encode::{EncodeOptions, EncodeResult, Encoder, rejects_path};
pub use input::CsvFormat;
pub use schema::Schema;
pub use secret::Secret;
