//! Candidate pairs in bounded memory: blocks are grouped once, then pairs
//! are generated, compared and scored one *chunk* at a time and only the
//! likely ones are kept.
//!
//! A chunk is a range of record indices: it holds every candidate pair
//! whose smaller index falls in the range, from every blocking pass, so
//! duplicates across passes are removed inside the chunk and the chunks
//! together hold each candidate pair exactly once. A chunk keeps the pairs
//! whose match weight (before the prior) could reach the reporting floor,
//! and tallies all of them: level patterns (for the prior, by EM), a fine
//! histogram of weight and Dice of the pairs not kept (for the report).
//! Chunks are also the work units of a scaled-out run (`link --plan`).
//! Hub side: filters only.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::block::{PassStats, pack};
use super::load::Dataset;
use super::score::{Comparisons, compare};

/// One blocking pass, grouped: records of each kept block, sorted by index.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    pub stats: PassStats,
    /// Members of the kept blocks, block after block.
    pub members: Vec<u32>,
    /// Start of each block in `members`, plus the end.
    pub starts: Vec<u32>,
    /// Explicit pairs (all-pairs nearest neighbours), sorted.
    pub pairs: Vec<u64>,
}

impl Pass {
    /// The kept blocks, each its members in index order.
    pub fn blocks(&self) -> impl Iterator<Item = &[u32]> {
        self.starts
            .windows(2)
            .map(|w| &self.members[w[0] as usize..w[1] as usize])
    }
}

/// Group `keys` into blocks, skipping oversized ones (counted in the stats).
pub fn group_pass(
    ds: &Dataset,
    keys: &[Option<u128>],
    name: &str,
    kind: &str,
    dedup: bool,
    max_block_pairs: u64,
) -> Pass {
    let mut v: Vec<(u128, u32)> = keys
        .iter()
        .enumerate()
        .filter_map(|(g, k)| k.map(|k| (k, g as u32)))
        .collect();
    v.par_sort_unstable();
    let mut p = Pass {
        stats: PassStats {
            name: name.to_string(),
            kind: kind.to_string(),
            ..Default::default()
        },
        starts: vec![0],
        ..Default::default()
    };
    let mut per_agency = vec![0u64; ds.agencies.len()];
    for group in v.chunk_by(|x, y| x.0 == y.0) {
        let n = group.len() as u64;
        if n < 2 {
            continue;
        }
        let mut pairs = n * (n - 1) / 2;
        if !dedup {
            per_agency.iter_mut().for_each(|c| *c = 0);
            for &(_, g) in group {
                per_agency[ds.agency_of[g as usize] as usize] += 1;
            }
            pairs -= per_agency
                .iter()
                .map(|c| c * c.saturating_sub(1) / 2)
                .sum::<u64>();
        }
        if pairs == 0 {
            continue;
        }
        if pairs > max_block_pairs {
            p.stats.skipped_blocks += 1;
            p.stats.skipped_pairs += pairs;
            continue;
        }
        p.stats.blocks += 1;
        p.stats.pairs += pairs;
        p.stats.largest_block_pairs = p.stats.largest_block_pairs.max(pairs);
        p.members.extend(group.iter().map(|x| x.1));
        p.starts.push(p.members.len() as u32);
    }
    p
}

/// Push the eligible pairs of one block (`m`, sorted record indices) whose
/// first member is at a position in `from..to` and that `keep` accepts.
#[inline]
pub fn push_block_pairs(
    ds: &Dataset,
    m: &[u32],
    (from, to): (usize, usize),
    dedup: bool,
    keep: impl Fn(u32, u32) -> bool,
    out: &mut Vec<u64>,
) {
    for i in from..to {
        let a = m[i];
        let aa = ds.agency_of[a as usize];
        for &b in &m[i + 1..] {
            if (dedup || ds.agency_of[b as usize] != aa) && keep(a, b) {
                out.push(pack(a, b));
            }
        }
    }
}

/// Upper bound of the pairs each record emits as the smaller index.
pub fn emission_counts(passes: &[Pass], n: usize) -> Vec<u64> {
    let mut c = vec![0u64; n];
    for p in passes {
        for m in p.blocks() {
            for (i, &a) in m.iter().enumerate() {
                c[a as usize] += (m.len() - 1 - i) as u64;
            }
        }
        for &pair in &p.pairs {
            c[(pair >> 32) as usize] += 1;
        }
    }
    c
}

