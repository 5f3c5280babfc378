//! The analysis release: entity pseudonyms joined to the agencies' payload,
//! with no record id, filter or identifier.
//!
//! Reads `links.parquet` and each agency's payload file (keyed by record id),
//! writes one row per linked-dataset record — `entity_id`, `agency`, then
//! the payload columns — sorted by entity so row order says nothing about the
//! agencies' files, and a manifest of what was released with small numbers
//! suppressed. Payload columns that look identifying (by name or by content)
//! are refused unless explicitly allowed. This module never sees plaintext
//! identifiers on purpose; the checks are there for the ones that slip in.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::hub::evaluate::read_links;
use crate::io::Pending;

pub use crate::identify::identifying_reason;

/// A count as released: below 10 it is shown as "<10".
pub fn suppress(n: u64) -> String {
    if n < 10 { "<10".into() } else { n.to_string() }
}

/// What was released.
#[derive(Debug, Serialize)]
pub struct Manifest {
    pub bloomlink_version: String,
    pub output: String,
    pub rows: String,
    pub entities: String,
    pub columns: Vec<String>,
    pub rows_per_agency: BTreeMap<String, String>,
    pub payload_coverage: BTreeMap<String, String>,
    pub allowed_identifying: Vec<String>,
    pub sources: BTreeMap<String, String>,
    pub note: String,
}

fn text_value(a: &ArrayRef, i: usize) -> Option<String> {
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i).to_string()),
        DataType::Int32 => Some(a.as_primitive::<Int32Type>().value(i).to_string()),
        DataType::Int64 => Some(a.as_primitive::<Int64Type>().value(i).to_string()),
        _ => None,
    }
}

/// One agency's payload: column names and values by record id.
struct Payload {
    columns: Vec<String>,
    rows: HashMap<String, Vec<Option<String>>>,
    /// The agency encode wrote it for (`bloomlink.payload_of`), if said.
    of: Option<String>,
}

fn read_payload(path: &Path) -> Result<Payload> {
    let file = File::open(path).map_err(|e| Error::read(path, e))?;
    let b =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet_read(path, e))?;
    let columns: Vec<String> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "record_id")
        .collect();
    if b.schema().field_with_name("record_id").is_err() {
        return Err(Error::input(
            path,
            "a payload file needs a `record_id` column (make it with `encode --payload-output`)",
        ));
    }
    // The agency whose encode wrote the file, when it says.
    let of = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == crate::extract::META_PAYLOAD_OF))
        .and_then(|k| k.value.clone());
    let mut rows = HashMap::new();
    for batch in b.build().map_err(|e| Error::parquet_read(path, e))? {
        let batch = batch.map_err(|e| Error::parquet_read(path, e))?;
        let id = batch.column_by_name("record_id").expect("checked");
        let cols: Vec<&ArrayRef> = columns
            .iter()
            .map(|c| batch.column_by_name(c).expect("from schema"))
            .collect();
        for i in 0..batch.num_rows() {
            let Some(rid) = text_value(id, i) else {
                continue;
            };
            rows.insert(rid, cols.iter().map(|c| text_value(c, i)).collect());
        }
    }
    Ok(Payload { columns, rows, of })
}

/// Release options.
pub struct ReleaseOptions {
    pub links: PathBuf,
    /// (agency, payload file).
    pub payloads: Vec<(String, PathBuf)>,
    pub out: PathBuf,
    /// Payload columns allowed even though they look identifying.
    pub allow: Vec<String>,
}

/// The manifest path beside a release: `X.parquet` → `X.manifest.json`.
pub fn manifest_path(out: &Path) -> PathBuf {
    let s = out.to_string_lossy();
    PathBuf::from(format!(
        "{}.manifest.json",
        s.strip_suffix(".parquet").unwrap_or(&s)
    ))
}

