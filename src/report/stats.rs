//! The figures of the report, computed from a finished link run.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use super::*;
use crate::hub::load::{Dataset, Filters};
use crate::hub::resolve::Resolution;

/// Sort key that puts numeric labels in numeric order ("5-10" before
/// "11-15", "2" before "10"), other labels after them alphabetically.
fn natural(label: &str) -> (u64, &str) {
    let digits: String = label.chars().take_while(|c| c.is_ascii_digit()).collect();
    (digits.parse().unwrap_or(u64::MAX), label)
}

/// 95% Wilson score interval for `k` successes in `n`.
pub fn wilson(k: u64, n: u64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (n, p, z) = (n as f64, k as f64 / n as f64, 1.96f64);
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    [(c - h).max(0.0), (c + h).min(1.0)]
}

fn rate(k: u64, n: u64) -> Rate {
    Rate {
        n,
        k,
        rate: if n > 0 { k as f64 / n as f64 } else { 0.0 },
        ci: wilson(k, n),
    }
}

/// Pairs that were compared but not kept (their scores are only in the
/// run's tally), as (score on the report's axis, probability, count):
/// fine weight bins in probabilistic mode, fine Dice bins in Dice mode.
fn unkept(run: &LinkRun) -> Vec<(f64, f64, u64)> {
    use crate::hub::stream::{D_BIN, W_BIN, W_LO};
    let prior = run.model.prior_weight();
    let t = &run.tally;
    let sig = |w: f64| 1.0 / (1.0 + (-w).exp2());
    match run.mode {
        ScoringMode::Probabilistic => t
            .weight_hist
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| {
                let w = W_LO + (i as f64 + 0.5) * W_BIN + prior;
                (w, sig(w), c)
            })
            .collect(),
        ScoringMode::Dice => {
            // Unkept pairs are unlikely: p ≈ odds · λ/(1 − λ).
            let r = run.model.lambda / (1.0 - run.model.lambda);
            t.dice_hist
                .iter()
                .zip(&t.dice_odds)
                .enumerate()
                .filter(|(_, (c, _))| **c > 0)
                .map(|(i, (&c, &odds))| {
                    let p = (odds * r / c as f64).min(1.0);
                    ((i as f64 + 0.5) * D_BIN, p, c)
                })
                .collect()
        }
    }
}

/// Expected matches the resolution missed, and the variance of that sum.
///
/// Summing every unlinked candidate's probability counts the model's
/// alternatives to accepted links as missed matches: a record linked to `b`
/// with another candidate `b'` at 0.9 does not have two partners, and at a
/// million records such pairs held 0.65 M of probability for 51 k truly
/// missed pairs (docs/decisions.md §14). So an unlinked pair counts only
/// when one of its records is left without a link to the other's agency,
/// and each such record contributes at most 1 (one partner per agency).
fn missed(
    run: &LinkRun,
    res: &Resolution,
    linked: &[bool],
    rest: &[(f64, f64, u64)],
) -> (f64, f64) {
    let open = open_sums(
        &run.ds.agency_of,
        res,
        &run.candidates.pairs,
        &run.probability,
        linked,
    );
    let (mut miss, mut var) = (0.0, 0.0);
    for (p, v) in open {
        miss += p.min(1.0);
        var += if p > 1.0 { 0.0 } else { v };
    }
    for &(_, p, c) in rest {
        miss += p * c as f64;
        var += p * (1.0 - p) * c as f64;
    }
    (miss, var)
}

/// An agency's bit in a mask of agencies.
#[inline]
fn bit(agency: u16) -> u64 {
    1u64 << (agency % 64)
}

