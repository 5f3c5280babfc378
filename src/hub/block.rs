//! Candidate pairs: keyed blocking keys, Hamming LSH on CLKs, or all pairs.
//!
//! Each pass groups records by a key and emits the eligible pairs of each
//! group (records of different agencies, or of any agency when
//! deduplicating). A group that would emit more than `max_block_pairs` is
//! skipped and counted, so one common surname cannot blow up memory. All-pairs
//! mode compares everything with the SIMD kernel and keeps each record's
//! nearest CLK neighbours. Pairs are `u64` = `a << 32 | b` with `a < b`,
//! sorted and de-duplicated across passes. Hub side: keys are opaque bytes.

use rand::SeedableRng;
use rand::seq::index::sample;
use std::borrow::Cow;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::compare::Kernel;
use super::config::{Blocking, BlockingMethod};
use super::load::Dataset;
use crate::error::{Error, Result};
use crate::extract::Keys;

/// What one pass did (for the log and the report).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PassStats {
    pub name: String,
    pub kind: String,
    /// Groups with at least one eligible pair.
    pub blocks: u64,
    /// Eligible pairs emitted (before de-duplication across passes).
    pub pairs: u64,
    /// Oversized groups skipped, and the pairs they would have produced.
    pub skipped_blocks: u64,
    pub skipped_pairs: u64,
    /// Pairs in the largest group kept.
    pub largest_block_pairs: u64,
    /// Pairs whose Dice was computed (all-pairs mode).
    pub compared: u64,
}

/// The candidate pairs of a job.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    pub pairs: Vec<u64>,
    pub passes: Vec<PassStats>,
    pub method: String,
    /// CLK bit positions sampled by each LSH band (kept so that a refresh
    /// can band new records exactly as this run banded the old ones).
    pub lsh_positions: Vec<Vec<u32>>,
}

/// Pack a pair.
#[inline]
pub fn pack(a: u32, b: u32) -> u64 {
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    (a as u64) << 32 | b as u64
}

/// Unpack a pair.
#[inline]
pub fn unpack(p: u64) -> (usize, usize) {
    ((p >> 32) as usize, (p & 0xffff_ffff) as usize)
}

/// Whether a full run with this config would compare all pairs.
pub fn uses_all_pairs(ds: &Dataset, cfg: &Blocking, dedup: bool) -> bool {
    match cfg.method {
        BlockingMethod::All => true,
        BlockingMethod::Auto => eligible_pairs(ds, dedup) <= cfg.all_pairs_max,
        _ => false,
    }
}

/// Eligible pairs among all records: cross-agency, plus within-agency when deduplicating.
pub fn eligible_pairs(ds: &Dataset, dedup: bool) -> u64 {
    let sizes: Vec<u64> = ds.agencies.iter().map(|a| a.len as u64).collect();
    let total: u64 = sizes.iter().sum();
    let all = total * total.saturating_sub(1) / 2;
    if dedup {
        all
    } else {
        all - sizes
            .iter()
            .map(|n| n * n.saturating_sub(1) / 2)
            .sum::<u64>()
    }
}

/// The grouped blocking passes of a job, for streamed comparison.
pub struct Grouped {
    pub passes: Vec<super::stream::Pass>,
    pub method: String,
    pub lsh_positions: Vec<Vec<u32>>,
    /// Pairs the passes emit before de-duplication across passes.
    pub raw_pairs: u64,
    /// Which earlier pass holds a pair (for emitting each pair once).
    pub owners: super::stream::Owners,
}

