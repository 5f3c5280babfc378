//! A simulated frequency attack on field filters (for the privacy audit).
//!
//! The attacker holds the field filters (as the hub does) and a public list
//! of name frequencies, but not the key. Equal names give equal filters, so
//! the attacker ranks distinct filters by how often they occur and guesses
//! that the i-th most common filter is the i-th most common public name.
//! Records holding a common filter (at least 0.5% of records) are the
//! attack's *estimated* exposure, computable at the hub without plaintext. Given the true plaintext (in
//! tests, on synthetic data) the attack's *actual* success is counted too.

use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};

/// The outcome of one attack on one field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackResult {
    pub field: String,
    pub reference: String,
    /// Records with the field present.
    pub records: u64,
    /// Distinct filters, and how many of the most common were guessed.
    pub distinct: u64,
    pub guessed: u64,
    /// Records holding a common filter (exposed to the attack).
    pub estimated_reidentified: u64,
    pub estimated_share: f64,
    /// Records whose guess equals their true value (only with truth).
    pub actual_reidentified: Option<u64>,
    pub actual_share: Option<f64>,
}

fn key(words: &[u64]) -> u64 {
    let mut h = FxHasher::default();
    words.hash(&mut h);
    h.finish()
}

/// Run the attack. `filters(i)` gives record i's filter (None when missing);
/// `reference` is (name, frequency) sorted most common first; `truth(i)` the
/// record's normalised true value, when known. With `cluster` = Some(t) the
/// attacker first groups filters whose Dice with a group's leader is at
/// least t (defeating noise such as BLIP that makes equal values differ
/// slightly); with None only identical filters are grouped.
pub fn frequency_attack<'a>(
    field: &str,
    reference_name: &str,
    n: usize,
    filters: impl Fn(usize) -> Option<&'a [u64]>,
    reference: &[(String, f64)],
    truth: Option<&dyn Fn(usize) -> Option<String>>,
    cluster: Option<f64>,
) -> AttackResult {
    let mut exact: FxHashMap<u64, (u64, usize)> = FxHashMap::default();
    let mut records = 0;
    for i in 0..n {
        if let Some(f) = filters(i) {
            exact.entry(key(f)).or_insert((0, i)).0 += 1;
            records += 1;
        }
    }
    // Group key of each distinct filter: itself, or its cluster leader's.
    let mut group_of: FxHashMap<u64, u64> = FxHashMap::default();
    match cluster {
        None => {
            for &k in exact.keys() {
                group_of.insert(k, k);
            }
        }
        Some(t) => {
            let mut distinct: Vec<(u64, u64, usize)> =
                exact.iter().map(|(&k, &(c, i))| (c, k, i)).collect();
            distinct.sort_unstable_by(|a, b| b.cmp(a));
            let mut leaders: Vec<(u64, usize)> = Vec::new();
            for &(_, k, i) in &distinct {
                let f = filters(i).expect("present");
                let hit = leaders
                    .iter()
                    .find(|&&(_, li)| crate::bloom::dice(filters(li).expect("present"), f) >= t);
                match hit {
                    Some(&(lk, _)) => {
                        group_of.insert(k, lk);
                    }
                    None => {
                        leaders.push((k, i));
                        group_of.insert(k, k);
                    }
                }
            }
        }
    }
    let mut counts: FxHashMap<u64, u64> = FxHashMap::default();
    for (k, &(c, _)) in &exact {
        *counts.entry(group_of[k]).or_default() += c;
    }
    let mut ranked: Vec<(u64, u64)> = counts.iter().map(|(&k, &c)| (c, k)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    let guessed = ranked.len().min(reference.len());
    // Exposed: a value held by at least 0.5% of the records (and 10 or
    // more). Common values are the ones frequency analysis can name; rare
    // ones drown in noise. The estimate needs no plaintext, so the hub can
    // compute it; measured against plaintext it tracks the actual success
    // of the attack (docs/privacy.md).
    let common = (records as f64 * 0.005).max(10.0);
    let mut guess: FxHashMap<u64, (usize, bool)> = FxHashMap::default();
    for (i, &(c, k)) in ranked.iter().take(guessed).enumerate() {
        guess.insert(k, (i, c as f64 >= common));
    }
    let mut estimated = 0u64;
    let mut actual = 0u64;
    for i in 0..n {
        let Some(f) = filters(i) else { continue };
        if let Some(&(rank, stable)) = guess.get(&group_of[&key(f)]) {
            if stable {
                estimated += 1;
            }
            if let Some(t) = truth
                && t(i).as_deref() == Some(reference[rank].0.as_str())
            {
                actual += 1;
            }
        }
    }
    let share = |x: u64| {
        if records > 0 {
            x as f64 / records as f64
        } else {
            0.0
        }
    };
    AttackResult {
        field: field.to_string(),
        reference: reference_name.to_string(),
        records,
        distinct: ranked.len() as u64,
        guessed: guessed as u64,
        estimated_reidentified: estimated,
        estimated_share: share(estimated),
        actual_reidentified: truth.map(|_| actual),
        actual_share: truth.map(|_| share(actual)),
    }
}

/// Lower-case, drop apostrophes, hyphens to spaces: how a native `name`
/// field normalises the plain ASCII names of the reference lists.
pub fn normalise_name(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '\'')
        .map(|c| {
            if c == '-' {
                ' '
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// The public reference lists bundled with bloomlink (UK name frequencies
/// from the synthetic-data lists), normalised like native name fields.
pub fn reference_list(kind: &str) -> Vec<(String, f64)> {
    use crate::synth::names::{Origin, lists};
    let mut acc: FxHashMap<String, f64> = FxHashMap::default();
    for (o, w) in Origin::ALL {
        let (m, f, s) = lists(o);
        let parts: Vec<&[(&str, u32)]> = if kind == "surname" {
            vec![s]
        } else {
            vec![m, f]
        };
        for list in parts {
            let total: u32 = list.iter().map(|x| x.1).sum();
            for (name, c) in list {
                *acc.entry(normalise_name(name)).or_default() +=
                    w as f64 * *c as f64 / total as f64;
            }
        }
    }
    let mut v: Vec<(String, f64)> = acc.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}
