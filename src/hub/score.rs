//! Scoring candidate pairs: per-field Dice levels and Fellegi–Sunter weights.
//!
//! Each field's Dice falls into a comparison level (null when either side is
//! missing: no evidence). u-probabilities come from random pairs; m and the
//! match prior λ from EM on the candidate pairs, run on the counts of
//! distinct level patterns (so EM costs nothing per pair). Exact field-filter
//! matches can use the value's own frequency instead of the average u
//! (term-frequency adjustment): agreeing on a rare surname is stronger
//! evidence than agreeing on a common one. Hub side: filters only.

use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::block::unpack;
use super::compare::{Kernel, dice32};
use super::load::{ABSENT, DATE_SAME_MONTH, DATE_SWAPPED, DATE_YEAR_OFF, Dataset, DateVariants};

/// Comparison results for candidate pairs.
#[derive(Debug, Clone, Default)]
pub struct Comparisons {
    /// Record-level CLK Dice per pair (empty when the caller gave it).
    pub dice: Vec<f32>,
    /// Level per pair per field (`pairs × fields`), 0 = null.
    pub levels: Vec<u8>,
    pub fields: usize,
}

/// The level of a Dice value: 1 for the first cut-off met, `cuts + 1` for none.
#[inline(always)]
pub fn level_of(d: f32, cuts: &[f32]) -> u8 {
    for (i, &c) in cuts.iter().enumerate() {
        if d >= c {
            return i as u8 + 1;
        }
    }
    cuts.len() as u8 + 1
}

/// The level of a Dice value, 0 (null) when either side is missing.
#[inline(always)]
fn level_or_null(d: Option<f32>, cuts: &[f32]) -> u8 {
    d.map_or(0, |d| level_of(d, cuts))
}

/// A pair being compared: records `a` and `b` and their fields' counts
/// ([`Dataset::field_counts`]).
struct Pair<'d> {
    a: usize,
    b: usize,
    ca: &'d [u32],
    cb: &'d [u32],
}

#[inline(always)]
fn field_level(ds: &Dataset, fi: usize, p: &Pair, cuts: &[f32], kernel: Kernel) -> u8 {
    let f = &ds.fields[fi];
    if f.exact {
        // A blocking key: agreement or none.
        let present = p.ca[fi] != ABSENT && p.cb[fi] != ABSENT;
        return match (present, same_words(f.get(p.a), f.get(p.b))) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => cuts.len() as u8 + 1,
        };
    }
    let d = dice_across(ds, fi, fi, p, kernel);
    match (&f.date, d) {
        (Some(dv), Some(d)) => date_level(dv, d, p.a, p.b, cuts),
        _ => level_or_null(d, cuts),
    }
}

