//! `encode`: plaintext rows to an extract, a rejects file and a payload file.
//!
//! Rows are read in chunks; each chunk is checked for record ids in order
//! (empty and repeated ids are rejects), then encoded in parallel slices with
//! rayon. Each worker thread keeps, per field, a cache from raw value to its
//! encoding (stored flat in a `ValueTable`: one index per value, its bytes
//! contiguous) and a cache from token to hash, so a repeated name costs one
//! lookup and a q-gram is HMAC-ed once per thread, not once per occurrence.
//! A slice is encoded field by field (lookups of successive rows overlap
//! their cache misses), then written row by row. Outputs are written
//! atomically and are byte-identical for the same input and key, however
//! the input is cut into chunks and slices.
//! Agency side only: plaintext stays in memory here and never reaches an
//! output, a log line or an error message.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow_array::builder::StringBuilder;
use hmac::{Hmac, KeyInit, Mac};
use rayon::prelude::*;
use rphonetic::Encoder as _;
use sha2::Sha256;

use super::bytemap::ByteMap;
use super::hash::{Hashed, TokenHasher, clkhash_keys, derive_key, key_check};
use super::input::{Cell, Chunk, CsvFormat, Input};
use super::normalise::{Normalised, normalise};
use super::schema::{BlockFn, DEFAULT_MISSING, Hash, Kind, Mode, Schema, Strategy, StratumKind};
use super::secret::Secret;
use super::tokencache::{self, TokenCache};
use super::tokenise::TokenBuf;
use crate::bloom::{set_bit, xor_fold};
use crate::error::{Error, Result};
use crate::extract::{
    Counts, ExtractMeta, ExtractWriter, FORMAT_VERSION, OwnedBatch, STRATUM_MAX_VALUES,
    mostly_nhs_numbers, nhs_number_like, valid_agency,
};
use crate::io::Pending;

/// Options for [`Encoder::encode_file`].
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Agency name stored in the extract.
    pub agency: String,
    /// Input columns copied to the payload file.
    pub payload_columns: Vec<String>,
    /// Where the payload goes (required when `payload_columns` is not empty).
    pub payload_output: Option<PathBuf>,
    /// Rows per chunk read from the input.
    pub chunk_rows: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// How a CSV input is written (separator, encoding).
    pub csv: CsvFormat,
}

impl EncodeOptions {
    /// Options with defaults for an agency.
    pub fn new(agency: &str) -> Self {
        EncodeOptions {
            agency: agency.to_string(),
            payload_columns: Vec::new(),
            payload_output: None,
            chunk_rows: 64 * 1024,
            progress: false,
            csv: CsvFormat::default(),
        }
    }
}

/// What an encode run produced.
#[derive(Debug, Clone)]
pub struct EncodeResult {
    pub counts: Counts,
    pub output: PathBuf,
    pub rejects: PathBuf,
    pub payload: Option<PathBuf>,
    pub key_check: String,
    pub fingerprint: String,
}

/// The rejects file beside an output: `OUT.parquet` → `OUT.rejects.csv`.
pub fn rejects_path(output: &Path) -> PathBuf {
    let s = output.to_string_lossy();
    let base = s.strip_suffix(".parquet").unwrap_or(&s);
    PathBuf::from(format!("{base}.rejects.csv"))
}

/// One rejected row (no plaintext: the reason names the rule, not the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// 1-based data row (the header is not counted).
    pub row: u64,
    pub record_id: String,
    pub column: String,
    pub reason: String,
}

struct FieldEnc {
    clk: TokenHasher,
    /// Native mode only: the field filter's own keyed hash.
    ff: Option<TokenHasher>,
    pattern: Option<regex::Regex>,
}

/// Slot of a row whose field has no value (a null cell, or a value that
/// set no bit).
const NO_VALUE: u32 = u32::MAX;
/// Slots with this bit set are in the slice's own (uncached) table.
const OWN: u32 = 1 << 31;

/// Encoded values of one field, stored flat: entry `i`'s bytes are
/// `data[i·stride ..]`, first the value's contribution to the CLK (in
/// clkhash byte order, in the hash space before folding: `split` bytes),
/// then its field filter, final (folded or balanced when the schema says).
/// One lookup gives an index; the bytes it leads to are contiguous, with no
/// pointer to chase and no reference count to touch.
#[derive(Default)]
struct ValueTable {
    data: Vec<u8>,
    entries: Vec<Entry>,
    /// What normalisation made of each value, end to end.
    norms: String,
    /// Reasons of rejected values.
    rejects: Vec<String>,
}

/// One encoded value: where its normalised text is, and whether it was
/// rejected or set any bit (else it counts as missing).
#[derive(Clone, Copy)]
struct Entry {
    norm: (u32, u32),
    /// Index into `rejects`, or `NO_VALUE`.
    reject: u32,
    present: bool,
}

impl ValueTable {
    fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
        self.norms.clear();
        self.rejects.clear();
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn norm(&self, e: u32) -> &str {
        let (start, len) = self.entries[e as usize].norm;
        &self.norms[start as usize..(start + len) as usize]
    }

    /// Entry `e`'s bytes (`stride` long).
    #[inline]
    fn bytes(&self, e: u32, stride: usize) -> &[u8] {
        let at = e as usize * stride;
        &self.data[at..at + stride]
    }
}

/// A field's per-thread cache from raw value (salted when the field is) to
/// its entry.
#[derive(Default)]
struct ValueCache {
    map: ByteMap<u32>,
    table: ValueTable,
    usage: CacheUse,
}

#[derive(Default)]
struct Cache {
    /// Per field: raw value → its encoding.
    values: Vec<ValueCache>,
    /// Per field: the current slice's values that bypassed the cache.
    own: Vec<ValueTable>,
    tokens: Vec<TokenCache>,
    /// Per blocking key: normalised parts → keyed blocking key.
    blocks: Vec<Memo<Option<[u8; 16]>>>,
}

/// A per-thread cache that steps aside when it does not pay, and is
/// cleared when it outgrows `limit` entries.
#[derive(Clone)]
struct Memo<V> {
    map: ByteMap<V>,
    usage: CacheUse,
    limit: usize,
}

impl<V: Clone> Memo<V> {
    fn new(limit: usize) -> Self {
        Memo {
            map: ByteMap::default(),
            usage: CacheUse::default(),
            limit,
        }
    }

    /// Whether to use the cache for the next value (false while it is
    /// bypassed).
    fn in_use(&mut self) -> bool {
        self.usage.cached()
    }

    /// The value under `key`, counting the hit or miss.
    fn get(&mut self, key: &[u8]) -> Option<V> {
        let hit = self.map.get(key).cloned();
        self.usage.record(hit.is_some());
        hit
    }

    /// Store `value` under `key` (clearing a full cache first).
    fn store(&mut self, key: &[u8], value: V) -> &V {
        if self.map.len() > self.limit {
            self.map.clear();
        }
        self.map.insert(key, value)
    }
}

/// Whether a cache pays. A field whose values rarely repeat (an id number,
/// a date of birth early on) or a blocking key that rarely repeats would
/// fill its cache with entries that are never hit and cost an allocation
/// each; such a cache is bypassed for [`BYPASS_SPAN`] values (the field is
/// encoded straight into reused buffers), then tried again. Only speed
/// depends on this, never the output.
#[derive(Default, Clone, Copy)]
struct CacheUse {
    lookups: u32,
    hits: u32,
    /// Values still to encode without the cache.
    bypass: u32,
    /// Windows judged so far (none is judged while the cache warms up).
    windows: u32,
}

/// Lookups over which a field's hit rate is judged.
const USE_WINDOW: u32 = 4096;
/// Values encoded without the cache after a poor window.
const BYPASS_SPAN: u32 = 64 * 1024;
/// Windows a new cache fills before its hit rate is judged: a cold cache
/// misses on every value it has not yet seen, so judging the first window
/// bypassed fields whose values do repeat (street names, suburbs).
const WARM_WINDOWS: u32 = 4;

impl CacheUse {
    /// Whether to use the cache for the next value.
    fn cached(&mut self) -> bool {
        if self.bypass > 0 {
            self.bypass -= 1;
            return false;
        }
        true
    }

    /// Record a lookup; after a window with under half hits, bypass.
    fn record(&mut self, hit: bool) {
        self.lookups += 1;
        self.hits += u32::from(hit);
        if self.lookups == USE_WINDOW {
            self.windows = self.windows.saturating_add(1);
            if self.windows > WARM_WINDOWS && self.hits * 2 < self.lookups {
                self.bypass = BYPASS_SPAN;
            }
            self.lookups = 0;
            self.hits = 0;
        }
    }
}

