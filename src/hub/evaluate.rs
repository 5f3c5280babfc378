//! Precision, recall and F1 of a linkage against a truth file.
//!
//! Predicted pairs are all pairs of records sharing an entity id (records of
//! one agency count only when the linkage deduplicated). Truth comes as
//! `record_id_a,record_id_b` (two agencies: a is the first agency in
//! links.parquet, b the second) or `agency,record_id,entity` (any number of
//! agencies). True pairs whose records never reached the hub (rejected at
//! encode) count as missed; [`missed_pairs`] tells, from the run's
//! `pairs.parquet`, where each missed pair went. Hub side: record ids
//! only.

use std::fs::File;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::block::{pack, unpack};
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

/// links.parquet's three id columns, batch by batch, as read: a row's
/// text is borrowed, never copied.
#[derive(Debug, Default)]
pub struct LinkColumns {
    /// Per batch: agency, record id and entity id.
    batches: Vec<[arrow_array::StringArray; 3]>,
    /// Rows before each batch.
    starts: Vec<usize>,
    len: usize,
}

impl LinkColumns {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Row `i`'s agency, record id and entity id.
    pub fn row(&self, i: usize) -> (&str, &str, &str) {
        let b = self.starts.partition_point(|&s| s <= i) - 1;
        let ([a, r, e], j) = (&self.batches[b], i - self.starts[b]);
        (a.value(j), r.value(j), e.value(j))
    }
}

/// Read links.parquet's id columns, and whether it was made with
/// deduplication.
pub fn read_link_columns(path: &Path) -> Result<(LinkColumns, bool)> {
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
    let mut links = LinkColumns::default();
    for batch in b.build().map_err(|e| Error::parquet_read(path, e))? {
        let batch = batch.map_err(|e| Error::parquet_read(path, e))?;
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .filter(|c| c.data_type() == &arrow_schema::DataType::Utf8)
                .map(|c| c.as_string::<i32>().clone())
                .ok_or_else(|| {
                    Error::input(path, format!("not a links file: no text column `{n}`"))
                })
        };
        links.starts.push(links.len);
        links.len += batch.num_rows();
        links
            .batches
            .push([col("agency")?, col("record_id")?, col("entity_id")?]);
    }
    Ok((links, dedup))
}

/// Read links.parquet as rows, and whether it was made with deduplication.
pub fn read_links(path: &Path) -> Result<(Vec<LinkRow>, bool)> {
    let (links, dedup) = read_link_columns(path)?;
    let rows = (0..links.len())
        .map(|i| {
            let (a, r, e) = links.row(i);
            LinkRow {
                agency: a.to_string(),
                record_id: r.to_string(),
                entity_id: e.to_string(),
            }
        })
        .collect();
    Ok((rows, dedup))
}

/// [`evaluate`] on links.parquet's columns as read.
pub fn evaluate_columns(links: &LinkColumns, dedup: bool, truth: &Path) -> Result<Evaluation> {
    judge_columns(links, dedup, truth).map(|j| j.evaluation)
}

/// [`judge`] on links.parquet's columns as read.
pub fn judge_columns(links: &LinkColumns, dedup: bool, truth: &Path) -> Result<Judged> {
    judge(links.len(), |i| links.row(i), dedup, truth)
}

/// What a run linked on: match probability (probabilistic mode) or CLK
/// Dice (`mode = "dice"`), at or above this figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Probability(f64),
    Dice(f64),
}

impl Threshold {
    /// The run's threshold, from the `report.json` beside its outputs.
    pub fn of_report(path: &Path) -> Result<Threshold> {
        let text = std::fs::read(path).map_err(|e| Error::read(path, e))?;
        let r: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| Error::input(path, format!("not a report: {e}")))?;
        let scoring = &r["run"]["config"]["scoring"];
        let figure = |k: &str| {
            scoring[k].as_f64().ok_or_else(|| {
                Error::input(path, format!("not a report: no `run.config.scoring.{k}`"))
            })
        };
        Ok(match scoring["mode"].as_str() {
            Some("dice") => Threshold::Dice(figure("dice_threshold")?),
            _ => Threshold::Probability(figure("threshold")?),
        })
    }
}

