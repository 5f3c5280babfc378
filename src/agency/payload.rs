//! The payload file: non-identifying columns kept apart from identifiers,
//! keyed only by record id (the separation principle). Only rows that were
//! encoded are written. Agency side; the payload never goes to the hub.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::encode::Reject;
use super::input::{Cell, Chunk};
use crate::error::{Error, Result};
use crate::io::Pending;

/// Writes `record_id` plus the payload columns as text.
pub struct PayloadWriter {
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    pending: Pending,
    /// Per column, its first [`SAMPLE`] values, for [`Self::identifying`].
    samples: Vec<Vec<String>>,
}

/// Values per payload column looked at for signs of an identifier (as many
/// as `bloomlink release` looks at).
const SAMPLE: usize = 500;

impl PayloadWriter {
    /// Start a payload file.
    pub fn create(path: &Path, columns: &[String], agency: &str) -> Result<Self> {
        let mut fields = vec![Field::new("record_id", DataType::Utf8, false)];
        for c in columns {
            if c == "record_id" {
                return Err(Error::Usage(
                    "a payload column may not be called `record_id`".into(),
                ));
            }
            fields.push(Field::new(c, DataType::Utf8, true));
        }
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(vec![
                KeyValue::new(
                    crate::extract::META_PAYLOAD_OF.into(),
                    Some(agency.to_string()),
                ),
                KeyValue::new(
                    "bloomlink.version".into(),
                    Some(env!("CARGO_PKG_VERSION").to_string()),
                ),
            ]))
            .build();
        let pending = Pending::create(path)?;
        let writer = ArrowWriter::try_new(pending.file()?, schema.clone(), Some(props))
            .map_err(|e| Error::parquet_write(path, e))?;
        Ok(PayloadWriter {
            schema,
            writer,
            pending,
            samples: vec![Vec::new(); columns.len()],
        })
    }

    /// Write the payload of `rows` of `chunk`.
    pub fn write(
        &mut self,
        chunk: &Chunk,
        cols: &[usize],
        rows: &[usize],
        ids: &[std::result::Result<String, Reject>],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut id = StringBuilder::new();
        let mut builders: Vec<StringBuilder> = cols.iter().map(|_| StringBuilder::new()).collect();
        for &r in rows {
            id.append_value(ids[r].as_ref().map(String::as_str).unwrap_or_default());
            for ((b, &c), sample) in builders.iter_mut().zip(cols).zip(&mut self.samples) {
                match chunk.cell(r, c) {
                    Cell::Text(t) => {
                        b.append_value(t);
                        if sample.len() < SAMPLE {
                            sample.push(t.to_string());
                        }
                    }
                    Cell::Owned(t) => {
                        b.append_value(&t);
                        if sample.len() < SAMPLE {
                            sample.push(t);
                        }
                    }
                    _ => b.append_null(),
                }
            }
        }
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(id.finish())];
        arrays.extend(
            builders
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| Error::parquet_write(self.pending.path(), e))?;
        self.writer
            .write(&batch)
            .map_err(|e| Error::parquet_write(self.pending.path(), e))
    }

    /// The payload columns that look identifying, with why (never a
    /// value): `bloomlink release` refuses them unless allowed.
    pub fn identifying(&self) -> Vec<(String, String)> {
        self.schema.fields()[1..]
            .iter()
            .zip(&self.samples)
            .filter_map(|(f, sample)| {
                let values: Vec<&str> = sample.iter().map(String::as_str).collect();
                crate::identify::identifying_reason(f.name(), &values)
                    .map(|why| (f.name().clone(), why))
            })
            .collect()
    }

    /// Close the file; the caller commits it.
    pub fn finish(self) -> Result<Pending> {
        self.writer
            .close()
            .map_err(|e| Error::parquet_write(self.pending.path(), e))?;
        Ok(self.pending)
    }
}
