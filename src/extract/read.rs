//! Reading extracts into packed arenas: filters as contiguous `u64` words,
//! record ids as one string buffer with offsets, strata dictionary-coded.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, FixedSizeBinaryArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::bloom::extend_words;
use crate::error::{Error, Result};

/// Record ids packed in one buffer.
#[derive(Debug, Default, Clone)]
pub struct IdColumn {
    bytes: String,
    ends: Vec<usize>,
}

impl IdColumn {
    /// Append an id.
    pub fn push(&mut self, id: &str) {
        self.bytes.push_str(id);
        self.ends.push(self.bytes.len());
    }
    /// Id `i`.
    pub fn get(&self, i: usize) -> &str {
        let s = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[s..self.ends[i]]
    }
    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// A nullable filter column as packed words.
#[derive(Debug, Clone)]
pub struct FilterColumn {
    pub name: String,
    /// Words per filter.
    pub words: usize,
    pub data: Vec<u64>,
    pub valid: Vec<bool>,
}

impl FilterColumn {
    /// Filter `i`'s words (zeros when null).
    #[inline]
    pub fn get(&self, i: usize) -> &[u64] {
        &self.data[i * self.words..(i + 1) * self.words]
    }
}

/// A nullable blocking-key column.
#[derive(Debug, Clone)]
pub struct KeyColumn {
    pub name: String,
    /// Key per record; none where null.
    pub keys: Keys,
}

/// A 128-bit key per record, or none: 17 bytes a record, where an
/// `Option<u128>` takes 32 (its tag pads to the key's 16-byte alignment).
/// A record without a key holds 0 in `values`, so equal columns compare
/// equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    values: Vec<u128>,
    present: Vec<bool>,
}

impl Keys {
    /// No keys yet, with room for `n`.
    pub fn with_capacity(n: usize) -> Keys {
        Keys {
            values: Vec::with_capacity(n),
            present: Vec::with_capacity(n),
        }
    }

    /// Add the next record's key.
    #[inline]
    pub fn push(&mut self, key: Option<u128>) {
        self.values.push(key.unwrap_or(0));
        self.present.push(key.is_some());
    }

    /// Record `g`'s key.
    #[inline]
    pub fn get(&self, g: usize) -> Option<u128> {
        self.present[g].then(|| self.values[g])
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.present.len()
    }

    pub fn is_empty(&self) -> bool {
        self.present.is_empty()
    }

    /// Each record's key, in record order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<u128>> + '_ {
        self.values
            .iter()
            .zip(&self.present)
            .map(|(&k, &p)| p.then_some(k))
    }

    /// Move `other`'s records to the end of these.
    pub fn append(&mut self, other: &mut Keys) {
        self.values.append(&mut other.values);
        self.present.append(&mut other.present);
    }

    /// The same keys where `keep(g)` holds, none elsewhere.
    pub fn keep(&self, keep: impl Fn(usize) -> bool + Sync) -> Keys {
        use rayon::prelude::*;
        let present: Vec<bool> = self
            .present
            .par_iter()
            .enumerate()
            .map(|(g, &p)| p && keep(g))
            .collect();
        let values = self
            .values
            .par_iter()
            .zip(&present)
            .map(|(&k, &p)| if p { k } else { 0 })
            .collect();
        Keys { values, present }
    }
}

impl FromIterator<Option<u128>> for Keys {
    fn from_iter<I: IntoIterator<Item = Option<u128>>>(iter: I) -> Keys {
        let iter = iter.into_iter();
        let mut k = Keys::with_capacity(iter.size_hint().0);
        for key in iter {
            k.push(key);
        }
        k
    }
}

/// A nullable stratum column, dictionary coded.
#[derive(Debug, Clone)]
pub struct StrataColumn {
    pub name: String,
    pub labels: Vec<String>,
    pub codes: Vec<Option<u32>>,
}

/// An extract loaded for linking.
#[derive(Debug, Clone)]
pub struct Extract {
    pub path: PathBuf,
    pub meta: ExtractMeta,
    pub len: usize,
    pub ids: IdColumn,
    pub clk: FilterColumn,
    pub fields: Vec<FilterColumn>,
    pub blocks: Vec<KeyColumn>,
    pub strata: Vec<StrataColumn>,
}

/// Read only an extract's metadata, checking it is a bloomlink extract.
pub fn read_meta(path: &Path) -> Result<(ExtractMeta, usize)> {
    crate::io::guard_decoder(path, || read_meta_unguarded(path))
}

