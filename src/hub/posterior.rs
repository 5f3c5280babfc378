//! Record-level match probabilities for one-to-one linkage
//! (`scoring.record_prior`; docs/decisions.md §17).
//!
//! Fellegi–Sunter scores each pair on its own: prior λ, likelihood ratio of
//! the pair's agreement pattern. In one-to-one linkage a record has at most
//! one partner in each other agency, and whether it has one at all is known
//! in aggregate: record `a` of agency A has a partner in B with probability
//! `π = λ·|B|`. Given every comparison of `a` with B, the chance that the
//! partner is `b` is then
//!
//! `x_ab / ((1 − π) + Σ_j x_aj)`, with `x = 2^weight` (posterior odds),
//!
//! the sum running over `a`'s scored pairs with B (pairs never compared
//! carry next to nothing). A pair is taken from the view of whichever of
//! its two records is less contested; one-to-one resolution settles the
//! rest. Where nearly every record has a partner, `1 − π` is small and a
//! pair without competitors is likely even when its own evidence is modest;
//! where few do, it stays near the pairwise figure. Hub side: weights and
//! indices only.

use rayon::prelude::*;

use super::block::unpack;
use super::config::JobConfig;
use super::load::Dataset;
use super::score::Model;

/// Sums are kept per record and other agency up to this many agencies.
pub const MAX_AGENCIES: usize = 16;

/// The least chance kept for "the partner is none of the compared
/// records": blocking misses some partners, and the estimated number of
/// matches may exceed a small agency's size (duplicates). Caps what having
/// no competitor adds at log2(100) ≈ 6.6 bits.
pub const NONE_MIN: f64 = 0.01;

/// The run's weights and probabilities made record-level, with the pairwise
/// probabilities kept (they decide which pairs are written); unchanged,
/// with a warning, where [`record_level`] does not apply.
pub fn apply(
    ds: &Dataset,
    pairs: &[u64],
    weight: Vec<f32>,
    probability: Vec<f32>,
    model: &Model,
    cfg: &JobConfig,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let lens: Vec<usize> = ds.agencies.iter().map(|a| a.len).collect();
    let min_p = cfg.output.pairs_min_probability as f32;
    match record_level(
        &ds.agency_of,
        &lens,
        pairs,
        &weight,
        &probability,
        model.lambda,
        min_p,
    ) {
        Some((w, p)) => (w, p, Some(probability)),
        None => {
            tracing::warn!(
                "record-level probabilities need 2 to {MAX_AGENCIES} agencies and no within-agency pairs; pairwise probabilities kept"
            );
            (weight, probability, None)
        }
    }
}

/// Record-level probabilities and weights for `pairs`, from their pairwise
/// `weight` (bits, prior included) and `probability`, under prior `lambda`.
/// Only pairs with pairwise probability at least `min_p` enter the sums
/// (the pairs a run writes, which a refresh carries over: so a refresh sums
/// the same pairs as a full run). `None` for deduplication or more than
/// [`MAX_AGENCIES`] agencies.
pub fn record_level(
    agency_of: &[u16],
    agency_len: &[usize],
    pairs: &[u64],
    weight: &[f32],
    probability: &[f32],
    lambda: f64,
    min_p: f32,
) -> Option<(Vec<f32>, Vec<f32>)> {
    let na = agency_len.len();
    // 1 − π per (agency, other agency): the chance a record of the first
    // has no partner among the compared records of the second.
    let none: Vec<f64> = (0..na * na)
        .map(|k| {
            let other = agency_len[k % na] as f64;
            (1.0 - lambda * other).clamp(NONE_MIN, 1.0)
        })
        .collect();
    with_none(agency_of, na, pairs, weight, probability, &none, min_p)
}

