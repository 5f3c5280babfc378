//! The second look at records left single (docs/decisions.md §31): blocks
//! too large for the whole job are small among the single records, and
//! their pairs are weighed against each other only. With
//! `resolve.second_look_lsh` (§64) they are also blocked on LSH bands of
//! their CLKs, which find the people whose keys all changed.

mod common;

use bloomlink::hub::config::BlockingMethod;

/// Link `ex` with blocking keys only, blocks of at most `max_block_pairs`
/// pairs, and the second look on or off; returns the report.
fn run(
    dir: &std::path::Path,
    ex: &[std::path::PathBuf],
    truth: &std::path::Path,
    max_block_pairs: u64,
    second_look: bool,
) -> serde_json::Value {
    let mut cfg = bloomlink::hub::JobConfig::default();
    cfg.blocking.method = BlockingMethod::Keys;
    cfg.blocking.max_block_pairs = max_block_pairs;
    cfg.resolve.second_look = second_look;
    run_with(
        dir,
        ex,
        truth,
        cfg,
        &format!("{max_block_pairs}-{second_look}"),
    )
}

/// Link `ex` under `cfg` into `dir/out-NAME`; returns the report.
fn run_with(
    dir: &std::path::Path,
    ex: &[std::path::PathBuf],
    truth: &std::path::Path,
    cfg: bloomlink::hub::JobConfig,
    name: &str,
) -> serde_json::Value {
    run_opts(dir, ex, truth, cfg, name, |_| {})
}

