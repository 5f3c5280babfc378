//! The encoder's output does not depend on how its input is cut or stored.
//!
//! Values are cached per thread in flat tables, looked up field by field
//! down a slice of rows, and a row's reject is decided before any of its
//! output is written. Chunks of 3, 1,000 and 65,536 rows (slices and caches
//! cut in different places, rejects at slice edges, salted fields whose
//! salt comes from another column) must give the same extract and rejects
//! file, byte for byte, and the counts must reconcile. The same rows as a
//! Parquet file (text columns, an integer column, nulls for empty cells)
//! must give the same bytes as the CSV.

use std::path::Path;

use bloomlink::agency::{EncodeOptions, Encoder, Schema, Secret};

/// A synthetic social care extract of `people` rows, written under `dir`.
fn synthetic_csv(dir: &Path, people: usize, seed: u64) -> std::path::PathBuf {
    let s = bloomlink::synth::generate(&bloomlink::synth::Params {
        people,
        agencies: 1,
        seed,
        overlap: 1.0,
    });
    let paths = bloomlink::synth::write(&s, &dir.join("synth"), seed).unwrap();
    paths[0].clone()
}

/// The synthetic social care extract with rows that must be rejected: a
/// repeated id, a row with fewer cells than the header, a date that is not
/// a date, and cells that are not UTF-8.
fn input(dir: &Path) -> (Vec<u8>, usize) {
    let text = std::fs::read_to_string(synthetic_csv(dir, 5000, 3)).unwrap();
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    assert!(lines[0].starts_with(b"child_id,forename,surname,dob,"));
    let dup = lines[10].clone();
    lines.insert(1000, dup);
    lines.insert(2, b"SCX0001,Ann".to_vec());
    lines.insert(
        1001,
        b"SCX0002,Ann,Lee,31/02/2011,F,L1 1AA,1 Road,white,3,CIN".to_vec(),
    );
    let mut bad = b"SCX0003,".to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(b",Lee,01/02/2011,F,L1 1AA,1 Road,white,3,CIN");
    lines.insert(4096, bad);
    let rows = lines.len() - 1;
    (lines.join(&b'\n'), rows)
}

#[test]
fn chunk_size_does_not_change_the_extract() {
    let d = tempfile::tempdir().unwrap();
    let (csv, rows) = input(d.path());
    let path = d.path().join("social_care.csv");
    std::fs::write(&path, csv).unwrap();
    let sp = d.path().join("social_care.toml");
    std::fs::write(&sp, bloomlink::synth::profile(0).schema).unwrap();
    let schema_text = std::fs::read_to_string(&sp).unwrap();
    assert!(
        schema_text.contains("salt ="),
        "the test needs a salted schema"
    );
    let mut outputs = Vec::new();
    for chunk_rows in [3, 1000, 64 * 1024] {
        let enc = Encoder::new(
            Schema::load(&sp).unwrap(),
            &Secret::from_bytes(b"chunks".to_vec()).unwrap(),
        )
        .unwrap();
        let out = d.path().join(format!("out{chunk_rows}.parquet"));
        let opts = EncodeOptions {
            chunk_rows,
            ..EncodeOptions::new("social_care")
        };
        let r = enc.encode_file(&path, &out, &opts).unwrap();
        assert_eq!(r.counts.rows_read, rows as u64);
        assert_eq!(r.counts.rows_read, r.counts.encoded + r.counts.rejected);
        assert_eq!(r.counts.duplicate_ids, 1);
        // The repeat, the short row, the impossible date, the bad bytes.
        assert!(r.counts.rejected >= 4, "{:?}", r.counts);
        let rejects = std::fs::read_to_string(&r.rejects).unwrap();
        for id in ["SCX0002", "SCX0003"] {
            assert!(rejects.contains(id), "{id} is not among the rejects");
        }
        // The short row is rejected whole, by its row number: its cells,
        // the id among them, may not be where the header says.
        assert!(
            rejects
                .lines()
                .any(|l| l.starts_with("2,,(whole row),\"the row has 2 cells where the header has")),
            "{rejects}"
        );
        assert!(!rejects.contains("SCX0001"), "{rejects}");
        outputs.push((
            std::fs::read(&out).unwrap(),
            rejects,
            r.counts.encoded,
            r.counts.rejected,
        ));
    }
    for o in &outputs[1..] {
        assert_eq!(o.2, outputs[0].2, "encoded counts differ");
        assert_eq!(o.3, outputs[0].3, "rejected counts differ");
        assert_eq!(o.1, outputs[0].1, "rejects files differ");
        assert!(o.0 == outputs[0].0, "extracts differ");
    }
}

