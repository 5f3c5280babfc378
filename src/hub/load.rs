//! Loading extracts for linking: compatibility checks, then one set of
//! contiguous arenas over all agencies (global record index `g`).
//!
//! Checks run on metadata before any filter is read: every file must be a
//! bloomlink extract, agencies must be distinct, and schema fingerprints, key
//! checks and CLK sizes must agree. Hub side: never sees plaintext or keys.

use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;

use crate::bloom::popcount;
use crate::error::{Error, Result};
use crate::extract::Keys;
use crate::extract::{Counts, Extract, ExtractMeta, IdColumn, read_extract, read_meta};

/// A packed, nullable filter column with precomputed popcounts.
///
/// Filter `g` is `words` words at `g * stride + offset` of `data`. The CLK
/// has its own contiguous arena (stride = words), so all-pairs search
/// streams it; the field filters of a record sit side by side in one shared
/// arena (record-major), so comparing a candidate pair touches two regions of
/// memory instead of one per field.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub name: String,
    pub words: usize,
    pub stride: usize,
    pub offset: usize,
    pub data: Arc<Vec<u64>>,
    pub pop: Vec<u32>,
    pub valid: Vec<bool>,
    /// A keyed blocking key compared as evidence (docs/decisions.md §20):
    /// its level is exact agreement or none, never a Dice level.
    pub exact: bool,
    /// The field this one stands in for (the schema's `fallback_for`,
    /// docs/decisions.md §21): compared only where that one is present and
    /// not exactly equal.
    pub fallback_for: Option<usize>,
    /// Keyed variants of a date field's value, when the job compares them
    /// (docs/decisions.md §24): they split the date's partial agreement
    /// into "day and month swapped" and "year one off".
    pub date: Option<Arc<DateVariants>>,
}

/// The span of a record's field filters in the record-major arena:
/// record `g`'s run from `g * start.0 + start.1` to `g * end.0 + end.1`.
#[derive(Debug, Clone, Copy)]
pub struct FilterSpan<'a> {
    arena: &'a [u64],
    start: (usize, usize),
    end: (usize, usize),
}

impl<'a> FilterSpan<'a> {
    /// Record `g`'s field filters, side by side.
    #[inline]
    pub fn of(&self, g: usize) -> &'a [u64] {
        &self.arena[g * self.start.0 + self.start.1..g * self.end.0 + self.end.1]
    }
}

/// The level of a date field whose day and month are swapped (equal
/// `year + day_month` keys, not an exact date) when it has [`DateVariants`].
pub const DATE_SWAPPED: u8 = 2;
/// The level of a date field one year off (equal `month + day + even_year`
/// or `odd_year` keys, not an exact date): the years surely differ.
pub const DATE_YEAR_OFF: u8 = 3;
/// The level of a date field in the same year and month, another day
/// (equal `year + month` keys, not an exact date).
pub const DATE_SAME_MONTH: u8 = 4;
/// Dice cut-offs a job needs for date variants: exact, the three variant
/// levels, and a Dice level below them.
pub const DATE_MIN_CUTS: usize = 4;

/// Keyed variants of one date field (64 bits of each keyed blocking key;
/// 0 = missing), record-major: a record's keys sit side by side, so that
/// comparing a pair reads one line per record rather than one per key.
#[derive(Debug, Default)]
pub struct DateVariants {
    /// Each record's keys: `swapped`, then `year_off`, then `same_month`.
    keys: Vec<u64>,
    /// Where each kind's keys start in a record's, and (last) how many a
    /// record has. The kinds: `year + day_month` (equal for a date and its
    /// day/month swap); `month + day + even_year` and `… + odd_year` (one
    /// of them equal for two dates one year apart on the same day);
    /// `year + month` (equal for two days of one month).
    starts: [usize; 4],
}

impl DateVariants {
    /// Variants from each kind's key columns (one value per record).
    pub fn new(swapped: &[Vec<u64>], year_off: &[Vec<u64>], same_month: &[Vec<u64>]) -> Self {
        let columns: Vec<&Vec<u64>> = swapped.iter().chain(year_off).chain(same_month).collect();
        let n = columns.first().map_or(0, |c| c.len());
        let keys = (0..n)
            .flat_map(|g| columns.iter().map(move |c| c[g]))
            .collect();
        let (s, y) = (swapped.len(), year_off.len());
        DateVariants {
            keys,
            starts: [0, s, s + y, columns.len()],
        }
    }

