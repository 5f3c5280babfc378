//! Candidate pairs in bounded memory: blocks are grouped once, then pairs
//! are generated, compared and scored one *chunk* at a time and only the
//! likely ones are kept.
//!
//! A chunk is a run of whole blocks of one pass (or a run of an explicit
//! pair list). Each pair belongs to the first pass that holds it: a later
//! pass skips a pair whose records share a kept block of an earlier one
//! (their block index, or for an LSH band that skipped nothing, their
//! CLK's bits at the band's positions), and explicit pairs come after every
//! block pass. So the chunks together hold each candidate pair exactly
//! once without ever meeting. Inside a chunk each block is a *tile*: its
//! members' CLKs are copied side by side and each two rows of the block
//! are one call of a register-tiled Dice kernel, which writes the pairs
//! (those no earlier pass holds) beside their Dice; in a linkage block each
//! agency's run of rows is one call, and when earlier passes are told by
//! block, which of a run's pairs they hold is worked out for the whole run
//! first (one bit per pair up to 64 columns) from the members' earlier
//! blocks, gathered with their CLKs. Each
//! work item's pairs (a run of blocks, about 16k pairs) are then compared
//! while they and the blocks' records are in cache, never all held
//! (docs/decisions.md §25, §26, §28, §33). A chunk keeps the pairs whose match weight (before the prior)
//! could reach the reporting floor, and tallies all of them: level
//! patterns (for the prior, by EM), a fine histogram of weight and Dice of
//! the pairs not kept (for the report). Chunks are also the work units of
//! a scaled-out run (`link --plan`). Hub side: filters only.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::block::{PassStats, pack};
use super::compare::{Columns, HELD_MAX, Kernel, RowPair, dice32};
use super::load::Dataset;
use super::score::{Comparisons, clk_dice, compare_scored};
use crate::extract::Keys;

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

/// How a pass tells that an earlier one already holds a pair.
///
/// An LSH band that skipped no block holds a pair exactly when the two
/// CLKs agree at the band's bits; any other block pass, when the two
/// records are in one of its kept blocks, told by a block index per record.
/// The indices are stored record-major (one row of `columns` entries per
/// record, passes in order), so that a record's rows for all earlier passes
/// are one read. Explicit pairs (all-pairs nearest neighbours) come after
/// every block pass and are never consulted. As they are tested against
/// every block pass (though listed first), the last block pass's indices
/// are kept too when there are explicit pairs, but apart (`last`): no
/// block pass reads them, and leaving them out of the rows keeps the rows
/// the block passes gather as small as they can be.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// Per pass: its column in `ids`, when told by block index.
    column: Vec<Option<usize>>,
    /// The last block pass's block index per record, when it is told by
    /// index and there are explicit pairs to test against it.
    last: Vec<u32>,
    /// Per pass: how many passes before it are told by bits.
    bands_before: Vec<usize>,
    /// Masks over the CLK's words of the passes told by bits, in order.
    masks: Vec<u64>,
    words: usize,
    columns: usize,
    /// Block index per record per column ([`NO_BLOCK`]: in none).
    ids: Vec<u32>,
}

/// A record in no kept block of a pass.
pub const NO_BLOCK: u32 = u32::MAX;

/// Whether the pass lists explicit pairs rather than blocks.
fn explicit(p: &Pass) -> bool {
    p.starts.len() < 2 && !p.pairs.is_empty()
}

impl Owners {
    /// The owners of `passes`: LSH passes (`kind` "lsh", in band order of
    /// `lsh_positions`, filters of `words` words) that skipped no block by
    /// their bits, other block passes by index.
    pub fn new(passes: &[Pass], lsh_positions: &[Vec<u32>], words: usize) -> Owners {
        let mut o = Owners {
            words,
            ..Default::default()
        };
        let mut band = 0;
        // The last block pass: only explicit pairs are tested against it.
        let last_block = passes.iter().rposition(|p| p.starts.len() >= 2);
        let any_explicit = passes.iter().any(explicit);
        let mut last = None;
        for (at, p) in passes.iter().enumerate() {
            o.bands_before.push(o.masks.len() / words.max(1));
            let lsh = p.stats.kind == "lsh";
            let positions = if lsh { lsh_positions.get(band) } else { None };
            band += lsh as usize;
            let mut column = None;
            if p.starts.len() >= 2 {
                match positions.filter(|_| p.stats.skipped_blocks == 0) {
                    Some(pos) => {
                        let mut mask = vec![0u64; words];
                        for &q in pos {
                            mask[q as usize / 64] |= 1 << (q % 64);
                        }
                        o.masks.extend(mask);
                    }
                    None if Some(at) == last_block => last = any_explicit.then_some(p),
                    None => {
                        column = Some(o.columns);
                        o.columns += 1;
                    }
                }
            }
            o.column.push(column);
        }
        o.bands_before.push(o.masks.len() / words.max(1));
        let n = passes
            .iter()
            .filter_map(|p| p.members.iter().max())
            .max()
            .map_or(0, |&g| g as usize + 1);
        o.ids = vec![NO_BLOCK; n * o.columns];
        for (p, col) in passes.iter().zip(&o.column) {
            if let Some(col) = col {
                for (g, b) in p.block_of() {
                    o.ids[g * o.columns + col] = b;
                }
            }
        }
        if let Some(p) = last {
            o.last = vec![NO_BLOCK; n];
            for (g, b) in p.block_of() {
                o.last[g] = b;
            }
        }
        o
    }

    /// The tests of the passes before `pass` (all block passes for
    /// `passes.len()`).
    fn before(&self, pass: usize) -> Earlier<'_> {
        Earlier {
            columns: self.column[..pass].iter().flatten().count(),
            stride: self.columns,
            ids: &self.ids,
            last: if pass >= self.column.len() {
                &self.last
            } else {
                &[]
            },
            masks: &self.masks[..self.bands_before[pass] * self.words],
        }
    }
}

impl Pass {
    /// The kept blocks, each its members in index order.
    pub fn blocks(&self) -> impl Iterator<Item = &[u32]> {
        self.starts
            .windows(2)
            .map(|w| &self.members[w[0] as usize..w[1] as usize])
    }

    /// Append the eligible pairs of every kept block to `out`, stopping
    /// after the block that takes it to `limit` pairs.
    pub fn push_pairs(&self, ds: &Dataset, dedup: bool, out: &mut Vec<u64>, limit: usize) {
        for m in self.blocks() {
            push_block_pairs(ds, m, (0, m.len()), dedup, |_, _| true, out);
            if out.len() >= limit {
                break;
            }
        }
    }

    /// Each member of a kept block with its block's index: (record, block).
    fn block_of(&self) -> impl Iterator<Item = (usize, u32)> {
        self.blocks()
            .enumerate()
            .flat_map(|(b, m)| m.iter().map(move |&g| (g as usize, b as u32)))
    }
}