/// Record ranges holding about `target` emitted pairs each (at least one range).
pub fn chunk_ranges(counts: &[u64], target: u64) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let (mut lo, mut acc) = (0usize, 0u64);
    for (g, &c) in counts.iter().enumerate() {
        acc += c;
        if acc >= target.max(1) {
            out.push((lo as u32, g as u32 + 1));
            lo = g + 1;
            acc = 0;
        }
    }
    if lo < counts.len() || out.is_empty() {
        out.push((lo as u32, counts.len() as u32));
    }
    out
}

/// The pairs `each` pushes for every pass (in parallel), sorted, once.
fn collect_pairs(passes: &[Pass], each: impl Fn(&Pass, &mut Vec<u64>) + Sync) -> Vec<u64> {
    let mut out: Vec<u64> = passes
        .par_iter()
        .flat_map_iter(|p| {
            let mut v = Vec::new();
            each(p, &mut v);
            v.into_iter()
        })
        .collect();
    out.par_sort_unstable();
    out.dedup();
    out
}

/// Every candidate pair whose smaller index is in `lo..hi`, once, sorted.
pub fn emit(ds: &Dataset, passes: &[Pass], dedup: bool, lo: u32, hi: u32) -> Vec<u64> {
    collect_pairs(passes, |p, v| {
        for m in p.blocks() {
            // Most blocks lie wholly outside the chunk.
            if m[0] >= hi || m[m.len() - 1] < lo {
                continue;
            }
            let first = m.partition_point(|&g| g < lo);
            let last = m.partition_point(|&g| g < hi);
            push_block_pairs(ds, m, (first, last), dedup, |_, _| true, v);
        }
        let from = p.pairs.partition_point(|&x| (x >> 32) < lo as u64);
        let to = p.pairs.partition_point(|&x| (x >> 32) < hi as u64);
        v.extend_from_slice(&p.pairs[from..to]);
    })
}

/// Every candidate pair holding a changed record, once, sorted (an
/// incremental refresh: work grows with the changed records, not the job).
pub fn emit_changed(ds: &Dataset, passes: &[Pass], dedup: bool, changed: &[bool]) -> Vec<u64> {
    let keep = |a: u32, b: u32| changed[a as usize] || changed[b as usize];
    collect_pairs(passes, |p, v| {
        for m in p.blocks() {
            if m.iter().any(|&g| changed[g as usize]) {
                push_block_pairs(ds, m, (0, m.len()), dedup, keep, v);
            }
        }
        v.extend(
            p.pairs
                .iter()
                .filter(|&&x| keep((x >> 32) as u32, x as u32)),
        );
    })
}

/// Fine histogram bins of match weight (bits, before the prior) and Dice.
pub const W_LO: f64 = -100.0;
pub const W_HI: f64 = 150.0;
pub const W_BIN: f64 = 0.05;
pub const D_BIN: f64 = 0.001;

/// What a chunk (or a run) saw of all its candidate pairs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Tally {
    /// Candidate pairs compared.
    pub candidates: u64,
    /// Level patterns (4 bits per field) and their counts.
    pub patterns: Vec<(u128, u64)>,
    /// Pairs not kept, by weight before the prior (`W_LO..W_HI`, `W_BIN` wide).
    pub weight_hist: Vec<u64>,
    /// Pairs not kept, by CLK Dice (`D_BIN` wide).
    pub dice_hist: Vec<u64>,
    /// Pairs not kept: sum of 2^weight (odds before the prior) per Dice bin.
    pub dice_odds: Vec<f64>,
}

impl Tally {
    pub fn empty() -> Tally {
        Tally {
            weight_hist: vec![0; ((W_HI - W_LO) / W_BIN) as usize],
            dice_hist: vec![0; (1.0 / D_BIN) as usize + 1],
            dice_odds: vec![0.0; (1.0 / D_BIN) as usize + 1],
            ..Default::default()
        }
    }

    /// Add another tally (patterns kept sorted).
    pub fn add(&mut self, o: &Tally) {
        self.candidates += o.candidates;
        let mut m: FxHashMap<u128, u64> = self.patterns.iter().copied().collect();
        for &(p, c) in &o.patterns {
            *m.entry(p).or_default() += c;
        }
        self.patterns = m.into_iter().collect();
        self.patterns.sort_unstable();
        for (a, b) in self.weight_hist.iter_mut().zip(&o.weight_hist) {
            *a += b;
        }
        for (a, b) in self.dice_hist.iter_mut().zip(&o.dice_hist) {
            *a += b;
        }
        for (a, b) in self.dice_odds.iter_mut().zip(&o.dice_odds) {
            *a += b;
        }
    }

    /// Patterns as the EM wants them.
    pub fn em_patterns(&self, nf: usize) -> Vec<(Vec<u8>, f64)> {
        self.patterns
            .iter()
            .map(|&(p, c)| (unpack_levels(p, nf), c as f64))
            .collect()
    }
}