    /// Record `g`'s keys.
    #[inline]
    pub fn of(&self, g: usize) -> &[u64] {
        let stride = self.starts[3];
        &self.keys[g * stride..(g + 1) * stride]
    }

    /// Whether a key of kind `kind` is present and equal for `a` and `b`.
    #[inline]
    fn any_equal(&self, kind: usize, a: usize, b: usize) -> bool {
        let (from, to) = (self.starts[kind], self.starts[kind + 1]);
        let (ka, kb) = (&self.of(a)[from..to], &self.of(b)[from..to]);
        ka.iter().zip(kb).any(|(&x, &y)| x != 0 && x == y)
    }

    /// Whether records `a` and `b` have the same date up to a day/month swap.
    #[inline]
    pub fn swapped(&self, a: usize, b: usize) -> bool {
        self.any_equal(0, a, b)
    }

    /// Whether records `a` and `b` have the same day and month and years at
    /// most one apart.
    #[inline]
    pub fn year_off(&self, a: usize, b: usize) -> bool {
        self.any_equal(1, a, b)
    }

    /// Whether records `a` and `b` have dates in the same month of one year.
    #[inline]
    pub fn same_month(&self, a: usize, b: usize) -> bool {
        self.any_equal(2, a, b)
    }
}

impl Filters {
    /// Whether the field speaks only where others are silent (a blocking
    /// key compared as evidence, or a fallback): it is null in most pairs,
    /// so it cannot identify a mixture and sessions that select its pairs
    /// by the fields it depends on leave it out.
    pub fn conditional(&self) -> bool {
        self.exact || self.fallback_for.is_some()
    }

    /// Filter `g`.
    #[inline]
    pub fn get(&self, g: usize) -> &[u64] {
        let s = g * self.stride + self.offset;
        &self.data[s..s + self.words]
    }
}

/// One agency's part of the dataset.
#[derive(Debug, Clone)]
pub struct Agency {
    pub name: String,
    pub path: PathBuf,
    pub meta: ExtractMeta,
    /// First global index of this agency's records.
    pub start: usize,
    pub len: usize,
}

/// A stratum column over all records (codes index `labels`).
#[derive(Debug, Clone)]
pub struct Stratum {
    pub name: String,
    pub labels: Vec<String>,
    pub codes: Vec<Option<u32>>,
}

/// All records of all extracts, indexed globally.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub agencies: Vec<Agency>,
    /// Agency index of each record. Nondecreasing: each extract's records
    /// are one range, extracts in order (blocks sorted by record index are
    /// therefore sorted by agency too).
    pub agency_of: Vec<u16>,
    pub ids: IdColumn,
    pub clk: Filters,
    pub fields: Vec<Filters>,
    /// Blocking-key columns present in every extract.
    pub blocks: Vec<(String, Keys)>,
    pub strata: Vec<Stratum>,
    pub fingerprint: String,
    pub key_check: String,
    pub schema_json: String,
    /// Field indices of the schema's `swap` pair (two fields hashed under
    /// one key, compared crossed as well as straight), if declared.
    pub swap: Option<(usize, usize)>,
    /// The schema's per-record salt, if it salts loaded fields.
    pub salt: Option<Salt>,
    /// Each record's fields' popcounts, record-major
    /// ([`Dataset::field_counts`]), built on first use from the fields'
    /// `pop` and `valid`: whatever changes those or adds a field resets it.
    pub field_counts: std::sync::OnceLock<Vec<u32>>,
}

/// In [`Dataset::field_counts`]: the field is missing.
pub const ABSENT: u32 = u32::MAX;

/// A per-record salt (such as the year of birth): salted fields' filters
/// can only agree when the two records' salts do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salt {
    /// The field the salt is taken from.
    pub source: usize,
    /// The fields hashed with the salt (never the source itself).
    pub salted: Vec<usize>,
    /// The salt is the year of a date field (which lets the hub estimate
    /// how often random records share it; docs/decisions.md §16).
    pub year_of_date: bool,
}

