//! `bloomlink release`: payload joined to entity pseudonyms, nothing identifying.

mod common;

use std::collections::HashSet;
use std::process::Command;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use common::{bin, secret_file};

#[test]
fn demo_release_holds_no_record_id_or_identifier() {
    let d = tempfile::tempdir().unwrap();
    bloomlink::cli::demo::run_demo(d.path(), 800, 3, 5, false).unwrap();
    let (links, _) =
        bloomlink::hub::evaluate::read_links(&d.path().join("linked/links.parquet")).unwrap();
    let ids: HashSet<&str> = links.iter().map(|r| r.record_id.as_str()).collect();
    let f = std::fs::File::open(d.path().join("analysis.parquet")).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let names: Vec<String> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(&names[..2], ["entity_id", "agency"]);
    assert!(
        names
            .iter()
            .all(|n| !n.contains("record") && !n.contains("clk") && !n.starts_with("f_"))
    );
    let mut rows = 0;
    for batch in b.build().unwrap() {
        let batch = batch.unwrap();
        rows += batch.num_rows();
        for c in batch.columns() {
            let s = c.as_string::<i32>();
            for i in 0..s.len() {
                if s.is_valid(i) {
                    assert!(
                        !ids.contains(s.value(i)),
                        "a record id leaked into the release"
                    );
                }
            }
        }
    }
    assert_eq!(rows, links.len());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("analysis.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["rows"], rows.to_string());
}

#[test]
fn identifying_payload_is_refused_unless_allowed_and_small_counts_are_suppressed() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = secret_file(dir, b"k");
    let schema =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo/social_care.toml");
    let mut csv = String::from(
        "child_id,forename,surname,dob,gender,postcode,address,ethnicity,imd_decile,category,old_pc\n",
    );
    for i in 0..6 {
        csv.push_str(&format!(
            "{i},Ann{i},Lee,0{}/02/2010,F,LS1 1AA,1 Road,white,3,CIN,BD{} 2CD\n",
            i + 1,
            i + 1
        ));
    }
    let input = dir.join("in.csv");
    std::fs::write(&input, csv).unwrap();
    // Encode `input` as `agency`'s `NAME.parquet`, its `columns` to the
    // payload `NAME.payload.parquet`.
    let encode = |input: &std::path::Path, agency: &str, columns: &str, name: &str| {
        common::encode(
            &schema,
            &key,
            input,
            &dir.join(format!("{name}.parquet")),
            agency,
            &[
                "--payload-columns",
                columns,
                "--payload-output",
                dir.join(format!("{name}.payload.parquet"))
                    .to_str()
                    .unwrap(),
            ],
        )
    };
    let link = |extracts: [&std::path::Path; 2], out: &str| {
        Command::new(bin())
            .arg("link")
            .arg("--extract")
            .arg(extracts[0])
            .arg("--extract")
            .arg(extracts[1])
            .arg("--out")
            .arg(dir.join(out))
            .output()
            .unwrap()
    };
    // Release the links with payloads `[a, b]` to `out`.
    let release_with = |payloads: [&str; 2], out: &str, extra: &[&str]| {
        let mut c = Command::new(bin());
        c.arg("release")
            .arg("--links")
            .arg(dir.join("out/links.parquet"));
        for (agency, p) in ["a", "b"].iter().zip(payloads) {
            c.arg("--payload")
                .arg(format!("{agency}={}", dir.join(p).display()));
        }
        c.arg("--out")
            .arg(dir.join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let mut ex = Vec::new();
    for agency in ["a", "b"] {
        let o = encode(&input, agency, "category,old_pc", agency);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ex.push(dir.join(format!("{agency}.parquet")));
    }
    let o = link([&ex[0], &ex[1]], "out");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let release = |extra: &[&str]| {
        release_with(
            ["a.payload.parquet", "b.payload.parquet"],
            "analysis.parquet",
            extra,
        )
    };
    let o = release(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("old_pc") && err.contains("postcodes"), "{err}");
    assert!(!dir.join("analysis.parquet").exists());
    let o = release(&["--allow-column", "old_pc"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("analysis.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["rows_per_agency"]["a"], "<10");
    assert_eq!(m["allowed_identifying"][0], "old_pc");
    // Payloads matched to the wrong agency: one encode wrote for another
    // agency, or one from another linkage (no record id in common).
    let wrong = |a: &str, b: &str, needle: &str| {
        let o = release_with([a, b], "wrong.parquet", &["--allow-column", "old_pc"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "expected `{needle}` in {err}");
        assert!(!dir.join("wrong.parquet").exists());
    };
    wrong(
        "b.payload.parquet",
        "b.payload.parquet",
        "this is agency `b`'s payload",
    );
    // A payload given to the hub as an extract says what it is.
    let o = link([&ex[0], &dir.join("b.payload.parquet")], "out2");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("agency `b`'s payload file"), "{err}");
    let other = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{l}\n"),
            _ => format!("10{l}\n"),
        })
        .collect::<String>();
    std::fs::write(dir.join("other.csv"), other).unwrap();
    let o = encode(&dir.join("other.csv"), "b", "category,old_pc", "b2");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wrong(
        "a.payload.parquet",
        "b2.payload.parquet",
        "none of its 6 record ids is among agency `b`'s 6 records",
    );
    // A payload column that repeats a schema identifier is refused at encode.
    let o = encode(&input, "c", "surname", "c");
    assert_eq!(o.status.code(), Some(2));
}

/// Neither `release` nor `link` writes an output over one of its inputs:
/// `--out` naming the links or a payload file, or an extract kept where
/// the link run writes `links.parquet`, is refused and the file kept.
#[test]
fn outputs_never_overwrite_inputs() {
    let d = tempfile::tempdir().unwrap();
    bloomlink::cli::demo::run_demo(d.path(), 300, 2, 5, false).unwrap();
    let links = d.path().join("linked/links.parquet");
    let pay = d.path().join("payload/social_care.parquet");
    let keep = |p: &std::path::Path| std::fs::read(p).unwrap();
    let (lb, pb) = (keep(&links), keep(&pay));
    for out in [&links, &pay] {
        let o = Command::new(bin())
            .arg("release")
            .arg("--links")
            .arg(&links)
            .arg("--payload")
            .arg(format!("social_care={}", pay.display()))
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("is also an input"), "{err}");
    }
    assert_eq!((keep(&links), keep(&pay)), (lb, pb));
    // An extract sitting where the link run writes links.parquet.
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let moved = out.join("links.parquet");
    std::fs::copy(d.path().join("extracts/school.parquet"), &moved).unwrap();
    let before = keep(&moved);
    let o = Command::new(bin())
        .arg("link")
        .arg("--extract")
        .arg(d.path().join("extracts/social_care.parquet"))
        .arg("--extract")
        .arg(&moved)
        .arg("--out")
        .arg(&out)
        .env("BLOOMLINK_JOB_KEY", "k")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is also an input"));
    assert_eq!(keep(&moved), before);
}