/// Write the release and its manifest atomically.
pub fn release(o: &ReleaseOptions) -> Result<Manifest> {
    let manifest = manifest_path(&o.out);
    let mut inputs = vec![o.links.as_path()];
    inputs.extend(o.payloads.iter().map(|(_, p)| p.as_path()));
    crate::io::refuse_overwrite(
        &inputs,
        &[
            ("--out", o.out.as_path()),
            ("the manifest", manifest.as_path()),
        ],
    )?;
    let (links, _) = read_links(&o.links)?;
    let mut payloads: BTreeMap<String, Payload> = BTreeMap::new();
    let mut sources = BTreeMap::new();
    sources.insert("links".to_string(), crate::io::sha256_file(&o.links)?);
    for (agency, path) in &o.payloads {
        if !links.iter().any(|r| &r.agency == agency) {
            return Err(Error::Usage(format!(
                "--payload {agency}=…: no agency `{agency}` in {}",
                o.links.display()
            )));
        }
        let p = read_payload(path)?;
        if let Some(of) = p.of.as_ref().filter(|&of| of != agency) {
            return Err(Error::input(
                path,
                format!(
                    "this is agency `{of}`'s payload (encode wrote it for `{of}`), given as `{agency}`'s: pass --payload {of}={}",
                    path.display()
                ),
            ));
        }
        // Not one of the agency's linked records in the file: the wrong
        // file, or another linkage's.
        let records = links.iter().filter(|r| &r.agency == agency).count();
        if !links
            .iter()
            .any(|r| &r.agency == agency && p.rows.contains_key(&r.record_id))
        {
            return Err(Error::input(
                path,
                format!(
                    "none of its {} record ids is among agency `{agency}`'s {records} records in {}: is it `{agency}`'s payload, from the extract that was linked?",
                    p.rows.len(),
                    o.links.display()
                ),
            ));
        }
        // Identifying checks, on a sample of values.
        for (ci, c) in p.columns.iter().enumerate() {
            let sample: Vec<&str> = p
                .rows
                .values()
                .take(500)
                .filter_map(|r| r[ci].as_deref())
                .collect();
            if let Some(why) = identifying_reason(c, &sample)
                && !o.allow.contains(c)
            {
                return Err(Error::input(
                    path,
                    format!(
                        "payload column `{c}` looks identifying ({why}); remove it, or pass --allow-column {c} if it is not"
                    ),
                ));
            }
        }
        sources.insert(format!("payload:{agency}"), crate::io::sha256_file(path)?);
        payloads.insert(agency.clone(), p);
    }
    let mut columns: Vec<String> = Vec::new();
    for p in payloads.values() {
        for c in &p.columns {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
    }
    columns.sort();
    // Where each released column sits in each agency's payload.
    let col_index: HashMap<&String, Vec<Option<usize>>> = payloads
        .iter()
        .map(|(a, p)| {
            (
                a,
                columns
                    .iter()
                    .map(|c| p.columns.iter().position(|x| x == c))
                    .collect(),
            )
        })
        .collect();
    // One row per linked-dataset record, sorted by entity then agency.
    let mut order: Vec<usize> = (0..links.len()).collect();
    order.sort_by(|&a, &b| {
        (&links[a].entity_id, &links[a].agency, &links[a].record_id).cmp(&(
            &links[b].entity_id,
            &links[b].agency,
            &links[b].record_id,
        ))
    });
    let mut ent = StringBuilder::new();
    let mut ag = StringBuilder::new();
    let mut cols: Vec<StringBuilder> = columns.iter().map(|_| StringBuilder::new()).collect();
    let mut per_agency: BTreeMap<String, u64> = BTreeMap::new();
    let mut covered: BTreeMap<String, u64> = BTreeMap::new();
    for &i in &order {
        let r = &links[i];
        ent.append_value(&r.entity_id);
        ag.append_value(&r.agency);
        *per_agency.entry(r.agency.clone()).or_default() += 1;
        let row = payloads
            .get(&r.agency)
            .and_then(|p| p.rows.get(&r.record_id).map(|v| (p, v)));
        if row.is_some() {
            *covered.entry(r.agency.clone()).or_default() += 1;
        }
        let idx = row.map(|_| &col_index[&r.agency]);
        for (ci, b) in cols.iter_mut().enumerate() {
            let v = row
                .zip(idx)
                .and_then(|((_, v), idx)| idx[ci].and_then(|k| v[k].clone()));
            b.append_option(v);
        }
    }
    let mut fields = vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("agency", DataType::Utf8, false),
    ];
    fields.extend(columns.iter().map(|c| Field::new(c, DataType::Utf8, true)));
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(ent.finish()), Arc::new(ag.finish())];
    arrays.extend(cols.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| Error::parquet_write(&o.out, e))?;
    let pending = Pending::create(&o.out)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut w = ArrowWriter::try_new(pending.file()?, batch.schema(), Some(props))
        .map_err(|e| Error::parquet_write(&o.out, e))?;
    w.write(&batch)
        .map_err(|e| Error::parquet_write(&o.out, e))?;
    w.close().map_err(|e| Error::parquet_write(&o.out, e))?;
    let mut entities: Vec<&str> = links.iter().map(|r| r.entity_id.as_str()).collect();
    entities.sort_unstable();
    entities.dedup();
    let manifest = Manifest {
        bloomlink_version: env!("CARGO_PKG_VERSION").into(),
        output: o.out.display().to_string(),
        rows: suppress(links.len() as u64),
        entities: suppress(entities.len() as u64),
        columns: ["entity_id".to_string(), "agency".to_string()].into_iter().chain(columns.clone()).collect(),
        rows_per_agency: per_agency.iter().map(|(a, n)| (a.clone(), suppress(*n))).collect(),
        payload_coverage: per_agency
            .keys()
            .map(|a| (a.clone(), suppress(covered.get(a).copied().unwrap_or(0))))
            .collect(),
        allowed_identifying: o.allow.clone(),
        sources,
        note: "Counts under 10 are shown as \"<10\". The release holds entity pseudonyms, agency names and payload only: no record id, filter or identifier.".into(),
    };
    let mp = manifest_path(&o.out);
    let m = Pending::create(&mp)?;
    std::io::Write::write_all(
        &mut m.file()?,
        serde_json::to_string_pretty(&manifest)
            .expect("json")
            .as_bytes(),
    )
    .map_err(|e| Error::write(&mp, e))?;
    pending.commit()?;
    m.commit()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifying_columns_are_recognised() {
        assert!(identifying_reason("Surname", &[]).is_some());
        assert!(identifying_reason("x", &["LS6 1AB", "BD1 2CD", "M1 1AA"]).is_some());
        assert!(identifying_reason("x", &["31/12/2010", "01/01/2011"]).is_some());
        assert!(identifying_reason("x", &["943 476 5919", "4010232137"]).is_some());
        assert!(identifying_reason("category", &["CIN", "CP", "LAC", "CIN"]).is_none());
        assert!(identifying_reason("visits", &["0", "3", "2", "1"]).is_none());
    }

    #[test]
    fn small_numbers_are_suppressed() {
        assert_eq!(suppress(9), "<10");
        assert_eq!(suppress(10), "10");
    }
}
