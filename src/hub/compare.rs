//! Dice kernels on packed `u64` words, chosen at run time.
//!
//! `Avx512` uses VPOPCNTDQ on 512-bit lanes when the CPU has it (with the
//! F, BW, DQ, VL and VBMI subsets: Ice Lake, Zen 4 and later), `Avx2` a
//! nibble lookup table in 256-bit lanes (VPSHUFB: Haswell, Zen 1 and
//! later, about 1.6x POPCNT on Zen 3), `Popcnt` the scalar POPCNT
//! instruction, `Scalar` portable bit tricks. All four give
//! identical results, to the bit (tested, exhaustively for the Dice of
//! 1024-bit filters). Popcounts of each filter are computed once at load; a
//! comparison costs one AND-popcount. The tile kernels take two rows at a
//! time and write the pairs, and drop those an earlier pass holds, in the
//! loop that computes their Dice; a run of rows is one call, so that no
//! row pair's arguments pass through memory (docs/decisions.md §26, §28,
//! §33); the AVX2 kernel splits a run's columns into nibble planes once
//! (§53, §55). Nothing here
//! allocates per pair. Hub side: never sees plaintext or keys.

use std::sync::OnceLock;

/// A popcount kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Scalar,
    Popcnt,
    Avx2,
    Avx512,
}

impl Kernel {
    /// The best kernel this CPU supports (override with
    /// `BLOOMLINK_KERNEL=scalar|popcnt|avx2|avx512`).
    pub fn detect() -> Kernel {
        static K: OnceLock<Kernel> = OnceLock::new();
        *K.get_or_init(|| {
            let avail = Kernel::available();
            if let Ok(want) = std::env::var("BLOOMLINK_KERNEL") {
                for k in &avail {
                    if k.name() == want {
                        return *k;
                    }
                }
            }
            *avail.last().expect("scalar always available")
        })
    }

    /// Kernels usable on this CPU, slowest first.
    pub fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut v = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("popcnt") {
                v.push(Kernel::Popcnt);
                if std::arch::is_x86_feature_detected!("avx2") {
                    v.push(Kernel::Avx2);
                }
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vbmi")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                v.push(Kernel::Avx512);
            }
        }
        v
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Popcnt => "popcnt",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// `popcount(a & b)`.
    #[inline(always)]
    pub fn and_popcount(self, a: &[u64], b: &[u64]) -> u32 {
        debug_assert_eq!(a.len(), b.len());
        match self {
            Kernel::Scalar => scalar_and_pop(a, b),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU reports the feature.
            Kernel::Popcnt | Kernel::Avx2 => unsafe { x86::popcnt_and_pop(a, b) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if a.len().is_multiple_of(8) => unsafe { x86::avx512_and_pop(a, b) },
            #[allow(unreachable_patterns)]
            _ => scalar_and_pop(a, b),
        }
    }

    /// Whether `a` and `b` agree at every bit of some mask of `masks`
    /// (masks of `a.len()` words side by side): whether two CLKs share the
    /// key of one of those LSH bands.
    #[inline]
    pub fn agree_in_any(self, a: &[u64], b: &[u64], masks: &[u64]) -> bool {
        debug_assert_eq!(a.len(), b.len());
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU reports the feature.
            Kernel::Avx512 if a.len() == 16 => unsafe { x86::avx512_agree_in_any(a, b, masks) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 if a.len() == 16 => unsafe { x86::avx2_agree_in_any(a, b, masks) },
            _ => generic_agree_in_any(a, b, masks),
        }
    }

    /// Dice of `a` (popcount `pa`) against each filter of the arena `b`
    /// (`words` per filter, popcounts `bpop`), written to `out`.
    pub fn dice_many(self, a: &[u64], pa: u32, b: &[u64], bpop: &[u32], out: &mut [f32]) {
        let words = a.len();
        debug_assert_eq!(b.len(), bpop.len() * words);
        debug_assert!(out.len() >= bpop.len());
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU reports the feature.
            Kernel::Avx512 if words.is_multiple_of(8) => unsafe {
                x86::avx512_dice_many(a, pa, b, bpop, out)
            },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if words == 16 => unsafe { x86::avx2_dice_many(a, pa, b, bpop, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Popcnt | Kernel::Avx2 => unsafe { x86::popcnt_dice_many(a, pa, b, bpop, out) },
            _ => generic_dice_many(a, pa, b, bpop, out, scalar_and_pop),
        }
    }
    /// Append filters `rows` of an arena (filter `g` at words
    /// `g * stride + offset ..` plus `words`) side by side to `out`, and
    /// their popcounts to `pop`: a block's tile, gathered in one loop.
    pub fn gather(
        self,
        data: &[u64],
        (stride, offset, words): (usize, usize, usize),
        rows: &[u32],
        out: &mut Vec<u64>,
        pop: &mut Vec<u32>,
    ) {
        let at = |g: u32| g as usize * stride + offset;
        // The furthest row bounds them all (a vectorised max, not a test
        // per row).
        if let Some(&g) = rows.iter().max() {
            assert!(at(g) + words <= data.len());
        }
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU reports the feature; every
            // row is in `data` (asserted above).
            Kernel::Avx512 if words == 16 => unsafe {
                x86::avx512_gather(data, (stride, offset), rows, out, pop)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 if words == 16 => unsafe {
                x86::avx2_gather(data, (stride, offset), rows, out, pop)
            },
            _ => {
                for &g in rows {
                    let f = &data[at(g)..at(g) + words];
                    out.extend_from_slice(f);
                    pop.push(self.and_popcount(f, f));
                }
            }
        }
    }

    /// Dice of two filters `a[0]` and `a[1]` (popcounts `pa`) against each
    /// filter of the arena `b`, written to `out[0]` and `out[1]`: one
    /// load of each `b` serves both rows (a register tile of 2 × 8).
    pub fn dice_many2(
        self,
        a: [&[u64]; 2],
        pa: [u32; 2],
        b: &[u64],
        bpop: &[u32],
        out: [&mut [f32]; 2],
    ) {
        let words = a[0].len();
        debug_assert_eq!(a[1].len(), words);
        debug_assert_eq!(b.len(), bpop.len() * words);
        debug_assert!(out[0].len() >= bpop.len() && out[1].len() >= bpop.len());
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU reports the feature.
            Kernel::Avx512 if words == 16 => unsafe { x86::avx512_dice_many2(a, pa, b, bpop, out) },
            _ => {
                let [o0, o1] = out;
                self.dice_many(a[0], pa[0], b, bpop, o0);
                self.dice_many(a[1], pa[1], b, bpop, o1);
            }
        }
    }
}

/// Two rows of a tile: their filters, popcounts and records.
#[derive(Debug, Clone, Copy)]
pub struct RowPair<'a> {
    pub a: [&'a [u64]; 2],
    pub pa: [u32; 2],
    pub ids: [u32; 2],
}

/// At most this many earlier passes holding a row are tested in the
/// kernel's loop (more take the row-by-row test).
pub const HELD_MAX: usize = 8;

/// A run of a tile's columns: their filters side by side, popcounts and
/// records (each greater than the rows' records).
pub type Columns<'a> = (&'a [u64], &'a [u32], &'a [u32]);

