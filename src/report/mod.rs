//! The linkage quality report: `report.json` (versioned, see
//! docs/report-schema.md) and a self-contained `report.html`.
//!
//! [`build`] turns a finished link run into a [`Report`]; [`html::render`]
//! draws it. The report holds counts, rates, model parameters and audit
//! values only: never a record id, a filter or a plaintext value.

pub mod attack;
pub mod html;
pub mod pattern;
mod stats;
pub mod svg;

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hub::LinkRun;
use crate::hub::block::{PassStats, unpack};
use crate::hub::config::ScoringMode;
use crate::hub::evaluate::{Evaluation, Judged};
use crate::hub::link::Timing;
use crate::hub::score::Model;
pub use stats::wilson;

/// Version of the report JSON layout.
pub const REPORT_VERSION: &str = "2";

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub report_version: String,
    pub summary: Summary,
    pub run: Run,
    pub reconciliation: Reconciliation,
    pub blocking: Blocking,
    pub model: ModelSection,
    pub scores: Scores,
    pub estimates: Estimates,
    pub truth: Option<TruthSection>,
    pub match_rates: MatchRates,
    pub input_quality: InputQuality,
    pub privacy: Privacy,
    /// Changes since the previous run (`link --previous`).
    #[serde(default)]
    pub changes: Option<crate::hub::refresh::Changes>,
}

/// Plain-language summary (section 8, shown first).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub headline: String,
    pub points: Vec<String>,
    pub checks: Vec<String>,
}

/// One input extract in the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    pub agency: String,
    pub path: String,
    pub sha256: String,
    pub rows: usize,
    pub encoded_with: String,
}

/// Run and audit block (section 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub bloomlink_version: String,
    pub command: Vec<String>,
    pub config: serde_json::Value,
    pub inputs: Vec<Input>,
    pub schema_fingerprint: String,
    pub key_check: String,
    pub kernel: String,
    pub threads: usize,
    pub timings: Vec<Timing>,
}

/// Counts per agency (section 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgencyCounts {
    pub agency: String,
    pub rows_read: u64,
    pub rejected_at_encode: u64,
    pub encoded: u64,
    pub in_extract: u64,
    pub linked: u64,
    pub single: u64,
    pub balanced: bool,
}

/// Reconciliation (section 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reconciliation {
    pub agencies: Vec<AgencyCounts>,
    pub balanced: bool,
    pub entities: u64,
    pub linked_records: u64,
}

/// Candidate generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocking {
    pub method: String,
    pub eligible_pairs: u64,
    pub candidate_pairs: u64,
    pub passes: Vec<PassStats>,
}

/// Per-field model parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldModel {
    pub field: String,
    pub m: Vec<f64>,
    pub u: Vec<f64>,
    /// log2(m/u) per level (level 0, null, is 0).
    pub weights: Vec<f64>,
    /// What each level 1..n means: Dice ranges, or for a date compared by
    /// its keyed variants the variants (docs/decisions.md §24). Absent in
    /// older reports.
    #[serde(default)]
    pub levels: Vec<String>,
}

/// The scoring model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSection {
    pub mode: ScoringMode,
    pub threshold: f64,
    pub level_cutoffs: Vec<f64>,
    pub prior: f64,
    pub prior_weight: f64,
    pub expected_matches: f64,
    pub fields: Vec<FieldModel>,
    pub em: Model,
    /// Match probabilities are record-level (docs/decisions.md §17), not
    /// pairwise.
    #[serde(default)]
    pub record_level: bool,
    /// The second look at records left single (docs/decisions.md §31).
    #[serde(default)]
    pub second_look: Option<crate::hub::residual::Summary>,
}

/// A histogram of candidate-pair scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    pub what: String,
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    pub linked: Vec<u64>,
    /// Where the threshold falls on this axis.
    pub threshold: f64,
}

/// One row of the threshold sensitivity table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdRow {
    pub threshold: f64,
    /// Candidate pairs scoring at or above the threshold.
    pub pairs_above: u64,
    /// Pairs linked when resolving at this threshold.
    #[serde(default)]
    pub linked_pairs: u64,
    pub est_precision: f64,
    pub est_recall: f64,
}