/// Group `keys` into blocks, skipping oversized ones (counted in the stats).
pub fn group_pass(
    ds: &Dataset,
    keys: &Keys,
    name: &str,
    kind: &str,
    dedup: bool,
    max_block_pairs: u64,
) -> Pass {
    let mut v = Vec::new();
    keyed_records(keys, &mut v);
    group_keyed(ds, &mut v, name, kind, dedup, max_block_pairs)
}

/// The records that have a key, as `(key, record)`, in place of what `v`
/// held (its room kept for the next pass).
pub fn keyed_records(keys: &Keys, v: &mut Vec<(u128, u32)>) {
    v.clear();
    v.extend(
        keys.iter()
            .enumerate()
            .filter_map(|(g, k)| k.map(|k| (k, g as u32))),
    );
}

/// A record with its key, as a pass sorts them: by key, then record.
pub trait Keyed: Ord + Send + Copy {
    /// The record.
    fn record(&self) -> u32;
    /// Whether `other` has the same key.
    fn same_key(&self, other: &Self) -> bool;
}

/// A key of up to 128 bits and its record.
impl Keyed for (u128, u32) {
    #[inline]
    fn record(&self) -> u32 {
        self.1
    }
    #[inline]
    fn same_key(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// A key of up to 32 bits in the upper half, its record in the lower: an
/// LSH band's bits sort as 8 bytes a record instead of 32, in the same
/// order.
impl Keyed for u64 {
    #[inline]
    fn record(&self) -> u32 {
        *self as u32
    }
    #[inline]
    fn same_key(&self, other: &Self) -> bool {
        self >> 32 == other >> 32
    }
}

/// [`group_pass`] of the keyed records in `v`, which it sorts: the block
/// stage fills one vector for every pass in turn, rather than allocating
/// (and the kernel zeroing) one of 32 bytes a record per pass, and an LSH
/// band's keys besides (decisions §61).
pub fn group_keyed<T: Keyed>(
    ds: &Dataset,
    v: &mut [T],
    name: &str,
    kind: &str,
    dedup: bool,
    max_block_pairs: u64,
) -> Pass {
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
    // Agencies come in order, so the last record's is the largest.
    let mut per_agency = vec![0u64; ds.agency_of.last().map_or(0, |&a| a as usize + 1)];
    for group in v.chunk_by(|x, y| x.same_key(y)) {
        let n = group.len() as u64;
        if n < 2 {
            continue;
        }
        let mut pairs = n * (n - 1) / 2;
        if !dedup {
            per_agency.iter_mut().for_each(|c| *c = 0);
            for x in group.iter() {
                per_agency[ds.agency_of[x.record() as usize] as usize] += 1;
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
        p.members.extend(group.iter().map(|x| x.record()));
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

/// A chunk: blocks `from..to` of pass `pass`, or its explicit pairs
/// `from..to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub pass: u32,
    pub from: u32,
    pub to: u32,
}

/// Chunks of about `target` pairs each (a block is never split; at least
/// one chunk).
pub fn chunks(passes: &[Pass], target: u64) -> Vec<Chunk> {
    let target = target.max(1);
    let mut out = Vec::new();
    for (pi, p) in passes.iter().enumerate() {
        let pass = pi as u32;
        if explicit(p) {
            for from in (0..p.pairs.len()).step_by(target as usize) {
                let to = (from + target as usize).min(p.pairs.len());
                out.push(Chunk {
                    pass,
                    from: from as u32,
                    to: to as u32,
                });
            }
            continue;
        }
        let (mut from, mut acc) = (0usize, 0u64);
        for (b, m) in p.blocks().enumerate() {
            acc += (m.len() * (m.len() - 1) / 2) as u64;
            if acc >= target {
                out.push(Chunk {
                    pass,
                    from: from as u32,
                    to: b as u32 + 1,
                });
                (from, acc) = (b + 1, 0);
            }
        }
        if from + 1 < p.starts.len() {
            out.push(Chunk {
                pass,
                from: from as u32,
                to: p.starts.len() as u32 - 1,
            });
        }
    }
    if out.is_empty() {
        out.push(Chunk {
            pass: 0,
            from: 0,
            to: 0,
        });
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

/// A run of candidate pairs with their CLK Dice (one work item's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Part {
    pub pairs: Vec<u64>,
    pub dice: Vec<f32>,
}

/// What emitting a chunk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitCounts {
    /// Pairs of the chunk's blocks, before those of earlier passes were
    /// dropped (each had its Dice computed).
    pub block_pairs: u64,
    /// Pairs emitted (those no earlier pass holds).
    pub pairs: u64,
    /// Thread time spent emitting (gathering tiles, the Dice kernel,
    /// ownership checks, writing pairs), in nanoseconds; not the time of
    /// what consumed the pairs.
    pub nanos: u64,
}

impl std::ops::Add for EmitCounts {
    type Output = EmitCounts;

    fn add(self, o: EmitCounts) -> EmitCounts {
        EmitCounts {
            block_pairs: self.block_pairs + o.block_pairs,
            pairs: self.pairs + o.pairs,
            nanos: self.nanos + o.nanos,
        }
    }
}

/// A chunk's candidate pairs with their CLK Dice, in block order, as its
/// work items' parts (a copy: for tests and tools; a job consumes each
/// part while it is in cache, [`emit_with`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Emitted {
    pub parts: Vec<Part>,
    pub counts: EmitCounts,
}

impl Emitted {
    /// How many pairs the chunk emitted.
    pub fn len(&self) -> usize {
        self.counts.pairs as usize
    }

    /// Whether the chunk emitted no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every pair and its Dice, in order.
    pub fn pairs_and_dice(&self) -> (Vec<u64>, Vec<f32>) {
        let pairs = self.parts.iter().flat_map(|p| p.pairs.iter().copied());
        let dice = self.parts.iter().flat_map(|p| p.dice.iter().copied());
        (pairs.collect(), dice.collect())
    }
}

/// A block's members gathered side by side (one per thread, reused).
#[derive(Default)]
struct Tile {
    words: Vec<u64>,
    pop: Vec<u32>,
    /// Each member's block indices in the earlier passes told by index.
    ids: Vec<u32>,
    /// A run's rows' held columns, one bit each (tiles of at most 64
    /// columns).
    held: Vec<u64>,
    /// Positions where the block's agency runs start, and its length.
    runs: Vec<usize>,
    row: Vec<f32>,
    /// The earlier passes holding the row's record: (column, block).
    own: Vec<(usize, u32)>,
}

/// The earlier passes of a chunk's pass, as ownership tests: the first
/// `columns` block indices of each record's row, and band masks.
struct Earlier<'a> {
    columns: usize,
    stride: usize,
    ids: &'a [u32],
    /// The last block pass's indices, for explicit pairs (else empty).
    last: &'a [u32],
    /// Band masks, side by side.
    masks: &'a [u64],
}

impl Earlier<'_> {
    /// Record `g`'s block indices in the earlier passes.
    #[inline]
    fn row(&self, g: usize) -> &[u32] {
        let s = g * self.stride;
        self.ids.get(s..s + self.columns).unwrap_or(&[])
    }

    /// Whether an earlier pass holds records `a` and `b`.
    fn holds_records(&self, kernel: Kernel, ds: &Dataset, a: usize, b: usize) -> bool {
        let (x, y) = (self.row(a), self.row(b));
        if x.len() == self.columns
            && y.len() == self.columns
            && x.iter().zip(y).any(|(&p, &q)| p != NO_BLOCK && p == q)
        {
            return true;
        }
        if let (Some(&p), Some(&q)) = (self.last.get(a), self.last.get(b))
            && p != NO_BLOCK
            && p == q
        {
            return true;
        }
        !self.masks.is_empty() && kernel.agree_in_any(ds.clk.get(a), ds.clk.get(b), self.masks)
    }
}

/// Every candidate pair of chunk `c` that no earlier pass holds, once,
/// with its CLK Dice, in block order (block after block, row after row).
///
/// Each block is a tile: its members' CLKs are copied side by side, and
/// each two rows (a member against the later members of other agencies, a
/// contiguous run since records are ordered by agency, and the next member
/// when it has the same run) are one call of the register-tiled Dice
/// kernel on cache-resident words, while the next members' loads are asked
/// for. The pairs are left in the work items' parts, in order. The order
/// depends only on the passes and the chunk, never on the number of
/// threads.
pub fn emit(ds: &Dataset, passes: &[Pass], owners: &Owners, dedup: bool, c: Chunk) -> Emitted {
    let (parts, counts) = emit_with(ds, passes, owners, dedup, c, |p| p.clone());
    Emitted { parts, counts }
}

/// [`emit`], handing each work item's part to `consume` as soon as it is
/// written (while it is in cache) rather than keeping it: `consume`'s
/// results, in the parts' order.
pub fn emit_with<R: Send>(
    ds: &Dataset,
    passes: &[Pass],
    owners: &Owners,
    dedup: bool,
    c: Chunk,
    consume: impl Fn(&Part) -> R + Sync,
) -> (Vec<R>, EmitCounts) {
    let kernel = Kernel::detect();
    let Some(p) = passes.get(c.pass as usize) else {
        return (Vec::new(), EmitCounts::default());
    };
    let (from, to) = (c.from as usize, c.to as usize);
    if explicit(p) {
        // Explicit pairs come after every block pass.
        let blocks = owners.before(passes.len());
        let t = std::time::Instant::now();
        let mut part = Part::default();
        for &pair in &p.pairs[from..to] {
            let (a, b) = super::block::unpack(pair);
            if blocks.holds_records(kernel, ds, a, b) {
                continue;
            }
            part.pairs.push(pair);
            part.dice.push(clk_dice(ds, kernel, a, b));
        }
        let counts = EmitCounts {
            block_pairs: (to - from) as u64,
            pairs: part.pairs.len() as u64,
            nanos: t.elapsed().as_nanos() as u64,
        };
        return (vec![consume(&part)], counts);
    }
    // The first record of each agency but the first.
    let last = ds.agency_of.last().map_or(0, |&a| a);
    let cx = Context {
        ds,
        kernel,
        dedup,
        earlier: owners.before(c.pass as usize),
        bounds: (1..=last)
            .map(|k| ds.agency_of.partition_point(|&a| a < k) as u32)
            .collect(),
    };
    // Work items: runs of about `PIECE` pairs, so that threads share a
    // chunk and a part (12 bytes a pair) stays in cache until consumed.
    const PIECE: usize = 1 << 14;
    let mut items = Vec::new();
    let (mut start, mut acc) = (from, 0usize);
    for b in from..to {
        let n = (p.starts[b + 1] - p.starts[b]) as usize;
        acc += n * (n - 1) / 2;
        if acc >= PIECE {
            items.push((start, b + 1));
            (start, acc) = (b + 1, 0);
        }
    }
    if start < to {
        items.push((start, to));
    }
    let done: Vec<(R, EmitCounts)> = items
        .par_iter()
        .map_init(
            || (Tile::default(), Part::default(), 0usize),
            |(tile, part, asked), &(f, t)| {
                let clock = std::time::Instant::now();
                part.pairs.clear();
                part.dice.clear();
                let mut block_pairs = 0;
                let block = |b: usize| &p.members[p.starts[b] as usize..p.starts[b + 1] as usize];
                // Loads are asked for past the item's end, into the next
                // item's members: a thread takes items in order, so the
                // next item's first blocks are on their way (`asked`).
                let first = p.starts[f] as usize;
                let mut ahead = Ahead::new(
                    &cx,
                    &p.members[..p.starts[to] as usize],
                    if (first..first + AHEAD).contains(asked) {
                        *asked
                    } else {
                        first
                    },
                );
                for b in f..t {
                    // The block's own members first (if not yet asked
                    // for), then up to `AHEAD` beyond it while its rows
                    // are compared.
                    let stop = p.starts[b + 1] as usize;
                    ahead.to(stop);
                    ahead.aim(stop + AHEAD);
                    block_pairs += tile_pairs(&cx, block(b), &mut ahead, tile, part);
                }
                *asked = ahead.at;
                let counts = EmitCounts {
                    block_pairs,
                    pairs: part.pairs.len() as u64,
                    nanos: clock.elapsed().as_nanos() as u64,
                };
                (consume(part), counts)
            },
        )
        .collect();
    let counts = done.iter().fold(EmitCounts::default(), |a, d| a + d.1);
    (done.into_iter().map(|d| d.0).collect(), counts)
}

/// What every tile of a chunk shares.
struct Context<'a> {
    ds: &'a Dataset,
    kernel: Kernel,
    dedup: bool,
    earlier: Earlier<'a>,
    /// The first record of each agency but the first.
    bounds: Vec<u32>,
}

/// Members up to this many past the block compared are asked for while
/// its rows are compared (more only crowds the CPU's miss buffers).
const AHEAD: usize = 64;

/// Loads asked for ahead of the tiles: `members[..at]` are asked for,
/// `goal` is where to be by the end of the current block, `per_step` how
/// many to ask for at each of its row pairs. What a member's gather reads
/// (its CLK's lines and its row of earlier blocks) is addressed from
/// fields copied here, so asking costs a few instructions.
struct Ahead<'a> {
    members: &'a [u32],
    at: usize,
    goal: usize,
    per_step: usize,
    clk: &'a [u64],
    /// Filter `g`'s words start at `g * stride + offset`; `words` long.
    place: (usize, usize, usize),
    earlier: &'a Earlier<'a>,
}

