//! `bloomlink encode` end to end: outputs, counts, determinism, bad input,
//! secrets and the no-plaintext guarantee.

mod common;

use std::path::Path;
use std::process::Command;

use common::{bin, secret_file};

const SCHEMA: &str = r#"
record_id = "id"
[[field]]
name = "first"
column = "first name"
type = "name"
[[field]]
name = "dob"
type = "date"
formats = ["%Y-%m-%d", "%d/%m/%Y"]
[[field]]
name = "postcode"
type = "postcode"
[[blocking]]
name = "first_yob"
key = ["soundex(first)", "year(dob)"]
[[stratum]]
name = "area"
source = "area"
"#;

const CSV: &str = "id,first name,dob,postcode,area,notes\n\
1,Aaliyah,2012-03-04,LS6 1AB,urban,a\n\
2,Bartholomew,31/12/2010,BD1 2CD,rural,b\n\
3,Cressida,not a date,LS1 1AA,urban,c\n\
1,Dorothea,2011-01-01,LS2 2BB,urban,d\n\
,Evangeline,2011-01-01,LS2 2BB,urban,e\n\
6,,unknown,,,f\n";

fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let schema = dir.join("s.toml");
    std::fs::write(&schema, SCHEMA).unwrap();
    let input = dir.join("in.csv");
    std::fs::write(&input, CSV).unwrap();
    (
        schema,
        input,
        secret_file(dir, b"correct horse battery staple"),
    )
}

fn encode(schema: &Path, input: &Path, key: &Path, out: &Path) -> std::process::Output {
    common::encode(schema, key, input, out, "council", &[])
}

#[test]
fn encodes_rejects_and_reconciles() {
    let d = tempfile::tempdir().unwrap();
    let (schema, input, key) = setup(d.path());
    let out = d.path().join("x.parquet");
    let o = encode(&schema, &input, &key, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = bloomlink::extract::read_extract(&out).unwrap();
    let c = &e.meta.counts;
    assert_eq!(
        (c.rows_read, c.encoded, c.rejected, c.duplicate_ids),
        (6, 3, 3, 1)
    );
    assert_eq!(c.rows_read, c.encoded + c.rejected);
    assert_eq!(e.len, 3);
    assert_eq!(c.missing["first"], 1);
    // Row 6 is all-missing but encodes (missing is not a reject).
    assert_eq!(e.ids.get(2), "6");
    assert!(!e.fields[0].valid[2]);
    assert_eq!(e.strata[0].labels, vec!["urban", "rural"]);
    let rejects = std::fs::read_to_string(d.path().join("x.rejects.csv")).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines[0], "row,record_id,column,reason");
    assert!(
        lines[1].starts_with("3,3,dob,\"not a valid date"),
        "{rejects}"
    );
    assert!(
        lines[2].starts_with("4,1,id,duplicate record id"),
        "{rejects}"
    );
    assert!(
        lines[3].starts_with("5,,id,record id is empty"),
        "{rejects}"
    );
    // No plaintext in the rejects file.
    for v in ["not a date", "Cressida", "Dorothea", "Evangeline"] {
        assert!(!rejects.contains(v), "rejects leak {v}");
    }
    let meta = bloomlink::extract::read_meta(&out).unwrap().0;
    assert_eq!(meta.agency, "council");
    assert_eq!(meta.fingerprint.len(), 64);
    assert_eq!(meta.key_check.len(), 16);
}

