//! Linkage schemas: the native TOML format and clkhash v3 JSON.
//!
//! Both are parsed into one [`Schema`], whose canonical JSON (serde, fields in
//! declaration order) is stored in every extract and fingerprinted with
//! SHA-256, so the hub can check that agencies encoded compatibly. A schema
//! holds no key material. Every validation error names the schema file and the
//! offending key.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Markers that mean "missing" in native schemas unless a field overrides them.
/// Compared with the trimmed, lower-cased raw value.
pub const DEFAULT_MISSING: &[&str] = &[
    "",
    "unknown",
    "n/a",
    "null",
    "none",
    "not known",
    "not stated",
];

/// Which family of encoding a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// bloomlink's own encoding: normalisation, HMAC-SHA256 double hashing.
    Native,
    /// Bit-for-bit clkhash 0.18 compatible encoding.
    Clkhash,
}

/// How a field's raw value is cleaned before tokenising.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Free text: NFKD, accents stripped, case folded, punctuation dropped.
    String,
    /// A person's name: as `String`, hyphens become spaces.
    Name,
    /// A forename as `Name`, then a diminutive or spelling replaced by its
    /// group's formal name ([`super::nicknames`]): "Bill" becomes
    /// "william". Meant for a second filter beside the plain forename,
    /// compared only where that one is not exactly equal (`fallback_for`).
    Forename,
    /// A date, parsed with the field's formats into `YYYYMMDD`.
    Date,
    /// A whole number, written without sign or leading zeros.
    Integer,
    /// A postcode: case folded, all spaces removed.
    Postcode,
    /// Sex: `m`, `f` (anything else is a reject; declared markers are missing).
    Sex,
    /// clkhash string/enum: used exactly as given.
    Raw,
    /// clkhash integer: `str(int(raw))`.
    ClkInteger,
    /// clkhash date: parsed with one strptime format, written as `%Y%m%d`.
    ClkDate,
}

/// How a normalised value becomes tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Tokens {
    /// Character q-grams, padded with `q-1` spaces each side when `q > 1`.
    Qgram { q: u32, positional: bool },
    /// The whole value as one token.
    Whole,
    /// Dates: positional digits of `YYYYMMDD` plus year, month and day tokens.
    DateParts,
}

/// How many bits each token sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every token sets `k` bits.
    BitsPerToken(u32),
    /// The field sets about `B` bits in all, spread over its tokens as clkhash does.
    BitsPerFeature(u32),
}

/// Which keyed hash turns a token into bit positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Hash {
    /// HMAC-SHA256 double hashing under HKDF-derived per-field keys (native).
    HmacSha256,
    /// clkhash doubleHash: HMAC-SHA1 and HMAC-MD5.
    DoubleHash { prevent_singularity: bool },
    /// clkhash blakeHash: keyed BLAKE2b.
    Blake,
}

/// clkhash format validation (values that fail are rejects).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Validate {
    pub pattern: Option<String>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
    pub case: Option<String>,
    pub values: Option<Vec<String>>,
}

/// One identifying field.
///
/// Input-side details (`column`, `missing`, `formats`) are agency-local: each
/// agency maps its own column names and date formats, so they are left out
/// of the canonical JSON and the fingerprint (see docs/decisions.md).
#[derive(Debug, Clone, Serialize)]
pub struct Field {
    pub name: String,
    #[serde(skip)]
    pub column: String,
    pub kind: Kind,
    pub tokens: Tokens,
    pub strategy: Strategy,
    pub hash: Hash,
    #[serde(skip)]
    pub missing: Vec<String>,
    pub replace_with: Option<String>,
    #[serde(skip)]
    pub formats: Vec<String>,
    pub validate: Option<Validate>,
    /// Position among the schema's features (clkhash derives key pairs by it).
    pub key_index: usize,
    /// The field this one stands in for: the hub compares this field only
    /// where that one is present and not exactly equal, as equal or not
    /// (docs/decisions.md §21).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<String>,
}

/// One part of a blocking key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockPart {
    pub function: BlockFn,
    pub field: String,
}

/// Functions allowed in blocking keys, applied to a normalised field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "fn", content = "n")]
pub enum BlockFn {
    Value,
    Soundex,
    Metaphone,
    First(u32),
    Year,
    Month,
    Day,
    /// A date's day and month as an unordered pair: equal for a date and the
    /// same date with day and month swapped.
    DayMonth,
    /// A date's year rounded down to an even year.
    EvenYear,
    /// A date's year rounded down to an odd year. Two years one apart share
    /// exactly one of `even_year` and `odd_year`.
    OddYear,
    PostcodeDistrict,
}

/// A keyed blocking key: the parts are joined and HMAC-ed.
#[derive(Debug, Clone, Serialize)]
pub struct Blocking {
    pub name: String,
    pub parts: Vec<BlockPart>,
}

/// How a stratum value is derived.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum StratumKind {
    /// The (trimmed, lower-cased) raw value of an input column (agency-local,
    /// so the column name is not part of the fingerprint).
    Value {
        #[serde(skip)]
        column: String,
    },
    /// The normalised value of a field (e.g. sex as `m`/`f`).
    Field { field: String },
    /// Age band at a reference date, from a date field.
    AgeBand {
        field: String,
        reference_date: String,
        bounds: Vec<u32>,
    },
}