impl<'a> Ahead<'a> {
    fn new(cx: &'a Context, members: &'a [u32], at: usize) -> Ahead<'a> {
        let f = &cx.ds.clk;
        Ahead {
            members,
            at,
            goal: at,
            per_step: 0,
            clk: &f.data,
            place: (f.stride, f.offset, f.words),
            earlier: &cx.earlier,
        }
    }

    /// Hint the CPU to load what gathering record `g` into a tile reads.
    #[inline(always)]
    fn ask(&self, g: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let one = |p: *const u64| {
                // SAFETY: a prefetch is only a hint; it never faults.
                unsafe { _mm_prefetch(p as *const i8, _MM_HINT_T0) };
            };
            let (stride, offset, words) = self.place;
            if let Some(f) = self
                .clk
                .get(g * stride + offset..g * stride + offset + words)
            {
                // Every line of the filter (two for a 1024-bit filter on
                // a cache line, as the binary's allocator places them).
                let (p, end) = (f.as_ptr() as usize, f.as_ptr_range().end as usize);
                let mut line = p & !63;
                while line < end {
                    one(line as *const u64);
                    line += 64;
                }
            }
            let row = self.earlier.row(g);
            if !row.is_empty() {
                one(row.as_ptr() as *const u64);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = g;
    }

    /// Ask for the members up to `stop`.
    #[inline]
    fn to(&mut self, stop: usize) {
        let stop = stop.min(self.members.len());
        while self.at < stop {
            self.ask(self.members[self.at] as usize);
            self.at += 1;
        }
    }

    /// Aim for `goal` by the end of the next block.
    #[inline]
    fn aim(&mut self, goal: usize) {
        self.goal = goal.min(self.members.len());
    }

    /// Spread the loads still to ask for over the block's `steps` calls of
    /// the kernel (rows without columns take no step: asking for their
    /// share at once, just before the next gather, would leave it no time
    /// to arrive).
    #[inline]
    fn plan(&mut self, steps: usize) {
        self.per_step = self.goal.saturating_sub(self.at).div_ceil(steps.max(1));
    }

    /// One of the block's steps towards the goal.
    #[inline]
    fn step(&mut self) {
        self.to((self.at + self.per_step).min(self.goal));
    }
}