/// For each (record, agency) that the resolution leaves the record without
/// a partner in, and that some unlinked candidate pair offers one in: the
/// summed probability of those pairs and the sum of their `p(1 − p)`, in
/// the order first met. An unlinked pair counts for its first record when
/// that one lacks a partner in the second's agency, else for the second
/// when it lacks one in the first's (see [`missed`]).
///
/// Each record's keys are a short chain from a slot per record, rather
/// than a hash map over (record, agency): the candidates come in record
/// order, so the chains are met nearly in order too (docs/decisions.md §58).
fn open_sums(
    agency_of: &[u16],
    res: &Resolution,
    pairs: &[u64],
    probability: &[f32],
    linked: &[bool],
) -> Vec<(f64, f64)> {
    let n = agency_of.len();
    // Agencies present in each cluster, indexed by its root record; then
    // the agencies each record has no partner in: another agency its
    // cluster lacks, or its own when it is alone.
    let mut present = vec![0u64; n];
    for (g, &root) in res.root.iter().enumerate() {
        present[root as usize] |= bit(agency_of[g]);
    }
    let lacks: Vec<u64> = (0..n)
        .map(|g| {
            let own = bit(agency_of[g]);
            let alone = if res.cluster_size[g] > 1 { 0 } else { own };
            (!present[res.root[g] as usize] & !own) | alone
        })
        .collect();
    drop(present);
    /// One (record, agency)'s sums, and the record's next key.
    struct Open {
        agency: u16,
        next: u32,
        p: f64,
        v: f64,
    }
    const NONE: u32 = u32::MAX;
    let mut first = vec![NONE; n];
    let mut open: Vec<Open> = Vec::new();
    for (i, &pair) in pairs.iter().enumerate() {
        if linked[i] {
            continue;
        }
        let (a, b) = crate::hub::block::unpack(pair);
        let (aa, ab) = (agency_of[a], agency_of[b]);
        let (g, agency) = if lacks[a] & bit(ab) != 0 {
            (a, ab)
        } else if lacks[b] & bit(aa) != 0 {
            (b, aa)
        } else {
            continue;
        };
        let mut at = first[g];
        while at != NONE && open[at as usize].agency != agency {
            at = open[at as usize].next;
        }
        if at == NONE {
            at = u32::try_from(open.len()).expect("fewer open keys than 2^32 - 1");
            open.push(Open {
                agency,
                next: first[g],
                p: 0.0,
                v: 0.0,
            });
            first[g] = at;
        }
        let p = probability[i] as f64;
        let e = &mut open[at as usize];
        e.p += p;
        e.v += p * (1.0 - p);
    }
    open.into_iter().map(|e| (e.p, e.v)).collect()
}

/// Expected true links, their variance, links made, and expected missed
/// matches with their variance, for one resolution.
#[derive(Clone, Copy)]
struct Expected {
    links: u64,
    true_links: f64,
    var_links: f64,
    missed: f64,
    var_missed: f64,
}

impl Expected {
    fn of(run: &LinkRun, res: &Resolution, linked: &[bool], rest: &[(f64, f64, u64)]) -> Self {
        let (mut links, mut true_links, mut var_links) = (0u64, 0.0f64, 0.0f64);
        for (i, _) in linked.iter().enumerate().filter(|(_, l)| **l) {
            let p = run.probability[i] as f64;
            links += 1;
            true_links += p;
            var_links += p * (1.0 - p);
        }
        let (missed, var_missed) = missed(run, res, linked, rest);
        Expected {
            links,
            true_links,
            var_links,
            missed,
            var_missed,
        }
    }

    fn precision(&self) -> f64 {
        if self.links > 0 {
            self.true_links / self.links as f64
        } else {
            1.0
        }
    }

    fn recall(&self) -> f64 {
        let all = self.true_links + self.missed;
        if all > 0.0 {
            self.true_links / all
        } else {
            0.0
        }
    }
}