/// Group the passes as configured (see [`candidates`] for the methods);
/// `lsh_positions` reuses a previous run's bands.
pub fn group(
    ds: &Dataset,
    cfg: &Blocking,
    dedup: bool,
    seed: u64,
    lsh_positions: Option<&[Vec<u32>]>,
) -> Result<Grouped> {
    use super::stream::{Pass, group_keyed, keyed_records};
    let kernel = Kernel::detect();
    let keys: Vec<usize> = ds
        .blocks
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| is_key_pass(ds, cfg, n))
        .map(|(i, _)| i)
        .collect();
    let compound = compound_keys(ds, &cfg.passes)?;
    let total = eligible_pairs(ds, dedup);
    let (all, use_keys, lsh) = match cfg.method {
        BlockingMethod::All => (true, false, false),
        BlockingMethod::Keys => (false, true, false),
        BlockingMethod::Lsh => (false, false, true),
        BlockingMethod::KeysAndLsh => (false, true, true),
        BlockingMethod::Auto => {
            if total <= cfg.all_pairs_max {
                (true, !keys.is_empty(), false)
            } else {
                (false, !keys.is_empty(), true)
            }
        }
    };
    let mut method = Vec::new();
    let mut passes: Vec<Pass> = Vec::new();
    let mut positions = Vec::new();
    let check = |passes: &[Pass]| -> Result<()> {
        let raw: u64 = passes.iter().map(|p| p.stats.pairs).sum();
        if raw > cfg.max_candidates {
            let per: Vec<String> = passes
                .iter()
                .map(|p| format!("{} {}", p.stats.name, p.stats.pairs))
                .collect();
            // The job as configured is refused (exit 2): its settings
            // must change, nothing failed.
            return Err(Error::Usage(format!(
                "blocking produced more than {} candidate pairs (passes so far: {}); comparing them would take very long. \
                 Use more selective blocking keys, fewer or longer LSH bands (blocking.lsh_bands / lsh_bits), \
                 a lower blocking.max_block_pairs, or raise blocking.max_candidates",
                cfg.max_candidates,
                per.join(", ")
            )));
        }
        Ok(())
    };
    if all {
        method.push("all pairs (nearest neighbours)");
        let mut pairs = Vec::new();
        let stats = all_pairs(ds, cfg.neighbours, dedup, kernel, &mut pairs);
        pairs.par_sort_unstable();
        pairs.dedup();
        passes.push(Pass {
            stats,
            pairs,
            starts: vec![0],
            ..Default::default()
        });
    }
    // Each pass's (key, record) pairs, one vector for them all in turn
    // (LSH bands of at most 32 bits packed in one word).
    let mut keyed: Vec<(u128, u32)> = Vec::new();
    let mut packed: Vec<u64> = Vec::new();
    if use_keys {
        method.push("blocking keys");
        let named = keys.iter().map(|&i| (&ds.blocks[i].0, &ds.blocks[i].1));
        for (name, k) in named.chain(compound.iter().map(|(n, k)| (n, k))) {
            keyed_records(k, &mut keyed);
            let p = group_keyed(ds, &mut keyed, name, "key", dedup, cfg.max_block_pairs);
            passes.push(p);
            check(&passes)?;
        }
    }
    if lsh {
        method.push("Hamming LSH");
        for (band, pos) in lsh_bands(ds, cfg, seed, lsh_positions)
            .into_iter()
            .enumerate()
        {
            positions.push(pos.iter().map(|&p| p as u32).collect());
            // Every record has the band's key: its bits at `pos` (one
            // band's keys, so the band need not be part of them).
            let key = |g: usize| band_key(ds, &pos, g);
            let (name, max) = (format!("lsh{band}"), cfg.max_block_pairs);
            let p = if pos.len() <= 32 {
                packed.clear();
                let all = (0..ds.len()).into_par_iter();
                packed.par_extend(all.map(|g| (key(g) as u64) << 32 | g as u64));
                group_keyed(ds, &mut packed, &name, "lsh", dedup, max)
            } else {
                keyed.clear();
                let all = (0..ds.len()).into_par_iter();
                keyed.par_extend(all.map(|g| (key(g), g as u32)));
                group_keyed(ds, &mut keyed, &name, "lsh", dedup, max)
            };
            passes.push(p);
            check(&passes)?;
        }
    }
    for p in &passes {
        tracing::info!(
            "blocking pass {} ({}): {} pairs in {} blocks, {} oversized blocks skipped ({} pairs)",
            p.stats.name,
            p.stats.kind,
            p.stats.pairs,
            p.stats.blocks,
            p.stats.skipped_blocks,
            p.stats.skipped_pairs
        );
    }
    Ok(Grouped {
        owners: super::stream::Owners::new(&passes, &positions, ds.clk.words),
        raw_pairs: passes.iter().map(|p| p.stats.pairs).sum(),
        passes,
        method: method.join(" + "),
        lsh_positions: positions,
    })
}