/// The pairs of one block (`m`, sorted record indices) that no earlier
/// pass holds, with their CLK Dice, appended to `out`; returns how many
/// pairs the block has (before dropping those of earlier passes).
#[inline]
fn tile_pairs(cx: &Context, m: &[u32], ahead: &mut Ahead, tile: &mut Tile, out: &mut Part) -> u64 {
    let Context {
        ds,
        kernel,
        dedup,
        ref earlier,
        ref bounds,
    } = *cx;
    let words = ds.clk.words;
    let (n, nb) = (m.len(), earlier.columns);
    tile.words.clear();
    tile.pop.clear();
    // Block indices column-major (one run of `n` per earlier pass), so a
    // row's test reads each pass's column as one vector.
    tile.ids.clear();
    // The CLKs' popcounts come from the words just read rather than one
    // more line to fetch.
    let f = &ds.clk;
    kernel.gather(
        &f.data,
        (f.stride, f.offset, words),
        m,
        &mut tile.words,
        &mut tile.pop,
    );
    // Each earlier pass's run of the block's members (their rows were
    // asked for with their CLKs). Every pass's member has a row (`Owners`
    // sizes them so): an index past them is a bug, and panics.
    let (rows, stride) = (earlier.ids, earlier.stride);
    for k in 0..nb {
        tile.ids
            .extend(m.iter().map(|&g| rows[g as usize * stride + k]));
    }
    // Where the block's agency runs start (members and agencies are both
    // ordered by record index).
    tile.runs.clear();
    for &b in bounds {
        let at = m.partition_point(|&g| g < b);
        if at > 0 && at < n && tile.runs.last() != Some(&at) {
            tile.runs.push(at);
        }
    }
    tile.runs.push(n);
    // Rows with columns: all but the last when de-duplicating, else those
    // before the last agency's run; they are taken about two at a time.
    let working = match (dedup, tile.runs.len()) {
        (true, _) => n.saturating_sub(1),
        (false, r) if r >= 2 => tile.runs[r - 2],
        _ => 0,
    };
    ahead.plan(working.div_ceil(2));
    if !dedup && earlier.masks.is_empty() && nb <= HELD_MAX {
        return linked_tile(cx, m, ahead, tile, out);
    }
    let Tile {
        words: tw,
        pop,
        ids,
        runs,
        row: dst,
        own,
        ..
    } = tile;
    // Row `i`'s columns: the later members of other agencies (a run, as
    // agencies are ordered), or all later members when de-duplicating.
    let mut run = 0;
    let mut first_column = |i: usize| {
        if dedup {
            return i + 1;
        }
        while runs[run] <= i {
            run += 1;
        }
        runs[run]
    };
    // Whether nothing earlier can hold any pair of row `i`.
    let alone = |i: usize| earlier.masks.is_empty() && (0..nb).all(|k| ids[k * n + i] == NO_BLOCK);
    let clk = |i: usize| &tw[i * words..(i + 1) * words];
    let mut block_pairs = 0;
    let mut i = 0;
    while i < n {
        let c = first_column(i);
        if c >= n {
            // Later rows have no columns either.
            break;
        }
        // Spread the loads of the members ahead over the block's row pairs.
        ahead.step();
        // Two rows share one pass of the kernel when the next row's
        // columns are this row's (linkage: same agency) or all but the
        // first (de-duplication).
        let two = i + 1 < n && if dedup { c + 1 < n } else { i + 1 < c };
        let rows = 1 + two as usize;
        let c1 = if dedup { c + 1 } else { c };
        let lens = [n - c, if two { n - c1 } else { 0 }];
        let total = lens[0] + lens[1];
        block_pairs += total as u64;
        let direct = alone(i) && (!two || alone(i + 1));
        if direct && two && !dedup {
            // Both rows' Dice and pairs written by the kernel in one pass.
            let (rows, cols) = rows_and_columns(tw, pop, m, words, i, c);
            kernel.dice_pairs2(rows, cols, &mut out.dice, &mut out.pairs);
            i += 2;
            continue;
        }
        // Direct: nothing earlier can hold these pairs, so the kernel
        // writes their Dice in place.
        let at = out.dice.len();
        let d = if direct {
            out.dice.resize(at + total, 0.0);
            &mut out.dice[at..]
        } else {
            dst.resize(total, 0.0);
            &mut dst[..]
        };
        if two {
            let (d0, d1) = d.split_at_mut(lens[0]);
            let (a2, p2) = ([clk(i), clk(i + 1)], [pop[i], pop[i + 1]]);
            let d0 = if dedup {
                d0[0] = dice32(kernel.and_popcount(a2[0], a2[1]), p2[0], p2[1]);
                &mut d0[1..]
            } else {
                d0
            };
            kernel.dice_many2(a2, p2, &tw[c1 * words..], &pop[c1..], [d0, d1]);
        } else {
            kernel.dice_many(clk(i), pop[i], &tw[c * words..], &pop[c..], d);
        }
        let mut done = 0;
        for (r, cr) in [(i, c), (i + 1, c1)].into_iter().take(rows) {
            let len = n - cr;
            if direct {
                push_pairs(kernel, m[r], &m[cr..], &mut out.pairs);
            } else if alone(r) {
                out.dice.extend_from_slice(&dst[done..done + len]);
                push_pairs(kernel, m[r], &m[cr..], &mut out.pairs);
            } else {
                // The earlier passes that hold `m[r]` in a block.
                own.clear();
                own.extend(
                    (0..nb)
                        .map(|k| (k, ids[k * n + r]))
                        .filter(|&(_, id)| id != NO_BLOCK),
                );
                let row = Row {
                    a: m[r],
                    own,
                    ids,
                    m,
                    c: cr,
                    dice: &dst[done..done + len],
                    aw: clk(r),
                    words: &tw[cr * words..],
                    masks: earlier.masks,
                };
                keep_row(kernel, &row, out);
            }
            done += len;
        }
        i += rows;
    }
    block_pairs
}