impl Kernel {
    /// [`Kernel::dice_many2`] for the two rows of a tile against a run of
    /// its columns, appending row 0's Dice and then row 1's to `dice`, and
    /// their pairs (`id << 32 | bid`, in the same order) to `pairs`. The
    /// AVX-512 kernel writes both in the loop that computes them, into
    /// reserved space (no fill, no second pass).
    pub fn dice_pairs2(
        self,
        RowPair { a, pa, ids }: RowPair,
        (b, bpop, bids): Columns,
        dice: &mut Vec<f32>,
        pairs: &mut Vec<u64>,
    ) {
        let (words, n) = (a[0].len(), bpop.len());
        assert!(a[1].len() == words && b.len() == n * words && bids.len() == n);
        debug_assert!(bids.iter().all(|&g| g > ids[0] && g > ids[1]));
        dice.reserve(2 * n);
        pairs.reserve(2 * n);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU reports the feature; both
            // outputs have room for 2n more (reserved above), and every
            // one of those slots is written before the lengths cover it.
            Kernel::Avx512 if words == 16 => unsafe {
                let (d, p) = (dice.len(), pairs.len());
                x86::two_rows_with_pairs(
                    RowPair { a, pa, ids },
                    (b, bpop, bids),
                    dice.as_mut_ptr().add(d),
                    pairs.as_mut_ptr().add(p),
                );
                dice.set_len(d + 2 * n);
                pairs.set_len(p + 2 * n);
            },
            _ => {
                let at = dice.len();
                dice.resize(at + 2 * n, 0.0);
                let (d0, d1) = dice[at..].split_at_mut(n);
                self.dice_many2(a, pa, b, bpop, [d0, d1]);
                for id in ids {
                    pairs.extend(bids.iter().map(|&g| pair(id, g)));
                }
            }
        }
    }

    /// Every row of a run of a tile against every column of a later run:
    /// rows side by side in `a` (popcounts `pa`, records `ids`) against
    /// columns `b` (popcounts `bpop`, records `bids`, each greater than
    /// every row's), appending each row's Dice and pairs in row order, two
    /// rows a kernel call (a vector kernel's whole run in one function:
    /// [`Kernel::dice_pairs_rows_kept`] with nothing held). `before` runs
    /// before each call (a caller spreads its prefetches over them). The
    /// outputs grow once for the whole rectangle.
    pub fn dice_pairs_rows(
        self,
        rows: (&[u64], &[u32], &[u32]),
        cols: Columns,
        out: (&mut Vec<f32>, &mut Vec<u64>),
        before: impl FnMut(),
    ) {
        #[cfg(target_arch = "x86_64")]
        let avx = |_| x86::Nothing;
        #[cfg(not(target_arch = "x86_64"))]
        let avx = ();
        self.rows_kept(rows, cols, avx, |_| |_| false, out, before);
    }

    /// [`Kernel::dice_pairs_rows`] keeping only the pairs no earlier pass
    /// holds: row `i`'s earlier blocks are what `held_of(i, buf)` writes
    /// to `buf` (it returns how many), each `(block, at)` (an earlier pass
    /// holding the row's record in `block`, and where the columns' blocks
    /// in that pass start in `blocks`) leaving out column `j` when
    /// `blocks[at + j] == block`. Kept pairs are appended row after row,
    /// each row's in column order. The vector kernels test and compress
    /// eight columns a step in the loop that computes their Dice: the
    /// AVX-512 kernel writes both rows of a call in place (row 0's kept
    /// pairs counted first), the AVX2 kernel one row after the other.
    pub fn dice_pairs_rows_kept(
        self,
        rows: (&[u64], &[u32], &[u32]),
        cols: Columns,
        (blocks, held_of): (&[u32], impl Fn(usize, &mut [(u32, u32); HELD_MAX]) -> usize),
        out: (&mut Vec<f32>, &mut Vec<u64>),
        before: impl FnMut(),
    ) {
        let n = cols.1.len();
        // Every (block, at) a row is given must reach n entries.
        let held = |i: usize, buf: &mut [(u32, u32); HELD_MAX]| {
            let len = held_of(i, buf);
            assert!(
                buf[..len]
                    .iter()
                    .all(|&(_, at)| at as usize + n <= blocks.len())
            );
            len
        };
        #[cfg(target_arch = "x86_64")]
        let avx = |i: usize| {
            let mut h = x86::ByBlock {
                blocks,
                held: [[(0, 0); HELD_MAX]; 2],
                len: [0; 2],
            };
            h.len = [held(i, &mut h.held[0]), held(i + 1, &mut h.held[1])];
            h
        };
        #[cfg(not(target_arch = "x86_64"))]
        let avx = ();
        let left_out = |i: usize| {
            let mut buf = [(0, 0); HELD_MAX];
            let len = held(i, &mut buf);
            move |j: usize| is_held(&buf[..len], blocks, j)
        };
        self.rows_kept(rows, cols, avx, left_out, out, before);
    }

    /// For each of `rows` (block indices in one earlier pass; `none`
    /// holds nothing), which of the columns `col` (at most 64, their
    /// blocks in that pass) share its block: bit `t` of `out[r]` for
    /// column `t`, ORed into what `out` holds. These are the bits
    /// [`Kernel::dice_pairs_rows_masked`] takes.
    pub fn same_block(self, col: &[u32], rows: &[u32], none: u32, out: &mut [u64]) {
        assert!(col.len() <= 64 && out.len() == rows.len());
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512 {
            // SAFETY: only chosen when the CPU reports AVX-512 F and BW;
            // lengths asserted above.
            unsafe { x86::same_block(col, rows, none, out) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx2 {
            // SAFETY: only chosen when the CPU reports AVX2; lengths
            // asserted above.
            unsafe { x86::avx2_same_block(col, rows, none, out) };
            return;
        }
        for (o, &id) in out.iter_mut().zip(rows) {
            if id != none {
                for (t, &c) in col.iter().enumerate() {
                    *o |= ((c == id) as u64) << t;
                }
            }
        }
    }

    /// [`Kernel::dice_pairs_rows_kept`] with each row's held columns given
    /// as bits: row `i` leaves out column `j` when bit `j` of `held[i]` is
    /// set. At most 64 columns.
    pub fn dice_pairs_rows_masked(
        self,
        rows: (&[u64], &[u32], &[u32]),
        cols: Columns,
        held: &[u64],
        out: (&mut Vec<f32>, &mut Vec<u64>),
        before: impl FnMut(),
    ) {
        let n = cols.1.len();
        assert!(n <= 64 && held.len() == rows.1.len());
        // Bits past the columns are never read (row 0's count masks them).
        #[cfg(target_arch = "x86_64")]
        let avx = |i: usize| x86::ByMask([held[i], held[i + 1]]);
        #[cfg(not(target_arch = "x86_64"))]
        let avx = ();
        let left_out = |i: usize| {
            let m = held[i];
            move |j: usize| m >> j & 1 == 1
        };
        self.rows_kept(rows, cols, avx, left_out, out, before);
    }

    /// What [`Kernel::dice_pairs_rows_kept`] and
    /// [`Kernel::dice_pairs_rows_masked`] share: the AVX-512 kernel two
    /// rows a call, or the AVX2 kernel row after row (each pair of rows'
    /// held columns from `avx`), then any row left one at a time (row `i`
    /// leaving out column `j` when `out(i)(j)`).
    fn rows_kept<#[cfg(target_arch = "x86_64")] H: x86::Held, R: Fn(usize) -> bool>(
        self,
        (a, pa, ids): (&[u64], &[u32], &[u32]),
        (b, bpop, bids): Columns,
        #[cfg(target_arch = "x86_64")] avx: impl FnMut(usize) -> H,
        #[cfg(not(target_arch = "x86_64"))] _avx: (),
        out: impl Fn(usize) -> R,
        (dice, pairs): (&mut Vec<f32>, &mut Vec<u64>),
        mut before: impl FnMut(),
    ) {
        let (rows, n) = (pa.len(), bpop.len());
        if rows == 0 {
            return;
        }
        let words = a.len() / rows;
        assert!(a.len() == rows * words && ids.len() == rows);
        assert!(b.len() == n * words && bids.len() == n);
        let mut i = 0;
        #[cfg(target_arch = "x86_64")]
        if matches!(self, Kernel::Avx512 | Kernel::Avx2) && words == 16 {
            let whole = (rows & !1) * n;
            dice.reserve(whole);
            pairs.reserve(whole);
            let (d, p) = (dice.len(), pairs.len());
            // SAFETY: only chosen when the CPU reports the features; each
            // `Held` answers for the n columns (the callers check their
            // blocks and bits); the row pairs write within the `whole`
            // slots reserved above, and the lengths grow by what they
            // kept.
            unsafe {
                let (dp, pp) = (dice.as_mut_ptr().add(d), pairs.as_mut_ptr().add(p));
                let (rows, cols) = ((a, pa, ids), (b, bpop, bids));
                let kept = if self == Kernel::Avx512 {
                    x86::rows_kept(rows, cols, avx, dp, pp, &mut before)
                } else {
                    x86::avx2_rows_kept(rows, cols, avx, dp, pp, &mut before)
                };
                dice.set_len(d + kept);
                pairs.set_len(p + kept);
            }
            i = rows & !1;
        }
        // Two rows a call of the kernel (one load of each column for both),
        // then an odd last row; each row's Dice in place, then compacted
        // (each write is at or before the slot it reads).
        let row = |i: usize| &a[i * words..(i + 1) * words];
        while i < rows {
            before();
            let count = (rows - i).min(2);
            let at = dice.len();
            dice.resize(at + count * n, 0.0);
            if count == 2 {
                let (d0, d1) = dice[at..].split_at_mut(n);
                self.dice_many2([row(i), row(i + 1)], [pa[i], pa[i + 1]], b, bpop, [d0, d1]);
            } else {
                self.dice_many(row(i), pa[i], b, bpop, &mut dice[at..]);
            }
            let mut w = at;
            for (t, &id) in ids[i..i + count].iter().enumerate() {
                let (from, out) = (at + t * n, out(i + t));
                for (j, &g) in bids.iter().enumerate() {
                    if !out(j) {
                        dice[w] = dice[from + j];
                        pairs.push(pair(id, g));
                        w += 1;
                    }
                }
            }
            dice.truncate(w);
            i += 2;
        }
    }
}

/// Whether some `(block, at)` of `held` holds column `j`
/// (`blocks[at + j] == block`).
#[inline(always)]
fn is_held(held: &[(u32, u32)], blocks: &[u32], j: usize) -> bool {
    held.iter().any(|&(id, at)| blocks[at as usize + j] == id)
}

/// A candidate pair as the hub packs it: the row's record above the
/// column's (which is the greater, so this is `block::pack`'s order).
#[inline(always)]
fn pair(id: u32, g: u32) -> u64 {
    (id as u64) << 32 | g as u64
}

