//! `bloomlink encode`: load schema and secret, encode, print the counts.

use super::EncodeArgs;
use crate::agency::{CsvFormat, EncodeOptions, Encoder, Schema, Secret};
use crate::error::Result;

/// Run `encode`.
pub fn run(a: EncodeArgs, progress: bool) -> Result<()> {
    let schema = Schema::load(&a.schema)?;
    let secret = Secret::load(a.secret_file.as_deref())?;
    let encoder = Encoder::new(schema, &secret)?;
    drop(secret);
    let mut opts = EncodeOptions::new(&a.agency);
    opts.payload_columns = a.payload_columns;
    opts.payload_output = a.payload_output;
    opts.progress = progress;
    opts.csv = CsvFormat {
        delimiter: a.delimiter,
        encoding: a.encoding,
    };
    // Folders made for the outputs go again if encoding fails.
    let dirs = [Some(&a.output), opts.payload_output.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| crate::io::OutputDir::prepare_for(p))
        .collect::<Result<Vec<_>>>()?;
    let start = std::time::Instant::now();
    let r = encoder.encode_file(&a.input, &a.output, &opts)?;
    dirs.into_iter().for_each(crate::io::OutputDir::keep);
    let secs = start.elapsed().as_secs_f64();
    if !progress {
        return Ok(());
    }
    let c = &r.counts;
    eprintln!(
        "encoded {} of {} rows for agency `{}` in {:.2}s ({:.0} rows/s); {} rejected -> {}",
        c.encoded,
        c.rows_read,
        a.agency,
        secs,
        c.rows_read as f64 / secs.max(1e-9),
        c.rejected,
        r.rejects.display()
    );
    for (reason, n) in &c.reject_reasons {
        eprintln!("  {n:>8}  {reason}");
    }
    eprintln!(
        "wrote {} (schema {}, key check {})",
        r.output.display(),
        &r.fingerprint[..16],
        r.key_check
    );
    if let Some(p) = &r.payload {
        eprintln!("payload {}", p.display());
    }
    Ok(())
}
