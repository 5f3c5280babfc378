//! A simulated pattern-mining attack on Bloom filters (for the privacy audit).
//!
//! After Christen, Schnell, Vatsalan and Ranbaduge (2017), "Efficient
//! cryptanalysis of Bloom filters for privacy-preserving record linkage".
//! Every q-gram sets the same k bits in every filter that holds it, so the
//! bits of a frequent q-gram are set *together* in about as many filters as
//! the q-gram is frequent in a public list of values. The attacker, who holds
//! the filters and the list but not the key:
//!
//! 1. takes the most frequent q-gram g of the values still possible;
//! 2. finds the bits that co-occur with the most frequent bit of the filters
//!    still in play (a maximal frequent pattern) and, when the pattern's
//!    support is close to g's frequency, assigns the pattern to g;
//! 3. splits the filters into those holding the pattern (their values
//!    contain g) and the rest (they do not), and the values likewise, and
//!    recurses into both parts;
//! 4. at each leaf, guesses the value whose q-grams best explain which
//!    identified patterns the filter holds (a unique best, among at most 50
//!    candidates).
//!
//! With the true plaintext (synthetic data in tests and benchmarks) the
//! guesses are scored. The attacker knows the encoding's public parameters
//! (q, padding) — only the key is secret. Never used on real plaintext: the
//! reference list is public data.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// The outcome of the attack on one field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatternResult {
    pub field: String,
    /// Records with the field present.
    pub records: u64,
    /// q-grams to which a bit pattern was assigned.
    pub patterns: u64,
    /// Of those, assignments that were right (only with truth): most filters
    /// holding the pattern hold the q-gram.
    pub patterns_correct: Option<u64>,
    /// Records given a guess.
    pub guessed: u64,
    /// Guesses equal to the record's true value (only with truth).
    pub actual_reidentified: Option<u64>,
    pub actual_share: Option<f64>,
}

/// Tuning of the attack; the defaults follow the published method.
#[derive(Debug, Clone, Copy)]
pub struct PatternParams {
    /// q-gram length and whether values are padded with q − 1 spaces.
    pub q: usize,
    pub padded: bool,
    /// Smallest set of filters to split further.
    pub min_node: usize,
    pub max_depth: usize,
    /// Patterns are mined down to this share of the top q-gram's expected
    /// filters.
    pub min_support: f64,
    /// Fewest bits in a pattern (a q-gram sets k bits).
    pub min_pattern: usize,
    /// Frequent bits tried as the seed of a pattern.
    pub seeds: usize,
    /// Bits per q-gram (public, like q): a pattern stops growing at k.
    pub k: usize,
    /// Largest ratio between a pattern's support and its q-gram's share.
    pub tolerance: f64,
}

impl Default for PatternParams {
    fn default() -> Self {
        PatternParams {
            q: 2,
            padded: true,
            min_node: 20,
            max_depth: 24,
            min_support: 0.8,
            min_pattern: 5,
            seeds: 24,
            k: 15,
            tolerance: 1.35,
        }
    }
}

/// The q-grams of a value, as the encoder forms them (Unicode code points,
/// padded with q − 1 spaces each side when `padded`).
pub fn qgrams(value: &str, q: usize, padded: bool) -> Vec<String> {
    let pad: String = if padded {
        " ".repeat(q - 1)
    } else {
        String::new()
    };
    let chars: Vec<char> = format!("{pad}{value}{pad}").chars().collect();
    if chars.len() < q {
        return vec![chars.iter().collect()];
    }
    let mut v: Vec<String> = chars.windows(q).map(|w| w.iter().collect()).collect();
    v.sort();
    v.dedup();
    v
}

struct Node {
    recs: Vec<u32>,
    vals: Vec<u32>,
    used_grams: Vec<u32>,
    used_bits: Vec<u64>,
    depth: usize,
}

#[inline]
fn has(f: &[u64], b: usize) -> bool {
    f[b / 64] >> (b % 64) & 1 == 1
}

