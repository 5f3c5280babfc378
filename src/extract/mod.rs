//! The extract: the Parquet file an agency sends to the hub.
//!
//! Columns, in order: `record_id` (Utf8), `clk` (FixedSizeBinary(bits/8)),
//! `f_<field>` (FixedSizeBinary, nullable), `bk_<name>` (FixedSizeBinary(16),
//! nullable), `s_<name>` (Utf8, nullable); key-value metadata under
//! `bloomlink.*` (see DESIGN.md §4). This module defines the format both sides
//! share: it writes columns it is given and reads them back into packed
//! `u64` arenas. It never sees keys or plaintext identifiers.

mod read;
mod write;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use read::{Extract, FilterColumn, IdColumn, KeyColumn, StrataColumn, read_extract, read_meta};
pub use write::{ExtractWriter, OwnedBatch};

/// Version of the extract format written by this build.
pub const FORMAT_VERSION: &str = "1";

/// The most distinct values a stratum (`s_<name>`, kept in clear) may
/// take: strata are coarse groups, never identifiers. Encode refuses
/// more; the hub refuses an extract that has more (docs/decisions.md §40).
pub const STRATUM_MAX_VALUES: usize = 1000;
/// Metadata key: extract format version.
pub const META_FORMAT_VERSION: &str = "bloomlink.format_version";
/// Metadata key: bloomlink version that wrote the file.
pub const META_VERSION: &str = "bloomlink.version";
/// Metadata key: agency name.
pub const META_AGENCY: &str = "bloomlink.agency";
/// Metadata key: canonical schema JSON.
pub const META_SCHEMA: &str = "bloomlink.schema";
/// Metadata key: SHA-256 hex of the canonical schema JSON.
pub const META_FINGERPRINT: &str = "bloomlink.schema_fingerprint";
/// Metadata key: key check value.
pub const META_KEY_CHECK: &str = "bloomlink.key_check";
/// Metadata key: encode counts (JSON).
pub const META_COUNTS: &str = "bloomlink.counts";

/// Size in bytes of a keyed blocking key.
pub const BLOCK_KEY_BYTES: usize = 16;

/// What encode did with the rows it read. Rows read = encoded + rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub rows_read: u64,
    pub encoded: u64,
    pub rejected: u64,
    /// Rejected because the record id repeated an earlier row's.
    #[serde(default)]
    pub duplicate_ids: u64,
    /// Encoded rows whose field was missing, per field.
    #[serde(default)]
    pub missing: BTreeMap<String, u64>,
    /// Rejected rows per reason category (`column: reason`).
    #[serde(default)]
    pub reject_reasons: BTreeMap<String, u64>,
}

/// The part of the canonical schema the hub needs (names and sizes only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchemaSummary {
    pub mode: String,
    pub clk_bits: u32,
    pub field_bits: u32,
    #[serde(default)]
    pub fields: Vec<Named>,
    #[serde(default)]
    pub blocking: Vec<Named>,
    #[serde(default)]
    pub strata: Vec<Named>,
    /// The two fields hashed under one key (`swap` in the schema), if any.
    #[serde(default)]
    pub swap: Vec<String>,
}

/// Anything with a name in the schema JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Named {
    pub name: String,
}

/// An extract's metadata.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractMeta {
    pub format_version: String,
    pub version: String,
    pub agency: String,
    pub schema_json: String,
    pub fingerprint: String,
    pub key_check: String,
    pub counts: Counts,
    #[serde(skip)]
    pub schema: SchemaSummary,
}

impl ExtractMeta {
    /// The key-value pairs written into the Parquet footer, in a fixed order.
    pub fn key_values(&self) -> Vec<(String, String)> {
        vec![
            (META_FORMAT_VERSION.into(), self.format_version.clone()),
            (META_VERSION.into(), self.version.clone()),
            (META_AGENCY.into(), self.agency.clone()),
            (META_SCHEMA.into(), self.schema_json.clone()),
            (META_FINGERPRINT.into(), self.fingerprint.clone()),
            (META_KEY_CHECK.into(), self.key_check.clone()),
            (
                META_COUNTS.into(),
                serde_json::to_string(&self.counts).expect("counts serialise"),
            ),
        ]
    }
}

/// Whether an agency name is acceptable (it becomes a column value and a
/// file-name fragment): 1–64 characters of letters, digits, `_`, `-`, `.`.
pub fn valid_agency(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