pub(super) fn scores_and_estimates(run: &LinkRun) -> (Scores, Estimates) {
    let np = run.candidates.pairs.len();
    let (what, lo, hi, width, thr_axis) = match run.mode {
        ScoringMode::Probabilistic => {
            let t = run.threshold.clamp(1e-6, 1.0 - 1e-6);
            (
                "match weight (bits)",
                -30.0,
                50.0,
                2.0,
                (t / (1.0 - t)).log2(),
            )
        }
        ScoringMode::Dice => ("CLK Dice", 0.0, 1.0, 0.025, run.threshold),
    };
    let bins = ((hi - lo) / width) as usize;
    let bin = |x: f64| (((x - lo) / width).floor().max(0.0) as usize).min(bins - 1);
    let mut counts = vec![0u64; bins];
    let mut linked = vec![0u64; bins];
    let axis = |i: usize| match run.mode {
        ScoringMode::Probabilistic => run.weight[i] as f64,
        ScoringMode::Dice => run.comparisons.dice[i] as f64,
    };
    for i in 0..np {
        let b = bin(axis(i));
        counts[b] += 1;
        if run.linked[i] {
            linked[b] += 1;
        }
    }
    let rest = unkept(run);
    for &(x, _, c) in &rest {
        counts[bin(x)] += c;
    }
    let edges = (0..=bins).map(|i| lo + i as f64 * width).collect();
    // Expected true links and expected missed matches (see `missed`).
    let now = Expected::of(run, &run.resolution, &run.linked, &rest);
    let thresholds: Vec<f64> = match run.mode {
        ScoringMode::Probabilistic => vec![
            0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999,
        ],
        ScoringMode::Dice => (10..20).map(|i| i as f64 * 0.05).collect(),
    };
    // Each threshold: pairs at or above it, and the links and estimates
    // after resolving at it (the run's own threshold is the run itself).
    let scores: Vec<f32> = (0..np).map(|i| run.score_of(i)).collect();
    // The pairs ranked once at the lowest threshold: each threshold's
    // ranking is a prefix of it.
    let lowest = thresholds.iter().fold(f64::INFINITY, |m, &t| m.min(t));
    let ranked = crate::hub::resolve::ranked(&run.candidates.pairs, &scores, lowest as f32);
    let sensitivity = thresholds
        .par_iter()
        .map(|&t| {
            let mut above = rest
                .iter()
                .filter(|&&(x, p, _)| match run.mode {
                    ScoringMode::Probabilistic => p >= t,
                    ScoringMode::Dice => x >= t,
                })
                .map(|r| r.2)
                .sum::<u64>();
            above += scores.iter().filter(|&&x| x as f64 >= t).count() as u64;
            let e = if t == run.threshold {
                now
            } else {
                let (res, linked) = crate::hub::link::resolve_job(
                    &run.ds,
                    &run.config,
                    &run.model,
                    run.value_freq.as_deref(),
                    run.mode,
                    run.dedup,
                    &run.candidates.pairs,
                    &scores,
                    t,
                    Some(&ranked[..ranked.partition_point(|&i| scores[i] >= t as f32)]),
                );
                Expected::of(run, &res, &linked, &rest)
            };
            ThresholdRow {
                threshold: t,
                pairs_above: above,
                linked_pairs: e.links,
                est_precision: e.precision(),
                est_recall: e.recall(),
            }
        })
        .collect();
    let precision = now.precision();
    let k = now.links;
    let pb = if k > 0 {
        1.96 * now.var_links.sqrt() / k as f64
    } else {
        0.0
    };
    let recall = now.recall();
    let all = now.true_links + now.missed;
    let rb = if all > 0.0 {
        1.96 * (now.var_links + now.var_missed).sqrt() / all
    } else {
        0.0
    };
    (
        Scores {
            histogram: Histogram {
                what: what.into(),
                edges,
                counts,
                linked,
                threshold: thr_axis,
            },
            sensitivity,
        },
        Estimates {
            precision,
            precision_band: [(precision - pb).max(0.0), (precision + pb).min(1.0)],
            recall,
            recall_band: [(recall - rb).max(0.0), (recall + rb).min(1.0)],
            linked_pairs: k,
            method: "Expected true links = sum of the fitted match probabilities of linked pairs. Expected missed matches = for each record left without a link to an agency, the chance it has a match there among its unlinked candidate pairs (their probabilities summed, at most 1), plus pairs too unlikely to keep (a fine histogram of their weights); an unlinked pair whose records are both linked to others in each other's agency competes with two accepted links and is not counted. Recall = expected true links / (expected true links + expected missed matches). Bands: ±1.96 standard deviations of those sums (Bernoulli), that is chance alone, given the fitted model. They do not include the model's own error, which is usually larger: on bloomlink's synthetic test sets (2 to 4 agencies, 8,000 to 20,000 people) the estimates were within 0.4 points of the true precision and about 3.5 points of the true recall, and recall read 2.5 to 3.5 points low where many records have no partner in another agency (60% overlap; four agencies), because the weak candidates of those records add up to expected misses that are not there. Matches lost by blocking are not counted. The sensitivity table resolves the candidates again at each threshold and estimates the same way.".into(),
        },
    )
}