/// A declared coarse stratum for the bias report.
#[derive(Debug, Clone, Serialize)]
pub struct Stratum {
    pub name: String,
    pub kind: StratumKind,
}

/// clkhash key derivation parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Kdf {
    pub salt_hex: Option<String>,
    pub info_hex: Option<String>,
    pub key_size: usize,
    /// Number of features in the clkhash schema, ignored ones included.
    pub num_features: usize,
}

/// A parsed, validated linkage schema.
#[derive(Debug, Clone, Serialize)]
pub struct Schema {
    pub mode: Mode,
    pub clk_bits: u32,
    pub field_bits: u32,
    pub xor_folds: u32,
    /// BLIP: probability with which each bit of the CLK and of every field
    /// filter is flipped, keyed per record (0 = off).
    #[serde(skip_serializing_if = "is_zero")]
    pub blip: f64,
    /// Balanced filters: hash into half the bits, append the complement and
    /// permute (keyed), so every filter has exactly half its bits set.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub balance: bool,
    /// Per-record salt: every other field's tokens are hashed with this
    /// function of one field (e.g. year of birth) prepended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salt: Option<BlockPart>,
    /// Fields the salt applies to (empty = every field but the salt's own).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub salted: Vec<String>,
    /// Two fields sometimes recorded in each other's place (a forename and
    /// a surname): hashed under one key, so the hub can compare them
    /// crossed. Empty when not declared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub swap: Vec<String>,
    /// Input column holding the record id; `None` means the 1-based row
    /// number. Agency-local: not part of the fingerprint.
    #[serde(skip)]
    pub record_id: Option<String>,
    pub kdf: Option<Kdf>,
    pub fields: Vec<Field>,
    pub blocking: Vec<Blocking>,
    pub strata: Vec<Stratum>,
}

