//! The link job: load → block → compare → fit → score → resolve → name.
//!
//! Returns everything the outputs and the quality report need; writing is a
//! separate step so that all outputs of a run are committed together.
//! Hub side: never imports `agency`, never holds the linkage key.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::block::{Candidates, Grouped, eligible_pairs, group, unpack};
use super::config::{JobConfig, ScoringMode};
use super::load::{DATE_MIN_CUTS, Dataset, load, salt_free_keys};
use super::output::{self, PairRow};
use super::pseudonym::JobKey;
use super::resolve::{Resolution, resolve_ranked};
use super::score::{
    Comparisons, Model, compare_scored, cuts32, estimate_u, probability, value_frequencies, weights,
};
use super::state;
use super::stream::{self, Kept, Tally, tally_patterns};
use super::train::{MFit, finish, fit_m, fit_salt_weights};
use crate::error::{Error, Result};
use crate::io::Pending;

/// What to link and how.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub extracts: Vec<PathBuf>,
    pub out: PathBuf,
    pub config: JobConfig,
    /// Overrides the mode's threshold.
    pub threshold: Option<f64>,
    pub dedup: bool,
    pub progress: bool,
    /// A previous run's output folder whose entity ids to carry over.
    pub previous: Option<PathBuf>,
    /// With `previous`: re-link every record instead of only what changed.
    pub full: bool,
    /// A previous run's output folder whose fitted model to score with.
    pub model: Option<PathBuf>,
    /// A plan folder whose units have all run: merge them instead of comparing.
    pub merge: Option<PathBuf>,
}

impl LinkOptions {
    /// Link `extracts` into `out` with `config`; everything else off.
    pub fn new(extracts: Vec<PathBuf>, out: PathBuf, config: JobConfig) -> Self {
        LinkOptions {
            extracts,
            out,
            config,
            threshold: None,
            dedup: false,
            progress: false,
            previous: None,
            full: false,
            model: None,
            merge: None,
        }
    }
}

/// Seconds spent in one stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub stage: String,
    pub seconds: f64,
}

/// Everything a link run produced.
pub struct LinkRun {
    pub ds: Dataset,
    pub config: JobConfig,
    pub mode: ScoringMode,
    pub threshold: f64,
    pub dedup: bool,
    pub eligible_pairs: u64,
    pub candidates: Candidates,
    /// Dice of the kept pairs (`candidates.pairs`: the pairs that may be
    /// reported or linked; `tally` describes all candidates).
    pub comparisons: Comparisons,
    pub tally: Tally,
    pub model: Model,
    pub weight: Vec<f32>,
    pub probability: Vec<f32>,
    /// The pairwise probabilities, when `probability` holds record-level
    /// ones (`scoring.record_prior`): they decide which pairs are written.
    pub pair_probability: Option<Vec<f32>>,
    /// Per candidate pair: both records ended in the same entity.
    pub linked: Vec<bool>,
    pub resolution: Resolution,
    /// Per field and record, the frequency of the record's value, when
    /// duplicates were confirmed with term-frequency adjustment.
    pub value_freq: Option<Vec<Vec<f32>>>,
    /// What the second look at records left single did (docs/decisions.md
    /// §31), when it ran.
    pub second_look: Option<super::residual::Summary>,
    pub entity: Vec<String>,
    /// Changes since `--previous`, when given.
    pub changes: Option<super::refresh::Changes>,
    pub timings: Vec<Timing>,
    /// The job key made for this run (none was given or found), written
    /// but not yet visible: committed with the outputs.
    pub new_job_key: Option<Pending>,
}

impl LinkRun {
    /// The score the threshold applies to, per pair.
    pub fn score_of(&self, i: usize) -> f32 {
        match self.mode {
            ScoringMode::Probabilistic => self.probability[i],
            ScoringMode::Dice => self.comparisons.dice[i],
        }
    }
}

/// Resolve `pairs` at `threshold` under the job's rules (duplicates attach
/// in probabilistic mode only, confirmed by comparing the two records of
/// one agency under `model`, with value frequencies `tf` when the job
/// adjusts for them), and whether each pair ended in one entity.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resolve_job(
    ds: &Dataset,
    cfg: &JobConfig,
    model: &Model,
    tf: Option<&[Vec<f32>]>,
    mode: ScoringMode,
    dedup: bool,
    pairs: &[u64],
    scores: &[f32],
    threshold: f64,
    ranked: Option<&[usize]>,
) -> (Resolution, Vec<bool>) {
    let cuts = cuts32(&cfg.scoring.levels);
    let confirm = |within: &[u64]| -> Vec<f32> {
        let comps = super::score::compare(ds, within, &cuts);
        super::score::score(model, &comps, within, tf).1
    };
    let attach = (cfg.resolve.attach_duplicates && mode == ScoringMode::Probabilistic).then_some(
        super::resolve::Attach {
            min: cfg.resolve.attach_min_probability as f32,
            prior: cfg.resolve.duplicate_prior,
            confirm: cfg.resolve.confirm_duplicates.then_some(&confirm as _),
        },
    );
    let own;
    let order = match ranked {
        Some(order) => order,
        None => {
            own = super::resolve::ranked(pairs, scores, threshold as f32);
            &own
        }
    };
    let resolution = resolve_ranked(
        &ds.agency_of,
        pairs,
        scores,
        order,
        threshold as f32,
        dedup,
        attach,
    );
    let linked = pairs
        .iter()
        .map(|&p| {
            let (a, b) = unpack(p);
            resolution.root[a] == resolution.root[b]
        })
        .collect();
    (resolution, linked)
}

/// Stage timer; also drives a spinner on stderr naming the next stage.
pub(crate) struct Clock(Instant, Vec<Timing>, indicatif::ProgressBar);

/// The stage that follows each stage, for the spinner.
const NEXT: &[(&str, &str)] = &[
    ("load", "blocking"),
    ("block", "comparing candidate pairs"),
    ("compare", "fitting the model (EM)"),
    ("fit", "scoring"),
    ("score", "resolving entities"),
    ("resolve", "naming entities"),
];

