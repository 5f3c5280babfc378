//! Writing extracts: columns in the contract order, deterministic bytes.
//!
//! Each row group's columns are encoded in parallel, one Parquet column
//! writer per column, on a pool of as many threads as the caller's rayon
//! pool has (so a caller limited to one thread gets one here too), then
//! appended to the file in order: dictionary encoding the filter columns is
//! most of the cost of writing an extract, and one thread doing it for every
//! column held the encoder back. The bytes are
//! the same as a single `ArrowWriter` writes (same properties, same row group
//! boundaries). Never sees plaintext: it receives encoded batches only.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, StringBuilder};
use arrow_array::{ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow_buffer::{Buffer, NullBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

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

/// Rows per row group of an extract.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Streams record batches into an extract file; committed by [`ExtractWriter::finish`].
pub struct ExtractWriter {
    schema: SchemaRef,
    writer: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    /// The row group being encoded: its column writers and rows so far.
    group: Option<(Vec<ArrowColumnWriter>, usize)>,
    /// Threads that encode columns.
    pool: rayon::ThreadPool,
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
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
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
        // The Arrow writer sets up the file exactly as it would write it
        // (properties, embedded Arrow schema); its parts then write the row
        // groups column by column.
        let (writer, factory) =
            ArrowWriter::try_new(pending.file()?, schema.clone(), Some(props.build()))
                .and_then(ArrowWriter::into_serialized_writer)
                .map_err(|e| Error::parquet_write(path, e))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("bloomlink-writer-{i}"))
            .build()
            .map_err(|e| Error::Runtime(format!("cannot start the writer's threads: {e}")))?;
        Ok(ExtractWriter {
            schema,
            writer,
            factory,
            group: None,
            pool,
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
        self.write_batch(batch)
            .map_err(|e| Error::parquet_write(self.pending.path(), e))
    }

    /// Encode `batch` into the current row group, splitting it where a row
    /// group fills, and write each full row group.
    fn write_batch(&mut self, mut batch: RecordBatch) -> parquet::errors::Result<()> {
        while batch.num_rows() > 0 {
            let (writers, rows) = match &mut self.group {
                Some(g) => g,
                None => self.group.insert((
                    self.factory
                        .create_column_writers(self.writer.flushed_row_groups().len())?,
                    0,
                )),
            };
            let take = batch.num_rows().min(ROW_GROUP_ROWS - *rows);
            let part = batch.slice(0, take);
            batch = batch.slice(take, batch.num_rows() - take);
            // One leaf per column: the schema is flat.
            let fields = self.schema.fields();
            self.pool.install(|| {
                writers
                    .par_iter_mut()
                    .zip(fields.par_iter())
                    .zip(part.columns().par_iter())
                    .try_for_each(|((w, field), column)| {
                        for leaf in compute_leaves(field, column)? {
                            w.write(&leaf)?;
                        }
                        Ok::<_, parquet::errors::ParquetError>(())
                    })
            })?;
            *rows += take;
            if *rows == ROW_GROUP_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Close the current row group's column writers (in parallel) and
    /// append the row group to the file.
    fn flush(&mut self) -> parquet::errors::Result<()> {
        let Some((writers, _)) = self.group.take() else {
            return Ok(());
        };
        let chunks = self.pool.install(|| {
            writers
                .into_par_iter()
                .map(ArrowColumnWriter::close)
                .collect::<parquet::errors::Result<Vec<_>>>()
        })?;
        let mut group = self.writer.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.writer.flush()?;
        self.pending.start_writeback();
        Ok(())
    }

    /// Write the metadata and close the file; the caller commits the result.
    pub fn finish(mut self, meta: &ExtractMeta) -> Result<Pending> {
        self.flush()
            .map_err(|e| Error::parquet_write(self.pending.path(), e))?;
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
