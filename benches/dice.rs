//! Dice kernel throughput: 1024-bit filters, one A against a block of B,
//! per kernel (scalar, popcnt, avx512 where available), single thread and
//! all cores; and the real emission of candidate pairs from block tiles
//! (`block_tiles`: gathering each block's CLKs, the kernel row by row,
//! agency runs, the test against an earlier pass, writing pairs and Dice)
//! beside the machine's popcount limit. `cargo bench --bench dice`.

use criterion::{Criterion, Throughput, criterion_group};
use rayon::prelude::*;

use bloomlink::bloom::popcount;
use bloomlink::extract::Keys;
use bloomlink::hub::compare::Kernel;

// The binary's allocator, so that large arrays sit on huge pages as in a job.
#[global_allocator]
static ALLOC: bloomlink::alloc::HugePages = bloomlink::alloc::HugePages;

fn filters(n: usize, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n * 16)
        .map(|_| {
            // ~37% fill, like a real CLK.
            let mut w = 0u64;
            for _ in 0..2 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w |= x & (x >> 1);
            }
            w
        })
        .collect()
}

/// The machine's limit for 1024-bit AND-popcount: two rows (`a`, 32 words)
/// against every filter of `b`, two VPOPCNTQ per pair, no per-pair
/// reduction or output (what any Dice kernel must at least do). Each
/// filter of `b` is loaded once for both rows, as the kernels' register
/// tile does: with one row a pass, loading `b` from L2 bounds the loop
/// (about 850 against 1,220 M pairs/s on the reference host, decisions
/// §38), not the popcounts. Four or more rows a pass are no faster.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn popcount_limit(a: &[u64], b: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    assert_eq!(a.len(), 32, "two 1024-bit rows");
    unsafe {
        let l = |p: *const u64| _mm512_loadu_si512(p as *const _);
        let p = a.as_ptr();
        let (r00, r01, r10, r11) = (l(p), l(p.add(8)), l(p.add(16)), l(p.add(24)));
        // Four independent accumulators so the adds do not serialise.
        let mut acc = [_mm512_setzero_si512(); 4];
        for f2 in b.chunks_exact(32) {
            for t in 0..2 {
                let q = f2.as_ptr().add(16 * t);
                let (x0, x1) = (l(q), l(q.add(8)));
                let pop = |r, x| _mm512_popcnt_epi64(_mm512_and_si512(r, x));
                acc[2 * t] = _mm512_add_epi64(acc[2 * t], pop(r00, x0));
                acc[2 * t] = _mm512_add_epi64(acc[2 * t], pop(r01, x1));
                acc[2 * t + 1] = _mm512_add_epi64(acc[2 * t + 1], pop(r10, x0));
                acc[2 * t + 1] = _mm512_add_epi64(acc[2 * t + 1], pop(r11, x1));
            }
        }
        let s = _mm512_add_epi64(
            _mm512_add_epi64(acc[0], acc[1]),
            _mm512_add_epi64(acc[2], acc[3]),
        );
        _mm512_reduce_add_epi64(s) as u64
    }
}

