//! Dice kernel throughput: 1024-bit filters, one A against a block of B,
//! per kernel (scalar, popcnt, avx512 where available), single thread and
//! all cores. `cargo bench --bench dice`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

use bloomlink::bloom::popcount;
use bloomlink::hub::compare::Kernel;

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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
