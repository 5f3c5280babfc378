//! Privacy/quality trade-off of the hardening options on FEBRL4:
//! `cargo bench --bench privacy`. For each option it encodes FEBRL4 A and B,
//! links them with the defaults (F1 against the truth), and runs the
//! library's frequency attack on A's given-name and surname filters with a
//! public frequency list (B's plaintext names, a sample of the same
//! population), counting correct re-identifications against A's plaintext;
//! and the pattern-mining attack on the same filters and list.
//! `BLOOMLINK_PRIVACY_OPTIONS=TEXT` runs only the options whose label
//! contains TEXT.

use std::collections::HashMap;
use std::path::Path;

use bloomlink::agency::normalise::clean_text;
use bloomlink::agency::{EncodeOptions, Encoder, Schema, Secret};
use bloomlink::report::attack::frequency_attack;
use bloomlink::report::pattern::{PatternParams, pattern_attack};

fn names(csv: &Path, col: usize) -> Vec<String> {
    let mut r = csv::Reader::from_path(csv).unwrap();
    r.records()
        .map(|x| {
            let mut o = String::new();
            clean_text(&x.unwrap()[col], &mut o);
            o
        })
        .collect()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data/febrl");
    if !data.join("febrl4_a.csv").exists() {
        eprintln!("SKIPPED: ../shared/data is not present");
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // The shipped schema without its hardening lines is the "plain" baseline.
    let base: String = std::fs::read_to_string(root.join("config/febrl4.toml"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("salt") && !l.starts_with("blip"))
        .map(|l| format!("{l}\n"))
        .collect();
    let options: [(&str, &str); 18] = [
        ("plain", ""),
        ("xor_folds = 1", "xor_folds = 1\n"),
        ("blip = 0.02", "blip = 0.02\n"),
        ("blip = 0.05", "blip = 0.05\n"),
        ("blip = 0.10", "blip = 0.1\n"),
        ("blip = 0.05, xor_folds = 1", "blip = 0.05\nxor_folds = 1\n"),
        ("blip = 0.15", "blip = 0.15\n"),
        ("blip = 0.20", "blip = 0.2\n"),
        (
            "salt = year(date_of_birth)",
            "salt = \"year(date_of_birth)\"\n",
        ),
        (
            "salt + blip = 0.05",
            "salt = \"year(date_of_birth)\"\nblip = 0.05\n",
        ),
        (
            "salt + blip = 0.10",
            "salt = \"year(date_of_birth)\"\nblip = 0.1\n",
        ),
        (
            "salt names only",
            "salt = \"year(date_of_birth)\"\nsalted = [\"given_name\", \"surname\"]\n",
        ),
        (
            "salt names only + blip = 0.05",
            "salt = \"year(date_of_birth)\"\nsalted = [\"given_name\", \"surname\"]\nblip = 0.05\n",
        ),
        ("balance = true", "balance = true\n"),
        ("balance + blip = 0.05", "balance = true\nblip = 0.05\n"),
        (
            "swap (names share a key)",
            "swap = [\"given_name\", \"surname\"]\n",
        ),
        (
            "salt names only + swap (shipped demo schemas)",
            "salt = \"year(date_of_birth)\"\nsalted = [\"given_name\", \"surname\"]\nswap = [\"given_name\", \"surname\"]\n",
        ),
        (
            "balance + salt names only",
            "balance = true\nsalt = \"year(date_of_birth)\"\nsalted = [\"given_name\", \"surname\"]\n",
        ),
    ];
    let d = tempfile::tempdir().unwrap();
    let secret = Secret::from_bytes(b"privacy bench key".to_vec()).unwrap();
    let truth_given = names(&data.join("febrl4_a.csv"), 1);
    let truth_sur = names(&data.join("febrl4_a.csv"), 2);
    let reference = |col: usize| {
        let mut c: HashMap<String, f64> = HashMap::new();
        for n in names(&data.join("febrl4_b.csv"), col) {
            if !n.is_empty() {
                *c.entry(n).or_default() += 1.0;
            }
        }
        let mut v: Vec<(String, f64)> = c.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    };
    let (ref_given, ref_sur) = (reference(1), reference(2));
    println!(
        "| option | FEBRL4 F1 | given_name: exact-match attack | given_name: clustering attack | given_name: pattern mining | given_name: pattern mining on the CLK | surname: exact | surname: clustering | surname: pattern mining | surname: pattern mining on the CLK |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // `BLOOMLINK_PRIVACY_OPTIONS=swap` runs only the options whose label
    // contains that text.
    let only = std::env::var("BLOOMLINK_PRIVACY_OPTIONS").ok();
    for (label, extra) in options {
        if only.as_deref().is_some_and(|o| !label.contains(o)) {
            continue;
        }
        let text = format!("{extra}{base}");
        let sp = d.path().join("s.toml");
        std::fs::write(&sp, text).unwrap();
        let enc = Encoder::new(Schema::load(&sp).unwrap(), &secret).unwrap();
        let mut ex = Vec::new();
        for side in ["a", "b"] {
            let p = d.path().join(format!("{side}.parquet"));
            enc.encode_file(
                &data.join(format!("febrl4_{side}.csv")),
                &p,
                &EncodeOptions::new(side),
            )
            .unwrap();
            ex.push(p);
        }
        let out = d.path().join("out");
        let opts = bloomlink::hub::LinkOptions::new(
            ex.clone(),
            out.clone(),
            bloomlink::hub::JobConfig::default(),
        );
        let o = bloomlink::cli::link::link_and_report(
            &opts,
            Some(&data.join("febrl4_truth.csv")),
            vec![],
        )
        .unwrap();
        let f1 = o.evaluation.unwrap().f1;
        let e = bloomlink::extract::read_extract(&ex[0]).unwrap();
        let attack = |fi: usize, reference: &[(String, f64)], truth: &[String], cluster| {
            let f = &e.fields[fi];
            let t = |i: usize| Some(truth[i].clone());
            frequency_attack(
                &f.name,
                "FEBRL4 B names",
                e.len,
                |i| f.valid[i].then(|| f.get(i)),
                reference,
                Some(&t),
                cluster,
            )
        };
        let pct = |r: bloomlink::report::attack::AttackResult| {
            format!(
                "{:.2}% (est. {:.1}%)",
                100.0 * r.actual_share.unwrap(),
                100.0 * r.estimated_share
            )
        };
        // The clustering attacker tries several similarity thresholds and keeps the best.
        let best = |fi: usize, reference: &[(String, f64)], truth: &[String]| {
            [0.9, 0.75, 0.6, 0.5]
                .iter()
                .map(|&t| attack(fi, reference, truth, Some(t)))
                .max_by(|a, b| a.actual_share.unwrap().total_cmp(&b.actual_share.unwrap()))
                .unwrap()
        };
        // Pattern mining on a field's own filters (`clk` = false) or on the
        // record-level CLKs, where the other fields' bits are noise.
        let mine_on = |fi: usize, reference: &[(String, f64)], truth: &[String], clk: bool| {
            let f = if clk { &e.clk } else { &e.fields[fi] };
            let t = |i: usize| Some(truth[i].clone());
            let r = pattern_attack(
                &e.fields[fi].name,
                e.len,
                f.words,
                |i| (clk || f.valid[i]).then(|| f.get(i)),
                reference,
                Some(&t),
                PatternParams {
                    k: 15,
                    ..PatternParams::default()
                },
            );
            format!(
                "{:.2}% ({} of {} patterns right)",
                100.0 * r.actual_share.unwrap(),
                r.patterns_correct.unwrap(),
                r.patterns
            )
        };
        println!(
            "| {label} | {f1:.4} | {} | {} | {} | {} | {} | {} | {} | {} |",
            pct(attack(0, &ref_given, &truth_given, None)),
            pct(best(0, &ref_given, &truth_given)),
            mine_on(0, &ref_given, &truth_given, false),
            mine_on(0, &ref_given, &truth_given, true),
            pct(attack(1, &ref_sur, &truth_sur, None)),
            pct(best(1, &ref_sur, &truth_sur)),
            mine_on(1, &ref_sur, &truth_sur, false),
            mine_on(1, &ref_sur, &truth_sur, true),
        );
    }
}
