//! `bloomlink evaluate`: precision, recall and F1 of links against a truth
//! file, as JSON, and where the missed true pairs went when the run's
//! `pairs.parquet` and `report.json` are at hand. Hub side: record ids only.

use serde::Serialize;

use super::EvaluateArgs;
use crate::error::Result;
use crate::hub::evaluate::{
    Evaluation, Missed, judge_columns, missed_beside_report, read_link_columns,
};

/// What `evaluate` prints.
#[derive(Serialize)]
struct Printed {
    #[serde(flatten)]
    evaluation: Evaluation,
    #[serde(skip_serializing_if = "Option::is_none")]
    missed: Option<Missed>,
}

/// Run `evaluate`.
pub fn run(a: EvaluateArgs) -> Result<()> {
    let (links, dedup) = read_link_columns(&a.links)?;
    let judged = judge_columns(&links, dedup, &a.truth)?;
    let pairs = a.pairs.clone().unwrap_or_else(|| {
        a.links
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("pairs.parquet")
    });
    let report = pairs
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("report.json");
    let missed = if a.pairs.is_some() || (pairs.is_file() && report.is_file()) {
        Some(missed_beside_report(&links, &judged, &pairs)?)
    } else {
        tracing::info!(
            "no pairs.parquet and report.json beside {}: the missed pairs are not broken down (--pairs names the run's pairs file)",
            a.links.display()
        );
        None
    };
    let printed = Printed {
        evaluation: judged.evaluation,
        missed,
    };
    println!("{}", serde_json::to_string_pretty(&printed).expect("json"));
    Ok(())
}
