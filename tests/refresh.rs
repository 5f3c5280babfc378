//! Monthly refresh with `link --previous` over three refreshes: pseudonyms
//! stay stable for unchanged people, new people get new ones, a corrected
//! record merges two entities, a corrupted one splits them again, people who
//! left retire their ids, and each incremental refresh (comparing only what
//! changed) equals a full rerun with the same model.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use bloomlink::hub::evaluate::{LinkRow, read_links};
use common::{bin, secret_file};

fn encode(dir: &Path, csv: &Path, i: usize, out: &Path) {
    let name = bloomlink::synth::agency_name(i);
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/demo/{name}.toml"));
    let o = Command::new(bin())
        .args(["-q", "encode", "--schema"])
        .arg(schema)
        .arg("--secret-file")
        .arg(dir.join("secret.key"))
        .arg("--input")
        .arg(csv)
        .arg("--output")
        .arg(out)
        .args(["--agency", &name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn link(ex: &[PathBuf], out: &Path, previous: Option<&Path>) -> serde_json::Value {
    link_with(ex, out, previous, &[])
}

fn link_with(
    ex: &[PathBuf],
    out: &Path,
    previous: Option<&Path>,
    extra: &[&str],
) -> serde_json::Value {
    let mut c = Command::new(bin());
    c.args(["-q", "link"]).args(extra);
    for e in ex {
        c.arg("--extract").arg(e);
    }
    c.arg("--out")
        .arg(out)
        .env("BLOOMLINK_JOB_KEY", "refresh job key");
    if let Some(p) = previous {
        c.arg("--previous").arg(p);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

fn by_record(rows: &[LinkRow]) -> HashMap<(String, String), String> {
    rows.iter()
        .map(|r| ((r.agency.clone(), r.record_id.clone()), r.entity_id.clone()))
        .collect()
}

/// Every pair of records that share an entity.
fn linked_record_pairs(rows: &[LinkRow]) -> BTreeSet<((String, String), (String, String))> {
    let mut out = BTreeSet::new();
    for cluster in partition(rows) {
        let members: Vec<_> = cluster.into_iter().collect();
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                out.insert((a.clone(), b.clone()));
            }
        }
    }
    out
}

fn partition(rows: &[LinkRow]) -> BTreeSet<BTreeSet<(String, String)>> {
    let mut m: HashMap<&str, BTreeSet<(String, String)>> = HashMap::new();
    for r in rows {
        m.entry(&r.entity_id)
            .or_default()
            .insert((r.agency.clone(), r.record_id.clone()));
    }
    m.into_values().collect()
}

/// Assert two runs' clusters are equal, printing only the differences.
fn same_clusters(a: &[LinkRow], b: &[LinkRow]) {
    let (pa, pb) = (partition(a), partition(b));
    let only_a: Vec<_> = pa.difference(&pb).take(5).collect();
    let only_b: Vec<_> = pb.difference(&pa).take(5).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "clusters differ: {} vs {} clusters; only in the first: {only_a:?}; only in the second: {only_b:?}",
        pa.len(),
        pb.len()
    );
}

#[test]
fn monthly_refresh_keeps_pseudonyms_stable() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    secret_file(dir, b"refresh key");
    let s = bloomlink::synth::generate(&bloomlink::synth::Params {
        people: 900,
        agencies: 2,
        seed: 17,
        overlap: 0.8,
    });
    let csvs = bloomlink::synth::write(&s, &dir.join("data"), 17).unwrap();
    let full: Vec<String> = csvs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    // The person to corrupt in month 2 and correct in month 3: the first one in both agencies.
    let truth = std::fs::read_to_string(dir.join("data/truth.csv")).unwrap();
    let mut ents: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for l in truth.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        ents.entry(f[2]).or_default().push((f[0], f[1]));
    }
    let mut people: Vec<_> = ents
        .iter()
        .filter(|(_, v)| v.len() == 2 && v[0].0 != v[1].0)
        .collect();
    people.sort();
    let school_id = people[0]
        .1
        .iter()
        .find(|x| x.0 == "school")
        .unwrap()
        .1
        .to_string();
    let month = |m: usize| -> Vec<PathBuf> {
        let md = dir.join(format!("m{m}"));
        std::fs::create_dir_all(&md).unwrap();
        let mut ex = Vec::new();
        for (i, text) in full.iter().enumerate() {
            let lines: Vec<&str> = text.lines().collect();
            // Month 1 has the first 70% of rows; later months all of them,
            // but month 4 loses the last 5% of the first agency's (people
            // who left).
            let keep = match (m, i) {
                (1, _) => lines.len() * 7 / 10,
                (4, 0) => lines.len() * 95 / 100,
                _ => lines.len(),
            };
            let mut out = String::new();
            for l in &lines[..keep] {
                if (m == 2 || m == 4) && i == 1 && l.starts_with(&format!("{school_id},")) {
                    // Month 2 corrupts one person's school record; month 3
                    // corrects it; month 4 corrupts it differently.
                    let (first, last, dob) = if m == 2 {
                        ("Xavier", "Quintrell", "1901-01-01")
                    } else {
                        ("Yolanda", "Zephyrine", "1902-02-02")
                    };
                    let f: Vec<&str> = l.split(',').collect();
                    out.push_str(&format!(
                        "{},{first},{last},{dob},{},ZZ9 9ZZ,1 Nowhere,{}\n",
                        f[0],
                        f[4],
                        f[7..].join(",")
                    ));
                } else {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            let csv = md.join(format!("{i}.csv"));
            std::fs::write(&csv, out).unwrap();
            let p = md.join(format!("{i}.parquet"));
            encode(dir, &csv, i, &p);
            ex.push(p);
        }
        ex
    };
    let (r1, r2, r3, r3full) = (
        dir.join("r1"),
        dir.join("r2"),
        dir.join("r3"),
        dir.join("r3full"),
    );
    // Blocking keys and LSH, as a large job would use: refreshes can then
    // compare only what changed (all-pairs jobs re-link everything). The
    // second look also bands the records left single (§64): on the job's
    // stored bands, in a refresh as in a full run; and it weighs weak
    // matches among them up by the share the first resolution left (§67),
    // fitted afresh in a refresh as in a full run.
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        "[blocking]\nmethod = \"keys_and_lsh\"\n[resolve]\nsecond_look_lsh = true\nsecond_look_selection = true\n",
    )
    .unwrap();
    let cfg = ["--config", job.to_str().unwrap()];
    link_with(&month(1), &r1, None, &cfg);
    let rep2 = link_with(&month(2), &r2, Some(&r1), &cfg);
    let w2 = &rep2["changes"]["work"];
    assert_eq!(w2["incremental"], true, "{w2}");
    // Month 2 adds the last 30% of rows and corrupts one record.
    assert!(w2["records_new"].as_u64().unwrap() > 300, "{w2}");
    assert_eq!(w2["records_changed"], 1, "{w2}");
    assert_eq!(w2["records_removed"], 0, "{w2}");
    let (l1, _) = read_links(&r1.join("links.parquet")).unwrap();
    let (l2, _) = read_links(&r2.join("links.parquet")).unwrap();
    let (b1, b2) = (by_record(&l1), by_record(&l2));
    // Old entities whose old records are still exactly together keep their id.
    let mut members1: HashMap<&str, Vec<&(String, String)>> = HashMap::new();
    for (k, e) in &b1 {
        members1.entry(e).or_default().push(k);
    }
    let mut stable = 0;
    for (e, ms) in &members1 {
        let new_ids: BTreeSet<&String> = ms.iter().map(|k| &b2[*k]).collect();
        let target = *new_ids.iter().next().unwrap();
        let joined_old = b2
            .iter()
            .filter(|(k, v)| *v == target && b1.contains_key(*k))
            .count();
        if new_ids.len() == 1 && joined_old == ms.len() {
            assert_eq!(target, e, "an unchanged entity's pseudonym changed");
            stable += 1;
        }
    }
    assert!(stable > 300, "only {stable} stable entities");
    // New people get ids the previous run never used.
    let old_ids: BTreeSet<&String> = b1.values().collect();
    let new_only: Vec<&String> = b2
        .iter()
        .filter(|(k, _)| !b1.contains_key(*k))
        .map(|(_, v)| v)
        .collect();
    assert!(new_only.iter().any(|e| !old_ids.contains(e)));
    assert!(
        rep2["changes"]["created"].as_u64().unwrap() > 0,
        "{}",
        rep2["changes"]
    );
    // Month 3: the corrupted record is corrected and merges with its match.
    let ex3 = month(3);
    let rep3 = link_with(&ex3, &r3, Some(&r2), &cfg);
    let w3 = &rep3["changes"]["work"];
    assert_eq!(w3["incremental"], true, "{w3}");
    assert_eq!(w3["records_new"], 0, "{w3}");
    assert_eq!(w3["records_changed"], 1, "{w3}");
    let (l3, _) = read_links(&r3.join("links.parquet")).unwrap();
    let b3 = by_record(&l3);
    let other = people[0].1.iter().find(|x| x.0 != "school").unwrap();
    let k_school = ("school".to_string(), school_id.clone());
    let k_other = (other.0.to_string(), other.1.to_string());
    assert_ne!(
        b2[&k_school], b2[&k_other],
        "month 2 should not link the corrupted record"
    );
    assert_eq!(
        b3[&k_school], b3[&k_other],
        "month 3 should link the corrected record"
    );
    assert!(
        b3[&k_school] == b2[&k_school] || b3[&k_school] == b2[&k_other],
        "the merged entity keeps a previous id"
    );
    assert!(
        rep3["changes"]["merged"].as_u64().unwrap() >= 1,
        "{}",
        rep3["changes"]
    );
    // The refresh equals a full rerun's clusters under the same model, with
    // work proportional to the one changed record: its pairs only.
    let model = r2.to_str().unwrap();
    let full = link_with(
        &ex3,
        &r3full,
        Some(&r2),
        &["--full", "--model", model, "--config", cfg[1]],
    );
    assert_eq!(
        full["changes"]["work"]["why_full"], "--full was given",
        "{}",
        full["changes"]
    );
    let (lf, _) = read_links(&r3full.join("links.parquet")).unwrap();
    same_clusters(&l3, &lf);
    let compared = w3["pairs_compared"].as_u64().unwrap();
    let all = full["blocking"]["candidate_pairs"].as_u64().unwrap();
    assert!(
        compared > 0 && compared * 100 < all,
        "one changed record, yet {compared} of {all} pairs compared"
    );
    // Pseudonyms equal too: the refresh carried the same ids over.
    assert_eq!(by_record(&l3), by_record(&lf));
    // A full rerun that fits its own model differs at most at the margin.
    let refit = dir.join("r3refit");
    link_with(&ex3, &refit, None, &cfg);
    let (lr, _) = read_links(&refit.join("links.parquet")).unwrap();
    // Counted in links (pairs of records sharing an entity): one changed
    // link changes up to three clusters.
    let (p3, pr) = (linked_record_pairs(&l3), linked_record_pairs(&lr));
    let differ = p3.symmetric_difference(&pr).count();
    assert!(
        differ * 100 <= p3.len(),
        "{differ} links differ from a refitted full run (of {})",
        p3.len()
    );
    // Month 4 (third refresh): people left, and the merged person's school
    // record is corrupted again, so the entity splits.
    let ex4 = month(4);
    let r4m = dir.join("r4m");
    let rep4m = link_with(&ex4, &r4m, Some(&r3), &cfg);
    let w4 = &rep4m["changes"]["work"];
    assert_eq!(w4["incremental"], true, "{w4}");
    assert!(w4["records_removed"].as_u64().unwrap() > 10, "{w4}");
    assert_eq!(w4["records_changed"], 1, "{w4}");
    let c4 = &rep4m["changes"];
    assert!(c4["split"].as_u64().unwrap() >= 1, "{c4}");
    assert!(c4["retired"].as_u64().unwrap() >= 1, "{c4}");
    let (l4m, _) = read_links(&r4m.join("links.parquet")).unwrap();
    let b4 = by_record(&l4m);
    assert_ne!(
        b4[&k_school], b4[&k_other],
        "month 4 should split the person"
    );
    assert!(
        b4[&k_school] == b3[&k_school] || b4[&k_other] == b3[&k_other],
        "one part of the split entity keeps its id"
    );
    // Unchanged entities keep their ids through the third refresh too.
    let unchanged = b3
        .iter()
        .filter(|(k, _)| *k != &k_school && *k != &k_other)
        .filter(|(k, v)| b4.get(*k) == Some(v))
        .count();
    assert!(
        unchanged * 10 > b4.len() * 8,
        "{unchanged} of {} kept",
        b4.len()
    );
    let r4full = dir.join("r4full");
    link_with(
        &ex4,
        &r4full,
        Some(&r3),
        &[
            "--full",
            "--model",
            r3.to_str().unwrap(),
            "--config",
            cfg[1],
        ],
    );
    let (l4f, _) = read_links(&r4full.join("links.parquet")).unwrap();
    same_clusters(&l4m, &l4f);
    assert_eq!(b4, by_record(&l4f));
    // Changing the job's settings makes the next refresh link everything.
    let r4 = dir.join("r4");
    let rep4 = link(&ex3, &r4, Some(&r3));
    assert_eq!(rep4["changes"]["work"]["incremental"], false);
    assert!(
        rep4["changes"]["work"]["why_full"]
            .as_str()
            .unwrap()
            .contains("settings changed"),
        "{}",
        rep4["changes"]
    );
    let (l4, _) = read_links(&r4.join("links.parquet")).unwrap();
    assert_eq!(by_record(&l4).len(), by_record(&l3).len());
    // So does writing pairs below the previous run's floor: it never kept
    // them, so it cannot carry them.
    let lower = dir.join("job-lower.toml");
    std::fs::write(
        &lower,
        format!(
            "{}[output]\npairs_min_probability = 0.001\n",
            std::fs::read_to_string(&job).unwrap()
        ),
    )
    .unwrap();
    let rep5 = link_with(
        &ex3,
        &dir.join("r5"),
        Some(&r3),
        &["--config", lower.to_str().unwrap()],
    );
    assert_eq!(rep5["changes"]["work"]["incremental"], false);
    assert!(
        rep5["changes"]["work"]["why_full"]
            .as_str()
            .unwrap()
            .contains("pairs_min_probability"),
        "{}",
        rep5["changes"]
    );
    let html = std::fs::read_to_string(r3.join("report.html")).unwrap();
    assert!(html.contains("Changes since the previous run"));
}