/// Rows `i` and `i + 1` of a gathered tile (`tw`: `words` per member,
/// popcounts `pop`, records `m`) and the columns from `c`. Always inlined:
/// a returned struct that stays in memory is re-read before its stores
/// have landed, a stall in the kernel's per-call path.
#[inline(always)]
fn rows_and_columns<'a>(
    tw: &'a [u64],
    pop: &'a [u32],
    m: &'a [u32],
    words: usize,
    i: usize,
    c: usize,
) -> (RowPair<'a>, Columns<'a>) {
    let clk = |i: usize| &tw[i * words..(i + 1) * words];
    let rows = RowPair {
        a: [clk(i), clk(i + 1)],
        pa: [pop[i], pop[i + 1]],
        ids: [m[i], m[i + 1]],
    };
    (rows, (&tw[c * words..], &pop[c..], &m[c..]))
}

/// [`tile_pairs`] for a gathered block of a linkage pass whose earlier
/// passes, if any, are told by block (at most [`HELD_MAX`] of them, no LSH
/// bands): each agency's run of rows against the later agencies' members,
/// two rows a kernel call. With earlier passes each row's pairs are tested
/// in the kernel's loop against the earlier blocks holding its record; up
/// to 64 columns those tests are first made for the whole run at once, one
/// bit per row and column.
#[inline]
fn linked_tile(cx: &Context, m: &[u32], ahead: &mut Ahead, tile: &mut Tile, out: &mut Part) -> u64 {
    let (kernel, words, n, nb) = (cx.kernel, cx.ds.clk.words, m.len(), cx.earlier.columns);
    let Tile {
        words: tw,
        pop,
        ids,
        runs,
        held,
        ..
    } = tile;
    let mut block_pairs = 0;
    let mut s = 0;
    // Each run but the last: rows s..e against columns e..n.
    for &e in &runs[..runs.len() - 1] {
        let rows = (&tw[s * words..e * words], &pop[s..e], &m[s..e]);
        let cols = (&tw[e * words..], &pop[e..], &m[e..]);
        let out = (&mut out.dice, &mut out.pairs);
        if nb == 0 {
            kernel.dice_pairs_rows(rows, cols, out, || ahead.step());
        } else if n - e <= 64 {
            held.clear();
            held.resize(e - s, 0);
            for k in 0..nb {
                let pass = &ids[k * n..(k + 1) * n];
                kernel.same_block(&pass[e..], &pass[s..e], NO_BLOCK, held);
            }
            kernel.dice_pairs_rows_masked(rows, cols, held, out, || ahead.step());
        } else {
            // Row i's earlier blocks, and where its columns' blocks in
            // that pass start in `ids` (column-major, n per earlier pass).
            let held_of = |i: usize, buf: &mut [(u32, u32); HELD_MAX]| {
                let mut len = 0;
                for k in 0..nb {
                    let id = ids[k * n + s + i];
                    if id != NO_BLOCK {
                        buf[len] = (id, (k * n + e) as u32);
                        len += 1;
                    }
                }
                len
            };
            kernel.dice_pairs_rows_kept(rows, cols, (ids, held_of), out, || ahead.step());
        }
        block_pairs += ((e - s) * (n - e)) as u64;
        s = e;
    }
    block_pairs
}

/// Append the pairs of record `a` with each of `bs` (all greater than `a`,
/// as members are sorted).
#[inline(always)]
fn push_pairs(kernel: Kernel, a: u32, bs: &[u32], pairs: &mut Vec<u64>) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512 {
        // SAFETY: only chosen when the CPU reports AVX-512F.
        unsafe { x86::push_pairs(a, bs, pairs) };
        return;
    }
    let _ = kernel;
    pairs.extend(bs.iter().map(|&b| pack(a, b)));
}

/// One row of a tile: record `a` (CLK `aw`) against the block's members
/// `m[c..]` (CLKs `words`, side by side), with their Dice (`dice[j - c]`);
/// `own` lists the earlier passes holding `a` as (column, block), `ids` the
/// members' blocks column-major, `masks` the earlier LSH bands' bits.
struct Row<'a> {
    a: u32,
    own: &'a [(usize, u32)],
    ids: &'a [u32],
    m: &'a [u32],
    c: usize,
    dice: &'a [f32],
    aw: &'a [u64],
    words: &'a [u64],
    masks: &'a [u64],
}