/// Grow a maximal frequent pattern from `seed`: keep adding the bit that
/// leaves the most filters holding the whole pattern, while at least
/// `min_support` do. A q-gram's k bits are set together in all its filters,
/// so from one of its bits the pattern grows to (at least) all k; bits of
/// unrelated q-grams cut the support below the minimum. Returns the
/// pattern, its size and its support.
fn grow(
    fs: &[&[u64]],
    recs: &[u32],
    used_bits: &[u64],
    seed: usize,
    min_support: usize,
    max_size: usize,
    counts: &mut [u32],
) -> (Vec<u64>, usize, usize) {
    let mut pattern = vec![0u64; used_bits.len()];
    pattern[seed / 64] |= 1 << (seed % 64);
    let mut size = 1;
    let mut within: Vec<u32> = recs
        .iter()
        .copied()
        .filter(|&r| has(fs[r as usize], seed))
        .collect();
    loop {
        counts.iter_mut().for_each(|c| *c = 0);
        for &r in &within {
            for (wi, &w) in fs[r as usize].iter().enumerate() {
                let mut x = w & !used_bits[wi] & !pattern[wi];
                while x != 0 {
                    counts[wi * 64 + x.trailing_zeros() as usize] += 1;
                    x &= x - 1;
                }
            }
        }
        let Some(b) = (0..counts.len()).max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a)))
        else {
            break;
        };
        if counts[b] == 0 || (counts[b] as usize) < min_support || size >= max_size {
            break;
        }
        pattern[b / 64] |= 1 << (b % 64);
        size += 1;
        within.retain(|&r| has(fs[r as usize], b));
    }
    (pattern, size, within.len())
}

/// Distinct frequent patterns among `recs` (bits in `used_bits` left out),
/// grown from the most frequent bits and merged when they overlap; most
/// frequent first, as (support, pattern).
fn mine(
    fs: &[&[u64]],
    recs: &[u32],
    used_bits: &[u64],
    p: PatternParams,
    min_support: usize,
    counts: &mut [u32],
    counts_grow: &mut [u32],
) -> Vec<(usize, Vec<u64>)> {
    counts.iter_mut().for_each(|c| *c = 0);
    for &r in recs {
        for (wi, &w) in fs[r as usize].iter().enumerate() {
            let mut x = w & !used_bits[wi];
            while x != 0 {
                counts[wi * 64 + x.trailing_zeros() as usize] += 1;
                x &= x - 1;
            }
        }
    }
    let n = recs.len() as u32;
    let mut seeds: Vec<usize> = (0..counts.len())
        .filter(|&b| counts[b] > 0 && counts[b] < n && counts[b] as usize >= min_support)
        .collect();
    seeds.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    seeds.truncate(p.seeds);
    let mut found: Vec<(usize, usize, Vec<u64>)> = Vec::new();
    for &seed in &seeds {
        let (pattern, size, support) =
            grow(fs, recs, used_bits, seed, min_support, p.k, counts_grow);
        if size < p.min_pattern {
            continue;
        }
        let overlaps = |q: &Vec<u64>| {
            let common: u32 = q
                .iter()
                .zip(&pattern)
                .map(|(a, b)| (a & b).count_ones())
                .sum();
            common as usize * 2 > size
        };
        match found.iter_mut().find(|f| overlaps(&f.2)) {
            Some(f) if f.0 >= support => {}
            Some(f) => *f = (support, size, pattern),
            None => found.push((support, size, pattern)),
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(s, _, p)| (s, p)).collect()
}

/// Weighted shares of the q-grams among `vs`, most frequent first, leaving
/// out `used` and q-grams every value holds.
fn shares(
    vs: &[u32],
    vals: &[Vec<u32>],
    weight: &[f64],
    used: &[u32],
    gw: &mut [f64],
) -> Vec<(usize, f64)> {
    gw.iter_mut().for_each(|x| *x = 0.0);
    let mut total = 0.0;
    for &v in vs {
        total += weight[v as usize];
        for &g in &vals[v as usize] {
            gw[g as usize] += weight[v as usize];
        }
    }
    for &g in used {
        gw[g as usize] = 0.0;
    }
    let mut top: Vec<(usize, f64)> = gw
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0.0 && **w < total * 0.999)
        .map(|(g, w)| (g, w / total))
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    top
}

