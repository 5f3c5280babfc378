//! Scale-out: a link job split into work units that any scheduler can run.
//!
//! `link --plan DIR` loads the extracts, groups the blocking passes, fits
//! what can be fitted before comparison (u, m) and fixes the chunks; it
//! writes `plan.json` (extract paths and SHA-256, job settings, model, keep
//! rule, chunk ranges) and `groups.bin` (the grouped passes). Unit I
//! (`link --plan DIR --unit I`) compares the candidate pairs of chunk I and
//! writes `units/unit-I.parquet`: its kept pairs and, in the file metadata,
//! its tally. `link --merge DIR --out OUT` reads every unit, completes the
//! model from the summed tallies and writes the usual outputs. A unit is a
//! run of whole blocks of one pass, without the pairs an earlier pass holds
//! (`stream`), so the units partition the candidate pairs, and the merged
//! outputs equal a single run's byte for byte.
//! Hub side: never sees plaintext or the linkage key.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type};
use arrow_array::{ArrayRef, Float32Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use super::block::{Grouped, PassStats};
use super::config::JobConfig;
use super::link::Prepared;
use super::stream::{Kept, Pass, Tally};
use crate::error::{Error, Result};
use crate::io::Pending;

const PLAN: &str = "plan.json";
const GROUPS: &str = "groups.bin";
const GROUPS_MAGIC: &[u8; 8] = b"BLGRP\x002\n";
const TALLY_KEY: &str = "bloomlink.unit_tally";
/// A unit output's metadata key for the [`Plan::id`] it was run for.
const PLAN_KEY: &str = "bloomlink.unit_plan";

/// An input extract of the plan, pinned by its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanInput {
    pub path: PathBuf,
    pub sha256: String,
}

/// `plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub bloomlink_version: String,
    pub extracts: Vec<PlanInput>,
    pub config: JobConfig,
    pub dedup: bool,
    pub threshold: Option<f64>,
    pub method: String,
    pub lsh_positions: Vec<Vec<u32>>,
    pub passes: Vec<PassStats>,
    pub prepared: Prepared,
    /// SHA-256 of `plan.json` as written (not stored in it): `groups.bin`
    /// and every unit output carry it, so that files of an earlier plan
    /// made in the same folder are never taken for this one's.
    #[serde(skip)]
    pub id: String,
}

impl Plan {
    pub fn units(&self) -> usize {
        self.prepared.chunks.len()
    }
}

fn unit_path(dir: &Path, i: usize) -> PathBuf {
    dir.join("units").join(format!("unit-{i:06}.parquet"))
}

/// The id of a plan whose `plan.json` is `text` ([`Plan::id`]).
fn plan_id(text: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text))
}

/// Write `groups.bin` and `plan.json`, to be committed in that order:
/// `plan.json` last, so that a plan is only there once all of it is. A
/// failure leaves nothing new in `dir` (if the second commit fails, a
/// `groups.bin` whose id matches no plan); `link::plan` removes a folder
/// it made and left empty.
pub fn write_plan(dir: &Path, plan: &Plan, grouped: &Grouped) -> Result<Vec<Pending>> {
    let text = serde_json::to_string_pretty(plan).expect("json");
    let id = plan_id(text.as_bytes());
    let p = Pending::create(&dir.join(PLAN))?;
    {
        let mut f = p.file()?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::write(p.path(), e))?;
    }
    let g = Pending::create(&dir.join(GROUPS))?;
    {
        let path = g.path().to_path_buf();
        let mut w = BufWriter::new(g.file()?);
        let mut put = |b: &[u8]| w.write_all(b).map_err(|e| Error::write(&path, e));
        put(GROUPS_MAGIC)?;
        put(id.as_bytes())?;
        put(&(grouped.passes.len() as u64).to_le_bytes())?;
        for pass in &grouped.passes {
            for list in [&pass.members, &pass.starts] {
                put(&(list.len() as u64).to_le_bytes())?;
                for x in list.iter() {
                    put(&x.to_le_bytes())?;
                }
            }
            put(&(pass.pairs.len() as u64).to_le_bytes())?;
            for x in &pass.pairs {
                put(&x.to_le_bytes())?;
            }
        }
        w.flush().map_err(|e| Error::write(&path, e))?;
    }
    Ok(vec![g, p])
}