/// Append the pairs of `r` that no earlier pass holds, with their Dice.
/// Without earlier LSH bands and with AVX-512, a step tests sixteen
/// members against every earlier pass's block and compresses the pairs
/// kept into place.
#[inline(always)]
fn keep_row(kernel: Kernel, r: &Row, out: &mut Part) {
    let (n, c) = (r.m.len(), r.c);
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512 && r.masks.is_empty() {
        // SAFETY: only chosen when the CPU reports AVX-512F.
        unsafe { x86::keep_row(r, out) };
        return;
    }
    let columns = r.words.chunks_exact(r.aw.len().max(1));
    for ((j, bw), (&b, &d)) in (c..n).zip(columns).zip(r.m[c..].iter().zip(r.dice)) {
        let by_block = r.own.iter().any(|&(k, id)| r.ids[k * n + j] == id);
        if !by_block && (r.masks.is_empty() || !kernel.agree_in_any(r.aw, bw, r.masks)) {
            out.pairs.push(pack(r.a, b));
            out.dice.push(d);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Part, Row};

    /// [`super::push_pairs`], sixteen a step.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn push_pairs(a: u32, bs: &[u32], pairs: &mut Vec<u64>) {
        let n = bs.len();
        pairs.reserve(n);
        let high = _mm512_set1_epi64(((a as u64) << 32) as i64);
        let at = pairs.len();
        let mut j = 0;
        // SAFETY: loads read bs[j..j + 16] (j + 16 <= n); stores write the
        // reserved slots at + j .. at + j + 16 (<= at + n).
        unsafe {
            let dst = pairs.as_mut_ptr().add(at);
            while j + 16 <= n {
                let b = _mm512_loadu_si512(bs.as_ptr().add(j) as *const _);
                let lo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(b));
                let hi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(b));
                _mm512_storeu_si512(dst.add(j) as *mut _, _mm512_or_si512(high, lo));
                _mm512_storeu_si512(dst.add(j + 8) as *mut _, _mm512_or_si512(high, hi));
                j += 16;
            }
            while j < n {
                *dst.add(j) = ((a as u64) << 32) | bs[j] as u64;
                j += 1;
            }
            // SAFETY: every slot below at + n was written above.
            pairs.set_len(at + n);
        }
    }

    /// [`super::keep_row`], sixteen members a step. Compressed vectors are
    /// stored whole (a compressing store to memory is slow on some CPUs)
    /// into spare capacity, and the lengths advanced by the count kept.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn keep_row(r: &Row, out: &mut Part) {
        let Row {
            a,
            own,
            ids,
            m,
            c,
            dice: row,
            ..
        } = *r;
        let n = m.len();
        debug_assert!(row.len() >= n - c && ids.len() >= n * own.len().min(1));
        // Room for the kept pairs plus one whole vector past the last.
        out.pairs.reserve(n - c + 16);
        out.dice.reserve(n - c + 16);
        let high = _mm512_set1_epi64(((a as u64) << 32) as i64);
        let (mut np, mut nd) = (out.pairs.len(), out.dice.len());
        let mut j = c;
        while j < n {
            let left = (n - j).min(16);
            let lanes: __mmask16 = if left == 16 { !0 } else { (1u16 << left) - 1 };
            // SAFETY: masked loads read only lanes j..j+left, inside the
            // slices; stores go to reserved capacity (at most 16 past the
            // current length, which the reserve above covers).
            unsafe {
                let mut held: __mmask16 = 0;
                for &(k, id) in own {
                    let col =
                        _mm512_maskz_loadu_epi32(lanes, ids.as_ptr().add(k * n + j) as *const i32);
                    held |= _mm512_cmpeq_epi32_mask(col, _mm512_set1_epi32(id as i32));
                }
                let keep = lanes & !held;
                let d = _mm512_maskz_loadu_ps(lanes, row.as_ptr().add(j - c));
                _mm512_storeu_ps(
                    out.dice.as_mut_ptr().add(nd),
                    _mm512_maskz_compress_ps(keep, d),
                );
                nd += keep.count_ones() as usize;
                let b = _mm512_maskz_loadu_epi32(lanes, m.as_ptr().add(j) as *const i32);
                let lo = _mm512_or_si512(high, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(b)));
                let hi = _mm512_or_si512(
                    high,
                    _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(b)),
                );
                let (k0, k1) = (keep as u8, (keep >> 8) as u8);
                _mm512_storeu_si512(
                    out.pairs.as_mut_ptr().add(np) as *mut _,
                    _mm512_maskz_compress_epi64(k0, lo),
                );
                np += k0.count_ones() as usize;
                _mm512_storeu_si512(
                    out.pairs.as_mut_ptr().add(np) as *mut _,
                    _mm512_maskz_compress_epi64(k1, hi),
                );
                np += k1.count_ones() as usize;
            }
            j += 16;
        }
        // SAFETY: every slot below the new lengths was written above.
        unsafe {
            out.pairs.set_len(np);
            out.dice.set_len(nd);
        }
    }
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