/// The passes named `a+b` in `passes`: records grouped by their keys `a`
/// and `b` together (a record lacking either has no key), so that a key
/// whose common values make oversized blocks (soundex codes of both names)
/// can be narrowed by another (a surname code with the year of birth).
/// Every name in `passes`, plain or in a compound, must be a key of the
/// extracts.
fn compound_keys(ds: &Dataset, passes: &[String]) -> Result<Vec<(String, Keys)>> {
    let find = |n: &str| -> Result<&Keys> {
        ds.blocks
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, k)| k)
            .ok_or_else(|| {
                let known: Vec<&str> = ds.blocks.iter().map(|(n, _)| n.as_str()).collect();
                Error::Usage(format!(
                    "blocking.passes names `{n}`, which is not a blocking key of these extracts (they have: {}); \
                     use one of those, or two joined by `+`",
                    known.join(", ")
                ))
            })
    };
    let mut out = Vec::new();
    for name in passes {
        let parts: Vec<&str> = name.split('+').collect();
        let keys = parts.iter().map(|p| find(p)).collect::<Result<Vec<_>>>()?;
        if parts.len() < 2 {
            continue;
        }
        let joined = (0..ds.len())
            .map(|g| {
                keys.iter().try_fold(0u128, |acc, k| {
                    // Keyed hashes look random: rotate-and-xor keeps the
                    // tuple's order and collides with chance 2^-128.
                    k.get(g).map(|v| acc.rotate_left(17) ^ v)
                })
            })
            .collect();
        out.push((name.clone(), joined));
    }
    Ok(out)
}

/// Whether the extracts' blocking key `name` is a pass of its own: the
/// configured passes, or every key but date variants when none are.
fn is_key_pass(ds: &Dataset, cfg: &Blocking, name: &str) -> bool {
    if cfg.passes.is_empty() {
        !super::load::is_date_variant(&ds.schema_json, name)
    } else {
        cfg.passes.iter().any(|p| p == name)
    }
}

/// A key pass: its name and each record's key.
pub(crate) type KeyPass<'a> = (String, Cow<'a, Keys>);

/// The key passes a job's blocking runs, in order, with each record's key
/// (the `keys` method's passes of [`group`]: [`is_key_pass`] keys, borrowed,
/// then compound keys).
pub(crate) fn key_passes<'a>(ds: &'a Dataset, cfg: &Blocking) -> Result<Vec<KeyPass<'a>>> {
    let mut out: Vec<KeyPass<'a>> = ds
        .blocks
        .iter()
        .filter(|(n, _)| is_key_pass(ds, cfg, n))
        .map(|(n, k)| (n.clone(), Cow::Borrowed(k)))
        .collect();
    out.extend(
        compound_keys(ds, &cfg.passes)?
            .into_iter()
            .map(|(n, k)| (n, Cow::Owned(k))),
    );
    Ok(out)
}

/// The CLK bit positions of each Hamming LSH band: `given` (a previous
/// run's bands) when there are any, else `cfg.lsh_bands` bands of
/// `cfg.lsh_bits` informative bits drawn with `seed` (the same bands for
/// the same records, configuration and seed).
pub fn lsh_bands(
    ds: &Dataset,
    cfg: &Blocking,
    seed: u64,
    given: Option<&[Vec<u32>]>,
) -> Vec<Vec<usize>> {
    if let Some(given) = given {
        let take = given.len().min(cfg.lsh_bands);
        return given[..take]
            .iter()
            .map(|p| p.iter().map(|&x| x as usize).collect())
            .collect();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x4c5348);
    let informative = informative_bits(ds);
    (0..cfg.lsh_bands)
        .map(|_| {
            sample(
                &mut rng,
                informative.len(),
                cfg.lsh_bits.min(informative.len()),
            )
            .into_iter()
            .map(|i| informative[i])
            .collect()
        })
        .collect()
}