impl Schema {
    /// Load a schema, choosing the format by extension: `.toml` native,
    /// `.json` clkhash v3.
    pub fn load(path: &Path) -> Result<Schema> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Schema::from_toml(&text, path),
            Some("json") => Schema::from_clkhash_json(&text, path),
            _ => Err(Error::config(
                path,
                "unknown schema format: use a native schema ending in .toml or a clkhash v3 linkage schema ending in .json",
            )),
        }
    }

    /// The canonical JSON stored in extracts.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("schema serialises")
    }

    /// SHA-256 hex of the canonical JSON.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// Field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Parse a native TOML schema.
    pub fn from_toml(text: &str, path: &Path) -> Result<Schema> {
        let raw: NativeToml = toml::from_str(text).map_err(|e| {
            Error::config(path, format!("invalid schema: {}", e.to_string().trim()))
        })?;
        raw.into_schema(path)
    }

    /// Parse a clkhash v3 linkage schema.
    pub fn from_clkhash_json(text: &str, path: &Path) -> Result<Schema> {
        clkhash_schema(text, path)
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn bits_value(path: &Path, key: &str, v: i64) -> Result<u32> {
    if v <= 0 || v % 64 != 0 || v > 65536 {
        return Err(Error::config(
            path,
            format!("`{key}` = {v}: must be a positive multiple of 64, at most 65536"),
        ));
    }
    Ok(v as u32)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeToml {
    #[serde(default)]
    version: Option<u32>,
    record_id: String,
    #[serde(default)]
    clk_bits: Option<i64>,
    #[serde(default)]
    field_bits: Option<i64>,
    #[serde(default)]
    xor_folds: Option<i64>,
    #[serde(default)]
    blip: Option<f64>,
    #[serde(default)]
    balance: bool,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    salted: Vec<String>,
    #[serde(default)]
    swap: Vec<String>,
    #[serde(rename = "field")]
    fields: Vec<FieldToml>,
    #[serde(default, rename = "blocking")]
    blocking: Vec<BlockingToml>,
    #[serde(default, rename = "stratum")]
    strata: Vec<StratumToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldToml {
    name: String,
    #[serde(default)]
    column: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    q: Option<i64>,
    #[serde(default)]
    k: Option<i64>,
    #[serde(default)]
    bits_per_field: Option<i64>,
    #[serde(default)]
    target_weight: Option<f64>,
    #[serde(default)]
    expected_tokens: Option<f64>,
    #[serde(default)]
    tokens: Option<String>,
    #[serde(default)]
    positional: Option<bool>,
    #[serde(default)]
    missing: Option<Vec<String>>,
    #[serde(default)]
    formats: Option<Vec<String>>,
    #[serde(default)]
    fallback_for: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockingToml {
    name: String,
    key: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StratumToml {
    name: String,
    source: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    reference_date: Option<String>,
    #[serde(default)]
    bounds: Option<Vec<u32>>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl NativeToml {
    fn into_schema(self, path: &Path) -> Result<Schema> {
        if let Some(v) = self.version
            && v != 1
        {
            return Err(Error::config(
                path,
                format!("`version` = {v}: this bloomlink reads native schema version 1"),
            ));
        }
        let clk_bits = bits_value(path, "clk_bits", self.clk_bits.unwrap_or(1024))?;
        let field_bits = bits_value(path, "field_bits", self.field_bits.unwrap_or(512))?;
        let xor_folds = match self.xor_folds.unwrap_or(0) {
            v @ 0..=2 => v as u32,
            v => {
                return Err(Error::config(
                    path,
                    format!("`xor_folds` = {v}: must be 0, 1 or 2"),
                ));
            }
        };
        if self.fields.is_empty() {
            return Err(Error::config(path, "the schema declares no [[field]]"));
        }
        let blip = self.blip.unwrap_or(0.0);
        if !(0.0..0.5).contains(&blip) {
            return Err(Error::config(
                path,
                format!("`blip` = {blip}: the flip probability must be at least 0 and below 0.5"),
            ));
        }
        if self.balance && (clk_bits % 128 != 0 || field_bits % 128 != 0) {
            return Err(Error::config(
                path,
                format!(
                    "`balance` needs `clk_bits` and `field_bits` to be multiples of 128 (they are {clk_bits} and {field_bits}): half of each is hashed, the other half is its complement"
                ),
            ));
        }
        let mut fields = Vec::new();
        for (i, f) in self.fields.into_iter().enumerate() {
            let at = format!("field `{}`", f.name);
            if !valid_name(&f.name) {
                return Err(Error::config(
                    path,
                    format!("{at}: names use lower-case letters, digits and `_` only"),
                ));
            }
            if fields.iter().any(|g: &Field| g.name == f.name) {
                return Err(Error::config(path, format!("{at} is declared twice")));
            }
            let kind = match f.kind.as_str() {
                "string" => Kind::String,
                "name" => Kind::Name,
                "forename" => Kind::Forename,
                "date" => Kind::Date,
                "integer" => Kind::Integer,
                "postcode" => Kind::Postcode,
                "sex" => Kind::Sex,
                other => {
                    return Err(Error::config(
                        path,
                        format!(
                            "{at}: unknown `type` = \"{other}\"; use string, name, forename, date, integer, postcode or sex"
                        ),
                    ));
                }
            };
            let q = match f.q {
                None => 2,
                Some(q @ 1..=5) => q as u32,
                Some(q) => {
                    return Err(Error::config(
                        path,
                        format!("{at}: `q` = {q}: must be between 1 and 5"),
                    ));
                }
            };
            let default_tokens = match kind {
                Kind::Date => "date",
                Kind::Sex => "whole",
                Kind::Integer => "digits",
                _ => "qgram",
            };
            let tokens = match f.tokens.as_deref().unwrap_or(default_tokens) {
                "qgram" => Tokens::Qgram {
                    q,
                    positional: f.positional.unwrap_or(false),
                },
                "digits" => Tokens::Qgram {
                    q: 1,
                    positional: true,
                },
                "whole" => Tokens::Whole,
                "date" if kind == Kind::Date => Tokens::DateParts,
                other => {
                    return Err(Error::config(
                        path,
                        format!(
                            "{at}: unknown `tokens` = \"{other}\"; use qgram, digits, whole (or date for date fields)"
                        ),
                    ));
                }
            };
            if f.expected_tokens.is_some() && f.target_weight.is_none() {
                return Err(Error::config(
                    path,
                    format!("{at}: `expected_tokens` is only used with `target_weight`"),
                ));
            }
            let k_from_weight = match f.target_weight {
                None => None,
                Some(_) if f.k.is_some() || f.bits_per_field.is_some() => {
                    return Err(Error::config(
                        path,
                        format!("{at}: give one of `k`, `bits_per_field` or `target_weight`"),
                    ));
                }
                Some(w) if !(w > 0.0 && w < 1.0) => {
                    return Err(Error::config(
                        path,
                        format!(
                            "{at}: `target_weight` = {w}: the share of set bits must be between 0 and 1"
                        ),
                    ));
                }
                Some(w) => {
                    // Tokens per value, by type, unless given: a value of n
                    // tokens hashed k times into m bits fills 1 − e^(−kn/m).
                    let n = match f.expected_tokens {
                        Some(n) if n > 0.0 && n <= 256.0 => n,
                        Some(n) => {
                            return Err(Error::config(
                                path,
                                format!(
                                    "{at}: `expected_tokens` = {n}: must be above 0 and at most 256"
                                ),
                            ));
                        }
                        None => match kind {
                            Kind::Date => 3.0,
                            Kind::Sex => 1.0,
                            Kind::Integer => 4.0,
                            Kind::Postcode => 7.0,
                            _ => 8.0,
                        },
                    };
                    let k = (-(1.0 - w).ln() * field_bits as f64 / n)
                        .round()
                        .clamp(1.0, 256.0);
                    Some(k as i64)
                }
            };
            let strategy = match (f.k.or(k_from_weight), f.bits_per_field) {
                (Some(_), Some(_)) => {
                    return Err(Error::config(
                        path,
                        format!("{at}: give `k` or `bits_per_field`, not both"),
                    ));
                }
                (Some(k), None) if (1..=256).contains(&k) => Strategy::BitsPerToken(k as u32),
                (Some(k), None) => {
                    return Err(Error::config(
                        path,
                        format!("{at}: `k` = {k}: must be between 1 and 256"),
                    ));
                }
                (None, Some(b)) if (1..=4096).contains(&b) => Strategy::BitsPerFeature(b as u32),
                (None, Some(b)) => {
                    return Err(Error::config(
                        path,
                        format!("{at}: `bits_per_field` = {b}: must be between 1 and 4096"),
                    ));
                }
                (None, None) => Strategy::BitsPerToken(match kind {
                    Kind::Sex => 20,
                    Kind::Date | Kind::Integer => 10,
                    _ => 15,
                }),
            };
            let formats = f.formats.unwrap_or_default();
            if kind == Kind::Date && formats.is_empty() {
                return Err(Error::config(
                    path,
                    format!(
                        "{at}: a date field needs `formats`, e.g. [\"%Y-%m-%d\", \"%d/%m/%Y\"]"
                    ),
                ));
            }
            if kind != Kind::Date && !formats.is_empty() {
                return Err(Error::config(
                    path,
                    format!("{at}: `formats` is only for date fields"),
                ));
            }
            for fmt in &formats {
                check_date_format(fmt).map_err(|m| Error::config(path, format!("{at}: {m}")))?;
            }
            let missing = f
                .missing
                .unwrap_or_else(|| DEFAULT_MISSING.iter().map(|s| s.to_string()).collect())
                .into_iter()
                .map(|m| m.trim().to_lowercase())
                .collect();
            fields.push(Field {
                column: f.column.unwrap_or_else(|| f.name.clone()),
                name: f.name,
                kind,
                tokens,
                strategy,
                hash: Hash::HmacSha256,
                missing,
                replace_with: None,
                formats,
                validate: None,
                key_index: i,
                fallback_for: f.fallback_for,
            });
        }
        for f in &fields {
            if let Some(p) = &f.fallback_for
                && (p == &f.name || !fields.iter().any(|g| &g.name == p))
            {
                return Err(Error::config(
                    path,
                    format!(
                        "field `{}`: `fallback_for` = \"{p}\" must name another field of this schema",
                        f.name
                    ),
                ));
            }
        }
        let salt = match &self.salt {
            None => None,
            Some(expr) => {
                let part = parse_block_part(expr)
                    .map_err(|m| Error::config(path, format!("`salt` = \"{expr}\": {m}")))?;
                if !fields.iter().any(|f| f.name == part.field) {
                    return Err(Error::config(
                        path,
                        format!("`salt` = \"{expr}\" names no declared field"),
                    ));
                }
                Some(part)
            }
        };
        for f in &self.salted {
            if salt.is_none() {
                return Err(Error::config(path, "`salted` needs a `salt`"));
            }
            if !fields.iter().any(|x| &x.name == f) {
                return Err(Error::config(
                    path,
                    format!("`salted`: `{f}` is not a declared field"),
                ));
            }
        }
        if !self.swap.is_empty() {
            check_swap(path, &self.swap, &fields, salt.is_some(), &self.salted)?;
        }
        let mut blocking = Vec::new();
        for b in self.blocking {
            let at = format!("blocking `{}`", b.name);
            if !valid_name(&b.name) {
                return Err(Error::config(
                    path,
                    format!("{at}: names use lower-case letters, digits and `_` only"),
                ));
            }
            if blocking.iter().any(|x: &Blocking| x.name == b.name) {
                return Err(Error::config(path, format!("{at} is declared twice")));
            }
            if b.key.is_empty() {
                return Err(Error::config(path, format!("{at}: `key` is empty")));
            }
            let mut parts = Vec::new();
            for expr in &b.key {
                let part = parse_block_part(expr)
                    .map_err(|m| Error::config(path, format!("{at}: `{expr}`: {m}")))?;
                if !fields.iter().any(|f| f.name == part.field) {
                    return Err(Error::config(
                        path,
                        format!("{at}: `{expr}` names no declared field"),
                    ));
                }
                parts.push(part);
            }
            blocking.push(Blocking {
                name: b.name,
                parts,
            });
        }
        // The record id is written to the extract in clear: it must be the
        // agency's own row reference, never an identifier that is linked on.
        if let Some(f) = fields.iter().find(|f| f.column == self.record_id) {
            return Err(Error::config(
                path,
                format!(
                    "`record_id` = \"{}\" is also field `{}`'s column: record ids are written to the extract in clear, so they must be the agency's own row reference, never an identifier the linkage compares",
                    self.record_id, f.name
                ),
            ));
        }
        let mut strata = Vec::new();
        for s in self.strata {
            let at = format!("stratum `{}`", s.name);
            if !valid_name(&s.name) {
                return Err(Error::config(
                    path,
                    format!("{at}: names use lower-case letters, digits and `_` only"),
                ));
            }
            // Strata are written to the extract in clear, for the bias
            // report: never from a column or field that identifies.
            let kind = match s.kind.as_deref().unwrap_or("value") {
                "value" => {
                    let reads = fields.iter().find(|f| f.column == s.source);
                    let identifies = match reads {
                        Some(f) => Some(format!("field `{}` encodes", f.name)),
                        None => (s.source == self.record_id).then(|| "is the record id".into()),
                    };
                    if let Some(what) = identifies {
                        return Err(Error::config(
                            path,
                            format!(
                                "{at} reads column `{}`, which {what}: strata are written to the extract in clear, so they must be coarse groups (area type, ethnic group...) from a column no field reads",
                                s.source
                            ),
                        ));
                    }
                    StratumKind::Value { column: s.source }
                }
                "field" => {
                    let Some(f) = fields.iter().find(|f| f.name == s.source) else {
                        return Err(Error::config(
                            path,
                            format!(
                                "{at}: `source` must name a declared field for type = \"field\""
                            ),
                        ));
                    };
                    if f.kind != Kind::Sex {
                        return Err(Error::config(
                            path,
                            format!(
                                "{at}: type = \"field\" writes the field's value to the extract in clear, so only a `sex` field may be one (`{}` is not); use type = \"age_band\" for a date",
                                f.name
                            ),
                        ));
                    }
                    StratumKind::Field { field: s.source }
                }
                "age_band" => {
                    let field = fields.iter().find(|f| f.name == s.source);
                    if field.map(|f| f.kind) != Some(Kind::Date) {
                        return Err(Error::config(
                            path,
                            format!("{at}: an age_band's `source` must be a date field"),
                        ));
                    }
                    let reference_date = s.reference_date.ok_or_else(|| {
                        Error::config(
                            path,
                            format!("{at}: an age_band needs `reference_date` = \"YYYY-MM-DD\""),
                        )
                    })?;
                    if chrono::NaiveDate::parse_from_str(&reference_date, "%Y-%m-%d").is_err() {
                        return Err(Error::config(
                            path,
                            format!("{at}: `reference_date` must be YYYY-MM-DD"),
                        ));
                    }
                    let bounds = s.bounds.unwrap_or_else(|| vec![5, 11, 16, 18, 25, 40, 65]);
                    if bounds.windows(2).any(|w| w[0] >= w[1]) {
                        return Err(Error::config(path, format!("{at}: `bounds` must increase")));
                    }
                    StratumKind::AgeBand {
                        field: s.source,
                        reference_date,
                        bounds,
                    }
                }
                other => {
                    return Err(Error::config(
                        path,
                        format!("{at}: unknown `type` = \"{other}\"; use value, field or age_band"),
                    ));
                }
            };
            if strata.iter().any(|x: &Stratum| x.name == s.name) {
                return Err(Error::config(path, format!("{at} is declared twice")));
            }
            strata.push(Stratum { name: s.name, kind });
        }
        Ok(Schema {
            mode: Mode::Native,
            clk_bits,
            field_bits,
            xor_folds,
            blip,
            balance: self.balance,
            salt,
            salted: self.salted,
            swap: self.swap,
            record_id: Some(self.record_id),
            kdf: None,
            fields,
            blocking,
            strata,
        })
    }
}

/// `swap` must name two declared fields that are hashed alike (same type,
/// tokens and bits), so that one's filter can be compared with the other's,
/// and salted alike.
fn check_swap(
    path: &Path,
    swap: &[String],
    fields: &[Field],
    salt: bool,
    salted: &[String],
) -> Result<()> {
    let [a, b] = swap else {
        return Err(Error::config(
            path,
            format!(
                "`swap` names {} fields: name exactly two, e.g. swap = [\"first_name\", \"last_name\"]",
                swap.len()
            ),
        ));
    };
    if a == b {
        return Err(Error::config(path, format!("`swap` names `{a}` twice")));
    }
    let find = |n: &String| {
        fields
            .iter()
            .find(|f| &f.name == n)
            .ok_or_else(|| Error::config(path, format!("`swap`: `{n}` is not a declared field")))
    };
    let (fa, fb) = (find(a)?, find(b)?);
    if fa.kind != fb.kind || fa.tokens != fb.tokens || fa.strategy != fb.strategy {
        return Err(Error::config(
            path,
            format!(
                "`swap`: `{a}` and `{b}` must have the same type, tokens and k (or bits_per_field) to be compared crossed"
            ),
        ));
    }
    let is_salted = |n: &String| salt && (salted.is_empty() || salted.contains(n));
    if is_salted(a) != is_salted(b) {
        return Err(Error::config(
            path,
            format!("`swap`: `{a}` and `{b}` must be both salted or both not"),
        ));
    }
    Ok(())
}

/// Check that a chrono/strftime date format has a year, a month and a day.
fn check_date_format(fmt: &str) -> std::result::Result<(), String> {
    let has = |s: &[&str]| s.iter().any(|x| fmt.contains(x));
    if has(&["%Y", "%y"]) && has(&["%m", "%b", "%B"]) && has(&["%d", "%e"]) {
        Ok(())
    } else {
        Err(format!(
            "date format \"{fmt}\" must contain a year (%Y), a month (%m or %b) and a day (%d)"
        ))
    }
}

/// Parse `fn(field)` or `first(field, n)` or a bare field name.
pub fn parse_block_part(expr: &str) -> std::result::Result<BlockPart, String> {
    let expr = expr.trim();
    let Some(open) = expr.find('(') else {
        return Ok(BlockPart {
            function: BlockFn::Value,
            field: expr.to_string(),
        });
    };
    if !expr.ends_with(')') {
        return Err("expected `function(field)`".into());
    }
    let name = expr[..open].trim();
    let args: Vec<&str> = expr[open + 1..expr.len() - 1]
        .split(',')
        .map(str::trim)
        .collect();
    let field = args[0].to_string();
    let one = |f: BlockFn| {
        if args.len() == 1 {
            Ok(f)
        } else {
            Err(format!("`{name}` takes one argument"))
        }
    };
    let function = match name {
        "value" => one(BlockFn::Value)?,
        "soundex" => one(BlockFn::Soundex)?,
        "metaphone" => one(BlockFn::Metaphone)?,
        "year" => one(BlockFn::Year)?,
        "month" => one(BlockFn::Month)?,
        "day" => one(BlockFn::Day)?,
        "day_month" => one(BlockFn::DayMonth)?,
        "even_year" => one(BlockFn::EvenYear)?,
        "odd_year" => one(BlockFn::OddYear)?,
        "postcode_district" => one(BlockFn::PostcodeDistrict)?,
        "initial" => one(BlockFn::First(1))?,
        "first" => match args.get(1).map(|n| n.parse::<u32>()) {
            Some(Ok(n)) if args.len() == 2 && n > 0 => BlockFn::First(n),
            _ => return Err("`first` takes a field and a positive count: first(field, 3)".into()),
        },
        other => {
            return Err(format!(
                "unknown function `{other}`; use value, soundex, metaphone, first, initial, year, month, day, day_month, even_year, odd_year or postcode_district"
            ));
        }
    };
    Ok(BlockPart { function, field })
}

fn clkhash_schema(text: &str, path: &Path) -> Result<Schema> {
    use serde_json::Value;
    let cfg = |m: String| Error::config(path, m);
    let v: Value = serde_json::from_str(text).map_err(|e| cfg(format!("not valid JSON: {e}")))?;
    let version = v.get("version").and_then(Value::as_u64);
    if version != Some(3) {
        return Err(cfg(
            "`version`: this reader takes clkhash linkage schema version 3".into(),
        ));
    }
    let clk = v
        .get("clkConfig")
        .ok_or_else(|| cfg("missing `clkConfig`".into()))?;
    let l = clk
        .get("l")
        .and_then(Value::as_i64)
        .ok_or_else(|| cfg("`clkConfig.l` is missing or not an integer".into()))?;
    let clk_bits = bits_value(path, "clkConfig.l", l)?;
    // clkhash reads `xor_folds` (snake case) and silently ignores `xorFolds`.
    let xor_folds = clk.get("xor_folds").and_then(Value::as_u64).unwrap_or(0) as u32;
    if xor_folds > 4 {
        return Err(cfg("`clkConfig.xor_folds` must be at most 4".into()));
    }
    let kdf = clk
        .get("kdf")
        .ok_or_else(|| cfg("missing `clkConfig.kdf`".into()))?;
    if kdf.get("type").and_then(Value::as_str) != Some("HKDF") {
        return Err(cfg("`clkConfig.kdf.type`: only HKDF is supported".into()));
    }
    if kdf.get("hash").and_then(Value::as_str).unwrap_or("SHA256") != "SHA256" {
        return Err(cfg("`clkConfig.kdf.hash`: only SHA256 is supported".into()));
    }
    let b64 = |key: &str| -> Result<Option<String>> {
        use base64::Engine;
        match kdf.get(key).and_then(Value::as_str) {
            None => Ok(None),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|b| Some(hex::encode(b)))
                .map_err(|_| cfg(format!("`clkConfig.kdf.{key}` is not valid base64"))),
        }
    };
    let key_size = kdf.get("keySize").and_then(Value::as_u64).unwrap_or(64) as usize;
    if !(1..=1024).contains(&key_size) {
        return Err(cfg("`clkConfig.kdf.keySize` must be 1..1024".into()));
    }
    let features = v
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| cfg("missing `features` array".into()))?;
    let mut fields = Vec::new();
    let mut record_id = None;
    for (i, f) in features.iter().enumerate() {
        let ident = f
            .get("identifier")
            .and_then(Value::as_str)
            .ok_or_else(|| cfg(format!("features[{i}]: missing `identifier`")))?
            .to_string();
        let at = format!("feature `{ident}`");
        if f.get("ignored").and_then(Value::as_bool) == Some(true) {
            if record_id.is_none()
                && matches!(ident.as_str(), "rec_id" | "record_id" | "id" | "entity_id")
            {
                record_id = Some(ident);
            }
            continue;
        }
        let format = f
            .get("format")
            .ok_or_else(|| cfg(format!("{at}: missing `format`")))?;
        let hashing = f
            .get("hashing")
            .ok_or_else(|| cfg(format!("{at}: missing `hashing`")))?;
        let ftype = format.get("type").and_then(Value::as_str).unwrap_or("");
        let encoding = format
            .get("encoding")
            .and_then(Value::as_str)
            .unwrap_or("utf-8");
        if !matches!(encoding, "utf-8" | "ascii") {
            return Err(cfg(format!(
                "{at}: `format.encoding` = \"{encoding}\" is not supported (use utf-8 or ascii)"
            )));
        }
        let mut validate = Validate::default();
        let mut formats = Vec::new();
        let kind = match ftype {
            "string" => {
                validate.pattern = format
                    .get("pattern")
                    .and_then(Value::as_str)
                    .map(String::from);
                validate.min_length = format.get("minLength").and_then(Value::as_u64);
                validate.max_length = format.get("maxLength").and_then(Value::as_u64);
                validate.case = format.get("case").and_then(Value::as_str).map(String::from);
                if let Some(p) = &validate.pattern {
                    regex::Regex::new(&format!("^(?:{p})$")).map_err(|_| {
                        cfg(format!(
                            "{at}: `format.pattern` is not a valid regular expression"
                        ))
                    })?;
                }
                Kind::Raw
            }
            "enum" => {
                let values = format
                    .get("values")
                    .and_then(Value::as_array)
                    .ok_or_else(|| cfg(format!("{at}: an enum needs `format.values`")))?;
                validate.values = Some(
                    values
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect(),
                );
                Kind::Raw
            }
            "integer" => {
                validate.minimum = format.get("minimum").and_then(Value::as_i64);
                validate.maximum = format.get("maximum").and_then(Value::as_i64);
                Kind::ClkInteger
            }
            "date" => {
                let fmt = format
                    .get("format")
                    .and_then(Value::as_str)
                    .ok_or_else(|| cfg(format!("{at}: a date needs `format.format`")))?;
                check_date_format(fmt).map_err(|m| cfg(format!("{at}: {m}")))?;
                formats.push(fmt.to_string());
                Kind::ClkDate
            }
            other => {
                return Err(cfg(format!(
                    "{at}: `format.type` = \"{other}\" is not supported (string, enum, integer, date)"
                )));
            }
        };
        let comparison = hashing
            .get("comparison")
            .ok_or_else(|| cfg(format!("{at}: missing `hashing.comparison`")))?;
        let tokens = match comparison.get("type").and_then(Value::as_str) {
            Some("ngram") => {
                let n = comparison.get("n").and_then(Value::as_i64).unwrap_or(-1);
                if !(1..=8).contains(&n) {
                    return Err(cfg(format!("{at}: `hashing.comparison.n` must be 1..8")));
                }
                Tokens::Qgram {
                    q: n as u32,
                    positional: comparison
                        .get("positional")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                }
            }
            Some("exact") => Tokens::Whole,
            other => {
                return Err(cfg(format!(
                    "{at}: `hashing.comparison.type` = {other:?} is not supported (ngram, exact)"
                )));
            }
        };
        let strategy = hashing
            .get("strategy")
            .ok_or_else(|| cfg(format!("{at}: missing `hashing.strategy`")))?;
        let strategy = if let Some(k) = strategy.get("bitsPerToken") {
            match k.as_i64() {
                Some(k @ 1..=1024) => Strategy::BitsPerToken(k as u32),
                _ => {
                    return Err(cfg(format!(
                        "{at}: `bitsPerToken` must be an integer from 1 to 1024"
                    )));
                }
            }
        } else if let Some(b) = strategy.get("bitsPerFeature") {
            match b.as_i64() {
                Some(b @ 1..=65536) => Strategy::BitsPerFeature(b as u32),
                _ => {
                    return Err(cfg(format!(
                        "{at}: `bitsPerFeature` must be an integer from 1 to 65536"
                    )));
                }
            }
        } else {
            return Err(cfg(format!(
                "{at}: `hashing.strategy` needs bitsPerToken or bitsPerFeature"
            )));
        };
        let hash = match hashing.get("hash") {
            None => Hash::Blake,
            Some(h) => match h.get("type").and_then(Value::as_str) {
                Some("blakeHash") => Hash::Blake,
                Some("doubleHash") => Hash::DoubleHash {
                    prevent_singularity: h
                        .get("prevent_singularity")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                },
                other => {
                    return Err(cfg(format!(
                        "{at}: `hashing.hash.type` = {other:?} is not supported (doubleHash, blakeHash)"
                    )));
                }
            },
        };
        if hash == Hash::Blake && !clk_bits.is_power_of_two() {
            return Err(cfg(format!(
                "{at}: blakeHash needs `clkConfig.l` to be a power of two"
            )));
        }
        let (missing, replace_with) = match hashing.get("missingValue") {
            None => (Vec::new(), None),
            Some(m) => (
                vec![
                    m.get("sentinel")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            cfg(format!("{at}: `missingValue.sentinel` must be a string"))
                        })?
                        .to_string(),
                ],
                m.get("replaceWith")
                    .and_then(Value::as_str)
                    .map(String::from),
            ),
        };
        fields.push(Field {
            name: ident.clone(),
            column: ident,
            kind,
            tokens,
            strategy,
            hash,
            missing,
            replace_with,
            formats,
            validate: Some(validate),
            key_index: i,
            fallback_for: None,
        });
    }
    if fields.is_empty() {
        return Err(cfg("the schema has no feature that is not ignored".into()));
    }
    Ok(Schema {
        mode: Mode::Clkhash,
        clk_bits,
        field_bits: clk_bits,
        xor_folds,
        blip: 0.0,
        balance: false,
        salt: None,
        salted: Vec::new(),
        swap: Vec::new(),
        record_id,
        kdf: Some(Kdf {
            salt_hex: b64("salt")?,
            info_hex: b64("info")?,
            key_size,
            num_features: features.len(),
        }),
        fields,
        blocking: Vec::new(),
        strata: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(s: &str) -> Result<Schema> {
        Schema::from_toml(s, Path::new("s.toml"))
    }

    const OK: &str = r#"
record_id = "id"
[[field]]
name = "surname"
type = "name"
[[field]]
name = "dob"
type = "date"
formats = ["%Y-%m-%d"]
[[blocking]]
name = "sx"
key = ["soundex(surname)", "year(dob)"]
"#;

    #[test]
    fn parses_a_minimal_schema_with_defaults() {
        let s = toml(OK).unwrap();
        assert_eq!(s.clk_bits, 1024);
        assert_eq!(
            s.fields[0].tokens,
            Tokens::Qgram {
                q: 2,
                positional: false
            }
        );
        assert_eq!(s.fields[1].tokens, Tokens::DateParts);
        assert_eq!(s.blocking[0].parts[1].function, BlockFn::Year);
        assert_eq!(s.fingerprint().len(), 64);
        assert_eq!(s.fingerprint(), toml(OK).unwrap().fingerprint());
    }

    fn err(s: &str) -> String {
        toml(s).unwrap_err().to_string()
    }

    #[test]
    fn swap_needs_two_alike_declared_fields() {
        let names = "record_id = \"id\"\n[[field]]\nname = \"first\"\ntype = \"name\"\n[[field]]\nname = \"last\"\ntype = \"name\"\n";
        let ok = toml(&format!("swap = [\"first\", \"last\"]\n{names}")).unwrap();
        assert_eq!(ok.swap, ["first", "last"]);
        // Declaring a swap changes the fingerprint; not declaring one
        // leaves it as before (the key is omitted from the canonical JSON).
        let plain = toml(names).unwrap();
        assert_ne!(ok.fingerprint(), plain.fingerprint());
        assert!(!plain.canonical_json().contains("swap"));
        assert!(err(&format!("swap = [\"first\"]\n{names}")).contains("exactly two"));
        assert!(err(&format!("swap = [\"first\", \"first\"]\n{names}")).contains("twice"));
        assert!(err(&format!("swap = [\"first\", \"nope\"]\n{names}")).contains("`nope`"));
        let other_k = names.replacen("type = \"name\"", "type = \"name\"\nk = 9", 1);
        assert!(err(&format!("swap = [\"first\", \"last\"]\n{other_k}")).contains("same type"));
        let one_salted = format!(
            "swap = [\"first\", \"last\"]\nsalt = \"year(dob)\"\nsalted = [\"first\"]\n{names}[[field]]\nname = \"dob\"\ntype = \"date\"\nformats = [\"%Y-%m-%d\"]\n"
        );
        assert!(err(&one_salted).contains("both salted"));
    }

    #[test]
    fn rejects_bad_schemas_naming_the_key() {
        assert!(err(&OK.replace("type = \"name\"", "type = \"name\"\nfoo = 1")).contains("foo"));
        assert!(err(&OK.replace("type = \"name\"", "type = \"name\"\nq = 0")).contains("`q`"));
        assert!(err(&OK.replace("type = \"name\"", "type = \"name\"\nk = 0")).contains("`k`"));
        assert!(err(&OK.replace("type = \"name\"", "type = \"name\"\nk = -3")).contains("`k`"));
        assert!(err(&format!("clk_bits = 1000\n{OK}")).contains("clk_bits"));
        assert!(err(&OK.replace("year(dob)", "year(nope)")).contains("no declared field"));
        assert!(err(&OK.replace("year(dob)", "frobnicate(dob)")).contains("unknown function"));
        assert!(err(&OK.replace("formats = [\"%Y-%m-%d\"]", "")).contains("formats"));
        assert!(err(&OK.replace("\"name\"", "\"nom\"")).contains("unknown `type`"));
        assert!(err("record_id = \"x\"\nfield = []").contains("no [[field]]"));
    }

    #[test]
    fn a_fallback_names_another_field_and_is_fingerprinted() {
        let names = "record_id = \"id\"\n[[field]]\nname = \"first\"\ntype = \"name\"\n";
        let with = format!(
            "{names}[[field]]\nname = \"formal\"\ncolumn = \"first\"\ntype = \"forename\"\nfallback_for = \"first\"\n"
        );
        let s = toml(&with).unwrap();
        assert_eq!(s.fields[1].kind, Kind::Forename);
        assert_eq!(s.fields[1].fallback_for.as_deref(), Some("first"));
        assert!(s.canonical_json().contains("\"fallback_for\":\"first\""));
        // Schemas without a fallback keep their canonical JSON (and so
        // their fingerprint) as before.
        assert!(
            !toml(names)
                .unwrap()
                .canonical_json()
                .contains("fallback_for")
        );
        assert!(
            err(&with.replace("fallback_for = \"first\"", "fallback_for = \"nope\""))
                .contains("`fallback_for` = \"nope\"")
        );
        assert!(
            err(&with.replace("fallback_for = \"first\"", "fallback_for = \"formal\""))
                .contains("another field")
        );
    }

    #[test]
    fn block_parts_parse() {
        assert_eq!(
            parse_block_part("first(given, 3)").unwrap().function,
            BlockFn::First(3)
        );
        assert_eq!(parse_block_part("given").unwrap().function, BlockFn::Value);
        for (f, want) in [
            ("day_month(dob)", BlockFn::DayMonth),
            ("even_year(dob)", BlockFn::EvenYear),
            ("odd_year(dob)", BlockFn::OddYear),
        ] {
            assert_eq!(parse_block_part(f).unwrap().function, want);
        }
        let e = parse_block_part("odd_year(dob, 2)").unwrap_err();
        assert!(e.contains("one argument"), "{e}");
        assert!(parse_block_part("first(given)").is_err());
        assert!(parse_block_part("soundex(a, b)").is_err());
    }
}