impl Salt {
    /// Whether records `a` and `b` surely have different salts: the source
    /// is missing on exactly one side (a missing source gives the empty
    /// salt, which no present value gives). Their salted filters then
    /// carry no evidence either way.
    #[inline]
    pub fn differs(&self, ds: &Dataset, a: usize, b: usize) -> bool {
        let present = |g: usize| ds.field_counts(g)[self.source] != ABSENT;
        present(a) != present(b)
    }

    /// Whether the source's level says the salts differ: a year of birth
    /// one off ([`DATE_YEAR_OFF`], only when the source has date variants).
    #[inline]
    pub fn differs_by_level(&self, fields: &[Filters], levels: &[u8]) -> bool {
        self.year_of_date
            && fields[self.source].date.is_some()
            && levels[self.source] == DATE_YEAR_OFF
    }
}

/// The schema's salt (from its JSON as written in the extract metadata),
/// with field indices into `fields`; `None` without a salt or when its
/// source field is not loaded.
pub fn salt_of(schema_json: &str, fields: &[Filters]) -> Option<Salt> {
    let schema: serde_json::Value = serde_json::from_str(schema_json).ok()?;
    let index = |n: &str| fields.iter().position(|f| f.name == n);
    let source = index(schema["salt"]["field"].as_str()?)?;
    let salted: Vec<usize> = match schema["salted"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|f| index(f.as_str()?))
            .filter(|&f| f != source)
            .collect(),
        _ => (0..fields.len()).filter(|&f| f != source).collect(),
    };
    let year_of_date = schema["salt"]["function"]["fn"] == "year"
        && schema["fields"]
            .as_array()
            .and_then(|fs| {
                fs.iter()
                    .find(|f| f["name"] == fields[source].name.as_str())
            })
            .is_some_and(|f| f["kind"] == "date");
    (!salted.is_empty()).then_some(Salt {
        source,
        salted,
        year_of_date,
    })
}

/// Blocking keys worth comparing as evidence: those built only from salted
/// fields (such as `names`, the soundex codes of a forename and a surname).
/// Their keyed values do not depend on the salt, so they still agree for
/// a person whose salts differ (a mistyped or missing year of birth),
/// where the salted filters say nothing (docs/decisions.md §20). Empty
/// when the schema salts nothing.
pub fn salt_free_keys(ds: &Dataset) -> Vec<String> {
    let Some(salt) = &ds.salt else {
        return Vec::new();
    };
    let salted: Vec<&str> = salt
        .salted
        .iter()
        .map(|&f| ds.fields[f].name.as_str())
        .collect();
    ds.blocks
        .iter()
        .map(|(name, _)| name)
        .filter(|name| {
            let parts = key_fields(&ds.schema_json, name);
            !parts.is_empty() && parts.iter().all(|p| salted.contains(&p.as_str()))
        })
        .cloned()
        .collect()
}

/// The kinds of keyed date variant (docs/decisions.md §24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Swapped,
    YearOff,
    SameMonth,
}

/// Which date variant a blocking key is, from its parts: `year + day_month`
/// of one date field is a swap key, `month + day + even_year` (or
/// `odd_year`) a year-off key, `year + month` a same-month key. `None` for
/// any other key.
fn date_variant(schema_json: &serde_json::Value, key: &str) -> Option<(String, Variant)> {
    let parts = key_parts(schema_json, key)?;
    let field = parts.first()?["field"].as_str()?;
    if parts.iter().any(|p| p["field"] != field) {
        return None;
    }
    let mut fns: Vec<&str> = parts
        .iter()
        .filter_map(|p| p["function"]["fn"].as_str())
        .collect();
    if fns.len() != parts.len() {
        return None;
    }
    fns.sort_unstable();
    match fns.as_slice() {
        ["day_month", "year"] => Some((field.to_string(), Variant::Swapped)),
        ["day", "even_year", "month"] | ["day", "month", "odd_year"] => {
            Some((field.to_string(), Variant::YearOff))
        }
        ["month", "year"] => Some((field.to_string(), Variant::SameMonth)),
        _ => None,
    }
}