pub(super) fn match_rates(run: &LinkRun, linked: &[bool]) -> MatchRates {
    let ds = &run.ds;
    let n = ds.len() as u64;
    let k = linked.iter().filter(|&&x| x).count() as u64;
    let overall = rate(k, n);
    // Agency i's records that share an entity with a record of agency j.
    let na = ds.agencies.len();
    let mut has: HashMap<u32, u64> = HashMap::new();
    for g in 0..ds.len() {
        *has.entry(run.resolution.root[g]).or_default() |= 1u64 << (ds.agency_of[g] as u64 % 64);
    }
    let mut agency_pairs = Vec::new();
    for i in 0..na {
        for j in 0..na {
            if i == j && !run.dedup {
                continue;
            }
            let a = &ds.agencies[i];
            let mut kk = 0;
            for g in a.start..a.start + a.len {
                let mask = has[&run.resolution.root[g]];
                let other = if i == j {
                    run.resolution.cluster_size[g] > 1
                } else {
                    mask & (1 << j) != 0
                };
                if other {
                    kk += 1;
                }
            }
            agency_pairs.push(PairRate {
                from: a.name.clone(),
                to: ds.agencies[j].name.clone(),
                rate: rate(kk, a.len as u64),
            });
        }
    }
    let mut strata = Vec::new();
    for s in &ds.strata {
        let mut per: Vec<(u64, u64)> = vec![(0, 0); s.labels.len()];
        for (code, &l) in s.codes.iter().zip(linked) {
            if let Some(c) = code {
                per[*c as usize].0 += 1;
                if l {
                    per[*c as usize].1 += 1;
                }
            }
        }
        let mut order: Vec<usize> = (0..s.labels.len()).collect();
        order.sort_by(|&a, &b| natural(&s.labels[a]).cmp(&natural(&s.labels[b])));
        for c in order {
            let (nn, kk) = per[c];
            // Two-proportion z test of this value against all other records.
            let (n2, k2) = (n - nn, k - kk);
            let z = if nn > 0 && n2 > 0 {
                let p = k as f64 / n as f64;
                let se = (p * (1.0 - p) * (1.0 / nn as f64 + 1.0 / n2 as f64)).sqrt();
                if se > 0.0 {
                    (kk as f64 / nn as f64 - k2 as f64 / n2 as f64) / se
                } else {
                    0.0
                }
            } else {
                0.0
            };
            let withheld = nn < run.config.output.min_reported_group;
            strata.push(StratumRate {
                stratum: s.name.clone(),
                value: s.labels[c].clone(),
                rate: (!withheld).then(|| rate(kk, nn)),
                overall: overall.rate,
                z: (!withheld).then_some(z),
                // Beyond chance at p < 0.001 and a gap of at least 2 points.
                flagged: !withheld
                    && z.abs() > 3.29
                    && ((kk as f64 / nn.max(1) as f64) - overall.rate).abs() >= 0.02,
                withheld,
            });
        }
    }
    MatchRates {
        overall,
        agency_pairs,
        strata,
    }
}

/// How one column's valid values spread over its records.
#[derive(Clone, Copy, Default)]
pub(super) struct Tally {
    valid: u64,
    /// Distinct values.
    distinct: u64,
    /// Values held by one record only.
    unique: u64,
    /// Records holding the commonest value.
    top: u64,
}

impl Tally {
    /// Count a value held by `c` records.
    fn add(&mut self, c: u64) {
        self.valid += c;
        self.distinct += 1;
        self.unique += u64::from(c == 1);
        self.top = self.top.max(c);
    }
}