#[inline]
fn holds(f: &[u64], pattern: &[u64]) -> bool {
    f.iter().zip(pattern).all(|(x, p)| x & p == *p)
}

/// Run the attack. `filters(i)` gives record i's filter (None when missing),
/// all of `words` words; `reference` is (value, frequency), values
/// normalised like the field; `truth(i)` the record's normalised value.
pub fn pattern_attack<'a>(
    field: &str,
    n: usize,
    words: usize,
    filters: impl Fn(usize) -> Option<&'a [u64]>,
    reference: &[(String, f64)],
    truth: Option<&dyn Fn(usize) -> Option<String>>,
    p: PatternParams,
) -> PatternResult {
    let recs: Vec<usize> = (0..n).filter(|&i| filters(i).is_some()).collect();
    let fs: Vec<&[u64]> = recs.iter().map(|&i| filters(i).expect("present")).collect();
    // The public values as q-gram id sets.
    let mut gram_id: FxHashMap<String, u32> = FxHashMap::default();
    let vals: Vec<Vec<u32>> = reference
        .iter()
        .map(|(v, _)| {
            let mut ids: Vec<u32> = qgrams(v, p.q, p.padded)
                .into_iter()
                .map(|g| {
                    let next = gram_id.len() as u32;
                    *gram_id.entry(g).or_insert(next)
                })
                .collect();
            ids.sort_unstable();
            ids
        })
        .collect();
    let weight: Vec<f64> = reference.iter().map(|r| r.1).collect();
    let ngrams = gram_id.len();
    let bits = words * 64;
    // Assigned patterns: q-gram → bit mask (first assignment wins).
    let mut assigned: Vec<Option<Vec<u64>>> = vec![None; ngrams];
    let mut leaves: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
    let mut stack = vec![Node {
        recs: (0..fs.len() as u32).collect(),
        vals: (0..vals.len() as u32).collect(),
        used_grams: Vec::new(),
        used_bits: vec![0u64; words],
        depth: 0,
    }];
    let mut gw = vec![0f64; ngrams];
    let mut counts = vec![0u32; bits];
    let mut counts_grow = vec![0u32; bits];
    while let Some(mut node) = stack.pop() {
        if node.recs.len() < p.min_node || node.vals.len() <= 1 || node.depth >= p.max_depth {
            leaves.push((node.recs, node.vals));
            continue;
        }
        // 1. q-gram shares among the possible values, skipping those every
        // possible value holds (they split nothing).
        let top = shares(&node.vals, &vals, &weight, &node.used_grams, &mut gw);
        let Some(&(_, share0)) = top.first() else {
            leaves.push((node.recs, node.vals));
            continue;
        };
        // 2. The filters' frequent patterns; the most frequent is the most
        // frequent q-gram's bits.
        let nrec = node.recs.len();
        let min_support = ((share0 * nrec as f64 * p.min_support).ceil() as usize).max(2);
        let pats = mine(
            &fs,
            &node.recs,
            &node.used_bits,
            p,
            min_support,
            &mut counts,
            &mut counts_grow,
        );
        let Some((support1, pattern)) = pats.into_iter().next() else {
            leaves.push((node.recs, node.vals));
            continue;
        };
        let s1 = support1 as f64 / nrec as f64;
        // 3. Which q-gram: those whose share is close to the pattern's
        // support, told apart by looking one level down: the shares of the
        // next q-grams among values holding the candidate must match the
        // supports of the next patterns among filters holding the pattern.
        let mut cands: Vec<(f64, usize)> = top
            .iter()
            .map(|&(g, sh)| ((s1 / sh).ln().abs(), g))
            .filter(|x| x.0 <= p.tolerance.ln())
            .collect();
        cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        cands.truncate(6);
        let (plus, minus): (Vec<u32>, Vec<u32>) = node
            .recs
            .iter()
            .partition(|&&r| holds(fs[r as usize], &pattern));
        let g = match cands.len() {
            0 => {
                leaves.push((node.recs, node.vals));
                continue;
            }
            1 => cands[0].1,
            _ => {
                let mut used_plus = node.used_bits.clone();
                used_plus
                    .iter_mut()
                    .zip(&pattern)
                    .for_each(|(a, b)| *a |= b);
                let floor = ((plus.len() as f64 * 0.1).ceil() as usize).max(2);
                let prof_f: Vec<f64> = mine(
                    &fs,
                    &plus,
                    &used_plus,
                    p,
                    floor,
                    &mut counts,
                    &mut counts_grow,
                )
                .iter()
                .take(5)
                .map(|x| x.0 as f64 / plus.len().max(1) as f64)
                .collect();
                let mut best = (f64::INFINITY, cands[0].1);
                for &(d, g) in &cands {
                    let vg: Vec<u32> = node
                        .vals
                        .iter()
                        .copied()
                        .filter(|&v| vals[v as usize].binary_search(&(g as u32)).is_ok())
                        .collect();
                    let mut used = node.used_grams.clone();
                    used.push(g as u32);
                    let prof_g = shares(&vg, &vals, &weight, &used, &mut gw);
                    let score = d
                        + (0..5)
                            .map(|i| {
                                (prof_f.get(i).copied().unwrap_or(0.0)
                                    - prof_g.get(i).map_or(0.0, |x| x.1))
                                .abs()
                            })
                            .sum::<f64>();
                    if score < best.0 {
                        best = (score, g);
                    }
                }
                best.1
            }
        };
        if assigned[g].is_none() {
            assigned[g] = Some(pattern.clone());
        }
        // 3. Split filters and values on the q-gram.
        let (vp, vm): (Vec<u32>, Vec<u32>) = node
            .vals
            .iter()
            .partition(|&&v| vals[v as usize].binary_search(&(g as u32)).is_ok());
        node.used_grams.push(g as u32);
        let mut bits_plus = node.used_bits.clone();
        bits_plus
            .iter_mut()
            .zip(&pattern)
            .for_each(|(a, b)| *a |= b);
        stack.push(Node {
            recs: minus,
            vals: vm,
            used_grams: node.used_grams.clone(),
            used_bits: node.used_bits,
            depth: node.depth + 1,
        });
        stack.push(Node {
            recs: plus,
            vals: vp,
            used_grams: node.used_grams,
            used_bits: bits_plus,
            depth: node.depth + 1,
        });
    }
    // 4. Guess per record: the candidate value that best explains which
    // identified patterns its filter holds.
    let known: Vec<(u32, &Vec<u64>)> = assigned
        .iter()
        .enumerate()
        .filter_map(|(g, m)| m.as_ref().map(|m| (g as u32, m)))
        .collect();
    let mut guess: Vec<Option<u32>> = vec![None; fs.len()];
    for (recs, cands) in &leaves {
        if cands.is_empty() {
            continue;
        }
        for &r in recs {
            let f = fs[r as usize];
            let held: Vec<bool> = known.iter().map(|(_, m)| holds(f, m)).collect();
            // A guess needs evidence: at least two identified q-grams of the
            // value held, and no other value scoring as well. Identified
            // q-grams of the value whose pattern is not held count against
            // it, patterns held that the value lacks count half.
            let mut best = (f64::MIN, None, false);
            for &v in cands {
                let vg = &vals[v as usize];
                let (mut s, mut evidence) = (0f64, 0);
                for ((g, _), &h) in known.iter().zip(&held) {
                    match (h, vg.binary_search(g).is_ok()) {
                        (true, true) => {
                            s += 1.0;
                            evidence += 1;
                        }
                        (false, true) => s -= 1.0,
                        (true, false) => s -= 0.5,
                        (false, false) => {}
                    }
                }
                if evidence < 2 {
                    continue;
                }
                if s > best.0 {
                    best = (s, Some(v), true);
                } else if s == best.0 {
                    best.2 = false;
                }
            }
            if best.2 && best.0 >= 2.0 {
                guess[r as usize] = best.1;
            }
        }
    }
    let guessed = guess.iter().filter(|g| g.is_some()).count() as u64;
    let records = fs.len() as u64;
    let share = |k: u64| {
        if records > 0 {
            k as f64 / records as f64
        } else {
            0.0
        }
    };
    let (mut correct, mut patterns_correct) = (None, None);
    if let Some(truth) = truth {
        let t: Vec<Option<String>> = recs.iter().map(|&i| truth(i)).collect();
        correct = Some(
            guess
                .iter()
                .zip(&t)
                .filter(|(g, t)| match (g, t) {
                    (Some(v), Some(t)) => reference[*v as usize].0 == *t,
                    _ => false,
                })
                .count() as u64,
        );
        // A pattern is right when most filters holding it have the q-gram.
        let mut names: Vec<&str> = vec![""; ngrams];
        for (g, &id) in &gram_id {
            names[id as usize] = g;
        }
        let grams: Vec<Option<Vec<String>>> = t
            .iter()
            .map(|t| t.as_ref().map(|t| qgrams(t, p.q, p.padded)))
            .collect();
        patterns_correct = Some(
            known
                .iter()
                .filter(|(g, m)| {
                    let (mut hit, mut all) = (0, 0);
                    for (f, gs) in fs.iter().zip(&grams) {
                        if let Some(gs) = gs
                            && holds(f, m)
                        {
                            all += 1;
                            if gs.iter().any(|x| x == names[*g as usize]) {
                                hit += 1;
                            }
                        }
                    }
                    all > 0 && hit * 2 > all
                })
                .count() as u64,
        );
    }
    PatternResult {
        field: field.to_string(),
        records,
        patterns: known.len() as u64,
        patterns_correct,
        guessed,
        actual_reidentified: correct,
        actual_share: correct.map(share),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Filters where every q-gram sets its own k bits (a plain, unsalted
    /// encoding under some key).
    fn encode(value: &str, salt: u64, k: usize, words: usize) -> Vec<u64> {
        let mut f = vec![0u64; words];
        for g in qgrams(value, 2, true) {
            // Salting hashes every token with the record's salt.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for b in g.bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
            for _ in 0..k {
                h ^= h >> 29;
                h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                h ^= h >> 32;
                let b = (h % (words as u64 * 64)) as usize;
                f[b / 64] |= 1 << (b % 64);
            }
        }
        f
    }

    /// 4,000 people with given names drawn by the bundled UK frequency
    /// list (its 400 commonest names), and that list as the public reference.
    fn population() -> (Vec<String>, Vec<(String, f64)>) {
        let mut reference = crate::report::attack::reference_list("given");
        reference.truncate(400);
        let total: f64 = reference.iter().map(|r| r.1).sum();
        let mut pop = Vec::new();
        for (n, w) in &reference {
            for _ in 0..(w / total * 4000.0).round() as usize {
                pop.push(n.clone());
            }
        }
        (pop, reference)
    }

    #[test]
    fn qgrams_are_padded_and_distinct() {
        assert_eq!(qgrams("anna", 2, true), vec![" a", "a ", "an", "na", "nn"]);
        assert_eq!(qgrams("ab", 2, false), vec!["ab"]);
    }

    /// The attack on the population's names encoded by `salt(i)` for record i.
    fn attack(salt: impl Fn(usize) -> u64) -> PatternResult {
        let (pop, reference) = population();
        let filters: Vec<Vec<u64>> = pop
            .iter()
            .enumerate()
            .map(|(i, v)| encode(v, salt(i), 15, 8))
            .collect();
        let truth = |i: usize| Some(pop[i].clone());
        pattern_attack(
            "given",
            pop.len(),
            8,
            |i| Some(filters[i].as_slice()),
            &reference,
            Some(&truth),
            PatternParams::default(),
        )
    }

    #[test]
    fn plain_filters_are_reidentified_far_above_chance() {
        let r = attack(|_| 0);
        // Far above chance: the commonest name is about 2% of records.
        assert!(r.patterns >= 20, "{r:?}");
        assert!(r.patterns_correct.unwrap() * 2 >= r.patterns, "{r:?}");
        assert!(r.actual_share.unwrap() > 0.05, "{r:?}");
    }

    #[test]
    fn salted_filters_are_not_reidentified() {
        // Salted by a per-record value with 50 levels (like a year of
        // birth): the same name in different salt groups gives unrelated filters.
        let r = attack(|i| 1 + (i * 7919 % 50) as u64);
        assert!(r.actual_share.unwrap() < 0.01, "{r:?}");
    }
}