/// [`record_level`] with `none[a·n + b]`, the chance that a record of
/// agency `a` has no partner among the compared records of agency `b`,
/// given (`n` agencies).
pub fn with_none(
    agency_of: &[u16],
    na: usize,
    pairs: &[u64],
    weight: &[f32],
    probability: &[f32],
    none: &[f64],
    min_p: f32,
) -> Option<(Vec<f32>, Vec<f32>)> {
    if !(2..=MAX_AGENCIES).contains(&na) {
        return None;
    }
    let slot = |r: usize, other: usize| r * na + other;
    let mut sums = vec![0f64; agency_of.len() * na];
    for (i, &p) in pairs.iter().enumerate() {
        if probability[i] < min_p {
            continue;
        }
        let (a, b) = unpack(p);
        let (ga, gb) = (agency_of[a] as usize, agency_of[b] as usize);
        if ga == gb {
            return None;
        }
        let x = (weight[i] as f64).exp2();
        sums[slot(a, gb)] += x;
        sums[slot(b, ga)] += x;
    }
    // Posterior odds from one record's view: x / ((1 − π) + the others' x),
    // taken in bits so that strong pairs keep their order.
    let w_out: Vec<f32> = pairs
        .par_iter()
        .zip(weight.par_iter().zip(probability.par_iter()))
        .map(|(&p, (&w, &prob))| {
            let (a, b) = unpack(p);
            let (ga, gb) = (agency_of[a] as usize, agency_of[b] as usize);
            let w = w as f64;
            let x = w.exp2();
            // The pair's own x is in the sums when it entered them.
            let own = if prob < min_p { 0.0 } else { x };
            let others = |s: f64| (s - own).max(0.0);
            let view_a = w - (none[ga * na + gb] + others(sums[slot(a, gb)])).log2();
            let view_b = w - (none[gb * na + ga] + others(sums[slot(b, ga)])).log2();
            view_a.max(view_b) as f32
        })
        .collect();
    let p_out = w_out
        .par_iter()
        .map(|&w| super::score::probability(w))
        .collect();
    Some((w_out, p_out))
}