/// A column's tallies: over every record, and per agency.
pub(super) struct ColumnTally {
    all: Tally,
    agency: Vec<Tally>,
}

/// The value counts the report reads: the CLK's, then each non-exact
/// field's in schema order. One grouping per column serves both the
/// input-quality section (per agency) and the privacy checks (all
/// records).
pub(super) struct ValueTallies {
    clk: ColumnTally,
    fields: Vec<ColumnTally>,
}

/// The fields [`ValueTallies::fields`] counts, in its order: every field
/// but the keys compared as evidence (exact agreement only).
fn tallied_fields(ds: &Dataset) -> impl Iterator<Item = &Filters> {
    ds.fields.iter().filter(|f| !f.exact)
}

/// Count the values of the CLK and of every non-exact field.
pub(super) fn value_tallies(ds: &Dataset) -> ValueTallies {
    // Records are ordered by agency, so the last is of the highest.
    let agencies = ds
        .agencies
        .len()
        .max(ds.agency_of.last().map_or(0, |&a| a as usize + 1));
    let column = |f: &Filters| {
        let groups = crate::hub::values::EqualGroups::of(f);
        let mut t = ColumnTally {
            all: Tally::default(),
            agency: vec![Tally::default(); agencies],
        };
        for group in groups.iter() {
            t.all.add(group.len() as u64);
            // Records ascend within a group, and agencies hold ranges of
            // records: each agency's members are a run.
            for run in group.chunk_by(|&x, &y| ds.agency_of[x as usize] == ds.agency_of[y as usize])
            {
                t.agency[ds.agency_of[run[0] as usize] as usize].add(run.len() as u64);
            }
        }
        t
    };
    let fields: Vec<&Filters> = tallied_fields(ds).collect();
    let (clk, fields) = rayon::join(
        || column(&ds.clk),
        || fields.par_iter().map(|f| column(f)).collect(),
    );
    ValueTallies { clk, fields }
}

pub(super) fn input_quality(run: &LinkRun, tallies: &ValueTallies) -> InputQuality {
    let ds = &run.ds;
    let mut fields = Vec::new();
    for (ai, a) in ds.agencies.iter().enumerate() {
        let r = a.start..a.start + a.len;
        for (f, tally) in tallied_fields(ds).zip(&tallies.fields) {
            let t = tally.agency[ai];
            let valid = t.valid;
            let bits = (f.words * 64) as f64;
            let fill: f64 = r
                .clone()
                .filter(|&g| f.valid[g])
                .map(|g| f.pop[g] as f64 / bits)
                .sum::<f64>()
                / valid.max(1) as f64;
            let completeness = valid as f64 / a.len.max(1) as f64;
            let mut flags = Vec::new();
            if completeness < 0.8 {
                flags.push("more than 20% missing".to_string());
            }
            if fill > 0.6 {
                flags.push("filters over 60% full: similarity is less informative".into());
            }
            if valid > 0 && t.top as f64 / valid as f64 > 0.5 && t.distinct > 2 {
                flags.push("one value dominates".into());
            }
            fields.push(FieldQuality {
                agency: a.name.clone(),
                field: f.name.clone(),
                completeness,
                distinct_share: t.unique as f64 / valid.max(1) as f64,
                top_value_share: t.top as f64 / valid.max(1) as f64,
                mean_fill: fill,
                flags,
            });
        }
    }
    let mut disagreements = BTreeMap::new();
    let mut linked_pairs = 0;
    for (a, b) in super::linked_pairs(run) {
        linked_pairs += 1;
        for s in &ds.strata {
            if let (Some(x), Some(y)) = (s.codes[a], s.codes[b])
                && x != y
            {
                *disagreements.entry(s.name.clone()).or_insert(0u64) += 1;
            }
        }
    }
    for s in &ds.strata {
        disagreements.entry(s.name.clone()).or_insert(0);
    }
    let limit = if run.dedup || run.resolution.attached > 0 {
        2 * ds.agencies.len() as u32
    } else {
        ds.agencies.len() as u32
    };
    let mut seen = std::collections::HashSet::new();
    let (mut large, mut largest) = (0, 0);
    for g in 0..ds.len() {
        let s = run.resolution.cluster_size[g];
        largest = largest.max(s as u64);
        if s > limit && seen.insert(run.resolution.root[g]) {
            large += 1;
        }
    }
    InputQuality {
        attached_duplicates: run.resolution.attached,
        confirmed_duplicates: run.resolution.confirmed,
        rate_duplicates: run.resolution.by_rate,
        estimated_duplicate_rate: run
            .resolution
            .duplicate_rate
            .iter()
            .zip(&ds.agencies)
            .map(|(&d, a)| (a.name.clone(), d))
            .collect(),
        fields,
        duplicate_ids: ds
            .agencies
            .iter()
            .map(|a| (a.name.clone(), a.meta.counts.duplicate_ids))
            .collect(),
        reject_reasons: ds
            .agencies
            .iter()
            .map(|a| (a.name.clone(), a.meta.counts.reject_reasons.clone()))
            .collect(),
        strata_disagreements: disagreements,
        linked_pairs,
        large_clusters: large,
        largest_cluster: largest,
    }
}