/// Whether two short word runs (a blocking key's) are equal, inline: a
/// slice `==` is a call to `memcmp`, which cost 4% of a 1M link's time
/// on two-word keys.
#[inline(always)]
fn same_words(a: &[u64], b: &[u64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// The level of a date field with keyed variants (docs/decisions.md §24):
/// 1 exact, [`DATE_SWAPPED`], [`DATE_YEAR_OFF`], [`DATE_SAME_MONTH`], then
/// the Dice cut-offs from the third on (the last level also takes what
/// falls below them). A level whose key the extracts lack never occurs.
#[inline(always)]
fn date_level(dv: &DateVariants, d: f32, a: usize, b: usize, cuts: &[f32]) -> u8 {
    if d >= cuts[0] {
        1
    } else if dv.swapped(a, b) {
        DATE_SWAPPED
    } else if dv.year_off(a, b) {
        DATE_YEAR_OFF
    } else if dv.same_month(a, b) {
        DATE_SAME_MONTH
    } else {
        (DATE_SAME_MONTH + level_of(d, &cuts[2..])).min(cuts.len() as u8 + 1)
    }
}

/// Dice of record `a`'s filter in field `x` against record `b`'s in field
/// `y`; `None` when either is missing.
#[inline(always)]
fn dice_across(ds: &Dataset, x: usize, y: usize, p: &Pair, kernel: Kernel) -> Option<f32> {
    let (pa, pb) = (p.ca[x], p.cb[y]);
    if pa != ABSENT && pb != ABSENT {
        let common = kernel.and_popcount(ds.fields[x].get(p.a), ds.fields[y].get(p.b));
        Some(dice32(common, pa, pb))
    } else {
        None
    }
}

/// Every field's level for the pair `(a, b)` into `out`. For the schema's
/// `swap` pair (a forename and a surname hashed under one key), the crossed
/// comparison (a's forename with b's surname and the other way round) is
/// taken instead of the straight one when it agrees more: names recorded in
/// each other's place then count as agreeing.
///
/// Salted fields are null (no evidence) when the two records' salts surely
/// differ ([`Salt::differs`](super::load::Salt::differs)): their filters
/// are then unrelated whether or not the values agree, and counting them as
/// disagreeing would punish a match for a missing date of birth three times
/// over. A fallback field (the schema's `fallback_for`) is null unless the
/// field it stands in for is present and not exactly equal, and then
/// either agrees exactly or disagrees (docs/decisions.md §21).
/// Blocking keys compared as evidence (`exact` fields) are null when
/// the salt's source agrees exactly or a salted field agrees at any level
/// (docs/decisions.md §20).
#[inline(always)]
pub fn pair_levels(ds: &Dataset, a: usize, b: usize, cuts: &[f32], kernel: Kernel, out: &mut [u8]) {
    raw_pair_levels(ds, a, b, cuts, kernel, out);
    let disagree = cuts.len() as u8 + 1;
    // A fallback (a forename reduced to its formal name, say) speaks only
    // where the field it stands in for does not agree exactly, and only as
    // "the same value" or not: Billy and William are partly alike as
    // written (a level the forename itself counts) and equal as formal
    // names, while a typo leaves the formal name as unequal as the
    // forename.
    for (f, field) in ds.fields.iter().enumerate() {
        if let Some(p) = field.fallback_for {
            if out[p] == 0 || out[p] == 1 {
                out[f] = 0;
            } else if out[f] > 1 {
                out[f] = disagree;
            }
        }
    }
    if let Some(salt) = &ds.salt {
        if salt.differs(ds, a, b) || salt.differs_by_level(&ds.fields, out) {
            for &f in &salt.salted {
                out[f] = 0;
            }
        }
        // Blocking keys compared as evidence count only when the salts may
        // differ (the source does not agree exactly) and no salted field
        // agrees at any level. Otherwise the names' filters have spoken,
        // and the key would count the same names twice.
        if out[salt.source] == 1
            || salt
                .salted
                .iter()
                .any(|&f| out[f] != 0 && out[f] != disagree)
        {
            for (f, field) in ds.fields.iter().enumerate() {
                if field.exact {
                    out[f] = 0;
                }
            }
        }
    }
}

#[inline(always)]
fn raw_pair_levels(ds: &Dataset, a: usize, b: usize, cuts: &[f32], kernel: Kernel, out: &mut [u8]) {
    let p = Pair {
        a,
        b,
        ca: ds.field_counts(a),
        cb: ds.field_counts(b),
    };
    let Some((x, y)) = ds.swap else {
        for (fi, o) in out.iter_mut().enumerate().take(ds.fields.len()) {
            *o = field_level(ds, fi, &p, cuts, kernel);
        }
        return;
    };
    let (sx, sy) = (
        dice_across(ds, x, x, &p, kernel),
        dice_across(ds, y, y, &p, kernel),
    );
    let level = |d: Option<f32>| level_or_null(d, cuts);
    for (fi, o) in out.iter_mut().enumerate().take(ds.fields.len()) {
        *o = if fi == x {
            level(sx)
        } else if fi == y {
            level(sy)
        } else {
            field_level(ds, fi, &p, cuts, kernel)
        };
    }
    if out[x] == 1 && out[y] == 1 {
        return;
    }
    let sum = |p: Option<f32>, q: Option<f32>| p.unwrap_or(0.0) + q.unwrap_or(0.0);
    let (cx, cy) = (
        dice_across(ds, x, y, &p, kernel),
        dice_across(ds, y, x, &p, kernel),
    );
    if sum(cx, cy) > sum(sx, sy) {
        out[x] = level(cx);
        out[y] = level(cy);
    }
}

/// Cut-offs as `f32`, with exact agreement tolerant of rounding.
pub fn cuts32(levels: &[f64]) -> Vec<f32> {
    levels
        .iter()
        .map(|&c| if c >= 1.0 { 1.0 - 1e-6 } else { c as f32 })
        .collect()
}

/// Where each record's comparison data lies, worked out once for a run of
/// pairs rather than for every record asked for (read by the prefetches,
/// which only x86-64 makes).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Places<'a> {
    ds: &'a Dataset,
    /// Each record's field filters in their record-major arena.
    filters: Option<super::load::FilterSpan<'a>>,
    /// Blocking keys compared as evidence (an arena each).
    exact: Vec<&'a super::load::Filters>,
    /// Dates' keyed variants.
    dates: Vec<&'a DateVariants>,
}

impl<'a> Places<'a> {
    fn of(ds: &'a Dataset) -> Places<'a> {
        Places {
            ds,
            filters: ds.filter_span(),
            exact: ds.fields.iter().filter(|f| f.exact).collect(),
            dates: ds.fields.iter().filter_map(|f| f.date.as_deref()).collect(),
        }
    }

    /// Hint the CPU to load record `g`'s field filters (and its CLK when
    /// `clk`) into cache.
    #[inline(always)]
    fn prefetch(&self, g: usize, clk: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let ds = self.ds;
            let lines = |w: &[u64]| {
                for line in w.chunks(8) {
                    // SAFETY: a prefetch is only a hint; the address is in a live slice.
                    unsafe { _mm_prefetch(line.as_ptr() as *const i8, _MM_HINT_T0) };
                }
            };
            let one = |p: *const i8| {
                // SAFETY: as above; `p` points into a live vector.
                unsafe { _mm_prefetch(p, _MM_HINT_T0) };
            };
            if clk {
                lines(ds.clk.get(g));
                one(ds.clk.pop[g..].as_ptr() as *const i8);
            }
            if let Some(span) = self.filters {
                lines(span.of(g));
            }
            // Every field's presence and popcount: one row.
            let counts = ds.field_counts(g);
            one(counts.as_ptr() as *const i8);
            if let Some(last) = counts.last() {
                one(last as *const u32 as *const i8);
            }
            for f in &self.exact {
                lines(f.get(g));
            }
            for dv in &self.dates {
                // A record's keys: one line, or two when they straddle one.
                for k in dv.of(g).first().into_iter().chain(dv.of(g).last()) {
                    one(k as *const u64 as *const i8);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (g, clk);
    }
}

/// Compare every candidate pair (parallel, no allocation per pair).
pub fn compare(ds: &Dataset, pairs: &[u64], cuts: &[f32]) -> Comparisons {
    compare_scored(ds, pairs, None, cuts)
}

/// [`compare`], taking the pairs' CLK Dice when it is known already (the
/// block tiles of [`super::stream::emit`] compute it); the result's `dice`
/// is then left empty.
pub fn compare_scored(
    ds: &Dataset,
    pairs: &[u64],
    dice: Option<&[f32]>,
    cuts: &[f32],
) -> Comparisons {
    let kernel = Kernel::detect();
    let nf = ds.fields.len();
    let known = dice.is_some();
    if !ds.is_empty() {
        // Build the record-major counts once, before the threads need them.
        ds.field_counts(0);
    }
    if let Some(d) = dice {
        assert_eq!(d.len(), pairs.len(), "one CLK Dice per pair");
    }
    let mut dice = if known {
        Vec::new()
    } else {
        vec![0f32; pairs.len()]
    };
    let mut levels = vec![0u8; pairs.len() * nf.max(1)];
    const CH: usize = 4096;
    let run = |(l, p): (&mut [u8], &[u64]), d: &mut [f32]| match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: only chosen when the CPU reports the features.
        Kernel::Avx512 => unsafe { x86_compare_run(ds, p, known, cuts, d, l) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: only chosen when the CPU reports POPCNT.
        Kernel::Popcnt | Kernel::Avx2 => unsafe {
            popcnt_compare_run(ds, kernel, p, known, cuts, d, l)
        },
        _ => compare_run(ds, kernel, p, known, cuts, d, l),
    };
    if known {
        levels
            .par_chunks_mut(CH * nf.max(1))
            .zip(pairs.par_chunks(CH))
            .for_each(|lp| run(lp, &mut []));
    } else {
        dice.par_chunks_mut(CH)
            .zip(
                levels
                    .par_chunks_mut(CH * nf.max(1))
                    .zip(pairs.par_chunks(CH)),
            )
            .for_each(|(d, lp)| run(lp, d));
    }
    Comparisons {
        dice,
        levels,
        fields: nf,
    }
}

/// The CLK Dice of records `a` and `b`.
#[inline(always)]
pub fn clk_dice(ds: &Dataset, kernel: Kernel, a: usize, b: usize) -> f32 {
    dice32(
        kernel.and_popcount(ds.clk.get(a), ds.clk.get(b)),
        ds.clk.pop[a],
        ds.clk.pop[b],
    )
}

/// Compare a run of pairs into `d` (CLK Dice, unless `known`) and `l`
/// (levels).
#[inline(always)]
fn compare_run(
    ds: &Dataset,
    kernel: Kernel,
    p: &[u64],
    known: bool,
    cuts: &[f32],
    d: &mut [f32],
    l: &mut [u8],
) {
    let nf = ds.fields.len();
    // Records prefetched lately (direct-mapped by index): in block order a
    // block's members come back row after row, already in cache.
    let mut recent = [u32::MAX; 256];
    let places = Places::of(ds);
    for (i, &pair) in p.iter().enumerate() {
        // Start loading the records of a pair a few steps ahead: b is the
        // random access (in a sorted list, and in the first row of each
        // block of a list in block order), and a is new at each row of a
        // block (in a linkage a row's record is never a column, so it was
        // not loaded as one). Asking for a too took 8-12% off the compare
        // stage of a 1M x 1M link (decisions §61).
        if let Some(&ahead) = p.get(i + 6) {
            for g in [(ahead >> 32) as u32, ahead as u32] {
                let slot = &mut recent[(g.wrapping_mul(0x9E37_79B9) >> 24) as usize];
                if *slot != g {
                    *slot = g;
                    places.prefetch(g as usize, !known);
                }
            }
        }
        let (a, b) = unpack(pair);
        if !known {
            d[i] = clk_dice(ds, kernel, a, b);
        }
        pair_levels(ds, a, b, cuts, kernel, &mut l[i * nf..(i + 1) * nf]);
    }
}

/// [`compare_run`] compiled for AVX-512, so that each field's popcount is
/// inlined instead of called.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,avx2,popcnt")]
unsafe fn x86_compare_run(
    ds: &Dataset,
    p: &[u64],
    known: bool,
    cuts: &[f32],
    d: &mut [f32],
    l: &mut [u8],
) {
    compare_run(ds, Kernel::Avx512, p, known, cuts, d, l)
}

/// [`compare_run`] compiled for POPCNT (the `popcnt` and `avx2`
/// kernels), for the same reason: each field's popcount was a call, 6.5%
/// of a 1M × 1M link's samples on an AVX2 host (decisions §54).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn popcnt_compare_run(
    ds: &Dataset,
    kernel: Kernel,
    p: &[u64],
    known: bool,
    cuts: &[f32],
    d: &mut [f32],
    l: &mut [u8],
) {
    compare_run(ds, kernel, p, known, cuts, d, l)
}

/// Field levels only (`pairs × fields`), for training sessions.
pub fn compare_fields(ds: &Dataset, pairs: &[u64], cuts: &[f32]) -> Vec<u8> {
    compare(ds, pairs, cuts).levels
}

/// The fitted Fellegi–Sunter model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub fields: Vec<String>,
    /// Dice cut-offs defining levels 1..=cuts.len(); the last level is "below all".
    pub cuts: Vec<f64>,
    /// `m[field][level]`, level 0 (null) unused.
    pub m: Vec<Vec<f64>>,
    pub u: Vec<Vec<f64>>,
    /// Prior probability that two random eligible records match.
    pub lambda: f64,
    /// Share of matches among candidate pairs (from EM).
    pub candidate_lambda: f64,
    /// Estimated matches among all eligible pairs (λ × eligible pairs; see
    /// `train::tail_matches`).
    pub expected_matches: f64,
    /// EM training sessions that estimated m.
    pub sessions: Vec<super::train::Session>,
    pub iterations: usize,
    pub converged: bool,
    /// Random pairs used for u.
    pub u_pairs: usize,
    /// Weights of pairs whose salts surely agree, when the schema salts by
    /// a year of birth (docs/decisions.md §16).
    #[serde(default)]
    pub salt: Option<SaltWeights>,
    /// Pairs of fields that go wrong together (`scoring.dependent`).
    #[serde(default)]
    pub dependent: Vec<Dependent>,
}

/// Two fields that go wrong together (a move changes postcode and address
/// at once), and the weight independence misses when both are below
/// exact: `log2(P(both below | match) / (P(a below | match) · P(b below |
/// match)))`, fitted on the training sessions' likely matches
/// ([`super::train::dependence_bits`]). Among non-matches both are below
/// exact nearly always, so that side's ratio is 1 (within 10⁻⁵ at 1M).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dependent {
    pub fields: [usize; 2],
    pub bits: f64,
}

impl Dependent {
    /// The correction for a pair's levels: `bits` when both fields are
    /// present and below exact (level 2 or more), else 0.
    #[inline]
    pub fn correction(&self, levels: &[u8]) -> f64 {
        let [a, b] = self.fields;
        if levels[a] >= 2 && levels[b] >= 2 {
            self.bits
        } else {
            0.0
        }
    }
}

/// The correction for pairs whose salts surely agree.
///
/// A salted field's random-pair u already holds the chance that two records
/// share the salt (`p`): names salted by year of birth agree only within a
/// year. Each salted field that agrees, and a date of birth that agrees,
/// then counts the same year agreement again: per pair, `P(γ | non-match)`
/// is `p · Π P(γ_f | equal salts)` but the independent model says
/// `Π u_f = p^k · …`. When `k ≥ 1` salted fields agree (or the source
/// agrees exactly) the weight drops by `(k − 1)·log2(1/p)` plus the
/// source's shift: `log2(P(source level | non-match, equal salts) /
/// u(level))`, between 0 and `log2(1/p)` (an exact date is `log2(1/p)`).
/// The correction never raises a weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaltWeights {
    /// Field index of the salt's source.
    pub source: usize,
    /// Salted field indices.
    pub salted: Vec<usize>,
    /// Salted-field levels `1..=agree_levels` imply equal salts.
    pub agree_levels: u8,
    /// `log2(1 / P(equal salts | random pair))`.
    pub salt_bits: f64,
    /// Per level of the source field (index 0, null, is 0).
    pub source_shift: Vec<f64>,
}

