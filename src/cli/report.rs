//! `bloomlink report DIR [--truth T]`: re-render report.html from report.json,
//! adding true precision and recall when a truth file is given.

use super::ReportArgs;
use crate::error::Result;
use crate::hub::evaluate::{judge_columns, missed_beside_report, read_link_columns};
use crate::report::{TruthSection, read, write};

/// Run `report`.
pub fn run(a: ReportArgs) -> Result<()> {
    let mut r = read(&a.dir)?;
    if let Some(t) = &a.truth {
        let (links, dedup) = read_link_columns(&a.dir.join("links.parquet"))?;
        let judged = judge_columns(&links, dedup, t)?;
        let e = judged.evaluation.clone();
        eprintln!(
            "against the truth file: precision {:.4}, recall {:.4}, F1 {:.4}",
            e.precision, e.recall, e.f1
        );
        let pairs = a.dir.join("pairs.parquet");
        let missed = if pairs.is_file() {
            Some(missed_beside_report(&links, &judged, &pairs)?)
        } else {
            None
        };
        r.truth = Some(TruthSection {
            file: t.display().to_string(),
            evaluation: e,
            recall_by_stratum: Vec::new(),
            missed,
        });
    }
    for p in write(&r, &a.dir)? {
        p.commit()?;
    }
    eprintln!("wrote {}", a.dir.join("report.html").display());
    Ok(())
}
