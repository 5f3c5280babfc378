//! What a run leaves for the next refresh (`refresh-state.parquet`), and the
//! test of whether a refresh can be incremental.
//!
//! The state holds, per record, `agency, record_id` and a 64-bit
//! fingerprint of its encodings (CLK, field filters, blocking keys), and in
//! the file metadata the fitted model, the LSH band positions and the job
//! settings. A refresh whose schema and settings match compares only pairs
//! that hold a new or changed record and carries the scored pairs of
//! unchanged records over from the previous `pairs.parquet` (those the
//! job's own passes hold: docs/decisions.md §68).
//! Hub side: never sees plaintext; a fingerprint is a hash of filters the
//! hub already holds.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::block::{pack, uses_all_pairs};
use super::config::{JobConfig, ScoringMode};
use super::load::Dataset;
use super::score::Model;
use crate::error::{Error, Result};
use crate::extract::META_REFRESH_STATE;
use crate::io::Pending;

/// File name of the state in a run's output folder.
pub const FILE: &str = "refresh-state.parquet";
const VERSION: u32 = 1;

/// Settings and fitted parameters a refresh must share with its previous run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateMeta {
    pub version: u32,
    pub schema_fingerprint: String,
    pub dedup: bool,
    pub mode: ScoringMode,
    pub threshold: f64,
    /// The job's blocking and scoring sections, as JSON.
    pub blocking: serde_json::Value,
    pub scoring: serde_json::Value,
    pub pairs_min_probability: f64,
    /// The run compared all pairs (nearest neighbours), which a refresh cannot extend.
    pub all_pairs: bool,
    pub lsh_positions: Vec<Vec<u32>>,
    pub model: Model,
}

impl Prior {
    /// The previous fingerprint of a record, if the previous run had it.
    pub fn fingerprint(&self, agency: &str, record_id: &str) -> Option<u64> {
        self.fingerprints.get(agency)?.get(record_id).copied()
    }

    /// Records the previous run had.
    pub fn records(&self) -> u64 {
        self.fingerprints.values().map(|m| m.len() as u64).sum()
    }
}

impl StateMeta {
    pub fn new(run: &super::link::LinkRun) -> Self {
        StateMeta {
            version: VERSION,
            schema_fingerprint: run.ds.fingerprint.clone(),
            dedup: run.dedup,
            mode: run.mode,
            threshold: run.threshold,
            blocking: serde_json::to_value(&run.config.blocking).expect("json"),
            scoring: serde_json::to_value(&run.config.scoring).expect("json"),
            pairs_min_probability: run.config.output.pairs_min_probability,
            all_pairs: run.candidates.method.contains("all pairs"),
            lsh_positions: run.candidates.lsh_positions.clone(),
            model: run.model.clone(),
        }
    }
}

/// A previous run a refresh can extend.
pub struct Prior {
    pub meta: StateMeta,
    /// Fingerprint per agency, then per record id, of the previous run
    /// (nested so that lookups borrow `&str` without allocating).
    pub fingerprints: HashMap<String, HashMap<String, u64>>,
}

#[inline]
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[inline]
fn mix(h: u64, x: u64) -> u64 {
    fmix(h.rotate_left(23) ^ x.wrapping_add(0x9e37_79b9_7f4a_7c15))
}

/// Fingerprint of each record's encodings (stable across runs and machines).
pub fn fingerprints(ds: &Dataset) -> Vec<u64> {
    (0..ds.len())
        .into_par_iter()
        .map(|g| {
            let mut h = 0x626c_6f6f_6d6c_696e;
            for &w in ds.clk.get(g) {
                h = mix(h, w);
            }
            for f in &ds.fields {
                h = mix(h, f.valid[g] as u64);
                if f.valid[g] {
                    for &w in f.get(g) {
                        h = mix(h, w);
                    }
                }
            }
            for (_, keys) in &ds.blocks {
                match keys.get(g) {
                    Some(k) => {
                        h = mix(h, 1);
                        h = mix(h, k as u64);
                        h = mix(h, (k >> 64) as u64);
                    }
                    None => h = mix(h, 0),
                }
            }
            h
        })
        .collect()
}

/// Write the state of a finished run.
pub fn write(path: &Path, ds: &Dataset, meta: &StateMeta) -> Result<Pending> {
    let fp = fingerprints(ds);
    let n = ds.len();
    let mut ag = StringBuilder::with_capacity(n, n * 8);
    let mut id = StringBuilder::with_capacity(n, n * 12);
    let mut f = UInt64Builder::with_capacity(n);
    for (g, &x) in fp.iter().enumerate() {
        ag.append_value(&ds.agencies[ds.agency_of[g] as usize].name);
        id.append_value(ds.ids.get(g));
        f.append_value(x);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("agency", DataType::Utf8, false),
        Field::new("record_id", DataType::Utf8, false),
        Field::new("fingerprint", DataType::UInt64, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ag.finish()),
        Arc::new(id.finish()),
        Arc::new(f.finish()),
    ];
    let batch = RecordBatch::try_new(schema, cols).map_err(|e| Error::parquet_write(path, e))?;
    super::output::write_batch(
        path,
        batch,
        vec![(
            META_REFRESH_STATE.to_string(),
            serde_json::to_string(meta).expect("json"),
        )],
    )
}

