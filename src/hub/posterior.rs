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
/// and are given record-level figures (the pairs a run writes, which a
/// refresh carries over: so a refresh sums the same pairs as a full run);
/// the others keep their pairwise figures. `None` for deduplication or more
/// than [`MAX_AGENCIES`] agencies.
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
    let none: Vec<f64> = (0..na * na)
        .map(|k| none_among(lambda, agency_len[k % na]))
        .collect();
    with_none(agency_of, na, pairs, weight, probability, &none, min_p)
}

/// `1 − π` under prior `lambda`: the chance that a record has no partner
/// among the `other` records of another agency (at least [`NONE_MIN`]).
pub fn none_among(lambda: f64, other: usize) -> f64 {
    (1.0 - lambda * other as f64).clamp(NONE_MIN, 1.0)
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
            // Under the floor a pair is no candidate of the reckoning: it
            // keeps its pairwise figure, so that what may link never
            // depends on which pairs under the floor a run happened to
            // keep (docs/decisions.md §68).
            if prob < min_p {
                return w;
            }
            let (a, b) = unpack(p);
            let (ga, gb) = (agency_of[a] as usize, agency_of[b] as usize);
            let w = w as f64;
            let x = w.exp2();
            let others = |s: f64| (s - x).max(0.0);
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

/// The most a pair among the single records gains for having been left
/// unlinked by the first resolution ([`among_singles`]): 8 bits, as if it
/// had missed at most one match in 256.
pub const SELECTION_MAX_BITS: f64 = 8.0;

/// Whether [`among_singles`] can fit a selection factor for `na`
/// agencies.
pub fn selection_applies(na: usize) -> bool {
    na == 2
}

/// What [`among_singles`] makes of the pairs between single records.
#[derive(Debug, Clone)]
pub struct AmongSingles {
    /// Record-level weights and probabilities of the pairs.
    pub weight: Vec<f32>,
    pub probability: Vec<f32>,
    /// Per agency `g` and other agency `h` (at `g·na + h`): the fitted
    /// share of g's single records with a partner among h's.
    pub share: Vec<f64>,
    /// Per agency pair (at `g·na + h`, the same both ways): the estimated
    /// share of their matches that the first resolution left unlinked,
    /// `M / (L + M)` (1 where it linked none); `None` with more than two
    /// agencies, where no selection factor is fitted.
    pub left_unlinked: Vec<Option<f64>>,
}

/// Record-level probabilities of pairs between records that resolution
/// left single (docs/decisions.md §19, §31, §67), from their pairwise
/// `weight` (bits, prior λ included). Among the single records, a record's
/// partner (if it has one left) is one of the other agency's single
/// records, not one of all its records: a pair's prior rises from λ to
/// `M / (N_A·N_B)`, with `N` the single records of each agency
/// (`cluster_size` 1) and `M` the matches among them, and `1 − π` becomes
/// `1 − M / N_A`. `M` is fitted to the pairs themselves
/// ([`partner_share`]), not taken from λ: the matches resolution missed are
/// those λ's estimate counts least well.
///
/// A match between two single records is one the first resolution did not
/// link, and that selects it: its agreement pattern is drawn from the
/// matches' patterns that fall short, not from all of them, while a
/// non-match's is drawn from nearly all the non-matches'. Its Bayes factor
/// among the single records is therefore its pairwise one divided by the
/// share of matches left unlinked, `M / (L + M)` (`L`: the records the
/// first resolution linked across the two agencies, `linked[g·na + h]`,
/// averaged both ways). `M` depends on that factor and the factor on `M`:
/// the one consistent value is found by bisection, at most
/// [`SELECTION_MAX_BITS`]. Only with `selection`
/// (`resolve.second_look_selection`), and with two agencies only
/// ([`selection_applies`]): with three or more, a weak match is often
/// linked through a record of a third agency (each linked to it on strong
/// evidence), so how often a match is left unlinked depends on its
/// pattern, and one factor for all of them over-weighs namesakes
/// (docs/decisions.md §67). A pair whose own evidence would have linked it
/// had it no competitor (`strong`) was left unlinked by its competitors,
/// which a stranger bearing the same evidence meets as often: it keeps its
/// pairwise Bayes factor.
///
/// Only the single records' pairs with each other are in the sums, so a
/// record's competitors that linked elsewhere have left them. `None` where
/// [`record_level`] does not apply.
pub fn among_singles(
    agency_of: &[u16],
    na: usize,
    pairs: &[u64],
    weight: &[f32],
    (selection, strong): (bool, &[bool]),
    (cluster_size, linked): (&[u32], &[f64]),
    lambda: f64,
) -> Option<AmongSingles> {
    if !(2..=MAX_AGENCIES).contains(&na) || lambda <= 0.0 {
        return None;
    }
    debug_assert_eq!(linked.len(), na * na);
    let selection = selection && selection_applies(na);
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
    // there": its pairs' Bayes factors (x / λ) averaged over them; the
    // pairs the selection factor applies to apart (`weak`) from the others
    // (`strong`).
    let slot = |r: usize, h: usize| r * na + h;
    let mut weak = vec![0f64; agency_of.len() * na];
    let mut firm = vec![0f64; agency_of.len() * na];
    for ((&p, &w), &s) in pairs.iter().zip(weight).zip(strong) {
        let (a, b) = unpack(p);
        let (ga, gb) = (agency_of[a] as usize, agency_of[b] as usize);
        if ga == gb {
            return None;
        }
        let bf = (w as f64).exp2() / lambda;
        let sums = if s { &mut firm } else { &mut weak };
        sums[slot(a, gb)] += bf / singles[gb];
        sums[slot(b, ga)] += bf / singles[ga];
    }
    let mut of_agency: Vec<Vec<usize>> = vec![Vec::new(); na];
    for (r, &g) in agency_of.iter().enumerate() {
        of_agency[g as usize].push(r);
    }
    // g's share with a partner among h's single records, each pair's
    // Bayes factor raised by `bits`.
    let share_of = |g: usize, h: usize, bits: f64| {
        let c = bits.exp2();
        partner_share(
            of_agency[g]
                .iter()
                .map(|&r| c * weak[slot(r, h)] + firm[slot(r, h)]),
        )
    };
    // Records the first resolution linked between g and h, both ways averaged.
    let links = |g: usize, h: usize| (linked[g * na + h] + linked[h * na + g]) / 2.0;
    // Per agency pair: the selection factor in bits, and both shares under it.
    let fitted: Vec<(f64, f64, f64)> = (0..na * na)
        .into_par_iter()
        .map(|k| {
            let (g, h) = (k / na, k % na);
            if g >= h {
                return (0.0, 0.0, 0.0);
            }
            if !selection {
                return (0.0, share_of(g, h, 0.0), share_of(h, g, 0.0));
            }
            let at = |bits: f64| {
                let (sg, sh) = rayon::join(|| share_of(g, h, bits), || share_of(h, g, bits));
                (sg, sh, (sg * singles[g] + sh * singles[h]) / 2.0)
            };
            selection_bits(links(g, h), at)
        })
        .collect();
    let fit = |g: usize, h: usize| fitted[g.min(h) * na + g.max(h)];
    let share: Vec<f64> = (0..na * na)
        .map(|k| {
            let (g, h) = (k / na, k % na);
            match g.cmp(&h) {
                std::cmp::Ordering::Less => fit(g, h).1,
                std::cmp::Ordering::Greater => fit(g, h).2,
                std::cmp::Ordering::Equal => 0.0,
            }
        })
        .collect();
    // Matches among the single records of g and h: both sides' estimates,
    // averaged.
    let matches = |g: usize, h: usize| {
        (share[g * na + h] * singles[g] + share[h * na + g] * singles[h]) / 2.0
    };
    let left_unlinked: Vec<Option<f64>> = (0..na * na)
        .map(|k| {
            let (g, h) = (k / na, k % na);
            if g == h || !selection {
                return None;
            }
            let (l, m) = (links(g, h), matches(g, h));
            Some(if l + m > 0.0 { m / (l + m) } else { 1.0 })
        })
        .collect();
    let none: Vec<f64> = (0..na * na)
        .map(|k| {
            let (g, h) = (k / na, k % na);
            if g == h || singles[g] == 0.0 {
                return 1.0;
            }
            (1.0 - matches(g, h) / singles[g]).clamp(NONE_MIN, 1.0)
        })
        .collect();
    let bits: Vec<f64> = fitted.iter().map(|f| f.0).collect();
    tracing::debug!(
        "records left single: {singles:?} per agency; share with a partner among the other agency's single records: {share:?}; selection factor (bits): {bits:?}"
    );
    let shifted: Vec<f32> = pairs
        .iter()
        .zip(weight)
        .zip(strong)
        .map(|((&p, &w), &s)| {
            let (a, b) = unpack(p);
            let (g, h) = (agency_of[a] as usize, agency_of[b] as usize);
            let prior = matches(g, h) / (singles[g] * singles[h]);
            let selection = if s { 0.0 } else { fit(g, h).0 };
            let lift = (prior.max(f64::MIN_POSITIVE) / lambda).log2() + selection;
            w + lift as f32
        })
        .collect();
    let prob: Vec<f32> = shifted
        .iter()
        .map(|&w| super::score::probability(w))
        .collect();
    let (weight, probability) = with_none(&agency_of, na, pairs, &shifted, &prob, &none, 0.0)?;
    Some(AmongSingles {
        weight,
        probability,
        share,
        left_unlinked,
    })
}

/// The selection factor `c` (in bits, `0 ..= SELECTION_MAX_BITS`) that
/// agrees with the matches it implies: `c = (L + M(c)) / M(c)`, with
/// `links` = `L` and `at(bits)` giving both agencies' shares and `M`
/// under that factor. `M` grows with `c`, so the two sides cross once;
/// found to a thousandth of a bit. Returns the bits and both shares.
fn selection_bits(links: f64, at: impl Fn(f64) -> (f64, f64, f64)) -> (f64, f64, f64) {
    // How far `bits` falls short of what the matches under it imply.
    let short = |bits: f64| -> (f64, (f64, f64, f64)) {
        let (sg, sh, m) = at(bits);
        let want = if m > 0.0 {
            (1.0 + links / m).log2()
        } else {
            f64::INFINITY
        };
        (bits - want, (sg, sh, m))
    };
    if links <= 0.0 {
        let (sg, sh, _) = at(0.0);
        return (0.0, sg, sh);
    }
    let (mut lo, mut hi) = (0.0, SELECTION_MAX_BITS);
    let (d, s) = short(hi);
    if d <= 0.0 {
        return (hi, s.0, s.1);
    }
    while hi - lo > 1e-3 {
        let mid = (lo + hi) / 2.0;
        if short(mid).0 < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (_, s) = short(hi);
    (hi, s.0, s.1)
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
        // (1, 5) is uncontested from record 5's side; (2, 5) keeps its
        // pairwise figure: under the floor no record-level lift (else what
        // may link would depend on which such pairs a run kept).
        let (w2, p2) =
            record_level(&agency_of, &[3, 3], &pairs, &weight, &prob, 0.3, 0.01).unwrap();
        assert!((w2[2] - w[0]).abs() < 1e-4, "{w2:?}");
        assert_eq!((w2[3], p2[3]), (weight[3], prob[3]));
        assert!(
            w[3] > weight[3] + 3.0,
            "above the floor it was lifted: {w:?}"
        );
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
        let none = [0.0; 4];
        let among = |pairs: &[u64], w: &[f32]| {
            let weak = vec![false; pairs.len()];
            among_singles(
                &agency_of,
                2,
                pairs,
                w,
                (false, &weak),
                (&sizes, &none),
                lambda,
            )
            .map(|a| (a.weight, a.probability, a.share))
        };
        let (w, p, share) = among(&pairs, &strong).unwrap();
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
        let (_, p, share) = among(&pairs, &weak).unwrap();
        assert!(share[1] < 1e-3, "{share:?}");
        assert!(p.iter().all(|&p| p < 1e-3), "{p:?}");
        // A competitor: record 0 also pairs with 5 (as strongly), so 0's
        // view of (0, 4) is shared, but 4's view is not: still likely.
        let mut more = pairs.clone();
        more.push(pack(0, 5));
        let w5 = vec![strong[0]; 5];
        let (_, p, _) = among(&more, &w5).unwrap();
        assert!(p[0] > 0.99, "{p:?}");
        // Within one agency: not record-level.
        let inside = [pack(0, 1)];
        assert!(among(&inside, &strong[..1]).is_none());
    }

    #[test]
    fn the_selection_factor_agrees_with_the_matches_it_implies() {
        // M fixed at 100 with 900 linked: c = (900 + 100) / 100 = 10.
        let fixed = |_: f64| (0.5, 0.5, 100.0);
        let (bits, _, _) = selection_bits(900.0, fixed);
        assert!((bits - 10f64.log2()).abs() < 2e-3, "{bits}");
        // M growing with the factor: M(c) = 50·c, so c = 1 + 900 / (50c),
        // c² − c − 18 = 0.
        let growing = |bits: f64| (0.5, 0.5, 50.0 * bits.exp2());
        let (bits, _, _) = selection_bits(900.0, growing);
        let want = (1.0 + 73f64.sqrt()) / 2.0;
        assert!((bits - want.log2()).abs() < 2e-3, "{bits} against {want}");
        // Nothing linked: no selection. Nothing found among the single
        // records however far they are weighed up: the cap.
        assert_eq!(selection_bits(0.0, fixed).0, 0.0);
        let none = |_: f64| (0.0, 0.0, 0.0);
        assert_eq!(selection_bits(900.0, none).0, SELECTION_MAX_BITS);
        // The shares returned are those at the factor found.
        let shares = |bits: f64| (bits / 10.0, bits / 20.0, 100.0);
        let (bits, sg, sh) = selection_bits(900.0, shares);
        assert!((sg - bits / 10.0).abs() < 1e-3 && (sh - bits / 20.0).abs() < 1e-3);
    }

    #[test]
    fn matches_left_single_are_weighed_up_by_the_links_made_before() {
        // Ten single records in each agency, the i-th of A paired with the
        // i-th of B at a Bayes factor of 2 (weak among ten), the others.
        // pairs at 2^-6; 90 records of each were linked to the other agency.
        let agency_of: Vec<u16> = (0..20).map(|r| (r >= 10) as u16).collect();
        let sizes = [1u32; 20];
        let lambda = 1e-6f64;
        let mut pairs = Vec::new();
        let mut weight = Vec::new();
        for i in 0..10u32 {
            for j in 10..20u32 {
                pairs.push(pack(i, j));
                let bf = if j == i + 10 { 1.0 } else { -6.0 };
                weight.push((bf + lambda.log2()) as f32);
            }
        }
        let run = |linked: &[f64], strong: bool| {
            let strong = vec![strong; pairs.len()];
            let on = (true, &strong[..]);
            among_singles(&agency_of, 2, &pairs, &weight, on, (&sizes, linked), lambda).unwrap()
        };
        let alone = run(&[0.0; 4], false);
        let after = run(&[0.0, 90.0, 90.0, 0.0], false);
        // Nothing linked before: nothing missed but what is found here.
        assert_eq!(alone.left_unlinked[1], Some(1.0));
        let true_pair = |a: &AmongSingles| a.probability[0];
        assert!(
            true_pair(&after) > true_pair(&alone) + 0.1,
            "{} -> {}",
            true_pair(&alone),
            true_pair(&after)
        );
        assert!(
            after.share[1] > alone.share[1],
            "{:?} {:?}",
            alone.share,
            after.share
        );
        // The missed share is M / (L + M), the same both ways, and the
        // factor found is its inverse.
        let m = (after.share[1] + after.share[2]) * 10.0 / 2.0;
        let left = after.left_unlinked[1].unwrap();
        assert!((left - m / (90.0 + m)).abs() < 1e-9, "{left}");
        assert_eq!(after.left_unlinked[2], Some(left));
        // The strangers stay unlikely.
        assert!(after.probability[1] < 0.05, "{:?}", &after.probability[..3]);
        // Every pair's odds carry the factor, `1 / left_unlinked` (to the
        // bisection's thousandth of a bit), beside the prior `M / (N·N)`
        // and the records' other candidates.
        let lift = (m / 100.0 / lambda).log2() - left.log2();
        let shifted: Vec<f32> = weight.iter().map(|&w| w + lift as f32).collect();
        let prob: Vec<f32> = shifted
            .iter()
            .map(|&w| crate::hub::score::probability(w))
            .collect();
        let none = [
            1.0,
            (1.0 - m / 10.0).clamp(NONE_MIN, 1.0),
            (1.0 - m / 10.0).clamp(NONE_MIN, 1.0),
            1.0,
        ];
        let (_, want) = with_none(&agency_of, 2, &pairs, &shifted, &prob, &none, 0.0).unwrap();
        for (got, want) in after.probability.iter().zip(&want) {
            assert!((got - want).abs() < 1e-3, "{got} against {want}");
        }
        // Pairs whose evidence would have linked them uncontested were left
        // by competition, not by their own evidence: no factor.
        let strong = run(&[0.0, 90.0, 90.0, 0.0], true);
        assert_eq!(strong.probability, alone.probability);
        assert_eq!(strong.share, alone.share);
        // Not asked for: no factor and no figure.
        let off = among_singles(
            &agency_of,
            2,
            &pairs,
            &weight,
            (false, &vec![false; pairs.len()]),
            (&sizes, &[0.0, 90.0, 90.0, 0.0]),
            lambda,
        )
        .unwrap();
        assert_eq!(off.probability, alone.probability);
        assert_eq!(off.left_unlinked, vec![None; 4]);
    }
}