/// The limit on a CPU with AVX2 but not AVX-512 (Haswell to Zen 3), the
/// fastest of the loops tried (decisions §53): `b` taken 32 columns at a
/// time (a tile's width, 8 KiB of planes in L1), each column split once
/// into its low and high nibbles ("planes"), then each row of `a` split
/// likewise into eight registers and counted against the 32: per 256-bit
/// lane two ANDs, two nibble lookups (VPSHUFB) and two adds, four
/// columns' byte counts (at most 128 a byte) summed by one VPSADBW. No
/// per-pair reduction or output. The plain nibble count (split after the
/// AND, one row a pass) runs at about 0.7x this; two rows a pass, four
/// rows against row planes, or POPCNT on the integer units for a quarter
/// of the words are no faster.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn popcount_limit_avx2(a: &[u64], b: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    assert_eq!(a.len() % 16, 0, "1024-bit rows");
    assert_eq!(b.len() % (16 * 32), 0, "columns 32 at a time");
    const NIBBLE_POP: [u8; 32] = [
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    ];
    unsafe {
        let l = |p: *const u64| _mm256_loadu_si256(p as *const __m256i);
        let lut = l(NIBBLE_POP.as_ptr() as *const u64);
        let low = _mm256_set1_epi8(0x0f);
        let lo = |v: __m256i| _mm256_and_si256(v, low);
        let hi = |v: __m256i| _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        let zero = _mm256_setzero_si256();
        let mut planes = [zero; 32 * 8];
        let mut acc = zero;
        for chunk in b.chunks_exact(16 * 32) {
            for (c, f) in chunk.chunks_exact(16).enumerate() {
                for w in 0..4 {
                    let v = l(f.as_ptr().add(4 * w));
                    planes[8 * c + w] = lo(v);
                    planes[8 * c + 4 + w] = hi(v);
                }
            }
            for row in a.chunks_exact(16) {
                let p = row.as_ptr();
                let v = [l(p), l(p.add(4)), l(p.add(8)), l(p.add(12))];
                let (rl, rh) = (v.map(lo), v.map(hi));
                for c4 in planes.chunks_exact(32) {
                    let column = |t: usize| {
                        let q = &c4[8 * t..8 * t + 8];
                        let u = |w: usize| {
                            _mm256_add_epi8(
                                _mm256_shuffle_epi8(lut, _mm256_and_si256(rl[w], q[w])),
                                _mm256_shuffle_epi8(lut, _mm256_and_si256(rh[w], q[4 + w])),
                            )
                        };
                        _mm256_add_epi8(_mm256_add_epi8(u(0), u(1)), _mm256_add_epi8(u(2), u(3)))
                    };
                    let bytes = _mm256_add_epi8(
                        _mm256_add_epi8(column(0), column(1)),
                        _mm256_add_epi8(column(2), column(3)),
                    );
                    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(bytes, zero));
                }
            }
        }
        let mut o = [0u64; 4];
        _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, acc);
        o.iter().sum()
    }
}

/// The limit with the scalar POPCNT instruction: two rows a pass, each
/// column word loaded once for both.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn popcount_limit_popcnt(a: &[u64], b: &[u64]) -> u64 {
    assert_eq!(a.len(), 32, "two 1024-bit rows");
    let (r0, r1) = a.split_at(16);
    let mut acc = [0u64; 4];
    for f in b.chunks_exact(16) {
        for w in 0..16 {
            let x = f[w];
            acc[w & 1] += (r0[w] & x).count_ones() as u64;
            acc[2 + (w & 1)] += (r1[w] & x).count_ones() as u64;
        }
    }
    acc.iter().sum()
}

/// A minimal loop: rows against columns, returning a checksum.
#[cfg(target_arch = "x86_64")]
type Limit = fn(&[u64], &[u64]) -> u64;