/// Record-level probabilities of the pairs between records that
/// resolution left single, recomputed now that every other record is
/// taken (docs/decisions.md §19): a record's competitors that linked
/// elsewhere leave its sum, and `1 − π` becomes the chance that a single
/// record's partner is not among the other agency's single records, from
/// the estimated matches `λ·|A|·|B|` less the links made. Returns (pair
/// index, weight, probability) of each such pair whose pairwise
/// probability is at least `min_p`; `None` where [`record_level`] does
/// not apply.
#[allow(clippy::too_many_arguments)]
pub fn among_singles(
    agency_of: &[u16],
    agency_len: &[usize],
    pairs: &[u64],
    pairwise: &[f32],
    linked: &[bool],
    cluster_size: &[u32],
    lambda: f64,
    min_p: f32,
) -> Option<Vec<(usize, f32, f32)>> {
    let na = agency_len.len();
    if !(2..=MAX_AGENCIES).contains(&na) {
        return None;
    }
    let mut singles = vec![0f64; na];
    for (r, &c) in cluster_size.iter().enumerate() {
        if c == 1 {
            singles[agency_of[r] as usize] += 1.0;
        }
    }
    let mut links = vec![0f64; na * na];
    let mut subset = Vec::new();
    for (i, &p) in pairs.iter().enumerate() {
        let (a, b) = unpack(p);
        let (ga, gb) = (agency_of[a] as usize, agency_of[b] as usize);
        if linked[i] {
            links[ga * na + gb] += 1.0;
            links[gb * na + ga] += 1.0;
        } else if pairwise[i] >= min_p && cluster_size[a] == 1 && cluster_size[b] == 1 {
            subset.push(i);
        }
    }
    let none: Vec<f64> = (0..na * na)
        .map(|k| {
            let (g, h) = (k / na, k % na);
            let left = (lambda * agency_len[g] as f64 * agency_len[h] as f64 - links[k]).max(0.0);
            let pi = if singles[g] > 0.0 {
                left / singles[g]
            } else {
                0.0
            };
            (1.0 - pi).clamp(NONE_MIN, 1.0)
        })
        .collect();
    let sub_pairs: Vec<u64> = subset.iter().map(|&i| pairs[i]).collect();
    let sub_p: Vec<f32> = subset.iter().map(|&i| pairwise[i]).collect();
    // Pairwise weights back from the probabilities (the pairs are far from
    // certain: both records stayed single).
    let sub_w: Vec<f32> = sub_p
        .iter()
        .map(|&p| {
            let p = p as f64;
            (p.log2() - (1.0 - p).max(1e-18).log2()) as f32
        })
        .collect();
    let (w, p) = with_none(agency_of, na, &sub_pairs, &sub_w, &sub_p, &none, min_p)?;
    Some(
        subset
            .into_iter()
            .zip(w.into_iter().zip(p))
            .map(|(i, (w, p))| (i, w, p))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::block::pack;

    #[test]
    fn a_pair_is_as_likely_as_its_least_contested_record_makes_it() {
        // Agencies of 3 records each; λ = 0.3, so a record has a partner
        // in the other agency with probability 0.9 (1 − π = 0.1).
        let agency_of = [0u16, 0, 0, 1, 1, 1];
        let pairs = [pack(0, 3), pack(1, 4), pack(1, 5), pack(2, 5)];
        // Pairwise: even odds for the first three, long odds for the last.
        let weight = [0.0f32, 0.0, 0.0, -10.0];
        let prob: Vec<f32> = weight
            .iter()
            .map(|&w| crate::hub::score::probability(w))
            .collect();
        let (w, p) = record_level(&agency_of, &[3, 3], &pairs, &weight, &prob, 0.3, 1e-4).unwrap();
        // (0, 3): no competitor on either side: odds 1 / 0.1.
        assert!((w[0] - 0.1f32.recip().log2()).abs() < 1e-4, "{w:?}");
        assert!(p[0] > 0.9);
        // (1, 4) and (1, 5): record 1 has two even-odds candidates (odds
        // 1 / 1.1 from its side), but record 4 has only one.
        assert!((w[1] - w[0]).abs() < 1e-4, "{w:?}");
        // (1, 5) from record 5's side: (2, 5) adds little: 2^-10.
        let view_5 = -(0.1f64 + (-10f64).exp2()).log2();
        assert!((w[2] as f64 - view_5).abs() < 1e-4, "{w:?}");
        // (2, 5): record 2 has no other candidate, so 2^-10 / 0.1 from its
        // side; record 5's side is far lower.
        assert!(
            (w[3] as f64 - (-10.0 - 0.1f64.log2())).abs() < 1e-4,
            "{w:?}"
        );
        // With a floor above (2, 5)'s probability it leaves the sums, and
        // (1, 5) is uncontested from record 5's side; (2, 5) still gets a
        // record-level figure.
        let (w2, _) = record_level(&agency_of, &[3, 3], &pairs, &weight, &prob, 0.3, 0.01).unwrap();
        assert!((w2[2] - w[0]).abs() < 1e-4, "{w2:?}");
        assert!((w2[3] - w[3]).abs() < 1e-4, "{w2:?}");
    }

    #[test]
    fn within_agency_pairs_and_single_extracts_keep_pairwise_figures() {
        let p = [pack(0, 1)];
        let w = [1.0f32];
        let q = [0.6f32];
        assert!(record_level(&[0, 0], &[2], &p, &w, &q, 0.1, 0.01).is_none());
        assert!(record_level(&[0, 0, 1], &[2, 1], &p, &w, &q, 0.1, 0.01).is_none());
    }

    #[test]
    fn records_left_single_lose_the_competitors_taken_elsewhere() {
        // Agency A: 0, 1; agency B: 2, 3. 0–2 is linked; 1 and 3 each also
        // compete for a taken record at even odds x = 2.
        let agency_of = [0u16, 0, 1, 1];
        let pairs = [pack(0, 2), pack(1, 2), pack(0, 3), pack(1, 3)];
        let x = 2f64;
        let p_even = (x / (1.0 + x)) as f32;
        let pairwise = [0.999f32, p_even, p_even, p_even];
        let linked = [true, false, false, false];
        let cluster_size = [2u32, 1, 2, 1];
        let singles = |lambda: f64, min_p: f32| {
            among_singles(
                &agency_of,
                &[2, 2],
                &pairs,
                &pairwise,
                &linked,
                &cluster_size,
                lambda,
                min_p,
            )
            .unwrap()
        };
        // λ·|A|·|B| = 2 matches expected, 1 made: the one left is surely
        // between the single records 1 and 3 (1 − π at its floor).
        let r = singles(0.5, 0.01);
        assert_eq!(r.len(), 1, "only the pair of two single records: {r:?}");
        assert_eq!(r[0].0, 3);
        let want = x / (NONE_MIN + x);
        assert!((r[0].2 as f64 - want).abs() < 1e-4, "{r:?}");
        // λ·|A|·|B| = 1: the match expected is made, so a single record
        // has no partner left by the estimate: the pair keeps its own odds.
        let r = singles(0.25, 0.01);
        assert!((r[0].2 as f64 - x / (1.0 + x)).abs() < 1e-4, "{r:?}");
        // Below the pairs' floor nothing is asked.
        let r = singles(0.5, 0.9);
        assert!(r.is_empty());
    }
}
