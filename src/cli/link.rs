//! `bloomlink link`: link extracts, write the linked dataset and the report.

use std::path::{Path, PathBuf};

use super::LinkArgs;
use crate::error::{Error, Result};
use crate::hub::evaluate::Evaluation;
use crate::hub::{JobConfig, LinkOptions, link};
use crate::progress::timed;

/// What a link run produced, for callers that print more (the demo).
pub struct Outcome {
    pub records: usize,
    pub linked: u64,
    pub entities: u64,
    pub evaluation: Option<Evaluation>,
    pub report: PathBuf,
    pub seconds: f64,
    pub changes: Option<crate::hub::refresh::Changes>,
}

/// Link, evaluate against truth if given, write all outputs together.
pub fn link_and_report(
    opts: &LinkOptions,
    truth: Option<&Path>,
    command: Vec<String>,
) -> Result<Outcome> {
    let outputs: Vec<std::path::PathBuf> = [
        "links.parquet",
        "pairs.parquet",
        "report.json",
        "report.html",
        "refresh-state.parquet",
    ]
    .iter()
    .map(|f| opts.out.join(f))
    .collect();
    let mut inputs: Vec<&Path> = opts.extracts.iter().map(|p| p.as_path()).collect();
    inputs.extend(truth);
    inputs.extend(opts.model.as_deref());
    let named: Vec<(&str, &Path)> = outputs
        .iter()
        .map(|p| ("the output", p.as_path()))
        .collect();
    crate::io::refuse_overwrite(&inputs, &named)?;
    let dir = crate::io::OutputDir::prepare(&opts.out)?;
    let start = std::time::Instant::now();
    let mut run = link::run(opts)?;
    // Writing the outputs and judging them against the truth read the run
    // only, and each is mostly one thread: side by side.
    let (written, judged) = rayon::join(
        || {
            timed("write links and pairs", false, || {
                link::write_outputs(&run, &opts.out)
            })
        },
        || truth.map(|t| timed("evaluate", false, || link::judge(&run, t))),
    );
    let mut pending = written?;
    // A job key made for this run appears with the outputs or not at all.
    pending.extend(run.new_job_key.take());
    let judged = judged.transpose()?;
    let evaluation = judged.as_ref().map(|j| j.evaluation.clone());
    // The report is built while the missed true pairs are counted from
    // the pairs file just written (read back before it is committed).
    let pairs = judged.as_ref().map(|_| {
        pending
            .iter()
            .find(|p| p.path().file_name() == Some("pairs.parquet".as_ref()))
            .expect("pairs.parquet is written")
            .written()
            .to_path_buf()
    });
    let (built, missed) = rayon::join(
        || {
            timed("report", false, || {
                crate::report::build(&run, command, truth.zip(judged.as_ref()))
            })
        },
        || {
            judged
                .as_ref()
                .zip(pairs.as_ref())
                .map(|(j, p)| timed("missed pairs", false, || link::missed(&run, j, p)))
        },
    );
    let mut report = built?;
    if let Some(t) = report.truth.as_mut() {
        t.missed = missed.transpose()?;
    }
    pending.extend(timed("write report", false, || {
        crate::report::write(&report, &opts.out)
    })?);
    for p in pending {
        p.commit()?;
    }
    dir.keep();
    Ok(Outcome {
        records: run.ds.len(),
        linked: report.reconciliation.linked_records,
        entities: report.reconciliation.entities,
        evaluation,
        report: opts.out.join("report.html"),
        changes: run.changes.clone(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Run `link`.
pub fn run(a: LinkArgs, progress: bool) -> Result<()> {
    if a.unit.is_some() && a.plan.is_none() {
        return Err(Error::Usage(
            "--unit runs a unit of a plan: give the plan folder with --plan DIR".into(),
        ));
    }
    if let (Some(dir), Some((first, last))) = (&a.plan, a.unit) {
        for (i, (candidates, kept)) in link::units(dir, first, last)? {
            if progress {
                eprintln!(
                    "unit {i}: compared {candidates} candidate pairs, kept {kept}; wrote {}",
                    dir.join("units").display()
                );
            }
        }
        return Ok(());
    }
    let mut config = match &a.config {
        Some(p) => JobConfig::load(p)?,
        None => JobConfig::default(),
    };
    let mut extracts = a.extract.clone();
    let (mut dedup, mut threshold) = (a.dedup, a.threshold);
    if let Some(dir) = &a.merge {
        // The plan fixes the inputs and settings.
        let plan = crate::hub::units::read_plan(dir)?;
        extracts = crate::hub::units::check_inputs(&plan)?;
        config = plan.config;
        dedup = plan.dedup;
        threshold = plan.threshold;
    }
    let mut opts = LinkOptions {
        extracts,
        out: a.out.clone().unwrap_or_default(),
        config,
        threshold,
        dedup,
        progress,
        previous: a.previous.clone(),
        full: a.full,
        model: a.model.clone(),
        merge: a.merge.clone(),
    };
    if let Some(dir) = &a.plan {
        opts.out = dir.clone();
        let units = link::plan(&opts, dir)?;
        if progress {
            eprintln!(
                "wrote a plan of {units} units to {}: run `bloomlink link --plan {} --unit I` for I in 0..{units} (in any order, anywhere the extracts are), then `bloomlink link --merge {} --out OUT`",
                dir.display(),
                dir.display(),
                dir.display()
            );
        }
        return Ok(());
    }
    let o = link_and_report(&opts, a.truth.as_deref(), std::env::args().collect())?;
    if !progress {
        return Ok(());
    }
    eprintln!(
        "linked {} of {} records from {} extracts into {} entities in {:.2}s",
        o.linked,
        o.records,
        opts.extracts.len(),
        o.entities,
        o.seconds
    );
    if let Some(c) = &o.changes {
        eprintln!(
            "since {}: {} entities kept, {} kept with changed records, {} merged, {} split, {} created, {} retired",
            c.previous, c.kept, c.kept_changed, c.merged, c.split, c.created, c.retired
        );
    }
    if let Some(e) = &o.evaluation {
        eprintln!(
            "against the truth file: precision {:.4}, recall {:.4}, F1 {:.4}",
            e.precision, e.recall, e.f1
        );
    }
    eprintln!(
        "wrote {}/links.parquet, pairs.parquet, report.json and report.html",
        opts.out.display()
    );
    Ok(())
}
