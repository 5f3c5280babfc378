//! Encoding throughput on FEBRL-shaped records: the native schema
//! (config/febrl4.toml) and the clkhash doubleHash schema, single thread and
//! all cores. Uses ../shared/data when present (FEBRL4 A, 5,000 records,
//! repeated to 100,000 rows), else synthetic rows. `cargo bench --bench encode`.

use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use bloomlink::agency::{EncodeOptions, Encoder, Schema, Secret};

fn input(dir: &Path) -> (PathBuf, usize, bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let febrl = root.join("../shared/data/febrl/febrl4_a.csv");
    let text = std::fs::read_to_string(&febrl).ok();
    let path = dir.join("in.csv");
    match text {
        Some(t) => {
            let mut lines = t.lines();
            let header = lines.next().unwrap();
            let body: Vec<&str> = lines.collect();
            let mut out = String::from(header);
            out.push('\n');
            let rows = 100_000;
            for i in 0..rows {
                let l = body[i % body.len()];
                // Unique record ids; values repeat as in a real extract.
                let rest = &l[l.find(',').unwrap()..];
                out.push_str(&format!("r{i}{rest}\n"));
            }
            std::fs::write(&path, out).unwrap();
            (path, rows, true)
        }
        None => {
            eprintln!("reference data absent: benchmarking on synthetic rows");
            let s = bloomlink::synth::generate(&bloomlink::synth::Params {
                people: 100_000,
                agencies: 1,
                seed: 1,
                overlap: 1.0,
            });
            let p = bloomlink::synth::write(&s, dir, 1).unwrap();
            let n = s.agencies[0].len();
            (p[0].clone(), n, false)
        }
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (path, rows, febrl) = input(dir.path());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut schemas = vec![];
    if febrl {
        schemas.push(("native", root.join("config/febrl4.toml")));
        schemas.push((
            "clkhash",
            root.join("../shared/data/clkhash-vectors/febrl4-schema-doublehash.json"),
        ));
    } else {
        schemas.push(("native", root.join("config/demo/social_care.toml")));
    }
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(rows as u64));
    for (name, sp) in schemas {
        for threads in [1usize, 0] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let label = format!(
                "{name}_{}",
                if threads == 1 {
                    "1thread".into()
                } else {
                    format!("{}threads", pool.current_num_threads())
                }
            );
            let enc = Encoder::new(
                Schema::load(&sp).unwrap(),
                &Secret::from_bytes(b"bench".to_vec()).unwrap(),
            )
            .unwrap();
            let out = dir.path().join(format!("{label}.parquet"));
            g.bench_function(&label, |b| {
                b.iter(|| {
                    pool.install(|| {
                        enc.encode_file(&path, &out, &EncodeOptions::new("a"))
                            .unwrap()
                            .counts
                            .encoded
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
