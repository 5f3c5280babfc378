//! Precision, recall and F1 of a linkage against a truth file.
//!
//! Predicted pairs are all pairs of records sharing an entity id (records of
//! one agency count only when the linkage deduplicated). Truth comes as
//! `record_id_a,record_id_b` (two agencies: a is the first agency in
//! links.parquet, b the second) or `agency,record_id,entity` (any number of
//! agencies). True pairs whose records never reached the hub (rejected at
//! encode) count as missed. Hub side: record ids only.

use std::fs::File;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
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
                .find(|e| e.key == crate::extract::META_DEDUP)
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
    // Record index by (agency, id); agencies numbered in order of first
    // appearance (truth-only agencies after the linked ones).
    let mut agencies: FxHashMap<&str, u32> = FxHashMap::default();
    // The linked agencies' names, by number.
    let mut names: Vec<&str> = Vec::new();
    let mut index: FxHashMap<(&str, &str), (u32, u32)> = FxHashMap::default();
    for r in rows {
        let ag = *agencies.entry(&r.agency).or_insert_with(|| {
            names.push(&r.agency);
            names.len() as u32 - 1
        });
        let n = index.len() as u32;
        index.entry((&r.agency, &r.record_id)).or_insert((n, ag));
    }
    let linked_agencies = names.len();
    let mut unknown_agencies: FxHashMap<String, u32> = FxHashMap::default();
    let mut unknown: FxHashMap<(String, String), (u32, u32)> = FxHashMap::default();
    let base = index.len() as u32;
    // Truth ids found among the linked records.
    let mut found = 0u64;
    let mut id_of = |a: &str, r: &str| -> (u32, u32) {
        match index.get(&(a, r)) {
            Some(&i) => {
                found += 1;
                i
            }
            None => {
                let ag = match agencies.get(a) {
                    Some(&ag) => ag,
                    None => {
                        let n = (linked_agencies + unknown_agencies.len()) as u32;
                        *unknown_agencies.entry(a.to_string()).or_insert(n)
                    }
                };
                let n = base + unknown.len() as u32;
                *unknown
                    .entry((a.to_string(), r.to_string()))
                    .or_insert((n, ag))
            }
        }
    };
    // Pairs as sorted, distinct `u64`s (smaller record index high).
    let key = |a: u32, b: u32| {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        (lo as u64) << 32 | hi as u64
    };
    let pairs_of = |groups: &mut dyn Iterator<Item = &Vec<(u32, u32)>>| -> Vec<u64> {
        let mut v = Vec::new();
        for members in groups {
            for (i, &(a, aa)) in members.iter().enumerate() {
                for &(b, ab) in &members[i + 1..] {
                    if a != b && (dedup || aa != ab) {
                        v.push(key(a, b));
                    }
                }
            }
        }
        v.par_sort_unstable();
        v.dedup();
        v
    };
    // Predicted pairs.
    let mut by_entity: FxHashMap<&str, Vec<(u32, u32)>> = FxHashMap::default();
    for r in rows {
        by_entity
            .entry(&r.entity_id)
            .or_default()
            .push(index[&(r.agency.as_str(), r.record_id.as_str())]);
    }
    let predicted = pairs_of(&mut by_entity.values());
    drop(by_entity);
    // True pairs.
    let file = File::open(truth).map_err(|e| Error::read(truth, e))?;
    let mut rdr = csv::Reader::from_reader(file);
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| Error::input(truth, format!("cannot read the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let three = header.len() >= 3 && header[..3] == ["agency", "record_id", "entity"];
    if !three && header.len() != 2 {
        return Err(Error::input(
            truth,
            "truth must have columns `record_id_a,record_id_b` or `agency,record_id,entity`",
        ));
    }
    if !three && names.len() < 2 && !dedup {
        return Err(Error::input(
            truth,
            "a two-column truth file needs links from two agencies",
        ));
    }
    // A two-column file's columns are the first two agencies in links
    // order, unless its header names two of them.
    let named = |c: usize| names.iter().copied().find(|&a| a == header[c]);
    let by_header = if three || header[0] == header[1] {
        None
    } else {
        named(0).zip(named(1))
    };
    let (ag_a, ag_b) = by_header.unwrap_or(match names[..] {
        [a, b, ..] => (a, b),
        [a] => (a, a),
        [] => ("", ""),
    });
    let mut entities: FxHashMap<String, Vec<(u32, u32)>> = FxHashMap::default();
    let mut listed: Vec<u64> = Vec::new();
    let mut rows_read = 0u64;
    let mut rec = csv::StringRecord::new();
    let mut line = 0;
    loop {
        line += 1;
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(Error::input(truth, format!("row {line}: {e}"))),
        }
        rows_read += 1;
        if three {
            let (a, r, e) = (rec[0].trim(), rec[1].trim(), rec[2].trim());
            let i = id_of(a, r);
            match entities.get_mut(e) {
                Some(m) => m.push(i),
                None => {
                    entities.insert(e.to_string(), vec![i]);
                }
            }
        } else {
            let (a, _) = id_of(ag_a, rec[0].trim());
            let (b, _) = id_of(ag_b, rec[1].trim());
            if a != b {
                listed.push(key(a, b));
            }
        }
    }
    if rows_read > 0 && found == 0 {
        let how = if three {
            "its `agency` and `record_id` columns".to_string()
        } else {
            format!(
                "its first column is read as agency `{ag_a}`'s record ids and its second as `{ag_b}`'s (name the agencies in its header to choose)"
            )
        };
        return Err(Error::input(
            truth,
            format!(
                "none of its {rows_read} rows names a linked record: {how}; is it the truth for these extracts?"
            ),
        ));
    }
    let mut truth_pairs = pairs_of(&mut entities.values());
    if !listed.is_empty() {
        truth_pairs.extend(listed);
        truth_pairs.par_sort_unstable();
        truth_pairs.dedup();
    }
    // Both sorted: count the pairs in both by merging.
    let (mut tp, mut i, mut j) = (0u64, 0, 0);
    while i < predicted.len() && j < truth_pairs.len() {
        match predicted[i].cmp(&truth_pairs[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                tp += 1;
                i += 1;
                j += 1;
            }
        }
    }
    Ok(Evaluation::from_counts(
        tp,
        predicted.len() as u64,
        truth_pairs.len() as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[(&str, &str, &str)]) -> Vec<LinkRow> {
        v.iter()
            .map(|&(a, r, e)| LinkRow {
                agency: a.into(),
                record_id: r.into(),
                entity_id: e.into(),
            })
            .collect()
    }

    fn truth(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    /// (true positives, predicted pairs, true pairs).
    fn counts(e: &Evaluation) -> (u64, u64, u64) {
        (e.true_positives, e.predicted_pairs, e.true_pairs)
    }

    #[test]
    fn pairs_are_counted_exactly_in_both_truth_formats() {
        // Entity E1: a1, b1, b2 (b1-b2 is within agency b); E2: a2, b3;
        // a3 alone.
        let links = rows(&[
            ("a", "a1", "E1"),
            ("b", "b1", "E1"),
            ("b", "b2", "E1"),
            ("a", "a2", "E2"),
            ("b", "b3", "E2"),
            ("a", "a3", "E3"),
        ]);
        // Truth: a1-b1 (found), a2-b3 (found), a3-b4 (b4 never reached the
        // hub: missed), a1 repeated (no pair with itself), and b1-b2 within
        // agency b (counted only when deduplicating).
        let t = truth(
            "agency,record_id,entity\n\
             a,a1,P1\nb,b1,P1\na,a1,P1\nb,b2,P1\n\
             a,a2,P2\nb,b3,P2\n\
             a,a3,P3\nb,b4,P3\n",
        );
        // Predicted across agencies: a1-b1, a1-b2, a2-b3.
        // True across agencies: a1-b1, a1-b2, a2-b3, a3-b4.
        let e = evaluate(&links, false, t.path()).unwrap();
        assert_eq!(counts(&e), (3, 3, 4));
        assert_eq!(e.false_negatives, 1);
        assert_eq!(e.false_positives, 0);
        // Deduplicating also counts b1-b2 on both sides.
        let e = evaluate(&links, true, t.path()).unwrap();
        assert_eq!(counts(&e), (4, 4, 5));
        // Two columns: a's id, then b's.
        let t = truth("record_id_a,record_id_b\na1,b1\na2,b2\na3,b9\na1,b1\n");
        let e = evaluate(&links, false, t.path()).unwrap();
        // True: a1-b1 (found), a2-b2 (not linked), a3-b9 (unknown record).
        assert_eq!(counts(&e), (1, 3, 3));
        // A header naming the agencies picks the columns, in any order.
        let t = truth("b,a\nb1,a1\nb2,a2\nb9,a3\n");
        let e = evaluate(&links, false, t.path()).unwrap();
        assert_eq!(counts(&e), (1, 3, 3));
    }

    /// A truth file none of whose records is among the links (another
    /// linkage's, or two columns the wrong way round) is an error, not an
    /// F1 of 0; it names no record id.
    #[test]
    fn a_truth_file_naming_no_linked_record_is_refused() {
        let links = rows(&[("a", "a1", "E1"), ("b", "b1", "E1")]);
        for text in [
            "record_id_a,record_id_b\nb1,a1\n",
            "agency,record_id,entity\na,x1,P\nb,x2,P\n",
        ] {
            let t = truth(text);
            let e = evaluate(&links, false, t.path()).unwrap_err().to_string();
            assert!(e.contains("names a linked record"), "{e}");
            // The temporary file's random name may itself hold `x1`: look
            // for ids only in what the message says besides the path.
            let said = e.replace(&t.path().display().to_string(), "");
            assert!(said.len() < e.len(), "the message names the file: {e}");
            assert!(
                !said.contains("a1") && !said.contains("b1") && !said.contains("x1"),
                "{e}"
            );
        }
        // One record found is enough: the rest may be records rejected at
        // encode.
        let t = truth("record_id_a,record_id_b\na1,b1\na7,b7\n");
        assert!(evaluate(&links, false, t.path()).is_ok());
    }

    #[test]
    fn bad_truth_files_are_clear_errors() {
        let links = rows(&[("a", "a1", "E1"), ("a", "a2", "E1")]);
        let t = truth("x,y,z,w\n1,2,3,4\n");
        let e = evaluate(&links, false, t.path()).unwrap_err().to_string();
        assert!(e.contains("truth must have columns"), "{e}");
        let t = truth("record_id_a,record_id_b\na1,a2\n");
        let e = evaluate(&links, false, t.path()).unwrap_err().to_string();
        assert!(e.contains("needs links from two agencies"), "{e}");
    }
}
