//! Writing extracts: columns in the contract order, deterministic bytes.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, StringBuilder};
use arrow_array::{ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow_buffer::{Buffer, NullBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::{BLOCK_KEY_BYTES, ExtractMeta};
use crate::error::{Error, Result};
use crate::io::Pending;

/// Column buffers for one batch of encoded records.
pub struct OwnedBatch {
    pub ids: StringBuilder,
    pub clk: Vec<u8>,
    /// Per field: filter bytes (zeros where null) and validity.
    pub fields: Vec<(Vec<u8>, Vec<bool>)>,
    /// Per blocking key: key bytes (zeros where null) and validity.
    pub blocks: Vec<(Vec<u8>, Vec<bool>)>,
    pub strata: Vec<StringBuilder>,
}

impl OwnedBatch {
    /// Empty buffers for the given numbers of columns.
    pub fn new(fields: usize, blocks: usize, strata: usize) -> Self {
        OwnedBatch {
            ids: StringBuilder::new(),
            clk: Vec::new(),
            fields: (0..fields).map(|_| Default::default()).collect(),
            blocks: (0..blocks).map(|_| Default::default()).collect(),
            strata: (0..strata).map(|_| StringBuilder::new()).collect(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn fsb(size: usize, bytes: Vec<u8>, valid: Option<Vec<bool>>) -> ArrayRef {
    let nulls = valid.and_then(|v| {
        if v.iter().all(|&b| b) {
            None
        } else {
            Some(NullBuffer::from(v))
        }
    });
    Arc::new(FixedSizeBinaryArray::new(
        size as i32,
        Buffer::from_vec(bytes),
        nulls,
    ))
}

/// Streams record batches into an extract file; committed by [`ExtractWriter::finish`].
pub struct ExtractWriter {
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    pending: Pending,
    clk_bytes: usize,
    field_bytes: usize,
}

impl ExtractWriter {
    /// Start an extract at `path` with the given column names and sizes.
    pub fn create(
        path: &Path,
        clk_bits: u32,
        field_bits: u32,
        fields: &[String],
        blocks: &[String],
        strata: &[String],
    ) -> Result<Self> {
        let clk_bytes = clk_bits as usize / 8;
        let field_bytes = field_bits as usize / 8;
        let mut cols = vec![
            Field::new("record_id", DataType::Utf8, false),
            Field::new("clk", DataType::FixedSizeBinary(clk_bytes as i32), false),
        ];
        for f in fields {
            cols.push(Field::new(
                format!("f_{f}"),
                DataType::FixedSizeBinary(field_bytes as i32),
                true,
            ));
        }
        for b in blocks {
            cols.push(Field::new(
                format!("bk_{b}"),
                DataType::FixedSizeBinary(BLOCK_KEY_BYTES as i32),
                true,
            ));
        }
        for s in strata {
            cols.push(Field::new(format!("s_{s}"), DataType::Utf8, true));
        }
        let schema = Arc::new(Schema::new(cols));
        let mut props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(64 * 1024))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_compression(Compression::UNCOMPRESSED)
            .set_column_compression(ColumnPath::from("record_id"), Compression::SNAPPY);
        for s in strata {
            props = props.set_column_dictionary_enabled(ColumnPath::from(format!("s_{s}")), true);
        }
        // Field filters and blocking keys repeat (a name's filter is the same
        // in every record holding that name): dictionary pages store each
        // distinct value once per row group, which makes a native extract
        // a third smaller and a clkhash-schema one 3× smaller (about 8%
        // more encode CPU; docs/decisions.md §13). A column with too many
        // distinct values falls back to plain pages by itself (parquet's
        // dictionary size limit).
        for f in fields {
            props = props.set_column_dictionary_enabled(ColumnPath::from(format!("f_{f}")), true);
        }
        for b in blocks {
            props = props.set_column_dictionary_enabled(ColumnPath::from(format!("bk_{b}")), true);
        }
        let pending = Pending::create(path)?;
        let writer = ArrowWriter::try_new(pending.file()?, schema.clone(), Some(props.build()))
            .map_err(|e| Error::parquet_write(path, e))?;
        Ok(ExtractWriter {
            schema,
            writer,
            pending,
            clk_bytes,
            field_bytes,
        })
    }

    /// Append one batch.
    pub fn write(&mut self, mut b: OwnedBatch) -> Result<()> {
        let n = b.len();
        if n == 0 {
            return Ok(());
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(b.ids.finish()),
            fsb(self.clk_bytes, std::mem::take(&mut b.clk), None),
        ];
        for (bytes, valid) in b.fields.drain(..) {
            cols.push(fsb(self.field_bytes, bytes, Some(valid)));
        }
        for (bytes, valid) in b.blocks.drain(..) {
            cols.push(fsb(BLOCK_KEY_BYTES, bytes, Some(valid)));
        }
        for mut s in b.strata.drain(..) {
            cols.push(Arc::new(s.finish()));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| Error::parquet_write(self.pending.path(), e))?;
        self.writer
            .write(&batch)
            .map_err(|e| Error::parquet_write(self.pending.path(), e))
    }

    /// Write the metadata and close the file; the caller commits the result.
    pub fn finish(mut self, meta: &ExtractMeta) -> Result<Pending> {
        for (k, v) in meta.key_values() {
            self.writer
                .append_key_value_metadata(KeyValue::new(k, Some(v)));
        }
        self.writer
            .close()
            .map_err(|e| Error::parquet_write(self.pending.path(), e))?;
        Ok(self.pending)
    }
}
