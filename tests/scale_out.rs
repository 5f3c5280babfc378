//! Scale-out: `link --plan`, `--unit`, `--merge`. Running every unit
//! separately — in reverse order, as parallel processes, or as Spark tasks —
//! and merging gives exactly the single run's outputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, synthetic};

/// Three synthetic agencies, encoded, and a job config that makes several
/// units (and fits a correction for postcode and address, which the plan
/// carries to every unit: decisions §66).
fn setup(dir: &Path) -> (Vec<PathBuf>, PathBuf) {
    let (ex, _, _) = synthetic(dir, 3000, 3, 31, b"scale-out key");
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        "[blocking]\nmethod = \"keys_and_lsh\"\nlsh_bands = 16\nlsh_bits = 18\nchunk_pairs = 20000\n\
         [scoring]\ndependent = [[\"postcode\", \"address\"]]\n",
    )
    .unwrap();
    (ex, job)
}

fn run(args: &[&std::ffi::OsStr]) -> String {
    let o = Command::new(bin())
        .args(args)
        .env("BLOOMLINK_JOB_KEY", "scale-out job key")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn link_args<'a>(ex: &'a [PathBuf], job: &'a Path) -> Vec<&'a std::ffi::OsStr> {
    let mut v: Vec<&std::ffi::OsStr> = vec!["link".as_ref()];
    for e in ex {
        v.push("--extract".as_ref());
        v.push(e.as_os_str());
    }
    v.push("--config".as_ref());
    v.push(job.as_os_str());
    v
}

/// Set up, link in one run into `single/`, and plan the same job in `plan/`;
/// returns (extracts, single, plan).
fn single_run_and_plan(dir: &Path) -> (Vec<PathBuf>, PathBuf, PathBuf) {
    let (ex, job) = setup(dir);
    let (single, plan) = (dir.join("single"), dir.join("plan"));
    for (flag, path) in [("--out", &single), ("--plan", &plan)] {
        let mut a = link_args(&ex, &job);
        a.extend([flag.as_ref(), path.as_os_str()]);
        run(&a);
    }
    // The plan carries the fitted correction to its units.
    let p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plan.join("plan.json")).unwrap()).unwrap();
    let bits = p["prepared"]["model"]["dependent"][0]["bits"].as_f64();
    assert!(
        bits.is_some_and(|b| b > 0.5),
        "{}",
        p["prepared"]["model"]["dependent"]
    );
    (ex, single, plan)
}

fn merge(plan: &Path, out: &Path) {
    run(&[
        "-q".as_ref(),
        "link".as_ref(),
        "--merge".as_ref(),
        plan.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
}

/// `link --plan PLAN --unit UNIT`, which must succeed.
fn run_unit(plan: &Path, unit: &str) {
    run(&[
        "-q".as_ref(),
        "link".as_ref(),
        "--plan".as_ref(),
        plan.as_os_str(),
        "--unit".as_ref(),
        unit.as_ref(),
    ]);
}

/// Run `cmd`, which must be refused (exit code 2); its error output.
fn refused(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `link --merge PLAN --out OUT`, which must be refused, writing nothing.
fn merge_refused(plan: &Path, out: &Path) -> String {
    let err = refused(
        Command::new(bin())
            .args(["link", "--merge"])
            .arg(plan)
            .arg("--out")
            .arg(out),
    );
    assert!(!out.join("links.parquet").exists());
    err
}

/// `link --plan PLAN --unit 0`, which must be refused.
fn unit_refused(plan: &Path) -> String {
    refused(
        Command::new(bin())
            .args(["link", "--plan"])
            .arg(plan)
            .args(["--unit", "0"]),
    )
}

fn units(plan: &Path) -> usize {
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(plan.join("plan.json")).unwrap()).unwrap();
    p["prepared"]["chunks"].as_array().unwrap().len()
}

/// The outputs equal the single run's: data files byte for byte, the
/// report in every section but the run's own (command, timings).
fn same_outputs(a: &Path, b: &Path) {
    for f in ["links.parquet", "pairs.parquet"] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    let ra: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("report.json")).unwrap()).unwrap();
    let rb: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("report.json")).unwrap()).unwrap();
    for (k, v) in ra.as_object().unwrap() {
        if k != "run" {
            assert_eq!(v, &rb[k], "report section {k} differs");
        }
    }
}