impl SaltWeights {
    /// The weight correction (bits, ≤ 0) for a pair's levels.
    #[inline]
    pub fn correction(&self, levels: &[u8]) -> f64 {
        let k = self
            .salted
            .iter()
            .filter(|&&f| (1..=self.agree_levels).contains(&levels[f]))
            .count();
        let source = levels[self.source];
        if k == 0 && source != 1 {
            return 0.0;
        }
        let shift = self
            .source_shift
            .get(source as usize)
            .copied()
            .unwrap_or(0.0);
        (-(k as f64 - 1.0) * self.salt_bits - shift).min(0.0)
    }
}

impl Model {
    /// Weight (log2 m/u) of a field at a level; 0 for null.
    #[inline]
    pub fn field_weight(&self, f: usize, l: u8) -> f64 {
        if l == 0 {
            0.0
        } else {
            (self.m[f][l as usize] / self.u[f][l as usize]).log2()
        }
    }

    /// The prior as a weight, log2(λ / (1 − λ)).
    pub fn prior_weight(&self) -> f64 {
        (self.lambda / (1.0 - self.lambda)).log2()
    }
}

/// Levels of a field including null and "below all cut-offs".
pub fn n_levels(cuts: &[f32]) -> usize {
    cuts.len() + 2
}

/// Estimate u from `n` random eligible pairs (deterministic for a seed).
pub fn estimate_u(ds: &Dataset, cuts: &[f32], n: usize, dedup: bool, seed: u64) -> Vec<Vec<f64>> {
    let kernel = Kernel::detect();
    let nl = n_levels(cuts);
    let total = ds.len();
    let mut counts = vec![vec![0u64; nl]; ds.fields.len()];
    let mut lv = vec![0u8; ds.fields.len()];
    if total < 2 {
        return counts
            .iter()
            .map(|c| vec![1.0 / nl as f64; c.len()])
            .collect();
    }
    let single = ds.agencies.len() == 1;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x75);
    let mut drawn = 0;
    let mut tries = 0;
    while drawn < n && tries < n * 20 {
        tries += 1;
        let a = rng.random_range(0..total);
        let b = rng.random_range(0..total);
        if a == b || (!dedup && !single && ds.agency_of[a] == ds.agency_of[b]) {
            continue;
        }
        drawn += 1;
        pair_levels(ds, a, b, cuts, kernel, &mut lv);
        for (fi, &l) in lv.iter().enumerate() {
            counts[fi][l as usize] += 1;
        }
    }
    counts
        .iter()
        .map(|c| {
            let nonnull: u64 = c[1..].iter().sum();
            let mut u = vec![0.0; nl];
            for l in 1..nl {
                // Add-one smoothing: no level has probability 0.
                u[l] = (c[l] as f64 + 1.0) / (nonnull as f64 + (nl - 1) as f64);
            }
            u
        })
        .collect()
}