/// The minimal loops this CPU can run, each as a function of `a` (64
/// rows) against `b` (4,096 columns) returning a checksum: AVX-512
/// (`popcount_limit`), AVX2 and POPCNT. The machine's limit is the fastest.
#[cfg(target_arch = "x86_64")]
fn limits() -> Vec<(&'static str, Limit)> {
    let mut v: Vec<(&'static str, Limit)> = Vec::new();
    if Kernel::available().contains(&Kernel::Avx512) {
        v.push(("popcount_limit", |a, b| {
            // SAFETY: the CPU has AVX-512 VPOPCNTDQ (checked above).
            a.chunks_exact(32)
                .map(|aw| unsafe { popcount_limit(aw, b) })
                .sum()
        }));
    }
    if Kernel::available().contains(&Kernel::Avx2) {
        v.push(("popcount_limit_avx2", |a, b| {
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { popcount_limit_avx2(a, b) }
        }));
    }
    if Kernel::available().contains(&Kernel::Popcnt) {
        v.push(("popcount_limit_popcnt", |a, b| {
            // SAFETY: the CPU has POPCNT (checked above).
            a.chunks_exact(32)
                .map(|aw| unsafe { popcount_limit_popcnt(aw, b) })
                .sum()
        }));
    }
    v
}

fn bench(c: &mut Criterion) {
    let (na, nb) = (64usize, 4096usize);
    let a = filters(na, 3);
    let b = filters(nb, 5);
    let apop: Vec<u32> = a.chunks_exact(16).map(popcount).collect();
    let bpop: Vec<u32> = b.chunks_exact(16).map(popcount).collect();
    let mut g = c.benchmark_group("dice_1024bit");
    g.throughput(Throughput::Elements((na * nb) as u64));
    for k in Kernel::available() {
        let mut out = vec![0f32; nb];
        g.bench_function(format!("{}_1thread", k.name()), |bch| {
            bch.iter(|| {
                for (i, aw) in a.chunks_exact(16).enumerate() {
                    k.dice_many(aw, apop[i], &b, &bpop, &mut out);
                }
                out[0]
            })
        });
    }
    // Two rows per pass over B (the register tile block tiles use).
    let k = Kernel::detect();
    let (mut o0, mut o1) = (vec![0f32; nb], vec![0f32; nb]);
    g.bench_function(format!("{}_two_rows_1thread", k.name()), |bch| {
        bch.iter(|| {
            for (i, aw) in a.chunks_exact(32).enumerate() {
                let (a0, a1) = aw.split_at(16);
                let pa = [apop[2 * i], apop[2 * i + 1]];
                k.dice_many2([a0, a1], pa, &b, &bpop, [&mut o0, &mut o1]);
            }
            o0[0] + o1[0]
        })
    });
    #[cfg(target_arch = "x86_64")]
    for (name, f) in limits() {
        g.bench_function(format!("{name}_1thread"), |bch| bch.iter(|| f(&a, &b)));
    }
    let k = Kernel::detect();
    let big_a = filters(1024, 7);
    let big_apop: Vec<u32> = big_a.chunks_exact(16).map(popcount).collect();
    g.throughput(Throughput::Elements((1024 * nb) as u64));
    g.bench_function(format!("{}_all_cores", k.name()), |bch| {
        bch.iter(|| {
            big_a
                .par_chunks(16 * 64)
                .enumerate()
                .map(|(ci, chunk)| {
                    let mut out = vec![0f32; nb];
                    let mut s = 0f32;
                    for (i, aw) in chunk.chunks_exact(16).enumerate() {
                        k.dice_many(aw, big_apop[ci * 64 + i], &b, &bpop, &mut out);
                        s += out[i];
                    }
                    s
                })
                .sum::<f32>()
        })
    });
    g.finish();
}

/// Blocks of `size` members (half from each of two agencies) over `n`
/// records: each agency's records permuted by `mult` and cut into runs.
fn block_keys(n: usize, size: usize, mult: u64) -> Keys {
    let half = n / 2;
    (0..n)
        .map(|g| {
            // A bijection within each agency's half (a power of two; mult odd).
            let pos = ((g % half) as u64).wrapping_mul(mult) % half as u64;
            Some((pos / (size as u64 / 2)) as u128)
        })
        .collect()
}

/// Candidate pairs emitted from block tiles and handed to a consumer part
/// by part, one thread, beside the minimal popcount loop: blocks of 64
/// (1,024 cross-agency pairs each) and of 16, over 65,536 records (8 MiB
/// of CLKs, beyond L2 as real jobs are).
fn block_tiles(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut g = c.benchmark_group("block_tiles");
    for size in [64usize, 16] {
        let t = Tiles::new(size);
        for (name, pass) in [("no_earlier_pass", 0u32), ("tested_against_one_pass", 1)] {
            let run = t.run(&one, pass);
            g.throughput(Throughput::Elements(run()));
            g.bench_function(format!("blocks_of_{size}_{name}_1thread"), |bch| {
                bch.iter(&run)
            });
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        let (a, b) = (filters(64, 3), filters(4096, 5));
        g.throughput(Throughput::Elements(64 * 4096));
        for (name, f) in limits() {
            g.bench_function(format!("{name}_1thread"), |bch| bch.iter(|| f(&a, &b)));
        }
    }
    g.finish();
}

/// The `block_tiles` set-up: blocks of `size` members (half from each of
/// two agencies) over 65,536 records (8 MiB of CLKs, beyond L2 as real
/// jobs are), in two passes (`first`, and `second` whose pairs are tested
/// against `first`'s blocks), grouped as a job groups them.
struct Tiles {
    ds: bloomlink::hub::load::Dataset,
    passes: Vec<bloomlink::hub::stream::Pass>,
    owners: bloomlink::hub::stream::Owners,
}

impl Tiles {
    fn new(size: usize) -> Tiles {
        use bloomlink::hub::load::Dataset;
        use bloomlink::hub::stream::{Owners, group_pass};
        let n = 1usize << 16;
        let agency: Vec<u16> = (0..n).map(|g| (g >= n / 2) as u16).collect();
        let ds = Dataset::of_clks(16, filters(n, 11), agency);
        let pass = |mult, name| {
            group_pass(
                &ds,
                &block_keys(n, size, mult),
                name,
                "key",
                false,
                u64::MAX,
            )
        };
        let passes = vec![pass(0x9E37_79B1, "first"), pass(0x85EB_CA6B, "second")];
        let owners = Owners::new(&passes, &[], 16);
        Tiles { ds, passes, owners }
    }

    /// Emitting the chunk of pass `pass` on `pool`, handing each work
    /// item's part to a consumer (as a job hands it to comparison; this one
    /// only counts its pairs): the pairs of blocks it held.
    fn run<'a>(&'a self, pool: &'a rayon::ThreadPool, pass: u32) -> impl Fn() -> u64 + 'a {
        use bloomlink::hub::stream::emit_with;
        let chunk = self.chunk(pass);
        move || {
            let emit = || {
                emit_with(&self.ds, &self.passes, &self.owners, false, chunk, |p| {
                    p.pairs.len()
                })
            };
            pool.install(emit).1.block_pairs
        }
    }

    /// The one chunk of pass `pass`.
    fn chunk(&self, pass: u32) -> bloomlink::hub::stream::Chunk {
        *bloomlink::hub::stream::chunks(&self.passes, u64::MAX)
            .iter()
            .find(|c| c.pass == pass)
            .expect("a chunk per pass")
    }
}

/// `BLOOMLINK_RATIO=ROUNDS cargo bench --bench dice`: instead of criterion,
/// the block tiles (of 64 and of 16) and each minimal loop the CPU can run,
/// interleaved in short runs for ROUNDS rounds on one thread, each timed at
/// its fastest round; ratios are to the fastest minimal loop (the
/// machine's limit). On a shared machine other tenants only ever add time,
/// so the fastest of many interleaved rounds compares them under the same
/// conditions, where criterion's consecutive groups can each meet
/// different neighbours.
#[cfg(target_arch = "x86_64")]
fn ratio(rounds: usize) {
    use std::time::Instant;
    println!("kernel: {}", Kernel::detect().name());
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let (t, t16) = (Tiles::new(64), Tiles::new(16));
    let (a, b) = (filters(64, 3), filters(4096, 5));
    let limits: Vec<_> = limits()
        .into_iter()
        .map(|(name, f)| {
            let (a, b) = (&a, &b);
            let run = move || {
                // Four times 64 × 4,096 pairs: about as many as the tiles' 2^20.
                let x: u64 = (0..4).map(|_| f(a, b)).sum();
                std::hint::black_box(x);
                4 * 64 * 4096u64
            };
            (name, run)
        })
        .collect();
    let one = &one;
    type Run<'a> = (&'a str, Box<dyn Fn() -> u64 + 'a>);
    let mut runs: Vec<Run> = Vec::new();
    for (name, run) in limits {
        runs.push((name, Box::new(run)));
    }
    let nl = runs.len();
    runs.push(("blocks_of_64_no_earlier_pass", Box::new(t.run(one, 0))));
    runs.push((
        "blocks_of_64_tested_against_one_pass",
        Box::new(t.run(one, 1)),
    ));
    runs.push(("blocks_of_16_no_earlier_pass", Box::new(t16.run(one, 0))));
    runs.push((
        "blocks_of_16_tested_against_one_pass",
        Box::new(t16.run(one, 1)),
    ));
    // BLOOMLINK_RATIO_ONLY=TEXT keeps the minimal loops and the runs
    // whose names hold TEXT (to profile one).
    if let Ok(only) = std::env::var("BLOOMLINK_RATIO_ONLY") {
        let mut k = 0;
        runs.retain(|(name, _)| {
            k += 1;
            k <= nl || name.contains(&only)
        });
    }
    let mut best = vec![f64::MAX; runs.len()];
    let mut pairs = vec![0u64; runs.len()];
    for _ in 0..rounds {
        for (k, (_, f)) in runs.iter().enumerate() {
            let clock = Instant::now();
            pairs[k] = f();
            best[k] = best[k].min(clock.elapsed().as_secs_f64());
        }
    }
    let rate = |k: usize| pairs[k] as f64 / best[k];
    let limit = (0..nl).map(rate).fold(0.0, f64::max);
    for (k, (name, _)) in runs.iter().enumerate() {
        println!(
            "{name}: {:.0} M pairs/s (fastest of {rounds} rounds), {:.2}x the minimal loop",
            rate(k) / 1e6,
            limit / rate(k)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench, block_tiles
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    if let Ok(r) = std::env::var("BLOOMLINK_RATIO") {
        ratio(r.parse().expect("BLOOMLINK_RATIO: a number of rounds"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