/// Score distribution (section 3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scores {
    pub histogram: Histogram,
    pub sensitivity: Vec<ThresholdRow>,
}

/// Estimates without ground truth (section 4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Estimates {
    pub precision: f64,
    pub precision_band: [f64; 2],
    pub recall: f64,
    pub recall_band: [f64; 2],
    pub linked_pairs: u64,
    pub method: String,
}

/// True figures from a truth file (section 4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TruthSection {
    pub file: String,
    pub evaluation: Evaluation,
    /// Recall of true pairs by stratum value (records in the stratum).
    pub recall_by_stratum: Vec<StratumRecall>,
    /// Where the missed true pairs went (counted by the run, from its
    /// pairs; a re-rendered report keeps what the run counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<crate::hub::evaluate::Missed>,
}

/// Recall within one stratum value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StratumRecall {
    pub stratum: String,
    pub value: String,
    /// `None` (with `found` and `recall`) when withheld.
    pub true_pairs: Option<u64>,
    pub found: Option<u64>,
    pub recall: Option<f64>,
    /// The group has fewer true pairs than `output.min_reported_group`:
    /// its figures are withheld (disclosure control).
    #[serde(default)]
    pub withheld: bool,
}

/// A rate with its 95% Wilson interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rate {
    pub n: u64,
    pub k: u64,
    pub rate: f64,
    pub ci: [f64; 2],
}

/// Match rate of one agency's records to another agency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairRate {
    pub from: String,
    pub to: String,
    pub rate: Rate,
}

/// Match rate within one stratum value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StratumRate {
    pub stratum: String,
    pub value: String,
    /// `None` (with `z`) when withheld.
    pub rate: Option<Rate>,
    pub overall: f64,
    pub z: Option<f64>,
    pub flagged: bool,
    /// The group has fewer records than `output.min_reported_group`: its
    /// count and rate are withheld (disclosure control), and it is never
    /// flagged.
    #[serde(default)]
    pub withheld: bool,
}

/// Match rates (section 5).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatchRates {
    pub overall: Rate,
    pub agency_pairs: Vec<PairRate>,
    pub strata: Vec<StratumRate>,
}

/// Quality of one field in one agency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldQuality {
    pub agency: String,
    pub field: String,
    pub completeness: f64,
    pub distinct_share: f64,
    pub top_value_share: f64,
    pub mean_fill: f64,
    pub flags: Vec<String>,
}

/// Input quality and plausibility (section 6).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputQuality {
    pub fields: Vec<FieldQuality>,
    pub duplicate_ids: BTreeMap<String, u64>,
    pub reject_reasons: BTreeMap<String, BTreeMap<String, u64>>,
    /// Linked pairs whose declared strata disagree, per stratum.
    pub strata_disagreements: BTreeMap<String, u64>,
    pub linked_pairs: u64,
    /// Clusters larger than one record per agency allows or, with
    /// deduplication or attached duplicates, than 2× agencies.
    pub large_clusters: u64,
    pub largest_cluster: u64,
    /// Records attached to an entity that already held a record of their
    /// agency (likely duplicates within that agency; docs/decisions.md §11).
    #[serde(default)]
    pub attached_duplicates: u64,
    /// Of those, the ones whose link alone fell short of the attachment
    /// probability and that were confirmed by comparing the record with the
    /// entity's record of the same agency.
    #[serde(default)]
    pub confirmed_duplicates: u64,
    /// Of those, the ones attached because their link, weighed by the
    /// agency's estimated duplicate rate, cleared the threshold
    /// (docs/decisions.md §22).
    #[serde(default)]
    pub rate_duplicates: u64,
    /// Per agency: the estimated share of its records that are a second
    /// record of a person (docs/decisions.md §22); empty when not estimated.
    #[serde(default)]
    pub estimated_duplicate_rate: BTreeMap<String, f64>,
}

/// Privacy figures for one filter column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilterPrivacy {
    pub column: String,
    pub bits: usize,
    pub mean_fill: f64,
    pub bit_frequency_min: f64,
    pub bit_frequency_max: f64,
    pub bit_frequency_sd: f64,
    pub unique_share: f64,
    pub top_value_share: f64,
}