/// Whether blocking key `key` is a keyed date variant (docs/decisions.md
/// §24). Such keys are comparison evidence: `blocking.passes = []` ("all")
/// leaves them out, as their blocks are large (all of a month's births);
/// a compound pass such as `names+dob_year_even` blocks on them.
pub fn is_date_variant(schema_json: &str, key: &str) -> bool {
    let schema: serde_json::Value = serde_json::from_str(schema_json).unwrap_or_default();
    date_variant(&schema, key).is_some()
}

/// `(field, the field it stands in for)` by index, from the schema JSON's
/// `fallback_for` (fields not loaded are skipped).
fn fallbacks_of(schema_json: &str, fields: &[Filters]) -> Vec<(usize, usize)> {
    let schema: serde_json::Value = serde_json::from_str(schema_json).unwrap_or_default();
    let index = |n: &str| fields.iter().position(|f| f.name == n);
    schema["fields"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| {
                    Some((
                        index(f["name"].as_str()?)?,
                        index(f["fallback_for"].as_str()?)?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The fields a blocking key is built from, by name (from the schema JSON
/// in the extract metadata).
pub fn key_fields(schema_json: &str, key: &str) -> Vec<String> {
    let schema: serde_json::Value = serde_json::from_str(schema_json).unwrap_or_default();
    key_parts(&schema, key)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["field"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The parts (`{field, function}`) of blocking key `key` in the schema JSON.
fn key_parts<'a>(schema: &'a serde_json::Value, key: &str) -> Option<&'a Vec<serde_json::Value>> {
    schema["blocking"]
        .as_array()?
        .iter()
        .find(|x| x["name"] == key)?["parts"]
        .as_array()
}

impl Dataset {
    /// A dataset of CLKs alone: `words` words per record side by side in
    /// `clks`, the agency of each record in `agency_of` (nondecreasing), no
    /// fields, keys or ids. For benchmarks and tests of blocking and of the
    /// Dice kernels.
    pub fn of_clks(words: usize, clks: Vec<u64>, agency_of: Vec<u16>) -> Dataset {
        assert_eq!(clks.len(), words * agency_of.len(), "one CLK per record");
        assert!(agency_of.is_sorted(), "records ordered by agency");
        let n = agency_of.len();
        let mut clk = Filters {
            name: "clk".into(),
            words,
            stride: words,
            data: Arc::new(clks),
            valid: vec![true; n],
            ..Default::default()
        };
        clk.pop = pops(&clk, n);
        Dataset {
            agencies: Vec::new(),
            agency_of,
            ids: IdColumn::default(),
            clk,
            fields: Vec::new(),
            blocks: Vec::new(),
            strata: Vec::new(),
            fingerprint: String::new(),
            key_check: String::new(),
            schema_json: String::new(),
            swap: None,
            salt: None,
            field_counts: Default::default(),
        }
    }

    /// Record `g`'s fields' popcounts, one per field in order ([`ABSENT`]
    /// where the field is missing; of a key compared as evidence only the
    /// presence counts).
    /// One row per record, so that comparing a pair reads one line per
    /// record for every field's presence and count rather than two per
    /// field (docs/decisions.md §27).
    #[inline]
    pub fn field_counts(&self, g: usize) -> &[u32] {
        let nf = self.fields.len();
        let all = self.field_counts.get_or_init(|| {
            let mut c = vec![ABSENT; self.len() * nf];
            for (fi, f) in self.fields.iter().enumerate() {
                for (g, row) in c.chunks_exact_mut(nf.max(1)).enumerate() {
                    if f.valid[g] {
                        row[fi] = f.pop[g];
                    }
                }
            }
            c
        });
        &all[g * nf..(g + 1) * nf]
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.agency_of.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.agency_of.is_empty()
    }

    /// All field filters of record `g`, side by side (the record-major
    /// arena; blocking keys compared as evidence have their own).
    pub fn field_filters(&self, g: usize) -> &[u64] {
        self.filter_span().map_or(&[], |s| s.of(g))
    }

    /// Where each record's field filters lie ([`Dataset::field_filters`]),
    /// worked out once for callers that ask for many records; `None`
    /// without field filters.
    pub fn filter_span(&self) -> Option<FilterSpan<'_>> {
        match (
            self.fields.first(),
            self.fields.iter().rev().find(|f| !f.exact),
        ) {
            (Some(first), Some(last)) => Some(FilterSpan {
                arena: &first.data,
                start: (first.stride, first.offset),
                end: (last.stride, last.offset + last.words),
            }),
            _ => None,
        }
    }

    /// Compare the blocking keys `keys` as evidence: each becomes a field
    /// named `bk_KEY` at the end of `fields` whose level is exact agreement
    /// or none (docs/decisions.md §20). Unknown key names are errors.
    pub fn compare_keys(&mut self, keys: &[String]) -> Result<()> {
        for key in keys {
            let Some((_, values)) = self.blocks.iter().find(|(n, _)| n == key) else {
                let known: Vec<&str> = self.blocks.iter().map(|(n, _)| n.as_str()).collect();
                return Err(Error::Usage(format!(
                    "scoring.key_evidence names blocking key `{key}`, which the extracts do not have (they have: {})",
                    known.join(", ")
                )));
            };
            let mut data = Vec::with_capacity(values.len() * 2);
            let mut valid = Vec::with_capacity(values.len());
            for v in values.iter() {
                let k = v.unwrap_or(0);
                data.extend([k as u64, (k >> 64) as u64]);
                valid.push(v.is_some());
            }
            let mut f = Filters {
                name: format!("bk_{key}"),
                words: 2,
                stride: 2,
                offset: 0,
                data: Arc::new(data),
                pop: Vec::new(),
                valid,
                exact: true,
                fallback_for: None,
                date: None,
            };
            f.pop = pops(&f, self.len());
            self.fields.push(f);
        }
        self.field_counts = Default::default();
        Ok(())
    }

    /// Attach the extracts' keyed date variants (docs/decisions.md §24) to
    /// their date fields, which then compare at finer levels: exact, day and
    /// month swapped ([`DATE_SWAPPED`]), a year one off ([`DATE_YEAR_OFF`]),
    /// another day of the same month ([`DATE_SAME_MONTH`]), then Dice.
    /// Returns the date fields given variants, with their keys.
    pub fn compare_date_variants(&mut self) -> Vec<String> {
        let schema: serde_json::Value = serde_json::from_str(&self.schema_json).unwrap_or_default();
        let is_date = |field: &str| {
            schema["fields"]
                .as_array()
                .is_some_and(|fs| fs.iter().any(|f| f["name"] == field && f["kind"] == "date"))
        };
        // (field, its variants' key columns by kind, the keys they come from)
        type Kinds = [Vec<Vec<u64>>; 3];
        let mut found: Vec<(usize, Kinds, Vec<String>)> = Vec::new();
        for (name, values) in &self.blocks {
            let Some((field, kind)) = date_variant(&schema, name).filter(|(f, _)| is_date(f))
            else {
                continue;
            };
            let Some(fi) = self.fields.iter().position(|f| f.name == field && !f.exact) else {
                continue;
            };
            let slot = found
                .iter()
                .position(|(f, ..)| *f == fi)
                .unwrap_or_else(|| {
                    found.push((fi, Kinds::default(), Vec::new()));
                    found.len() - 1
                });
            // 64 bits of each 128-bit keyed value; 0 marks a missing one.
            let keys: Vec<u64> = values
                .iter()
                .map(|v| v.map_or(0, |k| ((k as u64) ^ ((k >> 64) as u64)).max(1)))
                .collect();
            let (_, kinds, names) = &mut found[slot];
            names.push(name.clone());
            let k = match kind {
                Variant::Swapped => 0,
                Variant::YearOff => 1,
                Variant::SameMonth => 2,
            };
            kinds[k].push(keys);
        }
        found
            .into_iter()
            .map(|(fi, [swapped, year_off, same_month], names)| {
                let name = format!("{} ({})", self.fields[fi].name, names.join(", "));
                let dv = DateVariants::new(&swapped, &year_off, &same_month);
                self.fields[fi].date = Some(Arc::new(dv));
                name
            })
            .collect()
    }

    /// Encode-time counts per agency.
    pub fn counts(&self) -> Vec<&Counts> {
        self.agencies.iter().map(|a| &a.meta.counts).collect()
    }
}

/// Check that extracts can be linked together, from metadata alone.
pub fn check_compatible(paths: &[PathBuf]) -> Result<Vec<(ExtractMeta, usize)>> {
    if paths.is_empty() {
        return Err(Error::Usage("give at least one --extract".into()));
    }
    let metas: Vec<(ExtractMeta, usize)> =
        paths.iter().map(|p| read_meta(p)).collect::<Result<_>>()?;
    let (first, _) = &metas[0];
    for (i, (m, _)) in metas.iter().enumerate().skip(1) {
        let (a, b) = (paths[0].display(), paths[i].display());
        if let Some(j) = metas[..i].iter().position(|(x, _)| x.agency == m.agency) {
            return Err(Error::Incompatible(format!(
                "{} and {} both come from agency `{}`; each agency may appear once (use --dedup with a single extract to deduplicate)",
                paths[j].display(),
                b,
                m.agency
            )));
        }
        if m.fingerprint != first.fingerprint {
            return Err(Error::Incompatible(format!(
                "{a} and {b} were encoded with different schemas (fingerprints {} and {}); every agency must use the same schema file",
                &first.fingerprint[..16],
                &m.fingerprint[..16]
            )));
        }
        if m.key_check != first.key_check {
            return Err(Error::Incompatible(format!(
                "{a} and {b} were encoded with different secrets (key checks {} and {}); every agency must use the same linkage key",
                first.key_check, m.key_check
            )));
        }
        if m.schema.clk_bits != first.schema.clk_bits {
            return Err(Error::Incompatible(format!(
                "{a} has {}-bit CLKs but {b} has {}-bit CLKs",
                first.schema.clk_bits, m.schema.clk_bits
            )));
        }
    }
    Ok(metas)
}

fn pops(f: &Filters, n: usize) -> Vec<u32> {
    (0..n).into_par_iter().map(|g| popcount(f.get(g))).collect()
}

/// Load extracts after checking them; agencies keep the order given.
pub fn load(paths: &[PathBuf]) -> Result<Dataset> {
    check_compatible(paths)?;
    // One extract per thread (decoding a million records' Parquet pages
    // took 3 s on one core); the first error in the order given wins.
    let extracts: Vec<Extract> = paths
        .par_iter()
        .map(|p| read_extract(p))
        .collect::<Result<_>>()?;
    for (p, e) in paths.iter().zip(&extracts) {
        if e.len == 0 {
            tracing::warn!(
                "{} (agency `{}`) holds no records: none of its agency's records can link; was its input empty?",
                p.display(),
                e.meta.agency
            );
        }
    }
    assemble(extracts)
}

/// The field indices of the schema's `swap` pair, when it names two loaded
/// fields.
fn swap_fields(swap: &[String], fields: &[Filters]) -> Option<(usize, usize)> {
    let index = |n: &String| fields.iter().position(|f| &f.name == n);
    match swap {
        [a, b] => Some((index(a)?, index(b)?)),
        _ => None,
    }
}

fn assemble(extracts: Vec<Extract>) -> Result<Dataset> {
    if extracts.len() > u16::MAX as usize {
        return Err(Error::Usage("too many extracts".into()));
    }
    let first = &extracts[0];
    let fingerprint = first.meta.fingerprint.clone();
    let key_check = first.meta.key_check.clone();
    let schema_json = first.meta.schema_json.clone();
    let swap = first.meta.schema.swap.clone();
    let block_names: Vec<String> = first.blocks.iter().map(|b| b.name.clone()).collect();
    let strata_names: Vec<String> = first.strata.iter().map(|s| s.name.clone()).collect();
    let total: usize = extracts.iter().map(|e| e.len).sum();
    let field_stride: usize = first.fields.iter().map(|f| f.words).sum();
    if total >= u32::MAX as usize {
        return Err(Error::Usage(
            "more than 4 billion records in one job".into(),
        ));
    }
    let mut ds = Dataset {
        agencies: Vec::new(),
        agency_of: Vec::with_capacity(total),
        ids: IdColumn::default(),
        clk: Filters {
            name: "clk".into(),
            words: first.clk.words,
            stride: first.clk.words,
            ..Default::default()
        },
        fields: first
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| Filters {
                name: f.name.clone(),
                words: f.words,
                stride: field_stride,
                offset: i * f.words,
                ..Default::default()
            })
            .collect(),
        blocks: block_names
            .iter()
            .map(|n| (n.clone(), Keys::with_capacity(total)))
            .collect(),
        strata: strata_names
            .iter()
            .map(|n| Stratum {
                name: n.clone(),
                labels: Vec::new(),
                codes: Vec::new(),
            })
            .collect(),
        swap: None,
        salt: None,
        field_counts: Default::default(),
        fingerprint,
        key_check,
        schema_json,
    };
    ds.swap = swap_fields(&swap, &ds.fields);
    let fallbacks = fallbacks_of(&ds.schema_json, &ds.fields);
    for (f, p) in fallbacks {
        ds.fields[f].fallback_for = Some(p);
    }
    ds.salt = salt_of(&ds.schema_json, &ds.fields);
    let mut clk_data: Vec<u64> = Vec::with_capacity(total * ds.clk.words);
    let mut field_data: Vec<u64> = Vec::with_capacity(total * field_stride);
    for (ai, mut e) in extracts.into_iter().enumerate() {
        let start = ds.agency_of.len();
        ds.agency_of.extend(std::iter::repeat_n(ai as u16, e.len));
        let mut nhs = 0u64;
        for i in 0..e.len {
            let id = e.ids.get(i);
            nhs += u64::from(crate::extract::nhs_number_like(id));
            ds.ids.push(id);
        }
        // Record ids are kept in clear and written to every output: never
        // NHS numbers, whatever made the extract.
        if crate::extract::mostly_nhs_numbers(e.len as u64, nhs) {
            return Err(Error::input(
                &e.path,
                format!(
                    "record ids look like NHS numbers ({nhs} of {} have a valid NHS check digit): the hub must never receive them; the agency should re-encode with its own row reference as the record id",
                    e.len
                ),
            ));
        }
        clk_data.append(&mut e.clk.data);
        ds.clk.valid.append(&mut e.clk.valid);
        // Field filters of one record side by side (record-major).
        let at = field_data.len();
        field_data.resize(at + e.len * field_stride, 0);
        if field_stride > 0 {
            field_data[at..]
                .par_chunks_mut(field_stride)
                .enumerate()
                .for_each(|(i, dst)| {
                    let mut w = 0;
                    for src in &e.fields {
                        dst[w..w + src.words].copy_from_slice(src.get(i));
                        w += src.words;
                    }
                });
        }
        for (dst, src) in ds.fields.iter_mut().zip(e.fields.iter_mut()) {
            dst.valid.append(&mut src.valid);
            src.data = Vec::new();
        }
        for ((_, dst), src) in ds.blocks.iter_mut().zip(e.blocks.iter_mut()) {
            dst.append(&mut src.keys);
        }
        for (dst, src) in ds.strata.iter_mut().zip(e.strata.iter()) {
            // Kept in clear and printed in the report: never more than
            // coarse groups, whatever made the extract.
            if src.labels.len() > crate::extract::STRATUM_MAX_VALUES {
                return Err(Error::input(
                    &e.path,
                    format!(
                        "stratum `{}` has {} distinct values: strata are coarse groups of at most {}, and one with a value per person would spread identifiers through the report; re-encode the extract with a coarse stratum",
                        dst.name,
                        src.labels.len(),
                        crate::extract::STRATUM_MAX_VALUES
                    ),
                ));
            }
            // Re-code labels into the dataset-wide dictionary.
            let map: Vec<u32> = src
                .labels
                .iter()
                .map(|l| match dst.labels.iter().position(|x| x == l) {
                    Some(p) => p as u32,
                    None => {
                        dst.labels.push(l.clone());
                        (dst.labels.len() - 1) as u32
                    }
                })
                .collect();
            dst.codes
                .extend(src.codes.iter().map(|c| c.map(|c| map[c as usize])));
        }
        ds.agencies.push(Agency {
            name: e.meta.agency.clone(),
            path: e.path.clone(),
            meta: e.meta,
            start,
            len: e.len,
        });
    }
    let n = ds.agency_of.len();
    ds.clk.data = Arc::new(clk_data);
    ds.clk.pop = pops(&ds.clk, n);
    let field_data = Arc::new(field_data);
    for f in &mut ds.fields {
        f.data = field_data.clone();
    }
    let field_pops: Vec<Vec<u32>> = ds.fields.par_iter().map(|f| pops(f, n)).collect();
    for (f, p) in ds.fields.iter_mut().zip(field_pops) {
        f.pop = p;
    }
    Ok(ds)
}
