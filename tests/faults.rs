//! Crashes and hostile file systems: a process killed at any point leaves no
//! partial output under a real name, a rerun gives byte-identical outputs,
//! and an unwritable output folder is a clear error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, secret_file};

fn data(dir: &Path) -> (PathBuf, PathBuf) {
    let s = bloomlink::synth::generate(&bloomlink::synth::Params {
        people: 30_000,
        agencies: 2,
        seed: 9,
        overlap: 0.7,
    });
    let csvs = bloomlink::synth::write(&s, &dir.join("data"), 9).unwrap();
    (csvs[0].clone(), csvs[1].clone())
}

fn encode_cmd(dir: &Path, input: &Path, name: &str, out: &Path) -> Command {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/demo/{name}.toml"));
    let mut c = Command::new(bin());
    c.args(["-q", "encode", "--schema"])
        .arg(schema)
        .arg("--secret-file")
        .arg(dir.join("secret.key"))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(["--agency", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Names in `dir` other than leftover temporary files.
fn real_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.retain(|n| !n.starts_with(".bloomlink-"));
    v.sort();
    v
}

/// Temporary files in `dir`: none once a rerun has finished (on Linux it
/// removes those the killed process left; elsewhere they stay).
fn leftovers(dir: &Path) -> usize {
    if !cfg!(target_os = "linux") {
        return 0;
    }
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".bloomlink-"))
                .count()
        })
        .unwrap_or(0)
}

fn kill_after(mut cmd: Command, ms: u64) -> bool {
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL on unix
    let _ = child.wait();
    finished
}

#[test]
fn killed_encode_and_link_leave_no_partial_outputs_and_reruns_match() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    secret_file(dir, b"fault test key");
    let (a_csv, b_csv) = data(dir);
    // Reference outputs from an undisturbed run.
    let refdir = dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    assert!(
        encode_cmd(dir, &a_csv, "social_care", &refdir.join("a.parquet"))
            .status()
            .unwrap()
            .success()
    );
    assert!(
        encode_cmd(dir, &b_csv, "school", &refdir.join("b.parquet"))
            .status()
            .unwrap()
            .success()
    );
    let want_a = std::fs::read(refdir.join("a.parquet")).unwrap();
    let link = |out: &Path| {
        let mut c = Command::new(bin());
        c.args(["-q", "link", "--extract"])
            .arg(refdir.join("a.parquet"))
            .arg("--extract")
            .arg(refdir.join("b.parquet"))
            .arg("--out")
            .arg(out)
            .env("BLOOMLINK_JOB_KEY", "fault job key")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let lref = dir.join("lref");
    assert!(link(&lref).status().unwrap().success());
    let mut killed = 0;
    for (i, ms) in [2u64, 15, 40, 80, 150, 300].into_iter().enumerate() {
        // Encode.
        let out_dir = dir.join(format!("e{i}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = out_dir.join("a.parquet");
        let finished = kill_after(encode_cmd(dir, &a_csv, "social_care", &out), ms);
        let files = real_files(&out_dir);
        if !finished {
            killed += 1;
        }
        // Either nothing under a real name, or the complete outputs.
        if out.exists() {
            assert_eq!(
                std::fs::read(&out).unwrap(),
                want_a,
                "killed after {ms} ms: partial extract"
            );
        } else {
            assert!(files.is_empty(), "killed after {ms} ms left {files:?}");
        }
        assert!(
            encode_cmd(dir, &a_csv, "social_care", &out)
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(std::fs::read(&out).unwrap(), want_a, "rerun differs");
        assert_eq!(leftovers(&out_dir), 0, "the rerun left temporaries");
        // Link.
        let lout = dir.join(format!("l{i}"));
        let finished = kill_after(link(&lout), ms);
        if !finished {
            killed += 1;
        }
        // Whatever exists under a real name is complete (report.json holds
        // timings, so only the datasets are compared byte for byte).
        for f in ["links.parquet", "pairs.parquet"] {
            let p = lout.join(f);
            if p.exists() {
                assert_eq!(
                    std::fs::read(&p).unwrap(),
                    std::fs::read(lref.join(f)).unwrap(),
                    "killed link: partial {f}"
                );
            }
        }
        if lout.join("report.json").exists() {
            let r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(lout.join("report.json")).unwrap()).unwrap();
            assert_eq!(r["report_version"], "2");
        }
        assert!(link(&lout).status().unwrap().success());
        assert_eq!(leftovers(&lout), 0, "the link rerun left temporaries");
        for f in ["links.parquet", "pairs.parquet"] {
            assert_eq!(
                std::fs::read(lout.join(f)).unwrap(),
                std::fs::read(lref.join(f)).unwrap(),
                "rerun {f} differs"
            );
        }
    }
    assert!(killed >= 2, "the kills all came too late to test anything");
}

/// Encode a one-row CSV into `out`, which cannot be written; return stderr
/// after checking the exit code is 1 (a runtime failure).
fn encode_into_unwritable(dir: &Path, out: &Path) -> String {
    let csv = dir.join("in.csv");
    std::fs::write(&csv, "child_id,forename,surname,dob,gender,postcode,address,ethnicity,imd_decile\n1,A,B,01/02/2010,M,LS1 1AA,1 Road,white,3\n").unwrap();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo/social_care.toml");
    let o = common::encode(&schema, &secret_file(dir, b"k"), &csv, out, "a", &[]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    err
}

#[test]
fn unwritable_output_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    // The output's folder is a file: nothing can be created there, even as root.
    std::fs::write(d.path().join("blocker"), b"").unwrap();
    let err = encode_into_unwritable(d.path(), &d.path().join("blocker/x.parquet"));
    assert!(
        err.contains("cannot write") && err.contains("blocker"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn read_only_output_folder_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let ro = d.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores directory permissions; then there is nothing to test.
    if std::fs::write(ro.join("probe"), b"x").is_ok() {
        eprintln!(
            "SKIPPED read_only_output_folder_is_a_clear_error: running as root, permissions are not enforced"
        );
        return;
    }
    let err = encode_into_unwritable(d.path(), &ro.join("x.parquet"));
    assert!(err.contains("cannot write") && err.contains("ro"), "{err}");
}

/// Damaged extracts the fuzzer found (each made the Parquet decoder panic):
/// every command that reads one stops with a clear error naming the file.
#[test]
fn damaged_extracts_are_a_clear_error_not_a_crash() {
    for name in ["decoder-panic.parquet", "bitmap-panic.parquet"] {
        damaged_extract_is_a_clear_error(name);
    }
}

fn damaged_extract_is_a_clear_error(name: &str) {
    let f = common::fixtures().join("damaged").join(name);
    let d = tempfile::tempdir().unwrap();
    secret_file(d.path(), b"damaged extract test");
    let good = common::fixtures().join("synth3/social_care.csv");
    let good_out = d.path().join("good.parquet");
    let o = encode_cmd(d.path(), &good, "social_care", &good_out)
        .status()
        .unwrap();
    assert!(o.success());
    let out = d.path().join("out");
    let runs: [Vec<&std::ffi::OsStr>; 2] = [
        vec!["inspect".as_ref(), f.as_os_str()],
        vec![
            "link".as_ref(),
            "--extract".as_ref(),
            good_out.as_os_str(),
            "--extract".as_ref(),
            f.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
    ];
    for args in runs {
        let o = Command::new(bin()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(name) && err.contains("damaged"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!out.join("links.parquet").exists());
}