/// Privacy audit (section 7).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Privacy {
    pub filters: Vec<FilterPrivacy>,
    pub frequency_attack: Vec<attack::AttackResult>,
    pub notes: Vec<String>,
}

/// `f()`, its time logged at debug level as the report part `what` (the
/// parts run side by side, so these overlap).
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    crate::progress::timed(&format!("report part {what}"), true, f)
}

/// Build the report of a finished run.
pub fn build(
    run: &LinkRun,
    command: Vec<String>,
    truth: Option<(&Path, &Judged)>,
) -> Result<Report> {
    let ds = &run.ds;
    let n = ds.len();
    let linked_rec: Vec<bool> = run.resolution.cluster_size.iter().map(|&s| s > 1).collect();
    // 1. Run.
    // The sections below read the run only; the slow ones (hashing the
    // inputs, the estimates, the privacy checks, recall by stratum) are
    // computed side by side.
    let hashes = || -> Result<Vec<Input>> {
        ds.agencies
            .par_iter()
            .map(|a| {
                Ok(Input {
                    agency: a.name.clone(),
                    path: a.path.display().to_string(),
                    sha256: crate::io::sha256_file(&a.path)?,
                    rows: a.len,
                    encoded_with: format!("bloomlink {}", a.meta.version),
                })
            })
            .collect()
    };
    let ((inputs, (scores_estimates, match_rates)), ((input_quality, privacy), recall)) =
        rayon::join(
            || {
                rayon::join(
                    || timed("input hashes", hashes),
                    || {
                        rayon::join(
                            || {
                                timed("threshold sensitivity and estimates", || {
                                    stats::scores_and_estimates(run)
                                })
                            },
                            || timed("match rates", || stats::match_rates(run, &linked_rec)),
                        )
                    },
                )
            },
            || {
                rayon::join(
                    || {
                        let tallies = timed("value counts", || stats::value_tallies(ds));
                        rayon::join(
                            || timed("input quality", || stats::input_quality(run, &tallies)),
                            || timed("privacy checks", || stats::privacy(ds, &tallies)),
                        )
                    },
                    || {
                        truth.as_ref().map(|(_, judged)| {
                            timed("recall by stratum", || {
                                stats::recall_by_stratum(run, &judged.known_pairs)
                            })
                        })
                    },
                )
            },
        );
    let inputs = inputs?;
    let (scores, estimates) = scores_estimates;
    let run_section = Run {
        bloomlink_version: env!("CARGO_PKG_VERSION").into(),
        command,
        config: serde_json::to_value(&run.config).expect("config serialises"),
        inputs,
        schema_fingerprint: ds.fingerprint.clone(),
        key_check: ds.key_check.clone(),
        kernel: crate::hub::compare::Kernel::detect().name().into(),
        threads: rayon::current_num_threads(),
        timings: run.timings.clone(),
    };
    // 2. Reconciliation.
    let mut agencies = Vec::new();
    for a in &ds.agencies {
        let c = &a.meta.counts;
        let linked = (a.start..a.start + a.len)
            .filter(|&g| linked_rec[g])
            .count() as u64;
        let single = a.len as u64 - linked;
        let balanced = c.rows_read == c.encoded + c.rejected
            && c.encoded == a.len as u64
            && linked + single == a.len as u64;
        agencies.push(AgencyCounts {
            agency: a.name.clone(),
            rows_read: c.rows_read,
            rejected_at_encode: c.rejected,
            encoded: c.encoded,
            in_extract: a.len as u64,
            linked,
            single,
            balanced,
        });
    }
    let mut roots = run.resolution.root.clone();
    roots.sort_unstable();
    roots.dedup();
    let reconciliation = Reconciliation {
        balanced: agencies.iter().all(|a| a.balanced),
        agencies,
        entities: roots.len() as u64,
        linked_records: linked_rec.iter().filter(|&&x| x).count() as u64,
    };
    let blocking = Blocking {
        method: run.candidates.method.clone(),
        eligible_pairs: run.eligible_pairs,
        candidate_pairs: run.tally.candidates,
        passes: run.candidates.passes.clone(),
    };
    let m = &run.model;
    let model = ModelSection {
        mode: run.mode,
        threshold: run.threshold,
        level_cutoffs: m.cuts.clone(),
        prior: m.lambda,
        prior_weight: m.prior_weight(),
        expected_matches: m.expected_matches,
        fields: (0..m.fields.len())
            .map(|f| FieldModel {
                field: m.fields[f].clone(),
                m: m.m[f].clone(),
                u: m.u[f].clone(),
                weights: (0..m.m[f].len())
                    .map(|l| m.field_weight(f, l as u8))
                    .collect(),
                levels: level_names(ds.fields.get(f), &m.cuts),
            })
            .collect(),
        em: m.clone(),
        record_level: run.pair_probability.is_some(),
        second_look: run.second_look.clone(),
    };
    let truth = truth.map(|(path, judged)| TruthSection {
        file: path.display().to_string(),
        recall_by_stratum: recall.unwrap_or_default(),
        evaluation: judged.evaluation.clone(),
        missed: None,
    });
    let summary = summarise(
        n,
        &reconciliation,
        &estimates,
        &match_rates,
        &truth,
        &input_quality,
        run,
    );
    Ok(Report {
        report_version: REPORT_VERSION.into(),
        summary,
        run: run_section,
        reconciliation,
        blocking,
        model,
        scores,
        estimates,
        truth,
        match_rates,
        input_quality,
        privacy,
        changes: run.changes.clone(),
    })
}