impl Clock {
    pub(crate) fn new(progress: bool, first: &str) -> Clock {
        Clock(
            Instant::now(),
            Vec::new(),
            crate::progress::spinner(progress, first),
        )
    }

    pub(crate) fn lap(&mut self, stage: &str) {
        let now = Instant::now();
        self.1.push(Timing {
            stage: stage.into(),
            seconds: (now - self.0).as_secs_f64(),
        });
        tracing::info!("{stage}: {:.2}s", (now - self.0).as_secs_f64());
        if let Some((_, next)) = NEXT.iter().find(|(s, _)| *s == stage) {
            self.2.set_message(next.to_string());
        }
        self.0 = now;
    }
}

/// Load the extracts and add the blocking keys the job compares as
/// evidence (`scoring.key_evidence`, docs/decisions.md §20).
pub fn load_job(paths: &[PathBuf], cfg: &JobConfig) -> Result<Dataset> {
    let mut ds = load(paths)?;
    let keys = match cfg.scoring.key_evidence.as_slice() {
        [auto] if auto == "auto" => salt_free_keys(&ds),
        list => list.to_vec(),
    };
    if cfg.scoring.mode == ScoringMode::Probabilistic && !keys.is_empty() {
        tracing::info!(
            "comparing blocking key(s) {} as evidence where the salted fields give none",
            keys.join(", ")
        );
        ds.compare_keys(&keys)?;
    }
    if cfg.scoring.mode == ScoringMode::Probabilistic && cfg.scoring.date_variants {
        if cfg.scoring.levels.len() < DATE_MIN_CUTS {
            tracing::warn!(
                "scoring.levels has {} cut-offs; date variants need {DATE_MIN_CUTS} or more and are not compared",
                cfg.scoring.levels.len()
            );
        } else {
            for d in ds.compare_date_variants() {
                tracing::info!("comparing date variants of {d}");
            }
        }
    }
    Ok(ds)
}

/// The scoring mode and the threshold it applies (`--threshold` overrides).
fn mode_threshold(cfg: &JobConfig, threshold: Option<f64>) -> Result<(ScoringMode, f64)> {
    let t = match cfg.scoring.mode {
        ScoringMode::Probabilistic => threshold.unwrap_or(cfg.scoring.threshold),
        ScoringMode::Dice => threshold.unwrap_or(cfg.scoring.dice_threshold),
    };
    if !(0.0..=1.0).contains(&t) {
        return Err(Error::Usage(format!(
            "--threshold {t} must be between 0 and 1"
        )));
    }
    Ok((cfg.scoring.mode, t))
}