/// How many of the column's valid filters have each bit set (`ones[b]`
/// for bit `b`), and how many valid filters there are.
///
/// Bit `k` of every byte of a word is added at once into eight 8-bit
/// lanes of a `u64` (eight shifts, masks and adds a word, against a loop
/// per set bit, each a dependent increment: several seconds for a
/// million records' CLKs); the lanes are emptied into `ones` every 255
/// filters, before a lane can overflow.
fn bit_counts(f: &Filters) -> (Vec<u64>, u64) {
    const LOW: u64 = 0x0101_0101_0101_0101;
    let words = f.words;
    let mut ones = vec![0u64; words * 64];
    // lanes[wi * 8 + k], byte j: bit 8j + k of word wi.
    let mut lanes = vec![0u64; words * 8];
    let flush = |lanes: &mut [u64], ones: &mut [u64]| {
        for (i, l) in lanes.iter_mut().enumerate() {
            let (wi, k) = (i / 8, i % 8);
            for j in 0..8 {
                ones[wi * 64 + 8 * j + k] += (*l >> (8 * j)) & 0xff;
            }
            *l = 0;
        }
    };
    let (mut valid, mut held) = (0u64, 0u32);
    for g in (0..f.valid.len()).filter(|&g| f.valid[g]) {
        for (lane, &w) in lanes.chunks_exact_mut(8).zip(f.get(g)) {
            for (k, l) in lane.iter_mut().enumerate() {
                *l += (w >> k) & LOW;
            }
        }
        valid += 1;
        held += 1;
        if held == 255 {
            flush(&mut lanes, &mut ones);
            held = 0;
        }
    }
    flush(&mut lanes, &mut ones);
    (ones, valid)
}

fn filter_privacy(f: &Filters, t: &Tally) -> FilterPrivacy {
    let bits = f.words * 64;
    let (ones, valid) = bit_counts(f);
    let v = valid.max(1) as f64;
    let freq: Vec<f64> = ones.iter().map(|&c| c as f64 / v).collect();
    let mean = freq.iter().sum::<f64>() / bits as f64;
    let sd = (freq.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / bits as f64).sqrt();
    FilterPrivacy {
        column: f.name.clone(),
        bits,
        mean_fill: mean,
        bit_frequency_min: freq.iter().copied().fold(f64::INFINITY, f64::min),
        bit_frequency_max: freq.iter().copied().fold(0.0, f64::max),
        bit_frequency_sd: sd,
        unique_share: t.unique as f64 / v,
        top_value_share: t.top as f64 / v,
    }
}