/// Keep the pairs of `pairs` (packed) that some pass of `passes` holds: the
/// two records share one of its kept blocks, or it lists the pair. A
/// refresh carries the previous run's written pairs between unchanged
/// records; those the second look found (among records left single, on
/// blocks or bands the job itself does not compare) are not candidates of
/// a full run's first resolution, and carrying them into it would link
/// there what a full run links only in the look, changing which records
/// the look sees (docs/decisions.md §68). `records` is the job's size.
pub fn retain_held(passes: &[Pass], records: usize, pairs: &mut Vec<u64>) {
    const NONE: u32 = u32::MAX;
    // The records of `pairs`, each a slot in a table of block indices
    // (one column per block pass).
    let mut slot = vec![NONE; records];
    let mut n = 0u32;
    for &p in pairs.iter() {
        for g in [(p >> 32) as usize, p as u32 as usize] {
            if slot[g] == NONE {
                slot[g] = n;
                n += 1;
            }
        }
    }
    let blocked: Vec<&Pass> = passes.iter().filter(|p| p.starts.len() >= 2).collect();
    let k = blocked.len();
    let mut ids = vec![NO_BLOCK; n as usize * k];
    for (j, p) in blocked.iter().enumerate() {
        for (g, b) in p.block_of() {
            if slot[g] != NONE {
                ids[slot[g] as usize * k + j] = b;
            }
        }
    }
    let mut listed: Vec<u64> = passes
        .iter()
        .filter(|p| explicit(p))
        .flat_map(|p| p.pairs.iter().copied())
        .collect();
    listed.sort_unstable();
    pairs.retain(|&p| {
        let (a, b) = (
            slot[(p >> 32) as usize] as usize,
            slot[p as u32 as usize] as usize,
        );
        let (x, y) = (&ids[a * k..(a + 1) * k], &ids[b * k..(b + 1) * k]);
        x.iter().zip(y).any(|(&i, &j)| i != NO_BLOCK && i == j) || listed.binary_search(&p).is_ok()
    });
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
        let mut m: FxHashMap<u128, u64> = self.patterns.iter().copied().collect();
        for &(p, c) in &o.patterns {
            *m.entry(p).or_default() += c;
        }
        self.patterns = m.into_iter().collect();
        self.patterns.sort_unstable();
        self.add_counts(o);
    }

    /// Add `o`'s counts and histograms (not its patterns).
    fn add_counts(&mut self, o: &Tally) {
        self.candidates += o.candidates;
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
    /// Append a later chunk's pairs ([`Kept::sort`] once all are in).
    pub fn append(&mut self, o: Kept) {
        self.pairs.extend(o.pairs);
        self.dice.extend(o.dice);
        self.raw_weight.extend(o.raw_weight);
    }

    /// Sort by pair (chunks each hold a pass's blocks, so their pairs
    /// interleave).
    pub fn sort(&mut self) {
        let mut order: Vec<u32> = (0..self.pairs.len() as u32).collect();
        order.par_sort_unstable_by_key(|&i| self.pairs[i as usize]);
        let pick = |v: &[f32]| order.iter().map(|&i| v[i as usize]).collect::<Vec<f32>>();
        self.dice = pick(&self.dice);
        self.raw_weight = pick(&self.raw_weight);
        self.pairs = order.iter().map(|&i| self.pairs[i as usize]).collect();
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

/// Compare a part's pairs, keep those with raw weight ≥ `floor` or Dice ≥
/// `dice_keep`, tally the rest. `raw` scores pairs (weight before the
/// prior). What is kept stays in block order ([`Kept::sort`] once all
/// parts are in).
pub fn score_part(
    ds: &Dataset,
    part: &Part,
    cuts: &[f32],
    raw: &(dyn Fn(&Comparisons, &[u64]) -> Vec<f32> + Sync),
    floor: f32,
    dice_keep: f32,
) -> (Kept, Tally) {
    let Part { pairs, dice } = part;
    let comps = compare_scored(ds, pairs, Some(dice), cuts);
    let w = raw(&comps, pairs);
    let mut t = Tally::empty();
    t.candidates = pairs.len() as u64;
    t.patterns = tally_patterns(&comps).into_iter().collect();
    let mut k = Kept::default();
    for i in 0..pairs.len() {
        let (d, x) = (dice[i], w[i]);
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

/// The parts' kept pairs (in block order: [`Kept::sort`] once every chunk
/// is in) and their tallies added, in order.
pub fn merge_parts(parts: Vec<(Kept, Tally)>) -> (Kept, Tally) {
    let mut k = Kept::default();
    let mut t = Tally::empty();
    let mut patterns: FxHashMap<u128, u64> = FxHashMap::default();
    for (pk, pt) in parts {
        k.append(pk);
        for &(pattern, count) in &pt.patterns {
            *patterns.entry(pattern).or_default() += count;
        }
        t.add_counts(&pt);
    }
    t.patterns = patterns.into_iter().collect();
    t.patterns.sort_unstable();
    (k, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_packed_in_a_word_group_as_wide_keys_do() {
        // 1,000 records of two agencies; keys in the upper bits of 32:
        // seven blocks of both agencies (every tenth record), one of ten
        // records of one agency, and pairs of one agency; given in another
        // order than the records'.
        let n = 1000usize;
        let agency: Vec<u16> = (0..n).map(|g| (g >= 600) as u16).collect();
        let ds = Dataset::of_clks(16, vec![0; 16 * n], agency);
        let key = |g: usize| {
            let k = match g {
                _ if g.is_multiple_of(10) => g % 7,
                101..=109 => 999,
                _ => g / 2 + 2000,
            };
            (k as u64) << 20 | 0xf_ffff
        };
        let wide: Keys = (0..n).map(|g| Some(key(g) as u128 | 5 << 100)).collect();
        for dedup in [false, true] {
            for max in [u64::MAX, 1] {
                let a = group_pass(&ds, &wide, "b", "lsh", dedup, max);
                let mut packed: Vec<u64> = (0..n).rev().map(|g| key(g) << 32 | g as u64).collect();
                let b = group_keyed(&ds, &mut packed, "b", "lsh", dedup, max);
                assert_eq!((&a.members, &a.starts), (&b.members, &b.starts));
                let stats = |p: &Pass| {
                    let s = &p.stats;
                    (
                        s.blocks,
                        s.pairs,
                        s.skipped_blocks,
                        s.skipped_pairs,
                        s.largest_block_pairs,
                    )
                };
                assert_eq!(stats(&a), stats(&b), "dedup {dedup} max {max}");
                // Something kept, something left out, and with the small
                // cap the blocks of both agencies skipped.
                assert!(a.members.len() < n, "{:?}", stats(&a));
                if max == 1 {
                    assert!(a.stats.skipped_blocks >= 7, "{:?}", stats(&a));
                } else {
                    assert!(a.stats.blocks >= 7, "{:?}", stats(&a));
                }
            }
        }
    }

    #[test]
    fn a_row_keeps_the_same_pairs_in_every_kernel() {
        // Members 100.., three earlier passes (columns); the row's record
        // is in blocks 5 and 9 of the first two and in none of the third.
        let mut next = crate::testing::xorshift(7u64);
        for n in [1usize, 9, 16, 17, 40, 77] {
            let m: Vec<u32> = (0..n as u32).map(|j| 100 + 3 * j).collect();
            let ids: Vec<u32> = (0..3 * n).map(|_| (next() % 12) as u32).collect();
            let row: Vec<f32> = (0..n).map(|j| j as f32 / 128.0).collect();
            let own = [(0usize, 5u32), (1, 9)];
            for c in [0, n / 3, n - 1] {
                let clks = vec![0u64; 16 * n];
                let r = Row {
                    a: 42,
                    own: &own,
                    ids: &ids,
                    m: &m,
                    c,
                    dice: &row[..n - c],
                    aw: &clks[..16],
                    words: &clks[16 * c..],
                    masks: &[],
                };
                let scalar = {
                    let mut e = Part::default();
                    keep_row(Kernel::Scalar, &r, &mut e);
                    e
                };
                let want: Vec<u64> = (c..n)
                    .filter(|&j| ids[j] != 5 && ids[n + j] != 9)
                    .map(|j| 42u64 << 32 | m[j] as u64)
                    .collect();
                assert_eq!(scalar.pairs, want, "n {n} c {c}");
                for k in Kernel::available() {
                    let mut e = Part::default();
                    // Earlier contents stay in front.
                    e.pairs.push(1);
                    e.dice.push(0.5);
                    keep_row(k, &r, &mut e);
                    assert_eq!(e.pairs[1..], scalar.pairs[..], "{k:?} n {n} c {c}");
                    assert_eq!(e.dice[1..], scalar.dice[..], "{k:?} n {n} c {c}");
                    assert_eq!((e.pairs[0], e.dice[0]), (1, 0.5));
                }
            }
        }
    }

    /// Every chunk's emitted pairs, over passes whose blocks hold up to
    /// ~150 members of three agencies (tiles tested by bits and by block,
    /// with odd rows), in chunks of one pass and of a few blocks: each pair
    /// a pass's block forms that no earlier pass's block holds, once, with
    /// its CLK Dice, and the same for de-duplication.
    #[test]
    fn emitted_pairs_are_each_candidate_once() {
        let mut next = crate::testing::xorshift(11u64);
        let (people, n) = (1500usize, 4500usize);
        let agency: Vec<u16> = (0..n).map(|g| (g / people) as u16).collect();
        let clks: Vec<u64> = (0..16 * n).map(|_| next() & next()).collect();
        let ds = Dataset::of_clks(16, clks, agency.clone());
        // A person's records share most keys (so that earlier passes hold
        // many pairs); some records have none. Blocks of ~3 x size.
        let keys = |size: u64, mult: u64, next: &mut dyn FnMut() -> u64| -> Keys {
            (0..n)
                .map(|g| {
                    let person = (g % people) as u64 * mult % people as u64;
                    match next() % 10 {
                        0 => None,
                        1 => Some((next() % 1000) as u128),
                        _ => Some((person / size) as u128),
                    }
                })
                .collect()
        };
        for dedup in [false, true] {
            let blocked: Vec<Pass> = [(9u64, 1u64), (50, 7), (4, 13), (21, 1)]
                .iter()
                .enumerate()
                .map(|(i, &(size, mult))| {
                    let k = keys(size, mult, &mut next);
                    group_pass(&ds, &k, &format!("p{i}"), "key", dedup, u64::MAX)
                })
                .collect();
            // Record -> block, per block pass.
            let block_of: Vec<Vec<Option<usize>>> = blocked
                .iter()
                .map(|p| {
                    let mut b = vec![None; n];
                    for (i, m) in p.blocks().enumerate() {
                        m.iter().for_each(|&g| b[g as usize] = Some(i));
                    }
                    b
                })
                .collect();
            let in_pass = |q: usize, a: usize, b: usize| {
                block_of[q][a].is_some() && block_of[q][a] == block_of[q][b]
            };
            // An explicit pass first (as all-pairs blocking puts it),
            // whose pairs are tested against every block pass, the last
            // one's included: random pairs, and pairs of the last pass's
            // blocks.
            let mut explicit = Vec::new();
            while explicit.len() < 3000 {
                let (a, b) = ((next() % n as u64) as usize, (next() % n as u64) as usize);
                if a < b && (dedup || agency[a] != agency[b]) {
                    explicit.push(pack(a as u32, b as u32));
                }
            }
            for m in blocked[3].blocks().take(200) {
                for (i, &a) in m.iter().enumerate() {
                    for &b in &m[i + 1..] {
                        if dedup || agency[a as usize] != agency[b as usize] {
                            explicit.push(pack(a, b));
                        }
                    }
                }
            }
            explicit.sort_unstable();
            explicit.dedup();
            let mut passes = vec![Pass {
                pairs: explicit,
                starts: vec![0],
                ..Default::default()
            }];
            passes.extend(blocked.iter().cloned());
            let explicit = &passes[0].pairs;
            let owners = Owners::new(&passes, &[], 16);
            let mut want = Vec::new();
            let mut held_by_last = 0;
            for &pair in explicit {
                let (a, b) = crate::hub::block::unpack(pair);
                held_by_last += usize::from(in_pass(3, a, b));
                if !(0..blocked.len()).any(|q| in_pass(q, a, b)) {
                    let d = clk_dice(&ds, Kernel::Scalar, a, b);
                    want.push((pair, d.to_bits()));
                }
            }
            assert!(
                held_by_last > 100,
                "{held_by_last} explicit pairs in the last pass's blocks"
            );
            for (pi, p) in blocked.iter().enumerate() {
                for m in p.blocks() {
                    for (i, &a) in m.iter().enumerate() {
                        for &b in &m[i + 1..] {
                            let (a, b) = (a as usize, b as usize);
                            let held = (0..pi).any(|q| in_pass(q, a, b));
                            if (dedup || agency[a] != agency[b]) && !held {
                                let d = clk_dice(&ds, Kernel::Scalar, a, b);
                                want.push((pack(a as u32, b as u32), d.to_bits()));
                            }
                        }
                    }
                }
            }
            assert!(
                want.len() > 20_000,
                "{} pairs: too few to span work items",
                want.len()
            );
            want.sort_unstable();
            let unique = want.len();
            want.dedup();
            assert_eq!(want.len(), unique, "no pair in two passes' candidates");
            for target in [u64::MAX, 3_000] {
                let mut got = Vec::new();
                for c in chunks(&passes, target) {
                    let (pairs, dice) = emit(&ds, &passes, &owners, dedup, c).pairs_and_dice();
                    got.extend(pairs.into_iter().zip(dice.into_iter().map(f32::to_bits)));
                }
                got.sort_unstable();
                assert_eq!(got.len(), want.len(), "dedup {dedup} target {target}");
                assert!(got == want, "dedup {dedup} target {target}");
            }
        }
    }

    /// Block passes read only the earlier passes' indices, so the last
    /// block pass's are not in the rows they gather: they are kept apart,
    /// and only when there are explicit pairs to test against them.
    #[test]
    fn the_last_block_pass_is_kept_apart_for_explicit_pairs_only() {
        let n = 40usize;
        let ds = Dataset::of_clks(16, vec![0; 16 * n], vec![0; n]);
        let blocked: Vec<Pass> = [3u128, 5, 7]
            .iter()
            .map(|&m| {
                let keys: Keys = (0..n as u128).map(|g| Some(g % m)).collect();
                group_pass(&ds, &keys, "p", "key", true, u64::MAX)
            })
            .collect();
        let o = Owners::new(&blocked, &[], 16);
        assert_eq!((o.columns, o.ids.len(), o.last.len()), (2, 2 * n, 0));
        assert_eq!(o.column, [Some(0), Some(1), None]);
        let mut passes = blocked.clone();
        passes.push(Pass {
            pairs: vec![pack(0, 7)],
            starts: vec![0],
            ..Default::default()
        });
        let o = Owners::new(&passes, &[], 16);
        assert_eq!((o.columns, o.ids.len(), o.last.len()), (2, 2 * n, n));
        // Records 0 and 7 share a block of the last pass only (7 = 0 mod 7).
        let e = o.before(passes.len());
        assert!(e.holds_records(Kernel::Scalar, &ds, 0, 7));
        assert!(!o.before(2).holds_records(Kernel::Scalar, &ds, 0, 7));
    }

    /// A refresh carries only pairs some pass holds: a shared kept block of
    /// any pass, the last included, or a listed pair; not a pair whose
    /// shared block was too large, nor one the passes never put together.
    #[test]
    fn carried_pairs_are_kept_only_when_a_pass_holds_them() {
        let n = 60usize;
        let ds = Dataset::of_clks(16, vec![0; 16 * n], vec![0; n]);
        let mut passes: Vec<Pass> = [5u128, 7]
            .iter()
            .map(|&m| {
                let keys: Keys = (0..n as u128).map(|g| Some(g % m)).collect();
                group_pass(&ds, &keys, "p", "key", true, u64::MAX)
            })
            .collect();
        // Keys of 0 for records below 20 (a block of 190 pairs, skipped at
        // 100), else one block per ten records.
        let keys: Keys = (0..n as u128)
            .map(|g| Some(if g < 20 { 0 } else { g / 10 }))
            .collect();
        passes.push(group_pass(&ds, &keys, "q", "key", true, 100));
        passes.push(Pass {
            pairs: vec![pack(1, 2)],
            starts: vec![0],
            ..Default::default()
        });
        let mut pairs = vec![
            pack(0, 5),   // the first pass (5 = 0 mod 5)
            pack(3, 10),  // the second (10 = 3 mod 7)
            pack(21, 29), // the last block pass (both in 20..30)
            pack(1, 2),   // listed
            pack(4, 13),  // records 4 and 13 share only the skipped block
            pack(41, 50), // nothing
        ];
        retain_held(&passes, n, &mut pairs);
        assert_eq!(pairs, [pack(0, 5), pack(3, 10), pack(21, 29), pack(1, 2)]);
        // Nothing to keep, and no pass: nothing is kept.
        let mut none = vec![pack(0, 5)];
        retain_held(&[], n, &mut none);
        assert!(none.is_empty());
        let mut empty = Vec::new();
        retain_held(&passes, n, &mut empty);
        assert!(empty.is_empty());
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
