//! Reading an agency's plaintext input (CSV or Parquet) in chunks of rows.
//!
//! CSV cells are kept as raw bytes and checked for UTF-8 when used, so one bad
//! row becomes a reject rather than aborting the file. Parquet string and
//! integer columns are read as they are; dates, time stamps, other
//! integers and categories are turned into text a batch at a time
//! (`arrow_text`). Agency side only; errors name the
//! file, row and column, never a value.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use csv::ByteRecord;
use encoding_rs::{Encoding, UTF_8};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::error::{Error, Result};

/// One cell's content.
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    /// Owned text (numbers converted from Parquet integer columns).
    Owned(String),
    /// The bytes are not valid UTF-8.
    BadUtf8,
    /// The row has fewer cells than the header.
    Absent,
}

impl Cell<'_> {
    /// The cell's text (empty for a cell without text).
    pub fn as_str(&self) -> &str {
        match self {
            Cell::Text(t) => t,
            Cell::Owned(o) => o,
            _ => "",
        }
    }
}

/// A chunk of input rows.
pub enum Chunk {
    Csv(CsvRows),
    Arrow(RecordBatch),
}

/// CSV rows stored flat: every cell's bytes end to end in one buffer, so a
/// chunk is three allocations, not three per row, and reading a cell is two
/// index lookups.
#[derive(Default)]
pub struct CsvRows {
    data: Vec<u8>,
    /// Offset in `data` just past each cell.
    ends: Vec<usize>,
    /// Per row, the index in `ends` of its first cell; then one past the
    /// last row's last cell.
    rows: Vec<usize>,
}

impl CsvRows {
    /// Remove every row.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.rows.clear();
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len().saturating_sub(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append a record's cells as a row.
    pub fn push(&mut self, rec: &ByteRecord) {
        if self.rows.is_empty() {
            self.rows.push(0);
        }
        let mut at = self.data.len();
        self.data.extend_from_slice(rec.as_slice());
        for cell in rec {
            at += cell.len();
            self.ends.push(at);
        }
        self.rows.push(self.ends.len());
    }

    /// How many cells row `row` has.
    #[inline]
    pub fn cells(&self, row: usize) -> usize {
        self.rows[row + 1] - self.rows[row]
    }

    /// Append a record's cells as a row, each decoded from `enc` to UTF-8
    /// (the CSV's structure, commas, quotes and line breaks, is ASCII in
    /// every encoding bloomlink accepts, so the record was split right).
    pub fn push_decoded(&mut self, rec: &ByteRecord, enc: &'static Encoding) {
        if self.rows.is_empty() {
            self.rows.push(0);
        }
        for cell in rec {
            let (text, _) = enc.decode_without_bom_handling(cell);
            self.data.extend_from_slice(text.as_bytes());
            self.ends.push(self.data.len());
        }
        self.rows.push(self.ends.len());
    }

    /// The bytes of cell `col` of row `row`, if the row has that many cells.
    #[inline]
    pub fn get(&self, row: usize, col: usize) -> Option<&[u8]> {
        let c = self.rows[row] + col;
        if c >= self.rows[row + 1] {
            return None;
        }
        let start = if c == 0 { 0 } else { self.ends[c - 1] };
        Some(&self.data[start..self.ends[c]])
    }
}

impl Chunk {
    /// Rows in the chunk.
    pub fn len(&self) -> usize {
        match self {
            Chunk::Csv(r) => r.len(),
            Chunk::Arrow(b) => b.num_rows(),
        }
    }

    /// Whether the chunk has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many cells row `row` has, for a CSV chunk (a Parquet row always
    /// has one per column).
    pub fn cells(&self, row: usize) -> Option<usize> {
        match self {
            Chunk::Csv(r) => Some(r.cells(row)),
            Chunk::Arrow(_) => None,
        }
    }

    /// Cell at `row`, input column `col`.
    pub fn cell(&self, row: usize, col: usize) -> Cell<'_> {
        match self {
            Chunk::Csv(r) => match r.get(row, col) {
                None => Cell::Absent,
                Some(b) => match std::str::from_utf8(b) {
                    Ok(s) => Cell::Text(s),
                    Err(_) => Cell::BadUtf8,
                },
            },
            Chunk::Arrow(b) => arrow_cell(b.column(col), row),
        }
    }
}