/// Pack a level pattern (levels below 16, at most 32 fields).
#[inline]
pub fn pack_levels(l: &[u8]) -> u128 {
    l.iter()
        .enumerate()
        .fold(0u128, |acc, (i, &x)| acc | (x as u128 & 15) << (4 * i))
}

pub fn unpack_levels(p: u128, nf: usize) -> Vec<u8> {
    (0..nf).map(|i| (p >> (4 * i)) as u8 & 15).collect()
}

#[inline]
pub fn weight_bin(w: f64) -> usize {
    (((w - W_LO) / W_BIN).floor().max(0.0) as usize).min(((W_HI - W_LO) / W_BIN) as usize - 1)
}

#[inline]
pub fn dice_bin(d: f32) -> usize {
    ((d as f64 / D_BIN).floor().max(0.0) as usize).min((1.0 / D_BIN) as usize)
}

/// The pairs a chunk keeps, with their scores before the prior.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kept {
    pub pairs: Vec<u64>,
    pub dice: Vec<f32>,
    pub raw_weight: Vec<f32>,
}

impl Kept {
    /// Append a later chunk's pairs (chunks come in record order, so the
    /// pairs stay sorted).
    pub fn append(&mut self, o: Kept) {
        self.pairs.extend(o.pairs);
        self.dice.extend(o.dice);
        self.raw_weight.extend(o.raw_weight);
    }
}

/// Tally level patterns only (a first pass, when some field's m must come
/// from the candidates themselves).
pub fn tally_patterns(comps: &Comparisons) -> FxHashMap<u128, u64> {
    let nf = comps.fields;
    if nf == 0 {
        return FxHashMap::default();
    }
    comps
        .levels
        .par_chunks(nf * 4096)
        .fold(FxHashMap::default, |mut m: FxHashMap<u128, u64>, ch| {
            for l in ch.chunks_exact(nf) {
                *m.entry(pack_levels(l)).or_default() += 1;
            }
            m
        })
        .reduce(FxHashMap::default, |mut a, b| {
            for (k, v) in b {
                *a.entry(k).or_default() += v;
            }
            a
        })
}

/// Compare a chunk's pairs, keep those with raw weight ≥ `floor` or Dice ≥
/// `dice_keep`, tally the rest. `raw` scores pairs (weight before the prior).
pub fn process(
    ds: &Dataset,
    pairs: Vec<u64>,
    cuts: &[f32],
    raw: &dyn Fn(&Comparisons, &[u64]) -> Vec<f32>,
    floor: f32,
    dice_keep: f32,
) -> (Kept, Tally) {
    let comps = compare(ds, &pairs, cuts);
    let w = raw(&comps, &pairs);
    let mut t = Tally::empty();
    t.candidates = pairs.len() as u64;
    let mut pm: Vec<(u128, u64)> = tally_patterns(&comps).into_iter().collect();
    pm.sort_unstable();
    t.patterns = pm;
    let mut k = Kept::default();
    for i in 0..pairs.len() {
        let (d, x) = (comps.dice[i], w[i]);
        if x >= floor || d >= dice_keep {
            k.pairs.push(pairs[i]);
            k.dice.push(d);
            k.raw_weight.push(x);
        } else {
            t.weight_hist[weight_bin(x as f64)] += 1;
            let b = dice_bin(d);
            t.dice_hist[b] += 1;
            t.dice_odds[b] += (x as f64).exp2();
        }
    }
    (k, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_cover_all_records_once() {
        let c = vec![5, 0, 7, 1, 1, 9, 0, 0];
        let r = chunk_ranges(&c, 6);
        assert_eq!(r.first().unwrap().0, 0);
        assert_eq!(r.last().unwrap().1, c.len() as u32);
        for w in r.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
        assert_eq!(chunk_ranges(&[], 6), vec![(0, 0)]);
    }

    #[test]
    fn level_patterns_round_trip() {
        let l = [0u8, 1, 6, 3, 2, 0, 7];
        assert_eq!(unpack_levels(pack_levels(&l), l.len()), l);
    }

    #[test]
    fn tallies_add_up() {
        let mut a = Tally::empty();
        a.candidates = 3;
        a.patterns = vec![(1, 2), (5, 1)];
        a.weight_hist[10] = 3;
        let mut b = Tally::empty();
        b.candidates = 2;
        b.patterns = vec![(5, 4)];
        b.weight_hist[10] = 1;
        a.add(&b);
        assert_eq!(a.candidates, 5);
        assert_eq!(a.patterns, vec![(1, 2), (5, 5)]);
        assert_eq!(a.weight_hist[10], 4);
    }
}