fn read_meta_unguarded(path: &Path) -> Result<(ExtractMeta, usize)> {
    let file = File::open(path).map_err(|e| Error::read(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet_read(path, e))?;
    let md = builder.metadata();
    let rows = md.file_metadata().num_rows() as usize;
    let mut kv: HashMap<&str, &str> = HashMap::new();
    if let Some(list) = md.file_metadata().key_value_metadata() {
        for e in list {
            if let Some(v) = &e.value {
                kv.insert(e.key.as_str(), v.as_str());
            }
        }
    }
    let get = |k: &str| -> Result<String> {
        kv.get(k).map(|s| s.to_string()).ok_or_else(|| {
            Error::input(
                path,
                format!("not a bloomlink extract: metadata key `{k}` is missing (make extracts with `bloomlink encode`)"),
            )
        })
    };
    // Another bloomlink file given where an extract belongs says what it
    // is (from its metadata's keys only).
    if !kv.contains_key(META_FORMAT_VERSION) {
        let what = if let Some(agency) = kv.get(super::META_PAYLOAD_OF) {
            Some(format!(
                "it is agency `{agency}`'s payload file (`encode --payload-output`), which stays with the agency; the extract is the file `encode --output` wrote"
            ))
        } else if kv.contains_key(super::META_REFRESH_STATE) {
            Some("it is a link run's refresh-state.parquet, not an extract".to_string())
        } else if kv.contains_key(super::META_DEDUP) {
            Some(
                "it is a link run's output (links.parquet or pairs.parquet), not an extract"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Error::input(
                path,
                format!("not a bloomlink extract: {what}"),
            ));
        }
    }
    let format_version = get(META_FORMAT_VERSION)?;
    if format_version != FORMAT_VERSION {
        return Err(Error::input(
            path,
            format!(
                "extract format version {format_version} is not supported by this bloomlink (reads {FORMAT_VERSION})"
            ),
        ));
    }
    let schema_json = get(META_SCHEMA)?;
    let schema: SchemaSummary = serde_json::from_str(&schema_json).map_err(|e| {
        Error::input(
            path,
            format!("metadata `{META_SCHEMA}` is not a valid schema: {e}"),
        )
    })?;
    let counts: Counts = serde_json::from_str(&get(META_COUNTS)?)
        .map_err(|e| Error::input(path, format!("metadata `{META_COUNTS}` is not valid: {e}")))?;
    Ok((
        ExtractMeta {
            format_version,
            version: get(META_VERSION)?,
            agency: get(META_AGENCY)?,
            fingerprint: get(META_FINGERPRINT)?,
            key_check: get(META_KEY_CHECK)?,
            schema_json,
            counts,
            schema,
        },
        rows,
    ))
}

fn fsb_col<'a>(
    path: &Path,
    batch: &'a arrow_array::RecordBatch,
    name: &str,
    bytes: usize,
) -> Result<&'a FixedSizeBinaryArray> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| Error::input(path, format!("column `{name}` is missing")))?;
    match col.data_type() {
        DataType::FixedSizeBinary(n) if *n as usize == bytes => Ok(col.as_fixed_size_binary()),
        t => Err(Error::input(
            path,
            format!("column `{name}` has type {t}, expected FixedSizeBinary({bytes})"),
        )),
    }
}

fn push_filters(col: &mut FilterColumn, arr: &FixedSizeBinaryArray) {
    let bytes = col.words * 8;
    let values = arr.value_data();
    col.data.reserve(arr.len() * col.words);
    for i in 0..arr.len() {
        let valid = arr.is_valid(i);
        col.valid.push(valid);
        if valid {
            extend_words(&mut col.data, &values[i * bytes..(i + 1) * bytes]);
        } else {
            col.data.extend(std::iter::repeat_n(0u64, col.words));
        }
    }
}

/// Read a whole extract into packed arenas, checking its layout.
pub fn read_extract(path: &Path) -> Result<Extract> {
    crate::io::guard_decoder(path, || read_extract_unguarded(path))
}

