//! `bloomlink link`, `evaluate` and `report` end to end.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use bloomlink::agency::{EncodeOptions, Encoder, Schema, Secret};
use bloomlink::hub::evaluate::read_links;
use common::{bin, synthetic};

fn link(extracts: &[PathBuf], out: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = Command::new(bin());
    c.arg("link");
    for e in extracts {
        c.arg("--extract").arg(e);
    }
    c.arg("--out")
        .arg(out)
        .args(extra)
        .env("BLOOMLINK_JOB_KEY", "test job key");
    c.output().unwrap()
}

fn evaluate(links: &Path, truth: &Path) -> serde_json::Value {
    let o = Command::new(bin())
        .arg("evaluate")
        .arg("--links")
        .arg(links)
        .arg("--truth")
        .arg(truth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn febrl4_probabilistic_f1_at_least_0_99_and_report_estimates_are_close() {
    let Some(data) = common::reference_dir("FEBRL4 linkage accuracy") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let schema =
        Schema::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/febrl4.toml")).unwrap();
    let enc = Encoder::new(
        schema,
        &Secret::from_bytes(b"febrl test key".to_vec()).unwrap(),
    )
    .unwrap();
    let mut ex = Vec::new();
    for side in ["a", "b"] {
        let p = d.path().join(format!("{side}.parquet"));
        enc.encode_file(
            &data.join(format!("febrl/febrl4_{side}.csv")),
            &p,
            &EncodeOptions::new(side),
        )
        .unwrap();
        ex.push(p);
    }
    let truth = data.join("febrl/febrl4_truth.csv");
    let out = d.path().join("out");
    let o = link(&ex, &out, &["--truth", truth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = evaluate(&out.join("links.parquet"), &truth);
    let f1 = e["f1"].as_f64().unwrap();
    eprintln!("FEBRL4 probabilistic: {e}");
    assert!(f1 >= 0.99, "FEBRL4 probabilistic F1 {f1}");
    // The report's true figures equal evaluate's; its estimates are within 0.03 of them.
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["truth"]["evaluation"]["precision"], e["precision"]);
    assert_eq!(r["truth"]["evaluation"]["recall"], e["recall"]);
    let (ep, er) = (
        r["estimates"]["precision"].as_f64().unwrap(),
        r["estimates"]["recall"].as_f64().unwrap(),
    );
    eprintln!("FEBRL4 estimated precision {ep:.4} recall {er:.4}");
    assert!(
        (ep - e["precision"].as_f64().unwrap()).abs() <= 0.03,
        "estimated precision {ep}"
    );
    assert!(
        (er - e["recall"].as_f64().unwrap()).abs() <= 0.03,
        "estimated recall {er}"
    );
    // Dice mode, reported beside it.
    let cfg = d.path().join("dice.toml");
    std::fs::write(&cfg, "[scoring]\nmode = \"dice\"\n").unwrap();
    let out2 = d.path().join("dice");
    assert!(
        link(&ex, &out2, &["--config", cfg.to_str().unwrap()])
            .status
            .success()
    );
    let e2 = evaluate(&out2.join("links.parquet"), &truth);
    eprintln!("FEBRL4 dice mode (threshold 0.8): {e2}");
    assert!(e2["f1"].as_f64().unwrap() > 0.9);
    // Rerun into the same folder: byte-identical outputs.
    let before: Vec<Vec<u8>> = ["links.parquet", "pairs.parquet"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    assert!(link(&ex, &out, &[]).status.success());
    for (f, b) in ["links.parquet", "pairs.parquet"].iter().zip(before) {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            b,
            "{f} changed on rerun"
        );
    }
}

#[test]
fn incompatible_extracts_are_refused_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let (ex, _, csvs) = synthetic(d.path(), 300, 2, 5, b"key one");
    let out = d.path().join("out");
    let refuse = |extracts: &[PathBuf], needle: &str| {
        let o = link(extracts, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "expected `{needle}` in {err}");
        assert!(!out.join("links.parquet").exists());
    };
    // Same agency twice.
    refuse(&[ex[0].clone(), ex[0].clone()], "both come from agency");
    // A different key.
    let other = d.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let sp = d.path().join("school.toml");
    let enc = Encoder::new(
        Schema::load(&sp).unwrap(),
        &Secret::from_bytes(b"key two".to_vec()).unwrap(),
    )
    .unwrap();
    let k2 = other.join("school.parquet");
    enc.encode_file(&csvs[1], &k2, &EncodeOptions::new("school"))
        .unwrap();
    refuse(&[ex[0].clone(), k2], "different secrets");
    // A different schema (k changed).
    let alt = std::fs::read_to_string(&sp)
        .unwrap()
        .replacen("k = 20", "k = 21", 1);
    let asp = other.join("alt.toml");
    std::fs::write(&asp, alt).unwrap();
    let enc = Encoder::new(
        Schema::load(&asp).unwrap(),
        &Secret::from_bytes(b"key one".to_vec()).unwrap(),
    )
    .unwrap();
    let s2 = other.join("school2.parquet");
    enc.encode_file(&csvs[1], &s2, &EncodeOptions::new("school"))
        .unwrap();
    refuse(&[ex[0].clone(), s2], "different schemas");
    // Not an extract at all.
    refuse(
        &[ex[0].clone(), csvs[1].clone()],
        "not a readable Parquet file",
    );
    // A single extract without --dedup.
    refuse(&[ex[0].clone()], "--dedup");
}

#[test]
fn four_agencies_respect_one_record_per_agency_and_nothing_is_lost() {
    nothing_lost(4);
}

#[test]
fn two_agencies_lose_nothing() {
    nothing_lost(2);
}

fn nothing_lost(agencies: usize) {
    let d = tempfile::tempdir().unwrap();
    let (mut ex, truth, mut csvs) = synthetic(d.path(), 1500, agencies, 11, b"k");
    // Add bad rows to one agency's input and re-encode it: they must be rejects.
    let mut text = std::fs::read_to_string(&csvs[0]).unwrap();
    text.push_str("SCBAD1,Ann,Smith,31/02/2012,F,LS1 1AA,1 Road,white,3,CIN\n");
    text.push_str("SCBAD2,Bo,Jones,01/01/2012,X,LS1 1AA,1 Road,white,3,CIN\n");
    std::fs::write(&csvs[0], text).unwrap();
    let sp = d.path().join("social_care.toml");
    let enc = Encoder::new(
        Schema::load(&sp).unwrap(),
        &Secret::from_bytes(b"k".to_vec()).unwrap(),
    )
    .unwrap();
    let r = enc
        .encode_file(&csvs[0], &ex[0], &EncodeOptions::new("social_care"))
        .unwrap();
    assert_eq!(r.counts.rejected, 2);
    let out = d.path().join("out");
    let o = link(&ex, &out, &["--truth", truth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (rows, dedup) = read_links(&out.join("links.parquet")).unwrap();
    assert!(!dedup);
    // One record per agency per entity.
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for r in &rows {
        assert!(
            seen.insert((&r.entity_id, &r.agency)),
            "entity {} has two {} records",
            r.entity_id,
            r.agency
        );
    }
    // Every input row is in links.parquet exactly once or in the rejects file.
    for (i, csv) in csvs.iter_mut().enumerate() {
        let name = bloomlink::synth::agency_name(i);
        let mut ids: HashMap<String, usize> = HashMap::new();
        for r in &rows {
            if r.agency == name {
                *ids.entry(r.record_id.clone()).or_default() += 1;
            }
        }
        let rejects = std::fs::read_to_string(ex[i].with_extension("rejects.csv")).unwrap();
        let rejected: HashSet<String> = rejects
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_string())
            .collect();
        let mut rdr = csv::Reader::from_path(&csv).unwrap();
        let mut n = 0;
        for rec in rdr.records() {
            let id = rec.unwrap()[0].to_string();
            let c = ids.get(&id).copied().unwrap_or(0);
            assert!(
                c == 1 || (c == 0 && rejected.contains(&id)),
                "{name} {id}: in links {c} times"
            );
            n += 1;
        }
        assert_eq!(n, ids.len() + rejected.len());
    }
    let e = evaluate(&out.join("links.parquet"), &truth);
    eprintln!("{agencies} agencies: {e}");
    assert!(e["f1"].as_f64().unwrap() > 0.9);
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["reconciliation"]["balanced"], true);
    assert_eq!(r["reconciliation"]["agencies"][0]["rejected_at_encode"], 2);
    ex.clear();
}

#[test]
fn dedup_links_duplicates_within_one_extract() {
    let d = tempfile::tempdir().unwrap();
    let (ex, truth, _) = synthetic(d.path(), 3000, 1, 21, b"k");
    let out = d.path().join("out");
    let o = link(
        &ex[..1],
        &out,
        &["--dedup", "--truth", truth.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (rows, dedup) = read_links(&out.join("links.parquet")).unwrap();
    assert!(dedup);
    let e = evaluate(&out.join("links.parquet"), &truth);
    eprintln!("dedup: {e}");
    assert!(e["true_pairs"].as_u64().unwrap() > 20, "{e}");
    assert!(
        e["recall"].as_f64().unwrap() > 0.7 && e["precision"].as_f64().unwrap() > 0.7,
        "{e}"
    );
    assert_eq!(
        rows.len(),
        bloomlink::extract::read_extract(&ex[0]).unwrap().len
    );
}

#[test]
fn report_has_every_section_and_rerenders() {
    let d = tempfile::tempdir().unwrap();
    let (ex, truth, _) = synthetic(d.path(), 800, 3, 31, b"k");
    let out = d.path().join("out");
    assert!(link(&ex, &out, &[]).status.success());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for h in [
        "Summary",
        "Every record accounted for",
        "Score distribution and threshold",
        "Precision and recall",
        "Match rates by agency and group",
        "Input data quality",
        "Privacy audit of the encodings",
        "Run and audit trail",
        "<svg",
        "<desc",
        "<th scope=\"col\">",
        "Threshold sensitivity",
        "Simulated frequency attack",
        "SHA-256",
    ] {
        assert!(html.contains(h), "report.html lacks {h}");
    }
    // No external resource: the only URL is the SVG namespace.
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );
    assert!(
        !html.contains("<script"),
        "the report must not need scripts"
    );
    assert!(
        html.contains("No truth file was given"),
        "the report must say it has no truth"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["reconciliation"]["balanced"], true);
    assert!(r["match_rates"]["strata"].as_array().unwrap().len() >= 4);
    // Re-render with truth: figures equal evaluate's.
    let o = Command::new(bin())
        .arg("report")
        .arg(&out)
        .arg("--truth")
        .arg(&truth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let e = evaluate(&out.join("links.parquet"), &truth);
    assert_eq!(r["truth"]["evaluation"]["f1"], e["f1"]);
    assert!(
        std::fs::read_to_string(out.join("report.html"))
            .unwrap()
            .contains("Against the truth file")
    );
    // No record id in the report.
    let (rows, _) = read_links(&out.join("links.parquet")).unwrap();
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(rows.iter().all(|r| !json.contains(&r.record_id)));
}