/// A row with more cells than the header (an address with an unquoted
/// comma) or fewer (the two halves of a row cut by an unquoted line
/// break) is rejected whole: none of its cells reaches the extract (the
/// `area` stratum is kept in clear), the payload or the rejects file, and
/// the rows around it encode as usual.
#[test]
fn rows_of_the_wrong_width_are_rejected_whole() {
    let d = tempfile::tempdir().unwrap();
    let (schema, _, key) = setup(d.path());
    let input = d.path().join("shifted.csv");
    std::fs::write(
        &input,
        "id,first name,dob,postcode,area,notes\n\
         1,Aaliyah,2012-03-04,LS6 1AB,urban,a\n\
         2,Bartholomew,2010-12-31,BD1 2CD,Hollyhock Lane,rural,b\n\
         3,Cressida,2011-01-01\n\
         LS1 1AA,Wisteria Walk,c\n\
         4,Dorothea,2011-01-01,LS2 2BB,\"urban\",\"Foxglove Row, d\"\n",
    )
    .unwrap();
    let out = d.path().join("x.parquet");
    let pay = d.path().join("pay.parquet");
    let o = common::encode(
        &schema,
        &key,
        &input,
        &out,
        "council",
        &[
            "--payload-columns",
            "notes",
            "--payload-output",
            pay.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = bloomlink::extract::read_extract(&out).unwrap();
    let c = &e.meta.counts;
    assert_eq!((c.rows_read, c.encoded, c.rejected), (5, 2, 3));
    assert_eq!((e.ids.get(0), e.ids.get(1)), ("1", "4"));
    assert_eq!(e.strata[0].labels, vec!["urban"]);
    let rejects = std::fs::read_to_string(d.path().join("x.rejects.csv")).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines.len(), 4, "{rejects}");
    for (line, row, cells) in [(1, 2, 7), (2, 3, 3), (3, 4, 3)] {
        let want = format!(
            "{row},,(whole row),\"the row has {cells} cells where the header has 6: a value with an unquoted comma"
        );
        assert!(lines[line].starts_with(&want), "{rejects}");
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    let written = [
        std::fs::read(&out).unwrap(),
        std::fs::read(&pay).unwrap(),
        rejects.clone().into_bytes(),
        stderr.as_bytes().to_vec(),
    ];
    for v in [
        "Hollyhock",
        "hollyhock",
        "Wisteria",
        "wisteria",
        "Bartholomew",
        "Cressida",
    ] {
        for w in &written {
            assert!(!w.windows(v.len()).any(|x| x == v.as_bytes()), "{v} leaked");
        }
    }
}

/// Strata are written to the extract in clear: a schema whose stratum
/// reads an identifying column or field is refused, and so is an input
/// whose stratum column has a value per person; coarse groups pass.
#[test]
fn strata_never_hold_identifiers() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (_, _, key) = setup(dir);
    let key = key.to_str().unwrap().to_string();
    let run = |schema: &str, rows: usize, groups: usize, needle: Option<&str>| {
        std::fs::write(dir.join("st.toml"), schema).unwrap();
        let mut csv = String::from("id,first name,dob,postcode,area,notes\n");
        for i in 0..rows {
            csv += &format!("{i},Name,2012-03-04,LS6 1AB,a{},x\n", i % groups);
        }
        std::fs::write(dir.join("st.csv"), csv).unwrap();
        let args = encode_args("st.toml", &key, "st.csv", &[]);
        match needle {
            Some(n) => fails_with(&args, None, n, dir),
            None => succeeds(&args, dir),
        }
    };
    let stratum = "[[stratum]]\nname = \"area\"\nsource = \"area\"";
    assert!(SCHEMA.contains(stratum));
    let with = |s: &str| SCHEMA.replace(stratum, s);
    for (schema, needle) in [
        (
            with("[[stratum]]\nname = \"area\"\nsource = \"first name\""),
            "reads column `first name`, which field `first` encodes",
        ),
        (
            with("[[stratum]]\nname = \"area\"\nsource = \"id\""),
            "reads column `id`, which is the record id",
        ),
        (
            with("[[stratum]]\nname = \"area\"\ntype = \"field\"\nsource = \"dob\""),
            "only a `sex` field may be one",
        ),
    ] {
        run(&schema, 3, 3, Some(needle));
    }
    run(
        SCHEMA,
        1001,
        1001,
        Some("has more than 1000 distinct values"),
    );
    run(SCHEMA, 60, 60, Some("has 60 distinct values in 60 rows"));
    // Coarse: 51 groups over 200 rows, 3 over 60.
    run(SCHEMA, 200, 51, None);
    run(SCHEMA, 60, 3, None);
}

/// A run that fails after its outputs were begun (here: a stratum with a
/// value per record, found only once the rows are read) leaves neither
/// files nor the folders it made for them; a folder that was there stays.
#[test]
fn a_failed_encode_leaves_no_folder_it_made() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (schema, _, key) = setup(dir);
    let mut csv = String::from("id,first name,dob,postcode,area,notes\n");
    for i in 0..1001 {
        csv += &format!("{i},Name,2012-03-04,LS6 1AB,a{i},x\n");
    }
    std::fs::write(dir.join("st.csv"), csv).unwrap();
    std::fs::create_dir(dir.join("there")).unwrap();
    for (out, pay) in [
        ("new/deeper/out.parquet", "other/pay.parquet"),
        ("there/out.parquet", "there/pay.parquet"),
    ] {
        let o = common::encode(
            &schema,
            &key,
            &dir.join("st.csv"),
            &dir.join(out),
            "a",
            &[
                "--payload-columns",
                "notes",
                "--payload-output",
                dir.join(pay).to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("more than 1000 distinct values"), "{err}");
    }
    for gone in ["new", "other"] {
        assert!(!dir.join(gone).exists(), "{gone} left after a failed run");
    }
    let left: Vec<_> = std::fs::read_dir(dir.join("there")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A header that lacks a schema's column is never echoed (in a file
/// without a header row it is a record), but the error says what is
/// likely wrong: no header row, another separator, a near name.
#[test]
fn header_errors_never_echo_cells_but_say_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (schema, _, key) = setup(dir);
    let (schema, key) = (schema.to_str().unwrap(), key.to_str().unwrap());
    let row = "7,Philomena,2012-03-04,LS6 1AB,urban,a\n";
    for (file, text, hint) in [
        (
            "nohead.csv",
            row.to_string(),
            "does the file have a header row?",
        ),
        (
            "semi.csv",
            format!(
                "id;first name;dob;postcode;area;notes\n{}",
                row.replace(',', ";")
            ),
            "the header is one cell separated by `;`",
        ),
        (
            "near.csv",
            format!("id,First_Name,dob,postcode,area,notes\n{row}"),
            "did you mean `First_Name`?",
        ),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
        let args = encode_args(schema, key, file, &[]);
        fails_with(&args, None, hint, dir);
        let o = Command::new(bin())
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        for v in ["Philomena", "2012-03-04", "LS6 1AB", "urban"] {
            assert!(!err.contains(v), "{file}: the error echoes {v}: {err}");
        }
    }
}

/// A CSV saved by Excel in Windows-1252, or separated by semicolons, gives
/// the same extract as the UTF-8, comma-separated file once its encoding
/// and separator are given; without `--encoding` its accented names are
/// rejects that say what to do.
#[test]
fn encodings_and_separators_give_the_same_extract() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (schema, _, key) = setup(dir);
    let text = "id,first name,dob,postcode,area,notes\n\
                1,Zoë,2012-03-04,LS6 1AB,urban,a\n\
                2,José,2010-12-31,BD1 2CD,rural,b\n\
                3,Ann,2011-01-01,LS2 2BB,urban,c\n";
    let cp1252: Vec<u8> = text
        .chars()
        .map(|c| match c {
            'ë' => 0xEB,
            'é' => 0xE9,
            c => c as u8,
        })
        .collect();
    let files = [
        ("utf8.csv", text.as_bytes().to_vec(), vec![]),
        (
            "excel.csv",
            cp1252.clone(),
            vec!["--encoding", "windows-1252"],
        ),
        ("latin1.csv", cp1252.clone(), vec!["--encoding", "latin1"]),
        (
            "semi.csv",
            text.replace(',', ";").into_bytes(),
            vec!["--delimiter", ";"],
        ),
        (
            "pipe.txt",
            text.replace(',', "|").into_bytes(),
            vec!["--delimiter", "|"],
        ),
        (
            "tabs.csv",
            text.replace(',', "\t").into_bytes(),
            vec!["--delimiter", "tab"],
        ),
    ];
    let mut extracts = Vec::new();
    for (name, bytes, extra) in &files {
        let input = dir.join(name);
        std::fs::write(&input, bytes).unwrap();
        let out = dir.join(format!("{name}.parquet"));
        let o = common::encode(&schema, &key, &input, &out, "council", extra);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let e = bloomlink::extract::read_extract(&out).unwrap();
        assert_eq!(e.meta.counts.encoded, 3, "{name}");
        extracts.push((name, std::fs::read(&out).unwrap()));
    }
    for (name, e) in &extracts[1..] {
        assert!(
            *e == extracts[0].1,
            "{name}: the extract differs from UTF-8's"
        );
    }
    // Without its encoding, the Windows-1252 file's accented rows are
    // rejected with a hint; the rest encode.
    let input = dir.join("excel.csv");
    let out = dir.join("plain.parquet");
    let o = common::encode(&schema, &key, &input, &out, "council", &[]);
    assert!(o.status.success());
    let rejects = std::fs::read_to_string(dir.join("plain.rejects.csv")).unwrap();
    assert_eq!(rejects.lines().count(), 3, "{rejects}");
    assert!(rejects.contains("--encoding windows-1252"), "{rejects}");
    // Bad values are clear errors, and a Parquet input takes neither.
    let (schema, key) = (schema.to_str().unwrap(), key.to_str().unwrap());
    let args = |extra: &[&str]| encode_args(schema, key, "utf8.csv", extra);
    for (extra, needle) in [
        (vec!["--encoding", "klingon"], "unknown encoding `klingon`"),
        (vec!["--encoding", "utf-16le"], "convert it to UTF-8 first"),
        (vec!["--delimiter", ";;"], "is not a separator"),
        (vec!["--delimiter", "\""], "is not a separator"),
    ] {
        let a = args(&extra);
        fails_with(&a, None, needle, dir);
    }
    let pq = dir.join("utf8.csv.parquet");
    let mut a = args(&["--delimiter", ";"]);
    a[6] = pq.to_str().unwrap().to_string();
    fails_with(&a, None, "applies to CSV input only", dir);
}

/// Dates written as date-times at midnight (as spreadsheets and databases
/// export them) parse; other shapes are rejects whose reason gives the
/// shape, never the value; and when most rows are rejected, encode warns.
#[test]
fn date_times_at_midnight_parse_and_mass_rejects_warn() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (schema, _, key) = setup(dir);
    let input = dir.join("dt.csv");
    std::fs::write(
        &input,
        "id,first name,dob,postcode,area,notes\n\
         1,Ann,2012-03-04 00:00:00.000,LS6 1AB,urban,a\n\
         2,Bea,2012-03-04T00:00:00Z,LS6 1AB,urban,a\n\
         3,Cai,04 March 2012,LS6 1AB,urban,a\n\
         4,Dee,2012-03-04 10:30:00,LS6 1AB,urban,a\n\
         5,Eve,07 April 2013,LS6 1AB,urban,a\n",
    )
    .unwrap();
    let out = dir.join("dt.parquet");
    let o = encode(&schema, &input, &key, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = bloomlink::extract::read_extract(&out).unwrap();
    assert_eq!((e.meta.counts.encoded, e.meta.counts.rejected), (2, 3));
    let rejects = std::fs::read_to_string(dir.join("dt.rejects.csv")).unwrap();
    assert!(rejects.contains("shaped like 99 aaaaa 9999"), "{rejects}");
    assert!(
        rejects.contains("shaped like 9999-99-99 99:99:99"),
        "{rejects}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("3 of 5 rows of"), "{err}");
    assert!(
        err.contains("were rejected, most of them for `dob: not a valid date"),
        "{err}"
    );
    for v in ["March", "April", "10:30"] {
        assert!(!rejects.contains(v) && !err.contains(v), "{v} leaked");
    }
}

/// Record ids are written to the extract in clear: a schema whose record
/// id is a compared field's column is refused, and so is an input whose
/// ids are mostly NHS numbers; other ten-digit ids pass.
#[test]
fn record_ids_are_never_identifiers() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (schema, _, key) = setup(dir);
    let (schema, key) = (schema.to_str().unwrap(), key.to_str().unwrap());
    let ids: Vec<String> = (0..40).filter_map(common::nhs_number).take(25).collect();
    let write = |name: &str, ids: &[String]| {
        let mut csv = String::from("id,first name,dob,postcode,area,notes\n");
        for id in ids {
            csv += &format!("{id},Ann,2012-03-04,LS6 1AB,urban,a\n");
        }
        std::fs::write(dir.join(name), csv).unwrap();
    };
    write("nhs.csv", &ids);
    let args = |input: &str, schema: &str| encode_args(schema, key, input, &[]);
    let a = args("nhs.csv", schema);
    fails_with(&a, None, "record ids look like NHS numbers (25 of 25", dir);
    // Ten-digit ids whose check digits are off by one: about one in eleven
    // passes by chance, so they encode.
    let off: Vec<String> = ids
        .iter()
        .map(|id| format!("{}{}", &id[..9], (id.as_bytes()[9] - b'0' + 1) % 10))
        .collect();
    write("local.csv", &off);
    succeeds(&args("local.csv", schema), dir);
    // A schema whose record id is a compared field's column.
    let text = SCHEMA.replace("record_id = \"id\"", "record_id = \"postcode\"");
    std::fs::write(dir.join("rid.toml"), text).unwrap();
    let a = args("local.csv", "rid.toml");
    fails_with(&a, None, "is also field `postcode`'s column", dir);
}

/// A payload column that looks identifying draws a warning as the payload
/// is written (release would refuse it), naming the column and what its
/// values look like, never a value; a coarse one does not.
#[test]
fn identifying_payload_columns_warn_at_encode() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (schema, _, key) = setup(dir);
    let input = dir.join("pay.csv");
    let mut csv = String::from("id,first name,dob,postcode,area,notes,home\n");
    for i in 0..30 {
        csv += &format!(
            "{i},Ann,2012-03-04,LS6 1AB,urban,cin,LS{} {}AB\n",
            i % 9 + 1,
            i % 9
        );
    }
    std::fs::write(&input, csv).unwrap();
    let (schema, key) = (schema.to_str().unwrap(), key.to_str().unwrap());
    let run = |columns: &str| {
        let o = Command::new(bin())
            .args(encode_args(
                schema,
                key,
                "pay.csv",
                &[
                    "--payload-columns",
                    columns,
                    "--payload-output",
                    "pay.parquet",
                ],
            ))
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(dir.join("pay.parquet").exists());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let err = run("notes,home");
    assert!(
        err.contains("payload column `home` looks identifying (30 of 30 sampled values look like UK postcodes)"),
        "{err}"
    );
    assert!(
        !err.contains("`notes` looks") && !err.contains("LS1 0AB"),
        "{err}"
    );
    assert!(!run("notes").contains("looks identifying"));
}

#[test]
fn same_input_and_key_give_identical_bytes_and_env_secret_works() {
    let d = tempfile::tempdir().unwrap();
    let (schema, input, key) = setup(d.path());
    let (a, b) = (d.path().join("a.parquet"), d.path().join("b.parquet"));
    assert!(encode(&schema, &input, &key, &a).status.success());
    assert!(encode(&schema, &input, &key, &b).status.success());
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let c = d.path().join("c.parquet");
    let o = Command::new(bin())
        .args(["encode", "--schema"])
        .arg(&schema)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&c)
        .args(["--agency", "council"])
        .env("BLOOMLINK_SECRET", "correct horse battery staple")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    // A different key changes the filters and the key check.
    let k2 = d.path().join("k2");
    std::fs::write(&k2, b"another key").unwrap();
    let e = d.path().join("e.parquet");
    assert!(encode(&schema, &input, &k2, &e).status.success());
    let (m1, m2) = (
        bloomlink::extract::read_meta(&a).unwrap().0,
        bloomlink::extract::read_meta(&e).unwrap().0,
    );
    assert_ne!(m1.key_check, m2.key_check);
    assert_eq!(m1.fingerprint, m2.fingerprint);
}