pub(super) fn privacy(ds: &Dataset, tallies: &ValueTallies) -> Privacy {
    // Each column on its own thread.
    let columns: Vec<(&Filters, &Tally)> = std::iter::once((&ds.clk, &tallies.clk.all))
        .chain(tallied_fields(ds).zip(tallies.fields.iter().map(|t| &t.all)))
        .collect();
    let filters = columns
        .par_iter()
        .map(|&(f, t)| filter_privacy(f, t))
        .collect();
    let names: Vec<(&Filters, &str)> = ds
        .fields
        .iter()
        .filter_map(|f| {
            let n = f.name.to_lowercase();
            if ["last", "surname", "family"].iter().any(|k| n.contains(k)) {
                Some((f, "surname"))
            } else if ["first", "given", "forename"].iter().any(|k| n.contains(k)) {
                Some((f, "first name"))
            } else {
                None
            }
        })
        .collect();
    let frequency_attack = names
        .par_iter()
        .map(|&(f, kind)| {
            let reference = attack::reference_list(kind);
            attack::frequency_attack(
                &f.name,
                &format!("bundled UK {kind} frequencies ({} names)", reference.len()),
                ds.len(),
                |g| f.valid[g].then(|| f.get(g)),
                &reference,
                None,
                None,
            )
        })
        .collect();
    Privacy {
        filters,
        frequency_attack,
        notes: vec![
            "Field filters are kept per field for probabilistic scoring; a curious hub can count equal filters, so common values stand out. The frequency attack's estimate counts records holding a filter shared by at least 0.5% of records: an upper bound on what frequency analysis can name (docs/privacy.md compares it with measured attacks).".into(),
            "A flat bit-frequency profile (small spread) and low unique share mean less for a pattern-mining attack to work with.".into(),
        ],
    }
}