/// Run the link job in memory.
pub fn run(opts: &LinkOptions) -> Result<LinkRun> {
    let cfg = &opts.config;
    let dedup = opts.dedup || cfg.resolve.dedup;
    if opts.extracts.len() == 1 && !dedup {
        return Err(Error::Usage(
            "one --extract links nothing: give two or more extracts, or --dedup to deduplicate one"
                .into(),
        ));
    }
    if opts.extracts.len() > 64 {
        return Err(Error::Usage(
            "at most 64 extracts can be linked in one job".into(),
        ));
    }
    let (mode, threshold) = mode_threshold(cfg, opts.threshold)?;
    let spinner = crate::progress::spinner(opts.progress, "loading extracts");
    let mut clock = Clock(Instant::now(), Vec::new(), spinner);
    let ds = load_job(&opts.extracts, cfg)?;
    clock.lap("load");
    let eligible = eligible_pairs(&ds, dedup);
    // A refresh compares only what changed when the previous run allows it.
    let mut refresh = None;
    let mut why_full = None;
    if let Some(prev) = &opts.previous {
        match state::read(prev)? {
            _ if opts.full => why_full = Some("--full was given".to_string()),
            None => {
                why_full = Some(format!(
                    "{} has no {} (made by an older version)",
                    prev.display(),
                    state::FILE
                ))
            }
            Some(prior) => {
                match state::why_not_incremental(&prior, &ds, cfg, mode, threshold, dedup) {
                    Some(why) => why_full = Some(why),
                    None => refresh = Some(prior),
                }
            }
        }
        if let Some(why) = &why_full {
            tracing::info!("refresh links every record again: {why}");
        }
    }
    let cuts = cuts32(&cfg.scoring.levels);
    let Scored {
        cands,
        comps,
        model,
        weight,
        probability,
        work: increment,
        tally,
        tf,
    } = match refresh {
        None if opts.merge.is_some() => {
            let dir = opts.merge.as_deref().expect("merge");
            let plan = super::units::read_plan(dir)?;
            let (kept, tally) = super::units::read_units(dir, &plan)?;
            clock.lap("compare");
            let s = conclude(&ds, cfg, &cuts, plan.prepared, kept, tally, eligible);
            s.into_run(
                plan.passes,
                plan.method,
                plan.lsh_positions,
                ds.fields.len(),
            )
        }
        None => {
            let (grouped, fixed) = group_with_model(&ds, cfg, dedup, opts.model.as_deref())?;
            clock.lap("block");
            let s = streamed(
                &ds,
                cfg,
                dedup,
                &grouped,
                &cuts,
                fixed,
                eligible,
                (mode, threshold),
                &mut clock,
            )?;
            s.into_run(
                grouped.passes.into_iter().map(|p| p.stats).collect(),
                grouped.method,
                grouped.lsh_positions,
                ds.fields.len(),
            )
        }
        Some(prior) => incremental(
            &ds,
            cfg,
            dedup,
            prior,
            opts,
            &cuts,
            (mode, threshold),
            &mut clock,
        )?,
    };
    // Field levels are not needed past scoring; free them before resolving.
    let mut comps = comps;
    comps.levels = Vec::new();
    let (weight, probability, pair_probability) =
        if mode == ScoringMode::Probabilistic && !dedup && cfg.scoring.record_prior {
            super::posterior::apply(&ds, &cands.pairs, weight, probability, &model, cfg)
        } else {
            (weight, probability, None)
        };
    clock.lap("score");
    // Value frequencies as comparison used them: for confirming duplicates
    // (kept for the report's re-resolutions at other thresholds) and for
    // the second look at records left single.
    let confirm_tf = mode == ScoringMode::Probabilistic
        && !dedup
        && cfg.resolve.attach_duplicates
        && cfg.resolve.confirm_duplicates
        && cfg.scoring.tf_adjustment;
    let looking = pair_probability.is_some() && cfg.resolve.second_look;
    let tf_all = (cfg.scoring.tf_adjustment && (confirm_tf || looking))
        .then(|| tf.unwrap_or_else(|| value_frequencies(&ds)));
    let resolve_at = |scores: &[f32], pairs: &[u64]| {
        resolve_job(
            &ds,
            cfg,
            &model,
            tf_all.as_deref().filter(|_| confirm_tf),
            mode,
            dedup,
            pairs,
            scores,
            threshold,
            None,
        )
    };
    let (mut resolution, mut linked) = resolve_at(
        match mode {
            ScoringMode::Probabilistic => &probability,
            ScoringMode::Dice => &comps.dice,
        },
        &cands.pairs,
    );
    // Records left single: a second look among them, with the taken
    // records out of the sums (docs/decisions.md §19, §31).
    let (mut weight, mut probability) = (weight, probability);
    let (mut cands, mut pair_probability) = (cands, pair_probability);
    let mut second_look = None;
    if let Some(pairwise) = pair_probability
        .as_ref()
        .filter(|_| cfg.resolve.second_look)
    {
        let look = super::residual::second_look(
            &ds,
            cfg,
            &model,
            tf_all.as_deref(),
            (&cands.pairs, pairwise),
            super::residual::FirstResolution {
                root: &resolution.root,
                cluster_size: &resolution.cluster_size,
                threshold,
            },
            &cands.lsh_positions,
        )?;
        if let Some(look) = look {
            let before = cands.pairs.len();
            let raised = take_second_look(
                &look,
                threshold,
                cfg.output.pairs_min_probability as f32,
                &mut cands,
                &mut comps.dice,
                &mut weight,
                &mut probability,
                pair_probability.as_mut().expect("pairwise"),
            );
            tracing::info!(
                "second look among the records left single: {} pairs compared, {} added, {raised} now reach the threshold",
                cands.passes.last().map_or(0, |p| p.pairs),
                cands.pairs.len() - before
            );
            second_look = Some(super::residual::Summary::of(
                &ds,
                &look,
                (cands.pairs.len() - before) as u64,
                raised as u64,
            ));
            if raised > 0 {
                (resolution, linked) = resolve_at(&probability, &cands.pairs);
            }
        }
    }
    if resolution.attached > 0 {
        tracing::info!(
            "attached {} records to a cluster holding another record of their agency ({} confirmed by comparing the two, {} on the estimated duplicate rates {:?})",
            resolution.attached,
            resolution.confirmed,
            resolution.by_rate,
            resolution.duplicate_rate
        );
    }
    clock.lap("resolve");
    let key = JobKey::load(cfg.output.job_key_file.as_deref(), &opts.out)?;
    let new_job_key = key.new_file()?;
    let mut entity = name_entities(&ds, &resolution, &key);
    let changes = match &opts.previous {
        Some(p) => {
            let mut ch = super::refresh::carry_over(&ds, &resolution, &mut entity, p)?;
            ch.work = Some(increment.unwrap_or_else(|| super::refresh::Work {
                incremental: false,
                why_full: why_full.clone(),
                ..Default::default()
            }));
            Some(ch)
        }
        None => None,
    };
    clock.lap("pseudonymise");
    clock.2.finish_and_clear();
    Ok(LinkRun {
        ds,
        config: cfg.clone(),
        mode,
        threshold,
        dedup,
        eligible_pairs: eligible,
        candidates: cands,
        comparisons: comps,
        tally,
        model,
        weight,
        probability,
        pair_probability,
        linked,
        resolution,
        value_freq: tf_all.filter(|_| confirm_tf),
        second_look,
        entity,
        changes,
        timings: clock.1,
        new_job_key,
    })
}

/// Fold the second look at the records left single into the run's pairs
/// (all sorted by pair): a pair already kept takes its record-level
/// figure from the look when that is higher; a new pair joins when its
/// figure reaches `min_p` (it is then one the run reports). The look's
/// pass joins the blocking table. Returns how many pairs now reach
/// `threshold` that did not.
#[allow(clippy::too_many_arguments)]
fn take_second_look(
    look: &super::residual::SecondLook,
    threshold: f64,
    min_p: f32,
    cands: &mut Candidates,
    dice: &mut Vec<f32>,
    weight: &mut Vec<f32>,
    probability: &mut Vec<f32>,
    pairwise: &mut Vec<f32>,
) -> usize {
    let t = threshold as f32;
    let mut raised = 0;
    let n = cands.pairs.len();
    let mut added: Vec<usize> = Vec::new();
    let mut i = 0;
    for (k, &p) in look.pairs.iter().enumerate() {
        while i < n && cands.pairs[i] < p {
            i += 1;
        }
        let (w, q) = (look.weight[k], look.probability[k]);
        if i < n && cands.pairs[i] == p {
            if q > probability[i] {
                raised += usize::from(q >= t && probability[i] < t);
                weight[i] = w;
                probability[i] = q;
            }
        } else if q >= min_p {
            raised += usize::from(q >= t);
            added.push(k);
        }
    }
    if !added.is_empty() {
        // Merge the new pairs in, keeping the order by pair.
        let total = n + added.len();
        let mut order: Vec<(u64, usize)> = Vec::with_capacity(total);
        order.extend(cands.pairs.iter().enumerate().map(|(i, &p)| (p, i)));
        order.extend(added.iter().map(|&k| (look.pairs[k], n + k)));
        order.sort_unstable();
        let pick = |old: &[f32], new: &[f32]| -> Vec<f32> {
            order
                .iter()
                .map(|&(_, j)| if j < n { old[j] } else { new[j - n] })
                .collect()
        };
        *dice = pick(dice, &look.dice);
        *weight = pick(weight, &look.weight);
        *probability = pick(probability, &look.probability);
        *pairwise = pick(pairwise, &look.pairwise);
        cands.pairs = order.into_iter().map(|(p, _)| p).collect();
    }
    cands.passes.push(look.stats.clone());
    raised
}