/// Read `plan.json`.
pub fn read_plan(dir: &Path) -> Result<Plan> {
    let path = dir.join(PLAN);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::read(&path, e))?;
    let mut plan: Plan = serde_json::from_str(&text)
        .map_err(|e| Error::input(&path, format!("not a bloomlink plan: {e}")))?;
    plan.id = plan_id(text.as_bytes());
    if plan.bloomlink_version != env!("CARGO_PKG_VERSION") {
        return Err(Error::input(
            &path,
            format!(
                "made by bloomlink {}; run every step of a plan with the same version ({})",
                plan.bloomlink_version,
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    Ok(plan)
}

/// Check that the extracts are the ones the plan was made from.
pub fn check_inputs(plan: &Plan) -> Result<Vec<PathBuf>> {
    for x in &plan.extracts {
        let h = crate::io::sha256_file(&x.path)?;
        if h != x.sha256 {
            return Err(Error::Incompatible(format!(
                "{} changed since the plan was made (SHA-256 {h}, plan has {}); make a new plan",
                x.path.display(),
                x.sha256
            )));
        }
    }
    Ok(plan.extracts.iter().map(|x| x.path.clone()).collect())
}

/// Read `groups.bin` back into passes (their stats come from the plan).
pub fn read_groups(dir: &Path, plan: &Plan, words: usize) -> Result<Grouped> {
    let path = dir.join(GROUPS);
    let mut r = BufReader::new(File::open(&path).map_err(|e| Error::read(&path, e))?);
    let bad = || Error::input(&path, "damaged groups file: make the plan again");
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| bad())?;
    if &magic != GROUPS_MAGIC {
        return Err(bad());
    }
    let mut id = vec![0u8; plan.id.len()];
    r.read_exact(&mut id).map_err(|_| bad())?;
    if id != plan.id.as_bytes() {
        return Err(Error::input(
            &path,
            "belongs to another plan than the plan.json beside it: make the plan again",
        ));
    }
    let u64_ = |r: &mut BufReader<File>| -> Result<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b).map_err(|_| bad())?;
        Ok(u64::from_le_bytes(b))
    };
    let n = u64_(&mut r)? as usize;
    if n != plan.passes.len() {
        return Err(bad());
    }
    let mut passes = Vec::with_capacity(n);
    for stats in &plan.passes {
        let mut lists: Vec<Vec<u32>> = Vec::new();
        for _ in 0..2 {
            let len = u64_(&mut r)? as usize;
            let mut bytes = vec![0u8; len.checked_mul(4).ok_or_else(bad)?];
            r.read_exact(&mut bytes).map_err(|_| bad())?;
            lists.push(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            );
        }
        let len = u64_(&mut r)? as usize;
        let mut bytes = vec![0u8; len.checked_mul(8).ok_or_else(bad)?];
        r.read_exact(&mut bytes).map_err(|_| bad())?;
        let pairs = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let starts = lists.pop().expect("starts");
        let members = lists.pop().expect("members");
        passes.push(Pass {
            stats: stats.clone(),
            members,
            starts,
            pairs,
        });
    }
    Ok(Grouped {
        owners: super::stream::Owners::new(&passes, &plan.lsh_positions, words),
        raw_pairs: passes.iter().map(|p| p.stats.pairs).sum(),
        passes,
        method: plan.method.clone(),
        lsh_positions: plan.lsh_positions.clone(),
    })
}

