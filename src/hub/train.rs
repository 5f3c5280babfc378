//! Unsupervised estimation of the Fellegi–Sunter model (no labels).
//!
//! * u: the level distribution of random eligible pairs (population non-matches).
//! * m: EM in *training sessions*, as Splink does. A session takes the pairs
//!   that agree exactly on one selective field (same field filter, so the same
//!   value); among those, non-matches agree on the *other* fields about as
//!   often as random pairs do, so EM with u fixed to the random-pair u is
//!   well posed for the other fields. Each field's m is the average over the
//!   sessions that did not block on it, weighted by their expected matches,
//!   leaving out sessions whose key goes wrong together with the field
//!   ([`combine_sessions`]).
//!   (EM on the candidate pairs themselves is unreliable: candidates were
//!   chosen for being similar, so their non-matches agree far more than u says.)
//! * λ: the number of matches among all eligible pairs, estimated from the
//!   upper tail of the candidates' weights ([`tail_matches`]), divided by the
//!   eligible pairs: the chance that two random records match, so
//!   probabilities do not depend on the blocking. (EM on the candidates,
//!   m and u fixed, counts their selected-for partial agreements as matches:
//!   10× too many at a million records. It remains the fallback.)
//!
//! Hub side: works on field filters and levels only.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::block::pack;
use super::load::Dataset;
use super::score::{Dependent, Model, SaltWeights, compare_fields, n_levels};

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
                    let mv = smoothed(&msum[f], l);
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

/// A training session's pairs, levels and left-out fields, before EM.
struct Prepared<'a> {
    label: &'a String,
    pairs: &'a Vec<u64>,
    blocked: &'a Vec<usize>,
    levels: Vec<u8>,
    ignore: Vec<bool>,
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
    /// The correction for pairs whose salts surely agree, if asked for
    /// (`scoring.salt_correction`) and the schema salts by a year of birth.
    #[serde(default)]
    pub salt: Option<SaltWeights>,
    /// Fields that go wrong together, with their fitted correction.
    #[serde(default)]
    pub dependent: Vec<Dependent>,
}

/// The near-certain matches in each cell of a dependent pair of fields
/// `(a, b)`, in a session's `patterns`: the patterns where both are
/// present and whose match probability under `m`, `u` and `lambda` from
/// the *other* fields alone (those not in `ignore`) is at least
/// [`CONFIDENT`], so that selecting matches does not select on `a` and `b`
/// themselves (as [`confident_m`] does). Soft weights would not do: the
/// many non-matches' small probabilities add up, and non-matches nearly
/// always disagree on both. Returns the counts of `[all, a below exact, b
/// below exact, both below exact]`.
pub fn dependence_counts(
    patterns: &[(Vec<u8>, f64)],
    (m, u, lambda): (&[Vec<f64>], &[Vec<f64>], f64),
    ignore: &[bool],
    (a, b): (usize, usize),
) -> [f64; 4] {
    let mut out = [0.0; 4];
    for (p, c) in patterns {
        let (la, lb) = (p[a], p[b]);
        if la == 0 || lb == 0 {
            continue;
        }
        // Log odds of a match from the other fields.
        let mut odds = (lambda / (1.0 - lambda)).ln();
        for (f, &l) in p.iter().enumerate() {
            if f != a && f != b && l > 0 && !ignore[f] {
                let (mf, uf) = (m[f][l as usize], u[f][l as usize]);
                if mf > 0.0 && uf > 0.0 {
                    odds += (mf / uf).ln();
                }
            }
        }
        if 1.0 / (1.0 + (-odds).exp()) < CONFIDENT {
            continue;
        }
        let below = [true, la >= 2, lb >= 2, la >= 2 && lb >= 2];
        for (o, b) in out.iter_mut().zip(below) {
            if b {
                *o += c;
            }
        }
    }
    out
}

/// Near-certain matches needed, summed over sessions, to fit a dependent
/// pair.
const DEPENDENT_MIN_MATCHES: f64 = 100.0;

/// The weight independence misses when both fields of a dependent pair are
/// below exact ([`Dependent::bits`]), from [`dependence_counts`]: `None`
/// with fewer than [`DEPENDENT_MIN_MATCHES`] near-certain matches, or when
/// either field, or both, is never below exact among them.
pub fn dependence_bits([all, a, b, both]: [f64; 4]) -> Option<f64> {
    if all < DEPENDENT_MIN_MATCHES || a <= 0.0 || b <= 0.0 || both <= 0.0 {
        return None;
    }
    Some(((both / all) / ((a / all) * (b / all))).log2())
}