/// What the streamed comparison of all candidates produced.
pub(crate) struct Streamed {
    kept: Kept,
    model: Model,
    weight: Vec<f32>,
    probability: Vec<f32>,
    tally: Tally,
    /// Value frequencies, when comparison adjusted for them.
    tf: Option<Vec<Vec<f32>>>,
}

/// The scored pairs a run resolves, however they were compared (in one
/// process, from scale-out units, or as a refresh).
struct Scored {
    cands: Candidates,
    comps: Comparisons,
    model: Model,
    weight: Vec<f32>,
    probability: Vec<f32>,
    /// What a refresh compared, when it was incremental.
    work: Option<super::refresh::Work>,
    tally: Tally,
    /// Value frequencies, when comparison adjusted for them here (not in
    /// scale-out units).
    tf: Option<Vec<Vec<f32>>>,
}

impl Streamed {
    fn into_run(
        self,
        passes: Vec<super::block::PassStats>,
        method: String,
        lsh_positions: Vec<Vec<u32>>,
        fields: usize,
    ) -> Scored {
        Scored {
            cands: Candidates {
                pairs: self.kept.pairs,
                passes,
                method,
                lsh_positions,
            },
            comps: Comparisons {
                dice: self.kept.dice,
                levels: Vec::new(),
                fields,
            },
            model: self.model,
            weight: self.weight,
            probability: self.probability,
            work: None,
            tally: self.tally,
            tf: self.tf,
        }
    }
}

/// Everything a chunk needs besides the data: the chunk ranges, the model
/// (complete, or m and u with λ to come) and the keep rule. Written to
/// `plan.json` by `link --plan` so that units run without fitting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepared {
    pub chunks: Vec<stream::Chunk>,
    /// m and u with λ = ½: scores before the prior.
    pub raw_model: Model,
    /// The complete model when already known (fixed, or fitted in a first pass).
    pub model: Option<Model>,
    /// Otherwise the session fit that the candidates' patterns complete.
    pub fit: Option<MFit>,
    /// Pairs kept: raw weight at least `floor`, or Dice at least `dice_keep`.
    pub floor: f32,
    pub dice_keep: f32,
    /// The prior assumed by `floor`.
    pub lambda_max: f64,
}

/// Fit what can be fitted before comparing the candidates and fix the
/// chunks: u from random pairs and m from training sessions, and when a
/// field no session trained needs the candidates, a first pass over them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare(
    ds: &Dataset,
    cfg: &JobConfig,
    dedup: bool,
    grouped: &Grouped,
    cuts: &[f32],
    fixed: Option<Model>,
    eligible: u64,
    (mode, threshold): (ScoringMode, f64),
    clock: &mut Clock,
) -> Result<Prepared> {
    let nf = ds.fields.len();
    if nf > 32 {
        return Err(Error::Usage(format!(
            "the schema has {nf} fields; linking supports at most 32"
        )));
    }
    let chunks = stream::chunks(&grouped.passes, cfg.blocking.chunk_pairs.max(1));
    let u_pairs = cfg.scoring.u_sample_pairs;
    let (mut model, mut fit) = match fixed {
        Some(m) => (Some(m), None),
        None => {
            let u = estimate_u(ds, cuts, u_pairs, dedup, cfg.seed);
            let dependent = dependent_fields(ds, cfg)?;
            let mut fit = fit_m(
                ds,
                cuts,
                u,
                cfg.scoring.em_max_iterations,
                dedup,
                &dependent,
            );
            if cfg
                .scoring
                .salt_correction
                .applies(dedup, cfg.scoring.record_prior)
            {
                fit.salt = fit_salt_weights(ds, cuts, &fit.u, dedup);
            }
            (None, Some(fit))
        }
    };
    // A field no session trained takes its m from the candidates: tally
    // their patterns first (one extra comparison pass).
    if let Some(f) = &fit
        && f.trained.iter().any(|t| !t)
    {
        let untrained: Vec<&str> = ds
            .fields
            .iter()
            .zip(&f.trained)
            .filter(|(_, t)| !**t)
            .map(|(x, _)| x.name.as_str())
            .collect();
        tracing::info!(
            "no training session covered {}: their m comes from a first pass over the candidates",
            untrained.join(", ")
        );
        let mut t = Tally::empty();
        for (i, &c) in chunks.iter().enumerate() {
            clock.2.set_message(format!(
                "fitting the model: chunk {} of {}",
                i + 1,
                chunks.len()
            ));
            let (tallies, _) =
                stream::emit_with(ds, &grouped.passes, &grouped.owners, dedup, c, |p| {
                    let comps = compare_scored(ds, &p.pairs, Some(&p.dice), cuts);
                    let mut t = Tally::empty();
                    t.candidates = p.pairs.len() as u64;
                    t.patterns = tally_patterns(&comps).into_iter().collect();
                    (Kept::default(), t)
                });
            let (_, part) = stream::merge_parts(tallies);
            t.add(&part);
        }
        model = Some(finish(
            ds,
            fit.take().expect("fit"),
            &t.em_patterns(nf),
            t.candidates,
            cuts,
            cfg.scoring.em_max_iterations,
            eligible,
            u_pairs,
        ));
    }
    // Scores before the prior: the model with λ = ½.
    let mut raw_model = match (&model, &fit) {
        (Some(m), _) => m.clone(),
        (None, Some(f)) => Model {
            fields: ds.fields.iter().map(|f| f.name.clone()).collect(),
            cuts: cuts.iter().map(|&c| c as f64).collect(),
            m: f.m.clone(),
            u: f.u.clone(),
            lambda: 0.5,
            candidate_lambda: 0.5,
            expected_matches: 0.0,
            sessions: Vec::new(),
            iterations: 0,
            converged: true,
            u_pairs,
            salt: f.salt.clone(),
            dependent: f.dependent.clone(),
        },
        (None, None) => unreachable!("a model or its fit"),
    };
    raw_model.lambda = 0.5;
    // Keep what may be reported or linked: probability at least the lower
    // of the report floor and the threshold, under the largest prior
    // plausible before λ is known (16 matches per record).
    let lambda_max = match &model {
        Some(m) => m.lambda,
        None => (16.0 * ds.len() as f64 / eligible.max(1) as f64).min(0.5),
    };
    let logit2 = |p: f64| (p / (1.0 - p)).log2();
    let p_min = match mode {
        ScoringMode::Probabilistic => cfg.output.pairs_min_probability.min(threshold),
        ScoringMode::Dice => cfg.output.pairs_min_probability,
    }
    .clamp(1e-9, 0.5);
    Ok(Prepared {
        chunks,
        raw_model,
        model,
        fit,
        floor: (logit2(p_min) - logit2(lambda_max)) as f32,
        dice_keep: match mode {
            ScoringMode::Dice => (threshold * 0.75) as f32,
            // Above any Dice: only the weight decides.
            ScoringMode::Probabilistic => 2.0,
        },
        lambda_max,
    })
}

