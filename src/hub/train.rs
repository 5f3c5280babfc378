//! Unsupervised estimation of the Fellegi–Sunter model (no labels).
//!
//! * u: the level distribution of random eligible pairs (population non-matches).
//! * m: EM in *training sessions*, as Splink does. A session takes the pairs
//!   that agree exactly on one selective field (same field filter, so the same
//!   value); among those, non-matches agree on the *other* fields about as
//!   often as random pairs do, so EM with u fixed to the random-pair u is
//!   well posed for the other fields. Each field's m is the average over the
//!   sessions that did not block on it, weighted by their expected matches.
//!   (EM on the candidate pairs themselves is unreliable: candidates were
//!   chosen for being similar, so their non-matches agree far more than u says.)
//! * λ: the expected number of matches among candidates (EM on λ alone, m and
//!   u fixed) divided by all eligible pairs: the chance that two random
//!   records match, so probabilities do not depend on the blocking.
//!
//! Hub side: works on field filters and levels only.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::block::pack;
use super::load::Dataset;
use super::score::{Model, compare_fields, n_levels};

/// Distinct level patterns with their counts.
pub fn patterns_of(levels: &[u8], nf: usize) -> Vec<(Vec<u8>, f64)> {
    let mut counts: FxHashMap<&[u8], f64> = FxHashMap::default();
    if nf > 0 {
        for p in levels.chunks_exact(nf) {
            *counts.entry(p).or_default() += 1.0;
        }
    }
    let mut v: Vec<(Vec<u8>, f64)> = counts.into_iter().map(|(k, c)| (k.to_vec(), c)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Result of one EM run.
pub struct Em {
    pub m: Vec<Vec<f64>>,
    pub lambda: f64,
    pub expected_matches: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// Which parameters EM may change.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Free {
    /// m and λ (u fixed).
    MLambda,
    /// λ only.
    Lambda,
}

/// The starting m: matches mostly agree exactly, less at each lower level.
pub fn initial_m(nf: usize, nl: usize) -> Vec<Vec<f64>> {
    (0..nf)
        .map(|_| {
            let mut v = vec![0.0; nl];
            let mut s = 0.0;
            for (l, x) in v.iter_mut().enumerate().skip(1) {
                *x = 0.5f64.powi(l as i32);
                s += *x;
            }
            v.iter_mut().skip(1).for_each(|x| *x /= s);
            v
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
/// EM on level patterns. Fields marked in `ignore` are treated as null; only
/// fields marked in `learn` have their m (and u) updated.
pub fn em(
    patterns: &[(Vec<u8>, f64)],
    mut m: Vec<Vec<f64>>,
    u: &[Vec<f64>],
    lambda0: f64,
    free: Free,
    ignore: &[bool],
    learn: &[bool],
    max_iter: usize,
) -> Em {
    let nf = m.len();
    let nl = m.first().map_or(2, |x| x.len());
    let total: f64 = patterns.iter().map(|p| p.1).sum();
    let mut lambda = lambda0.clamp(1e-9, 1.0 - 1e-9);
    let mut iterations = 0;
    let mut converged = false;
    let mut expected = 0.0;
    let smooth = |sum: &[f64], l: usize| {
        let nonnull: f64 = sum[1..].iter().sum();
        (sum[l] + 1e-3) / (nonnull + 1e-3 * (nl - 1) as f64)
    };
    while iterations < max_iter && total > 0.0 {
        iterations += 1;
        let mut msum = vec![vec![0.0f64; nl]; nf];
        let mut psum = 0.0;
        let prior = (lambda / (1.0 - lambda)).ln();
        for (levels, c) in patterns {
            let mut lo = prior;
            for (f, &l) in levels.iter().enumerate() {
                if l > 0 && !ignore[f] {
                    lo += (m[f][l as usize] / u[f][l as usize]).ln();
                }
            }
            let p = 1.0 / (1.0 + (-lo).exp());
            psum += p * c;
            for (f, &l) in levels.iter().enumerate() {
                msum[f][l as usize] += p * c;
            }
        }
        expected = psum;
        let new_lambda = (psum / total).clamp(1e-9, 1.0 - 1e-9);
        let mut delta = (new_lambda - lambda).abs();
        if free != Free::Lambda {
            for f in 0..nf {
                if ignore[f] || !learn[f] {
                    continue;
                }
                for (l, ml) in m[f].iter_mut().enumerate().skip(1) {
                    let mv = smooth(&msum[f], l);
                    delta = delta.max((mv - *ml).abs());
                    *ml = mv;
                }
            }
        }
        lambda = new_lambda;
        if delta < 1e-7 {
            converged = true;
            break;
        }
    }
    Em {
        m,
        lambda,
        expected_matches: expected,
        iterations,
        converged,
    }
}

/// Pairs whose field `f` filters are identical (same value), capped.
fn agreeing_pairs(
    ds: &Dataset,
    f: usize,
    dedup: bool,
    max_group: u64,
    max_pairs: usize,
) -> Vec<u64> {
    let filt = &ds.fields[f];
    let mut keyed: Vec<(u64, u32)> = (0..ds.len())
        .into_par_iter()
        .filter(|&g| filt.valid[g])
        .map(|g| {
            use std::hash::{Hash, Hasher};
            let mut h = rustc_hash::FxHasher::default();
            filt.get(g).hash(&mut h);
            (h.finish(), g as u32)
        })
        .collect();
    keyed.par_sort_unstable();
    let mut out = Vec::new();
    for group in keyed.chunk_by(|a, b| a.0 == b.0) {
        let n = group.len() as u64;
        if n < 2 || n * (n - 1) / 2 > max_group {
            continue;
        }
        for (i, &(_, a)) in group.iter().enumerate() {
            for &(_, b) in &group[i + 1..] {
                if (dedup || ds.agency_of[a as usize] != ds.agency_of[b as usize])
                    && filt.get(a as usize) == filt.get(b as usize)
                {
                    out.push(pack(a, b));
                }
            }
        }
        if out.len() >= max_pairs {
            break;
        }
    }
    out
}

/// Sessions run, for the report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub blocked_on: String,
    pub pairs: usize,
    pub expected_matches: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// m from the training sessions (before any candidate is compared), with
/// the u it was fitted against.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MFit {
    pub m: Vec<Vec<f64>>,
    pub u: Vec<Vec<f64>>,
    /// Fields some session trained; the others need the candidates.
    pub trained: Vec<bool>,
    pub sessions: Vec<Session>,
}

/// Fit m in training sessions over pairs sharing a blocking key.
pub fn fit_m(ds: &Dataset, cuts: &[f32], u: Vec<Vec<f64>>, max_iter: usize, dedup: bool) -> MFit {
    let u_random = &u;
    let nf = ds.fields.len();
    let nl = n_levels(cuts);
    let names: Vec<String> = ds.fields.iter().map(|f| f.name.clone()).collect();
    // Sessions: pairs sharing a keyed blocking key (its fields are ignored in
    // that session), else pairs with identical filters on one selective field.
    let mut plans: Vec<(String, Vec<u64>, Vec<usize>)> = Vec::new();
    let schema: serde_json::Value = serde_json::from_str(&ds.schema_json).unwrap_or_default();
    for (name, keys) in &ds.blocks {
        let parts: Vec<usize> = schema["blocking"]
            .as_array()
            .and_then(|b| b.iter().find(|x| x["name"] == name.as_str()))
            .and_then(|b| b["parts"].as_array())
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["field"].as_str())
                    .filter_map(|f| names.iter().position(|n| n == f))
                    .collect()
            })
            .unwrap_or_default();
        if parts.is_empty() || parts.len() == nf {
            continue;
        }
        let mut pairs = Vec::new();
        super::block::key_pass(
            ds, keys, name, "training", dedup, 20_000, &mut pairs, 2_000_000,
        );
        pairs.sort_unstable();
        pairs.dedup();
        pairs.truncate(2_000_000);
        plans.push((format!("blocking key `{name}`"), pairs, parts));
    }
    if plans.iter().filter(|p| p.1.len() >= 50).count() < 2 {
        let mut order: Vec<usize> = (0..nf).filter(|&f| u_random[f][1] < 0.02).collect();
        order.sort_by(|&a, &b| u_random[a][1].total_cmp(&u_random[b][1]));
        order.truncate(4);
        for f in order {
            let pairs = agreeing_pairs(ds, f, dedup, 20_000, 2_000_000);
            plans.push((format!("`{}`", names[f]), pairs, vec![f]));
        }
    }
    let mut msum = vec![vec![0.0f64; nl]; nf];
    let mut wsum = vec![0.0f64; nf];
    let mut sessions = Vec::new();
    for (label, pairs, blocked) in &plans {
        if pairs.len() < 50 {
            continue;
        }
        let levels = compare_fields(ds, pairs, cuts);
        let pats = patterns_of(&levels, nf);
        // Ignore the blocking field, and fields that (nearly) always agree
        // within the session: they follow from it (first name gives sex) and
        // would pull EM towards calling every pair a match.
        let mut ignore = vec![false; nf];
        for &f in blocked {
            ignore[f] = true;
        }
        for g in 0..nf {
            let (mut agree, mut nonnull) = (0usize, 0usize);
            for p in levels.chunks_exact(nf) {
                if p[g] > 0 {
                    nonnull += 1;
                    agree += usize::from(p[g] == 1);
                }
            }
            if nonnull > 0 && agree as f64 / nonnull as f64 > 0.8 {
                ignore[g] = true;
            }
        }
        let learn = vec![true; nf];
        let r = em(
            &pats,
            initial_m(nf, nl),
            u_random,
            0.1,
            Free::MLambda,
            &ignore,
            &learn,
            max_iter,
        );
        // A session cannot find more matches than its records can form (each
        // record matches at most one record per other agency, or a few
        // duplicates). More means EM latched on to a dependent field (first
        // name and sex, say): the session is dropped.
        let mut records: Vec<u32> = pairs
            .iter()
            .flat_map(|&p| [(p >> 32) as u32, p as u32])
            .collect();
        records.sort_unstable();
        records.dedup();
        let per_record = (ds.agencies.len().saturating_sub(1) + usize::from(dedup)).max(1) as f64;
        let bound = records.len() as f64 * per_record / 2.0 * 1.25;
        if r.expected_matches > bound {
            tracing::info!(
                "training session on {} dropped: {:.0} expected matches exceed the {:.0} its records allow",
                label,
                r.expected_matches,
                bound
            );
            continue;
        }
        sessions.push(Session {
            blocked_on: label.clone(),
            pairs: pairs.len(),
            expected_matches: r.expected_matches,
            iterations: r.iterations,
            converged: r.converged,
        });
        tracing::info!(
            "training session on {}: {} pairs, {:.0} expected matches, {} EM iterations",
            label,
            pairs.len(),
            r.expected_matches,
            r.iterations
        );
        for g in 0..nf {
            if ignore[g] {
                continue;
            }
            for (acc, m) in msum[g].iter_mut().zip(&r.m[g]).skip(1) {
                *acc += m * r.expected_matches;
            }
            wsum[g] += r.expected_matches;
        }
    }
    let trained: Vec<bool> = wsum.iter().map(|&w| w > 0.0).collect();
    let m: Vec<Vec<f64>> = (0..nf)
        .map(|g| {
            if trained[g] {
                let mut v: Vec<f64> = msum[g].iter().map(|x| x / wsum[g]).collect();
                v[0] = 0.0;
                v
            } else {
                initial_m(1, nl).remove(0)
            }
        })
        .collect();
    MFit {
        m,
        u,
        trained,
        sessions,
    }
}

/// Complete the model from the candidates' level patterns: m of untrained
/// fields (EM, everything else fixed), then the prior λ.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    ds: &Dataset,
    fit: MFit,
    cand_patterns: &[(Vec<u8>, f64)],
    candidates: u64,
    cuts: &[f32],
    max_iter: usize,
    eligible_pairs: u64,
    u_pairs: usize,
) -> Model {
    let nf = ds.fields.len();
    let names: Vec<String> = ds.fields.iter().map(|f| f.name.clone()).collect();
    let MFit {
        mut m,
        u: u_random,
        trained,
        sessions,
    } = fit;
    let smallest = ds.agencies.iter().map(|a| a.len).min().unwrap_or(1).max(1);
    let lambda0 = (smallest as f64 / candidates.max(1) as f64).clamp(1e-6, 0.5);
    // Fields no session could train: EM on the candidates for those fields'
    // m alone, trained fields' m and every u held fixed.
    if trained.iter().any(|t| !t) {
        let learn: Vec<bool> = trained.iter().map(|t| !t).collect();
        let r = em(
            cand_patterns,
            m,
            &u_random,
            lambda0,
            Free::MLambda,
            &vec![false; nf],
            &learn,
            max_iter,
        );
        m = r.m;
    }
    // λ: expected matches among candidates with m and u fixed.
    let lam = em(
        cand_patterns,
        m.clone(),
        &u_random,
        lambda0,
        Free::Lambda,
        &vec![false; nf],
        &vec![false; nf],
        max_iter,
    );
    let eligible = eligible_pairs.max(1) as f64;
    Model {
        fields: names,
        cuts: cuts
            .iter()
            .map(|&c| if c > 0.9999 { 1.0 } else { c as f64 })
            .collect(),
        m,
        u: u_random,
        lambda: (lam.expected_matches / eligible).clamp(1e-12, 0.5),
        candidate_lambda: lam.lambda,
        expected_matches: lam.expected_matches,
        sessions,
        iterations: lam.iterations,
        converged: lam.converged,
        u_pairs,
    }
}