/// `rows` (header first) as a Parquet file: text columns as strings (an
/// empty cell as a null), `int_column` as 64-bit integers, `float_column`
/// (if any) as 1.5 in every row.
fn write_parquet(path: &Path, rows: &[Vec<String>], int_column: &str, float_column: Option<&str>) {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema as ArrowSchema};

    let header = &rows[0];
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (c, name) in header.iter().enumerate() {
        let cells = rows[1..].iter().map(|r| r.get(c).filter(|v| !v.is_empty()));
        if Some(name.as_str()) == float_column {
            fields.push(Field::new(name, DataType::Float64, true));
            columns.push(Arc::new(Float64Array::from(vec![1.5; rows.len() - 1])));
        } else if name == int_column {
            fields.push(Field::new(name, DataType::Int64, true));
            let v: Int64Array = cells
                .map(|v| v.map(|v| v.parse::<i64>().unwrap()))
                .collect();
            columns.push(Arc::new(v));
        } else {
            fields.push(Field::new(name, DataType::Utf8, true));
            let v: StringArray = cells.map(|v| v.map(String::as_str)).collect();
            columns.push(Arc::new(v));
        }
    }
    write_batch(
        path,
        &RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns).unwrap(),
    );
}

/// `batch` as a Parquet file at `path`.
fn write_batch(path: &Path, batch: &arrow_array::RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_input_encodes_as_the_same_csv() {
    let d = tempfile::tempdir().unwrap();
    let mut rdr = csv::Reader::from_path(synthetic_csv(d.path(), 2000, 4)).unwrap();
    let mut rows: Vec<Vec<String>> =
        vec![rdr.headers().unwrap().iter().map(String::from).collect()];
    for r in rdr.records() {
        rows.push(r.unwrap().iter().map(String::from).collect());
    }
    assert_eq!(rows[0][3], "dob");
    // A repeated id and an impossible date: rejects either way.
    rows.insert(50, rows[7].clone());
    let mut bad = rows[9].clone();
    bad[0] = "SCX0009".into();
    bad[3] = "31/02/2011".into();
    rows.insert(60, bad);
    let csv_path = d.path().join("social_care.csv");
    let mut w = csv::Writer::from_path(&csv_path).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let pq_path = d.path().join("social_care.parquet");
    write_parquet(&pq_path, &rows, "imd_decile", None);
    let sp = d.path().join("social_care.toml");
    std::fs::write(&sp, bloomlink::synth::profile(0).schema).unwrap();
    let enc = Encoder::new(
        Schema::load(&sp).unwrap(),
        &Secret::from_bytes(b"parquet input".to_vec()).unwrap(),
    )
    .unwrap();
    let mut outs = Vec::new();
    for (name, input) in [("csv", &csv_path), ("pq", &pq_path)] {
        let out = d.path().join(format!("out_{name}.parquet"));
        let r = enc
            .encode_file(input, &out, &EncodeOptions::new("social_care"))
            .unwrap();
        assert_eq!(r.counts.rows_read, rows.len() as u64 - 1);
        assert_eq!(r.counts.rejected, 2, "{:?}", r.counts);
        outs.push((
            std::fs::read(&out).unwrap(),
            std::fs::read_to_string(&r.rejects).unwrap(),
        ));
    }
    assert_eq!(outs[0].1, outs[1].1, "rejects differ");
    assert!(outs[0].0 == outs[1].0, "extracts differ");
    // A column of another type is refused by name, with no output.
    let bad_pq = d.path().join("float.parquet");
    write_parquet(&bad_pq, &rows[..3], "imd_decile", Some("dob"));
    let out = d.path().join("out_bad.parquet");
    let e = enc
        .encode_file(&bad_pq, &out, &EncodeOptions::new("social_care"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`dob`") && e.contains("Float64"), "{e}");
    assert!(!out.exists());
}

/// Parquet columns as the usual exports type them encode exactly as the
/// same values in a CSV: a date of birth as a `Date32` (a SQL `date`) or a
/// `Timestamp(ns)` (pandas), or a `Timestamp(ns, Europe/London)` at local
/// midnight, written in the field's own format before it is parsed; a
/// coded column as a dictionary (a pandas categorical); a
/// small integer as `UInt8`.
#[test]
fn typed_parquet_columns_encode_as_their_text() {
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{
        ArrayRef, Date32Array, DictionaryArray, RecordBatch, StringArray, TimestampNanosecondArray,
        UInt8Array,
    };
    use arrow_schema::{Field, Schema as ArrowSchema};

    let d = tempfile::tempdir().unwrap();
    let mut rdr = csv::Reader::from_path(synthetic_csv(d.path(), 1500, 8)).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (dob, gender, imd) = (col("dob"), col("gender"), col("imd_decile"));
    let date = |v: &str| chrono::NaiveDate::parse_from_str(v, "%d/%m/%Y").ok();
    // Rows whose date of birth a Date32 can hold (a date, or none): an
    // impossible date has no typed form.
    let rows: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect::<Vec<_>>())
        .filter(|r: &Vec<String>| r[dob].is_empty() || date(&r[dob]).is_some())
        .collect();
    assert!(rows.len() > 1000);
    assert!(rows.iter().any(|r| r[dob].is_empty()));
    let csv_path = d.path().join("in.csv");
    let mut w = csv::Writer::from_path(&csv_path).unwrap();
    w.write_record(&header).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let cells = |c: usize| {
        rows.iter()
            .map(move |r| Some(r[c].as_str()).filter(|v| !v.is_empty()))
    };
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let days = || cells(dob).map(|v| v.map(|v| (date(v).unwrap() - epoch).num_days()));
    let typed = |dob_column: ArrayRef| {
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (c, name) in header.iter().enumerate() {
            let a: ArrayRef = if c == dob {
                dob_column.clone()
            } else if c == gender {
                Arc::new(cells(c).collect::<DictionaryArray<Int32Type>>())
            } else if c == imd {
                Arc::new(
                    cells(c)
                        .map(|v| v.map(|v| v.parse::<u8>().unwrap()))
                        .collect::<UInt8Array>(),
                )
            } else {
                Arc::new(cells(c).collect::<StringArray>())
            };
            fields.push(Field::new(name, a.data_type().clone(), true));
            columns.push(a);
        }
        RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns).unwrap()
    };
    let date32: ArrayRef = Arc::new(days().map(|v| v.map(|v| v as i32)).collect::<Date32Array>());
    let stamps: ArrayRef = Arc::new(
        days()
            .map(|v| v.map(|v| v * 86_400 * 1_000_000_000))
            .collect::<TimestampNanosecondArray>(),
    );
    // pandas' `datetime64[ns, Europe/London]`: local midnight, an hour
    // before UTC's in summer time.
    let london: arrow_array::timezone::Tz = "Europe/London".parse().unwrap();
    let zoned: ArrayRef = Arc::new(
        cells(dob)
            .map(|v| {
                v.map(|v| {
                    use chrono::TimeZone;
                    let midnight = date(v).unwrap().and_hms_opt(0, 0, 0).unwrap();
                    let t = london.from_local_datetime(&midnight).single().unwrap();
                    t.timestamp() * 1_000_000_000
                })
            })
            .collect::<TimestampNanosecondArray>()
            .with_timezone("Europe/London"),
    );
    let sp = d.path().join("social_care.toml");
    std::fs::write(&sp, bloomlink::synth::profile(0).schema).unwrap();
    let enc = Encoder::new(
        Schema::load(&sp).unwrap(),
        &Secret::from_bytes(b"typed parquet".to_vec()).unwrap(),
    )
    .unwrap();
    let encode = |input: &Path, name: &str| {
        let out = d.path().join(format!("out_{name}.parquet"));
        let r = enc
            .encode_file(input, &out, &EncodeOptions::new("social_care"))
            .unwrap();
        assert_eq!(r.counts.rows_read, rows.len() as u64, "{name}");
        (std::fs::read(&out).unwrap(), r.counts.rejected)
    };
    let want = encode(&csv_path, "csv");
    for (name, dob_column) in [("date32", date32), ("timestamp", stamps), ("zoned", zoned)] {
        let path = d.path().join(format!("{name}.parquet"));
        write_batch(&path, &typed(dob_column));
        let got = encode(&path, name);
        assert_eq!(got.1, want.1, "{name}: rejected counts differ");
        assert!(got.0 == want.0, "{name}: extracts differ");
    }
}