/// Compare and score chunk `i`; also returns what emitting its pairs took.
#[allow(clippy::too_many_arguments)]
pub(crate) fn chunk(
    ds: &Dataset,
    grouped: &Grouped,
    dedup: bool,
    cuts: &[f32],
    prep: &Prepared,
    tf: Option<&[Vec<f32>]>,
    i: usize,
) -> (Kept, Tally, stream::EmitCounts) {
    let raw = |comps: &Comparisons, pairs: &[u64]| weights(&prep.raw_model, comps, pairs, tf);
    let clock = std::time::Instant::now();
    // Each work item's pairs are compared, scored and tallied while they
    // are in cache, never all held.
    let (parts, stats) = stream::emit_with(
        ds,
        &grouped.passes,
        &grouped.owners,
        dedup,
        prep.chunks[i],
        |part| stream::score_part(ds, part, cuts, &raw, prep.floor, prep.dice_keep),
    );
    let (k, t) = stream::merge_parts(parts);
    let c = prep.chunks[i];
    tracing::debug!(
        "chunk {i}: pass {} blocks {}..{}: {} pairs of blocks, {} kept as the pass's own, emitted in {:.3} thread-seconds; emitted, compared, scored and tallied in {:.3} s",
        grouped.passes[c.pass as usize].stats.name,
        c.from,
        c.to,
        stats.block_pairs,
        stats.pairs,
        stats.nanos as f64 * 1e-9,
        clock.elapsed().as_secs_f64()
    );
    (k, t, stats)
}

/// Complete the model from the tally (when λ was still to come) and score
/// the kept pairs.
pub(crate) fn conclude(
    ds: &Dataset,
    cfg: &JobConfig,
    cuts: &[f32],
    prep: Prepared,
    kept: Kept,
    tally: Tally,
    eligible: u64,
) -> Streamed {
    let model = match prep.model {
        Some(m) => m,
        None => {
            let m = finish(
                ds,
                prep.fit.expect("fit"),
                &tally.em_patterns(ds.fields.len()),
                tally.candidates,
                cuts,
                cfg.scoring.em_max_iterations,
                eligible,
                cfg.scoring.u_sample_pairs,
            );
            if m.lambda > prep.lambda_max {
                tracing::warn!(
                    "the fitted prior ({:.3e}) exceeds the bound used to keep pairs ({:.3e}): pairs.parquet may lack some pairs of low probability",
                    m.lambda,
                    prep.lambda_max
                );
            }
            m
        }
    };
    tracing::debug!(
        "model: {}",
        serde_json::to_string(&model).unwrap_or_default()
    );
    // Weights before the prior (λ = ½, as chunks keep them), then with it:
    // every run's first pass is weighed here, streamed, refreshed or merged
    // from units, so all agree to the last bit.
    let prior = model.prior_weight();
    let weight: Vec<f32> = kept
        .raw_weight
        .iter()
        .map(|&w| (w as f64 + prior) as f32)
        .collect();
    let probability = weight.iter().map(|&w| probability(w)).collect();
    Streamed {
        kept,
        model,
        weight,
        probability,
        tally,
        tf: None,
    }
}

/// Compare every candidate pair chunk by chunk (see `stream`).
#[allow(clippy::too_many_arguments)]
fn streamed(
    ds: &Dataset,
    cfg: &JobConfig,
    dedup: bool,
    grouped: &Grouped,
    cuts: &[f32],
    fixed: Option<Model>,
    eligible: u64,
    mode_threshold: (ScoringMode, f64),
    clock: &mut Clock,
) -> Result<Streamed> {
    let prep = prepare(
        ds,
        cfg,
        dedup,
        grouped,
        cuts,
        fixed,
        eligible,
        mode_threshold,
        clock,
    )?;
    clock.lap("fit");
    let tf = cfg.scoring.tf_adjustment.then(|| value_frequencies(ds));
    let mut kept = Kept::default();
    let mut tally = Tally::empty();
    let mut emit = stream::EmitCounts::default();
    for i in 0..prep.chunks.len() {
        clock.2.set_message(format!(
            "comparing candidate pairs: chunk {} of {}",
            i + 1,
            prep.chunks.len()
        ));
        let (k, t, e) = chunk(ds, grouped, dedup, cuts, &prep, tf.as_deref(), i);
        kept.append(k);
        tally.add(&t);
        emit = emit + e;
    }
    kept.sort();
    tracing::info!(
        "compared {} candidate pairs in {} chunks; kept {} that may be reported or linked",
        tally.candidates,
        prep.chunks.len(),
        kept.pairs.len()
    );
    let secs = emit.nanos as f64 * 1e-9;
    tracing::info!(
        "block tiles: CLK Dice of {} pairs of blocks ({} not held by an earlier pass) in {:.2} thread-seconds, {:.0} M pairs per thread-second ({} kernel)",
        emit.block_pairs,
        emit.pairs,
        secs,
        emit.block_pairs as f64 / secs.max(1e-9) * 1e-6,
        super::compare::Kernel::detect().name()
    );
    clock.lap("compare");
    let mut s = conclude(ds, cfg, cuts, prep, kept, tally, eligible);
    s.tf = tf;
    Ok(s)
}

