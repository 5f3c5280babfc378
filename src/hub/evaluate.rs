//! Precision, recall and F1 of a linkage against a truth file.
//!
//! Predicted pairs are all pairs of records sharing an entity id (records of
//! one agency count only when the linkage deduplicated). Truth comes as
//! `record_id_a,record_id_b` (two agencies: a is the first agency in
//! links.parquet, b the second) or `agency,record_id,entity` (any number of
//! agencies). True pairs whose records never reached the hub (rejected at
//! encode) count as missed. Hub side: record ids only.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Evaluation figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub predicted_pairs: u64,
    pub true_pairs: u64,
}

impl Evaluation {
    /// Figures from counts.
    pub fn from_counts(tp: u64, predicted: u64, truth: u64) -> Self {
        let precision = if predicted > 0 {
            tp as f64 / predicted as f64
        } else {
            0.0
        };
        let recall = if truth > 0 {
            tp as f64 / truth as f64
        } else {
            0.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Evaluation {
            true_positives: tp,
            false_positives: predicted - tp,
            false_negatives: truth - tp,
            precision,
            recall,
            f1,
            predicted_pairs: predicted,
            true_pairs: truth,
        }
    }
}

/// One row of links.parquet.
#[derive(Debug, Clone)]
pub struct LinkRow {
    pub agency: String,
    pub record_id: String,
    pub entity_id: String,
}

/// Read links.parquet and whether it was made with deduplication.
pub fn read_links(path: &Path) -> Result<(Vec<LinkRow>, bool)> {
    let file = File::open(path).map_err(|e| Error::read(path, e))?;
    let b =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet_read(path, e))?;
    let dedup = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| {
            kv.iter()
                .find(|e| e.key == "bloomlink.dedup")
                .and_then(|e| e.value.clone())
        })
        .as_deref()
        == Some("true");
    let mut rows = Vec::new();
    for batch in b.build().map_err(|e| Error::parquet_read(path, e))? {
        let batch = batch.map_err(|e| Error::parquet_read(path, e))?;
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .filter(|c| c.data_type() == &arrow_schema::DataType::Utf8)
                .ok_or_else(|| {
                    Error::input(path, format!("not a links file: no text column `{n}`"))
                })
        };
        let (a, r, e) = (col("agency")?, col("record_id")?, col("entity_id")?);
        let (a, r, e) = (
            a.as_string::<i32>(),
            r.as_string::<i32>(),
            e.as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            rows.push(LinkRow {
                agency: a.value(i).to_string(),
                record_id: r.value(i).to_string(),
                entity_id: e.value(i).to_string(),
            });
        }
    }
    Ok((rows, dedup))
}

/// Evaluate links against a truth CSV.
pub fn evaluate(rows: &[LinkRow], dedup: bool, truth: &Path) -> Result<Evaluation> {
    // Record index by (agency, id); agencies in order of first appearance.
    let mut agencies: Vec<&str> = Vec::new();
    let mut index: HashMap<(&str, &str), u32> = HashMap::new();
    for r in rows {
        if !agencies.contains(&r.agency.as_str()) {
            agencies.push(&r.agency);
        }
        let n = index.len() as u32;
        index.entry((&r.agency, &r.record_id)).or_insert(n);
    }
    let mut unknown: HashMap<(String, String), u32> = HashMap::new();
    let mut id_of = |a: &str, r: &str, next: u32| -> u32 {
        match index.get(&(a, r)) {
            Some(&i) => i,
            None => {
                let n = next + unknown.len() as u32;
                *unknown.entry((a.to_string(), r.to_string())).or_insert(n)
            }
        }
    };
    let base = index.len() as u32;
    let key = |a: u32, b: u32| if a < b { (a, b) } else { (b, a) };
    // Predicted pairs.
    let mut by_entity: HashMap<&str, Vec<(u32, &str)>> = HashMap::new();
    for r in rows {
        by_entity
            .entry(&r.entity_id)
            .or_default()
            .push((index[&(r.agency.as_str(), r.record_id.as_str())], &r.agency));
    }
    let mut predicted: HashSet<(u32, u32)> = HashSet::new();
    for members in by_entity.values() {
        for (i, (a, aa)) in members.iter().enumerate() {
            for (b, ab) in &members[i + 1..] {
                if dedup || aa != ab {
                    predicted.insert(key(*a, *b));
                }
            }
        }
    }
    // True pairs.
    let file = File::open(truth).map_err(|e| Error::read(truth, e))?;
    let mut rdr = csv::Reader::from_reader(file);
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::input(truth, format!("cannot read the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut truth_pairs: HashSet<(u32, u32)> = HashSet::new();
    let three = header.len() >= 3 && header[..3] == ["agency", "record_id", "entity"];
    if !three && header.len() != 2 {
        return Err(Error::input(
            truth,
            "truth must have columns `record_id_a,record_id_b` or `agency,record_id,entity`",
        ));
    }
    if !three && agencies.len() < 2 && !dedup {
        return Err(Error::input(
            truth,
            "a two-column truth file needs links from two agencies",
        ));
    }
    let mut entities: HashMap<String, Vec<(u32, String)>> = HashMap::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| Error::input(truth, format!("row {}: {e}", line + 1)))?;
        if three {
            let (a, r, e) = (rec[0].trim(), rec[1].trim(), rec[2].trim());
            let i = id_of(a, r, base);
            entities
                .entry(e.to_string())
                .or_default()
                .push((i, a.to_string()));
        } else {
            let (ag_a, ag_b) = if agencies.len() >= 2 {
                (agencies[0], agencies[1])
            } else {
                (agencies[0], agencies[0])
            };
            let a = id_of(ag_a, rec[0].trim(), base);
            let b = id_of(ag_b, rec[1].trim(), base);
            if a != b {
                truth_pairs.insert(key(a, b));
            }
        }
    }
    for members in entities.values() {
        for (i, (a, aa)) in members.iter().enumerate() {
            for (b, ab) in &members[i + 1..] {
                if dedup || aa != ab {
                    truth_pairs.insert(key(*a, *b));
                }
            }
        }
    }
    let tp = predicted.intersection(&truth_pairs).count() as u64;
    Ok(Evaluation::from_counts(
        tp,
        predicted.len() as u64,
        truth_pairs.len() as u64,
    ))
}