/// Record `g`'s key in the LSH band of CLK bit positions `pos`: those
/// bits, first position highest.
#[inline]
pub fn band_key(ds: &Dataset, pos: &[usize], g: usize) -> u128 {
    let w = ds.clk.get(g);
    let mut key = 0u128;
    for &p in pos {
        key = key << 1 | ((w[p / 64] >> (p % 64)) & 1) as u128;
    }
    key
}

/// CLK bit positions set in 25–75% of records (widened to 10–90% if too
/// few): bits that are almost always or almost never set agree between
/// unrelated records too often or too rarely to be useful for LSH.
fn informative_bits(ds: &Dataset) -> Vec<usize> {
    let bits = ds.clk.words * 64;
    let counts: Vec<u64> = ds
        .clk
        .data
        .par_chunks(ds.clk.words * 1024)
        .map(|chunk| {
            let mut c = vec![0u64; bits];
            for f in chunk.chunks_exact(ds.clk.words) {
                for (wi, &w) in f.iter().enumerate() {
                    let mut x = w;
                    while x != 0 {
                        c[wi * 64 + x.trailing_zeros() as usize] += 1;
                        x &= x - 1;
                    }
                }
            }
            c
        })
        .reduce(
            || vec![0u64; bits],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let n = ds.len().max(1) as f64;
    for (lo, hi) in [(0.25, 0.75), (0.1, 0.9), (0.0, 1.0)] {
        let v: Vec<usize> = (0..bits)
            .filter(|&b| (lo..=hi).contains(&(counts[b] as f64 / n)))
            .collect();
        if v.len() >= 64 {
            return v;
        }
    }
    (0..bits).collect()
}

/// Group records by key and emit eligible pairs of each group, stopping
/// after the group that takes `out` to `limit` pairs (training sessions).
#[allow(clippy::too_many_arguments)]
pub fn key_pass(
    ds: &Dataset,
    keys: &Keys,
    name: &str,
    kind: &str,
    dedup: bool,
    max_block_pairs: u64,
    out: &mut Vec<u64>,
    limit: usize,
) -> PassStats {
    let p = super::stream::group_pass(ds, keys, name, kind, dedup, max_block_pairs);
    p.push_pairs(ds, dedup, out, limit);
    p.stats
}

/// Compare all eligible pairs and keep, for every record, its `k` nearest
/// records (by CLK Dice) in each other agency (and its own, when deduplicating).
pub(crate) fn all_pairs(
    ds: &Dataset,
    k: usize,
    dedup: bool,
    kernel: Kernel,
    out: &mut Vec<u64>,
) -> PassStats {
    let mut st = PassStats {
        name: "all".into(),
        kind: "all".into(),
        ..Default::default()
    };
    let na = ds.agencies.len();
    let w = ds.clk.words;
    for i in 0..na {
        for j in 0..na {
            if i == j && !dedup {
                continue;
            }
            let (ra, rb) = (&ds.agencies[i], &ds.agencies[j]);
            let b_arena = &ds.clk.data[rb.start * w..(rb.start + rb.len) * w];
            let b_pop = &ds.clk.pop[rb.start..rb.start + rb.len];
            let rows: Vec<usize> = (ra.start..ra.start + ra.len).collect();
            // A chunks in parallel; inside, B in L2-sized tiles so each tile is
            // reused by every row of the chunk before moving on.
            const TILE: usize = 2048;
            let found: Vec<Vec<u64>> = rows
                .par_chunks(128)
                .map(|chunk| {
                    let mut buf = vec![0f32; TILE];
                    let mut tops: Vec<Vec<(f32, u32)>> =
                        vec![Vec::with_capacity(k + 1); chunk.len()];
                    let mut floors = vec![f32::NEG_INFINITY; chunk.len()];
                    for t0 in (0..rb.len).step_by(TILE) {
                        let t1 = (t0 + TILE).min(rb.len);
                        let tile = &b_arena[t0 * w..t1 * w];
                        let tile_pop = &b_pop[t0..t1];
                        for (ci, &a) in chunk.iter().enumerate() {
                            let out = &mut buf[..t1 - t0];
                            kernel.dice_many(ds.clk.get(a), ds.clk.pop[a], tile, tile_pop, out);
                            let (top, floor) = (&mut tops[ci], &mut floors[ci]);
                            for (bj, &d) in out.iter().enumerate() {
                                if d <= *floor {
                                    continue;
                                }
                                let b = rb.start + t0 + bj;
                                if b == a {
                                    continue;
                                }
                                let pos = top.partition_point(|x| x.0 >= d);
                                top.insert(pos, (d, b as u32));
                                if top.len() > k {
                                    top.pop();
                                }
                                if top.len() == k {
                                    *floor = top[k - 1].0;
                                }
                            }
                        }
                    }
                    chunk
                        .iter()
                        .zip(&tops)
                        .flat_map(|(&a, top)| top.iter().map(move |&(_, b)| pack(a as u32, b)))
                        .collect()
                })
                .collect();
            for f in found {
                st.pairs += f.len() as u64;
                out.extend(f);
            }
            st.compared += (ra.len * rb.len) as u64;
        }
    }
    st.blocks = 1;
    st
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn an_lsh_band_blocks_the_records_that_share_its_bits() {
        // 300 records of two agencies: random CLKs, and each of the second
        // agency's a copy of one of the first's with a few bits flipped, so
        // that some bands agree and others do not.
        let mut next = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15u64);
        let n = 300usize;
        let mut clks: Vec<u64> = (0..16 * 150).map(|_| next()).collect();
        for g in 0..150 {
            let mut c = clks[16 * g..16 * g + 16].to_vec();
            for _ in 0..g % 6 {
                let bit = (next() % 1024) as usize;
                c[bit / 64] ^= 1 << (bit % 64);
            }
            clks.extend(c);
        }
        let agency: Vec<u16> = (0..n).map(|g| (g >= 150) as u16).collect();
        let ds = Dataset::of_clks(16, clks, agency);
        // Bands of 12 bits (keys packed in a word) and of 40 (keys of 128).
        for bits in [12, 40] {
            let cfg = Blocking {
                method: BlockingMethod::Lsh,
                lsh_bands: 6,
                lsh_bits: bits,
                ..Default::default()
            };
            let grouped = group(&ds, &cfg, false, 7, None).expect("grouped");
            assert_eq!(grouped.passes.len(), 6);
            let mut kept = 0;
            for (pass, pos) in grouped.passes.iter().zip(&grouped.lsh_positions) {
                assert_eq!(pos.len(), bits);
                // Records by their bits at the band's positions, in key
                // order; a block needs records of both agencies.
                let mut by_key: BTreeMap<Vec<u64>, Vec<u32>> = BTreeMap::new();
                for g in 0..n {
                    let w = ds.clk.get(g);
                    let key = pos
                        .iter()
                        .map(|&p| w[p as usize / 64] >> (p % 64) & 1)
                        .collect();
                    by_key.entry(key).or_default().push(g as u32);
                }
                let want: Vec<&Vec<u32>> = by_key
                    .values()
                    .filter(|m| m.iter().any(|&g| g < 150) && m.iter().any(|&g| g >= 150))
                    .collect();
                let got: Vec<&[u32]> = pass.blocks().collect();
                assert_eq!(got.len(), want.len(), "{} bits", bits);
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g, &w.as_slice(), "{} bits", bits);
                }
                kept += got.len();
            }
            // The copies make blocks, and not every record is in one.
            assert!(kept >= 6 * 20, "{bits} bits: {kept} blocks");
            assert!(grouped.passes.iter().all(|p| p.members.len() < n));
        }
    }
}