/// Per record and field, the frequency of its exact field filter among all
/// records with that field (for term-frequency adjustment).
pub fn value_frequencies(ds: &Dataset) -> Vec<Vec<f32>> {
    ds.fields
        .par_iter()
        .map(|f| {
            let groups = super::values::EqualGroups::of(f);
            let valid = groups.valid() as f32;
            let mut freq = vec![0f32; ds.len()];
            for group in groups.iter() {
                let x = group.len() as f32 / valid;
                for &g in group {
                    freq[g as usize] = x;
                }
            }
            freq
        })
        .collect()
}

/// Match weight of each candidate pair (bits, the model's prior included).
pub fn weights(
    model: &Model,
    comps: &Comparisons,
    pairs: &[u64],
    tf: Option<&[Vec<f32>]>,
) -> Vec<f32> {
    let nf = comps.fields;
    let prior = model.prior_weight();
    // Weight table per field and level.
    let table: Vec<Vec<f64>> = (0..nf)
        .map(|f| {
            (0..model.m[f].len())
                .map(|l| model.field_weight(f, l as u8))
                .collect()
        })
        .collect();
    // A valid value's frequency is at least 1/records; this only guards log(0).
    let min_freq = 1e-12;
    let mut weight = vec![0f32; pairs.len()];
    // Each field's term-frequency weights as computed lately, by the
    // frequency's bits (direct-mapped): frequencies are counts over the
    // records, so few distinct ones recur, and a hit returns the very
    // value the logarithm gave (a logarithm per pair was 3% of a 1M link).
    // Without frequencies there is nothing to cache.
    let slots = if tf.is_some() { nf * TF_SLOTS } else { 0 };
    let no_cache = || vec![(u64::MAX, 0f64); slots];
    weight
        .par_iter_mut()
        .enumerate()
        .for_each_init(no_cache, |seen, (i, wo)| {
            if let (Some(tf), Some(&ahead)) = (tf, pairs.get(i + TF_AHEAD)) {
                prefetch_frequencies(tf, ahead, &comps.levels[(i + TF_AHEAD) * nf..][..nf]);
            }
            let mut w = prior;
            let lv = &comps.levels[i * nf..(i + 1) * nf];
            for (f, &l) in lv.iter().enumerate() {
                if l == 1
                    && let Some(tf) = tf
                {
                    // Equal filters in one field hold one value, so a's and
                    // b's frequencies agree; for names compared crossed (the
                    // swap pair) they do not, and the commoner one is used.
                    let (a, b) = unpack(pairs[i]);
                    let freq = tf[f][a].max(tf[f][b]);
                    let key = freq.to_bits();
                    let at = f * TF_SLOTS + (key.wrapping_mul(0x9E37_79B9) >> 24) as usize;
                    let slot = &mut seen[at];
                    if slot.0 != key as u64 {
                        let x = (model.m[f][1] / (freq as f64).max(min_freq)).log2();
                        *slot = (key as u64, x.max(0.0));
                    }
                    w += slot.1;
                } else {
                    w += table[f][l as usize];
                }
            }
            if let Some(salt) = &model.salt {
                w += salt.correction(lv);
            }
            for d in &model.dependent {
                w += d.correction(lv);
            }
            *wo = w as f32;
        });
    weight
}

