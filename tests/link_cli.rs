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
    evaluate_with(links, truth, &[])
}

/// `evaluate` with `extra` arguments, which must succeed.
fn evaluate_with(links: &Path, truth: &Path, extra: &[&Path]) -> serde_json::Value {
    let o = evaluate_run(links, truth, extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn evaluate_run(links: &Path, truth: &Path, extra: &[&Path]) -> std::process::Output {
    Command::new(bin())
        .arg("evaluate")
        .arg("--links")
        .arg(links)
        .arg("--truth")
        .arg(truth)
        .args(extra)
        .output()
        .unwrap()
}

/// `report DIR --truth T`, which must succeed.
fn rerender(dir: &Path, truth: &Path) {
    let o = Command::new(bin())
        .arg("report")
        .arg(dir)
        .arg("--truth")
        .arg(truth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
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
        // Nor is the output folder left behind, empty.
        assert!(
            !out.exists(),
            "{} left after a refusal ({needle})",
            out.display()
        );
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
    // A different schema (k of both names changed: the swap pair must
    // stay alike).
    let alt = std::fs::read_to_string(&sp)
        .unwrap()
        .replacen("k = 20", "k = 21", 2);
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
    // Not an extract at all: the error says what the file looks like.
    refuse(
        &[ex[0].clone(), csvs[1].clone()],
        "it is a text file (a CSV?), not Parquet",
    );
    // An extract cut short in copying.
    let bytes = std::fs::read(&ex[1]).unwrap();
    let cut = other.join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refuse(&[ex[0].clone(), cut], "its end is missing");
    // A single extract without --dedup.
    refuse(&[ex[0].clone()], "--dedup");
    // A folder that was there before a refusal stays.
    std::fs::create_dir_all(&out).unwrap();
    let o = link(&[ex[0].clone()], &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out.is_dir());
}

#[test]
fn four_agencies_respect_one_record_per_agency_and_nothing_is_lost() {
    nothing_lost(4, true);
}

#[test]
fn two_agencies_lose_nothing_and_duplicates_attach() {
    nothing_lost(2, false);
}

/// `one_to_one`: link with `attach_duplicates = false`, and check that no
/// entity holds two records of one agency. Otherwise (the default) an entity
/// may, but only one that also holds another agency's record (attachment
/// never makes a cluster of one agency alone).
fn nothing_lost(agencies: usize, one_to_one: bool) {
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
    let cfg = d.path().join("job.toml");
    std::fs::write(
        &cfg,
        format!("[resolve]\nattach_duplicates = {}\n", !one_to_one),
    )
    .unwrap();
    let o = link(
        &ex,
        &out,
        &[
            "--truth",
            truth.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (rows, dedup) = read_links(&out.join("links.parquet")).unwrap();
    assert!(!dedup);
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut agencies_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut doubled: HashSet<&str> = HashSet::new();
    for r in &rows {
        agencies_of
            .entry(&r.entity_id)
            .or_default()
            .insert(&r.agency);
        if !seen.insert((&r.entity_id, &r.agency)) {
            assert!(
                !one_to_one,
                "entity {} has two {} records",
                r.entity_id, r.agency
            );
            doubled.insert(&r.entity_id);
        }
    }
    for e in &doubled {
        assert!(agencies_of[e].len() >= 2, "entity {e}: one agency only");
    }
    if !one_to_one {
        // The generator puts some people in an agency twice.
        assert!(!doubled.is_empty(), "no duplicate was attached");
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

/// Groups (strata values) with fewer records than
/// `output.min_reported_group` have their counts and rates withheld from
/// report.json and report.html, and are never flagged; 0 shows every group.
#[test]
fn small_groups_are_withheld_from_the_report() {
    let d = tempfile::tempdir().unwrap();
    let (ex, _, _) = synthetic(d.path(), 800, 2, 17, b"k");
    let strata = |min: u64| {
        let cfg = d.path().join(format!("job{min}.toml"));
        std::fs::write(&cfg, format!("[output]\nmin_reported_group = {min}\n")).unwrap();
        let out = d.path().join(format!("out{min}"));
        let o = link(&ex, &out, &["--config", cfg.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        (
            r["match_rates"]["strata"].as_array().unwrap().clone(),
            r,
            html,
        )
    };
    let (all, _, _) = strata(0);
    assert!(
        all.iter()
            .all(|x| x["withheld"] == false && x["rate"]["n"].is_u64())
    );
    let n = |x: &serde_json::Value| x["rate"]["n"].as_u64().unwrap();
    // A bar between the smallest and the largest group.
    let (lo, hi) = (
        all.iter().map(n).min().unwrap(),
        all.iter().map(n).max().unwrap(),
    );
    assert!(lo < hi, "{lo} {hi}");
    let min = (lo + hi) / 2;
    let (some, r, html) = strata(min);
    assert_eq!(some.len(), all.len());
    let mut withheld = 0;
    for (x, y) in some.iter().zip(&all) {
        assert_eq!((&x["stratum"], &x["value"]), (&y["stratum"], &y["value"]));
        if n(y) < min {
            withheld += 1;
            assert_eq!(x["withheld"], true, "{x}");
            assert!(x["rate"].is_null() && x["z"].is_null(), "{x}");
            assert_eq!(x["flagged"], false);
        } else {
            assert_eq!(x["withheld"], false, "{x}");
            assert_eq!(x["rate"], y["rate"]);
        }
    }
    assert!(withheld > 0 && withheld < all.len());
    assert!(html.contains(&format!("withheld (fewer than {min})")));
    let points = r["summary"]["points"].to_string();
    assert!(
        points.contains(&format!(
            "{withheld} group(s) of fewer than {min} records are withheld"
        )),
        "{points}"
    );
    // A version 1 report (no group withheld, no `withheld` key) still
    // re-renders.
    let out = d.path().join("out0");
    let mut r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["report_version"], "2");
    r["report_version"] = "1".into();
    for x in r["match_rates"]["strata"].as_array_mut().unwrap() {
        x.as_object_mut().unwrap().remove("withheld");
    }
    std::fs::write(out.join("report.json"), r.to_string()).unwrap();
    let o = Command::new(bin())
        .arg("report")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
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
    rerender(&out, &truth);
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let e = evaluate(&out.join("links.parquet"), &truth);
    assert_eq!(r["truth"]["evaluation"]["f1"], e["f1"]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Against the truth file"));
    // Recall by group needs the run: the re-rendered report says so.
    assert!(html.contains("True recall by group is counted when"));
    // No record id in the report.
    let (rows, _) = read_links(&out.join("links.parquet")).unwrap();
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(rows.iter().all(|r| !json.contains(&r.record_id)));
}

/// The report's recall by stratum counts, for each stratum value, the true
/// pairs of linked records holding it (a pair whose two records differ
/// counts under both values) and those of them in one entity: the same
/// figures as counting them here from the truth file, links.parquet and
/// the extracts' stratum columns. A two-column truth file whose header
/// names the agencies the other way round gives the same table.
#[test]
fn recall_by_stratum_counts_the_true_pairs_of_each_group() {
    use std::collections::BTreeMap;
    let d = tempfile::tempdir().unwrap();
    let (ex, truth, _) = synthetic(d.path(), 1500, 2, 47, b"k");
    let out = d.path().join("out");
    let o = link(&ex, &out, &["--truth", truth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Each record's entity, and its value of each stratum.
    let (rows, _) = read_links(&out.join("links.parquet")).unwrap();
    let entity: HashMap<(String, String), String> = rows
        .into_iter()
        .map(|r| ((r.agency, r.record_id), r.entity_id))
        .collect();
    let mut value: HashMap<(String, String, String), String> = HashMap::new();
    let mut agencies = Vec::new();
    for p in &ex {
        let e = bloomlink::extract::read_extract(p).unwrap();
        agencies.push(e.meta.agency.clone());
        for s in &e.strata {
            for (i, c) in s.codes.iter().enumerate() {
                if let Some(c) = c {
                    let id = e.ids.get(i).to_string();
                    let k = (s.name.clone(), e.meta.agency.clone(), id);
                    value.insert(k, s.labels[*c as usize].clone());
                }
            }
        }
    }
    // True pairs across the two agencies, both records linked.
    let mut people: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut rdr = csv::Reader::from_path(&truth).unwrap();
    for r in rdr.records() {
        let r = r.unwrap();
        people
            .entry(r[2].to_string())
            .or_default()
            .push((r[0].to_string(), r[1].to_string()));
    }
    let mut pairs = HashSet::new();
    for m in people.values() {
        for (i, x) in m.iter().enumerate() {
            for y in &m[i + 1..] {
                if x.0 != y.0 && entity.contains_key(x) && entity.contains_key(y) {
                    let (a, b) = if x.0 == agencies[0] { (x, y) } else { (y, x) };
                    pairs.insert((a.clone(), b.clone()));
                }
            }
        }
    }
    assert!(pairs.len() > 500);
    let mut want: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let names: HashSet<String> = value.keys().map(|k| k.0.clone()).collect();
    for s in &names {
        for (a, b) in &pairs {
            let found = entity[a] == entity[b];
            let v = |r: &(String, String)| value.get(&(s.clone(), r.0.clone(), r.1.clone()));
            let (va, vb) = (v(a), v(b));
            let both = [va, if vb != va { vb } else { None }];
            for v in both.into_iter().flatten() {
                let w = want.entry((s.clone(), v.clone())).or_default();
                w.0 += 1;
                w.1 += found as u64;
            }
        }
    }
    let table = |dir: &Path| -> BTreeMap<(String, String), (u64, u64)> {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
        r["truth"]["recall_by_stratum"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["withheld"] == false)
            .map(|x| {
                let k = (
                    x["stratum"].as_str().unwrap().to_string(),
                    x["value"].as_str().unwrap().to_string(),
                );
                (
                    k,
                    (
                        x["true_pairs"].as_u64().unwrap(),
                        x["found"].as_u64().unwrap(),
                    ),
                )
            })
            .collect()
    };
    let got = table(&out);
    assert!(got.len() >= 4, "{got:?}");
    for (k, v) in &got {
        assert_eq!(want.get(k), Some(v), "{k:?}");
    }
    // Groups under the reporting floor are the ones left out.
    for (k, v) in &want {
        assert_eq!(got.contains_key(k), v.0 >= 10, "{k:?}: {v:?}");
    }
    // The same truth as two columns, the header naming the agencies the
    // other way round.
    let two = d.path().join("two.csv");
    let mut w = csv::Writer::from_path(&two).unwrap();
    w.write_record([&agencies[1], &agencies[0]]).unwrap();
    for (a, b) in &pairs {
        w.write_record([&b.1, &a.1]).unwrap();
    }
    w.flush().unwrap();
    let out2 = d.path().join("out2");
    let o = link(&ex, &out2, &["--truth", two.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(table(&out2), got);
}

/// Fore- and surnames recorded in each other's place, with nothing else to
/// go on but date of birth and sex: declaring `swap` in the schema lets the
/// hub compare the names crossed, so such records link; without it most
/// stay single.
#[test]
fn swapped_names_link_when_the_schema_declares_the_swap() {
    let d = tempfile::tempdir().unwrap();
    let (_, truth, csvs) = synthetic(d.path(), 1500, 2, 31, b"k");
    // School (agency 1): in every third record swap the names and blank
    // the postcode and address.
    let mut rdr = csv::Reader::from_path(&csvs[1]).unwrap();
    let header = rdr.headers().unwrap().clone();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (first, last, pc, addr) = (
        col("LegalForename"),
        col("LegalSurname"),
        col("Postcode"),
        col("AddressLine1"),
    );
    let swapped_csv = d.path().join("school_swapped.csv");
    let mut w = csv::Writer::from_path(&swapped_csv).unwrap();
    w.write_record(&header).unwrap();
    let mut swapped: HashSet<String> = HashSet::new();
    for (i, rec) in rdr.records().enumerate() {
        let mut r: Vec<String> = rec.unwrap().iter().map(str::to_string).collect();
        if i % 3 == 0 && !r[first].is_empty() && !r[last].is_empty() {
            r.swap(first, last);
            r[pc].clear();
            r[addr].clear();
            swapped.insert(r[0].clone());
        }
        w.write_record(&r).unwrap();
    }
    w.flush().unwrap();
    // Truth partners of the swapped records.
    let mut entity: HashMap<(String, String), String> = HashMap::new();
    for line in std::fs::read_to_string(&truth).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        entity.insert((f[0].into(), f[1].into()), f[2].into());
    }
    let recall = |declare: bool| -> f64 {
        let dir = d.path().join(format!("swap_{declare}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ex = Vec::new();
        for (i, input) in [&csvs[0], &swapped_csv].into_iter().enumerate() {
            let name = bloomlink::synth::agency_name(i);
            let mut text = bloomlink::synth::profile(i).schema.to_string();
            assert!(text.contains("\nswap = "));
            if !declare {
                text = text.replace("\nswap = ", "\n# swap = ");
            }
            let sp = dir.join(format!("{name}.toml"));
            std::fs::write(&sp, text).unwrap();
            let enc = Encoder::new(
                Schema::load(&sp).unwrap(),
                &Secret::from_bytes(b"k".to_vec()).unwrap(),
            )
            .unwrap();
            let p = dir.join(format!("{name}.parquet"));
            enc.encode_file(input, &p, &EncodeOptions::new(&name))
                .unwrap();
            ex.push(p);
        }
        let out = dir.join("out");
        let o = link(&ex, &out, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (rows, _) = read_links(&out.join("links.parquet")).unwrap();
        let ent_of: HashMap<(&str, &str), &str> = rows
            .iter()
            .map(|r| {
                (
                    (r.agency.as_str(), r.record_id.as_str()),
                    r.entity_id.as_str(),
                )
            })
            .collect();
        // Of the swapped school records with a social-care partner, the
        // share linked to it.
        let by_person: HashMap<&str, &str> = entity
            .iter()
            .filter(|((a, _), _)| a == "social_care")
            .map(|((_, id), e)| (e.as_str(), id.as_str()))
            .collect();
        let (mut with_partner, mut linked) = (0, 0);
        for id in &swapped {
            let Some(p) = entity
                .get(&("school".to_string(), id.clone()))
                .and_then(|e| by_person.get(e.as_str()))
            else {
                continue;
            };
            with_partner += 1;
            if ent_of.get(&("school", id.as_str())) == ent_of.get(&("social_care", *p)) {
                linked += 1;
            }
        }
        assert!(
            with_partner > 100,
            "{with_partner} swapped records with a partner"
        );
        linked as f64 / with_partner as f64
    };
    let (with, without) = (recall(true), recall(false));
    eprintln!("swapped records linked: {with:.3} with `swap`, {without:.3} without");
    assert!(with > 0.8, "with swap: {with}");
    assert!(with > without + 0.3, "with {with}, without {without}");
}

#[test]
fn thread_count_changes_no_output_and_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let (extracts, _, csvs) = synthetic(d.path(), 1500, 2, 21, b"threads key");
    let key = common::secret_file(d.path(), b"threads key");
    let schema = d.path().join("social_care.toml");
    let mut runs = Vec::new();
    for j in ["1", "3"] {
        // Encode with that many threads...
        let ex = d.path().join(format!("sc{j}.parquet"));
        let o = common::encode(&schema, &key, &csvs[0], &ex, "social_care", &["-j", j]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // ... and link with that many.
        let out = d.path().join(format!("out{j}"));
        let o = link(&extracts, &out, &["--threads", j, "-v"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // Stage times on stderr; a pipe gets no colour codes.
        let log = String::from_utf8_lossy(&o.stderr);
        assert!(log.contains("INFO") && log.contains("compare: "), "{log}");
        assert!(
            !log.contains('\x1b'),
            "colour codes in a piped log: {log:?}"
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        assert_eq!(report["run"]["threads"], j.parse::<u64>().unwrap());
        runs.push((
            std::fs::read(&ex).unwrap(),
            std::fs::read(out.join("links.parquet")).unwrap(),
            std::fs::read(out.join("pairs.parquet")).unwrap(),
        ));
    }
    assert!(runs[0].0 == runs[1].0, "extracts differ by thread count");
    assert!(runs[0].1 == runs[1].1, "links differ by thread count");
    assert!(runs[0].2 == runs[1].2, "pairs differ by thread count");
    // No threads is a usage error, before any work.
    let out = d.path().join("out0");
    let o = link(&extracts, &out, &["-j", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--threads"));
    assert!(!out.exists());
}

/// `extract` rewritten as `to` with the values of its first column whose
/// name `pick` accepts replaced by `value(row)`; its bloomlink metadata is
/// kept. Returns how many rows it has.
fn rewrite_column(
    extract: &Path,
    to: &Path,
    pick: impl Fn(&str) -> bool,
    value: impl Fn(usize) -> String,
) -> usize {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;

    let b =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(extract).unwrap()).unwrap();
    let kv: Vec<KeyValue> = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .filter(|k| k.key.starts_with("bloomlink."))
        .cloned()
        .collect();
    let schema = b.schema().clone();
    let col = schema
        .fields()
        .iter()
        .position(|f| pick(f.name()))
        .expect("a column to rewrite");
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(kv))
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(to).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    let mut n = 0;
    for batch in b.build().unwrap() {
        let batch = batch.unwrap();
        let values: StringArray = (n..n + batch.num_rows()).map(|i| Some(value(i))).collect();
        n += batch.num_rows();
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        cols[col] = Arc::new(values);
        w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap())
            .unwrap();
    }
    w.close().unwrap();
    n
}

/// The hub refuses an extract whose stratum (kept in clear) has more
/// distinct values than coarse groups do, or whose record ids are NHS
/// numbers, however it was made: here, encoded extracts rewritten.
#[test]
fn the_hub_refuses_identifiers_in_clear_columns() {
    let d = tempfile::tempdir().unwrap();
    let (ex, _, _) = synthetic(d.path(), 2000, 2, 23, b"k");
    assert!(link(&ex, &d.path().join("out"), &[]).status.success());
    // A stratum with a value per record.
    let strata = d.path().join("strata.parquet");
    let n = rewrite_column(
        &ex[1],
        &strata,
        |c| c.starts_with("s_") && c != "s_sex",
        |i| format!("person {i}"),
    );
    assert!(n > 1000, "{n} records");
    // Record ids that are NHS numbers (a non-number where none is valid).
    let nhs = |i: usize| common::nhs_number(i).unwrap_or_else(|| format!("X{i}"));
    let ids = d.path().join("ids.parquet");
    rewrite_column(&ex[1], &ids, |c| c == "record_id", nhs);
    for (file, needle) in [
        (&strata, format!("has {n} distinct values")),
        (&ids, "record ids look like NHS numbers".to_string()),
    ] {
        let out = d.path().join("refused");
        let o = link(&[ex[0].clone(), file.clone()], &out, &[]);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&needle), "{err}");
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            err.contains(name) && !err.contains("person 1") && !err.contains(&nhs(1)),
            "{err}"
        );
        assert!(!out.join("report.html").exists() && !out.join("links.parquet").exists());
    }
}

/// Without a job key given, the first run makes one (`OUT/job.key`, 32
/// bytes, owner-only) and a rerun into the same folder uses it: the same
/// entity ids. A run that fails once the key is made (here on a bad truth
/// file, read after linking) leaves neither the key nor the folder.
#[test]
fn a_job_key_made_for_a_run_appears_with_its_outputs_or_not_at_all() {
    let d = tempfile::tempdir().unwrap();
    let (ex, truth, _) = synthetic(d.path(), 200, 2, 9, b"key one");
    let out = d.path().join("out");
    let run = |extra: &[&str]| {
        let mut c = Command::new(bin());
        c.arg("link");
        for e in &ex {
            c.arg("--extract").arg(e);
        }
        c.arg("--out")
            .arg(&out)
            .args(extra)
            .env_remove("BLOOMLINK_JOB_KEY");
        c.output().unwrap()
    };
    let bad = d.path().join("bad_truth.csv");
    std::fs::write(&bad, "a,b\n1\n").unwrap();
    let o = run(&["--truth", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists(), "a failed run left {}", out.display());
    let entities = || {
        let mut e: Vec<(String, String, String)> = read_links(&out.join("links.parquet"))
            .unwrap()
            .0
            .into_iter()
            .map(|r| (r.agency, r.record_id, r.entity_id))
            .collect();
        e.sort();
        e
    };
    let o = run(&["--truth", truth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = out.join("job.key");
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "job.key readable by others: {mode:o}");
    }
    let first = entities();
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(entities(), first);
}

/// A refresh missing an agency of the previous run (a forgotten
/// `--extract`) says so, naming the agency; one with every agency does not.
#[test]
fn a_refresh_without_an_agency_of_the_previous_run_warns() {
    let d = tempfile::tempdir().unwrap();
    let (ex, _, _) = synthetic(d.path(), 200, 3, 4, b"key one");
    let first = d.path().join("first");
    let o = link(&ex, &first, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let agency = bloomlink::synth::agency_name(2);
    let previous = ["--previous", first.to_str().unwrap()];
    let o = link(&ex[..2], &d.path().join("two"), &previous);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("agency `{agency}` of the previous run")),
        "{err}"
    );
    let o = link(&ex, &d.path().join("three"), &previous);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("of the previous run"), "{err}");
    // A run's outputs given as extracts say what they are.
    for (file, needle) in [
        ("links.parquet", "a link run's output"),
        (
            "refresh-state.parquet",
            "a link run's refresh-state.parquet",
        ),
    ] {
        let o = link(&[ex[0].clone(), first.join(file)], &d.path().join("x"), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "expected `{needle}` in {err}");
    }
}

/// `evaluate` tells where each missed true pair went, from the run's
/// pairs.parquet and the threshold in its report.json: the four counts add
/// up to the false negatives, and the threshold read is the run's.
#[test]
fn evaluate_tells_where_the_missed_pairs_went() {
    let d = tempfile::tempdir().unwrap();
    let (ex, truth, _) = synthetic(d.path(), 1500, 2, 17, b"k");
    let out = d.path().join("out");
    let o = link(&ex, &out, &["--truth", truth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = evaluate(&out.join("links.parquet"), &truth);
    let m = &e["missed"];
    eprintln!("evaluate: {e}");
    let count = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{k}: {e}"));
    let fnn = e["false_negatives"].as_u64().unwrap();
    assert!(fnn > 0, "{e}");
    let scored = count("under_threshold") + count("cleared_threshold");
    assert_eq!(
        count("record_not_linked") + count("not_scored") + scored,
        fnn,
        "{e}"
    );
    // The run counted the same, in its report; a re-rendered report too.
    let report = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
    };
    assert_eq!(report(&out)["truth"]["missed"], *m);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("missed: scored under the threshold"));
    rerender(&out, &truth);
    assert_eq!(report(&out)["truth"]["missed"], *m);
    // links.parquet alone: no breakdown, unless --pairs names the file.
    let alone = d.path().join("alone");
    std::fs::create_dir(&alone).unwrap();
    std::fs::copy(out.join("links.parquet"), alone.join("links.parquet")).unwrap();
    let e2 = evaluate(&alone.join("links.parquet"), &truth);
    assert!(e2.get("missed").is_none(), "{e2}");
    assert_eq!(e2["f1"], e["f1"]);
    let links_alone = alone.join("links.parquet");
    let with_pairs = |pairs: &Path| -> serde_json::Value {
        evaluate_with(&links_alone, &truth, &[Path::new("--pairs"), pairs])
    };
    assert_eq!(with_pairs(&out.join("pairs.parquet"))["missed"], *m);
    // A run whose threshold was 0: every scored missed pair cleared it.
    let zero = d.path().join("zero");
    std::fs::create_dir(&zero).unwrap();
    std::fs::copy(out.join("pairs.parquet"), zero.join("pairs.parquet")).unwrap();
    let mut r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["run"]["config"]["scoring"]["threshold"], 0.5);
    r["run"]["config"]["scoring"]["threshold"] = 0.0.into();
    std::fs::write(zero.join("report.json"), r.to_string()).unwrap();
    let z = with_pairs(&zero.join("pairs.parquet"));
    assert_eq!(z["missed"]["under_threshold"], 0, "{z}");
    assert_eq!(z["missed"]["cleared_threshold"], scored, "{z}");
    assert_eq!(z["missed"]["not_scored"], m["not_scored"]);
    // --pairs naming a file with no report beside it is an error.
    std::fs::remove_file(zero.join("report.json")).unwrap();
    let zero_pairs = zero.join("pairs.parquet");
    let o = evaluate_run(&links_alone, &truth, &[Path::new("--pairs"), &zero_pairs]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("report.json"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `scoring.dependent`: the hub fits how much likelier postcode and
/// address are to be below exact together than apart among matches (the
/// generator moves people: a new postcode and street at once), reports it,
/// and refuses a name that is not a field.
#[test]
fn dependent_fields_are_fitted_and_reported() {
    let d = tempfile::tempdir().unwrap();
    let (ex, truth, _) = synthetic(d.path(), 3000, 2, 23, b"k");
    let cfg = d.path().join("job.toml");
    std::fs::write(
        &cfg,
        "[scoring]\ndependent = [[\"postcode\", \"address\"]]\n",
    )
    .unwrap();
    let out = d.path().join("out");
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ];
    let o = link(&ex, &out, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let em = &r["model"]["em"];
    let fields: Vec<&str> = em["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let dep = &em["dependent"][0];
    let at = |i: usize| fields[dep["fields"][i].as_u64().unwrap() as usize];
    assert_eq!((at(0), at(1)), ("postcode", "address"), "{dep}");
    // Moves change both: among matches with both present, "both below
    // exact" is about as common as either alone (~1 in 5), so
    // independence squares it and misses about log2(5) bits.
    let bits = dep["bits"].as_f64().unwrap();
    assert!((1.0..3.5).contains(&bits), "{bits}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("go wrong together"));
    // Without the setting: no correction, and nothing in the report.
    let plain = d.path().join("plain");
    let o = link(&ex, &plain, &["--truth", truth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plain.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["model"]["em"]["dependent"], serde_json::json!([]));
    eprintln!(
        "dependent: {bits:.2} bits; F1 {} with, {} without",
        evaluate(&out.join("links.parquet"), &truth)["f1"],
        evaluate(&plain.join("links.parquet"), &truth)["f1"]
    );
    // A name that is not a field is refused, naming the fields there are.
    std::fs::write(
        &cfg,
        "[scoring]\ndependent = [[\"postcode\", \"adress\"]]\n",
    )
    .unwrap();
    let o = link(
        &ex,
        &d.path().join("bad"),
        &["--config", cfg.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`adress`") && err.contains("address"), "{err}");
    // With the kept model of the first run (`--model`): a misspelt name is
    // refused as before; other pairs than the model was fitted with are
    // refused, naming both; the same pairs score as the model did.
    let model = ["--model", out.to_str().unwrap()];
    let o = link(
        &ex,
        &d.path().join("bad-model"),
        &[&["--config", cfg.to_str().unwrap()][..], &model].concat(),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`adress`"), "{err}");
    let o = link(&ex, &d.path().join("undeclared"), &model);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("scoring.dependent") && err.contains("postcode") && err.contains("[]"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        "[scoring]\ndependent = [[\"postcode\", \"address\"]]\n",
    )
    .unwrap();
    let again = d.path().join("again");
    let o = link(
        &ex,
        &again,
        &[&["--config", cfg.to_str().unwrap()][..], &model].concat(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let same =
        |f: &str| std::fs::read(out.join(f)).unwrap() == std::fs::read(again.join(f)).unwrap();
    assert!(same("links.parquet"), "the kept model links as it did");
}