#[inline(always)]
fn scalar_and_pop(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

#[inline(always)]
fn generic_agree_in_any(a: &[u64], b: &[u64], masks: &[u64]) -> bool {
    masks.chunks_exact(a.len()).any(|m| {
        a.iter()
            .zip(b)
            .zip(m)
            .fold(0u64, |acc, ((x, y), k)| acc | ((x ^ y) & k))
            == 0
    })
}

/// Dice from counts, as `f32`.
#[inline(always)]
pub fn dice32(common: u32, pa: u32, pb: u32) -> f32 {
    let t = pa + pb;
    if t == 0 {
        0.0
    } else {
        (2 * common) as f32 / t as f32
    }
}

#[inline(always)]
fn generic_dice_many(
    a: &[u64],
    pa: u32,
    b: &[u64],
    bpop: &[u32],
    out: &mut [f32],
    f: impl Fn(&[u64], &[u64]) -> u32,
) {
    let words = a.len();
    for (j, (bw, &pb)) in b.chunks_exact(words).zip(bpop).enumerate() {
        out[j] = dice32(f(a, bw), pa, pb);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{
        Columns, HELD_MAX, RowPair, dice32, generic_dice_many, is_held, pair, scalar_and_pop,
    };

    /// 1024-bit filters: `a ^ b` stays in two registers, two tests a mask.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512_agree_in_any(a: &[u64], b: &[u64], masks: &[u64]) -> bool {
        debug_assert!(a.len() == 16 && b.len() == 16 && masks.len().is_multiple_of(16));
        // SAFETY: a and b have 16 words each, every mask 16 words.
        unsafe {
            let x0 = _mm512_xor_si512(
                _mm512_loadu_si512(a.as_ptr() as *const _),
                _mm512_loadu_si512(b.as_ptr() as *const _),
            );
            let x1 = _mm512_xor_si512(
                _mm512_loadu_si512(a.as_ptr().add(8) as *const _),
                _mm512_loadu_si512(b.as_ptr().add(8) as *const _),
            );
            let mut m = masks.as_ptr();
            let end = m.add(masks.len());
            while m < end {
                let t0 = _mm512_test_epi64_mask(x0, _mm512_loadu_si512(m as *const _));
                let t1 = _mm512_test_epi64_mask(x1, _mm512_loadu_si512(m.add(8) as *const _));
                if t0 | t1 == 0 {
                    return true;
                }
                m = m.add(16);
            }
            false
        }
    }

    /// 1024-bit filters with AVX2: `a ^ b` stays in four registers, one
    /// test a mask (the portable loop, 16 words of scalar operations a
    /// mask, left `tile_pairs` with 8% of a 1M link's samples on an AVX2
    /// host; decisions §61).
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_agree_in_any(a: &[u64], b: &[u64], masks: &[u64]) -> bool {
        debug_assert!(a.len() == 16 && b.len() == 16 && masks.len().is_multiple_of(16));
        // SAFETY: a and b have 16 words each, every mask 16 words.
        unsafe {
            let l = |p: *const u64| _mm256_loadu_si256(p as *const __m256i);
            let x = [0, 1, 2, 3]
                .map(|t| _mm256_xor_si256(l(a.as_ptr().add(4 * t)), l(b.as_ptr().add(4 * t))));
            let mut m = masks.as_ptr();
            let end = m.add(masks.len());
            while m < end {
                let t = _mm256_or_si256(
                    _mm256_or_si256(
                        _mm256_and_si256(x[0], l(m)),
                        _mm256_and_si256(x[1], l(m.add(4))),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(x[2], l(m.add(8))),
                        _mm256_and_si256(x[3], l(m.add(12))),
                    ),
                );
                if _mm256_testz_si256(t, t) == 1 {
                    return true;
                }
                m = m.add(16);
            }
            false
        }
    }

    #[inline]
    #[target_feature(enable = "popcnt")]
    pub unsafe fn popcnt_and_pop(a: &[u64], b: &[u64]) -> u32 {
        scalar_and_pop(a, b)
    }

    #[target_feature(enable = "popcnt")]
    pub unsafe fn popcnt_dice_many(a: &[u64], pa: u32, b: &[u64], bpop: &[u32], out: &mut [f32]) {
        generic_dice_many(a, pa, b, bpop, out, scalar_and_pop)
    }

    /// Popcounts of the sixteen nibble values, for VPSHUFB (both lanes).
    const NIBBLE_POP: [u8; 32] = [
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    ];

    /// A 1024-bit row (read in place by each AND: held in registers, it
    /// would leave too few for the rest and be spilled), with the lookup
    /// table and nibble mask the AVX2 popcount needs.
    #[derive(Clone, Copy)]
    struct Row2 {
        w: *const u64,
        lut: __m256i,
        low: __m256i,
    }

    impl Row2 {
        /// # Safety
        /// `a` has 16 words and outlives the `Row2`; the CPU has AVX2.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn new(a: &[u64]) -> Row2 {
            debug_assert_eq!(a.len(), 16);
            Row2 {
                w: a.as_ptr(),
                // SAFETY: NIBBLE_POP is 32 bytes, one vector.
                lut: unsafe { _mm256_loadu_si256(NIBBLE_POP.as_ptr() as *const __m256i) },
                low: _mm256_set1_epi8(0x0f),
            }
        }

        /// The common bits of the row and the 1024-bit column at `q`, as
        /// four 64-bit lanes to be summed: each AND's bytes counted by
        /// nibble lookups, the four vectors' byte counts (at most 32 a
        /// byte) added as a tree, then one VPSADBW.
        ///
        /// # Safety
        /// `q` points at 16 readable words; the CPU has AVX2.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn common(&self, q: *const u64) -> __m256i {
            let pop = |t: usize| {
                // SAFETY: words q .. q + 16 are readable (the contract).
                // and so are the row's (Row2::new's contract).
                let (x, w) = unsafe {
                    (
                        _mm256_loadu_si256(q.add(4 * t) as *const __m256i),
                        _mm256_loadu_si256(self.w.add(4 * t) as *const __m256i),
                    )
                };
                let v = _mm256_and_si256(w, x);
                let lo = _mm256_and_si256(v, self.low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), self.low);
                _mm256_add_epi8(
                    _mm256_shuffle_epi8(self.lut, lo),
                    _mm256_shuffle_epi8(self.lut, hi),
                )
            };
            let bytes = _mm256_add_epi8(
                _mm256_add_epi8(pop(0), pop(1)),
                _mm256_add_epi8(pop(2), pop(3)),
            );
            _mm256_sad_epu8(bytes, _mm256_setzero_si256())
        }

        /// The common bits of the row and each of the eight 1024-bit
        /// columns from `q`, as eight 32-bit lanes in column order. Each
        /// column's four lane sums (at most 256) are narrowed by two
        /// unsigned packs, beside the others', then added in pairs
        /// (VPMADDWD) and across the halves: eleven operations for eight
        /// columns.
        ///
        /// # Safety
        /// `q` points at 8 × 16 readable words; the CPU has AVX2.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn common8(&self, q: *const u64) -> __m256i {
            // SAFETY: column t's 16 words are readable (the contract).
            unsafe { narrow8(|t| self.common(q.add(16 * t))) }
        }

        /// The common bits of the row with the eight columns from column
        /// `j` of `b` ([`Row2::common8`]).
        ///
        /// # Safety
        /// Columns `j .. j + 8` exist in `b`; the CPU has AVX2.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn common8_at(&self, b: &[u64], j: usize) -> __m256i {
            debug_assert!(b.len() >= (j + 8) * 16);
            // SAFETY: columns j .. j + 8 exist (the contract).
            unsafe { self.common8(b.as_ptr().add(16 * j)) }
        }
    }

    /// Eight columns' common bits, `c(t)` for column `t` as four 64-bit
    /// lane sums (at most 256 each), as eight 32-bit lanes in column
    /// order: narrowed by two unsigned packs, beside the others', then
    /// added in pairs (VPMADDWD) and across the halves (eleven operations
    /// for eight columns).
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    unsafe fn narrow8(c: impl Fn(usize) -> __m256i) -> __m256i {
        // SAFETY: AVX2 (the contract); no memory is touched.
        unsafe {
            let ones = _mm256_set1_epi16(1);
            // Lane halves: [c0 c0' c1 c1' c2 c2' c3 c3'] (u16) after two
            // packs; the multiply-add sums each column's two.
            let x = _mm256_packus_epi32(
                _mm256_packus_epi32(c(0), c(1)),
                _mm256_packus_epi32(c(2), c(3)),
            );
            let y = _mm256_packus_epi32(
                _mm256_packus_epi32(c(4), c(5)),
                _mm256_packus_epi32(c(6), c(7)),
            );
            let (x, y) = (_mm256_madd_epi16(x, ones), _mm256_madd_epi16(y, ones));
            _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(x, y),
                _mm256_permute2x128_si256::<0x31>(x, y),
            )
        }
    }

    /// What [`avx2_row`] counts with: the common bits of its row with the
    /// eight columns from column `j`, as eight 32-bit lanes.
    trait Count8 {
        /// Whether [`avx2_row`] counts all of a row's steps before it
        /// finishes any (then the columns are at most [`PLANES_MAX`]),
        /// rather than pipelining them (decisions §55).
        const COUNT_FIRST: bool;
        /// # Safety
        /// Columns `j .. j + 8` exist; the CPU has AVX2.
        unsafe fn common8_at(&self, j: usize) -> __m256i;
    }

    /// A row against the columns as they are stored ([`Row2`]).
    struct InPlace<'a> {
        row: Row2,
        b: &'a [u64],
    }

    impl Count8 for InPlace<'_> {
        const COUNT_FIRST: bool = false;
        #[inline(always)]
        unsafe fn common8_at(&self, j: usize) -> __m256i {
            // SAFETY: the contract.
            unsafe { self.row.common8_at(self.b, j) }
        }
    }

    /// The most columns [`avx2_rows_kept`] splits into nibble planes (32
    /// KiB of planes, L1's size on Zen 3); runs of more columns are
    /// counted in place.
    const PLANES_MAX: usize = 64;

    /// The fewest rows for which splitting the columns pays: the split
    /// costs about one pair per column.
    const PLANES_MIN_ROWS: usize = 16;

    /// Columns split once into nibble planes: for each 1024-bit column,
    /// its four 256-bit lanes' low nibbles, then their high nibbles (each
    /// in the low four bits of its byte). A row against them is two ANDs,
    /// two lookups and two adds a lane, against four operations more when
    /// the nibbles are split after the AND (decisions §55).
    ///
    /// # Safety
    /// `b` holds at least `n` columns of 16 words; `planes` has room for
    /// `8n` vectors; the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn split_planes(b: &[u64], n: usize, planes: *mut __m256i) {
        debug_assert!(b.len() >= 16 * n);
        let low = _mm256_set1_epi8(0x0f);
        for c in 0..n {
            for w in 0..4 {
                // SAFETY: column c's 16 words exist, and its 8 planes'
                // room (the contract).
                unsafe {
                    let v = _mm256_loadu_si256(b.as_ptr().add(16 * c + 4 * w) as *const _);
                    let p = planes.add(8 * c);
                    p.add(w).write(_mm256_and_si256(v, low));
                    p.add(4 + w)
                        .write(_mm256_and_si256(_mm256_srli_epi16(v, 4), low));
                }
            }
        }
    }

    /// A row split into nibble planes (held in eight registers) against
    /// columns split by [`split_planes`].
    struct Planes<'a> {
        row: [__m256i; 8],
        lut: __m256i,
        cols: &'a [__m256i],
    }

    impl<'a> Planes<'a> {
        /// # Safety
        /// `a` has 16 words; the CPU has AVX2.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn new(a: &[u64], cols: &'a [__m256i]) -> Planes<'a> {
            debug_assert_eq!(a.len(), 16);
            let low = _mm256_set1_epi8(0x0f);
            let mut row = [low; 8];
            for w in 0..4 {
                // SAFETY: the row's 16 words exist (the contract).
                let v = unsafe { _mm256_loadu_si256(a.as_ptr().add(4 * w) as *const _) };
                row[w] = _mm256_and_si256(v, low);
                row[4 + w] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            }
            Planes {
                row,
                // SAFETY: NIBBLE_POP is 32 bytes, one vector.
                lut: unsafe { _mm256_loadu_si256(NIBBLE_POP.as_ptr() as *const __m256i) },
                cols,
            }
        }

        /// The common bits of the row and column `c`, as four 64-bit lane
        /// sums: each plane's AND counted by one lookup, the eight byte
        /// counts (at most 32 a byte) added as a tree, then one VPSADBW.
        ///
        /// # Safety
        /// Column `c`'s planes exist; the CPU has AVX2.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn common(&self, c: usize) -> __m256i {
            debug_assert!(8 * c + 8 <= self.cols.len());
            // SAFETY: column c's eight planes exist (the contract).
            let q = unsafe { self.cols.as_ptr().add(8 * c) };
            let u = |w: usize| {
                // SAFETY: as above.
                let (l, h) = unsafe { (*q.add(w), *q.add(4 + w)) };
                _mm256_add_epi8(
                    _mm256_shuffle_epi8(self.lut, _mm256_and_si256(self.row[w], l)),
                    _mm256_shuffle_epi8(self.lut, _mm256_and_si256(self.row[4 + w], h)),
                )
            };
            let bytes = _mm256_add_epi8(_mm256_add_epi8(u(0), u(1)), _mm256_add_epi8(u(2), u(3)));
            _mm256_sad_epu8(bytes, _mm256_setzero_si256())
        }
    }

    impl Count8 for Planes<'_> {
        const COUNT_FIRST: bool = true;
        #[inline(always)]
        unsafe fn common8_at(&self, j: usize) -> __m256i {
            // SAFETY: columns j .. j + 8 exist (the contract).
            unsafe { narrow8(|t| self.common(j + t)) }
        }
    }

    /// The Dice of eight pairs from their common bits `c` (a row of
    /// popcount `pa` against the columns from `j`, popcounts `bpop`).
    ///
    /// # Safety
    /// `bpop` has entries `j .. j + 8`; the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dice_of8(c: __m256i, pa: u32, bpop: &[u32], j: usize) -> __m256 {
        debug_assert!(j + 8 <= bpop.len());
        // SAFETY: bpop[j .. j + 8] exists (the contract).
        let pb = unsafe { _mm256_loadu_si256(bpop.as_ptr().add(j) as *const __m256i) };
        dice_ps(_mm256_cvtepi32_ps(c), pa, _mm256_cvtepi32_ps(pb))
    }

    /// [`super::Kernel::dice_many`] for 1024-bit filters with AVX2, eight
    /// columns a step.
    ///
    /// # Safety
    /// The CPU has AVX2 and POPCNT; `out` has a slot per column.
    #[target_feature(enable = "avx2,popcnt")]
    pub unsafe fn avx2_dice_many(a: &[u64], pa: u32, b: &[u64], bpop: &[u32], out: &mut [f32]) {
        let n = bpop.len();
        assert!(a.len() == 16 && b.len() == n * 16 && out.len() >= n);
        // SAFETY: a has 16 words (asserted) and outlives `row`.
        let row = unsafe { Row2::new(a) };
        let mut j = 0;
        while j + 8 <= n {
            // SAFETY: j + 8 <= n columns, popcounts and slots of `out` exist.
            unsafe {
                let d = dice_of8(row.common8_at(b, j), pa, bpop, j);
                _mm256_storeu_ps(out.as_mut_ptr().add(j), d);
            }
            j += 8;
        }
        for j in j..n {
            out[j] = dice32(scalar_and_pop(a, &b[j * 16..(j + 1) * 16]), pa, bpop[j]);
        }
    }

    /// [`super::Kernel::gather`] for 1024-bit filters with AVX2: four
    /// vector loads and stores a row, and its popcount by POPCNT on the
    /// words just loaded.
    ///
    /// # Safety
    /// Every row's 16 words must be in `data`; the CPU has AVX2 and POPCNT.
    #[target_feature(enable = "avx2,popcnt")]
    pub unsafe fn avx2_gather(
        data: &[u64],
        (stride, offset): (usize, usize),
        rows: &[u32],
        out: &mut Vec<u64>,
        pop: &mut Vec<u32>,
    ) {
        // SAFETY: the caller's contract; each copy reads and writes 16 words.
        unsafe {
            gather_rows(data, (stride, offset), rows, (out, pop), |src, dst| {
                for t in 0..4 {
                    let x = _mm256_loadu_si256(src.add(4 * t) as *const __m256i);
                    _mm256_storeu_si256(dst.add(4 * t) as *mut __m256i, x);
                }
                let words = std::slice::from_raw_parts(src, 16);
                words.iter().map(|w| w.count_ones()).sum()
            })
        }
    }

    /// What the gathers share: each of `rows` (filter `g` at words
    /// `g * stride + offset`, 16 long) copied to the end of `out` by
    /// `copy(src, dst)`, which returns its popcount, appended to `pop`.
    ///
    /// # Safety
    /// Every row's 16 words are in `data`; `copy` reads 16 words at `src`
    /// and writes 16 at `dst`, no more.
    #[inline(always)]
    unsafe fn gather_rows(
        data: &[u64],
        (stride, offset): (usize, usize),
        rows: &[u32],
        (out, pop): (&mut Vec<u64>, &mut Vec<u32>),
        copy: impl Fn(*const u64, *mut u64) -> u32,
    ) {
        let n = rows.len();
        out.reserve(n * 16);
        pop.reserve(n);
        let (o, p) = (out.len(), pop.len());
        // SAFETY: sources are in data (the caller's contract); stores go to
        // the capacity reserved above, and the lengths cover exactly what
        // was written.
        unsafe {
            let (dst, pdst) = (out.as_mut_ptr().add(o), pop.as_mut_ptr().add(p));
            for (r, &g) in rows.iter().enumerate() {
                let src = data.as_ptr().add(g as usize * stride + offset);
                *pdst.add(r) = copy(src, dst.add(r * 16));
            }
            out.set_len(o + n * 16);
            pop.set_len(p + n);
        }
    }

    /// [`same_block`] with AVX2: eight columns a comparison.
    ///
    /// # Safety
    /// The CPU has AVX2; `col.len() <= 64`; `out` has an entry per row.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_same_block(col: &[u32], rows: &[u32], none: u32, out: &mut [u64]) {
        let n = col.len();
        debug_assert!(n <= 64 && out.len() >= rows.len());
        let mut v = [_mm256_set1_epi32(none as i32); 8];
        let mut tail = [none; 8];
        for (q, v) in v.iter_mut().enumerate().take(n.div_ceil(8)) {
            let lanes = (n - 8 * q).min(8);
            *v = if lanes == 8 {
                // SAFETY: columns 8q .. 8q + 8 exist.
                unsafe { _mm256_loadu_si256(col.as_ptr().add(8 * q) as *const __m256i) }
            } else {
                tail[..lanes].copy_from_slice(&col[8 * q..]);
                // SAFETY: `tail` holds eight entries.
                unsafe { _mm256_loadu_si256(tail.as_ptr() as *const __m256i) }
            };
        }
        // Lanes past the columns hold `none`, which no row's block equals
        // (rows holding nothing are skipped).
        let steps = n.div_ceil(8);
        for (o, &id) in out.iter_mut().zip(rows) {
            if id != none {
                let x = _mm256_set1_epi32(id as i32);
                let mut b = 0u64;
                for (q, &v) in v.iter().enumerate().take(steps) {
                    let eq = _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, x));
                    b |= (_mm256_movemask_ps(eq) as u64) << (8 * q);
                }
                *o |= b;
            }
        }
    }

    /// One row (record `id`, words `a`) against the columns, counted by
    /// `row` (the same row against the same columns), writing the Dice
    /// and pairs that `held` (as its row `r`) does not leave out, in
    /// column order, from `dice` and `pairs`; returns how many.
    ///
    /// Software-pipelined: each step counts the common bits of eight
    /// columns, then finishes the previous step's eight ([`put8`]), so
    /// that the finishing chain (conversion, division, stores) runs while
    /// the next counts are made rather than after them (about 10% faster
    /// on Zen 3, decisions §53). Against nibble planes (at most 64
    /// columns) every step is counted first, then each finished: the
    /// finishing steps no longer wait behind the counting in the
    /// reorder buffer, and tested tiles were 18% faster (§55).
    ///
    /// # Safety
    /// `a` has 16 words, each column 16; `row` counts those columns;
    /// `dice` and `pairs` have a writable slot per column; `held` answers
    /// for the columns; the CPU has AVX2 and POPCNT.
    #[inline]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn avx2_row<H: Held, C: Count8>(
        (a, pa, id): (&[u64], u32, u32),
        cols: Columns,
        row: &C,
        (held, r): (&H, usize),
        dice: *mut f32,
        pairs: *mut u64,
    ) -> usize {
        let (b, bpop, bids) = cols;
        let n = bpop.len();
        let hi = _mm256_set1_epi64x(((id as u64) << 32) as i64);
        // The eight columns from `j`, counted as `c`, written from slot
        // `done`: how many were kept.
        // SAFETY: callers pass j + 8 <= n and done <= j, so the columns
        // and eight slots of each output exist (the contract).
        let finish = |c: __m256i, j: usize, done: usize| unsafe {
            let out = (dice.add(done), pairs.add(done));
            put8((c, pa, hi), cols, j, held.eight_avx2(r, j), out)
        };
        let mut done = 0;
        let mut j = 0;
        if n >= 8 {
            // SAFETY: columns j .. j + 8 exist whenever j + 8 <= n; each
            // step's put8 writes at most eight slots from done <= its
            // first column, within the n the contract gives.
            unsafe {
                if C::COUNT_FIRST {
                    // At most PLANES_MAX columns (Count8::COUNT_FIRST).
                    assert!(n <= PLANES_MAX);
                    let steps = n / 8;
                    let mut counts = [_mm256_setzero_si256(); PLANES_MAX / 8];
                    for (s, c) in counts.iter_mut().enumerate().take(steps) {
                        *c = row.common8_at(8 * s);
                    }
                    for (s, &c) in counts.iter().enumerate().take(steps) {
                        done += finish(c, 8 * s, done);
                    }
                    j = 8 * steps;
                } else {
                    let mut counted = row.common8_at(0);
                    j = 8;
                    while j + 8 <= n {
                        let next = row.common8_at(j);
                        done += finish(counted, j - 8, done);
                        counted = next;
                        j += 8;
                    }
                    done += finish(counted, j - 8, done);
                }
            }
        }
        for j in j..n {
            if !held.one(r, j) {
                let c = scalar_and_pop(a, &b[j * 16..(j + 1) * 16]);
                // SAFETY: done <= j < n slots (the contract).
                unsafe {
                    *dice.add(done) = dice32(c, pa, bpop[j]);
                    *pairs.add(done) = pair(id, bids[j]);
                }
                done += 1;
            }
        }
        done
    }

    /// For each 8-bit mask of lanes left out, the lanes kept, in order
    /// (then zeros): the indices with which VPERMD packs them to the front.
    const KEEP: [[u32; 8]; 256] = {
        let mut t = [[0u32; 8]; 256];
        let mut m = 0;
        while m < 256 {
            let (mut k, mut lane) = (0, 0);
            while lane < 8 {
                if m >> lane & 1 == 0 {
                    t[m][k] = lane as u32;
                    k += 1;
                }
                lane += 1;
            }
            m += 1;
        }
        t
    };

    /// Write the Dice and pairs of the eight columns from `j` that
    /// `taken` does not leave out (bit `t`: column `j + t`), from the
    /// row's common bits `c`, popcount `pa` and record (`hi`, in the upper
    /// half of each 64-bit lane); returns how many. The kept lanes of the
    /// Dice and of the columns' records are packed to the front by one
    /// permutation each ([`KEEP`]) and stored as whole vectors, without a
    /// branch: where an earlier pass holds pairs, which lanes it takes is
    /// not predictable.
    ///
    /// # Safety
    /// Columns `j .. j + 8` exist; both outputs have eight writable slots;
    /// the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn put8(
        (c, pa, hi): (__m256i, u32, __m256i),
        (_, bpop, bids): Columns,
        j: usize,
        taken: u8,
        (dice, pairs): (*mut f32, *mut u64),
    ) -> usize {
        // SAFETY: columns j .. j + 8 and eight slots of each output exist
        // (the contract); KEEP's rows hold eight indices.
        unsafe {
            let keep = _mm256_loadu_si256(KEEP[taken as usize].as_ptr() as *const __m256i);
            let d = _mm256_permutevar8x32_ps(dice_of8(c, pa, bpop, j), keep);
            let g = _mm256_loadu_si256(bids.as_ptr().add(j) as *const __m256i);
            let g = _mm256_permutevar8x32_epi32(g, keep);
            let p0 = _mm256_or_si256(hi, _mm256_cvtepu32_epi64(_mm256_castsi256_si128(g)));
            let p1 = _mm256_or_si256(hi, _mm256_cvtepu32_epi64(_mm256_extracti128_si256(g, 1)));
            _mm256_storeu_ps(dice, d);
            _mm256_storeu_si256(pairs as *mut __m256i, p0);
            _mm256_storeu_si256(pairs.add(4) as *mut __m256i, p1);
            8 - taken.count_ones() as usize
        }
    }

    /// [`rows_kept`] with AVX2: each two rows' held columns from
    /// `held_of(i)`, then each row by [`avx2_row`], its kept pairs right
    /// after the previous row's. An odd last row is left to the caller.
    ///
    /// # Safety
    /// As for [`rows_kept`]; the CPU has AVX2 and POPCNT.
    #[target_feature(enable = "avx2,popcnt")]
    pub unsafe fn avx2_rows_kept<H: Held>(
        (a, pa, ids): (&[u64], &[u32], &[u32]),
        cols: Columns,
        mut held_of: impl FnMut(usize) -> H,
        dice: *mut f32,
        pairs: *mut u64,
        before: &mut impl FnMut(),
    ) -> usize {
        let (b, n) = (cols.0, cols.1.len());
        let whole = pa.len() & !1;
        let mut room = std::mem::MaybeUninit::<[__m256i; 8 * PLANES_MAX]>::uninit();
        let split = (8..=PLANES_MAX).contains(&n) && whole >= PLANES_MIN_ROWS;
        let planes: &[__m256i] = if split {
            // SAFETY: n <= PLANES_MAX columns of 16 words (the contract);
            // the first 8n vectors are written before the slice is made.
            unsafe {
                let p = room.as_mut_ptr() as *mut __m256i;
                split_planes(b, n, p);
                std::slice::from_raw_parts(p, 8 * n)
            }
        } else {
            &[]
        };
        let mut done = 0;
        let mut i = 0;
        while i < whole {
            before();
            let held = held_of(i);
            for r in 0..2 {
                let a = &a[(i + r) * 16..(i + r + 1) * 16];
                let row = (a, pa[i + r], ids[i + r]);
                let out = (dice.wrapping_add(done), pairs.wrapping_add(done));
                // SAFETY: each row writes at most n slots, and the caller
                // gave (rows & !1) * n of them; `held` answers for the
                // columns (the contract); the row has 16 words, and the
                // planes are the columns' when split.
                done += unsafe {
                    if split {
                        let count = Planes::new(a, planes);
                        avx2_row(row, cols, &count, (&held, r), out.0, out.1)
                    } else {
                        let count = InPlace {
                            row: Row2::new(a),
                            b,
                        };
                        avx2_row(row, cols, &count, (&held, r), out.0, out.1)
                    }
                };
            }
            i += 2;
        }
        done
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub unsafe fn avx512_and_pop(a: &[u64], b: &[u64]) -> u32 {
        let mut acc = _mm512_setzero_si512();
        let mut i = 0;
        while i < a.len() {
            // SAFETY: i + 8 <= len because len % 8 == 0.
            let x = unsafe { _mm512_loadu_si512(a.as_ptr().add(i) as *const _) };
            let y = unsafe { _mm512_loadu_si512(b.as_ptr().add(i) as *const _) };
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_and_si512(x, y)));
            i += 8;
        }
        _mm512_reduce_add_epi64(acc) as u32
    }

    /// Where [`sum8`]'s byte shuffle takes each pair's eight bytes from:
    /// lane `t` of the permuted vector holds the bytes the two packs left
    /// from `v[t]` (their order within a lane does not matter to the sum).
    const SUM8_BYTES: [u8; 64] = [
        0, 2, 16, 18, 32, 34, 48, 50, 1, 3, 17, 19, 33, 35, 49, 51, 4, 6, 20, 22, 36, 38, 52, 54,
        5, 7, 21, 23, 37, 39, 53, 55, 8, 10, 24, 26, 40, 42, 56, 58, 9, 11, 25, 27, 41, 43, 57, 59,
        12, 14, 28, 30, 44, 46, 60, 62, 13, 15, 29, 31, 45, 47, 61, 63,
    ];

    /// Lane `t` of the result: the sum of `v[t]`'s eight lanes, each at
    /// most 128 (two 64-bit popcounts, so 1024-bit filters only). The 64
    /// lanes are narrowed to bytes (one merge of two vectors' dwords a
    /// pair, two packs), regrouped by pair with one byte shuffle and summed
    /// eight bytes a lane by one `vpsadbw`: nine operations where a
    /// transpose-add tree takes 21.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn sum8(v: &[__m512i; 8]) -> __m512i {
        // Lane values fit 32 bits: odd vectors' dwords move up beside the
        // even vectors' (whose upper dwords are zero).
        let merge =
            |e: __m512i, o: __m512i| _mm512_mask_shuffle_epi32::<_MM_PERM_CDAB>(e, 0xAAAA, o);
        let (c0, c1, c2, c3) = (
            merge(v[0], v[1]),
            merge(v[2], v[3]),
            merge(v[4], v[5]),
            merge(v[6], v[7]),
        );
        // Values of at most 128 survive both unsigned saturations.
        let bytes = _mm512_packus_epi16(_mm512_packus_epi32(c0, c1), _mm512_packus_epi32(c2, c3));
        // SAFETY: SUM8_BYTES is 64 readable bytes.
        let idx = unsafe { _mm512_loadu_si512(SUM8_BYTES.as_ptr() as *const _) };
        _mm512_sad_epu8(_mm512_permutexvar_epi8(idx, bytes), _mm512_setzero_si512())
    }

    /// Dice of eight pairs from their common bits (`sums`, one per 64-bit
    /// lane), the first filter's popcount `pa` and the others' `pb`.
    ///
    /// `c / (d / 2)` is `2c / d` to the bit: both are the correctly rounded
    /// quotient of one real number, since `d / 2` (a popcount sum of at
    /// most 2,048, halved) and `2c` are exact in `f32`. Halving the
    /// denominator, which depends only on the popcounts, keeps the doubling
    /// off the chain from the sums to the quotient; the sums are converted
    /// in one instruction.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx2")]
    fn dice8(sums: __m512i, pa: u32, pb: __m256) -> __m256 {
        dice_ps(_mm512_cvtepi64_ps(sums), pa, pb)
    }

    /// [`dice8`] from the common bits as `f32` (exact: at most 1,024), so
    /// that every kernel computes the same quotient the same way.
    #[inline]
    #[target_feature(enable = "avx")]
    fn dice_ps(c: __m256, pa: u32, pb: __m256) -> __m256 {
        let denom = _mm256_add_ps(_mm256_set1_ps(pa as f32), pb);
        let half = _mm256_mul_ps(
            _mm256_max_ps(denom, _mm256_set1_ps(1.0)),
            _mm256_set1_ps(0.5),
        );
        _mm256_div_ps(c, half)
    }

    /// One A against many B. For 1024-bit filters A stays in two registers
    /// and B is streamed; four B filters are processed per step so their
    /// reductions overlap.
    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw,avx512vbmi,avx512dq,avx2")]
    pub unsafe fn avx512_dice_many(a: &[u64], pa: u32, b: &[u64], bpop: &[u32], out: &mut [f32]) {
        let words = a.len();
        if words != 16 {
            for (j, (bw, &pb)) in b.chunks_exact(words).zip(bpop).enumerate() {
                out[j] = dice32(unsafe { avx512_and_pop(a, bw) }, pa, pb);
            }
            return;
        }
        let ap = a.as_ptr() as *const __m512i;
        // SAFETY: a has 16 words = two 512-bit lanes.
        let (a0, a1) = unsafe {
            (
                _mm512_loadu_si512(ap as *const _),
                _mm512_loadu_si512(ap.add(1) as *const _),
            )
        };
        let n = bpop.len();
        let bp = b.as_ptr();
        let pop2 = |j: usize| -> __m512i {
            // SAFETY: j < n, so words j*16 .. j*16+16 are in b.
            unsafe {
                let p = bp.add(j * 16);
                let x0 = _mm512_loadu_si512(p as *const _);
                let x1 = _mm512_loadu_si512(p.add(8) as *const _);
                _mm512_add_epi64(
                    _mm512_popcnt_epi64(_mm512_and_si512(a0, x0)),
                    _mm512_popcnt_epi64(_mm512_and_si512(a1, x1)),
                )
            }
        };
        let mut j = 0;
        // Eight B filters per step: eight lane-wise popcount vectors are
        // summed horizontally together, then Dice is computed for all
        // eight in one f32 vector.
        while j + 8 <= n {
            let v: [__m512i; 8] = std::array::from_fn(|t| pop2(j + t));
            // SAFETY: j + 8 <= n = bpop.len().
            let pb = unsafe { _mm256_loadu_si256(bpop.as_ptr().add(j) as *const __m256i) };
            let d = dice8(sum8(&v), pa, _mm256_cvtepi32_ps(pb));
            // SAFETY: out has at least n >= j + 8 slots.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(j), d) };
            j += 8;
        }
        while j < n {
            out[j] = dice32(_mm512_reduce_add_epi64(pop2(j)) as u32, pa, bpop[j]);
            j += 1;
        }
    }

    /// [`super::Kernel::gather`] for 1024-bit filters: two vector loads
    /// and stores a row, and its popcount from the same registers.
    ///
    /// # Safety
    /// Every row's 16 words must be in `data`.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub unsafe fn avx512_gather(
        data: &[u64],
        (stride, offset): (usize, usize),
        rows: &[u32],
        out: &mut Vec<u64>,
        pop: &mut Vec<u32>,
    ) {
        // SAFETY: the caller's contract; each copy reads and writes 16 words.
        unsafe {
            gather_rows(data, (stride, offset), rows, (out, pop), |src, dst| {
                let x0 = _mm512_loadu_si512(src as *const _);
                let x1 = _mm512_loadu_si512(src.add(8) as *const _);
                _mm512_storeu_si512(dst as *mut _, x0);
                _mm512_storeu_si512(dst.add(8) as *mut _, x1);
                let c = _mm512_add_epi64(_mm512_popcnt_epi64(x0), _mm512_popcnt_epi64(x1));
                _mm512_reduce_add_epi64(c) as u32
            })
        }
    }

    /// Panics unless [`dice_ps`] (which [`dice8`] and the AVX2 kernel
    /// share) equals [`dice32`] for every common count `c` and popcounts
    /// `pa`, `pb` of 1024-bit filters (`c <= pa, pb`).
    ///
    /// # Safety
    /// The CPU must have the features enabled here.
    #[cfg(test)]
    #[target_feature(enable = "avx")]
    pub unsafe fn check_every_dice() {
        let mut got = [0f32; 8];
        for pa in 0..=1024u32 {
            for c in 0..=pa {
                for pb0 in (c..=1024).step_by(8) {
                    let pbs: [f32; 8] = std::array::from_fn(|t| (pb0 + t as u32) as f32);
                    // SAFETY: both arrays hold eight lanes.
                    unsafe {
                        let pb = _mm256_loadu_ps(pbs.as_ptr());
                        let d = dice_ps(_mm256_set1_ps(c as f32), pa, pb);
                        _mm256_storeu_ps(got.as_mut_ptr(), d);
                    }
                    for (t, g) in got.iter().enumerate() {
                        let pb = pb0 + t as u32;
                        if pb <= 1024 {
                            let want = dice32(c, pa, pb);
                            assert_eq!(g.to_bits(), want.to_bits(), "c={c} pa={pa} pb={pb}");
                        }
                    }
                }
            }
        }
    }

    /// [`super::Kernel::dice_many2`] for 1024-bit filters.
    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw,avx512vbmi,avx512dq,avx2")]
    pub unsafe fn avx512_dice_many2(
        a: [&[u64]; 2],
        pa: [u32; 2],
        b: &[u64],
        bpop: &[u32],
        out: [&mut [f32]; 2],
    ) {
        let [o0, o1] = out;
        assert!(o0.len() >= bpop.len() && o1.len() >= bpop.len());
        // SAFETY: both outputs have a slot per column (asserted above).
        unsafe {
            two_rows::<false>(a, pa, b, bpop, [o0.as_mut_ptr(), o1.as_mut_ptr()], None);
        }
    }

    /// Where [`two_rows`] and [`two_rows_kept`] write each row's pairs:
    /// the rows' records, the columns' records, and each row's output.
    pub struct Pairs<'a> {
        pub ids: [u32; 2],
        pub bids: &'a [u32],
        pub out: [*mut u64; 2],
    }

    /// Which of a row's columns an earlier pass holds (so that
    /// [`two_rows_kept`] leaves them out).
    pub trait Held {
        /// Row `r`'s held columns among the eight from `j` (bit `t`:
        /// column `j + t`).
        ///
        /// # Safety
        /// The CPU has AVX-512 F and VL; `j + 8` is at most the number of
        /// columns.
        unsafe fn eight(&self, r: usize, j: usize) -> __mmask8;
        /// [`Held::eight`] with AVX2 only.
        ///
        /// # Safety
        /// The CPU has AVX2; `j + 8` is at most the number of columns.
        unsafe fn eight_avx2(&self, r: usize, j: usize) -> u8;
        /// Whether row `r`'s column `j` is held.
        fn one(&self, r: usize, j: usize) -> bool;
        /// Whether neither row has a held column.
        fn nothing(&self) -> bool;
        /// How many of the `n` columns row 0 has held.
        ///
        /// # Safety
        /// The CPU has AVX-512 F and VL; `n` is the number of columns.
        unsafe fn count0(&self, n: usize) -> usize;
    }

    /// Held columns by block: for each earlier pass holding a row's
    /// record, its block there and where the columns' blocks in that pass
    /// start in `blocks` (one per column).
    pub struct ByBlock<'a> {
        pub blocks: &'a [u32],
        pub held: [[(u32, u32); HELD_MAX]; 2],
        pub len: [usize; 2],
    }

    impl ByBlock<'_> {
        #[inline(always)]
        fn row(&self, r: usize) -> &[(u32, u32)] {
            &self.held[r][..self.len[r]]
        }
    }

    impl Held for ByBlock<'_> {
        #[inline(always)]
        unsafe fn eight(&self, r: usize, j: usize) -> __mmask8 {
            // SAFETY: the trait's contract; each held run has an entry per
            // column (the kernels' callers' contract).
            unsafe { held_mask(self.blocks, self.row(r), j) }
        }
        #[inline(always)]
        unsafe fn eight_avx2(&self, r: usize, j: usize) -> u8 {
            // SAFETY: as for `eight`.
            unsafe { held_mask_avx2(self.blocks, self.row(r), j) }
        }
        #[inline(always)]
        fn one(&self, r: usize, j: usize) -> bool {
            is_held(self.row(r), self.blocks, j)
        }
        #[inline(always)]
        fn nothing(&self) -> bool {
            self.len == [0, 0]
        }
        #[inline(always)]
        unsafe fn count0(&self, n: usize) -> usize {
            // SAFETY: the trait's contract and the kernels' callers'.
            unsafe { taken(self.blocks, self.row(0), n) }
        }
    }

    /// No held columns: the run of an untested tile.
    pub struct Nothing;

    impl Held for Nothing {
        #[inline(always)]
        unsafe fn eight(&self, _: usize, _: usize) -> __mmask8 {
            0
        }
        #[inline(always)]
        unsafe fn eight_avx2(&self, _: usize, _: usize) -> u8 {
            0
        }
        #[inline(always)]
        fn one(&self, _: usize, _: usize) -> bool {
            false
        }
        #[inline(always)]
        fn nothing(&self) -> bool {
            true
        }
        #[inline(always)]
        unsafe fn count0(&self, _: usize) -> usize {
            0
        }
    }

    /// Held columns as one bit per column (at most 64 columns).
    pub struct ByMask(pub [u64; 2]);

    impl Held for ByMask {
        #[inline(always)]
        unsafe fn eight(&self, r: usize, j: usize) -> __mmask8 {
            (self.0[r] >> j) as u8
        }
        #[inline(always)]
        unsafe fn eight_avx2(&self, r: usize, j: usize) -> u8 {
            (self.0[r] >> j) as u8
        }
        #[inline(always)]
        fn one(&self, r: usize, j: usize) -> bool {
            self.0[r] >> j & 1 == 1
        }
        #[inline(always)]
        fn nothing(&self) -> bool {
            self.0[0] | self.0[1] == 0
        }
        #[inline(always)]
        unsafe fn count0(&self, n: usize) -> usize {
            // Only the n columns' bits: one set past them would make row
            // 0's room too small for what it writes.
            (self.0[0] & u64::MAX.checked_shr(64 - n as u32).unwrap_or(0)).count_ones() as usize
        }
    }

    /// Two rows (`rows`: their halves in four registers) against the
    /// eight columns from `j`: their Dice, one vector per row. Each column
    /// is loaded once and ANDed with both rows; each row's eight popcount
    /// vectors are summed by [`sum8`].
    ///
    /// # Safety
    /// Columns `j .. j + 8` of `bp` (16 words each) and of `bpop` exist.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw,avx512vbmi,avx512dq,avx2")]
    unsafe fn eight(
        rows: [__m512i; 4],
        pa: [u32; 2],
        bp: *const u64,
        bpop: *const u32,
        j: usize,
    ) -> [__m256; 2] {
        let [r00, r01, r10, r11] = rows;
        let mut v0 = [_mm512_setzero_si512(); 8];
        let mut v1 = [_mm512_setzero_si512(); 8];
        for t in 0..8 {
            // SAFETY: column j + t exists (the caller's contract).
            let (x0, x1) = unsafe {
                let p = bp.add((j + t) * 16);
                (
                    _mm512_loadu_si512(p as *const _),
                    _mm512_loadu_si512(p.add(8) as *const _),
                )
            };
            v0[t] = _mm512_add_epi64(
                _mm512_popcnt_epi64(_mm512_and_si512(r00, x0)),
                _mm512_popcnt_epi64(_mm512_and_si512(r01, x1)),
            );
            v1[t] = _mm512_add_epi64(
                _mm512_popcnt_epi64(_mm512_and_si512(r10, x0)),
                _mm512_popcnt_epi64(_mm512_and_si512(r11, x1)),
            );
        }
        // SAFETY: bpop[j .. j + 8] exists (the caller's contract).
        let pb = unsafe { _mm256_cvtepi32_ps(_mm256_loadu_si256(bpop.add(j) as *const __m256i)) };
        [dice8(sum8(&v0), pa[0], pb), dice8(sum8(&v1), pa[1], pb)]
    }

    /// Both 16-word rows of `a` in four registers.
    ///
    /// # Safety
    /// Each row has 16 words.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn rows4(a: [&[u64]; 2]) -> [__m512i; 4] {
        debug_assert!(a[0].len() == 16 && a[1].len() == 16);
        // SAFETY: each row has 16 words = two 512-bit lanes.
        unsafe {
            let l = |p: *const u64| _mm512_loadu_si512(p as *const _);
            [
                l(a[0].as_ptr()),
                l(a[0].as_ptr().add(8)),
                l(a[1].as_ptr()),
                l(a[1].as_ptr().add(8)),
            ]
        }
    }

    /// Two rows against a run of columns, eight columns a step
    /// ([`eight`]), each row's Dice to `out[r]`; with `PAIRS`, the pairs
    /// `ids[r] << 32 | bids[j]` are written beside them in the same step.
    ///
    /// # Safety
    /// `a` holds two 16-word rows, `b` 16 words per entry of `bpop`;
    /// `out[r]` (and with `PAIRS`, `pairs.out[r]`) has `bpop.len()`
    /// writable slots; `bids.len() == bpop.len()`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw,avx512vbmi,avx512dq,avx2")]
    pub unsafe fn two_rows<const PAIRS: bool>(
        a: [&[u64]; 2],
        pa: [u32; 2],
        b: &[u64],
        bpop: &[u32],
        out: [*mut f32; 2],
        pairs: Option<Pairs>,
    ) -> [usize; 2] {
        debug_assert!(PAIRS == pairs.is_some());
        // SAFETY: each row has 16 words (the caller's contract).
        let rows = unsafe { rows4(a) };
        let n = bpop.len();
        let (ids, bids, po) = pairs.map_or(([0; 2], &[][..], [std::ptr::null_mut(); 2]), |p| {
            (p.ids, p.bids, p.out)
        });
        let high = |id: u32| _mm512_set1_epi64(((id as u64) << 32) as i64);
        let hi = [high(ids[0]), high(ids[1])];
        let mut j = 0;
        while j + 8 <= n {
            // SAFETY: j + 8 <= n: columns, popcounts, member ids and every
            // output's slots j .. j + 8 exist (the caller's contract).
            unsafe {
                let d = eight(rows, pa, b.as_ptr(), bpop.as_ptr(), j);
                _mm256_storeu_ps(out[0].add(j), d[0]);
                _mm256_storeu_ps(out[1].add(j), d[1]);
                if PAIRS {
                    let g = _mm512_cvtepu32_epi64(_mm256_loadu_si256(
                        bids.as_ptr().add(j) as *const __m256i
                    ));
                    _mm512_storeu_si512(po[0].add(j) as *mut _, _mm512_or_si512(hi[0], g));
                    _mm512_storeu_si512(po[1].add(j) as *mut _, _mm512_or_si512(hi[1], g));
                }
            }
            j += 8;
        }
        while j < n {
            let bw = &b[j * 16..(j + 1) * 16];
            for r in 0..2 {
                // SAFETY: the CPU has the features this function enables; j < n
                // is within every output's slots.
                unsafe {
                    *out[r].add(j) = dice32(avx512_and_pop(a[r], bw), pa[r], bpop[j]);
                    if PAIRS {
                        *po[r].add(j) = pair(ids[r], bids[j]);
                    }
                }
            }
            j += 1;
        }
        [n, n]
    }

    /// [`two_rows`] with pairs, for a [`RowPair`] against [`Columns`]:
    /// row 0's Dice and pairs at `dice` and `pairs`, row 1's right after
    /// (`n` columns each).
    ///
    /// # Safety
    /// Both rows have 16 words; `dice` and `pairs` have `2 * n` writable
    /// slots.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw,avx512vbmi,avx512dq,avx2")]
    pub unsafe fn two_rows_with_pairs(
        RowPair { a, pa, ids }: RowPair,
        (b, bpop, bids): Columns,
        dice: *mut f32,
        pairs: *mut u64,
    ) {
        let n = bpop.len();
        // SAFETY: the caller's contract covers both rows' n slots.
        unsafe {
            two_rows::<true>(
                a,
                pa,
                b,
                bpop,
                [dice, dice.add(n)],
                Some(Pairs {
                    ids,
                    bids,
                    out: [pairs, pairs.add(n)],
                }),
            );
        }
    }

    /// Each two rows of a run (`rows`: filters side by side, popcounts,
    /// records) against the columns, keeping only the pairs no earlier
    /// pass holds ([`two_rows_kept`]; rows `i` and `i + 1`'s held columns
    /// from `held_of(i)`), in one function so that no row pair's arguments
    /// pass through memory. Kept pairs go row after row from the start of
    /// `dice` and `pairs`; returns how many. `before` runs before each row
    /// pair. An odd last row is left to the caller.
    ///
    /// # Safety
    /// Rows and columns have 16 words each; `dice` and `pairs` have
    /// `(rows & !1) * n` writable slots; every `Held` that `held_of` gives
    /// answers for the `n` columns.
    #[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq,avx512bw,avx512vbmi,avx512dq,avx2")]
    pub unsafe fn rows_kept<H: Held>(
        (a, pa, ids): (&[u64], &[u32], &[u32]),
        (b, bpop, bids): Columns,
        mut held_of: impl FnMut(usize) -> H,
        dice: *mut f32,
        pairs: *mut u64,
        before: &mut impl FnMut(),
    ) -> usize {
        let n = bpop.len();
        let mut done = 0;
        let mut i = 0;
        while i + 1 < pa.len() {
            before();
            let held = held_of(i);
            let rows = [&a[i * 16..(i + 1) * 16], &a[(i + 1) * 16..(i + 2) * 16]];
            let (d, p) = (dice.wrapping_add(done), pairs.wrapping_add(done));
            let ids = [ids[i], ids[i + 1]];
            if held.nothing() {
                // SAFETY: rows i and i + 1 have 16 words each; with nothing
                // left out each row writes n slots from `done`, and done +
                // 2n <= (i + 2) * n, as every earlier row pair wrote at
                // most 2n.
                unsafe {
                    let rows = RowPair {
                        a: rows,
                        pa: [pa[i], pa[i + 1]],
                        ids,
                    };
                    two_rows_with_pairs(rows, (b, bpop, bids), d, p);
                }
                done += 2 * n;
            } else {
                // SAFETY: as above; `held` answers for the n columns (the
                // caller's contract). Row 0 writes its kept0 pairs within
                // a room of kept0 slots from `done`, row 1 its pairs right
                // after, within the 2n - kept0 left.
                unsafe {
                    let kept0 = n - held.count0(n);
                    let kept = two_rows_kept(
                        rows,
                        [pa[i], pa[i + 1]],
                        b,
                        bpop,
                        [d, d.add(kept0)],
                        [kept0, 2 * n - kept0],
                        Pairs {
                            ids,
                            bids,
                            out: [p, p.add(kept0)],
                        },
                        held,
                    );
                    debug_assert_eq!(kept[0], kept0);
                    done += kept[0] + kept[1];
                }
            }
            i += 2;
        }
        done
    }

    /// Which of the `n` columns (at most 64, in `col`) hold the same block
    /// as each of `rows` (block indices; [`u32::MAX`]-like `none` entries
    /// hold nothing): bit `t` of `out[r]` for column `t`, ORed in.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW; `col.len() <= 64`; `out` has an entry
    /// per row.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn same_block(col: &[u32], rows: &[u32], none: u32, out: &mut [u64]) {
        let n = col.len();
        debug_assert!(n <= 64 && out.len() >= rows.len());
        if n == 0 {
            return;
        }
        let mut v = [_mm512_setzero_si512(); 4];
        for (q, v) in v.iter_mut().enumerate().take(n.div_ceil(16)) {
            let lanes = (n - 16 * q).min(16);
            let m: __mmask16 = ((1u32 << lanes) - 1) as u16;
            // SAFETY: lanes past the column's end are masked off.
            *v = unsafe { _mm512_maskz_loadu_epi32(m, col.as_ptr().add(16 * q) as *const i32) };
        }
        // Masked-off lanes read as zero: a row in block 0 matches them, so
        // only the n columns' bits are kept.
        let cols = u64::MAX >> (64 - n);
        // Each row against the first `$q` vectors of columns, held in
        // registers rather than an array indexed in a loop.
        macro_rules! each {
            ($($q:literal),+) => {
                for (o, &id) in out.iter_mut().zip(rows) {
                    if id != none {
                        let x = _mm512_set1_epi32(id as i32);
                        let mut b = 0u64;
                        $(b |= (_mm512_cmpeq_epi32_mask(v[$q], x) as u64) << (16 * $q);)+
                        *o |= b & cols;
                    }
                }
            };
        }
        match n.div_ceil(16) {
            1 => each!(0),
            2 => each!(0, 1),
            3 => each!(0, 1, 2),
            _ => each!(0, 1, 2, 3),
        }
    }

    /// How many of the `n` columns some `(block, at)` of `held` holds
    /// (`blocks[at + j] == block`), eight columns a step.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and VL; each held run of `blocks` has `n`
    /// entries.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2")]
    pub unsafe fn taken(blocks: &[u32], held: &[(u32, u32)], n: usize) -> usize {
        let mut count = 0;
        let mut j = 0;
        while j + 8 <= n {
            // SAFETY: j + 8 <= n entries of each held run (the caller's
            // contract).
            count += unsafe { held_mask(blocks, held, j) }.count_ones() as usize;
            j += 8;
        }
        count + (j..n).filter(|&j| is_held(held, blocks, j)).count()
    }

    /// Which of the eight columns from `j` some `(block, at)` of `held`
    /// holds (`blocks[at + j + t] == block`).
    ///
    /// # Safety
    /// The CPU has AVX-512 F and VL; each held run of `blocks` has entries
    /// `j .. j + 8`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2")]
    unsafe fn held_mask(blocks: &[u32], held: &[(u32, u32)], j: usize) -> __mmask8 {
        let mut taken: __mmask8 = 0;
        for &(id, at) in held {
            // SAFETY: entries at + j .. at + j + 8 exist (the caller's
            // contract).
            let c = unsafe {
                _mm256_loadu_si256(blocks.as_ptr().add(at as usize + j) as *const __m256i)
            };
            taken |= _mm256_cmpeq_epi32_mask(c, _mm256_set1_epi32(id as i32));
        }
        taken
    }

    /// [`held_mask`] with AVX2 only.
    ///
    /// # Safety
    /// The CPU has AVX2; each held run of `blocks` has entries `j .. j + 8`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn held_mask_avx2(blocks: &[u32], held: &[(u32, u32)], j: usize) -> u8 {
        let mut taken = 0;
        for &(id, at) in held {
            // SAFETY: entries at + j .. at + j + 8 exist (the contract).
            let c = unsafe {
                _mm256_loadu_si256(blocks.as_ptr().add(at as usize + j) as *const __m256i)
            };
            let eq = _mm256_cmpeq_epi32(c, _mm256_set1_epi32(id as i32));
            taken |= _mm256_movemask_ps(_mm256_castsi256_ps(eq)) as u8;
        }
        taken
    }

    /// [`two_rows`] writing only the pairs no earlier pass holds, and
    /// their Dice: each step asks `held` which of its eight columns each
    /// row leaves out and compresses what is kept into place. Returns how
    /// many pairs each row wrote.
    ///
    /// # Safety
    /// As for [`two_rows`] with pairs, except that row `r`'s outputs have
    /// `room[r]` writable slots, at least as many as its kept pairs: a
    /// step stores whole vectors while they fit the room and only the kept
    /// lanes where it ends. `held` answers for `bpop.len()` columns.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq,avx512bw,avx512vbmi,avx512dq,avx2")]
    pub unsafe fn two_rows_kept(
        a: [&[u64]; 2],
        pa: [u32; 2],
        b: &[u64],
        bpop: &[u32],
        out: [*mut f32; 2],
        room: [usize; 2],
        pairs: Pairs,
        held: impl Held,
    ) -> [usize; 2] {
        // SAFETY: each row has 16 words (the caller's contract).
        let rows = unsafe { rows4(a) };
        let n = bpop.len();
        let Pairs { ids, bids, out: po } = pairs;
        let high = |id: u32| _mm512_set1_epi64(((id as u64) << 32) as i64);
        let hi = [high(ids[0]), high(ids[1])];
        let mut done = [0usize; 2];
        let mut j = 0;
        while j + 8 <= n {
            // SAFETY: j + 8 <= n: columns, popcounts, member ids and each
            // held run's j .. j + 8 exist; stores go to slots done[r] ..
            // done[r] + 8 <= j + 8 of each output (the caller's contract).
            unsafe {
                let d = eight(rows, pa, b.as_ptr(), bpop.as_ptr(), j);
                let g = _mm512_cvtepu32_epi64(_mm256_loadu_si256(
                    bids.as_ptr().add(j) as *const __m256i
                ));
                let taken = [held.eight(0, j), held.eight(1, j)];
                if taken[0] | taken[1] == 0 && done[0] + 8 <= room[0] {
                    // The usual case: nothing earlier holds any; whole
                    // vectors, as the untested kernel stores them.
                    _mm256_storeu_ps(out[0].add(done[0]), d[0]);
                    _mm256_storeu_ps(out[1].add(done[1]), d[1]);
                    _mm512_storeu_si512(po[0].add(done[0]) as *mut _, _mm512_or_si512(hi[0], g));
                    _mm512_storeu_si512(po[1].add(done[1]) as *mut _, _mm512_or_si512(hi[1], g));
                    done[0] += 8;
                    done[1] += 8;
                    j += 8;
                    continue;
                }
                for r in 0..2 {
                    let taken = taken[r];
                    let p = _mm512_or_si512(hi[r], g);
                    let (d, p, kept) = if taken == 0 {
                        // The usual case: nothing earlier holds any.
                        (d[r], p, 8)
                    } else {
                        // Compressed in registers (a compressing store to
                        // memory is slow on some CPUs).
                        let keep = !taken;
                        (
                            _mm256_maskz_compress_ps(keep, d[r]),
                            _mm512_maskz_compress_epi64(keep, p),
                            keep.count_ones() as usize,
                        )
                    };
                    if r == 1 || done[0] + 8 <= room[0] {
                        // Whole vectors, into room past the count (row 1's
                        // room, 2n - kept0 >= n, always has them).
                        _mm256_storeu_ps(out[r].add(done[r]), d);
                        _mm512_storeu_si512(po[r].add(done[r]) as *mut _, p);
                    } else {
                        // Only the kept lanes, where the room ends (row
                        // 1's pairs follow row 0's).
                        let lanes: __mmask8 = ((1u16 << kept) - 1) as u8;
                        _mm256_mask_storeu_ps(out[r].add(done[r]), lanes, d);
                        _mm512_mask_storeu_epi64(po[r].add(done[r]) as *mut _, lanes, p);
                    }
                    done[r] += kept;
                }
            }
            j += 8;
        }
        while j < n {
            let bw = &b[j * 16..(j + 1) * 16];
            for r in 0..2 {
                if held.one(r, j) {
                    continue;
                }
                // SAFETY: the CPU has the features this function enables;
                // done[r] <= j < n is within every output's slots.
                unsafe {
                    *out[r].add(done[r]) = dice32(avx512_and_pop(a[r], bw), pa[r], bpop[j]);
                    *po[r].add(done[r]) = pair(ids[r], bids[j]);
                }
                done[r] += 1;
            }
            j += 1;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bloom::popcount;

    fn rnd(n: usize, seed: u64) -> Vec<u64> {
        let mut next = crate::testing::xorshift(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
        (0..n).map(|_| next()).collect()
    }

    #[test]
    fn band_agreement_is_the_same_in_every_kernel() {
        let a = rnd(16, 3);
        for flips in [0usize, 1, 3, 40] {
            let mut b = a.clone();
            for f in 0..flips {
                b[(f * 7) % 16] ^= 1 << ((f * 13) % 64);
            }
            // Masks: one bit each where a and b differ or agree, a band of
            // the first words only, and an empty list.
            let mut masks = Vec::new();
            for bit in [0usize, 13, 64 * 7 + 13, 1000] {
                let mut m = vec![0u64; 16];
                m[bit / 64] |= 1 << (bit % 64);
                masks.extend(m);
            }
            let want: Vec<bool> = masks
                .chunks(16)
                .map(|m| (0..16).all(|w| (a[w] ^ b[w]) & m[w] == 0))
                .collect();
            for k in Kernel::available() {
                for n in 0..=4 {
                    assert_eq!(
                        k.agree_in_any(&a, &b, &masks[..n * 16]),
                        want[..n].iter().any(|&x| x),
                        "{k:?} flips={flips} masks={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_band_disagreeing_in_any_one_word_disagrees_in_every_kernel() {
        let a = rnd(16, 9);
        for w in 0..16 {
            for bit in [0usize, 31, 63] {
                let mut b = a.clone();
                b[w] ^= 1 << bit;
                // A band of eight bits, one in each of eight words, one of
                // which is the bit that differs; then the same band moved
                // off it (bit + 1 in word w), after the first.
                let band = |shift: usize| {
                    let mut m = vec![0u64; 16];
                    for t in 0..8 {
                        let x = (w + 2 * t) % 16;
                        m[x] |= 1 << ((if x == w { bit + shift } else { 5 * t }) % 64);
                    }
                    m
                };
                let (on, off) = (band(0), band(1));
                let both: Vec<u64> = on.iter().chain(&off).copied().collect();
                for k in Kernel::available() {
                    assert!(!k.agree_in_any(&a, &b, &on), "{k:?} word {w} bit {bit}");
                    assert!(k.agree_in_any(&a, &b, &off), "{k:?} word {w} bit {bit}");
                    assert!(k.agree_in_any(&a, &b, &both), "{k:?} word {w} bit {bit}");
                    assert!(k.agree_in_any(&a, &a, &on), "{k:?} word {w} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn every_kernel_agrees_with_scalar() {
        for words in [8usize, 16, 4, 24] {
            let a = rnd(words, 1);
            let b = rnd(words * 37, 2);
            let bpop: Vec<u32> = b.chunks_exact(words).map(popcount).collect();
            let pa = popcount(&a);
            let mut want = vec![0f32; 37];
            generic_dice_many(&a, pa, &b, &bpop, &mut want, scalar_and_pop);
            for k in Kernel::available() {
                let mut got = vec![0f32; 37];
                k.dice_many(&a, pa, &b, &bpop, &mut got);
                assert_eq!(got, want, "{k:?} words={words}");
                for (j, bw) in b.chunks_exact(words).enumerate() {
                    assert_eq!(k.and_popcount(&a, bw), scalar_and_pop(&a, bw), "{k:?}");
                    let _ = j;
                }
            }
        }
    }

    /// The fused kernel appends what two `dice_many` rows and their pairs
    /// give, after what the outputs held, at every length through two
    /// steps and a tail.
    #[test]
    fn dice_and_pairs_of_two_rows_are_appended_in_order() {
        let words = 16;
        let a = rnd(2 * words, 5);
        let b = rnd(words * 45, 6);
        let bpop: Vec<u32> = b.chunks_exact(words).map(popcount).collect();
        let bids: Vec<u32> = (0..45).map(|j| 1000 + 3 * j).collect();
        let (a0, a1) = a.split_at(words);
        let pa = [popcount(a0), popcount(a1)];
        for n in [0usize, 1, 7, 8, 9, 16, 23, 45] {
            let (bn, pn, idn) = (&b[..n * words], &bpop[..n], &bids[..n]);
            let mut want = vec![0f32; 2 * n];
            let (w0, w1) = want.split_at_mut(n);
            generic_dice_many(a0, pa[0], bn, pn, w0, scalar_and_pop);
            generic_dice_many(a1, pa[1], bn, pn, w1, scalar_and_pop);
            let want_pairs: Vec<u64> = [7u64, 9]
                .iter()
                .flat_map(|&id| idn.iter().map(move |&g| id << 32 | g as u64))
                .collect();
            for k in Kernel::available() {
                let (mut dice, mut pairs) = (vec![-2f32], vec![42u64]);
                let rows = RowPair {
                    a: [a0, a1],
                    pa,
                    ids: [7, 9],
                };
                k.dice_pairs2(rows, (bn, pn, idn), &mut dice, &mut pairs);
                assert_eq!(dice[0], -2.0, "{k:?}");
                assert_eq!(pairs[0], 42, "{k:?}");
                assert_eq!(&dice[1..], &want[..], "{k:?} n={n}");
                assert_eq!(&pairs[1..], &want_pairs[..], "{k:?} n={n}");
            }
        }
    }

    /// Every Dice a 1024-bit kernel can compute (every common count with
    /// every pair of popcounts it fits, empty filters included) equals the
    /// scalar `2c / (pa + pb)` to the bit.
    #[test]
    fn every_dice_of_1024_bit_filters_is_exact() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has the features (checked above).
            unsafe { x86::check_every_dice() };
            return;
        }
        eprintln!("no AVX here: the vector Dice was not checked");
    }

    /// A rectangle of rows against columns appends each row's Dice and
    /// pairs in row order, for even and odd numbers of rows (the last
    /// taken alone) and every kind of column count, calling `before` once
    /// per kernel call.
    #[test]
    fn rows_against_columns_append_row_after_row() {
        let words = 16;
        let a = rnd(17 * words, 9);
        let b = rnd(65 * words, 10);
        let pa: Vec<u32> = a.chunks_exact(words).map(popcount).collect();
        let bpop: Vec<u32> = b.chunks_exact(words).map(popcount).collect();
        let ids: Vec<u32> = (0..17).collect();
        let bids: Vec<u32> = (0..65).map(|j| 100 + j).collect();
        // From 16 rows and 8 to 64 columns the AVX2 kernel splits the
        // columns into nibble planes.
        for rows in [0usize, 1, 2, 3, 4, 5, 16, 17] {
            for n in [0usize, 1, 8, 9, 23, 64, 65] {
                let (bn, pn, idn) = (&b[..n * words], &bpop[..n], &bids[..n]);
                let mut want_d = vec![-2f32];
                let mut want_p = vec![42u64];
                for i in 0..rows {
                    let mut d = vec![0f32; n];
                    generic_dice_many(
                        &a[i * words..(i + 1) * words],
                        pa[i],
                        bn,
                        pn,
                        &mut d,
                        scalar_and_pop,
                    );
                    want_d.extend(d);
                    want_p.extend(idn.iter().map(|&g| (i as u64) << 32 | g as u64));
                }
                for k in Kernel::available() {
                    let (mut d, mut p, mut calls) = (vec![-2f32], vec![42u64], 0);
                    k.dice_pairs_rows(
                        (&a[..rows * words], &pa[..rows], &ids[..rows]),
                        (bn, pn, idn),
                        (&mut d, &mut p),
                        || calls += 1,
                    );
                    assert_eq!((&d, &p), (&want_d, &want_p), "{k:?} rows={rows} n={n}");
                    assert_eq!(calls, rows.div_ceil(2), "{k:?}");
                }
            }
        }
    }

    /// The kept pairs and their Dice are what testing each pair of the
    /// fused kernel's output against the held blocks leaves, for no, one
    /// and several earlier passes, at every length through two steps and
    /// a tail, for one to five, 16 and 17 rows (pairs of rows and an odd
    /// last one),
    /// after what the outputs held; given by block and (up to 64 columns)
    /// as bits, in every kernel.
    #[test]
    fn kept_pairs_of_rows_are_those_no_earlier_block_holds() {
        let words = 16;
        let a = rnd(17 * words, 7);
        let b = rnd(words * 70, 8);
        let pa: Vec<u32> = a.chunks_exact(words).map(popcount).collect();
        let bpop: Vec<u32> = b.chunks_exact(words).map(popcount).collect();
        let bids: Vec<u32> = (0..70).map(|j| 500 + j).collect();
        let ids: Vec<u32> = (0..17).map(|r| 11 + 2 * r).collect();
        // Three earlier passes' blocks per column (few values, many hits),
        // each pass's run of 70 side by side.
        let blocks: Vec<u32> = (0..3u64)
            .flat_map(|k| rnd(70, 20 + k).into_iter().map(|x| (x % 3) as u32))
            .collect();
        // Each row's (block, at) held runs, by case.
        let cases: [[Vec<(u32, u32)>; 5]; 3] = [
            Default::default(),
            [vec![(1, 0)], vec![], vec![(2, 70)], vec![], vec![(0, 140)]],
            [
                vec![(0, 0), (2, 70)],
                vec![(1, 70), (0, 140), (2, 0)],
                vec![(2, 140)],
                vec![(0, 0), (1, 70), (2, 140)],
                vec![(1, 0), (1, 140)],
            ],
        ];
        for n in [0usize, 1, 7, 8, 9, 16, 23, 45, 64, 70] {
            let (bn, pn, idn) = (&b[..n * words], &bpop[..n], &bids[..n]);
            // From 16 rows and 8 to 64 columns the AVX2 kernel splits
            // the columns into nibble planes (row r is held as row r % 5).
            for rows in [1, 2, 3, 4, 5, 16, 17] {
                for held in &cases {
                    let out = |r: usize, j: usize| {
                        held[r % 5]
                            .iter()
                            .any(|&(id, at)| blocks[at as usize + j] == id)
                    };
                    let mut want = (vec![-2f32], vec![42u64]);
                    for r in 0..rows {
                        let mut all = vec![0f32; n];
                        let ar = &a[r * words..(r + 1) * words];
                        generic_dice_many(ar, pa[r], bn, pn, &mut all, scalar_and_pop);
                        for j in (0..n).filter(|&j| !out(r, j)) {
                            want.0.push(all[j]);
                            want.1.push((ids[r] as u64) << 32 | idn[j] as u64);
                        }
                    }
                    let bits: Vec<u64> = (0..rows)
                        .map(|r| (0..n).filter(|&j| out(r, j)).map(|j| 1u64 << j).sum())
                        .collect();
                    let run = (&a[..rows * words], &pa[..rows], &ids[..rows]);
                    for k in Kernel::available() {
                        let (mut d, mut p) = (vec![-2f32], vec![42u64]);
                        let mut calls = 0;
                        let held_of = |r: usize, buf: &mut [(u32, u32); HELD_MAX]| {
                            buf[..held[r % 5].len()].copy_from_slice(&held[r % 5]);
                            held[r % 5].len()
                        };
                        k.dice_pairs_rows_kept(
                            run,
                            (bn, pn, idn),
                            (&blocks, held_of),
                            (&mut d, &mut p),
                            || calls += 1,
                        );
                        assert_eq!((&d, &p), (&want.0, &want.1), "{k:?} n={n} rows={rows}");
                        assert_eq!(calls, rows.div_ceil(2), "{k:?}: one call a row pair");
                        if n <= 64 {
                            // Bits past the columns are ignored.
                            let past = u64::MAX.checked_shl(n as u32).unwrap_or(0);
                            for extra in [0, past] {
                                let bits: Vec<u64> = bits.iter().map(|&b| b | extra).collect();
                                let (mut d, mut p) = (vec![-2f32], vec![42u64]);
                                k.dice_pairs_rows_masked(
                                    run,
                                    (bn, pn, idn),
                                    &bits,
                                    (&mut d, &mut p),
                                    || {},
                                );
                                let what = format!("{k:?} n={n} rows={rows} bits {extra:x}");
                                assert_eq!((d, p), want.clone(), "{what}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Each row's bits are the columns holding its block, ORed over
    /// passes, and a row in no block (`none`) gets none, in every kernel,
    /// at every column count to 64 (masked tails included).
    #[test]
    fn same_block_bits_are_the_columns_sharing_the_block() {
        for n in [0usize, 1, 15, 16, 17, 33, 63, 64] {
            let passes: Vec<Vec<u32>> = (0..2u64)
                .map(|k| {
                    rnd(n + 5, 40 + k)
                        .into_iter()
                        .map(|x| if x % 7 == 0 { u32::MAX } else { (x % 4) as u32 })
                        .collect()
                })
                .collect();
            let want: Vec<u64> = (0..5)
                .map(|r| {
                    let mut m = 0u64;
                    for p in &passes {
                        let (col, id) = (&p[5..], p[r]);
                        for (t, &c) in col.iter().enumerate() {
                            if id != u32::MAX && c == id {
                                m |= 1 << t;
                            }
                        }
                    }
                    m
                })
                .collect();
            for k in Kernel::available() {
                let mut got = vec![0u64; 5];
                for p in &passes {
                    k.same_block(&p[5..], &p[..5], u32::MAX, &mut got);
                }
                assert_eq!(got, want, "{k:?} n={n}");
            }
        }
    }

    /// Lane sums from 0 to 128 (full filters, empty ones and every count
    /// in between), where a narrowing of the sums would overflow first.
    #[test]
    fn full_and_skewed_filters_sum_exactly() {
        let words = 16;
        let full = vec![u64::MAX; words];
        // Filter t sets the low `(t * 7 + w) % 65` bits of word w, so lanes
        // hold every count; the first two are full and empty.
        let mut b: Vec<u64> = (0..40usize)
            .flat_map(|t| {
                (0..words).map(move |w| match (t * 7 + w) % 65 {
                    64 => u64::MAX,
                    k => (1u64 << k) - 1,
                })
            })
            .collect();
        b[..words].fill(u64::MAX);
        b[words..2 * words].fill(0);
        let bpop: Vec<u32> = b.chunks_exact(words).map(popcount).collect();
        let half: Vec<u64> = (0..words)
            .map(|w| if w % 2 == 0 { u64::MAX } else { 0 })
            .collect();
        for a in [&full, &half] {
            let pa = popcount(a);
            let mut want = vec![0f32; 40];
            generic_dice_many(a, pa, &b, &bpop, &mut want, scalar_and_pop);
            assert_eq!(want[0], dice32(pa, pa, 1024));
            for k in Kernel::available() {
                let mut got = vec![-1f32; 40];
                k.dice_many(a, pa, &b, &bpop, &mut got);
                assert_eq!(got, want, "{k:?}");
                let (mut o0, mut o1) = (vec![-1f32; 40], vec![-1f32; 40]);
                k.dice_many2([a, &full], [pa, 1024], &b, &bpop, [&mut o0, &mut o1]);
                assert_eq!(o0, want, "{k:?}");
                let mut w1 = vec![0f32; 40];
                generic_dice_many(&full, 1024, &b, &bpop, &mut w1, scalar_and_pop);
                assert_eq!(o1, w1, "{k:?}");
            }
        }
    }

    #[test]
    fn two_rows_at_once_equal_one_row_at_a_time() {
        for words in [16usize, 8] {
            let a = rnd(2 * words, 3);
            // An empty filter too (Dice 0, not a division by zero).
            let mut b = rnd(words * 45, 4);
            b[..words].fill(0);
            let bpop: Vec<u32> = b.chunks_exact(words).map(popcount).collect();
            let (a0, a1) = a.split_at(words);
            let pa = [popcount(a0), popcount(a1)];
            // Every length through two whole steps of eight and a tail.
            for n in [0usize, 1, 7, 8, 9, 16, 23, 45] {
                let (bn, pn) = (&b[..n * words], &bpop[..n]);
                let mut want = [vec![0f32; n], vec![0f32; n]];
                generic_dice_many(a0, pa[0], bn, pn, &mut want[0], scalar_and_pop);
                generic_dice_many(a1, pa[1], bn, pn, &mut want[1], scalar_and_pop);
                for k in Kernel::available() {
                    let (mut o0, mut o1) = (vec![-1f32; n], vec![-1f32; n]);
                    k.dice_many2([a0, a1], pa, bn, pn, [&mut o0, &mut o1]);
                    assert_eq!([o0, o1], want, "{k:?} words={words} n={n}");
                }
            }
        }
    }

    #[test]
    fn a_gathered_tile_holds_the_rows_and_their_popcounts() {
        for words in [16usize, 8] {
            // Filters of `words` at stride words + 3, offset 2.
            let stride = words + 3;
            let data = rnd(stride * 40 + 2, 7);
            let rows = [0u32, 39, 5, 5, 17];
            for k in Kernel::available() {
                let (mut out, mut pop) = (vec![9u64], vec![9u32]);
                k.gather(&data, (stride, 2, words), &rows, &mut out, &mut pop);
                assert_eq!((out[0], pop[0]), (9, 9), "{k:?} kept what was there");
                for (r, &g) in rows.iter().enumerate() {
                    let f = &data[g as usize * stride + 2..][..words];
                    assert_eq!(&out[1 + r * words..1 + (r + 1) * words], f, "{k:?}");
                    assert_eq!(pop[1 + r], popcount(f), "{k:?}");
                }
                assert_eq!(
                    (out.len(), pop.len()),
                    (1 + rows.len() * words, 1 + rows.len())
                );
            }
        }
    }
}