/// How many pairs ahead [`weights`] asks for the frequencies it will read.
const TF_AHEAD: usize = 8;

/// Hint the CPU to load the frequencies of pair `pair`'s records in the
/// fields where it agrees exactly (`levels`), which [`weights`] reads
/// (random records' entries of arrays apart from their filters).
#[inline(always)]
fn prefetch_frequencies(tf: &[Vec<f32>], pair: u64, levels: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let (a, b) = unpack(pair);
        for (f, _) in levels.iter().enumerate().filter(|&(_, &l)| l == 1) {
            for g in [a, b] {
                if let Some(x) = tf[f].get(g) {
                    // SAFETY: a prefetch is only a hint; `x` is in a live vector.
                    unsafe { _mm_prefetch(x as *const f32 as *const i8, _MM_HINT_T0) };
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (tf, pair, levels);
}

/// Slots per field of [`weights`]' cache of term-frequency weights (the
/// top eight bits of a multiplicative hash).
const TF_SLOTS: usize = 256;

/// The match probability of a weight (bits, prior included).
#[inline]
pub fn probability(w: f32) -> f32 {
    (1.0 / (1.0 + (-(w as f64)).exp2())) as f32
}

/// Match weight and probability of each candidate pair.
pub fn score(
    model: &Model,
    comps: &Comparisons,
    pairs: &[u64],
    tf: Option<&[Vec<f32>]>,
) -> (Vec<f32>, Vec<f32>) {
    let weight = weights(model, comps, pairs, tf);
    let prob = weight.par_iter().map(|&w| probability(w)).collect();
    (weight, prob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_cutoffs() {
        let c = cuts32(&[1.0, 0.9, 0.7]);
        assert_eq!(level_of(1.0, &c), 1);
        assert_eq!(level_of(0.95, &c), 2);
        assert_eq!(level_of(0.7, &c), 3);
        assert_eq!(level_of(0.2, &c), 4);
    }

    #[test]
    fn salt_correction_counts_a_shared_salt_once() {
        // Fields: 0 first name, 1 last name (salted), 2 date (the source),
        // 3 sex. Levels 1..=4 of a salted field imply equal salts.
        let s = SaltWeights {
            source: 2,
            salted: vec![0, 1],
            agree_levels: 4,
            salt_bits: 5.0,
            source_shift: vec![0.0, 5.0, 4.0, 3.0, 2.0, 0.5, 0.0],
        };
        // Both names and the date agree: the year was counted three times.
        assert_eq!(s.correction(&[1, 1, 1, 1]), -10.0);
        // One name agrees, a partial date: once for the name, plus the
        // date's shift given the same year.
        assert_eq!(s.correction(&[6, 1, 3, 1]), -3.0);
        // Two names, no date: one extra year.
        assert_eq!(s.correction(&[2, 4, 0, 0]), -5.0);
        // Only the date agrees: counted once already.
        assert_eq!(s.correction(&[6, 6, 1, 1]), 0.0);
        // Nothing implies equal salts (level 5 is beyond `agree_levels`
        // here; the fitted correction counts every level but the last).
        assert_eq!(s.correction(&[5, 6, 4, 1]), 0.0);
        assert_eq!(s.correction(&[0, 0, 5, 1]), 0.0);
    }

    #[test]
    fn em_separates_a_clean_mixture() {
        use crate::hub::train::{Free, em, initial_m, patterns_of};
        // Two fields, levels 1 (exact) .. 3 (disagree). 100 matches agree,
        // 900 non-matches mostly disagree.
        let mut levels = Vec::new();
        for _ in 0..100 {
            levels.extend([1u8, 1]);
        }
        for i in 0..900 {
            levels.extend([
                if i % 30 == 0 { 1u8 } else { 3 },
                if i % 47 == 0 { 2 } else { 3 },
            ]);
        }
        let u = vec![vec![0.0, 0.02, 0.03, 0.95]; 2];
        let r = em(
            &patterns_of(&levels, 2),
            initial_m(2, 4),
            &u,
            0.3,
            Free::MLambda,
            &[false, false],
            &[true, true],
            200,
        );
        assert!((r.lambda - 0.1).abs() < 0.02, "lambda {}", r.lambda);
        assert!(r.m[0][1] > 0.9);
        let model = Model {
            fields: vec!["a".into(), "b".into()],
            cuts: vec![1.0, 0.8],
            m: r.m,
            u,
            lambda: r.lambda,
            candidate_lambda: r.lambda,
            expected_matches: r.expected_matches,
            sessions: vec![],
            iterations: r.iterations,
            converged: r.converged,
            u_pairs: 0,
            salt: None,
            dependent: Vec::new(),
        };
        let comps = Comparisons {
            dice: vec![0.0; 1000],
            levels,
            fields: 2,
        };
        let pairs: Vec<u64> = (0..1000u64).map(|i| i << 32 | (i + 1)).collect();
        let (_, p) = score(&model, &comps, &pairs, None);
        assert!(p[..100].iter().all(|&x| x > 0.9));
        assert!(p[100..].iter().filter(|&&x| x > 0.5).count() < 5);
    }

    /// A model of fields `a`, `b`, … with these m and u, cut-offs 1.0 and
    /// 0.8, prior 0.001 and no correction.
    fn model_of(m: Vec<Vec<f64>>, u: Vec<Vec<f64>>) -> Model {
        Model {
            fields: (0..m.len())
                .map(|f| char::from(b'a' + f as u8).to_string())
                .collect(),
            cuts: vec![1.0, 0.8],
            m,
            u,
            lambda: 0.001,
            candidate_lambda: 0.1,
            expected_matches: 0.0,
            sessions: vec![],
            iterations: 0,
            converged: true,
            u_pairs: 0,
            salt: None,
            dependent: Vec::new(),
        }
    }

    #[test]
    fn dependent_fields_get_their_bits_back_only_when_both_are_below_exact() {
        let d = Dependent {
            fields: [1, 2],
            bits: 1.8,
        };
        assert_eq!(d.correction(&[1, 6, 6]), 1.8);
        assert_eq!(d.correction(&[6, 2, 5]), 1.8);
        // One exact, or one missing: nothing.
        assert_eq!(d.correction(&[6, 1, 6]), 0.0);
        assert_eq!(d.correction(&[6, 6, 1]), 0.0);
        assert_eq!(d.correction(&[6, 0, 6]), 0.0);
        // In the pair weights, on top of every field's own weight.
        let model = |dependent: Vec<Dependent>| Model {
            dependent,
            ..model_of(
                vec![vec![0.0, 0.9, 0.05, 0.05]; 3],
                vec![vec![0.0, 0.01, 0.04, 0.95]; 3],
            )
        };
        let comps = Comparisons {
            dice: vec![0.0; 3],
            levels: vec![1, 3, 3, 1, 1, 3, 1, 0, 2],
            fields: 3,
        };
        let pairs = [1u64, 2, 3];
        let plain = weights(&model(vec![]), &comps, &pairs, None);
        let with = weights(&model(vec![d.clone()]), &comps, &pairs, None);
        assert_eq!(with[0], (plain[0] as f64 + 1.8) as f32);
        assert_eq!(with[1..], plain[1..]);
    }

    #[test]
    fn term_frequency_weights_are_those_of_each_pair_s_commoner_value() {
        // Two fields; 3,000 records whose values have 1,500 distinct
        // frequencies (many more than the cache has slots, so slots are
        // taken over), pairs agreeing exactly in either field, neither or
        // both, in an order that revisits frequencies.
        let n = 3000usize;
        let freq = |f: usize, g: usize| ((g * (f + 7)) % 1500 + 1) as f32 / n as f32;
        let tf: Vec<Vec<f32>> = (0..2)
            .map(|f| (0..n).map(|g| freq(f, g)).collect())
            .collect();
        let model = model_of(
            vec![vec![0.0, 0.9, 0.05, 0.05], vec![0.0, 0.6, 0.3, 0.1]],
            vec![vec![0.0, 0.01, 0.04, 0.95]; 2],
        );
        let pairs: Vec<u64> = (0..20_000u64)
            .map(|i| (i * 7919 % n as u64) << 32 | (i * 104_729 % n as u64))
            .collect();
        let levels: Vec<u8> = (0..pairs.len())
            .flat_map(|i| [[1, 1], [1, 3], [2, 1], [3, 0]][i % 4])
            .collect();
        let comps = Comparisons {
            dice: vec![],
            levels,
            fields: 2,
        };
        let w = weights(&model, &comps, &pairs, Some(&tf));
        let mut tf_levels = 0;
        for (i, &pair) in pairs.iter().enumerate() {
            let (a, b) = unpack(pair);
            let mut want = model.prior_weight();
            for f in 0..2 {
                let l = comps.levels[2 * i + f];
                want += if l == 1 {
                    tf_levels += 1;
                    let commoner = freq(f, a).max(freq(f, b)) as f64;
                    (model.m[f][1] / commoner).log2().max(0.0)
                } else {
                    model.field_weight(f, l)
                };
            }
            assert_eq!(w[i], want as f32, "pair {i}");
        }
        assert_eq!(tf_levels, 20_000);
        // Without frequencies, agreement weighs log2(m/u).
        let plain = weights(&model, &comps, &pairs, None);
        let want = model.prior_weight() + model.field_weight(0, 1) + model.field_weight(1, 1);
        assert_eq!(plain[0], want as f32);
    }
}