/// A fraction as a percentage with one decimal.
pub(crate) fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// Escape text for HTML and SVG.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn summarise(
    n: usize,
    rec: &Reconciliation,
    est: &Estimates,
    rates: &MatchRates,
    truth: &Option<TruthSection>,
    q: &InputQuality,
    run: &LinkRun,
) -> Summary {
    let rejected: u64 = rec.agencies.iter().map(|a| a.rejected_at_encode).sum();
    let headline = format!(
        "{} of {} records ({}) from {} agencies were linked to at least one other record, forming {} entities.",
        rec.linked_records,
        n,
        pct(rec.linked_records as f64 / n.max(1) as f64),
        rec.agencies.len(),
        rec.entities
    );
    let mut points = vec![format!(
        "Estimated precision (share of links that are correct): {} (95% band for chance alone {}–{}). Estimated recall (share of true matches found among compared pairs): {} (band {}–{}). These are model estimates made without any ground truth; their bands do not include the model's own error, which is usually larger (on synthetic test data: precision within 0.4 points of the truth, recall within about 3.5 points and reading low where many records have no partner in another agency).",
        pct(est.precision),
        pct(est.precision_band[0]),
        pct(est.precision_band[1]),
        pct(est.recall),
        pct(est.recall_band[0]),
        pct(est.recall_band[1])
    )];
    if let Some(t) = truth {
        points.push(format!(
            "Against the supplied truth file: precision {}, recall {}, F1 {:.3}.",
            pct(t.evaluation.precision),
            pct(t.evaluation.recall),
            t.evaluation.f1
        ));
    }
    points.push(if rec.balanced {
        format!(
            "Every record is accounted for: each agency's rows read equal rows rejected at encoding ({rejected} in all) plus rows linked plus rows left single."
        )
    } else {
        "WARNING: the counts do not reconcile for at least one agency; see the reconciliation table.".into()
    });
    let flagged: Vec<&StratumRate> = rates.strata.iter().filter(|s| s.flagged).collect();
    if flagged.is_empty() {
        points.push("No declared group (stratum) has a match rate that differs from the overall rate beyond chance.".into());
    } else {
        let list: Vec<String> = flagged
            .iter()
            .take(6)
            .map(|s| {
                format!(
                    "{} = {} ({} vs {} overall)",
                    s.stratum,
                    s.value,
                    pct(s.rate.as_ref().map_or(0.0, |r| r.rate)),
                    pct(s.overall)
                )
            })
            .collect();
        points.push(format!(
            "{} group(s) have match rates that differ from the overall rate beyond chance: {}. A lower rate can mean these people appear in fewer agencies, or that linkage fails more often for them; check before drawing conclusions about these groups.",
            flagged.len(),
            list.join("; ")
        ));
    }
    let withheld = rates.strata.iter().filter(|s| s.withheld).count();
    if withheld > 0 {
        points.push(format!(
            "{withheld} group(s) of fewer than {} records are withheld from the match rates by group (statistical disclosure control) and are never flagged.",
            run.config.output.min_reported_group
        ));
    }
    let mut checks = vec![
        "Confirm the input files' SHA-256 values in the audit block match the extracts that were approved for this linkage.".to_string(),
    ];
    if rejected > 0 {
        checks.push(format!(
            "{rejected} rows were rejected at encoding and are not in the linked data; the agencies' rejects files say why."
        ));
    }
    let dis: u64 = q.strata_disagreements.values().sum();
    if dis > 0 {
        checks.push(format!(
            "{dis} links join records whose declared strata disagree (for example sex or age band); they are a floor on false links and worth reviewing."
        ));
    }
    if q.attached_duplicates > 0 {
        checks.push(format!(
            "{} records were attached to an entity that already holds a record of their agency: likely duplicates within that agency, worth passing back to its data team.",
            q.attached_duplicates
        ));
    }
    if q.large_clusters > 0 {
        checks.push(format!(
            "{} entities are implausibly large (largest {} records); review them before use.",
            q.large_clusters, q.largest_cluster
        ));
    }
    if let Some(note) = salt_advice(rec, run) {
        checks.push(note);
    }
    if run.candidates.passes.iter().any(|p| p.skipped_blocks > 0) {
        checks.push("Some very large blocks were skipped to bound the work; matches found only through them may be missed (see Blocking).".into());
    }
    Summary {
        headline,
        points,
        checks,
    }
}