/// Where the true pairs a linkage missed (its false negatives) went, told
/// from its `pairs.parquet`: what a hub changes to find them differs
/// (blocking or the model, the threshold, or nothing: resolution).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Missed {
    /// A record of the pair is not among the linked ones: rejected at
    /// encode, or in none of the extracts.
    pub record_not_linked: u64,
    /// Not in `pairs.parquet`: never a candidate pair (blocking did not
    /// bring its records together), or scored under
    /// `output.pairs_min_probability`.
    pub not_scored: u64,
    /// Scored under the threshold.
    pub under_threshold: u64,
    /// Scored at or above the threshold, yet not linked: resolution gave
    /// one of its records to a likelier link (one record per agency in an
    /// entity).
    pub cleared_threshold: u64,
}

/// [`Missed`] for the pairs `judged` missed, from the run's pairs file
/// (`pairs`, read column by column) and `threshold`. The four counts add
/// up to the false negatives.
pub fn missed_pairs(
    links: &LinkColumns,
    judged: &Judged,
    pairs: &Path,
    threshold: Threshold,
) -> Result<Missed> {
    let record = |i: usize| {
        let (a, r, _) = links.row(i);
        (a, r)
    };
    missed_pairs_of(links.len(), record, judged, pairs, threshold)
}

/// [`missed_pairs`] of a finished run's pairs file, at the threshold of
/// the `report.json` beside it.
pub fn missed_beside_report(links: &LinkColumns, judged: &Judged, pairs: &Path) -> Result<Missed> {
    let report = pairs.parent().unwrap_or(Path::new(".")).join("report.json");
    missed_pairs(links, judged, pairs, Threshold::of_report(&report)?)
}

/// [`missed_pairs`] for the `n` records [`judge`] was given, `record(i)`
/// being record `i`'s agency and record id.
pub fn missed_pairs_of<'a>(
    n: usize,
    record: impl Fn(usize) -> (&'a str, &'a str),
    judged: &Judged,
    pairs: &Path,
    threshold: Threshold,
) -> Result<Missed> {
    let mut out = Missed::default();
    // The missed pairs of linked records, and the score each has in the
    // pairs file (NaN until found).
    let mut score: FxHashMap<u64, f64> = FxHashMap::default();
    for &k in &judged.missed {
        if unpack(k).1 >= n {
            out.record_not_linked += 1;
        } else {
            score.insert(k, f64::NAN);
        }
    }
    let mut index: FxHashMap<(&str, &str), u32> =
        FxHashMap::with_capacity_and_hasher(n, Default::default());
    for i in 0..n {
        index.entry(record(i)).or_insert(i as u32);
    }
    let by = match threshold {
        Threshold::Probability(_) => "match_probability",
        Threshold::Dice(_) => "dice",
    };
    let record = |a: &str, r: &str| index.get(&(a, r)).copied();
    super::output::each_pair(pairs, record, Some(by), |a, b, x| {
        if let Some(v) = score.get_mut(&pack(a, b)) {
            *v = x.unwrap_or(f64::NEG_INFINITY);
        }
    })?;
    let t = match threshold {
        Threshold::Probability(t) | Threshold::Dice(t) => t,
    };
    for v in score.into_values() {
        if v.is_nan() {
            out.not_scored += 1;
        } else if v >= t {
            out.cleared_threshold += 1;
        } else {
            out.under_threshold += 1;
        }
    }
    Ok(out)
}

/// Evaluate links against a truth CSV.
pub fn evaluate(rows: &[LinkRow], dedup: bool, truth: &Path) -> Result<Evaluation> {
    let record = |i: usize| {
        let r = &rows[i];
        (
            r.agency.as_str(),
            r.record_id.as_str(),
            r.entity_id.as_str(),
        )
    };
    judge(rows.len(), record, dedup, truth).map(|j| j.evaluation)
}

/// What a truth file says of a set of linked records.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    pub evaluation: Evaluation,
    /// The true pairs both of whose records are among the linked ones, as
    /// record indices (the lower first), sorted and distinct. A record's
    /// index is where it first appears.
    pub known_pairs: Vec<(u32, u32)>,
    /// The true pairs not linked (the false negatives), packed ([`pack`]);
    /// an index of `n` or more is a record the truth names that is not
    /// among the linked ones.
    pub missed: Vec<u64>,
}