#[test]
fn units_run_apart_and_merged_equal_the_single_run() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (ex, single, plan) = single_run_and_plan(dir);

    // Units in reverse order, one process each.
    let n = units(&plan);
    assert!(n >= 3, "only {n} units");
    // Merging before every unit ran says which are missing.
    let err = merge_refused(&plan, &dir.join("early"));
    assert!(err.contains(&format!("{n} of {n} units")), "{err}");
    for i in (0..n).rev() {
        run_unit(&plan, &i.to_string());
    }
    let merged = dir.join("merged");
    merge(&plan, &merged);
    same_outputs(&single, &merged);

    // The same plan's units as two parallel processes, each running a range
    // of units on one load of the extracts, give the same bytes again.
    std::fs::remove_dir_all(plan.join("units")).unwrap();
    std::fs::create_dir(plan.join("units")).unwrap();
    let half = n / 2;
    let children: Vec<_> = [format!("0-{}", half - 1), format!("{half}-{}", n - 1)]
        .iter()
        .map(|r| {
            Command::new(bin())
                .args(["-q", "link", "--plan"])
                .arg(&plan)
                .args(["--unit", r])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let merged2 = dir.join("merged2");
    merge(&plan, &merged2);
    same_outputs(&single, &merged2);

    // A new plan made in the same folder never merges the old plan's
    // units: each unit is marked with the plan it ran for.
    let old_plan = std::fs::read(plan.join("plan.json")).unwrap();
    let job = dir.join("job.toml");
    let mut a = link_args(&ex, &job);
    a.extend([
        "--plan".as_ref(),
        plan.as_os_str(),
        "--threshold".as_ref(),
        "0.9".as_ref(),
    ]);
    run(&a);
    let m = units(&plan);
    let err = merge_refused(&plan, &dir.join("stale"));
    assert!(
        err.contains(&format!("{m} of {m} units were run for an earlier plan")),
        "{err}"
    );
    run_unit(&plan, "0");
    let err = merge_refused(&plan, &dir.join("stale"));
    assert!(
        err.contains(&format!(
            "{} of {m} units were run for an earlier plan",
            m - 1
        )),
        "{err}"
    );
    // plan.json and groups.bin of two different plans are refused.
    std::fs::write(plan.join("plan.json"), &old_plan).unwrap();
    let err = unit_refused(&plan);
    assert!(err.contains("belongs to another plan"), "{err}");

    // --unit needs --plan.
    let err = refused(
        Command::new(bin())
            .args(["link", "--unit", "0", "--out"])
            .arg(dir.join("nowhere"))
            .arg("--extract")
            .arg(&ex[0])
            .arg("--extract")
            .arg(&ex[1]),
    );
    assert!(err.contains("--plan DIR"), "{err}");
    // A unit refuses an extract that changed after the plan.
    std::fs::write(&ex[0], b"not the planned extract").unwrap();
    let err = unit_refused(&plan);
    assert!(err.contains("changed since the plan was made"), "{err}");
}

/// The units as Spark tasks: `tests/spark/run_units.py` pipes the unit list
/// through a local-mode PySpark job. Runs when a Python with pyspark is
/// given in BLOOMLINK_SPARK_PYTHON; says it was skipped otherwise, and fails
/// under BLOOMLINK_REQUIRE_SPARK=1.
#[test]
fn units_as_spark_tasks_equal_the_single_run() {
    let python = match std::env::var("BLOOMLINK_SPARK_PYTHON") {
        Ok(p) => p,
        Err(_) => {
            assert!(
                std::env::var_os("BLOOMLINK_REQUIRE_SPARK").is_none(),
                "BLOOMLINK_REQUIRE_SPARK is set but BLOOMLINK_SPARK_PYTHON is not"
            );
            eprintln!(
                "SKIPPED: units_as_spark_tasks_equal_the_single_run (set BLOOMLINK_SPARK_PYTHON to a Python with pyspark)"
            );
            return;
        }
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (_, single, plan) = single_run_and_plan(dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spark/run_units.py");
    let o = Command::new(&python)
        .arg(&script)
        .arg(bin())
        .arg(&plan)
        .env("BLOOMLINK_JOB_KEY", "scale-out job key")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "spark: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("ran {} units", units(&plan))),
        "{stdout}"
    );
    let merged = dir.join("merged");
    merge(&plan, &merged);
    same_outputs(&single, &merged);
}

/// A plan that fails leaves no folder behind, however deep (a pass naming
/// a key the extracts lack fails after loading them, exit 2 as a config
/// error); a plan folder that cannot be made fails, named.
#[test]
fn a_failed_plan_leaves_no_folder() {
    let d = tempfile::tempdir().unwrap();
    let (ex, _) = setup(d.path());
    let job = d.path().join("bad.toml");
    std::fs::write(&job, "[blocking]\npasses = [\"no_such_key\"]\n").unwrap();
    let plan = d.path().join("deep").join("plan");
    let mut a = link_args(&ex, &job);
    a.extend(["--plan".as_ref(), plan.as_os_str()]);
    let err = refused(Command::new(bin()).args(&a));
    assert!(err.contains("no_such_key"), "{err}");
    assert!(
        !d.path().join("deep").exists(),
        "a failed plan left its folder"
    );
    // Under a file, the folder cannot be made.
    let file = d.path().join("file");
    std::fs::write(&file, "").unwrap();
    let plan = file.join("plan");
    let mut a = link_args(&ex, &ex[0]);
    a.truncate(a.len() - 2);
    a.extend(["--plan".as_ref(), plan.as_os_str()]);
    let o = Command::new(bin()).args(&a).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "a write failure: {err}");
    assert!(err.contains(&*plan.to_string_lossy()), "{err}");
}
