//! `bloomlink inspect`: an extract's metadata, layout and counts. It prints
//! column names and null counts, never filter bits or record ids.

use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::InspectArgs;
use crate::error::{Error, Result};
use crate::extract::read_meta;

/// Run `inspect`.
pub fn run(a: InspectArgs) -> Result<()> {
    let (meta, rows) = read_meta(&a.file)?;
    let (schema, nulls) = crate::io::guard_decoder(&a.file, || {
        let file = std::fs::File::open(&a.file).map_err(|e| Error::read(&a.file, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::parquet_read(&a.file, e))?;
        let schema = reader.schema().clone();
        let mut nulls = vec![0usize; schema.fields().len()];
        for batch in reader
            .build()
            .map_err(|e| Error::parquet_read(&a.file, e))?
        {
            let batch = batch.map_err(|e| Error::parquet_read(&a.file, e))?;
            for (i, c) in batch.columns().iter().enumerate() {
                nulls[i] += c.null_count();
            }
        }
        Ok((schema, nulls))
    })?;
    let columns: Vec<serde_json::Value> = schema
        .fields()
        .iter()
        .zip(&nulls)
        .map(|(f, n)| serde_json::json!({"name": f.name(), "type": f.data_type().to_string(), "nulls": n}))
        .collect();
    if a.json {
        let v = serde_json::json!({
            "file": a.file.display().to_string(),
            "rows": rows,
            "agency": meta.agency,
            "format_version": meta.format_version,
            "bloomlink_version": meta.version,
            "schema_fingerprint": meta.fingerprint,
            "key_check": meta.key_check,
            "clk_bits": meta.schema.clk_bits,
            "field_bits": meta.schema.field_bits,
            "mode": meta.schema.mode,
            "counts": meta.counts,
            "columns": columns,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    println!("extract            {}", a.file.display());
    println!("agency             {}", meta.agency);
    println!("rows               {rows}");
    println!(
        "format / version   {} / bloomlink {}",
        meta.format_version, meta.version
    );
    println!(
        "encoding           {} (CLK {} bits, field filters {} bits)",
        meta.schema.mode, meta.schema.clk_bits, meta.schema.field_bits
    );
    println!("schema fingerprint {}", meta.fingerprint);
    println!("key check          {}", meta.key_check);
    let c = &meta.counts;
    println!(
        "counts             read {}, encoded {}, rejected {} (duplicate ids {})",
        c.rows_read, c.encoded, c.rejected, c.duplicate_ids
    );
    println!("columns:");
    for (f, n) in schema.fields().iter().zip(&nulls) {
        let miss = if rows > 0 {
            100.0 * *n as f64 / rows as f64
        } else {
            0.0
        };
        println!(
            "  {:<24} {:<24} {:>8} null ({miss:.1}%)",
            f.name(),
            f.data_type().to_string(),
            n
        );
    }
    Ok(())
}