fn arrow_cell(a: &ArrayRef, row: usize) -> Cell<'_> {
    if a.is_null(row) {
        return Cell::Null;
    }
    match a.data_type() {
        DataType::Utf8 => Cell::Text(a.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Cell::Text(a.as_string::<i64>().value(row)),
        DataType::Utf8View => Cell::Text(a.as_string_view().value(row)),
        DataType::Int32 => Cell::Owned(a.as_primitive::<Int32Type>().value(row).to_string()),
        DataType::Int64 => Cell::Owned(a.as_primitive::<Int64Type>().value(row).to_string()),
        _ => Cell::Null,
    }
}

enum Source {
    Csv(csv::Reader<File>),
    Parquet(ParquetRecordBatchReader),
}

/// How a CSV input is written: its separator (else `,`, or a tab for
/// `.tsv`) and its text encoding (UTF-8 unless told).
#[derive(Debug, Clone, Copy)]
pub struct CsvFormat {
    pub delimiter: Option<u8>,
    pub encoding: &'static Encoding,
}

impl Default for CsvFormat {
    fn default() -> Self {
        CsvFormat {
            delimiter: None,
            encoding: UTF_8,
        }
    }
}

impl CsvFormat {
    /// The encoding named by `label` (WHATWG labels: `utf-8`,
    /// `windows-1252`, `latin1`, `iso-8859-15`...), if a CSV can be read
    /// in it: one where the separators, quotes and line breaks are ASCII
    /// bytes (not UTF-16).
    pub fn encoding_for(label: &str) -> std::result::Result<&'static Encoding, String> {
        match Encoding::for_label(label.trim().as_bytes()) {
            Some(e) if e.is_ascii_compatible() => Ok(e),
            Some(e) => Err(format!(
                "a CSV in {} cannot be read byte by byte: convert it to UTF-8 first",
                e.name()
            )),
            None => Err(format!(
                "unknown encoding `{label}`: use a name such as utf-8, windows-1252 or iso-8859-15"
            )),
        }
    }
}

/// Whether `file` starts as UTF-16 text: a UTF-16 byte-order mark, or a
/// NUL in every other byte of its start (ASCII text in UTF-16 without a
/// mark). Rewinds the file.
fn utf16(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut head = [0u8; 256];
    let n = file.read(&mut head)?;
    file.seek(SeekFrom::Start(0))?;
    let head = &head[..n & !1];
    let marked = head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]);
    let nuls = |odd: usize| {
        head.iter()
            .skip(odd)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count()
    };
    let half = head.len() / 2;
    Ok(marked || half >= 4 && (nuls(0) * 10 >= half * 9 || nuls(1) * 10 >= half * 9))
}

/// An open input file.
pub struct Input {
    path: PathBuf,
    header: Vec<String>,
    source: Source,
    /// The CSV record being read.
    record: ByteRecord,
    /// The CSV's encoding, when it is not UTF-8 (cells are decoded as read).
    decode: Option<&'static Encoding>,
    /// How a Parquet date or time stamp column is written as text, by
    /// column (else ISO `%Y-%m-%d`): in a format the fields reading it
    /// parse.
    date_formats: Vec<(usize, String)>,
}

