//! `bloomlink release`: entity pseudonyms plus payload for analysts.

use super::ReleaseArgs;
use crate::error::{Error, Result};
use crate::release::{ReleaseOptions, manifest_path, release};

/// Run `release`.
pub fn run(a: ReleaseArgs) -> Result<()> {
    let mut payloads = Vec::new();
    for p in &a.payload {
        let (agency, path) = p.split_once('=').ok_or_else(|| {
            Error::Usage(format!("--payload `{p}`: expected AGENCY=FILE.parquet"))
        })?;
        payloads.push((agency.to_string(), path.into()));
    }
    // A folder made for the output goes again if the release is refused.
    let dir = crate::io::OutputDir::prepare_for(&a.out)?;
    let m = release(&ReleaseOptions {
        links: a.links.clone(),
        payloads,
        out: a.out.clone(),
        allow: a.allow_column.clone(),
    })?;
    dir.keep();
    eprintln!(
        "released {} rows ({} entities), columns {} -> {}; manifest {}",
        m.rows,
        m.entities,
        m.columns.join(", "),
        a.out.display(),
        manifest_path(&a.out).display()
    );
    Ok(())
}