/// Fit m in training sessions over pairs sharing a blocking key, and the
/// correction of each `dependent` pair of fields (field indices).
pub fn fit_m(
    ds: &Dataset,
    cuts: &[f32],
    u: Vec<Vec<f64>>,
    max_iter: usize,
    dedup: bool,
    dependent: &[[usize; 2]],
) -> MFit {
    let u_random = &u;
    let nf = ds.fields.len();
    let nl = n_levels(cuts);
    let names: Vec<String> = ds.fields.iter().map(|f| f.name.clone()).collect();
    // Sessions: pairs sharing a keyed blocking key (its fields are ignored in
    // that session), else pairs with identical filters on one selective field.
    let mut plans: Vec<(String, Vec<u64>, Vec<usize>)> = Vec::new();
    for (name, keys) in &ds.blocks {
        // Keyed date variants select what the date's own key does, with
        // more non-matches (docs/decisions.md §24).
        if super::load::is_date_variant(&ds.schema_json, name) {
            continue;
        }
        let parts: Vec<usize> = super::load::key_fields(&ds.schema_json, name)
            .iter()
            .filter_map(|f| names.iter().position(|n| n == f))
            .collect();
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
    // Salted fields (hashed with a per-record salt such as the year of
    // birth): two records' filters can only agree when their salts do. In a
    // session blocked on the salt's source field every pair shares the salt,
    // so non-matches agree on salted fields far more often than random pairs
    // (the u that EM holds fixed): EM would count them as matches (11 k
    // "matches" among 7.5 k true ones in a 20k-person test). Such sessions
    // leave the salted fields alone.
    let salt_source = ds.salt.as_ref().map(|s| s.source);
    let salted: &[usize] = ds.salt.as_ref().map_or(&[], |s| &s.salted);
    if plans.iter().filter(|p| p.1.len() >= 50).count() < 2 {
        let mut order: Vec<usize> = (0..nf).filter(|&f| u_random[f][1] < 0.02).collect();
        order.sort_by(|&a, &b| u_random[a][1].total_cmp(&u_random[b][1]));
        order.truncate(4);
        for f in order {
            let pairs = agreeing_pairs(ds, f, dedup, 20_000, 2_000_000);
            plans.push((format!("`{}`", names[f]), pairs, vec![f]));
        }
    }
    // Per field: (expected matches, m, session) of each session that fitted it.
    let mut per_field: Vec<Vec<(f64, Vec<f64>, String)>> = vec![Vec::new(); nf];
    // Per dependent pair: its cells' near-certain matches, over the
    // sessions that trained both fields.
    let mut cells = vec![[0.0f64; 4]; dependent.len()];
    let mut sessions = Vec::new();
    // Each session's levels and the fields it leaves out: its blocking
    // fields, and fields that (nearly) always agree within the session (they
    // follow from the key, as sex follows from a first name, and would pull
    // EM towards calling every pair a match).
    let prepared: Vec<Prepared> = plans
        .iter()
        .filter(|(_, pairs, _)| pairs.len() >= 50)
        .map(|(label, pairs, blocked)| {
            let levels = compare_fields(ds, pairs, cuts);
            let mut ignore = vec![false; nf];
            for &f in blocked {
                ignore[f] = true;
            }
            for (g, ig) in ignore.iter_mut().enumerate() {
                let (mut agree, mut nonnull) = (0usize, 0usize);
                for p in levels.chunks_exact(nf) {
                    if p[g] > 0 {
                        nonnull += 1;
                        agree += usize::from(p[g] == 1);
                    }
                }
                if nonnull > 0 && agree as f64 / nonnull as f64 > 0.8 {
                    *ig = true;
                }
                // A conditional field (a blocking key compared as evidence,
                // a fallback) counts only where the salted names do not
                // agree. A session blocked on the salt's source or on a
                // salted field selects those pairs by what they share (same
                // year, different names: few matches), which biases the
                // field's m; such sessions leave it out.
                if ds.fields[g].conditional()
                    && blocked
                        .iter()
                        .any(|&b| salt_source == Some(b) || salted.contains(&b))
                {
                    *ig = true;
                }
            }
            Prepared {
                label,
                pairs,
                blocked,
                levels,
                ignore,
            }
        })
        .collect();
    let salt_blocked = |blocked: &Vec<usize>| salt_source.is_some_and(|src| blocked.contains(&src));
    // Fields that identify a mixture: conditional fields are null in most
    // pairs and do not count.
    let free_fields = |ignore: &[bool]| {
        ignore
            .iter()
            .zip(&ds.fields)
            .filter(|(x, f)| !**x && !f.conditional())
            .count()
    };
    let identified = |ignore: &[bool]| free_fields(ignore) >= 3;
    // A salted field is left out of salt-blocked sessions when some other
    // session can train it (else the biased session is better than none:
    // on small data the bias is small beside the matches).
    let covered: Vec<bool> = (0..nf)
        .map(|f| {
            prepared
                .iter()
                .any(|p| !salt_blocked(p.blocked) && !p.ignore[f] && identified(&p.ignore))
        })
        .collect();
    for Prepared {
        label,
        pairs,
        blocked,
        levels,
        mut ignore,
    } in prepared
    {
        if salt_blocked(blocked) {
            for &f in salted {
                if covered[f] {
                    ignore[f] = true;
                }
            }
        }
        let pats = patterns_of(&levels, nf);
        // A two-class mixture needs at least three conditionally independent
        // fields to be identified; with two (postcode and address, say, which
        // go wrong together) EM calls "both agree" a match and every mover a
        // non-match.
        let free = free_fields(&ignore);
        if free < 3 {
            tracing::info!(
                "training session on {label} skipped: {free} field(s) left to train, at least 3 needed"
            );
            continue;
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
            if !ignore[g] {
                per_field[g].push((r.expected_matches, r.m[g].clone(), label.clone()));
            }
        }
        for (d, &[a, b]) in dependent.iter().enumerate() {
            if !ignore[a] && !ignore[b] {
                let c = dependence_counts(&pats, (&r.m, u_random, r.lambda), &ignore, (a, b));
                for (x, y) in cells[d].iter_mut().zip(c) {
                    *x += y;
                }
            }
        }
    }
    let dependent: Vec<Dependent> = dependent
        .iter()
        .zip(&cells)
        .filter_map(|(&[a, b], &c)| {
            let bits = dependence_bits(c);
            let share = |x: f64| 100.0 * x / c[0].max(f64::MIN_POSITIVE);
            match bits {
                Some(bits) => tracing::info!(
                    "`{}` and `{}` go wrong together: both below exact in {:.1}% of {:.0} near-certain matches, {:.1}% if independent ({:+.2} bits when both are)",
                    names[a],
                    names[b],
                    share(c[3]),
                    c[0],
                    share(c[1]) * share(c[2]) / 100.0,
                    bits
                ),
                None => tracing::warn!(
                    "`{}` and `{}` (scoring.dependent): the training sessions' near-certain matches ({:.0}, at least 100 needed, with each field below exact in some) cannot fit how they go wrong together; scored as independent",
                    names[a],
                    names[b],
                    c[0]
                ),
            }
            Some(Dependent {
                fields: [a, b],
                bits: bits?,
            })
        })
        .collect();
    let trained: Vec<bool> = per_field.iter().map(|v| !v.is_empty()).collect();
    let m: Vec<Vec<f64>> = (0..nf)
        .map(|g| {
            if trained[g] {
                combine_sessions(&names[g], &per_field[g])
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
        salt: None,
        dependent,
    }
}

/// Non-matches with equal salts needed to measure the source's levels.
const SALT_SAMPLE_MIN: usize = 200;

/// The correction for pairs whose salts surely agree
/// ([`SaltWeights`]), when the schema salts by the year of a date field.
///
/// `P(equal salts | random pair)` is `P(same date) × 365.25` (birthdays
/// spread evenly over the year; the same date implies the same year), with
/// `P(same date)` the u of an exact date (random pairs across agencies:
/// at small scale they include matches, which raises it; see
/// docs/decisions.md §16 for the within-agency estimate tried). The
/// source's levels among non-matches with equal salts are counted over
/// pairs with identical filters in one salted field whose other salted
/// fields disagree outright (same surname and birth year, different first
/// name: nearly all non-matches). `None` without such a salt, when the
/// date never agrees among the random pairs, or when fewer than
/// [`SALT_SAMPLE_MIN`] such pairs exist.
pub fn fit_salt_weights(
    ds: &Dataset,
    cuts: &[f32],
    u: &[Vec<f64>],
    dedup: bool,
) -> Option<SaltWeights> {
    let salt = ds
        .salt
        .as_ref()
        .filter(|s| s.year_of_date && s.salted.len() >= 2)?;
    let nl = n_levels(cuts);
    let src = salt.source;
    let same = (u[src][1] * 365.25).min(1.0);
    if same <= 0.0 {
        tracing::info!("salt: no two random records share a date of birth; weights left as fitted");
        return None;
    }
    let salt_bits = -same.log2();
    let last = (nl - 1) as u8;
    let nf = ds.fields.len();
    let mut counts = vec![0u64; nl];
    for &f in &salt.salted {
        let pairs = agreeing_pairs(ds, f, dedup, 20_000, 1_000_000);
        let levels = compare_fields(ds, &pairs, cuts);
        for p in levels.chunks_exact(nf) {
            let others_disagree = salt.salted.iter().all(|&g| g == f || p[g] == last);
            if others_disagree && p[src] > 0 {
                counts[p[src] as usize] += 1;
            }
        }
    }
    let n: u64 = counts.iter().sum();
    if (n as usize) < SALT_SAMPLE_MIN {
        tracing::info!(
            "salt: {n} non-matching pairs with equal salts found, {SALT_SAMPLE_MIN} needed; weights left as fitted"
        );
        return None;
    }
    let source_shift: Vec<f64> = (0..nl)
        .map(|l| {
            if l == 0 {
                0.0
            } else if l == 1 {
                salt_bits
            } else {
                let q = counts[l] as f64 / n as f64;
                if q <= 0.0 || u[src][l] <= 0.0 {
                    0.0
                } else {
                    (q / u[src][l]).log2().clamp(0.0, salt_bits)
                }
            }
        })
        .collect();
    tracing::info!(
        "salt: random records share the year of `{}` with probability {:.4} ({:.1} bits counted once, not per salted field); its levels among {n} non-matches with equal salts shift weights by {:?} bits",
        ds.fields[src].name,
        same,
        salt_bits,
        source_shift
            .iter()
            .map(|x| (x * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    Some(SaltWeights {
        source: src,
        salted: salt.salted.clone(),
        agree_levels: (nl - 2) as u8,
        salt_bits,
        source_shift,
    })
}

/// Expected matches a session needs for its m to count (see
/// [`combine_sessions`]).
const SESSION_MIN_MATCHES: f64 = 200.0;

/// A field's m from the sessions that fitted it.
///
/// Sessions should agree: among matches, a field's agreement should not
/// depend on which other field the session's pairs share. It does when the
/// two fields go wrong together: a person who moved changes postcode and
/// address at once, so the matches of a session blocked on postcode nearly
/// all agree on address too (0.99 at a million records, against 0.72 over
/// all matches). Conditioning on one agreement only ever raises another
/// when errors go together, so the session with the lowest exact agreement
/// is the least affected: m is the average, weighted by expected matches, of
/// the sessions within 0.02 of that lowest agreement. Sessions with under
/// [`SESSION_MIN_MATCHES`] expected matches (standard error above about
/// 0.03) neither set the bar nor count, unless no session has that many.
fn combine_sessions(field: &str, fits: &[(f64, Vec<f64>, String)]) -> Vec<f64> {
    let most = fits.iter().map(|f| f.0).fold(0.0, f64::max);
    let enough = SESSION_MIN_MATCHES.min(most);
    let exact = |f: &(f64, Vec<f64>, String)| f.1.get(1).copied().unwrap_or(0.0);
    let bar = fits
        .iter()
        .filter(|f| f.0 >= enough)
        .map(exact)
        .fold(f64::INFINITY, f64::min);
    let nl = fits[0].1.len();
    let (mut v, mut w) = (vec![0.0; nl], 0.0);
    let mut aside = Vec::new();
    for f in fits.iter().filter(|f| f.0 >= enough) {
        if exact(f) <= bar + 0.02 {
            for (acc, x) in v.iter_mut().zip(&f.1).skip(1) {
                *acc += x * f.0;
            }
            w += f.0;
        } else {
            aside.push(format!("{} ({:.3})", f.2, exact(f)));
        }
    }
    if !aside.is_empty() {
        tracing::info!(
            "m of `{field}`: set aside {}, whose exact agreement exceeds the lowest session's {:.3}: their key goes wrong together with this field",
            aside.join(", "),
            bar
        );
    }
    v.iter_mut().for_each(|x| *x /= w.max(f64::MIN_POSITIVE));
    v[0] = 0.0;
    v
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
        salt,
        dependent,
    } = fit;
    let smallest = ds.agencies.iter().map(|a| a.len).min().unwrap_or(1).max(1);
    let lambda0 = (smallest as f64 / candidates.max(1) as f64).clamp(1e-6, 0.5);
    // Fields no session could train: EM on the candidates for those fields'
    // m alone, trained fields' m and every u held fixed. Conditional fields
    // (blocking keys compared as evidence, fallbacks) that no session
    // trained are left out of that EM and fitted last, from the candidates that
    // the other fields alone make near-certain matches ([`confident_m`]).
    // EM on the candidates does badly here: it calls several times too
    // many pairs matches (partial agreements that blocking selected), and a
    // field that speaks only where others disagree then takes its m from
    // those non-matches (Bill/William agreeing on the formal forename: m
    // 0.005–0.01 on 20k people, 0.19 in truth).
    let late: Vec<bool> = (0..nf)
        .map(|f| !trained[f] && ds.fields[f].conditional())
        .collect();
    let early: Vec<bool> = (0..nf).map(|f| !trained[f] && !late[f]).collect();
    if early.iter().any(|&x| x) {
        let r = em(
            cand_patterns,
            m,
            &u_random,
            lambda0,
            Free::MLambda,
            &late,
            &early,
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
        &late,
        &vec![false; nf],
        max_iter,
    );
    let eligible = eligible_pairs.max(1) as f64;
    let null = pair_null_rates(ds);
    // Conditional fields count only where other fields disagree, which the
    // tail's independent convolution cannot express (it would give most
    // matches the field's weight): they are left out.
    let m_tail: Vec<Vec<f64>> = (0..nf)
        .map(|f| {
            if ds.fields[f].conditional() {
                u_random[f].clone()
            } else {
                m[f].clone()
            }
        })
        .collect();
    let tail = tail_matches(
        &m_tail,
        &u_random,
        &null,
        cand_patterns,
        eligible,
        lam.expected_matches,
    );
    let matches = match tail {
        Some(t) => {
            tracing::info!(
                "prior: {:.0} matches estimated from the {:.0} candidates at or above weight {:.1} ({:.1}% of matches reach it); EM on the candidates would say {:.0}",
                t.matches,
                t.candidates_above,
                t.bar,
                100.0 * t.match_share_above,
                lam.expected_matches
            );
            t.matches
        }
        None => {
            tracing::info!(
                "prior: too few candidates far above chance to estimate it from the tail; using EM on the candidates ({:.0} expected matches)",
                lam.expected_matches
            );
            lam.expected_matches
        }
    };
    if late.iter().any(|&x| x) {
        let share = (matches / candidates.max(1) as f64).clamp(1e-9, 0.5);
        m = confident_m(cand_patterns, m, &u_random, share, &late, &names);
    }
    Model {
        fields: names,
        cuts: cuts
            .iter()
            .map(|&c| if c > 0.9999 { 1.0 } else { c as f64 })
            .collect(),
        m,
        u: u_random,
        lambda: (matches / eligible).clamp(1e-12, 0.5),
        candidate_lambda: lam.lambda,
        expected_matches: matches,
        sessions,
        iterations: lam.iterations,
        converged: lam.converged,
        u_pairs,
        salt,
        dependent,
    }
}

/// The share of level `l` among the non-null levels of `counts`, smoothed
/// so that no level has probability 0 (EM's m and [`confident_m`]).
fn smoothed(counts: &[f64], l: usize) -> f64 {
    let nonnull: f64 = counts[1..].iter().sum();
    (counts[l] + 1e-3) / (nonnull + 1e-3 * (counts.len() - 1) as f64)
}

/// Posterior probability of a match that makes a candidate pattern count
/// towards a conditional field's m in [`confident_m`], and a session's
/// pattern towards a dependent pair's cells in [`dependence_counts`].
const CONFIDENT: f64 = 0.99;

/// m of the `late` fields from the candidate patterns whose other fields
/// make them a match with probability at least [`CONFIDENT`] (prior
/// `share`): under conditional independence, selecting on the other fields
/// does not bias a field's levels among matches, and at that bar the
/// non-matches let in are few. Levels are counted where the field is not
/// null, with the smoothing EM uses. A field with fewer than 20 such pairs
/// gets m = u: it carries no weight either way.
pub fn confident_m(
    patterns: &[(Vec<u8>, f64)],
    mut m: Vec<Vec<f64>>,
    u: &[Vec<f64>],
    share: f64,
    late: &[bool],
    names: &[String],
) -> Vec<Vec<f64>> {
    let nl = m.first().map_or(2, |x| x.len());
    let prior = (share / (1.0 - share)).log2();
    let bar = (CONFIDENT / (1.0 - CONFIDENT)).log2();
    let mut counts = vec![vec![0.0f64; nl]; m.len()];
    for (levels, c) in patterns {
        let w: f64 = prior
            + levels
                .iter()
                .enumerate()
                .filter(|&(f, &l)| l > 0 && !late[f])
                .map(|(f, &l)| (m[f][l as usize] / u[f][l as usize]).log2())
                .sum::<f64>();
        if w < bar {
            continue;
        }
        for (f, &l) in levels.iter().enumerate() {
            if late[f] && l > 0 {
                counts[f][l as usize] += c;
            }
        }
    }
    for (f, c) in counts.iter().enumerate() {
        let n: f64 = c[1..].iter().sum();
        if !late[f] {
            continue;
        }
        if n < 20.0 {
            tracing::info!(
                "m of `{}`: {n:.0} near-certain matches compare it, 20 needed to fit it; it carries no weight",
                names[f]
            );
            m[f] = u[f].to_vec();
            continue;
        }
        for (l, x) in m[f].iter_mut().enumerate().skip(1) {
            *x = smoothed(c, l);
        }
    }
    m
}

/// Per field, the share of eligible pairs with the field missing on either
/// side, or salted with surely different salts (no evidence; see
/// [`Salt::differs`](super::load::Salt::differs)).
pub fn pair_null_rates(ds: &Dataset) -> Vec<f64> {
    let sizes: Vec<f64> = ds.agencies.iter().map(|a| a.len as f64).collect();
    let single = ds.agencies.len() < 2;
    let present = |f: usize| -> Vec<f64> {
        ds.agencies
            .iter()
            .map(|a| {
                let v = &ds.fields[f].valid[a.start..a.start + a.len];
                v.iter().filter(|x| **x).count() as f64 / a.len.max(1) as f64
            })
            .collect()
    };
    let source = ds.salt.as_ref().map(|s| present(s.source));
    (0..ds.fields.len())
        .map(|f| {
            let present = present(f);
            // Both salts present or both missing (independent of the field).
            let same_salt = |i: usize, j: usize| match (&source, &ds.salt) {
                (Some(s), Some(salt)) if salt.salted.contains(&f) => {
                    s[i] * s[j] + (1.0 - s[i]) * (1.0 - s[j])
                }
                _ => 1.0,
            };
            let (mut both, mut all) = (0.0, 0.0);
            for i in 0..sizes.len() {
                for j in i..sizes.len() {
                    let w = if i == j {
                        if !single {
                            continue;
                        }
                        sizes[i] * (sizes[i] - 1.0) / 2.0
                    } else {
                        sizes[i] * sizes[j]
                    };
                    both += w * present[i] * present[j] * same_salt(i, j);
                    all += w;
                }
            }
            if all > 0.0 { 1.0 - both / all } else { 0.0 }
        })
        .collect()
}

/// Width of the weight grid of [`tail_matches`], in bits.
const TAIL_STEP: f64 = 0.05;

/// Posterior odds (bits) at the bar of [`tail_matches`]: 2^10, so a pair at
/// the bar is a match with probability 0.999 under the model.
const TAIL_ODDS_BITS: f64 = 10.0;

/// The number of matches among all eligible pairs, estimated from the upper
/// tail of the match-weight distribution (docs/decisions.md §14).
///
/// Above a high weight `B` nearly every pair is a match, and blocking keeps
/// nearly every such pair: the candidates above `B` are the matches above
/// `B` plus a few non-matches. The model gives both shares: a match reaches
/// `B` with probability `P_m(B)` and a random pair with `P_u(B)` (the fields'
/// level distributions convolved, nulls at weight 0). So
///
/// `N = (C(B) − E·P_u(B)) / (P_m(B) − P_u(B))`,
///
/// with `C(B)` the candidates at or above `B` and `E` the eligible pairs. `B`
/// is where the posterior odds reach 2^10 under the estimated prior (found by
/// iterating from `start` matches): above it the model itself calls nearly
/// every pair a match. Unlike EM on the candidates, this does not count the
/// candidates' partial agreements (which blocking selected for) as matches.
/// `None` when the tail holds too few candidates or too little of the match
/// distribution to extrapolate from.
pub fn tail_matches(
    m: &[Vec<f64>],
    u: &[Vec<f64>],
    null: &[f64],
    cand_patterns: &[(Vec<u8>, f64)],
    eligible: f64,
    start: f64,
) -> Option<TailEstimate> {
    let nf = m.len();
    if nf == 0 || cand_patterns.is_empty() {
        return None;
    }
    // Each level's weight as a whole number of grid steps.
    let steps: Vec<Vec<i64>> = (0..nf)
        .map(|f| {
            m[f].iter()
                .zip(&u[f])
                .enumerate()
                .map(|(l, (&mv, &uv))| {
                    if l == 0 || mv <= 0.0 || uv <= 0.0 {
                        0
                    } else {
                        ((mv / uv).log2() / TAIL_STEP).round() as i64
                    }
                })
                .collect()
        })
        .collect();
    let lo: i64 = steps
        .iter()
        .map(|s| s.iter().copied().min().unwrap_or(0).min(0))
        .sum();
    let hi: i64 = steps
        .iter()
        .map(|s| s.iter().copied().max().unwrap_or(0).max(0))
        .sum();
    let width = (hi - lo + 1) as usize;
    // Distribution of the total weight under m and under u.
    let convolve = |dist: &[Vec<f64>]| -> Vec<f64> {
        let mut acc = vec![0.0f64; width];
        acc[(-lo) as usize] = 1.0;
        for f in 0..nf {
            let q = null.get(f).copied().unwrap_or(0.0).clamp(0.0, 1.0);
            let nonnull: f64 = dist[f].iter().skip(1).sum();
            let mut next = vec![0.0f64; width];
            for (k, &a) in acc.iter().enumerate() {
                if a == 0.0 {
                    continue;
                }
                next[k] += a * q;
                if nonnull > 0.0 {
                    for (l, &p) in dist[f].iter().enumerate().skip(1) {
                        let j = (k as i64 + steps[f][l]) as usize;
                        next[j] += a * (1.0 - q) * p / nonnull;
                    }
                }
            }
            acc = next;
        }
        acc
    };
    let tail = |d: Vec<f64>| -> Vec<f64> {
        let mut t = d;
        for k in (0..width.saturating_sub(1)).rev() {
            t[k] += t[k + 1];
        }
        t
    };
    let pm = tail(convolve(m));
    let pu = tail(convolve(u));
    let mut counts = vec![0.0f64; width];
    for (levels, c) in cand_patterns {
        let k: i64 = levels
            .iter()
            .enumerate()
            .map(|(f, &l)| steps[f].get(l as usize).copied().unwrap_or(0))
            .sum();
        counts[(k - lo) as usize] += c;
    }
    let cm = tail(counts);
    let estimate = |k: usize| (cm[k] - eligible * pu[k]) / (pm[k] - pu[k]);
    let index_of = |bar: f64| -> usize {
        ((bar / TAIL_STEP).ceil() as i64 - lo).clamp(0, width as i64 - 1) as usize
    };
    // The estimate at every whole 2 bits, for -vv.
    if tracing::enabled!(tracing::Level::DEBUG) {
        for k in (0..width).rev().step_by((2.0 / TAIL_STEP) as usize) {
            if cm[k] >= 1.0 && pm[k] > pu[k] {
                tracing::debug!(
                    "prior from the tail at {:.1} bits: {:.0} candidates, {:.4} of matches, {:.1} non-matches expected: {:.0} matches",
                    (k as i64 + lo) as f64 * TAIL_STEP,
                    cm[k],
                    pm[k],
                    eligible * pu[k],
                    estimate(k)
                );
            }
        }
    }
    // The bar: where the model's posterior odds reach 2^TAIL_ODDS_BITS, so
    // the pairs above it are matches by the model's own reckoning. It
    // depends on the prior, hence on the estimate: iterate from a start.
    // A bar needs candidates and match mass above it to extrapolate from.
    let usable = |k: usize| cm[k] >= 30.0 && pm[k] >= 0.05 && pm[k] > pu[k];
    let mut n = start.max(1.0);
    let mut k = index_of(TAIL_ODDS_BITS + (eligible / n).log2());
    for _ in 0..20 {
        if !usable(k) {
            return None;
        }
        let next = estimate(k);
        if next <= 0.0 {
            return None;
        }
        let moved = (next - n).abs() / n;
        n = next;
        k = index_of(TAIL_ODDS_BITS + (eligible / n).log2());
        if moved < 1e-3 {
            break;
        }
    }
    if !usable(k) {
        return None;
    }
    Some(TailEstimate {
        matches: estimate(k),
        bar: (k as i64 + lo) as f64 * TAIL_STEP,
        candidates_above: cm[k],
        match_share_above: pm[k],
    })
}

/// What [`tail_matches`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TailEstimate {
    /// Estimated matches among all eligible pairs.
    pub matches: f64,
    /// The weight bar `B` (bits, before the prior).
    pub bar: f64,
    /// Candidates at or above the bar.
    pub candidates_above: f64,
    /// Share of matches the model puts at or above the bar.
    pub match_share_above: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_m_reads_a_conditional_field_off_the_near_certain_matches() {
        // Fields: 0 (strong), 1 (conditional: null unless field 0 is off).
        // u: level 1 rare, level 2 common.
        let u = vec![vec![0.0, 0.0001, 0.9999], vec![0.0, 0.001, 0.999]];
        let m = vec![vec![0.0, 0.9, 0.1], vec![0.0, 0.5, 0.5]];
        let late = [false, true];
        let names = ["a".to_string(), "b".to_string()];
        // 300 near-certain pairs (field 0 agrees) of which 60 have field 1
        // agreeing; 10,000 pairs where field 0 disagrees, all field-1
        // disagreements (non-matches): EM with λ free would count some of
        // them; the confident reading ignores them.
        let patterns = vec![
            (vec![1u8, 1], 60.0),
            (vec![1u8, 2], 240.0),
            (vec![2u8, 2], 10_000.0),
        ];
        let got = confident_m(&patterns, m.clone(), &u, 0.03, &late, &names);
        assert!((got[1][1] - 0.2).abs() < 1e-3, "{:?}", got[1]);
        assert!((got[1][2] - 0.8).abs() < 1e-3, "{:?}", got[1]);
        assert_eq!(got[0], m[0], "other fields keep their m");
        // Too few near-certain pairs: the field gets m = u (no weight).
        let few = vec![(vec![1u8, 1], 5.0), (vec![1u8, 2], 5.0)];
        let got = confident_m(&few, m, &u, 0.03, &late, &names);
        assert_eq!(got[1], u[1]);
    }

    /// Every level pattern of the fields (level 0 = null), with its
    /// probability under per-field distributions `p` and null rate `q`.
    fn patterns(p: &[Vec<f64>], q: f64) -> Vec<(Vec<u8>, f64)> {
        let mut out = vec![(Vec::new(), 1.0)];
        for field in p {
            let mut next = Vec::new();
            for (levels, pr) in &out {
                for (l, &pf) in field.iter().enumerate() {
                    let pl = if l == 0 { q } else { (1.0 - q) * pf };
                    let mut v: Vec<u8> = levels.clone();
                    v.push(l as u8);
                    next.push((v, pr * pl));
                }
            }
            out = next;
        }
        out
    }

    fn model() -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let m = vec![vec![0.0, 0.8, 0.15, 0.05]; 4];
        let u = vec![vec![0.0, 0.001, 0.02, 0.979]; 4];
        (m, u)
    }

    #[test]
    fn tail_estimate_recovers_the_matches_that_em_on_candidates_overcounts() {
        let (m, u) = model();
        let q = 0.05;
        let (n, e) = (1_000.0, 1e9);
        let pm = patterns(&m, q);
        let pu = patterns(&u, q);
        // Blocking keeps pairs agreeing exactly on field 0 or 1, and its
        // non-matches agree more than random pairs on the rest (they were
        // selected for being similar): half of them also agree on field 2.
        let mut cand = Vec::new();
        for ((l, a), (_, b)) in pm.iter().zip(&pu) {
            if l[0] == 1 || l[1] == 1 {
                let mut c = n * a + (e - n) * b;
                if l[2] == 1 {
                    c += 0.5 * (e - n) * b * 50.0;
                }
                cand.push((l.clone(), c));
            }
        }
        let null = vec![q; 4];
        let t = tail_matches(&m, &u, &null, &cand, e, 1e5).expect("an estimate");
        // Blocking keeps only the matches agreeing on field 0 or 1 (0.96 of
        // those above the bar); the tail above the bar is nearly all there.
        assert!(
            (t.matches - n).abs() < 0.05 * n,
            "tail estimate {} for {n} matches (bar {})",
            t.matches,
            t.bar
        );
        // The bar is where the posterior odds reach 2^10 under the estimate.
        let odds = t.bar + (t.matches / e).log2();
        assert!((odds - TAIL_ODDS_BITS).abs() < 0.2, "odds at bar {odds}");
        // EM on the same candidates counts the selected non-matches too.
        let lam = em(
            &cand,
            m.clone(),
            &u,
            0.01,
            Free::Lambda,
            &[false; 4],
            &[false; 4],
            200,
        );
        assert!(
            lam.expected_matches > 1.5 * n,
            "EM {}",
            lam.expected_matches
        );
    }

    #[test]
    fn tail_estimate_declines_without_a_tail() {
        let (m, u) = model();
        assert!(tail_matches(&m, &u, &[0.0; 4], &[], 1e6, 10.0).is_none());
        // Only weak agreements among the candidates: nothing far above chance.
        let weak = vec![(vec![2, 2, 3, 3], 5_000.0), (vec![3, 3, 3, 3], 90_000.0)];
        assert!(tail_matches(&m, &u, &[0.0; 4], &weak, 1e8, 100.0).is_none());
    }

    #[test]
    fn sessions_whose_key_goes_wrong_with_the_field_are_set_aside() {
        let fits = vec![
            (1_000.0, vec![0.0, 0.72, 0.03, 0.25], "names".to_string()),
            (
                600_000.0,
                vec![0.0, 0.99, 0.005, 0.005],
                "postcode".to_string(),
            ),
            (2_000.0, vec![0.0, 0.73, 0.02, 0.25], "dob".to_string()),
            // Too small to set the bar, though its agreement is lowest.
            (5.0, vec![0.0, 0.40, 0.10, 0.50], "tiny".to_string()),
        ];
        let m = combine_sessions("address", &fits);
        let want = (0.72 * 1_000.0 + 0.73 * 2_000.0) / 3_000.0;
        assert!((m[1] - want).abs() < 1e-12, "{m:?}");
        assert_eq!(m[0], 0.0);
        assert!((m.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // Sessions that agree are all averaged.
        let same = vec![
            (1_000.0, vec![0.0, 0.8, 0.2], "a".to_string()),
            (3_000.0, vec![0.0, 0.81, 0.19], "b".to_string()),
        ];
        let m = combine_sessions("x", &same);
        assert!((m[1] - (0.8 * 1_000.0 + 0.81 * 3_000.0) / 4_000.0).abs() < 1e-12);
        // With no session large enough, the largest sets the bar.
        let small = vec![
            (50.0, vec![0.0, 0.9, 0.1], "a".to_string()),
            (80.0, vec![0.0, 0.7, 0.3], "b".to_string()),
        ];
        assert!((combine_sessions("x", &small)[1] - 0.7).abs() < 1e-12);
    }

    #[test]
    fn dependence_is_read_off_the_near_certain_matches_of_the_other_fields() {
        // Field 0 tells matches from non-matches; fields 1 and 2 go wrong
        // together: 100 matches agree on both, 30 (movers) disagree on
        // both, 1,000 non-matches disagree on both, and 50 matches miss
        // field 2 (not counted).
        let m = vec![vec![0.0, 0.9, 0.0, 0.1]; 3];
        let u = vec![vec![0.0, 0.001, 0.0, 0.999]; 3];
        let pats: Vec<(Vec<u8>, f64)> = vec![
            (vec![1, 1, 1], 100.0),
            (vec![1, 3, 3], 30.0),
            (vec![3, 3, 3], 1000.0),
            (vec![1, 1, 0], 50.0),
        ];
        let none = [false; 3];
        let c = dependence_counts(&pats, (&m, &u, 0.1), &none, (1, 2));
        assert_eq!(c, [130.0, 30.0, 30.0, 30.0]);
        // Both below exact in 30/130 of the matches, against (30/130)²
        // under independence.
        let bits = dependence_bits(c).unwrap();
        assert!((bits - (130.0f64 / 30.0).log2()).abs() < 1e-12, "{bits}");
        // The fields themselves never select: a pair whose other fields
        // say nothing is not counted, however well 1 and 2 agree.
        let c = dependence_counts(&pats, (&m, &u, 0.1), &[true, false, false], (1, 2));
        assert_eq!(c, [0.0; 4]);
        assert_eq!(dependence_bits(c), None);
        // Too few matches, or a cell never seen: no correction.
        assert_eq!(dependence_bits([99.0, 30.0, 30.0, 30.0]), None);
        assert_eq!(dependence_bits([130.0, 30.0, 30.0, 0.0]), None);
        // Independent fields: no correction.
        assert_eq!(dependence_bits([200.0, 100.0, 50.0, 25.0]), Some(0.0));
    }
}