impl Input {
    /// Open a CSV (`.csv`, `.txt`, `.tsv` is tab-separated) or Parquet
    /// (`.parquet`) file; `csv` says how a CSV is written (a Parquet file
    /// must be given the default).
    pub fn open(path: &Path, batch: usize, csv: CsvFormat) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("parquet") | Some("pq") => {
                if csv.delimiter.is_some() || csv.encoding != UTF_8 {
                    return Err(Error::input(
                        path,
                        "a separator or an encoding applies to CSV input only, not to a Parquet file",
                    ));
                }
                Self::open_parquet(path, batch)
            }
            Some("csv") | Some("txt") | Some("tsv") | None => {
                Self::open_csv(path, ext.as_deref() == Some("tsv"), csv)
            }
            Some(other) => Err(Error::input(
                path,
                format!("unknown input type `.{other}`: give a .csv, .tsv or .parquet file"),
            )),
        }
    }

    fn open_csv(path: &Path, tab: bool, csv: CsvFormat) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::read(path, e))?;
        if utf16(&mut file).map_err(|e| Error::read(path, e))? {
            return Err(Error::input(
                path,
                "the file is UTF-16 (as Excel's \"Unicode Text\" saves it), which cannot be read byte by byte: save it as \"CSV UTF-8\", or convert it to UTF-8 first",
            ));
        }
        let default = if tab { b'\t' } else { b',' };
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .delimiter(csv.delimiter.unwrap_or(default))
            .from_reader(file);
        let decode = (csv.encoding != UTF_8).then_some(csv.encoding);
        let header = rdr
            .byte_headers()
            .map_err(|e| Error::input(path, format!("cannot read the header row: {e}")))?;
        let mut names = Vec::new();
        for (i, h) in header.iter().enumerate() {
            let s = match decode {
                Some(enc) => enc.decode_without_bom_handling(h).0,
                None => std::str::from_utf8(h)
                    .map_err(|_| {
                        Error::input(
                            path,
                            format!(
                                "header column {} is not valid UTF-8: give the file's encoding (--encoding windows-1252, say)",
                                i + 1
                            ),
                        )
                    })?
                    .into(),
            };
            names.push(s.trim_start_matches('\u{feff}').trim().to_string());
        }
        if names.iter().all(|n| n.is_empty()) {
            return Err(Error::input(path, "the file is empty or has no header row"));
        }
        Ok(Input {
            path: path.to_path_buf(),
            header: names,
            source: Source::Csv(rdr),
            record: ByteRecord::new(),
            decode,
            date_formats: Vec::new(),
        })
    }

    fn open_parquet(path: &Path, batch: usize) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::read(path, e))?;
        let b = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::parquet_read(path, e))?;
        let header = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let reader = b
            .with_batch_size(batch)
            .build()
            .map_err(|e| Error::parquet_read(path, e))?;
        Ok(Input {
            path: path.to_path_buf(),
            header,
            source: Source::Parquet(reader),
            record: ByteRecord::new(),
            decode: None,
            date_formats: Vec::new(),
        })
    }

    /// Write Parquet date and time stamp column `c` as text in `format`
    /// (a chrono format with a four-digit year, so that it parses back to
    /// the same date).
    pub fn date_format(&mut self, c: usize, format: &str) {
        if !self.date_formats.iter().any(|(d, _)| *d == c) {
            self.date_formats.push((c, format.to_string()));
        }
    }

    /// Column names.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The input path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read up to `max` rows into `chunk` (reusing its buffers); `false` at end.
    pub fn next_chunk(&mut self, max: usize, chunk: &mut Chunk, used: &[usize]) -> Result<bool> {
        match &mut self.source {
            Source::Csv(rdr) => {
                if !matches!(chunk, Chunk::Csv(_)) {
                    *chunk = Chunk::Csv(CsvRows::default());
                }
                let Chunk::Csv(rows) = chunk else {
                    unreachable!("set above")
                };
                rows.clear();
                let rec = &mut self.record;
                let mut n = 0;
                while n < max {
                    let more = rdr.read_byte_record(rec).map_err(|e| {
                        let at = e
                            .position()
                            .map(|p| format!("line {}", p.line()))
                            .unwrap_or_else(|| "an unknown line".into());
                        Error::input(
                            &self.path,
                            format!("CSV is malformed at {at}: {}", csv_kind(&e)),
                        )
                    })?;
                    if !more {
                        break;
                    }
                    match self.decode {
                        Some(enc) => rows.push_decoded(rec, enc),
                        None => rows.push(rec),
                    }
                    n += 1;
                }
                Ok(n > 0)
            }
            Source::Parquet(reader) => match reader.next() {
                None => Ok(false),
                Some(b) => {
                    let mut b = b.map_err(|e| Error::parquet_read(&self.path, e))?;
                    // Dates, time stamps, other integers and categories
                    // become text, a column at a time; the batch is
                    // rebuilt only when one did.
                    let mut text: Option<(Vec<Field>, Vec<ArrayRef>)> = None;
                    for &c in used {
                        let a = b.column(c);
                        if let Some(why) = super::arrow_text::unreadable(a.data_type()) {
                            return Err(Error::input(
                                &self.path,
                                format!("column `{}`: {why}", self.header[c]),
                            ));
                        }
                        let format = self
                            .date_formats
                            .iter()
                            .find(|(d, _)| *d == c)
                            .map_or("%Y-%m-%d", |(_, f)| f.as_str());
                        if let Some(t) = super::arrow_text::to_text(a, format) {
                            let (fields, columns) = text.get_or_insert_with(|| {
                                let f = b.schema().fields().iter().map(|f| (**f).clone()).collect();
                                (f, b.columns().to_vec())
                            });
                            columns[c] = t;
                            fields[c] = Field::new(fields[c].name(), DataType::Utf8, true);
                        }
                    }
                    if let Some((fields, columns)) = text {
                        b = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                            .map_err(|e| Error::parquet_read(&self.path, e))?;
                    }
                    *chunk = Chunk::Arrow(b);
                    Ok(true)
                }
            },
        }
    }
}

/// Describe a CSV error without echoing any cell content.
fn csv_kind(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => format!("read error: {io}"),
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields where {expected_len} were expected")
        }
        _ => "unparseable record".into(),
    }
}