/// Upper bound on token-cache entries per field before it is cleared.
const CACHE_LIMIT: usize = 1 << 20;
/// Upper bound on value-cache entries per field before it is cleared.
const VALUE_CACHE_LIMIT: usize = 1 << 17;

/// Column positions in the input for everything the schema reads.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    /// Cells in the header: a CSV row with more or fewer is rejected whole.
    pub width: usize,
    pub record_id: Option<usize>,
    pub fields: Vec<usize>,
    pub strata: Vec<Option<usize>>,
    pub payload: Vec<usize>,
}

/// A keyed encoder for one schema and secret.
pub struct Encoder {
    schema: Schema,
    hash_bits: u64,
    /// Bits each field filter is hashed into (half the filter when balanced).
    ff_hash_bits: u64,
    /// Keyed bit permutations of balanced filters: the CLK's, then each field's.
    balance: Option<(Vec<u32>, Vec<Vec<u32>>)>,
    fields: Vec<FieldEnc>,
    blocks: Vec<Hmac<Sha256>>,
    /// Keyed MAC seeding each record's BLIP noise (when the schema asks).
    blip: Option<Hmac<Sha256>>,
    /// The salt's field and function, when the schema salts.
    salt: Option<(usize, BlockFn)>,
    /// Fields in encoding order (the salt's field first).
    field_order: Vec<usize>,
    /// Field index behind each stratum (`None` for raw-column strata).
    strata_fields: Vec<Option<usize>>,
    /// Field index of each part of each blocking key.
    block_fields: Vec<Vec<usize>>,
    key_check: String,
    /// Bytes of a value's CLK contribution (in the hash space) and of a
    /// value table entry (that, then the field filter, unless `ff_is_clk`).
    split: usize,
    stride: usize,
    /// The field filter is the CLK contribution itself (a clkhash schema
    /// without folding): stored once, so an entry is half the size.
    ff_is_clk: bool,
    caches: Vec<Mutex<Cache>>,
    soundex: rphonetic::Soundex,
    metaphone: rphonetic::DoubleMetaphone,
}

struct Scratch {
    norm: String,
    /// Per row of the slice: its salt (0x1e ‖ the salt's value), as ranges
    /// of `salt`.
    salt: Vec<u8>,
    salts: Vec<(u32, u32)>,
    vkey: Vec<u8>,
    tok: Vec<u8>,
    /// A value's tokens packed for the token cache.
    keys: Vec<Option<u128>>,
    /// Per field, per row of the slice: the value's entry (`OWN` set when in
    /// the slice's own table), or `NO_VALUE`.
    slots: Vec<u32>,
    /// Per row of the slice: the first field (in encoding order) that
    /// rejects it, with the reason.
    bad: Vec<Option<(String, String)>>,
    /// Rows whose value was not in the cache.
    misses: Vec<u32>,
    ff_bytes: Vec<u8>,
    tokens: TokenBuf,
    clk: Vec<u64>,
    key: Vec<u8>,
}

impl Scratch {
    /// Token `ti` of the value just tokenised, salted by the range `salt`
    /// of `self.salt`, into `tok`: a salted token is hashed as
    /// 0x1e ‖ salt ‖ token.
    fn salted_token(&mut self, salt: std::ops::Range<usize>, ti: usize) {
        self.tok.clear();
        self.tok.extend_from_slice(&self.salt[salt]);
        self.tok.extend_from_slice(self.tokens.get(ti));
    }

    /// A value's cache key into `vkey`: its salt (the range `salt` of
    /// `self.salt`), then its raw text.
    fn value_key(&mut self, salt: std::ops::Range<usize>, raw: &str) {
        self.vkey.clear();
        self.vkey.extend_from_slice(&self.salt[salt]);
        self.vkey.extend_from_slice(raw.as_bytes());
    }
}

/// The output of encoding a slice of a chunk.
pub struct SliceOut {
    pub batch: OwnedBatch,
    pub rejects: Vec<Reject>,
    /// Chunk rows that were encoded, in order.
    pub encoded_rows: Vec<usize>,
    pub missing: Vec<u64>,
}

impl Encoder {
    /// Build an encoder: derive keys and key the MAC states once.
    pub fn new(schema: Schema, secret: &Secret) -> Result<Self> {
        let halve = if schema.balance { 2 } else { 1 };
        let hash_bits = (schema.clk_bits as u64 / halve) << schema.xor_folds;
        let ff_hash_bits = schema.field_bits as u64 / halve;
        let balance = schema.balance.then(|| {
            let perm = |label: &str, n: u32| -> Vec<u32> {
                use rand::SeedableRng;
                use rand::seq::SliceRandom;
                let k = derive_key(secret, label);
                let mut rng = rand_chacha::ChaCha20Rng::from_seed(*k);
                let mut p: Vec<u32> = (0..n).collect();
                p.shuffle(&mut rng);
                p
            };
            (
                perm("balance/clk", schema.clk_bits),
                schema
                    .fields
                    .iter()
                    .map(|f| {
                        perm(
                            &format!("balance/ff/{}", key_name(&schema, f)),
                            schema.field_bits,
                        )
                    })
                    .collect(),
            )
        });
        let mut fields = Vec::new();
        let clk_keys = match (&schema.mode, &schema.kdf) {
            (Mode::Clkhash, Some(kdf)) => Some((clkhash_keys(secret, kdf)?, kdf.key_size)),
            _ => None,
        };
        for f in &schema.fields {
            let pattern = match f.validate.as_ref().and_then(|v| v.pattern.as_ref()) {
                Some(p) => Some(
                    regex::Regex::new(&format!("^(?:{p})$"))
                        .map_err(|_| Error::Runtime(format!("field `{}`: bad pattern", f.name)))?,
                ),
                None => None,
            };
            let (clk, ff) = match (&clk_keys, f.hash) {
                (Some((okm, ks)), h) => {
                    let k1 = &okm[2 * f.key_index * ks..(2 * f.key_index + 1) * ks];
                    let k2 = &okm[(2 * f.key_index + 1) * ks..(2 * f.key_index + 2) * ks];
                    let hasher = match h {
                        Hash::DoubleHash {
                            prevent_singularity,
                        } => TokenHasher::double(k1, k2, prevent_singularity),
                        Hash::Blake => TokenHasher::blake(k1)?,
                        Hash::HmacSha256 => TokenHasher::native(k1),
                    };
                    (hasher, None)
                }
                (None, _) => (
                    TokenHasher::native(
                        derive_key(secret, &format!("clk/field/{}", key_name(&schema, f))).as_ref(),
                    ),
                    Some(TokenHasher::native(
                        derive_key(secret, &format!("ff/field/{}", key_name(&schema, f))).as_ref(),
                    )),
                ),
            };
            fields.push(FieldEnc { clk, ff, pattern });
        }
        let blocks = schema
            .blocking
            .iter()
            .map(|b| {
                let k = derive_key(secret, &format!("bk/{}", b.name));
                <Hmac<Sha256> as KeyInit>::new_from_slice(k.as_ref()).expect("any key length")
            })
            .collect();
        let block_fields = schema
            .blocking
            .iter()
            .map(|b| {
                b.parts
                    .iter()
                    .map(|p| {
                        schema
                            .fields
                            .iter()
                            .position(|f| f.name == p.field)
                            .expect("schema validated")
                    })
                    .collect()
            })
            .collect();
        let strata_fields = schema
            .strata
            .iter()
            .map(|st| match &st.kind {
                StratumKind::Value { .. } => None,
                StratumKind::Field { field } | StratumKind::AgeBand { field, .. } => Some(
                    schema
                        .fields
                        .iter()
                        .position(|f| &f.name == field)
                        .expect("schema validated"),
                ),
            })
            .collect();
        let threads = rayon::current_num_threads() + 1;
        let caches = (0..threads)
            .map(|_| {
                Mutex::new(Cache {
                    values: (0..schema.fields.len())
                        .map(|_| Default::default())
                        .collect(),
                    own: (0..schema.fields.len())
                        .map(|_| Default::default())
                        .collect(),
                    tokens: vec![TokenCache::default(); schema.fields.len()],
                    blocks: vec![Memo::new(CACHE_LIMIT); schema.blocking.len()],
                })
            })
            .collect();
        let blip = (schema.blip > 0.0).then(|| {
            let k = derive_key(secret, "blip");
            <Hmac<Sha256> as KeyInit>::new_from_slice(k.as_ref()).expect("any key length")
        });
        let salt = schema.salt.as_ref().map(|p| {
            (
                schema
                    .fields
                    .iter()
                    .position(|f| f.name == p.field)
                    .expect("schema validated"),
                p.function,
            )
        });
        let mut field_order: Vec<usize> = (0..schema.fields.len()).collect();
        if let Some((sf, _)) = salt {
            field_order.retain(|&f| f != sf);
            field_order.insert(0, sf);
        }
        let ff_is_clk = schema.mode == Mode::Clkhash && schema.xor_folds == 0;
        debug_assert!(!ff_is_clk || schema.field_bits as u64 == hash_bits);
        Ok(Encoder {
            salt,
            field_order,
            blip,
            key_check: key_check(secret),
            split: (hash_bits / 8) as usize,
            stride: (hash_bits / 8) as usize
                + if ff_is_clk {
                    0
                } else {
                    schema.field_bits as usize / 8
                },
            ff_is_clk,
            hash_bits,
            ff_hash_bits,
            balance,
            fields,
            blocks,
            block_fields,
            strata_fields,
            caches,
            schema,
            soundex: rphonetic::Soundex::default(),
            metaphone: rphonetic::DoubleMetaphone::default(),
        })
    }