/// Group the blocking passes; with `--model DIR`, with that run's LSH bands,
/// returning its model too.
fn group_with_model(
    ds: &Dataset,
    cfg: &JobConfig,
    dedup: bool,
    model_dir: Option<&Path>,
) -> Result<(Grouped, Option<Model>)> {
    let fixed = match model_dir {
        Some(dir) => Some(fixed_model(dir, ds, cfg, dedup)?),
        None => None,
    };
    // A model fitted without LSH leaves the bands to be drawn.
    let positions = fixed
        .as_ref()
        .map(|f| f.lsh_positions.as_slice())
        .filter(|p| !p.is_empty());
    let grouped = group(ds, &cfg.blocking, dedup, cfg.seed, positions)?;
    Ok((grouped, fixed.map(|f| f.model)))
}

/// The model (and LSH bands) a previous run fitted, checked against this
/// job's fields, levels, blocking and dependent fields.
fn fixed_model(dir: &Path, ds: &Dataset, cfg: &JobConfig, dedup: bool) -> Result<state::StateMeta> {
    let meta = state::read_meta(dir)?.ok_or_else(|| {
        Error::Usage(format!(
            "--model {}: no {} there (not a link output folder, or made by an older version)",
            dir.display(),
            state::FILE
        ))
    })?;
    let m = &meta.model;
    let names: Vec<&str> = ds.fields.iter().map(|f| f.name.as_str()).collect();
    let same_levels = m.cuts.len() == cfg.scoring.levels.len()
        && m.cuts
            .iter()
            .zip(&cfg.scoring.levels)
            .all(|(a, b)| (a - b).abs() < 1e-5);
    if m.fields != names || !same_levels {
        return Err(Error::Incompatible(format!(
            "--model {}: its model scores fields {:?} at levels {:?}, this job has fields {:?} at levels {:?}",
            dir.display(),
            m.fields,
            m.cuts,
            names,
            cfg.scoring.levels
        )));
    }
    if meta.blocking != serde_json::to_value(&cfg.blocking).expect("json") || meta.dedup != dedup {
        return Err(Error::Incompatible(format!(
            "--model {}: it was fitted with other blocking or deduplication settings than this job's",
            dir.display()
        )));
    }
    // The kept model carries the corrections of the pairs its job declared
    // (`scoring.dependent`); this job's must name fields and be the same
    // pairs, or it would silently score with other corrections than it
    // asks for.
    dependent_fields(ds, cfg)?;
    let declared = serde_json::to_value(&cfg.scoring.dependent).expect("json");
    let kept = meta
        .scoring
        .get("dependent")
        .cloned()
        .unwrap_or_else(|| serde_json::json!([]));
    if kept != declared {
        return Err(Error::Incompatible(format!(
            "--model {}: it was fitted with scoring.dependent = {kept}, this job declares {declared}; declare the same pairs, or fit a new model (leave out --model)",
            dir.display()
        )));
    }
    tracing::info!("scoring with the model of {}", dir.display());
    Ok(meta)
}