/// Write one unit's kept pairs and tally, marked with the plan's id; the
/// caller commits.
pub fn write_unit(
    dir: &Path,
    plan: &Plan,
    i: usize,
    kept: &Kept,
    tally: &Tally,
) -> Result<Pending> {
    let path = unit_path(dir, i);
    let a: UInt32Array = kept.pairs.iter().map(|&p| (p >> 32) as u32).collect();
    let b: UInt32Array = kept.pairs.iter().map(|&p| p as u32).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::UInt32, false),
        Field::new("b", DataType::UInt32, false),
        Field::new("dice", DataType::Float32, false),
        Field::new("raw_weight", DataType::Float32, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(a),
        Arc::new(b),
        Arc::new(Float32Array::from(kept.dice.clone())),
        Arc::new(Float32Array::from(kept.raw_weight.clone())),
    ];
    let batch = RecordBatch::try_new(schema, cols).map_err(|e| Error::parquet_write(&path, e))?;
    super::output::write_batch(
        &path,
        batch,
        vec![
            (
                TALLY_KEY.to_string(),
                serde_json::to_string(tally).expect("json"),
            ),
            (PLAN_KEY.to_string(), plan.id.clone()),
        ],
    )
}

/// Read every unit of a plan, in order: the kept pairs and the summed tally.
pub fn read_units(dir: &Path, plan: &Plan) -> Result<(Kept, Tally)> {
    let missing: Vec<usize> = (0..plan.units())
        .filter(|&i| !unit_path(dir, i).exists())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "{} of {} units have not run yet (units {}): run `bloomlink link --plan {} --unit I` for each",
            missing.len(),
            plan.units(),
            listed(&missing),
            dir.display()
        )));
    }
    let mut kept = Kept::default();
    let mut tally = Tally::empty();
    // Units run for an earlier plan made in this folder: their pairs are
    // not read, and they are named together at the end.
    let mut stale = Vec::new();
    for i in 0..plan.units() {
        let path = unit_path(dir, i);
        let unit = crate::io::guard_decoder(&path, || {
            let file = File::open(&path).map_err(|e| Error::read(&path, e))?;
            let b = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| Error::parquet_read(&path, e))?;
            let meta = |key: &str| {
                b.metadata()
                    .file_metadata()
                    .key_value_metadata()
                    .and_then(|kv| kv.iter().find(|e| e.key == key))
                    .and_then(|e| e.value.clone())
            };
            if meta(PLAN_KEY).as_deref() != Some(plan.id.as_str()) {
                return Ok(None);
            }
            let t: Tally = meta(TALLY_KEY)
                .and_then(|v| serde_json::from_str(&v).ok())
                .ok_or_else(|| Error::input(&path, "not a unit output: no tally"))?;
            let mut k = Kept::default();
            for batch in b.build().map_err(|e| Error::parquet_read(&path, e))? {
                let batch = batch.map_err(|e| Error::parquet_read(&path, e))?;
                let bad = || Error::input(&path, "not a unit output: bad columns");
                let a = batch
                    .column(0)
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(bad)?;
                let bb = batch
                    .column(1)
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(bad)?;
                let d = batch
                    .column(2)
                    .as_primitive_opt::<Float32Type>()
                    .ok_or_else(bad)?;
                let w = batch
                    .column(3)
                    .as_primitive_opt::<Float32Type>()
                    .ok_or_else(bad)?;
                for j in 0..batch.num_rows() {
                    k.pairs.push((a.value(j) as u64) << 32 | bb.value(j) as u64);
                    k.dice.push(d.value(j));
                    k.raw_weight.push(w.value(j));
                }
            }
            Ok(Some((k, t)))
        })?;
        match unit {
            Some((k, t)) => {
                kept.append(k);
                tally.add(&t);
            }
            None => stale.push(i),
        }
    }
    if !stale.is_empty() {
        return Err(Error::Usage(format!(
            "{} of {} units were run for an earlier plan made in {} (units {}): run `bloomlink link --plan {} --unit I` for each again",
            stale.len(),
            plan.units(),
            dir.display(),
            listed(&stale),
            dir.display()
        )));
    }
    kept.sort();
    Ok((kept, tally))
}

/// Up to ten unit numbers, then "…" if there are more.
fn listed(units: &[usize]) -> String {
    let list: Vec<String> = units.iter().take(10).map(|i| i.to_string()).collect();
    let more = if units.len() > 10 { ", …" } else { "" };
    format!("{}{more}", list.join(", "))
}
