//! Writing the pseudonymised linked dataset: `links.parquet` (every input
//! record exactly once) and `pairs.parquet` (scored candidate pairs).
//! Both are written atomically; [`each_pair`] reads a pairs file back (for
//! a refresh and the missed-pair count). Hub side: record ids and
//! pseudonyms only.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::block::unpack;
use super::load::Dataset;
use crate::error::{Error, Result};
use crate::io::Pending;

/// Write one batch with key-value metadata to a pending file (SNAPPY).
pub(crate) fn write_batch(
    path: &Path,
    batch: RecordBatch,
    meta: Vec<(String, String)>,
) -> Result<Pending> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(256 * 1024))
        .set_key_value_metadata(Some(
            meta.into_iter()
                .map(|(k, v)| KeyValue::new(k, Some(v)))
                .collect(),
        ))
        .build();
    let pending = Pending::create(path)?;
    let mut w = ArrowWriter::try_new(pending.file()?, batch.schema(), Some(props))
        .map_err(|e| Error::parquet_write(path, e))?;
    w.write(&batch).map_err(|e| Error::parquet_write(path, e))?;
    w.close().map_err(|e| Error::parquet_write(path, e))?;
    Ok(pending)
}

/// `links.parquet`: `agency, record_id, entity_id, cluster_size`, in input order.
pub fn links(
    path: &Path,
    ds: &Dataset,
    entity: &[String],
    cluster_size: &[u32],
    meta: Vec<(String, String)>,
) -> Result<Pending> {
    let n = ds.len();
    let mut ag = StringBuilder::with_capacity(n, n * 8);
    let mut id = StringBuilder::with_capacity(n, n * 12);
    let mut en = StringBuilder::with_capacity(n, n * 17);
    let mut cs = Int32Builder::with_capacity(n);
    for g in 0..n {
        ag.append_value(&ds.agencies[ds.agency_of[g] as usize].name);
        id.append_value(ds.ids.get(g));
        en.append_value(&entity[g]);
        cs.append_value(cluster_size[g] as i32);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("agency", DataType::Utf8, false),
        Field::new("record_id", DataType::Utf8, false),
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("cluster_size", DataType::Int32, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ag.finish()),
        Arc::new(id.finish()),
        Arc::new(en.finish()),
        Arc::new(cs.finish()),
    ];
    let batch = RecordBatch::try_new(schema, cols).map_err(|e| Error::parquet_write(path, e))?;
    write_batch(path, batch, meta)
}

/// Scores to write for one pair.
pub struct PairRow {
    pub pair: u64,
    pub dice: f32,
    pub weight: Option<f32>,
    pub probability: Option<f32>,
    pub linked: bool,
}

/// `pairs.parquet`: `agency_a, record_id_a, agency_b, record_id_b, dice,
/// match_weight, match_probability, linked`.
pub fn pairs(
    path: &Path,
    ds: &Dataset,
    rows: &[PairRow],
    meta: Vec<(String, String)>,
) -> Result<Pending> {
    let n = rows.len();
    let mut aa = StringBuilder::with_capacity(n, n * 8);
    let mut ia = StringBuilder::with_capacity(n, n * 12);
    let mut ab = StringBuilder::with_capacity(n, n * 8);
    let mut ib = StringBuilder::with_capacity(n, n * 12);
    let mut d = Float64Builder::with_capacity(n);
    let mut w = Float64Builder::with_capacity(n);
    let mut p = Float64Builder::with_capacity(n);
    let mut l = BooleanBuilder::with_capacity(n);
    // f32 scores are widened with their shortest decimal form, so 0.8 stays 0.8.
    let widen = |x: f32| -> f64 { format!("{x}").parse().unwrap_or(x as f64) };
    for r in rows {
        let (a, b) = unpack(r.pair);
        aa.append_value(&ds.agencies[ds.agency_of[a] as usize].name);
        ia.append_value(ds.ids.get(a));
        ab.append_value(&ds.agencies[ds.agency_of[b] as usize].name);
        ib.append_value(ds.ids.get(b));
        d.append_value(widen(r.dice));
        w.append_option(r.weight.map(widen));
        p.append_option(r.probability.map(widen));
        l.append_value(r.linked);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("agency_a", DataType::Utf8, false),
        Field::new("record_id_a", DataType::Utf8, false),
        Field::new("agency_b", DataType::Utf8, false),
        Field::new("record_id_b", DataType::Utf8, false),
        Field::new("dice", DataType::Float64, false),
        Field::new("match_weight", DataType::Float64, true),
        Field::new("match_probability", DataType::Float64, true),
        Field::new("linked", DataType::Boolean, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(aa.finish()),
        Arc::new(ia.finish()),
        Arc::new(ab.finish()),
        Arc::new(ib.finish()),
        Arc::new(d.finish()),
        Arc::new(w.finish()),
        Arc::new(p.finish()),
        Arc::new(l.finish()),
    ];
    let batch = RecordBatch::try_new(schema, cols).map_err(|e| Error::parquet_write(path, e))?;
    write_batch(path, batch, meta)
}

/// Read a `pairs.parquet` column by column: `f(a, b, score)` for each row
/// whose two records `record` knows (by agency and record id), with the
/// row's figure in column `score` when one is named (`None` where null).
/// The reader the refresh and the missed-pair count share; a row is never
/// copied.
pub fn each_pair(
    path: &Path,
    record: impl Fn(&str, &str) -> Option<u32>,
    score: Option<&str>,
    mut f: impl FnMut(u32, u32, Option<f64>),
) -> Result<()> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    let file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| Error::parquet_read(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| Error::parquet_read(path, e))?;
        let bad = |c: &str| Error::input(path, format!("not a pairs file: bad column `{c}`"));
        let text = |c: &'static str| {
            batch
                .column_by_name(c)
                .and_then(|x| x.as_string_opt::<i32>())
                .ok_or_else(|| bad(c))
        };
        let (aa, ra, ab, rb) = (
            text("agency_a")?,
            text("record_id_a")?,
            text("agency_b")?,
            text("record_id_b")?,
        );
        let figures = score
            .map(|c| {
                batch
                    .column_by_name(c)
                    .and_then(|x| x.as_primitive_opt::<Float64Type>())
                    .ok_or_else(|| bad(c))
            })
            .transpose()?;
        for j in 0..batch.num_rows() {
            let (Some(a), Some(b)) = (
                record(aa.value(j), ra.value(j)),
                record(ab.value(j), rb.value(j)),
            ) else {
                continue;
            };
            let x = figures.and_then(|s| (!s.is_null(j)).then(|| s.value(j)));
            f(a, b, x);
        }
    }
    Ok(())
}
