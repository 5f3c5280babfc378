//! Candidate pairs emitted from block tiles: every chunk of every pass
//! together holds each candidate pair exactly once (a pair several passes
//! share belongs to the first), with the CLK Dice a direct comparison gives,
//! whatever the chunk size; for key passes, a pass that skipped oversized
//! blocks, LSH bands told apart by their bits, and explicit pairs.

use std::collections::BTreeMap;

use bloomlink::extract::Keys;
use bloomlink::hub::compare::{Kernel, dice32};
use bloomlink::hub::load::Dataset;
use bloomlink::hub::stream::{Owners, Pass, chunks, emit, group_pass};

const WORDS: usize = 16;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// `n` records in three agencies; every fourth record is a near copy of
/// the one before it (a few bits flipped), so LSH bands group them.
fn dataset(n: usize) -> Dataset {
    let mut x = 0x5eed_u64;
    let mut clks: Vec<u64> = Vec::with_capacity(n * WORDS);
    for g in 0..n {
        if g % 4 == 3 {
            let prev: Vec<u64> = clks[(g - 1) * WORDS..g * WORDS].to_vec();
            for (w, v) in prev.into_iter().enumerate() {
                clks.push(if w == g % WORDS {
                    v ^ (1 << (g % 64))
                } else {
                    v
                });
            }
        } else {
            for _ in 0..WORDS {
                clks.push(xorshift(&mut x) & xorshift(&mut x));
            }
        }
    }
    let agency = (0..n).map(|g| (3 * g / n) as u16).collect();
    Dataset::of_clks(WORDS, clks, agency)
}

/// The LSH key of record `g` for a band of bit positions.
fn band_key(ds: &Dataset, g: usize, pos: &[u32], band: u128) -> Option<u128> {
    let w = ds.clk.get(g);
    let mut key = 0u128;
    for &p in pos {
        key = key << 1 | ((w[p as usize / 64] >> (p % 64)) & 1) as u128;
    }
    Some(key | band << 100)
}

/// The passes: two keys (the second with a block cap that skips its large
/// blocks), three LSH bands (the last capped too, so it is told by block
/// index rather than bits), and an explicit pair list; and the bands'
/// positions.
fn passes(ds: &Dataset, dedup: bool) -> (Vec<Pass>, Vec<Vec<u32>>) {
    let n = ds.len();
    let k1: Keys = (0..n)
        .map(|g| (g % 11 != 0).then_some((g % 37) as u128))
        .collect();
    let k2: Keys = (0..n).map(|g| Some((g % 23 + g % 5) as u128)).collect();
    let mut out = vec![
        group_pass(ds, &k1, "k1", "key", dedup, u64::MAX),
        group_pass(ds, &k2, "k2", "key", dedup, 400),
    ];
    assert!(out[1].stats.skipped_blocks > 0, "the cap skips some blocks");
    let mut positions = Vec::new();
    let mut x = 99u64;
    for band in 0..3u32 {
        let pos: Vec<u32> = (0..6).map(|_| (xorshift(&mut x) % 1024) as u32).collect();
        let keys: Keys = (0..n)
            .map(|g| band_key(ds, g, &pos, band as u128))
            .collect();
        let cap = if band == 2 { 300 } else { u64::MAX };
        out.push(group_pass(
            ds,
            &keys,
            &format!("lsh{band}"),
            "lsh",
            dedup,
            cap,
        ));
        positions.push(pos);
    }
    assert!(
        out[4].stats.skipped_blocks > 0,
        "the capped band skips some"
    );
    // Explicit pairs, some also in blocks, sorted and distinct.
    let mut pairs: Vec<u64> = (0..n as u64 - 7)
        .step_by(5)
        .map(|a| a << 32 | (a + 7))
        .filter(|p| dedup || ds.agency_of[(p >> 32) as usize] != ds.agency_of[*p as u32 as usize])
        .collect();
    pairs.sort_unstable();
    out.push(Pass {
        pairs,
        ..Default::default()
    });
    (out, positions)
}

/// Every candidate pair the passes describe, by brute force.
fn expected(ds: &Dataset, passes: &[Pass], dedup: bool) -> Vec<u64> {
    let mut all = Vec::new();
    for p in passes {
        for m in p.blocks() {
            for (i, &a) in m.iter().enumerate() {
                for &b in &m[i + 1..] {
                    if dedup || ds.agency_of[a as usize] != ds.agency_of[b as usize] {
                        all.push((a as u64) << 32 | b as u64);
                    }
                }
            }
        }
        all.extend(&p.pairs);
    }
    all.sort_unstable();
    all.dedup();
    all
}

#[test]
fn chunks_hold_every_candidate_pair_once_with_its_dice() {
    let ds = dataset(1200);
    let kernel = Kernel::detect();
    for dedup in [false, true] {
        let (passes, positions) = passes(&ds, dedup);
        let owners = Owners::new(&passes, &positions, WORDS);
        let want = expected(&ds, &passes, dedup);
        assert!(want.len() > 10_000, "a real test: {} pairs", want.len());
        for target in [1u64, 97, 5_000, u64::MAX] {
            let mut got: BTreeMap<u64, f32> = BTreeMap::new();
            let mut emitted = 0usize;
            let all = chunks(&passes, target);
            for &c in &all {
                let (pairs, dice) = emit(&ds, &passes, &owners, dedup, c).pairs_and_dice();
                assert_eq!(pairs.len(), dice.len());
                emitted += pairs.len();
                for (&p, &d) in pairs.iter().zip(&dice) {
                    assert!(got.insert(p, d).is_none(), "pair {p:x} emitted twice");
                }
            }
            assert_eq!(emitted, want.len(), "dedup {dedup}, chunks of {target}");
            assert!(got.keys().copied().eq(want.iter().copied()));
            for (&p, &d) in &got {
                let (a, b) = ((p >> 32) as usize, p as u32 as usize);
                let direct = dice32(
                    kernel.and_popcount(ds.clk.get(a), ds.clk.get(b)),
                    ds.clk.pop[a],
                    ds.clk.pop[b],
                );
                assert_eq!(d, direct, "Dice of {a}-{b}");
            }
            if target == 1 {
                assert!(all.len() > passes.len(), "small targets split passes");
            }
        }
    }
}

#[test]
fn a_pass_without_blocks_or_pairs_emits_nothing() {
    let ds = dataset(40);
    let none: Keys = (0..ds.len()).map(|_| None).collect();
    let passes = vec![group_pass(&ds, &none, "empty", "key", false, u64::MAX)];
    let owners = Owners::new(&passes, &[], WORDS);
    let all = chunks(&passes, 10);
    assert_eq!(all.len(), 1, "one empty chunk, so a plan has a unit");
    assert!(emit(&ds, &passes, &owners, false, all[0]).is_empty());
}
