//! `bloomlink link`: link extracts, write the linked dataset and the report.

use super::LinkArgs;
use crate::error::Result;
use crate::hub::{JobConfig, LinkOptions, link};

/// Run `link`.
pub fn run(a: LinkArgs, progress: bool) -> Result<()> {
    let config = match &a.config {
        Some(p) => JobConfig::load(p)?,
        None => JobConfig::default(),
    };
    let opts = LinkOptions {
        extracts: a.extract.clone(),
        out: a.out.clone(),
        config,
        threshold: a.threshold,
        dedup: a.dedup,
        progress,
    };
    std::fs::create_dir_all(&a.out).map_err(|e| crate::Error::write(&a.out, e))?;
    let start = std::time::Instant::now();
    let run = link::run(&opts)?;
    let pending = link::write_outputs(&run, &a.out)?;
    for p in pending {
        p.commit()?;
    }
    let linked = run
        .resolution
        .cluster_size
        .iter()
        .filter(|&&s| s > 1)
        .count();
    eprintln!(
        "linked {} of {} records from {} agencies into {} entities ({} candidate pairs, {:.2}s)",
        linked,
        run.ds.len(),
        run.ds.agencies.len(),
        {
            let mut r = run.resolution.root.clone();
            r.sort_unstable();
            r.dedup();
            r.len()
        },
        run.candidates.pairs.len(),
        start.elapsed().as_secs_f64()
    );
    eprintln!("wrote {}", a.out.join("links.parquet").display());
    if let Some(t) = &a.truth {
        let (rows, dedup) = crate::hub::evaluate::read_links(&a.out.join("links.parquet"))?;
        let e = crate::hub::evaluate::evaluate(&rows, dedup, t)?;
        eprintln!(
            "against {}: precision {:.4}, recall {:.4}, F1 {:.4}",
            t.display(),
            e.precision,
            e.recall,
            e.f1
        );
    }
    Ok(())
}