/// Share of an agency's records below which a one-to-one linkage without
/// the salt correction is flagged.
const SALT_ADVICE_LINKED_SHARE: f64 = 0.8;

/// Advice to count a shared salt once (docs/decisions.md §16), when names
/// are salted by year of birth, the job's settings left the correction off
/// in one-to-one linkage, and some agency has most of its records left
/// without a partner: there the model overstates match probabilities.
fn salt_advice(rec: &Reconciliation, run: &LinkRun) -> Option<String> {
    let salted = run.ds.salt.as_ref().is_some_and(|s| s.year_of_date);
    // Only when the job's settings turned it off (with the defaults, small
    // data can leave it unfitted; changing settings would not help there).
    let scoring = &run.config.scoring;
    let defaults =
        scoring.record_prior && scoring.salt_correction != crate::hub::config::SaltCorrection::Off;
    if !salted
        || run.dedup
        || run.mode != crate::hub::config::ScoringMode::Probabilistic
        || run.model.salt.is_some()
        || defaults
    {
        return None;
    }
    let (agency, share) = rec
        .agencies
        .iter()
        .filter(|a| a.in_extract > 0)
        .map(|a| (a, a.linked as f64 / a.in_extract as f64))
        .min_by(|x, y| x.1.total_cmp(&y.1))?;
    (share < SALT_ADVICE_LINKED_SHARE).then(|| {
        format!(
            "Only {} of {}'s records were linked. Where many records have no partner, names salted by year of birth make the model overstate match probabilities (the shared year counts more than once), so false links and the estimated precision both run high. Consider linking again with the defaults of the job config's [scoring] section (salt_correction = \"auto\", record_prior = true; docs/decisions.md §16–17) and comparing.",
            pct(share),
            agency.agency
        )
    })
}

/// Write report.json and report.html into `dir`; the caller commits them.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<crate::io::Pending>> {
    let json = serde_json::to_vec_pretty(report).expect("report serialises");
    let html = html::render(report);
    let mut out = Vec::new();
    for (name, bytes) in [("report.json", json), ("report.html", html.into_bytes())] {
        let p = crate::io::Pending::create(&dir.join(name))?;
        std::io::Write::write_all(&mut p.file()?, &bytes)
            .map_err(|e| Error::write(dir.join(name), e))?;
        out.push(p);
    }
    Ok(out)
}