    /// The schema this encoder uses.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The key check value of the secret.
    pub fn key_check(&self) -> &str {
        &self.key_check
    }

    /// Why column `name` is not in `header`, with what may help: a near
    /// name, a header that is one cell holding another separator, or no
    /// header row at all. The header's cells are never listed: in a file
    /// without a header row they are a record's values.
    fn not_in_header(&self, header: &[String], name: &str, what: &str) -> String {
        let mut msg = format!("column `{name}` ({what}) is not in the header row");
        let fold = |x: &str| {
            x.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        };
        let near = header.iter().find(|h| {
            let (a, b) = (fold(h), fold(name));
            !a.is_empty() && (a == b || strsim::jaro_winkler(&a, &b) >= 0.9)
        });
        let expected = self
            .schema
            .fields
            .iter()
            .map(|f| f.column.as_str())
            .chain(self.schema.record_id.as_deref());
        let separator = [';', '\t', '|'].into_iter().find(|&c| {
            header.len() == 1 && header[0].contains(c) && header[0].split(c).any(|h| h == name)
        });
        if let Some(h) = near {
            msg += &format!("; did you mean `{h}`?");
        } else if let Some(c) = separator {
            let c = if c == '\t' {
                "tab".to_string()
            } else {
                format!("`{c}`")
            };
            msg += &format!(
                "; the header is one cell separated by {c}: bloomlink reads comma-separated .csv and tab-separated .tsv files"
            );
        } else if !expected.clone().any(|e| header.iter().any(|h| h == e)) {
            msg += "; none of the schema's columns is in the first row: does the file have a header row?";
        }
        msg + " (the header's cells are not listed here: in a file without a header row they would be a record's values)"
    }

