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

pub use read::{
    Extract, FilterColumn, IdColumn, KeyColumn, Keys, StrataColumn, read_extract, read_meta,
};
pub use write::{ExtractWriter, OwnedBatch};

/// Version of the extract format written by this build.
pub const FORMAT_VERSION: &str = "1";

/// The most distinct values a stratum (`s_<name>`, kept in clear) may
/// take: strata are coarse groups, never identifiers. Encode refuses
/// more; the hub refuses an extract that has more (docs/decisions.md §40).
pub const STRATUM_MAX_VALUES: usize = 1000;

/// Record ids are kept in clear: ids that are mostly NHS numbers (at least
/// this many read, over half [`nhs_number_like`]) are refused by encode
/// and by the hub (docs/decisions.md §48).
pub const NHS_IDS_MIN: u64 = 20;

/// Whether record ids of which `nhs` of `ids` are [`nhs_number_like`]
/// are mostly NHS numbers: at least [`NHS_IDS_MIN`] read, over half of them.
pub fn mostly_nhs_numbers(ids: u64, nhs: u64) -> bool {
    ids >= NHS_IDS_MIN && nhs * 2 > ids
}

/// Whether `id` is ten digits (spaces and hyphens aside) with a valid NHS
/// number check digit (modulus 11; Scotland's CHI numbers use it too).
/// About one random ten-digit number in eleven passes.
pub fn nhs_number_like(id: &str) -> bool {
    let mut d = [0u32; 10];
    let mut n = 0;
    for c in id.chars().filter(|c| !matches!(c, ' ' | '-')) {
        match c.to_digit(10) {
            Some(x) if n < 10 => {
                d[n] = x;
                n += 1;
            }
            _ => return false,
        }
    }
    if n != 10 {
        return false;
    }
    let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
    match 11 - sum % 11 {
        11 => d[9] == 0,
        10 => false,
        c => d[9] == c,
    }
}

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

// Keys of the other files bloomlink writes, here so that every stage that
// writes or recognises one names it the same way.

/// Metadata key of a payload file: the agency encode wrote it for.
pub const META_PAYLOAD_OF: &str = "bloomlink.payload_of";
/// Metadata key of `links.parquet` and `pairs.parquet`: whether the run
/// deduplicated.
pub const META_DEDUP: &str = "bloomlink.dedup";
/// Metadata key of `refresh-state.parquet`: the state (JSON).
pub const META_REFRESH_STATE: &str = "bloomlink.refresh_state";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_are_told_by_their_check_digit() {
        // Published example NHS numbers, with and without spacing.
        for id in ["9434765919", "943 476 5919", "943-476-5919", "4010232137"] {
            assert!(nhs_number_like(id), "{id}");
        }
        for id in [
            "9434765918",
            "943476591",
            "94347659190",
            "SC0001",
            "",
            "943476591X",
        ] {
            assert!(!nhs_number_like(id), "{id}");
        }
        // About one random ten-digit number in eleven passes.
        let mut next = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15);
        let pass = (0..11_000)
            .filter(|_| nhs_number_like(&format!("{:010}", next() % 10_000_000_000)))
            .count();
        assert!((800..1200).contains(&pass), "{pass}");
    }
}
