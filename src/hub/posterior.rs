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

/// Record-level probabilities of pairs between records that resolution
/// left single (docs/decisions.md §19, §31), from their pairwise `weight`
/// (bits, prior λ included). Among the single records, a record's partner
/// (if it has one left) is one of the other agency's single records, not
/// one of all its records: a pair's prior rises from λ to `M / (N_A·N_B)`,
/// with `N` the single records of each agency (`cluster_size` 1) and `M`
/// the matches among them, and `1 − π` becomes `1 − M / N_A`. `M` is fitted
/// to the pairs themselves ([`partner_share`]), not taken from λ: the
/// matches resolution missed are those λ's estimate counts least well.
/// Only the single records' pairs with each other are in the sums, so a
/// record's competitors that linked elsewhere have left them. Returns the
/// pairs' weights and probabilities, and per agency `g` and other agency
/// `h` (at `g·na + h`, of `na` agencies) the fitted share of g's single
/// records with a partner among h's; `None` where [`record_level`] does
/// not apply.
pub fn among_singles(
    agency_of: &[u16],
    na: usize,
    pairs: &[u64],
    weight: &[f32],
    cluster_size: &[u32],
    lambda: f64,
) -> Option<(Vec<f32>, Vec<f32>, Vec<f64>)> {
    if !(2..=MAX_AGENCIES).contains(&na) || lambda <= 0.0 {
        return None;
    }
    // Everything below is per single record: they are numbered in order
    // (so a pair's order holds), and the pairs renumbered.
    let single: Vec<u32> = (0..cluster_size.len() as u32)
        .filter(|&r| cluster_size[r as usize] == 1)
        .collect();
    let number =
        |r: usize| -> Option<u32> { single.binary_search(&(r as u32)).ok().map(|i| i as u32) };
    let mut pairs_s = Vec::with_capacity(pairs.len());
    for &p in pairs {
        let (a, b) = unpack(p);
        let (Some(x), Some(y)) = (number(a), number(b)) else {
            debug_assert!(
                false,
                "a pair of the look holds a record that is not single"
            );
            return None;
        };
        pairs_s.push(super::block::pack(x, y));
    }
    let pairs = &pairs_s[..];
    let agency_of: Vec<u16> = single.iter().map(|&r| agency_of[r as usize]).collect();
    let mut singles = vec![0f64; na];
    for &g in &agency_of {
        singles[g as usize] += 1.0;
    }
    // Each single record's likelihood ratio of "my partner is one of the
    // single records of agency h, each as likely" against "I have none
    // there": its pairs' Bayes factors (x / λ) averaged over them.
    let slot = |r: usize, h: usize| r * na + h;
    let mut ratio = vec![0f64; agency_of.len() * na];
    for (&p, &w) in pairs.iter().zip(weight) {
        let (a, b) = unpack(p);
        let (ga, gb) = (agency_of[a] as usize, agency_of[b] as usize);
        if ga == gb {
            return None;
        }
        let bf = (w as f64).exp2() / lambda;
        ratio[slot(a, gb)] += bf / singles[gb];
        ratio[slot(b, ga)] += bf / singles[ga];
    }
    let mut of_agency: Vec<Vec<usize>> = vec![Vec::new(); na];
    for (r, &g) in agency_of.iter().enumerate() {
        of_agency[g as usize].push(r);
    }
    let share: Vec<f64> = (0..na * na)
        .into_par_iter()
        .map(|k| {
            let (g, h) = (k / na, k % na);
            if g == h {
                return 0.0;
            }
            partner_share(of_agency[g].iter().map(|&r| ratio[slot(r, h)]))
        })
        .collect();
    // Matches among the single records of g and h: both sides' estimates,
    // averaged.
    let matches = |g: usize, h: usize| {
        (share[g * na + h] * singles[g] + share[h * na + g] * singles[h]) / 2.0
    };
    let none: Vec<f64> = (0..na * na)
        .map(|k| {
            let (g, h) = (k / na, k % na);
            if g == h || singles[g] == 0.0 {
                return 1.0;
            }
            (1.0 - matches(g, h) / singles[g]).clamp(NONE_MIN, 1.0)
        })
        .collect();
    tracing::debug!(
        "records left single: {singles:?} per agency; share with a partner among the other agency's single records: {share:?}"
    );
    let shifted: Vec<f32> = pairs
        .iter()
        .zip(weight)
        .map(|(&p, &w)| {
            let (a, b) = unpack(p);
            let (g, h) = (agency_of[a] as usize, agency_of[b] as usize);
            let prior = matches(g, h) / (singles[g] * singles[h]);
            w + (prior.max(f64::MIN_POSITIVE) / lambda).log2() as f32
        })
        .collect();
    let prob: Vec<f32> = shifted
        .iter()
        .map(|&w| super::score::probability(w))
        .collect();
    let (w, p) = with_none(&agency_of, na, pairs, &shifted, &prob, &none, 0.0)?;
    Some((w, p, share))
}