/// Read a previous run's settings and model only (what `--model` needs),
/// not its records; `Ok(None)` when it has no state (older runs).
pub fn read_meta(dir: &Path) -> Result<Option<StateMeta>> {
    match open(dir)? {
        Some((path, b)) => meta_of(&path, &b).map(Some),
        None => Ok(None),
    }
}

/// The state file of run folder `dir` opened for reading, with its path;
/// `None` when there is none.
fn open(dir: &Path) -> Result<Option<(std::path::PathBuf, ParquetRecordBatchReaderBuilder<File>)>> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(None);
    }
    let file = File::open(&path).map_err(|e| Error::read(&path, e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::parquet_read(&path, e))?;
    Ok(Some((path, b)))
}

/// The state's settings and model, from its file metadata.
fn meta_of(path: &Path, b: &ParquetRecordBatchReaderBuilder<File>) -> Result<StateMeta> {
    let meta = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == META_REFRESH_STATE))
        .and_then(|e| e.value.clone())
        .ok_or_else(|| {
            Error::input(
                path,
                format!("not a refresh state: no `{META_REFRESH_STATE}`"),
            )
        })?;
    serde_json::from_str(&meta)
        .map_err(|e| Error::input(path, format!("unreadable `{META_REFRESH_STATE}`: {e}")))
}

/// Read a previous run's state; `Ok(None)` when it has none (older runs).
pub fn read(dir: &Path) -> Result<Option<Prior>> {
    let Some((path, b)) = open(dir)? else {
        return Ok(None);
    };
    let meta = meta_of(&path, &b)?;
    let mut fingerprints: HashMap<String, HashMap<String, u64>> = HashMap::new();
    for batch in b.build().map_err(|e| Error::parquet_read(&path, e))? {
        let batch = batch.map_err(|e| Error::parquet_read(&path, e))?;
        let bad = |c: &str| Error::input(&path, format!("not a refresh state: bad column `{c}`"));
        let a = batch
            .column_by_name("agency")
            .ok_or_else(|| bad("agency"))?;
        let r = batch
            .column_by_name("record_id")
            .ok_or_else(|| bad("record_id"))?;
        let f = batch
            .column_by_name("fingerprint")
            .ok_or_else(|| bad("fingerprint"))?;
        let (a, r, f) = (
            a.as_string_opt::<i32>().ok_or_else(|| bad("agency"))?,
            r.as_string_opt::<i32>().ok_or_else(|| bad("record_id"))?,
            f.as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| bad("fingerprint"))?,
        );
        for i in 0..batch.num_rows() {
            fingerprints
                .entry(a.value(i).to_string())
                .or_default()
                .insert(r.value(i).to_string(), f.value(i));
        }
    }
    Ok(Some(Prior { meta, fingerprints }))
}

/// Why a refresh against `prior` cannot be incremental (`None`: it can).
pub fn why_not_incremental(
    prior: &Prior,
    ds: &Dataset,
    cfg: &JobConfig,
    mode: ScoringMode,
    threshold: f64,
    dedup: bool,
) -> Option<String> {
    let m = &prior.meta;
    if m.version != VERSION {
        return Some(format!("its state is version {}, not {VERSION}", m.version));
    }
    if m.schema_fingerprint != ds.fingerprint {
        return Some("the extracts' schema differs from the previous run's".into());
    }
    if m.dedup != dedup || m.mode != mode {
        return Some("the scoring mode or deduplication setting changed".into());
    }
    if m.blocking != serde_json::to_value(&cfg.blocking).expect("json")
        || m.scoring != serde_json::to_value(&cfg.scoring).expect("json")
    {
        return Some("the job's blocking or scoring settings changed".into());
    }
    if m.all_pairs || uses_all_pairs(ds, &cfg.blocking, dedup) {
        return Some(
            "the job compares all pairs (small jobs, or blocking.method = \"all\"), whose nearest-neighbour lists change as records arrive".into(),
        );
    }
    // Carried pairs are those the previous run wrote; every pair that could
    // link now must be among them.
    let floor = match mode {
        ScoringMode::Probabilistic => m.pairs_min_probability,
        ScoringMode::Dice => m.threshold * 0.75,
    };
    if threshold < floor {
        return Some(format!(
            "the threshold {threshold} is below the lowest score the previous run kept ({floor})"
        ));
    }
    // Pairs between the two floors were never written, so never carried.
    if mode == ScoringMode::Probabilistic
        && cfg.output.pairs_min_probability < m.pairs_min_probability
    {
        return Some(format!(
            "output.pairs_min_probability {} is below the previous run's ({}), whose pairs between the two were not kept",
            cfg.output.pairs_min_probability, m.pairs_min_probability
        ));
    }
    None
}

/// The previous run's scored pairs (its likely matches: all it wrote to
/// `pairs.parquet`) between records that are unchanged now.
pub fn carried_pairs(
    dir: &Path,
    changed: &[bool],
    index: &HashMap<(&str, &str), u32>,
) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let record = |a: &str, r: &str| index.get(&(a, r)).copied();
    super::output::each_pair(&dir.join("pairs.parquet"), record, None, |a, b, _| {
        if !changed[a as usize] && !changed[b as usize] {
            out.push(pack(a, b));
        }
    })?;
    Ok(out)
}