/// The scored pairs of an incremental refresh: the previous run's pairs
/// between unchanged records that the job's passes hold, plus every
/// candidate pair holding a new or changed record, compared and scored as
/// a full run with the previous run's model compares its candidates.
#[allow(clippy::too_many_arguments)]
fn incremental(
    ds: &Dataset,
    cfg: &JobConfig,
    dedup: bool,
    prior: state::Prior,
    opts: &LinkOptions,
    cuts: &[f32],
    mode_threshold: (ScoringMode, f64),
    clock: &mut Clock,
) -> Result<Scored> {
    let prev = opts
        .previous
        .as_deref()
        .expect("a refresh has a previous run");
    let fp = state::fingerprints(ds);
    let agency = |g: usize| ds.agencies[ds.agency_of[g] as usize].name.as_str();
    let mut index: std::collections::HashMap<(&str, &str), u32> =
        std::collections::HashMap::with_capacity(ds.len());
    let mut work = super::refresh::Work {
        incremental: true,
        ..Default::default()
    };
    let changed: Vec<bool> = (0..ds.len())
        .map(|g| {
            index.insert((agency(g), ds.ids.get(g)), g as u32);
            match prior.fingerprint(agency(g), ds.ids.get(g)) {
                None => {
                    work.records_new += 1;
                    true
                }
                Some(f) if f != fp[g] => {
                    work.records_changed += 1;
                    true
                }
                Some(_) => {
                    work.records_unchanged += 1;
                    false
                }
            }
        })
        .collect();
    // Every previous record still here is changed or unchanged.
    work.records_removed = prior.records() - work.records_changed - work.records_unchanged;
    let mut carried = state::carried_pairs(prev, &changed, &index)?;
    // The previous records' fingerprints and the id index are done with:
    // their memory goes before comparison's.
    drop(index);
    let state::Prior { meta, fingerprints } = prior;
    drop(fingerprints);
    let grouped = group(
        ds,
        &cfg.blocking,
        dedup,
        cfg.seed,
        Some(&meta.lsh_positions),
    )?;
    // Only what the job's own passes hold: not the previous second look's
    // pairs, which the look finds again if their records are still single.
    stream::retain_held(&grouped.passes, ds.len(), &mut carried);
    let mut pairs = stream::emit_changed(ds, &grouped.passes, dedup, &changed);
    work.pairs_compared = pairs.len() as u64;
    work.pairs_carried = carried.len() as u64;
    // The two sets are disjoint: every new pair holds a changed record, no
    // carried pair does. Carried pairs are compared again (they are few: the
    // previous run's likely matches) so that value frequencies, which move as
    // records arrive, weigh them as a full run would.
    pairs.extend(carried);
    pairs.sort_unstable();
    let method = format!("refresh of {}: {}", prev.display(), grouped.method);
    let stats: Vec<_> = grouped.passes.into_iter().map(|p| p.stats).collect();
    clock.lap("block");
    tracing::info!(
        "refresh: {} new, {} changed, {} removed, {} unchanged records; {} new pairs compared, {} likely pairs carried over",
        work.records_new,
        work.records_changed,
        work.records_removed,
        work.records_unchanged,
        work.pairs_compared,
        work.pairs_carried
    );
    // Compared, scored and kept as a full run with the previous model
    // compares its candidates: chunk by chunk, keeping the pairs that could
    // reach the floor and tallying the rest (one explicit pass of them), so
    // that memory stays bounded and the two weigh every pair alike.
    let listed = vec![stream::Pass {
        stats: super::block::PassStats {
            name: "refresh".into(),
            kind: "pairs".into(),
            ..Default::default()
        },
        members: Vec::new(),
        starts: vec![0],
        pairs,
    }];
    let listed = Grouped {
        owners: stream::Owners::new(&listed, &[], ds.clk.words),
        raw_pairs: listed[0].pairs.len() as u64,
        passes: listed,
        method: method.clone(),
        lsh_positions: meta.lsh_positions.clone(),
    };
    let s = streamed(
        ds,
        cfg,
        dedup,
        &listed,
        cuts,
        Some(meta.model),
        eligible_pairs(ds, dedup),
        mode_threshold,
        clock,
    )?;
    let mut scored = s.into_run(stats, method, meta.lsh_positions, ds.fields.len());
    scored.work = Some(work);
    Ok(scored)
}

/// `link --plan DIR`: load, group, fit what precedes comparison, and write
/// the plan; returns the number of units.
pub fn plan(opts: &LinkOptions, dir: &Path) -> Result<usize> {
    let cfg = &opts.config;
    let dedup = opts.dedup || cfg.resolve.dedup;
    if opts.extracts.len() < 2 && !dedup {
        return Err(Error::Usage(
            "a plan needs two or more extracts, or --dedup to deduplicate one".into(),
        ));
    }
    let (mode, threshold) = mode_threshold(cfg, opts.threshold)?;
    // The plan folder is made before any work (a folder that cannot be
    // made fails at once) and removed again if planning fails.
    let folder = crate::io::OutputDir::prepare(dir)?;
    let mut clock = Clock::new(opts.progress, "loading extracts");
    let ds = load_job(&opts.extracts, cfg)?;
    clock.lap("load");
    let eligible = eligible_pairs(&ds, dedup);
    let (grouped, fixed) = group_with_model(&ds, cfg, dedup, opts.model.as_deref())?;
    clock.lap("block");
    let cuts = cuts32(&cfg.scoring.levels);
    let prepared = prepare(
        &ds,
        cfg,
        dedup,
        &grouped,
        &cuts,
        fixed,
        eligible,
        (mode, threshold),
        &mut clock,
    )?;
    clock.lap("fit");
    let mut extracts = Vec::new();
    for p in &opts.extracts {
        extracts.push(super::units::PlanInput {
            path: std::path::absolute(p).map_err(|e| Error::read(p, e))?,
            sha256: crate::io::sha256_file(p)?,
        });
    }
    let plan = super::units::Plan {
        bloomlink_version: env!("CARGO_PKG_VERSION").into(),
        extracts,
        config: cfg.clone(),
        dedup,
        threshold: opts.threshold,
        method: grouped.method.clone(),
        lsh_positions: grouped.lsh_positions.clone(),
        passes: grouped.passes.iter().map(|p| p.stats.clone()).collect(),
        prepared,
        // Set from the text written (`write_plan`) or read (`read_plan`).
        id: String::new(),
    };
    for p in super::units::write_plan(dir, &plan, &grouped)? {
        p.commit()?;
    }
    folder.keep();
    clock.2.finish_and_clear();
    Ok(plan.units())
}

/// `link --plan DIR --unit I[-J]`: compare the candidate pairs of units
/// `first..=last` (one load of the extracts) and write each unit's kept
/// pairs and tally; returns (unit, candidates, kept) per unit.
pub fn units(dir: &Path, first: usize, last: usize) -> Result<Vec<(usize, (u64, u64))>> {
    let plan = super::units::read_plan(dir)?;
    if last >= plan.units() {
        return Err(Error::Usage(format!(
            "--unit {last}: the plan in {} has units 0 to {}",
            dir.display(),
            plan.units() - 1
        )));
    }
    let inputs = super::units::check_inputs(&plan)?;
    let ds = load_job(&inputs, &plan.config)?;
    let grouped = super::units::read_groups(dir, &plan, ds.clk.words)?;
    let cuts = cuts32(&plan.config.scoring.levels);
    let tf = plan
        .config
        .scoring
        .tf_adjustment
        .then(|| value_frequencies(&ds));
    let mut done = Vec::new();
    for i in first..=last {
        let (kept, tally, _) = chunk(
            &ds,
            &grouped,
            plan.dedup,
            &cuts,
            &plan.prepared,
            tf.as_deref(),
            i,
        );
        super::units::write_unit(dir, &plan, i, &kept, &tally)?.commit()?;
        done.push((i, (tally.candidates, kept.pairs.len() as u64)));
    }
    Ok(done)
}