/// Read a report.json.
pub fn read(dir: &Path) -> Result<Report> {
    let p = dir.join("report.json");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::read(&p, e))?;
    let r: Report = serde_json::from_str(&text)
        .map_err(|e| Error::input(&p, format!("not a bloomlink report: {e}")))?;
    // Version 1 reads as version 2 with nothing withheld.
    if r.report_version != REPORT_VERSION && r.report_version != "1" {
        return Err(Error::input(
            &p,
            format!(
                "report version {} is not supported (expected {REPORT_VERSION})",
                r.report_version
            ),
        ));
    }
    Ok(r)
}

/// Pairs of record indices linked in the run (for plausibility checks).
pub(crate) fn linked_pairs(run: &LinkRun) -> impl Iterator<Item = (usize, usize)> + '_ {
    run.candidates
        .pairs
        .iter()
        .zip(&run.linked)
        .filter(|(_, l)| **l)
        .map(|(&p, _)| unpack(p))
}

/// What a field's levels 1..n mean (see [`FieldModel::levels`]).
fn level_names(f: Option<&crate::hub::load::Filters>, cuts: &[f64]) -> Vec<String> {
    use crate::hub::load::{DATE_SAME_MONTH, DATE_SWAPPED, DATE_YEAR_OFF};
    // Cut-offs as configured (the model holds them as f32 values widened).
    let cuts: Vec<f64> = cuts.iter().map(|c| (c * 1e4).round() / 1e4).collect();
    let dice = |i: usize| {
        if i == 0 {
            "exact".to_string()
        } else if i < cuts.len() {
            format!("Dice {} to {}", cuts[i], cuts[i - 1])
        } else {
            format!("Dice below {}", cuts[cuts.len() - 1])
        }
    };
    let n = cuts.len() + 1;
    match f {
        // Keys compared as evidence and fallbacks (§20–21) either agree
        // exactly or not.
        Some(f) if f.exact || f.fallback_for.is_some() => (0..n)
            .map(|l| match l {
                0 => "equal".to_string(),
                l if l + 1 == n => "different".to_string(),
                _ => "(unused)".to_string(),
            })
            .collect(),
        Some(f) if f.date.is_some() => (1..=n as u8)
            .map(|l| match l {
                1 => "exact".to_string(),
                DATE_SWAPPED => "day and month swapped".to_string(),
                DATE_YEAR_OFF => "same day and month, a year off".to_string(),
                DATE_SAME_MONTH => "same month, another day".to_string(),
                l if n == DATE_SAME_MONTH as usize + 1 && l as usize == n => "other".to_string(),
                l if (l as usize) < n => format!("other, Dice {} or more", cuts[2]),
                _ => format!("other, Dice below {}", cuts[2]),
            })
            .collect(),
        _ => (0..n).map(dice).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::level_names;
    use crate::hub::load::{DateVariants, Filters};
    use std::sync::Arc;

    #[test]
    fn levels_are_named_by_what_they_compare() {
        let cuts = [1.0, 0.85f32 as f64, 0.7f32 as f64, 0.55, 0.4];
        let plain = Filters::default();
        assert_eq!(
            level_names(Some(&plain), &cuts),
            [
                "exact",
                "Dice 0.85 to 1",
                "Dice 0.7 to 0.85",
                "Dice 0.55 to 0.7",
                "Dice 0.4 to 0.55",
                "Dice below 0.4"
            ]
        );
        let date = Filters {
            date: Some(Arc::new(DateVariants::default())),
            ..Default::default()
        };
        assert_eq!(
            level_names(Some(&date), &cuts),
            [
                "exact",
                "day and month swapped",
                "same day and month, a year off",
                "same month, another day",
                "other, Dice 0.7 or more",
                "other, Dice below 0.7"
            ]
        );
        // With four cut-offs the last level takes every other date.
        assert_eq!(level_names(Some(&date), &cuts[..4])[4], "other");
        let key = Filters {
            exact: true,
            ..Default::default()
        };
        let names = level_names(Some(&key), &cuts);
        assert_eq!(
            (names[0].as_str(), names[5].as_str()),
            ("equal", "different")
        );
        let fallback = Filters {
            fallback_for: Some(0),
            ..Default::default()
        };
        assert_eq!(level_names(Some(&fallback), &cuts), names);
    }
}