/// [`evaluate`] on `n` records given by index: `record(i)` is record
/// `i`'s agency, record id and entity id. Nothing is allocated per record
/// or per truth row, but for records the truth names that are not among
/// the linked ones (rejected at encode) and for the entities of a
/// three-column truth file.
pub fn judge<'a>(
    n: usize,
    record: impl Fn(usize) -> (&'a str, &'a str, &'a str),
    dedup: bool,
    truth: &Path,
) -> Result<Judged> {
    // Agencies numbered in order of first appearance (truth-only agencies
    // after the linked ones); per agency, each record id's index.
    let mut names: Vec<&str> = Vec::new();
    let mut ids: Vec<FxHashMap<&str, u32>> = Vec::new();
    // Per record: its agency's number and where it first appears.
    let mut members: Vec<(u32, u32, u32)> = Vec::with_capacity(n);
    let mut entities: FxHashMap<&str, u32> = FxHashMap::default();
    for i in 0..n {
        let (agency, id, entity) = record(i);
        let ag = match names.iter().position(|&a| a == agency) {
            Some(ag) => ag,
            None => {
                names.push(agency);
                ids.push(FxHashMap::with_capacity_and_hasher(
                    n / 2,
                    Default::default(),
                ));
                names.len() - 1
            }
        };
        let first = *ids[ag].entry(id).or_insert(i as u32);
        let e = entities.len() as u32;
        let e = *entities.entry(entity).or_insert(e);
        members.push((e, first, ag as u32));
    }
    drop(entities);
    let predicted = pairs_in_groups(members, dedup);
    let linked_agencies = names.len();
    let mut unknown_agencies: FxHashMap<String, u32> = FxHashMap::default();
    let mut unknown: FxHashMap<(u32, String), u32> = FxHashMap::default();
    // Truth ids found among the linked records.
    let mut found = 0u64;
    let mut id_of = |ag: Option<usize>, a: &str, r: &str| -> (u32, u32) {
        if let Some((ag, &i)) = ag.and_then(|ag| Some((ag, ids[ag].get(r)?))) {
            found += 1;
            return (i, ag as u32);
        }
        let ag = match ag {
            Some(ag) => ag as u32,
            None => {
                let next = (linked_agencies + unknown_agencies.len()) as u32;
                *unknown_agencies.entry(a.to_string()).or_insert(next)
            }
        };
        let next = n as u32 + unknown.len() as u32;
        (*unknown.entry((ag, r.to_string())).or_insert(next), ag)
    };
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
    let named = |c: usize| names.iter().position(|&a| a == header[c]);
    let by_header = if three || header[0] == header[1] {
        None
    } else {
        named(0).zip(named(1))
    };
    let (col_a, col_b) = match (by_header, names.len()) {
        (Some((a, b)), _) => (Some(a), Some(b)),
        (None, 0) => (None, None),
        (None, 1) => (Some(0), Some(0)),
        (None, _) => (Some(0), Some(1)),
    };
    let agency_name = |c: Option<usize>| c.map_or("", |c| names[c]);
    let (ag_a, ag_b) = (agency_name(col_a), agency_name(col_b));
    // Three columns: each row's (entity number, record, agency); two
    // columns: each row's pair.
    let mut truth_entities: FxHashMap<String, u32> = FxHashMap::default();
    let mut in_entities: Vec<(u32, u32, u32)> = Vec::new();
    let mut listed: Vec<u64> = Vec::new();
    let mut rows_read = 0u64;
    let mut rec = csv::ByteRecord::new();
    let mut line = 0;
    loop {
        line += 1;
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(Error::input(truth, format!("row {line}: {e}"))),
        }
        rows_read += 1;
        let cell = |c: usize| -> Result<&str> {
            let b = rec.get(c).unwrap_or_default();
            std::str::from_utf8(b).map(str::trim).map_err(|_| {
                Error::input(
                    truth,
                    format!("row {line}, column {}: not valid UTF-8", c + 1),
                )
            })
        };
        if three {
            let (a, r, e) = (cell(0)?, cell(1)?, cell(2)?);
            let ag = names.iter().position(|&x| x == a);
            let (i, ag) = id_of(ag, a, r);
            let next = truth_entities.len() as u32;
            let e = match truth_entities.get(e) {
                Some(&e) => e,
                None => *truth_entities.entry(e.to_string()).or_insert(next),
            };
            in_entities.push((e, i, ag));
        } else {
            let (a, _) = id_of(col_a, ag_a, cell(0)?);
            let (b, _) = id_of(col_b, ag_b, cell(1)?);
            if a != b {
                listed.push(pack(a, b));
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
    let mut truth_pairs = pairs_in_groups(in_entities, dedup);
    if !listed.is_empty() {
        truth_pairs.extend(listed);
        truth_pairs.par_sort_unstable();
        truth_pairs.dedup();
    }
    // Both sorted: count the pairs in both by merging; the true pairs
    // left over are the missed ones.
    let (mut tp, mut i, mut j) = (0u64, 0, 0);
    let mut missed = Vec::new();
    while j < truth_pairs.len() {
        match predicted.get(i).map(|p| p.cmp(&truth_pairs[j])) {
            Some(std::cmp::Ordering::Less) => i += 1,
            Some(std::cmp::Ordering::Equal) => {
                tp += 1;
                i += 1;
                j += 1;
            }
            _ => {
                missed.push(truth_pairs[j]);
                j += 1;
            }
        }
    }
    let known_pairs = truth_pairs
        .iter()
        .map(|&k| unpack(k))
        .filter(|&(_, hi)| hi < n)
        .map(|(lo, hi)| (lo as u32, hi as u32))
        .collect();
    Ok(Judged {
        evaluation: Evaluation::from_counts(tp, predicted.len() as u64, truth_pairs.len() as u64),
        known_pairs,
        missed,
    })
}

/// The pairs of distinct records within each group, as sorted, distinct
/// packed pairs ([`pack`]: the lower record high). `members` holds each
/// member's (group, record, agency); records of one agency pair only when
/// de-duplicating.
fn pairs_in_groups(mut members: Vec<(u32, u32, u32)>, dedup: bool) -> Vec<u64> {
    members.par_sort_unstable();
    let mut v = Vec::new();
    for group in members.chunk_by(|x, y| x.0 == y.0) {
        for (i, &(_, a, aa)) in group.iter().enumerate() {
            for &(_, b, ab) in &group[i + 1..] {
                if a != b && (dedup || aa != ab) {
                    v.push(pack(a, b));
                }
            }
        }
    }
    v.par_sort_unstable();
    v.dedup();
    v
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

    /// The known pairs are the true pairs of linked records, by index:
    /// the same whichever way a two-column file's header orders the
    /// agencies, and without the pairs of a record that never reached the
    /// hub.
    #[test]
    fn known_pairs_are_the_true_pairs_of_linked_records() {
        let links = rows(&[
            ("a", "a1", "E1"),
            ("b", "b1", "E1"),
            ("a", "a2", "E2"),
            ("b", "b2", "E3"),
        ]);
        let record = |i: usize| {
            let r = &links[i];
            (
                r.agency.as_str(),
                r.record_id.as_str(),
                r.entity_id.as_str(),
            )
        };
        let known = |text: &str| {
            let t = truth(text);
            judge(links.len(), record, false, t.path())
                .unwrap()
                .known_pairs
        };
        let want = [(0, 1), (2, 3)];
        assert_eq!(
            known("record_id_a,record_id_b\na1,b1\na2,b2\na3,b3\n"),
            want
        );
        assert_eq!(known("b,a\nb1,a1\nb2,a2\nb9,a3\n"), want);
        assert_eq!(
            known("agency,record_id,entity\nb,b2,P\na,a2,P\na,a1,Q\nb,b1,Q\nb,b7,Q\n"),
            want
        );
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
        // A cell that is not UTF-8 is named by row and column.
        let t = truth("record_id_a,record_id_b\na1,a2\n");
        std::fs::write(t.path(), b"record_id_a,record_id_b\na1,a2\na1,\xff\n").unwrap();
        let e = evaluate(&links, true, t.path()).unwrap_err().to_string();
        assert!(e.contains("row 2, column 2: not valid UTF-8"), "{e}");
    }

    /// links.parquet's columns for `v`, one batch.
    fn columns(v: &[(&str, &str, &str)]) -> LinkColumns {
        let col = |k: usize| {
            arrow_array::StringArray::from(v.iter().map(|r| [r.0, r.1, r.2][k]).collect::<Vec<_>>())
        };
        LinkColumns {
            batches: vec![[col(0), col(1), col(2)]],
            starts: vec![0],
            len: v.len(),
        }
    }

    /// A pairs row: agency and id of a, of b, CLK Dice, match probability.
    type PairRow<'a> = (&'a str, &'a str, &'a str, &'a str, f64, Option<f64>);

    /// A pairs file of `v`.
    fn pairs_file(v: &[PairRow]) -> tempfile::NamedTempFile {
        use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let text = |k: usize| -> ArrayRef {
            Arc::new(StringArray::from(
                v.iter()
                    .map(|r| [r.0, r.1, r.2, r.3][k])
                    .collect::<Vec<_>>(),
            ))
        };
        let batch = RecordBatch::try_from_iter([
            ("agency_a", text(0)),
            ("record_id_a", text(1)),
            ("agency_b", text(2)),
            ("record_id_b", text(3)),
            (
                "dice",
                Arc::new(Float64Array::from(
                    v.iter().map(|r| r.4).collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "match_probability",
                Arc::new(Float64Array::from(
                    v.iter().map(|r| r.5).collect::<Vec<_>>(),
                )),
            ),
            ("linked", Arc::new(BooleanArray::from(vec![false; v.len()]))),
        ])
        .unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f.reopen().unwrap(), batch.schema(), None)
            .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        f
    }

    #[test]
    fn each_missed_pair_is_told_where_it_went() {
        let links = columns(&[
            ("a", "a1", "E1"),
            ("b", "b1", "E1"),
            ("a", "a2", "E2"),
            ("b", "b2", "E3"),
            ("a", "a3", "E4"),
            ("b", "b3", "E5"),
            ("a", "a4", "E6"),
            ("b", "b4", "E7"),
            ("a", "a5", "E8"),
        ]);
        // P1 linked; P2 scored 0.7 (written b first), P3 scored 0.2, P4
        // never scored, P5's b9 never reached the hub.
        let t = truth(
            "agency,record_id,entity\na,a1,P1\nb,b1,P1\na,a2,P2\nb,b2,P2\n\
             a,a3,P3\nb,b3,P3\na,a4,P4\nb,b4,P4\na,a5,P5\nb,b9,P5\n",
        );
        let judged = judge_columns(&links, false, t.path()).unwrap();
        assert_eq!(judged.evaluation.false_negatives, 4);
        let pairs = pairs_file(&[
            ("a", "a1", "b", "b1", 0.95, Some(0.99)),
            ("b", "b2", "a", "a2", 0.9, Some(0.7)),
            ("a", "a3", "b", "b3", 0.6, Some(0.2)),
            ("a", "a4", "b", "b2", 0.85, Some(0.4)),
            ("a", "a9", "b", "b4", 0.99, None),
        ]);
        let m = missed_pairs(&links, &judged, pairs.path(), Threshold::Probability(0.5)).unwrap();
        let want = Missed {
            record_not_linked: 1,
            not_scored: 1,
            under_threshold: 1,
            cleared_threshold: 1,
        };
        assert_eq!(m, want);
        // The threshold decides between the last two.
        let m = missed_pairs(&links, &judged, pairs.path(), Threshold::Probability(0.1)).unwrap();
        assert_eq!((m.under_threshold, m.cleared_threshold), (0, 2));
        // In dice mode, the CLK Dice is what cleared it.
        let m = missed_pairs(&links, &judged, pairs.path(), Threshold::Dice(0.8)).unwrap();
        assert_eq!(m, want);
        let m = missed_pairs(&links, &judged, pairs.path(), Threshold::Dice(0.95)).unwrap();
        assert_eq!((m.under_threshold, m.cleared_threshold), (2, 0));
        // A file without the columns is refused, naming what is missing.
        let e = missed_pairs(&links, &judged, t.path(), Threshold::Dice(0.8));
        assert!(e.is_err());
    }

    #[test]
    fn a_report_gives_the_threshold_of_its_mode() {
        let write = |text: &str| {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), text).unwrap();
            f
        };
        let r = write(
            r#"{"run":{"config":{"scoring":{"mode":"probabilistic","threshold":0.6,"dice_threshold":0.8}}}}"#,
        );
        assert_eq!(
            Threshold::of_report(r.path()).unwrap(),
            Threshold::Probability(0.6)
        );
        let r = write(
            r#"{"run":{"config":{"scoring":{"mode":"dice","threshold":0.6,"dice_threshold":0.85}}}}"#,
        );
        assert_eq!(
            Threshold::of_report(r.path()).unwrap(),
            Threshold::Dice(0.85)
        );
        let r = write(r#"{"run":{}}"#);
        let e = Threshold::of_report(r.path()).unwrap_err().to_string();
        assert!(e.contains("run.config.scoring.threshold"), "{e}");
    }
}