/// Recall of true pairs by stratum value: `pairs` are the true pairs
/// whose records are both linked ([`crate::hub::evaluate::Judged`]), as
/// record indices.
pub(super) fn recall_by_stratum(run: &LinkRun, pairs: &[(u32, u32)]) -> Vec<StratumRecall> {
    let ds = &run.ds;
    let mut out = Vec::new();
    for s in &ds.strata {
        let mut per: Vec<(u64, u64)> = vec![(0, 0); s.labels.len()];
        for &(a, b) in pairs {
            let (a, b) = (a as usize, b as usize);
            let found = run.resolution.root[a] == run.resolution.root[b];
            // Each distinct stratum value of the two records, once.
            let (x, y) = (s.codes[a], s.codes[b]);
            for c in [x, if y != x { y } else { None }].into_iter().flatten() {
                per[c as usize].0 += 1;
                per[c as usize].1 += found as u64;
            }
        }
        for (c, &(n, k)) in per.iter().enumerate() {
            let shown = n >= run.config.output.min_reported_group;
            out.push(StratumRecall {
                stratum: s.name.clone(),
                value: s.labels[c].clone(),
                true_pairs: shown.then_some(n),
                found: shown.then_some(k),
                recall: shown.then(|| if n > 0 { k as f64 / n as f64 } else { 0.0 }),
                withheld: !shown,
            });
        }
    }
    out.sort_by(|a, b| (&a.stratum, natural(&a.value)).cmp(&(&b.stratum, natural(&b.value))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A column's tallies over all records and per agency, from one
    /// grouping: agency 0 holds A A B, agency 1 holds A C C D; a field
    /// beside the CLK has two records without a value.
    #[test]
    fn value_tallies_count_each_agency_s_values_and_all_records_values() {
        let (a, b, c, d) = ([1u64, 0], [2u64, 0], [3u64, 9], [4u64, 0]);
        let clks: Vec<u64> = [a, a, b, a, c, c, d].concat();
        let mut ds = Dataset::of_clks(2, clks.clone(), vec![0, 0, 0, 1, 1, 1, 1]);
        let mut field = ds.clk.clone();
        field.name = "f".into();
        field.valid = vec![true, false, true, true, true, false, true];
        ds.fields.push(field);
        let t = value_tallies(&ds);
        let got = |x: &Tally| (x.valid, x.distinct, x.unique, x.top);
        assert_eq!(got(&t.clk.all), (7, 4, 2, 3));
        assert_eq!(got(&t.clk.agency[0]), (3, 2, 1, 2));
        assert_eq!(got(&t.clk.agency[1]), (4, 3, 2, 2));
        // The field: agency 0 holds A B, agency 1 A C D.
        assert_eq!(t.fields.len(), 1);
        assert_eq!(got(&t.fields[0].all), (5, 4, 3, 2));
        assert_eq!(got(&t.fields[0].agency[0]), (2, 2, 2, 1));
        assert_eq!(got(&t.fields[0].agency[1]), (3, 3, 3, 1));
    }

    /// The lane counts equal counting each set bit, across several
    /// flushes (over 255 filters), with invalid filters skipped and words
    /// full (one in every filter, so that a lane flushed late overflows),
    /// empty and random.
    #[test]
    fn bit_counts_equal_counting_each_set_bit() {
        let (n, words) = (1000usize, 3usize);
        let mut next = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15);
        let mut data = Vec::new();
        for g in 0..n {
            for w in 0..words {
                let x = next();
                data.push(match (g % 7, w) {
                    // A word full in every filter fills every lane.
                    (_, 2) | (0, 0) => u64::MAX,
                    (1, _) => 0,
                    _ => x,
                });
            }
        }
        let valid: Vec<bool> = (0..n).map(|g| g % 5 != 3).collect();
        let f = Filters {
            words,
            stride: words,
            data: std::sync::Arc::new(data),
            valid,
            ..Default::default()
        };
        let mut want = vec![0u64; words * 64];
        for g in (0..n).filter(|&g| f.valid[g]) {
            for (wi, &w) in f.get(g).iter().enumerate() {
                for b in 0..64 {
                    want[wi * 64 + b] += w >> b & 1;
                }
            }
        }
        let (ones, valid) = bit_counts(&f);
        assert_eq!(valid, f.valid.iter().filter(|&&v| v).count() as u64);
        assert_eq!(ones, want);
    }

    /// The open sums equal those of a map over (record, agency) filled the
    /// way `missed` used to, pair by pair: the same keys, the same sums.
    #[test]
    fn open_sums_equal_a_map_over_record_and_agency() {
        use crate::hub::block::unpack;
        use crate::hub::resolve::{resolve, tests::random_run};
        for (seed, dedup) in [(11, false), (13, false), (17, true)] {
            let (agency, pairs, score) = random_run(400, 1500, seed);
            let res = resolve(&agency, &pairs, &score, 0.6, dedup, None);
            let linked: Vec<bool> = pairs
                .iter()
                .map(|&p| {
                    let (a, b) = unpack(p);
                    res.root[a] == res.root[b]
                })
                .collect();
            // Probabilities that differ pair to pair, so that sums of
            // different pairs do not coincide.
            let prob: Vec<f32> = (0..pairs.len())
                .map(|i| score[i] * 0.9 + i as f32 * 1e-5)
                .collect();
            let mut present = vec![0u64; agency.len()];
            for (g, &root) in res.root.iter().enumerate() {
                present[root as usize] |= 1 << agency[g];
            }
            let partnered = |g: usize, a: u16| {
                if agency[g] == a {
                    res.cluster_size[g] > 1
                } else {
                    present[res.root[g] as usize] & (1 << a) != 0
                }
            };
            let mut want: BTreeMap<(usize, u16), (f64, f64)> = BTreeMap::new();
            for (i, &pair) in pairs.iter().enumerate() {
                if linked[i] {
                    continue;
                }
                let (a, b) = unpack(pair);
                let key = if !partnered(a, agency[b]) {
                    (a, agency[b])
                } else if !partnered(b, agency[a]) {
                    (b, agency[a])
                } else {
                    continue;
                };
                let p = prob[i] as f64;
                let e = want.entry(key).or_default();
                e.0 += p;
                e.1 += p * (1.0 - p);
            }
            let bits = |v: &[(f64, f64)]| {
                let mut b: Vec<(u64, u64)> =
                    v.iter().map(|(p, q)| (p.to_bits(), q.to_bits())).collect();
                b.sort_unstable();
                b
            };
            let got = open_sums(&agency, &res, &pairs, &prob, &linked);
            assert!(got.len() > 20, "the run leaves records open: {}", got.len());
            let want: Vec<(f64, f64)> = want.into_values().collect();
            assert_eq!(bits(&got), bits(&want));
        }
    }
}