/// `encode` of `input` (in the test's folder) with `schema` and `key` into
/// `out.parquet` for agency `a`, then `extra`.
fn encode_args(schema: &str, key: &str, input: &str, extra: &[&str]) -> Vec<String> {
    let base = [
        "encode",
        "--schema",
        schema,
        "--secret-file",
        key,
        "--input",
        input,
        "--output",
        "out.parquet",
        "--agency",
        "a",
    ];
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// Run `args` in `dir`, expect success and remove `out.parquet` and its
/// rejects file, so that a later `fails_with` can check none is left.
fn succeeds<S: AsRef<std::ffi::OsStr>>(args: &[S], dir: &Path) {
    let o = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(dir.join("out.parquet")).unwrap();
    std::fs::remove_file(dir.join("out.rejects.csv")).unwrap();
}

fn fails_with<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    args: &[S],
    env_secret: Option<&str>,
    needle: &str,
    dir: &Path,
) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("BLOOMLINK_SECRET");
    if let Some(s) = env_secret {
        cmd.env("BLOOMLINK_SECRET", s);
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected `{needle}` in: {err}"
    );
    assert!(!dir.join("out.parquet").exists(), "{args:?} left an output");
    assert!(
        !dir.join("out.rejects.csv").exists(),
        "{args:?} left a rejects file"
    );
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_2_and_no_output() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    setup(dir);
    let base = |schema: &str, input: &str, key: &str| encode_args(schema, key, input, &[]);
    let run = |args: Vec<String>, needle: &str| fails_with(&args, None, needle, dir);
    // Missing column (named, with the file).
    std::fs::write(
        dir.join("nocol.csv"),
        "id,dob,postcode,area\n1,2012-01-01,LS1 1AA,u\n",
    )
    .unwrap();
    run(
        base("s.toml", "nocol.csv", "secret.key"),
        "column `first name`",
    );
    run(base("s.toml", "nocol.csv", "secret.key"), "nocol.csv");
    // Unreadable input.
    run(base("s.toml", "missing.csv", "secret.key"), "missing.csv");
    // Malformed schemas: unknown key, bad q, k <= 0, bits not a multiple of 64.
    for (i, (bad, needle)) in [
        (
            SCHEMA.replace("type = \"postcode\"", "type = \"postcode\"\ncolour = 1"),
            "colour",
        ),
        (
            SCHEMA.replace("type = \"postcode\"", "type = \"postcode\"\nq = 9"),
            "`q`",
        ),
        (
            SCHEMA.replace("type = \"postcode\"", "type = \"postcode\"\nk = 0"),
            "`k`",
        ),
        (format!("clk_bits = 1000\n{SCHEMA}"), "clk_bits"),
        ("not = [toml".to_string(), "invalid schema"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("bad{i}.toml");
        std::fs::write(dir.join(&name), bad).unwrap();
        run(base(&name, "in.csv", "secret.key"), needle);
    }
    // An output that would overwrite the input (by name or as a hard
    // link), one not named .parquet, a payload on the extract's path: the
    // input is left as it was.
    let before = std::fs::read(dir.join("in.csv")).unwrap();
    for (output, needle) in [
        ("in.csv", "is the input file"),
        ("./in.csv", "is the input file"),
        ("extract.csv", "must be a Parquet file named .parquet"),
    ] {
        let mut a = base("s.toml", "in.csv", "secret.key");
        a[8] = output.into();
        run(a, needle);
    }
    #[cfg(unix)]
    {
        std::fs::hard_link(dir.join("in.csv"), dir.join("alias.parquet")).unwrap();
        let mut a = base("s.toml", "in.csv", "secret.key");
        a[8] = "alias.parquet".into();
        run(a, "is the input file");
        std::fs::remove_file(dir.join("alias.parquet")).unwrap();
    }
    let mut a = base("s.toml", "in.csv", "secret.key");
    a.extend(
        [
            "--payload-columns",
            "notes",
            "--payload-output",
            "out.parquet",
        ]
        .map(String::from),
    );
    run(a, "the extract's own path");
    assert_eq!(std::fs::read(dir.join("in.csv")).unwrap(), before);
    // Empty secret file; no secret at all.
    std::fs::write(dir.join("empty.key"), b"").unwrap();
    run(base("s.toml", "in.csv", "empty.key"), "empty");
    fails_with(
        &[
            "encode",
            "--schema",
            "s.toml",
            "--input",
            "in.csv",
            "--output",
            "out.parquet",
            "--agency",
            "a",
        ],
        None,
        "BLOOMLINK_SECRET",
        dir,
    );
    // The key can never be given as a command-line value.
    let o = Command::new(bin())
        .args([
            "encode",
            "--secret",
            "x",
            "--schema",
            "s.toml",
            "--input",
            "in.csv",
            "--output",
            "o.parquet",
            "--agency",
            "a",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn inspect_prints_metadata_and_never_filters() {
    let d = tempfile::tempdir().unwrap();
    let (schema, input, key) = setup(d.path());
    let out = d.path().join("x.parquet");
    assert!(encode(&schema, &input, &key, &out).status.success());
    let o = Command::new(bin())
        .arg("inspect")
        .arg(&out)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    for want in [
        "agency             council",
        "rows               3",
        "key check",
        "f_first",
        "bk_first_yob",
        "s_area",
        "rejected 3",
    ] {
        assert!(s.contains(want), "missing {want} in {s}");
    }
    let j = Command::new(bin())
        .args(["inspect", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["counts"]["encoded"], 3);
    // Not an extract: clear error.
    let o = Command::new(bin())
        .arg("inspect")
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// Every column of an extract made from FEBRL4, and the log output, hold none
/// of the input's names, street names or dates.
#[test]
fn febrl4_extract_holds_no_plaintext() {
    let Some(data) = common::reference_dir("no plaintext in FEBRL4 extract") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let key = secret_file(d.path(), b"privacy test key");
    let input = data.join("febrl/febrl4_a.csv");
    let out = d.path().join("a.parquet");
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/febrl4.toml");
    let o = common::encode(&schema, &key, &input, &out, "a", &["-vv"]);
    assert!(o.status.success());
    let log = String::from_utf8_lossy(&o.stderr).to_lowercase();
    // Plaintext needles: names, streets, suburbs, dates.
    let mut rdr = csv::Reader::from_path(&input).unwrap();
    let mut needles = std::collections::BTreeSet::new();
    for r in rdr.records() {
        let r = r.unwrap();
        for c in [1, 2, 4, 6, 9] {
            let v = r[c].trim().to_lowercase();
            if v.len() >= 4 {
                needles.insert(v);
            }
        }
    }
    let needles: Vec<String> = needles.into_iter().collect();
    assert!(needles.len() > 5000);
    let ac_text = aho_corasick::AhoCorasick::new(&needles).unwrap();
    // Binary columns: only needles of 6+ bytes (a random 4-byte match is likely in MBs of hash bits).
    let long: Vec<&String> = needles.iter().filter(|n| n.len() >= 6).collect();
    let ac_bin = aho_corasick::AhoCorasick::new(&long).unwrap();
    // Decode every column.
    let file = std::fs::File::open(&out).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let mut text = String::new();
    for kv in b.metadata().file_metadata().key_value_metadata().unwrap() {
        let v = kv.value.as_deref().unwrap_or("");
        match serde_json::from_str::<serde_json::Value>(v) {
            // JSON metadata (schema, counts): check its values; its keys are
            // the format's own vocabulary ("salt", "name", ...).
            Ok(j) if j.is_object() => json_strings(&j, &mut text),
            _ => {
                text.push_str(v);
                text.push('\n');
            }
        }
    }
    let mut binary: Vec<u8> = Vec::new();
    for batch in b.build().unwrap() {
        let batch = batch.unwrap();
        for col in batch.columns() {
            use arrow_array::Array;
            use arrow_array::cast::AsArray;
            match col.data_type() {
                arrow_schema::DataType::Utf8 => {
                    for v in col.as_string::<i32>().iter().flatten() {
                        text.push_str(v);
                        text.push('\n');
                    }
                }
                arrow_schema::DataType::FixedSizeBinary(_) => {
                    let a = col.as_fixed_size_binary();
                    for i in 0..a.len() {
                        binary.extend_from_slice(a.value(i));
                    }
                }
                t => panic!("unexpected column type {t}"),
            }
        }
    }
    let text = text.to_lowercase();
    if let Some(w) = find_word(&ac_text, &text) {
        panic!("plaintext in a text column or metadata: {}", needles[w]);
    }
    assert!(
        ac_bin.find(&binary).is_none(),
        "plaintext bytes in a filter column"
    );
    let raw = std::fs::read(&out).unwrap();
    assert!(ac_bin.find(&raw).is_none(), "plaintext bytes in the file");
    if let Some(w) = find_word(&ac_text, &log) {
        panic!("plaintext in the log output: {}", needles[w]);
    }
}

/// A needle found as a whole word (not inside a longer word such as a JSON key).
fn find_word(ac: &aho_corasick::AhoCorasick, hay: &str) -> Option<usize> {
    let b = hay.as_bytes();
    let word = |i: usize| b[i].is_ascii_alphanumeric();
    ac.find_overlapping_iter(hay)
        .find(|m| {
            (m.start() == 0 || !word(m.start() - 1)) && (m.end() == b.len() || !word(m.end()))
        })
        .map(|m| m.pattern().as_usize())
}

fn json_strings(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

#[test]
fn the_secret_never_appears_in_logs_or_outputs_and_loose_permissions_warn() {
    let d = tempfile::tempdir().unwrap();
    let (schema, input, key) = setup(d.path());
    let out = d.path().join("x.parquet");
    let o = common::encode(&schema, &key, &input, &out, "council", &["-vv"]);
    assert!(o.status.success());
    let secret = b"correct horse battery staple";
    let found = |hay: &[u8]| hay.windows(secret.len()).any(|w| w == secret);
    assert!(
        !found(&o.stderr) && !found(&o.stdout),
        "the secret was printed"
    );
    for f in ["x.parquet", "x.rejects.csv"] {
        assert!(
            !found(&std::fs::read(d.path().join(f)).unwrap()),
            "the secret is in {f}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("chmod 600"),
        "mode 600 must not warn"
    );
    // A 28-byte secret draws no warning about its length; a 15-byte one,
    // from a file or the environment, does (without printing it).
    assert!(!String::from_utf8_lossy(&o.stderr).contains("test guesses"));
    let short_dir = d.path().join("short");
    std::fs::create_dir(&short_dir).unwrap();
    let short = secret_file(&short_dir, b"fifteen bytes!!");
    let o = common::encode(&schema, &short, &input, &out, "council", &[]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the secret is 15 bytes") && !err.contains("fifteen"),
        "{err}"
    );
    let o = Command::new(bin())
        .args(["encode", "--schema"])
        .arg(&schema)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .args(["--agency", "council"])
        .env("BLOOMLINK_SECRET", "fifteen bytes!!")
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the secret is 15 bytes") && !err.contains("fifteen"),
        "{err}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = common::encode(&schema, &key, &input, &out, "council", &[]);
        assert!(o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("chmod 600"),
            "a readable secret file must warn"
        );
    }
}

#[test]
fn balanced_filters_have_exactly_half_their_bits_set_and_still_link() {
    let d = tempfile::tempdir().unwrap();
    let (_, input, key) = setup(d.path());
    let schema = d.path().join("balanced.toml");
    std::fs::write(&schema, format!("balance = true\n{SCHEMA}")).unwrap();
    let out = d.path().join("b.parquet");
    let o = encode(&schema, &input, &key, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = bloomlink::extract::read_extract(&out).unwrap();
    assert!(e.meta.schema_json.contains("\"balance\":true"));
    let pop = |w: &[u64]| w.iter().map(|x| x.count_ones()).sum::<u32>();
    for i in 0..e.len {
        assert_eq!(pop(e.clk.get(i)) as usize, e.clk.words * 32, "record {i}");
        for f in &e.fields {
            if f.valid[i] {
                assert_eq!(pop(f.get(i)) as usize, f.words * 32, "{} {i}", f.name);
            }
        }
    }
    // The same values under the same key give the same balanced filter; a
    // second extract with a near-identical name still scores high Dice.
    let input2 = d.path().join("in2.csv");
    std::fs::write(
        &input2,
        "id,first name,dob,postcode,area,notes\n1,Aaliyah,2012-03-04,LS6 1AB,urban,a\n2,Bartholemew,31/12/2010,BD1 2CD,rural,b\n",
    )
    .unwrap();
    let out2 = d.path().join("b2.parquet");
    assert!(encode(&schema, &input2, &key, &out2).status.success());
    let e2 = bloomlink::extract::read_extract(&out2).unwrap();
    let dice = |a: &[u64], b: &[u64]| {
        let c: u32 = a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum();
        2.0 * c as f64 / (pop(a) + pop(b)) as f64
    };
    assert_eq!(e.fields[0].get(0), e2.fields[0].get(0));
    let near = dice(e.fields[0].get(1), e2.fields[0].get(1));
    let far = dice(e.fields[0].get(0), e2.fields[0].get(1));
    assert!(near > 0.85 && near > far + 0.1, "near {near}, far {far}");
    // Bits that are not a multiple of 128 are refused.
    std::fs::write(&schema, format!("balance = true\nclk_bits = 960\n{SCHEMA}")).unwrap();
    let o = encode(&schema, &input, &key, &d.path().join("c.parquet"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("multiples of 128"));
}

#[test]
fn target_weight_picks_k_so_filters_fill_to_it() {
    let d = tempfile::tempdir().unwrap();
    let key = secret_file(d.path(), b"target weight key");
    let demo = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo/school.toml"),
    )
    .unwrap();
    let fill = |target: f64| -> (f64, String) {
        let text = demo.replacen("k = 20", &format!("target_weight = {target}"), 2);
        let schema = d.path().join(format!("w{target}.toml"));
        std::fs::write(&schema, &text).unwrap();
        let out = d.path().join(format!("w{target}.parquet"));
        let input = common::fixtures().join("synth3/school.csv");
        let o = common::encode(&schema, &key, &input, &out, "school", &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let e = bloomlink::extract::read_extract(&out).unwrap();
        let f = &e.fields[1]; // last_name
        let (mut set, mut n) = (0u64, 0u64);
        for i in 0..e.len {
            if f.valid[i] {
                set += f.get(i).iter().map(|w| w.count_ones() as u64).sum::<u64>();
                n += 1;
            }
        }
        (
            set as f64 / (n * f.words as u64 * 64) as f64,
            e.meta.schema_json.clone(),
        )
    };
    for target in [0.2, 0.4] {
        let (w, json) = fill(target);
        // Surnames average about 7 bigrams against the assumed 8: close, not exact.
        assert!((w - target).abs() < 0.06, "target {target}: filled {w:.3}");
        // The resolved k is what the fingerprint holds.
        let k = (-(1.0f64 - target).ln() * 512.0 / 8.0).round() as u64;
        assert!(json.contains(&format!("\"bits_per_token\":{k}")), "{json}");
    }
    let schema = d.path().join("bad.toml");
    std::fs::write(
        &schema,
        demo.replacen("k = 20", "k = 20\ntarget_weight = 0.3", 1),
    )
    .unwrap();
    let o = common::encode(
        &schema,
        &key,
        &common::fixtures().join("synth3/school.csv"),
        &d.path().join("bad.parquet"),
        "school",
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("target_weight"));
}

/// Field filters and blocking keys are written as dictionary pages
/// (docs/decisions.md §13); the CLK and record ids are not.
#[test]
fn field_filters_and_blocking_keys_use_dictionary_pages() {
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let d = tempfile::tempdir().unwrap();
    let (schema, input, key) = setup(d.path());
    let out = d.path().join("a.parquet");
    assert!(encode(&schema, &input, &key, &out).status.success());
    let r = SerializedFileReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let rg = r.metadata().row_group(0);
    let mut seen = 0;
    for c in rg.columns() {
        let name = c.column_path().string();
        let dict = c.encodings().any(|e| e == Encoding::RLE_DICTIONARY);
        if name.starts_with("f_") || name.starts_with("bk_") {
            assert!(dict, "{name} is not dictionary-encoded");
            seen += 1;
        } else if name == "clk" {
            assert!(!dict, "the CLK column is dictionary-encoded");
        }
    }
    assert!(seen >= 2, "no field-filter or blocking-key column found");
}

/// An input with a header and no rows encodes to an empty extract, with
/// a warning at encode and again at the hub, whose other agency's
/// records all stay single.
#[test]
fn an_empty_input_warns_at_encode_and_at_the_hub() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (schema, input, key) = setup(dir);
    let header = std::fs::read_to_string(&input).unwrap();
    let header = header.lines().next().unwrap();
    std::fs::write(dir.join("empty.csv"), format!("{header}\n")).unwrap();
    let (full, empty) = (dir.join("full.parquet"), dir.join("empty.parquet"));
    let o = common::encode(&schema, &key, &input, &full, "a", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("no rows"));
    let o = common::encode(&schema, &key, &dir.join("empty.csv"), &empty, "b", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("has no rows but its header"), "{err}");
    let o = Command::new(bin())
        .args(["link", "--extract"])
        .arg(&full)
        .arg("--extract")
        .arg(&empty)
        .arg("--out")
        .arg(dir.join("linked"))
        .env("BLOOMLINK_JOB_KEY", "k")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("(agency `b`) holds no records"), "{err}");
    assert!(!err.contains("(agency `a`) holds no records"), "{err}");
}

/// A CSV saved as UTF-16 (Excel's "Unicode Text"), with or without a
/// byte-order mark, is named as such, with what to do; the error no longer
/// suggests an 8-bit encoding that could never read it.
#[test]
fn a_utf16_csv_is_named_as_such() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (schema, input, key) = setup(dir);
    let text = std::fs::read_to_string(&input).unwrap();
    let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    for (name, bytes) in [
        ("le_bom.csv", [&[0xff, 0xfe][..], &le].concat()),
        ("be_bom.csv", [&[0xfe, 0xff][..], &be].concat()),
        ("le.csv", le.clone()),
        ("be.csv", be.clone()),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
        let (schema, key) = (schema.to_str().unwrap(), key.to_str().unwrap());
        for extra in [&[][..], &["--encoding", "windows-1252"][..]] {
            let args = encode_args(schema, key, name, extra);
            fails_with(&args, None, "the file is UTF-16", dir);
        }
    }
}