/// Entity pseudonyms per record, from each cluster's sorted members.
fn name_entities(ds: &Dataset, r: &Resolution, key: &JobKey) -> Vec<String> {
    let n = ds.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    let agency = |g: u32| ds.agencies[ds.agency_of[g as usize] as usize].name.as_str();
    order.par_sort_unstable_by(|&x, &y| {
        r.root[x as usize]
            .cmp(&r.root[y as usize])
            .then_with(|| agency(x).cmp(agency(y)))
            .then_with(|| ds.ids.get(x as usize).cmp(ds.ids.get(y as usize)))
    });
    // Each entity's members, in the order its pseudonym reads them; the
    // pseudonyms (a keyed hash each) are made in parallel.
    let groups: Vec<&[u32]> = order
        .chunk_by(|&x, &y| r.root[x as usize] == r.root[y as usize])
        .collect();
    let names: Vec<String> = groups
        .par_iter()
        .map(|group| key.pseudonym(group.iter().map(|&g| (agency(g), ds.ids.get(g as usize)))))
        .collect();
    let mut group_of = vec![0u32; n];
    for (e, group) in groups.iter().enumerate() {
        for &g in *group {
            group_of[g as usize] = e as u32;
        }
    }
    group_of
        .par_iter()
        .map(|&e| names[e as usize].clone())
        .collect()
}

/// The run's links against a truth file, without re-reading them or
/// copying their ids ([`super::evaluate::judge`]): the known pairs' record
/// indices are the dataset's (a record's agency and id are unique in it).
pub fn judge(run: &LinkRun, truth: &Path) -> Result<super::evaluate::Judged> {
    let ds = &run.ds;
    let record = |g: usize| {
        let agency = ds.agencies[ds.agency_of[g] as usize].name.as_str();
        (agency, ds.ids.get(g), run.entity[g].as_str())
    };
    super::evaluate::judge(ds.len(), record, run.dedup, truth)
}

/// Where the run's missed true pairs went
/// ([`super::evaluate::missed_pairs`]), from its pairs file as written
/// (`pairs`) and its threshold.
pub fn missed(
    run: &LinkRun,
    judged: &super::evaluate::Judged,
    pairs: &Path,
) -> Result<super::evaluate::Missed> {
    use super::evaluate::Threshold;
    let ds = &run.ds;
    let record = |g: usize| {
        let agency = ds.agencies[ds.agency_of[g] as usize].name.as_str();
        (agency, ds.ids.get(g))
    };
    let threshold = match run.mode {
        ScoringMode::Dice => Threshold::Dice(run.threshold),
        ScoringMode::Probabilistic => Threshold::Probability(run.threshold),
    };
    super::evaluate::missed_pairs_of(ds.len(), record, judged, pairs, threshold)
}

/// `scoring.dependent` as field indices; a name that is not a field of
/// the extracts, or a field paired with itself, is refused.
fn dependent_fields(ds: &Dataset, cfg: &JobConfig) -> Result<Vec<[usize; 2]>> {
    let names: Vec<&str> = ds.fields.iter().map(|f| f.name.as_str()).collect();
    cfg.scoring
        .dependent
        .iter()
        .map(|pair| {
            let index = |x: &str| {
                names.iter().position(|&n| n == x).ok_or_else(|| {
                    Error::Usage(format!(
                        "scoring.dependent names `{x}`, which is not a field of the extracts (their fields: {})",
                        names.join(", ")
                    ))
                })
            };
            let (a, b) = (index(&pair[0])?, index(&pair[1])?);
            if a == b {
                return Err(Error::Usage(format!(
                    "scoring.dependent pairs `{}` with itself",
                    pair[0]
                )));
            }
            Ok([a, b])
        })
        .collect()
}

/// Write links.parquet and pairs.parquet; the caller commits them.
pub fn write_outputs(run: &LinkRun, out: &Path) -> Result<Vec<Pending>> {
    let ds = &run.ds;
    let agencies: Vec<&str> = ds.agencies.iter().map(|a| a.name.as_str()).collect();
    let meta = vec![
        (
            "bloomlink.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (
            crate::extract::META_DEDUP.to_string(),
            run.dedup.to_string(),
        ),
        (
            "bloomlink.agencies".to_string(),
            serde_json::to_string(&agencies).expect("json"),
        ),
        (
            "bloomlink.schema_fingerprint".to_string(),
            ds.fingerprint.clone(),
        ),
    ];
    let pairs_file = || -> Result<Pending> {
        let min_p = run.config.output.pairs_min_probability as f32;
        let dice_floor = (run.threshold as f32) * 0.75;
        let written = run.pair_probability.as_ref().unwrap_or(&run.probability);
        let rows: Vec<PairRow> = (0..run.candidates.pairs.len())
            .filter(|&i| {
                // A linked pair under the floor on both figures (linked
                // through others) is no evidence, and whether a run kept
                // it as a candidate depends on how far under the floor
                // that run kept pairs: not written (docs/decisions.md §68).
                (run.linked[i] && run.probability[i] >= min_p)
                    || written[i] >= min_p
                    || (run.mode == ScoringMode::Dice && run.comparisons.dice[i] >= dice_floor)
            })
            .map(|i| PairRow {
                pair: run.candidates.pairs[i],
                dice: run.comparisons.dice[i],
                weight: Some(run.weight[i]),
                probability: Some(run.probability[i]),
                linked: run.linked[i],
            })
            .collect();
        output::pairs(&out.join("pairs.parquet"), ds, &rows, meta.clone())
    };
    // The three files side by side (each writer is one thread): pairs on
    // one, links then the refresh state on another.
    let (pairs, (links, st)) = rayon::join(pairs_file, || {
        let links = output::links(
            &out.join("links.parquet"),
            ds,
            &run.entity,
            &run.resolution.cluster_size,
            meta.clone(),
        );
        (
            links,
            state::write(&out.join(state::FILE), ds, &state::StateMeta::new(run)),
        )
    });
    // Errors in the order the files were once written one by one.
    Ok(vec![links?, pairs?, st?])
}