/// The share of records that have a partner, fitted by EM from each
/// record's likelihood ratio `r` of "partner" against "none": the `π` that
/// maximises `Π ((1 − π) + π·r)`. 0 for no records.
pub fn partner_share(ratios: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = ratios.clone().count() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mut pi = 0.5f64;
    for _ in 0..1000 {
        let next = ratios
            .clone()
            .map(|r| pi * r / ((1.0 - pi) + pi * r))
            .sum::<f64>()
            / n;
        let done = (next - pi).abs() < 1e-9;
        pi = next;
        if done {
            break;
        }
    }
    pi
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
    fn partner_share_is_the_maximum_likelihood_share() {
        // Half the records 100 times likelier with a partner, half with
        // none possible: ML solves 99 / (1 + 99π) = 1 / (1 − π), π = 98/198.
        let r = [100.0f64, 0.0].repeat(50);
        let pi = partner_share(r.iter().copied());
        assert!((pi - 98.0 / 198.0).abs() < 1e-6, "{pi}");
        assert!(partner_share([0.0f64; 10].iter().copied()) < 1e-6);
        assert!(partner_share([1e6f64; 10].iter().copied()) > 0.999);
        assert_eq!(partner_share(std::iter::empty()), 0.0);
    }

    #[test]
    fn records_left_single_are_weighed_among_themselves() {
        // Agency A: 0..4, agency B: 4..8, all single; λ = 1e-6 (the whole
        // job's prior, far below one in four).
        let agency_of = [0u16, 0, 0, 0, 1, 1, 1, 1];
        let sizes = [1u32; 8];
        let lambda = 1e-6f64;
        let pairs: Vec<u64> = (0..4).map(|i| pack(i, i + 4)).collect();
        // Strong evidence (2^20 Bayes factor): every single record has its
        // partner among the others' singles, so M = 4, each pair's prior
        // is 4 / 16 and 1 − π is at its floor.
        let strong = vec![(20.0 + lambda.log2()) as f32; 4];
        let (w, p, share) = among_singles(&agency_of, 2, &pairs, &strong, &sizes, lambda).unwrap();
        assert!(share[1] > 0.999 && share[2] > 0.999, "{share:?}");
        let x = 2f64.powi(20) / 4.0;
        let want = x / NONE_MIN;
        for (&w, &p) in w.iter().zip(&p) {
            assert!((w as f64 - want.log2()).abs() < 1e-3, "{w:?}");
            assert!(p > 0.9999, "{p:?}");
        }
        // Evidence against (a Bayes factor of 1/8): no record is likelier
        // to have a partner than not, the share goes to 0 and so do the
        // pairs.
        let weak = vec![(-3.0 + lambda.log2()) as f32; 4];
        let (_, p, share) = among_singles(&agency_of, 2, &pairs, &weak, &sizes, lambda).unwrap();
        assert!(share[1] < 1e-3, "{share:?}");
        assert!(p.iter().all(|&p| p < 1e-3), "{p:?}");
        // A competitor: record 0 also pairs with 5 (as strongly), so 0's
        // view of (0, 4) is shared, but 4's view is not: still likely.
        let mut more = pairs.clone();
        more.push(pack(0, 5));
        let w5 = vec![strong[0]; 5];
        let (_, p, _) = among_singles(&agency_of, 2, &more, &w5, &sizes, lambda).unwrap();
        assert!(p[0] > 0.99, "{p:?}");
        // Within one agency: not record-level.
        let inside = [pack(0, 1)];
        assert!(among_singles(&agency_of, 2, &inside, &strong[..1], &sizes, lambda).is_none());
    }
}