fn read_extract_unguarded(path: &Path) -> Result<Extract> {
    let (meta, rows) = read_meta(path)?;
    let s = &meta.schema;
    if s.clk_bits == 0 || s.clk_bits % 64 != 0 || s.field_bits % 64 != 0 {
        return Err(Error::input(
            path,
            "schema metadata has invalid filter sizes",
        ));
    }
    let clk_bytes = s.clk_bits as usize / 8;
    let field_bytes = s.field_bits as usize / 8;
    let file = File::open(path).map_err(|e| Error::read(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::parquet_read(path, e))?
        .with_batch_size(32 * 1024)
        .build()
        .map_err(|e| Error::parquet_read(path, e))?;
    let filter = |name: &str, bytes: usize| FilterColumn {
        name: name.to_string(),
        words: bytes / 8,
        data: Vec::new(),
        valid: Vec::new(),
    };
    let mut ids = IdColumn::default();
    let mut clk = filter("clk", clk_bytes);
    clk.data.reserve(rows * clk.words);
    let mut fields: Vec<FilterColumn> = s
        .fields
        .iter()
        .map(|f| filter(&f.name, field_bytes))
        .collect();
    let mut blocks: Vec<KeyColumn> = s
        .blocking
        .iter()
        .map(|b| KeyColumn {
            name: b.name.clone(),
            keys: Keys::with_capacity(rows),
        })
        .collect();
    let mut strata: Vec<StrataColumn> = s
        .strata
        .iter()
        .map(|x| StrataColumn {
            name: x.name.clone(),
            labels: Vec::new(),
            codes: Vec::with_capacity(rows),
        })
        .collect();
    let mut strata_dicts: Vec<HashMap<String, u32>> = vec![HashMap::new(); strata.len()];
    for batch in reader {
        let batch = batch.map_err(|e| Error::parquet_read(path, e))?;
        let idcol = batch
            .column_by_name("record_id")
            .ok_or_else(|| Error::input(path, "column `record_id` is missing"))?;
        if idcol.data_type() != &DataType::Utf8 || idcol.null_count() > 0 {
            return Err(Error::input(
                path,
                "column `record_id` must be non-null Utf8",
            ));
        }
        for v in idcol.as_string::<i32>().iter() {
            ids.push(v.unwrap_or_default());
        }
        let c = fsb_col(path, &batch, "clk", clk_bytes)?;
        if c.null_count() > 0 {
            return Err(Error::input(path, "column `clk` has nulls"));
        }
        push_filters(&mut clk, c);
        for f in &mut fields {
            let c = fsb_col(path, &batch, &format!("f_{}", f.name), field_bytes)?;
            push_filters(f, c);
        }
        for b in &mut blocks {
            let c = fsb_col(path, &batch, &format!("bk_{}", b.name), BLOCK_KEY_BYTES)?;
            for i in 0..c.len() {
                b.keys.push(
                    c.is_valid(i)
                        .then(|| u128::from_le_bytes(c.value(i).try_into().expect("16 bytes"))),
                );
            }
        }
        for (st, dict) in strata.iter_mut().zip(&mut strata_dicts) {
            let name = format!("s_{}", st.name);
            let col = batch
                .column_by_name(&name)
                .ok_or_else(|| Error::input(path, format!("column `{name}` is missing")))?;
            if col.data_type() != &DataType::Utf8 {
                return Err(Error::input(path, format!("column `{name}` must be Utf8")));
            }
            for v in col.as_string::<i32>().iter() {
                st.codes.push(v.map(|v| {
                    let next = dict.len() as u32;
                    *dict.entry(v.to_string()).or_insert_with(|| {
                        st.labels.push(v.to_string());
                        next
                    })
                }));
            }
        }
    }
    let len = ids.len();
    Ok(Extract {
        path: path.to_path_buf(),
        meta,
        len,
        ids,
        clk,
        fields,
        blocks,
        strata,
    })
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn keys_hold_each_record_s_key_or_none() {
        let given = [Some(7u128), None, Some(u128::MAX), Some(0), None];
        let mut k: Keys = given.iter().copied().collect();
        assert_eq!(k.len(), 5);
        assert_eq!(k.iter().collect::<Vec<_>>(), given);
        assert_eq!((0..5).map(|g| k.get(g)).collect::<Vec<_>>(), given);
        // A key of 0 is a key, not a missing one.
        assert_eq!(k.get(3), Some(0));
        let mut more: Keys = [None, Some(9u128)].into_iter().collect();
        k.append(&mut more);
        assert!(more.is_empty());
        assert_eq!(k.iter().skip(5).collect::<Vec<_>>(), [None, Some(9)]);
        // Keeping even records drops the odd ones' keys, and a kept
        // column equals one built with those keys alone.
        let even = k.keep(|g| g % 2 == 0);
        let expect: Keys = k
            .iter()
            .enumerate()
            .map(|(g, x)| x.filter(|_| g % 2 == 0))
            .collect();
        assert_eq!(even, expect);
        assert_eq!(
            even.iter().collect::<Vec<_>>(),
            [Some(7), None, Some(u128::MAX), None, None, None, Some(9)]
        );
    }
}