    /// Map the schema's columns onto an input header.
    pub fn column_map(
        &self,
        header: &[String],
        path: &Path,
        payload: &[String],
    ) -> Result<ColumnMap> {
        let find = |name: &str, what: &str| -> Result<usize> {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| Error::input(path, self.not_in_header(header, name, what)))
        };
        let record_id = match &self.schema.record_id {
            Some(c) => Some(find(c, "the record id")?),
            None => None,
        };
        let mut fields = Vec::new();
        for f in &self.schema.fields {
            fields.push(find(&f.column, &format!("field `{}`", f.name))?);
        }
        let mut strata = Vec::new();
        for s in &self.schema.strata {
            strata.push(match &s.kind {
                StratumKind::Value { column } => {
                    Some(find(column, &format!("stratum `{}`", s.name))?)
                }
                _ => None,
            });
        }
        let mut pay = Vec::new();
        for p in payload {
            let c = find(p, "a payload column")?;
            let identifying = self.schema.fields.iter().any(|f| &f.column == p)
                || self.schema.record_id.as_deref() == Some(p.as_str());
            if identifying {
                return Err(Error::Usage(format!(
                    "payload column `{p}` is an identifier used by the schema; payload must not hold identifiers"
                )));
            }
            pay.push(c);
        }
        Ok(ColumnMap {
            width: header.len(),
            record_id,
            fields,
            strata,
            payload: pay,
        })
    }

    fn cache_slot(&self) -> &Mutex<Cache> {
        let i = rayon::current_thread_index().unwrap_or(self.caches.len() - 1);
        &self.caches[i.min(self.caches.len() - 1)]
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            norm: String::new(),
            salt: Vec::new(),
            salts: Vec::new(),
            vkey: Vec::new(),
            tok: Vec::new(),
            keys: Vec::new(),
            slots: Vec::new(),
            bad: Vec::new(),
            misses: Vec::new(),
            ff_bytes: Vec::new(),
            tokens: TokenBuf::default(),
            clk: vec![0u64; (self.hash_bits / 64) as usize],
            key: Vec::new(),
        }
    }

    /// Encode rows `rows` of `chunk` (already cleared of bad ids: `ids[i]` is
    /// the id of row `rows.start + i`, or the reject for it).
    ///
    /// Two passes. The first goes field by field down the slice and turns
    /// each cell into an entry of the field's value cache (encoding the
    /// values it has not seen): one field's cache is in use at a time, and
    /// the lookups of successive rows are independent, so the processor
    /// overlaps their cache misses. The second goes row by row and writes
    /// the output from the entries.
    pub fn encode_slice(
        &self,
        chunk: &Chunk,
        cols: &ColumnMap,
        rows: std::ops::Range<usize>,
        ids: &[std::result::Result<String, Reject>],
        first_row: u64,
    ) -> SliceOut {
        let s = &self.schema;
        let mut out = SliceOut {
            batch: OwnedBatch::new(s.fields.len(), s.blocking.len(), s.strata.len()),
            rejects: Vec::new(),
            encoded_rows: Vec::with_capacity(rows.len()),
            missing: vec![0; s.fields.len()],
        };
        let n = rows.len();
        let clk_bytes = s.clk_bits as usize / 8;
        out.batch.clk.reserve(n * clk_bytes);
        for (b, v) in &mut out.batch.fields {
            b.reserve(n * s.field_bits as usize / 8);
            v.reserve(n);
        }
        for (b, v) in &mut out.batch.blocks {
            b.reserve(n * 16);
            v.reserve(n);
        }
        let mut sc = self.scratch();
        let mut guard = self.cache_slot().lock().unwrap_or_else(|p| p.into_inner());
        let cache = &mut *guard;
        sc.slots.clear();
        sc.slots.resize(s.fields.len() * n, NO_VALUE);
        sc.bad.clear();
        sc.bad.resize(n, None);
        for &fi in &self.field_order {
            if let Some((sf, func)) = self.salt
                && fi != sf
                && sc.salts.is_empty()
            {
                self.salt_rows(sf, func, n, &mut sc, cache);
            }
            self.lookup_field(fi, chunk, cols, rows.clone(), ids, &mut sc, cache);
        }
        for (i, row) in rows.enumerate() {
            // The entries of a row a few ahead, so that their cache misses
            // overlap this row's work.
            if i + WRITE_AHEAD < n {
                for fi in 0..s.fields.len() {
                    let e = sc.slots[fi * n + i + WRITE_AHEAD];
                    if e != NO_VALUE {
                        let (e, t) = value_table(cache, fi, e);
                        prefetch_entry(t, e, self.stride);
                    }
                }
            }
            let id = match &ids[i] {
                Err(r) => {
                    out.rejects.push(r.clone());
                    continue;
                }
                Ok(id) => id,
            };
            if let Some((column, reason)) = sc.bad[i].take() {
                out.rejects.push(Reject {
                    row: first_row + row as u64,
                    record_id: id.clone(),
                    column,
                    reason,
                });
                continue;
            }
            self.write_row(chunk, cols, row, i, n, id, &mut sc, cache, &mut out);
            out.batch.ids.append_value(id);
            out.encoded_rows.push(row);
        }
        out
    }

    /// The salt of each row of the slice (0x1e, then the salt function of
    /// field `sf`'s value when it has one), from field `sf`'s slots.
    fn salt_rows(&self, sf: usize, func: BlockFn, n: usize, sc: &mut Scratch, cache: &Cache) {
        sc.salt.clear();
        let mut part = Vec::new();
        for i in 0..n {
            let start = sc.salt.len() as u32;
            sc.salt.push(0x1e);
            let slot = sc.slots[sf * n + i];
            if slot != NO_VALUE {
                part.clear();
                let (e, t) = value_table(cache, sf, slot);
                if self.block_part(func, t.norm(e), &mut part) {
                    sc.salt.extend_from_slice(&part);
                }
            }
            sc.salts.push((start, sc.salt.len() as u32 - start));
        }
    }

    /// Field `fi` of every row of the slice that is still good: its cell's
    /// entry into `sc.slots`, or the row's reject into `sc.bad`.
    #[allow(clippy::too_many_arguments)]
    fn lookup_field(
        &self,
        fi: usize,
        chunk: &Chunk,
        cols: &ColumnMap,
        rows: std::ops::Range<usize>,
        ids: &[std::result::Result<String, Reject>],
        sc: &mut Scratch,
        cache: &mut Cache,
    ) {
        let s = &self.schema;
        let f = &s.fields[fi];
        let col = cols.fields[fi];
        let n = rows.len();
        let salted = self.salt.is_some_and(|(sf, _)| sf != fi)
            && (s.salted.is_empty() || s.salted.contains(&f.name));
        let Cache {
            values,
            own,
            tokens,
            ..
        } = cache;
        let (vc, own, tcache) = (&mut values[fi], &mut own[fi], &mut tokens[fi]);
        // Entries are cleared only between fields, never while this slice's
        // slots point at them.
        if vc.table.len() > VALUE_CACHE_LIMIT {
            vc.map.clear();
            vc.table.clear();
        }
        own.clear();
        sc.misses.clear();
        // Row `i`'s salt, as a range of `sc.salt` (empty when unsalted).
        let salt_of = |sc: &Scratch, i: usize| -> std::ops::Range<usize> {
            if salted {
                let (a, l) = sc.salts[i];
                a as usize..(a + l) as usize
            } else {
                0..0
            }
        };
        // A cell's text, or the row's reject.
        let text = |row: usize| -> std::result::Result<Option<Cell<'_>>, &'static str> {
            match chunk.cell(row, col) {
                Cell::Null => Ok(None),
                Cell::BadUtf8 => {
                    Err("not valid UTF-8 (give the file's encoding: --encoding windows-1252, say)")
                }
                Cell::Absent => Err("the row has fewer cells than the header"),
                c => Ok(Some(c)),
            }
        };
        for (i, row) in rows.clone().enumerate() {
            if ids[i].is_err() || sc.bad[i].is_some() {
                continue;
            }
            let cell = match text(row) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(reason) => {
                    sc.bad[i] = Some((f.column.clone(), reason.into()));
                    continue;
                }
            };
            let raw = cell.as_str();
            let salt = salt_of(sc, i);
            if !vc.usage.cached() {
                // Encoded straight into the slice's own table.
                let e = self.encode_value(fi, raw, salt, sc, tcache, own);
                settle(sc, i, fi, n, f, own, e, OWN);
                continue;
            }
            sc.value_key(salt, raw);
            match vc.map.get(&sc.vkey) {
                Some(&e) => {
                    vc.usage.record(true);
                    settle(sc, i, fi, n, f, &vc.table, e, 0);
                }
                None => {
                    vc.usage.record(false);
                    sc.misses.push(i as u32);
                }
            }
        }
        // Values not in the cache, in row order (a value repeated within
        // the slice is encoded once: its later rows find the first's entry).
        let misses = std::mem::take(&mut sc.misses);
        for &i in &misses {
            let i = i as usize;
            let Ok(Some(cell)) = text(rows.start + i) else {
                unreachable!("a missed row has text")
            };
            let raw = cell.as_str();
            let salt = salt_of(sc, i);
            sc.value_key(salt.clone(), raw);
            let e = match vc.map.get(&sc.vkey) {
                Some(&e) => e,
                None => {
                    let e = self.encode_value(fi, raw, salt, sc, tcache, &mut vc.table);
                    vc.map.insert(&sc.vkey, e);
                    e
                }
            };
            settle(sc, i, fi, n, f, &vc.table, e, 0);
        }
        sc.misses = misses;
    }

    /// Normalise, tokenise and hash one raw value of field `fi` (salted by
    /// the range `salt` of `sc.salt`) into a new entry of `t`; returns its
    /// index.
    fn encode_value(
        &self,
        fi: usize,
        raw: &str,
        salt: std::ops::Range<usize>,
        sc: &mut Scratch,
        tcache: &mut TokenCache,
        t: &mut ValueTable,
    ) -> u32 {
        let f = &self.schema.fields[fi];
        let enc = &self.fields[fi];
        let idx = t.entries.len() as u32;
        let at = t.data.len();
        t.data.resize(at + self.stride, 0);
        let mut entry = Entry {
            norm: (t.norms.len() as u32, 0),
            reject: NO_VALUE,
            present: false,
        };
        match normalise(f, enc.pattern.as_ref(), Some(raw), &mut sc.norm) {
            Normalised::Reject(r) => {
                entry.reject = t.rejects.len() as u32;
                t.rejects.push(r);
                t.entries.push(entry);
                return idx;
            }
            Normalised::Missing => {
                t.entries.push(entry);
                return idx;
            }
            Normalised::Value => {}
        }
        sc.tokens.tokenise(&f.tokens, &sc.norm);
        let field_bits = self.ff_hash_bits;
        let tn = sc.tokens.len();
        if tcache.len() > CACHE_LIMIT {
            tcache.clear();
        }
        // Every token's home slot asked for first, so that their cache
        // misses overlap.
        sc.keys.clear();
        for ti in 0..tn {
            sc.salted_token(salt.clone(), ti);
            let key = tokencache::pack(&sc.tok);
            if let Some(key) = key {
                tcache.prefetch(key);
            }
            sc.keys.push(key);
        }
        // Bits go straight into the entry's CLK part (zeroed above) and,
        // for a native field filter, into its unbalanced half.
        let native = self.schema.mode != Mode::Clkhash;
        let mut half = std::mem::take(&mut sc.ff_bytes);
        half.clear();
        if native {
            half.resize(field_bits as usize / 8, 0);
        }
        let (clk_part, ff_part) = t.data[at..at + self.stride].split_at_mut(self.split);
        let mut any = false;
        for ti in 0..tn {
            let k = match f.strategy {
                Strategy::BitsPerToken(k) => k as usize,
                Strategy::BitsPerFeature(b) => {
                    let (base, rem) = (b as usize / tn, b as usize % tn);
                    base + usize::from(ti < rem)
                }
            };
            if k == 0 {
                continue;
            }
            any = true;
            sc.salted_token(salt.clone(), ti);
            let tok = sc.tok.as_slice();
            let key = sc.keys[ti];
            let mut set = |(c, g): &tokencache::Hashes| {
                set_positions(clk_part, c, k, self.hash_bits);
                if let (true, Some(g)) = (native, g) {
                    set_positions(&mut half, g, k, field_bits);
                }
            };
            match tcache.get(tok, key).filter(|e| e.0.covers(k)) {
                Some(e) => set(&e),
                None => {
                    let c = enc.clk.hash(tok, self.hash_bits, k);
                    let g = enc.ff.as_ref().map(|h| h.hash(tok, field_bits, k));
                    let hashes = (c, g);
                    set(&hashes);
                    tcache.insert(tok, key, hashes);
                }
            }
        }
        t.norms.push_str(&sc.norm);
        entry.norm.1 = sc.norm.len() as u32;
        // A value with no tokens (or only k = 0 tokens) is missing.
        if any {
            entry.present = true;
            let s = &self.schema;
            if !native {
                // Field filter = the field's own CLK bits, folded like the CLK
                // (unfolded, it is the CLK part itself: `ff_is_clk`).
                if s.xor_folds > 0 {
                    let mut b = xor_fold(clk_part);
                    for _ in 1..s.xor_folds {
                        b = xor_fold(&b);
                    }
                    ff_part.copy_from_slice(&b);
                }
            } else {
                match &self.balance {
                    Some((_, perms)) => ff_part.copy_from_slice(&balanced(&half, &perms[fi])),
                    None => ff_part.copy_from_slice(&half),
                }
            }
        }
        sc.ff_bytes = half;
        t.entries.push(entry);
        idx
    }

    /// Write row `row` (slice row `i` of `n`) from its fields' entries: the
    /// CLK, the field filters, blocking keys and strata.
    #[allow(clippy::too_many_arguments)]
    fn write_row(
        &self,
        chunk: &Chunk,
        cols: &ColumnMap,
        row: usize,
        i: usize,
        n: usize,
        record_id: &str,
        sc: &mut Scratch,
        cache: &mut Cache,
        out: &mut SliceOut,
    ) {
        let s = &self.schema;
        let slot = |fi: usize| -> Option<u32> {
            let e = sc.slots[fi * n + i];
            (e != NO_VALUE).then_some(e)
        };
        // 1. OR each present field's words into the CLK; copy its filter.
        sc.clk.fill(0);
        let ff_bytes_len = s.field_bits as usize / 8;
        for fi in 0..s.fields.len() {
            let (ff_bytes, ff_valid) = &mut out.batch.fields[fi];
            let Some(e) = slot(fi) else {
                out.missing[fi] += 1;
                ff_bytes.extend(std::iter::repeat_n(0u8, ff_bytes_len));
                ff_valid.push(false);
                continue;
            };
            let (e, t) = value_table(cache, fi, e);
            let bytes = t.bytes(e, self.stride);
            let (clk_part, ff_part) = bytes.split_at(self.split);
            let ff_part = if self.ff_is_clk { clk_part } else { ff_part };
            // A fallback repeats its field's value in another form: it has
            // a filter of its own but adds nothing to the CLK.
            if s.fields[fi].fallback_for.is_none() {
                for (w, x) in sc.clk.iter_mut().zip(clk_part.chunks_exact(8)) {
                    *w |= u64::from_le_bytes(x.try_into().expect("8 bytes"));
                }
            }
            ff_bytes.extend_from_slice(ff_part);
            ff_valid.push(true);
        }
        let clk_start = out.batch.clk.len();
        for w in &sc.clk {
            out.batch.clk.extend_from_slice(&w.to_le_bytes());
        }
        if s.xor_folds > 0 {
            let mut folded = out.batch.clk[clk_start..].to_vec();
            for _ in 0..s.xor_folds {
                folded = xor_fold(&folded);
            }
            out.batch.clk.truncate(clk_start);
            out.batch.clk.extend_from_slice(&folded);
        }
        if let Some((perm, _)) = &self.balance {
            let b = balanced(&out.batch.clk[clk_start..], perm);
            out.batch.clk.truncate(clk_start);
            out.batch.clk.extend_from_slice(&b);
        }
        if let Some(blip) = &self.blip {
            self.apply_blip(blip, record_id, out);
        }
        // 2. Keyed blocking keys, cached per thread by the normalised inputs
        // (so soundex and the HMAC run once per distinct combination).
        for bi in 0..s.blocking.len() {
            sc.key.clear();
            let mut ok = true;
            for &fi in &self.block_fields[bi] {
                match slot(fi) {
                    Some(e) => {
                        let (e, t) = value_table(cache, fi, e);
                        sc.key.extend_from_slice(t.norm(e).as_bytes());
                        sc.key.push(0x1f);
                    }
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            let key = if ok {
                let bcache = &mut cache.blocks[bi];
                if bcache.in_use() {
                    match bcache.get(&sc.key) {
                        Some(k) => k,
                        None => *bcache.store(&sc.key, self.block_key(bi, &sc.key)),
                    }
                } else {
                    self.block_key(bi, &sc.key)
                }
            } else {
                None
            };
            let (kb, kv) = &mut out.batch.blocks[bi];
            kb.extend_from_slice(&key.unwrap_or([0u8; 16]));
            kv.push(key.is_some());
        }
        // 3. Declared strata.
        let field_norm = |si: usize| -> Option<&str> {
            let fi = self.strata_fields[si].expect("field stratum");
            slot(fi).map(|e| {
                let (e, t) = value_table(cache, fi, e);
                t.norm(e)
            })
        };
        for (si, st) in s.strata.iter().enumerate() {
            let v = match &st.kind {
                StratumKind::Value { .. } => {
                    match chunk.cell(row, cols.strata[si].expect("mapped")) {
                        Cell::Text(t) => stratum_value(t),
                        Cell::Owned(t) => stratum_value(&t),
                        _ => None,
                    }
                }
                StratumKind::Field { .. } => field_norm(si).map(str::to_string),
                StratumKind::AgeBand {
                    reference_date,
                    bounds,
                    ..
                } => field_norm(si).and_then(|v| age_band(v, reference_date, bounds)),
            };
            out.batch.strata[si].append_option(v);
        }
    }

    /// The keyed blocking key of pass `bi` from its parts' normalised values
    /// (joined by 0x1f); `None` when a part yields nothing (e.g. no letters
    /// for soundex).
    fn block_key(&self, bi: usize, norms: &[u8]) -> Option<[u8; 16]> {
        let b = &self.schema.blocking[bi];
        let text = std::str::from_utf8(norms).expect("normalised values are UTF-8");
        let mut key = Vec::new();
        for (p, norm) in b.parts.iter().zip(text.split('\u{1f}')) {
            if !self.block_part(p.function, norm, &mut key) {
                return None;
            }
            key.push(0x1f);
        }
        let mut m = self.blocks[bi].clone();
        m.update(&key);
        Some(
            m.finalize().into_bytes()[..16]
                .try_into()
                .expect("16 bytes"),
        )
    }

    /// Append the blocking value of `norm` under `f` to `key`; false if none.
    fn block_part(&self, f: BlockFn, norm: &str, key: &mut Vec<u8>) -> bool {
        let start = key.len();
        match f {
            BlockFn::Value => key.extend_from_slice(norm.as_bytes()),
            BlockFn::Soundex | BlockFn::Metaphone => {
                let letters: String = norm.chars().filter(|c| c.is_ascii_alphabetic()).collect();
                if letters.is_empty() {
                    return false;
                }
                let code = if f == BlockFn::Soundex {
                    self.soundex.encode(&letters)
                } else {
                    self.metaphone.encode(&letters)
                };
                key.extend_from_slice(code.as_bytes());
            }
            BlockFn::First(n) => {
                for c in norm.chars().filter(|c| *c != ' ').take(n as usize) {
                    let mut b = [0u8; 4];
                    key.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
            BlockFn::Year
            | BlockFn::Month
            | BlockFn::Day
            | BlockFn::DayMonth
            | BlockFn::EvenYear
            | BlockFn::OddYear => {
                // A date normalises to `YYYYMMDD`.
                let d = norm.as_bytes();
                if d.len() != 8 || !d.iter().all(u8::is_ascii_digit) {
                    return false;
                }
                let (year, month, day) = (&d[0..4], &d[4..6], &d[6..8]);
                match f {
                    BlockFn::Year => key.extend_from_slice(year),
                    BlockFn::Month => key.extend_from_slice(month),
                    BlockFn::Day => key.extend_from_slice(day),
                    BlockFn::DayMonth => {
                        // Day and month as an unordered pair.
                        let (lo, hi) = if month <= day {
                            (month, day)
                        } else {
                            (day, month)
                        };
                        key.extend_from_slice(lo);
                        key.extend_from_slice(hi);
                    }
                    _ => {
                        // The year rounded down to the wanted parity.
                        let y = year.iter().fold(0u32, |y, b| y * 10 + u32::from(b - b'0'));
                        let odd = u32::from(f == BlockFn::OddYear);
                        let r = if y % 2 == odd { y } else { y.saturating_sub(1) };
                        key.extend_from_slice(&[
                            b'0' + (r / 1000 % 10) as u8,
                            b'0' + (r / 100 % 10) as u8,
                            b'0' + (r / 10 % 10) as u8,
                            b'0' + (r % 10) as u8,
                        ]);
                    }
                }
            }
            BlockFn::PostcodeDistrict => {
                let p: String = norm.chars().filter(|c| *c != ' ').collect();
                let cut = if p.len() >= 5 { p.len() - 3 } else { p.len() };
                key.extend_from_slice(&p.as_bytes()[..cut]);
            }
        }
        key.len() > start
    }

    /// Flip each bit of the record just written (its CLK and present field
    /// filters) with probability `schema.blip`, from a ChaCha stream keyed by
    /// HMAC(blip key, record id): the same input and key give the same noise.
    fn apply_blip(&self, mac: &Hmac<Sha256>, record_id: &str, out: &mut SliceOut) {
        use rand::{RngExt, SeedableRng};
        let f = self.schema.blip;
        let mut m = mac.clone();
        m.update(record_id.as_bytes());
        let seed: [u8; 32] = m.finalize().into_bytes().into();
        let mut rng = rand_chacha::ChaCha8Rng::from_seed(seed);
        let ln_keep = (1.0 - f).ln();
        let mut flip = |bytes: &mut [u8]| {
            // Geometric skips: one random draw per flipped bit, not per bit.
            let bits = bytes.len() * 8;
            let mut i = 0usize;
            loop {
                let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                i += (u.ln() / ln_keep).floor() as usize;
                if i >= bits {
                    break;
                }
                bytes[i >> 3] ^= 0x80 >> (i & 7);
                i += 1;
            }
        };
        let clk_len = self.schema.clk_bits as usize / 8;
        let n = out.batch.clk.len();
        flip(&mut out.batch.clk[n - clk_len..]);
        let ff_len = self.schema.field_bits as usize / 8;
        for (bytes, valid) in &mut out.batch.fields {
            if valid.last() == Some(&true) {
                let n = bytes.len();
                flip(&mut bytes[n - ff_len..]);
            }
        }
    }

    /// Record ids of a chunk, in input order: empty and repeated ids are rejects.
    fn check_ids(
        &self,
        chunk: &Chunk,
        cols: &ColumnMap,
        first_row: u64,
        seen: &mut HashSet<u128>,
        counts: &mut Counts,
    ) -> Vec<std::result::Result<String, Reject>> {
        let s = &self.schema;
        let mut ids = Vec::with_capacity(chunk.len());
        for row in 0..chunk.len() {
            let rownum = first_row + row as u64;
            let reject = |reason: &str| Reject {
                row: rownum,
                record_id: String::new(),
                column: s.record_id.clone().unwrap_or_else(|| "(row number)".into()),
                reason: reason.into(),
            };
            // A row with more cells than the header (a value holding an
            // unquoted comma) would put each value after that one under the
            // next column's name: into a stratum, say, that the extract
            // keeps in clear. One with fewer may be the rest of a row cut
            // by an unquoted line break. Neither row's cells are where the
            // header says, its record id included: the row is rejected
            // whole, by its row number only.
            if let Some(n) = chunk.cells(row).filter(|&n| n != cols.width) {
                ids.push(Err(Reject {
                    column: "(whole row)".into(),
                    ..reject(&format!(
                        "the row has {n} cells where the header has {}: a value with an unquoted comma, quote or line break? Quote it",
                        cols.width
                    ))
                }));
                continue;
            }
            let id = match cols.record_id {
                None => Ok(rownum.to_string()),
                Some(c) => match chunk.cell(row, c) {
                    Cell::Text(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
                    Cell::Owned(t) => Ok(t),
                    Cell::BadUtf8 => Err(reject(
                        "record id is not valid UTF-8 (give the file's encoding: --encoding windows-1252, say)",
                    )),
                    Cell::Absent => Err(reject("the row has fewer cells than the header")),
                    _ => Err(reject("record id is empty")),
                },
            };
            ids.push(match id {
                Ok(id) => {
                    if seen.insert(id_hash(&id)) {
                        Ok(id)
                    } else {
                        counts.duplicate_ids += 1;
                        Err(Reject {
                            record_id: id,
                            ..reject("duplicate record id (an earlier row has it)")
                        })
                    }
                }
                Err(r) => Err(r),
            });
        }
        ids
    }

    /// Encode a whole file. Writes `output`, its rejects file and, if asked,
    /// the payload file, all atomically; returns the counts.
    pub fn encode_file(
        &self,
        input: &Path,
        output: &Path,
        opts: &EncodeOptions,
    ) -> Result<EncodeResult> {
        if !valid_agency(&opts.agency) {
            return Err(Error::Usage(format!(
                "agency name `{}` is not valid: use 1-64 letters, digits, `_`, `-` or `.`",
                opts.agency
            )));
        }
        if !opts.payload_columns.is_empty() && opts.payload_output.is_none() {
            return Err(Error::Usage(
                "--payload-columns needs --payload-output P.parquet".into(),
            ));
        }
        check_outputs(input, output, opts.payload_output.as_deref())?;
        let mut reader = Input::open(input, opts.chunk_rows, opts.csv)?;
        let cols = self.column_map(reader.header(), input, &opts.payload_columns)?;
        // Typed date columns (Parquet) as text in a format their date
        // field parses: its first with a four-digit year, else ISO.
        for (f, &c) in self.schema.fields.iter().zip(&cols.fields) {
            if matches!(f.kind, Kind::Date | Kind::ClkDate) {
                let four = f.formats.iter().find(|x| x.contains("%Y"));
                reader.date_format(c, four.map_or("%Y-%m-%d", String::as_str));
            }
        }
        let mut used: Vec<usize> = cols.fields.clone();
        used.extend(cols.record_id);
        used.extend(cols.strata.iter().flatten());
        used.extend(&cols.payload);
        let s = &self.schema;
        let names = |v: Vec<&String>| v.into_iter().cloned().collect::<Vec<_>>();
        let mut writer = ExtractWriter::create(
            output,
            s.clk_bits,
            s.field_bits,
            &names(s.fields.iter().map(|f| &f.name).collect()),
            &names(s.blocking.iter().map(|b| &b.name).collect()),
            &names(s.strata.iter().map(|x| &x.name).collect()),
        )?;
        let mut payload = match &opts.payload_output {
            Some(p) => Some(super::payload::PayloadWriter::create(
                p,
                &opts.payload_columns,
                &opts.agency,
            )?),
            None => None,
        };
        let rejects_file = rejects_path(output);
        let mut rejects: Vec<Reject> = Vec::new();
        let mut counts = Counts::default();
        let mut missing = vec![0u64; s.fields.len()];
        let mut seen: HashSet<u128> = HashSet::new();
        // Record ids read, and how many look like NHS numbers.
        let mut id_checks = (0u64, 0u64);
        // Each stratum's distinct values, to hold strata to coarse groups.
        let mut strata_seen: Vec<HashSet<Vec<u8>>> = vec![HashSet::new(); s.strata.len()];
        let bar = crate::progress::rows_bar(opts.progress, "encoding");
        // A reader thread parses the next chunk while this one is encoded.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Chunk>>(1);
        let chunk_rows = opts.chunk_rows;
        let writer = std::thread::scope(|scope| -> Result<ExtractWriter> {
            // A writer thread turns encoded batches into Parquet pages and
            // writes them while the next slices are encoded.
            let (wtx, wrx) = std::sync::mpsc::sync_channel::<OwnedBatch>(4);
            let written = scope.spawn(move || -> Result<ExtractWriter> {
                for batch in wrx {
                    writer.write(batch)?;
                }
                Ok(writer)
            });
            scope.spawn(move || {
                loop {
                    let mut chunk = Chunk::Csv(Default::default());
                    match reader.next_chunk(chunk_rows, &mut chunk, &used) {
                        Ok(true) => {
                            if tx.send(Ok(chunk)).is_err() {
                                return;
                            }
                        }
                        Ok(false) => return,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            });
            let mut first_row = 1u64;
            'chunks: for chunk in rx {
                let chunk = chunk?;
                let n = chunk.len();
                let ids = self.check_ids(&chunk, &cols, first_row, &mut seen, &mut counts);
                for id in ids.iter().flatten() {
                    id_checks.0 += 1;
                    id_checks.1 += u64::from(nhs_number_like(id));
                }
                let slice = 4096;
                let parts: Vec<(SliceOut, Vec<HashSet<Vec<u8>>>)> = (0..n.div_ceil(slice))
                    .into_par_iter()
                    .map(|p| {
                        let r = p * slice..((p + 1) * slice).min(n);
                        let out = self.encode_slice(&chunk, &cols, r.clone(), &ids[r], first_row);
                        let values = out.batch.strata.iter().map(stratum_values).collect();
                        (out, values)
                    })
                    .collect();
                for (part, values) in parts {
                    for (si, v) in values.into_iter().enumerate() {
                        strata_seen[si].extend(v);
                        self.check_coarse(input, si, strata_seen[si].len(), None)?;
                    }
                    for (m, x) in missing.iter_mut().zip(&part.missing) {
                        *m += x;
                    }
                    counts.encoded += part.encoded_rows.len() as u64;
                    if let Some(p) = &mut payload {
                        p.write(&chunk, &cols.payload, &part.encoded_rows, &ids)?;
                    }
                    rejects.extend(part.rejects);
                    if wtx.send(part.batch).is_err() {
                        // The writer stopped on an error: report it.
                        break 'chunks;
                    }
                }
                counts.rows_read += n as u64;
                first_row += n as u64;
                bar.inc(n as u64);
            }
            drop(wtx);
            written.join().expect("the writer thread does not panic")
        })?;
        bar.finish_and_clear();
        if mostly_nhs_numbers(id_checks.0, id_checks.1) {
            return Err(Error::input(
                input,
                format!(
                    "record ids look like NHS numbers ({} of {} are ten digits with a valid NHS check digit): record ids are written to the extract in clear and reach the hub, so they must be the agency's own row reference; give `record_id` another column, or a pseudonymous one",
                    id_checks.1, id_checks.0
                ),
            ));
        }
        for (si, v) in strata_seen.iter().enumerate() {
            self.check_coarse(input, si, v.len(), Some(counts.encoded))?;
        }
        counts.rejected = rejects.len() as u64;
        for r in &rejects {
            *counts
                .reject_reasons
                .entry(format!("{}: {}", r.column, r.reason))
                .or_default() += 1;
        }
        for (f, m) in s.fields.iter().zip(&missing) {
            counts.missing.insert(f.name.clone(), *m);
        }
        if counts.rows_read == 0 {
            tracing::warn!(
                "{} has no rows but its header: the extract holds no records; check the export before sharing it",
                input.display()
            );
        }
        if counts.rejected * 2 > counts.rows_read {
            let top = counts.reject_reasons.iter().max_by_key(|(_, n)| **n);
            tracing::warn!(
                "{} of {} rows of {} were rejected, most of them for {}: check the schema against this file (column names, date formats, --encoding, --delimiter) before sharing the extract",
                counts.rejected,
                counts.rows_read,
                input.display(),
                top.map_or(String::new(), |(r, n)| format!("`{r}` ({n})"))
            );
        }
        debug_assert_eq!(counts.rows_read, counts.encoded + counts.rejected);
        let meta = ExtractMeta {
            format_version: FORMAT_VERSION.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            agency: opts.agency.clone(),
            schema_json: s.canonical_json(),
            fingerprint: s.fingerprint(),
            key_check: self.key_check.clone(),
            counts: counts.clone(),
            schema: Default::default(),
        };
        let extract = writer.finish(&meta)?;
        let rejects_pending = write_rejects(&rejects_file, &rejects)?;
        let payload_pending = match payload {
            Some(p) => {
                for (column, why) in p.identifying() {
                    tracing::warn!(
                        "payload column `{column}` looks identifying ({why}): payload goes to analysts, and `bloomlink release` refuses such a column unless it is allowed (--allow-column {column})"
                    );
                }
                Some(p.finish()?)
            }
            None => None,
        };
        extract.commit()?;
        rejects_pending.commit()?;
        if let Some(p) = payload_pending {
            p.commit()?;
        }
        Ok(EncodeResult {
            counts,
            output: output.to_path_buf(),
            rejects: rejects_file,
            payload: opts.payload_output.clone(),
            key_check: meta.key_check,
            fingerprint: meta.fingerprint,
        })
    }
}

/// Refuse outputs that would overwrite the input (or each other), and an
/// extract or payload not named as a Parquet file: the usual slip is
/// `--output` given the input's name, which would replace the plaintext
/// file with its extract.
fn check_outputs(input: &Path, output: &Path, payload: Option<&Path>) -> Result<()> {
    let rejects = rejects_path(output);
    let mut outputs = vec![
        ("--output", output),
        ("the rejects file", rejects.as_path()),
    ];
    outputs.extend(payload.map(|p| ("--payload-output", p)));
    if let Some((what, o)) = crate::io::overwritten(&[input], &outputs) {
        return Err(Error::Usage(format!(
            "{what} {} is the input file: encoding would overwrite it; give the extract another name (say `{}`)",
            o.display(),
            input.with_extension("parquet").display()
        )));
    }
    let parquet =
        std::iter::once(("--output", output)).chain(payload.map(|p| ("--payload-output", p)));
    for (what, o) in parquet {
        let ext = o
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("parquet") | Some("pq")) {
            return Err(Error::Usage(format!(
                "{what} {} must be a Parquet file named .parquet",
                o.display()
            )));
        }
    }
    if let Some(p) = payload
        && crate::io::overwritten(&[output], &[("--payload-output", p)]).is_some()
    {
        return Err(Error::Usage(
            "--payload-output is the extract's own path: give the payload a name of its own".into(),
        ));
    }
    Ok(())
}

/// Above this many distinct values, a stratum may not have a distinct
/// value for more than half the rows (decisions §40).
const STRATUM_FEW_VALUES: usize = 50;

/// The distinct values of a stratum column being built, up to one past
/// [`STRATUM_MAX_VALUES`] (enough to tell that there are too many).
fn stratum_values(b: &StringBuilder) -> HashSet<Vec<u8>> {
    let (data, offsets) = (b.values_slice(), b.offsets_slice());
    let valid = |i: usize| {
        b.validity_slice()
            .is_none_or(|v| v[i / 8] >> (i % 8) & 1 == 1)
    };
    let mut out = HashSet::new();
    for (i, w) in offsets.windows(2).enumerate() {
        if valid(i) && w[1] > w[0] {
            out.insert(data[w[0] as usize..w[1] as usize].to_vec());
            if out.len() > STRATUM_MAX_VALUES {
                break;
            }
        }
    }
    out
}

impl Encoder {
    /// Fail when stratum `si`, with `values` distinct values so far (over
    /// `rows` encoded rows, once all are read), is not a coarse group.
    /// Strata are written to the extract in clear, for the bias report: a
    /// column with a value per person (an NHS number, a name, a full
    /// address) must never become one.
    fn check_coarse(
        &self,
        input: &Path,
        si: usize,
        values: usize,
        rows: Option<u64>,
    ) -> Result<()> {
        let many = values > STRATUM_MAX_VALUES
            || rows.is_some_and(|r| values > STRATUM_FEW_VALUES && values as u64 * 2 > r);
        if !many {
            return Ok(());
        }
        let st = &self.schema.strata[si];
        let from = match &st.kind {
            StratumKind::Value { column } => format!("column `{column}`"),
            StratumKind::Field { field } => format!("field `{field}`"),
            StratumKind::AgeBand { field, .. } => format!("field `{field}`"),
        };
        let count = match rows {
            Some(r) => format!("{values} distinct values in {r} rows"),
            None => format!("more than {STRATUM_MAX_VALUES} distinct values"),
        };
        Err(Error::input(
            input,
            format!(
                "stratum `{}` ({from}) has {count}: strata are written to the extract in clear for the bias report, so they must be coarse groups (at most {STRATUM_MAX_VALUES} values, and more than {STRATUM_FEW_VALUES} only where most rows share theirs); this looks like an identifier. Group the column's values before encoding, or leave the stratum out of the schema",
                st.name
            ),
        ))
    }
}

/// Rows ahead of the one being written whose entries are prefetched.
const WRITE_AHEAD: usize = 4;

/// Hint the CPU to load entry `e` of `t`: its bytes and its record.
#[inline(always)]
fn prefetch_entry(t: &ValueTable, e: u32, stride: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let at = e as usize * stride;
        if let Some(bytes) = t.data.get(at..at + stride) {
            for off in (0..stride).step_by(64).chain([stride - 1]) {
                // SAFETY: a prefetch is only a hint; the address is in a live slice.
                unsafe { _mm_prefetch(bytes[off..].as_ptr() as *const i8, _MM_HINT_T0) };
            }
        }
        if let Some(m) = t.entries.get(e as usize) {
            // SAFETY: as above.
            unsafe { _mm_prefetch(m as *const Entry as *const i8, _MM_HINT_T0) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (t, e, stride);
}

/// The entry behind slot `e` of field `fi`: its index, and its table (the
/// field's cache, or the slice's own table when `OWN` is set).
#[inline]
fn value_table(cache: &Cache, fi: usize, e: u32) -> (u32, &ValueTable) {
    if e & OWN != 0 {
        (e & !OWN, &cache.own[fi])
    } else {
        (e, &cache.values[fi].table)
    }
}

/// Record entry `e` of `t` (tagged with `tag`) as slice row `i`'s value of
/// field `fi`: its slot, or nothing when the value is missing, or the
/// row's reject.
#[allow(clippy::too_many_arguments)]
#[inline]
fn settle(
    sc: &mut Scratch,
    i: usize,
    fi: usize,
    n: usize,
    f: &super::schema::Field,
    t: &ValueTable,
    e: u32,
    tag: u32,
) {
    let entry = t.entries[e as usize];
    if entry.reject != NO_VALUE {
        sc.bad[i] = Some((f.column.clone(), t.rejects[entry.reject as usize].clone()));
    } else if entry.present {
        sc.slots[fi * n + i] = e | tag;
    }
}

/// The name a field's keys are derived under: its own, or for the two
/// `swap` fields one shared name (`first_name+last_name`), so their filters
/// share a hash space and the hub can compare them crossed.
fn key_name(schema: &Schema, f: &super::schema::Field) -> String {
    if schema.swap.contains(&f.name) {
        schema.swap.join("+")
    } else {
        f.name.clone()
    }
}

/// Set the `k` positions of `h` in a filter of `l` bits (`bytes`).
fn set_positions(bytes: &mut [u8], h: &Hashed, k: usize, l: u64) {
    match h {
        Hashed::Pair(h1, h2) if l.is_power_of_two() => {
            // (h1 + j·h2) mod l, stepped: l divides 2^64.
            let mut x = *h1;
            for _ in 0..k {
                set_bit(bytes, (x & (l - 1)) as usize);
                x = x.wrapping_add(*h2);
            }
        }
        _ => (0..k).for_each(|j| set_bit(bytes, h.index(j, l))),
    }
}

/// A balanced filter: `half` followed by its complement, bits moved by the
/// keyed permutation `perm` (twice `half`'s bits), so exactly half are set.
fn balanced(half: &[u8], perm: &[u32]) -> Vec<u8> {
    let n = half.len() * 8;
    let mut out = vec![0u8; half.len() * 2];
    for i in 0..n {
        let j = if crate::bloom::get_bit(half, i) {
            i
        } else {
            n + i
        };
        set_bit(&mut out, perm[j] as usize);
    }
    out
}

/// A 128-bit hash of a record id for duplicate detection (two SipHash-1-3
/// runs with different prefixes; a false duplicate needs a 2^-128 collision).
fn id_hash(id: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut a = std::collections::hash_map::DefaultHasher::new();
    (0u8, id).hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    (1u8, id).hash(&mut b);
    (a.finish() as u128) << 64 | b.finish() as u128
}

fn stratum_value(raw: &str) -> Option<String> {
    let t = raw.trim().to_lowercase();
    if DEFAULT_MISSING.contains(&t.as_str()) {
        None
    } else {
        Some(t)
    }
}

/// Age band label for a `YYYYMMDD` date at `reference` (`YYYY-MM-DD`).
pub fn age_band(date: &str, reference: &str, bounds: &[u32]) -> Option<String> {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y%m%d").ok()?;
    let r = chrono::NaiveDate::parse_from_str(reference, "%Y-%m-%d").ok()?;
    let age = r.years_since(d)?;
    let mut lo = 0;
    for &b in bounds {
        if age < b {
            return Some(format!("{lo}-{}", b - 1));
        }
        lo = b;
    }
    Some(format!("{lo}+"))
}

fn write_rejects(path: &Path, rejects: &[Reject]) -> Result<Pending> {
    let p = Pending::create(path)?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(p.file()?));
    let err = |e: csv::Error| Error::write(path, std::io::Error::other(e.to_string()));
    w.write_record(["row", "record_id", "column", "reason"])
        .map_err(err)?;
    for r in rejects {
        w.write_record([
            r.row.to_string().as_str(),
            &r.record_id,
            &r.column,
            &r.reason,
        ])
        .map_err(err)?;
    }
    w.flush().map_err(|e| Error::write(path, e))?;
    drop(w);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bands() {
        let b = [5, 11, 16, 18];
        assert_eq!(
            age_band("20200101", "2026-03-31", &b).as_deref(),
            Some("5-10")
        );
        assert_eq!(
            age_band("20260101", "2026-03-31", &b).as_deref(),
            Some("0-4")
        );
        assert_eq!(
            age_band("19800101", "2026-03-31", &b).as_deref(),
            Some("18+")
        );
        assert_eq!(age_band("20300101", "2026-03-31", &b), None);
    }

    /// The demo schema of social care (salted names, a fallback field,
    /// blocking keys, strata) over synthetic rows, as one CSV chunk.
    fn demo_chunk() -> (
        Encoder,
        Chunk,
        ColumnMap,
        Vec<std::result::Result<String, Reject>>,
    ) {
        let schema = Schema::from_toml(
            crate::synth::profile(0).schema,
            Path::new("social_care.toml"),
        )
        .unwrap();
        let enc = Encoder::new(schema, &Secret::from_bytes(b"bypass".to_vec()).unwrap()).unwrap();
        let s = crate::synth::generate(&crate::synth::Params {
            people: 600,
            agencies: 1,
            seed: 8,
            overlap: 1.0,
        });
        let d = tempfile::tempdir().unwrap();
        let path = &crate::synth::write(&s, d.path(), 8).unwrap()[0];
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(path)
            .unwrap();
        let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
        let mut rows = super::super::input::CsvRows::default();
        for r in rdr.byte_records() {
            rows.push(&r.unwrap());
        }
        // A row with fewer cells than the header.
        rows.push(&csv::ByteRecord::from(vec!["SCX1", "Ann"]));
        let chunk = Chunk::Csv(rows);
        let cols = enc.column_map(&header, path, &[]).unwrap();
        let mut seen = HashSet::new();
        let mut counts = Counts::default();
        let ids = enc.check_ids(&chunk, &cols, 1, &mut seen, &mut counts);
        (enc, chunk, cols, ids)
    }

    /// Everything a slice wrote, as bytes.
    fn slice_bytes(mut o: SliceOut) -> Vec<Vec<u8>> {
        let mut v = vec![o.batch.clk];
        v.push(format!("{:?}", o.batch.ids.finish()).into_bytes());
        for (b, valid) in o.batch.fields.into_iter().chain(o.batch.blocks) {
            v.push(b);
            v.push(valid.into_iter().map(u8::from).collect());
        }
        for mut st in o.batch.strata {
            v.push(format!("{:?}", st.finish()).into_bytes());
        }
        v.push(format!("{:?} {:?}", o.rejects, o.encoded_rows).into_bytes());
        v
    }

    #[test]
    fn bypassed_values_encode_as_cached_ones() {
        let (enc, chunk, cols, ids) = demo_chunk();
        let n = chunk.len();
        let all = |enc: &Encoder| {
            // Twice, so the second pass finds every value cached.
            let a = enc.encode_slice(&chunk, &cols, 0..n, &ids, 1);
            let b = enc.encode_slice(&chunk, &cols, 0..n, &ids, 1);
            (slice_bytes(a), slice_bytes(b))
        };
        let (cold, warm) = all(&enc);
        assert_eq!(cold, warm, "a warm cache changed the output");
        assert!(
            cold.last().unwrap().starts_with(b"[Reject"),
            "the short row is a reject"
        );
        // Every field of every thread's cache set to bypass: values are
        // encoded into the slice's own tables instead.
        for c in &enc.caches {
            let mut c = c.lock().unwrap();
            c.values.iter_mut().for_each(|v| {
                v.map.clear();
                v.table.clear();
                v.usage.bypass = u32::MAX;
            });
        }
        let (own, own2) = all(&enc);
        assert_eq!(own, cold, "bypassed values encode differently");
        assert_eq!(own2, cold);
        // Only the own tables were used.
        for c in &enc.caches {
            assert!(c.lock().unwrap().values.iter().all(|v| v.table.len() == 0));
        }
    }

    #[test]
    fn csv_rows_keep_short_rows_and_empty_cells() {
        let mut r = super::super::input::CsvRows::default();
        r.push(&csv::ByteRecord::from(vec!["a", "", "ccc"]));
        r.push(&csv::ByteRecord::from(vec!["d"]));
        r.push(&csv::ByteRecord::from(vec!["", "ee", "f", "g"]));
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(0, 0), Some(&b"a"[..]));
        assert_eq!(r.get(0, 1), Some(&b""[..]));
        assert_eq!(r.get(0, 2), Some(&b"ccc"[..]));
        assert_eq!(r.get(0, 3), None);
        assert_eq!(r.get(1, 0), Some(&b"d"[..]));
        assert_eq!(r.get(1, 1), None);
        assert_eq!(r.get(2, 0), Some(&b""[..]));
        assert_eq!(r.get(2, 1), Some(&b"ee"[..]));
        assert_eq!(r.get(2, 3), Some(&b"g"[..]));
        r.clear();
        assert!(r.is_empty());
    }

    #[test]
    fn rejects_path_replaces_parquet_suffix() {
        assert_eq!(
            rejects_path(Path::new("a/x.parquet")),
            PathBuf::from("a/x.rejects.csv")
        );
        assert_eq!(rejects_path(Path::new("x")), PathBuf::from("x.rejects.csv"));
    }
}