/// [`run_with`], with the link's options set by `set` first.
fn run_opts(
    dir: &std::path::Path,
    ex: &[std::path::PathBuf],
    truth: &std::path::Path,
    cfg: bloomlink::hub::JobConfig,
    name: &str,
    set: impl FnOnce(&mut bloomlink::hub::LinkOptions),
) -> serde_json::Value {
    let out = dir.join(format!("out-{name}"));
    let mut opts = bloomlink::hub::LinkOptions::new(ex.to_vec(), out.clone(), cfg);
    set(&mut opts);
    bloomlink::cli::link::link_and_report(&opts, Some(truth), vec![]).unwrap();
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

fn look_pass(r: &serde_json::Value) -> Option<&serde_json::Value> {
    r["blocking"]["passes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "records left single")
}

#[test]
fn records_left_single_are_blocked_again_among_themselves() {
    let d = tempfile::tempdir().unwrap();
    let (ex, truth, _) = common::synthetic_with_overlap(d.path(), 4_000, 2, 21, 1.0, b"look");
    // Small blocks only: the whole job skips most name and date blocks,
    // which are small among the records it leaves single.
    let off = run(d.path(), &ex, &truth, 3, false);
    let on = run(d.path(), &ex, &truth, 3, true);
    let f1 = |r: &serde_json::Value| r["truth"]["evaluation"]["f1"].as_f64().unwrap();
    let precision = |r: &serde_json::Value| r["truth"]["evaluation"]["precision"].as_f64().unwrap();
    eprintln!(
        "F1 without the look {}, with {}; {}",
        f1(&off),
        f1(&on),
        on["model"]["second_look"]
    );
    assert!(look_pass(&off).is_none());
    let pass = look_pass(&on).expect("the look is a pass of the blocking table");
    assert!(pass["pairs"].as_u64().unwrap() > 0, "{pass}");
    assert!(f1(&on) > f1(&off) + 0.01, "F1 {} -> {}", f1(&off), f1(&on));
    assert!(precision(&on) > 0.95, "precision {}", precision(&on));
    // The report's model section says what the look did; without it,
    // nothing.
    assert!(off["model"]["second_look"].is_null());
    let s = &on["model"]["second_look"];
    assert_eq!(s["pairs"], pass["pairs"], "{s}");
    assert!(s["raised"].as_u64().unwrap() > 0, "{s}");
    let singles: u64 = s["single_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[1].as_u64().unwrap())
        .sum();
    assert!(singles > 0, "{s}");
    let shares = s["partner_share"].as_array().unwrap();
    assert_eq!(shares.len(), 2, "{s}");
    for x in shares {
        let v = x["share"].as_f64().unwrap();
        // Everyone has a partner in these extracts; most single records'
        // partners are single too.
        assert!((0.3..=1.0).contains(&v), "{s}");
    }
    // Without `second_look_selection`, no selection factor and no figure.
    assert!(shares.iter().all(|x| x["left_unlinked"].is_null()), "{s}");
    // With it, weak matches between single records are weighed up by the
    // share of matches the first resolution left unlinked (docs/decisions.md
    // §67): more of them are linked, and the report gives that share, one
    // figure for the pair, the same both ways; most matches were linked.
    let mut cfg = bloomlink::hub::JobConfig::default();
    cfg.blocking.method = BlockingMethod::Keys;
    cfg.blocking.max_block_pairs = 3;
    cfg.resolve.second_look_selection = true;
    let sel = run_with(d.path(), &ex, &truth, cfg, "selection");
    let recall = |r: &serde_json::Value| r["truth"]["evaluation"]["recall"].as_f64().unwrap();
    eprintln!(
        "with the selection factor: F1 {}, recall {} (against {}); {}",
        f1(&sel),
        recall(&sel),
        recall(&on),
        sel["model"]["second_look"]
    );
    assert!(
        recall(&sel) > recall(&on),
        "recall {} -> {}",
        recall(&on),
        recall(&sel)
    );
    assert!(precision(&sel) > 0.95, "precision {}", precision(&sel));
    let s = &sel["model"]["second_look"];
    let left: Vec<f64> = s["partner_share"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["left_unlinked"].as_f64().expect("two agencies: a figure"))
        .collect();
    assert_eq!(left.len(), 2, "{s}");
    // The report's reader is told it too.
    let html = std::fs::read_to_string(d.path().join("out-selection/report.html")).unwrap();
    assert!(html.contains("first resolution alone left unlinked"));
    assert_eq!(left[0], left[1], "{s}");
    assert!(left[0] > 0.0 && left[0] < 0.5, "{s}");
    // Every record is accounted for either way.
    for r in [&off, &on] {
        assert_eq!(
            r["reconciliation"]["balanced"], true,
            "{}",
            r["reconciliation"]
        );
    }
}

#[test]
fn the_look_s_lsh_bands_find_people_whose_keys_all_changed() {
    let d = tempfile::tempdir().unwrap();
    let (ex, truth, _) = common::synthetic_with_overlap(d.path(), 4_000, 2, 23, 1.0, b"bands");
    // One key, the postcode: everyone who moved is missed by blocking and
    // left single, whatever else their records share.
    let cfg = |lsh: bool| {
        let mut cfg = bloomlink::hub::JobConfig::default();
        cfg.blocking.method = BlockingMethod::Keys;
        cfg.blocking.passes = vec!["postcode".into()];
        cfg.resolve.second_look_lsh = lsh;
        cfg
    };
    let off = run_with(d.path(), &ex, &truth, cfg(false), "bands-off");
    let on = run_with(d.path(), &ex, &truth, cfg(true), "bands-on");
    let eval = |r: &serde_json::Value, k: &str| r["truth"]["evaluation"][k].as_f64().unwrap();
    eprintln!(
        "recall {} -> {}, precision {} -> {}",
        eval(&off, "recall"),
        eval(&on, "recall"),
        eval(&off, "precision"),
        eval(&on, "precision")
    );
    let pairs = |r: &serde_json::Value| {
        look_pass(r).expect("the look ran")["pairs"]
            .as_u64()
            .unwrap()
    };
    // The blocking table says how the look grouped the records.
    assert_eq!(look_pass(&off).unwrap()["kind"], "key");
    assert_eq!(look_pass(&on).unwrap()["kind"], "key+lsh");
    assert!(
        pairs(&on) > pairs(&off),
        "{} -> {}",
        pairs(&off),
        pairs(&on)
    );
    // The movers are found, and not at the cost of false links.
    assert!(
        eval(&on, "recall") > eval(&off, "recall") + 0.02,
        "recall {} -> {}",
        eval(&off, "recall"),
        eval(&on, "recall")
    );
    assert!(
        eval(&on, "precision") > 0.95,
        "precision {}",
        eval(&on, "precision")
    );
    // No LSH pass in the job itself: the bands were the look's alone.
    let passes = on["blocking"]["passes"].as_array().unwrap();
    assert!(passes.iter().all(|p| p["kind"] != "lsh"), "{passes:?}");
    assert_eq!(
        on["reconciliation"]["balanced"], true,
        "{}",
        on["reconciliation"]
    );
    // The same inputs (and job key) give the same pairs and links again.
    let out = |n: &str| d.path().join(format!("out-{n}"));
    std::fs::create_dir_all(out("bands-again")).unwrap();
    std::fs::copy(
        out("bands-on").join("job.key"),
        out("bands-again").join("job.key"),
    )
    .unwrap();
    let again = run_with(d.path(), &ex, &truth, cfg(true), "bands-again");
    assert_eq!(again["truth"], on["truth"]);
    for f in ["links.parquet", "pairs.parquet"] {
        let read = |n: &str| std::fs::read(out(n).join(f)).unwrap();
        assert!(
            read("bands-on") == read("bands-again"),
            "{f} differs between runs"
        );
    }
    // A refresh equals a full rerun under the same model. The previous
    // run's pairs that only the look found (movers, on bands the job does
    // not compare) are not carried into the refresh's first resolution:
    // there they would link people a full run links only in the look, and
    // the look would see other records (docs/decisions.md §68).
    let refresh = |name: &str, full: bool| {
        std::fs::create_dir_all(out(name)).unwrap();
        std::fs::copy(out("bands-on").join("job.key"), out(name).join("job.key")).unwrap();
        run_opts(d.path(), &ex, &truth, cfg(true), name, |o| {
            o.previous = Some(out("bands-on"));
            o.full = full;
            o.model = full.then(|| out("bands-on"));
        })
    };
    let (inc, full) = (refresh("bands-refresh", false), refresh("bands-full", true));
    assert_eq!(
        inc["changes"]["work"]["incremental"], true,
        "{}",
        inc["changes"]
    );
    assert_eq!(full["changes"]["work"]["incremental"], false);
    assert_eq!(
        inc["model"]["second_look"], full["model"]["second_look"],
        "the look saw other records in the refresh"
    );
    for f in ["links.parquet", "pairs.parquet"] {
        let read = |n: &str| std::fs::read(out(n).join(f)).unwrap();
        assert!(
            read("bands-refresh") == read("bands-full"),
            "{f} differs between the refresh and a full rerun"
        );
    }
}
