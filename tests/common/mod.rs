//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The reference data folder (`../shared/data`, or `BLOOMLINK_REFERENCE_DIR`).
///
/// Returns `None` and says so plainly when it is missing, unless
/// `BLOOMLINK_REQUIRE_REFERENCE=1`, under which a missing folder fails the test.
pub fn reference_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BLOOMLINK_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.join("febrl/febrl4_a.csv").exists() {
        return Some(dir);
    }
    if std::env::var("BLOOMLINK_REQUIRE_REFERENCE").as_deref() == Ok("1") {
        panic!(
            "{test}: reference data is required (BLOOMLINK_REQUIRE_REFERENCE=1) but {} does not exist",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: reference data not found at {} (set BLOOMLINK_REFERENCE_DIR or BLOOMLINK_REQUIRE_REFERENCE=1)",
        dir.display()
    );
    None
}

/// The CLK bytes of every record in an extract, in row order.
pub fn clk_bytes(path: &Path) -> Vec<Vec<u8>> {
    let e = bloomlink::extract::read_extract(path).unwrap();
    (0..e.len)
        .map(|i| e.clk.get(i).iter().flat_map(|w| w.to_le_bytes()).collect())
        .collect()
}

/// Path of the built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bloomlink"))
}

/// The project's own fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Write a secret file with mode 600.
pub fn secret_file(dir: &Path, secret: &[u8]) -> PathBuf {
    let p = dir.join("secret.key");
    std::fs::write(&p, secret).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

/// `bloomlink encode` with a secret file; `extra` goes after the required
/// arguments (global flags such as `-vv` may go there too).
pub fn encode_cmd(
    schema: &Path,
    key: &Path,
    input: &Path,
    out: &Path,
    agency: &str,
    extra: &[&str],
) -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    c.args(["encode", "--schema"])
        .arg(schema)
        .arg("--secret-file")
        .arg(key)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(["--agency", agency])
        .args(extra)
        .env_remove("BLOOMLINK_SECRET");
    c
}

/// Run `bloomlink encode` (see [`encode_cmd`]).
pub fn encode(
    schema: &Path,
    key: &Path,
    input: &Path,
    out: &Path,
    agency: &str,
    extra: &[&str],
) -> std::process::Output {
    encode_cmd(schema, key, input, out, agency, extra)
        .output()
        .unwrap()
}

/// Encode `(agency, csv)` inputs with the demo schema of each agency
/// (`config/demo/AGENCY.toml`) and the key file `key`, into `dir`; returns
/// the extracts in the order given.
pub fn encode_demo(dir: &Path, key: &Path, inputs: &[(&str, &str)]) -> Vec<PathBuf> {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo");
    inputs
        .iter()
        .map(|(agency, csv)| {
            let input = dir.join(format!("{agency}.csv"));
            std::fs::write(&input, csv).unwrap();
            let out = dir.join(format!("{agency}.parquet"));
            let schema = demo.join(format!("{agency}.toml"));
            let o = encode(&schema, key, &input, &out, agency, &[]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            out
        })
        .collect()
}

/// Synthetic data for `agencies` agencies, encoded; returns (extracts, truth, csvs).
pub fn synthetic(
    dir: &Path,
    people: usize,
    agencies: usize,
    seed: u64,
    key: &[u8],
) -> (Vec<PathBuf>, PathBuf, Vec<PathBuf>) {
    synthetic_with_overlap(dir, people, agencies, seed, 0.7, key)
}

/// [`synthetic`] with the share of people each agency holds.
pub fn synthetic_with_overlap(
    dir: &Path,
    people: usize,
    agencies: usize,
    seed: u64,
    overlap: f64,
    key: &[u8],
) -> (Vec<PathBuf>, PathBuf, Vec<PathBuf>) {
    let s = bloomlink::synth::generate(&bloomlink::synth::Params {
        people,
        agencies,
        seed,
        overlap,
    });
    let csvs = bloomlink::synth::write(&s, &dir.join("data"), seed).unwrap();
    let mut out = Vec::new();
    for (i, csv) in csvs.iter().enumerate() {
        let name = bloomlink::synth::agency_name(i);
        let sp = dir.join(format!("{name}.toml"));
        std::fs::write(&sp, bloomlink::synth::profile(i).schema).unwrap();
        let enc = bloomlink::agency::Encoder::new(
            bloomlink::agency::Schema::load(&sp).unwrap(),
            &bloomlink::agency::Secret::from_bytes(key.to_vec()).unwrap(),
        )
        .unwrap();
        let p = dir.join(format!("{name}.parquet"));
        enc.encode_file(csv, &p, &bloomlink::agency::EncodeOptions::new(&name))
            .unwrap();
        out.push(p);
    }
    (out, dir.join("data/truth.csv"), csvs)
}

/// The `i`th of a run of NHS numbers: nine digits and their modulus 11
/// check digit (`None` where no check digit is valid, one base in eleven).
pub fn nhs_number(i: usize) -> Option<String> {
    let base = format!("{:09}", 400_000_000 + i * 7919);
    let sum: u32 = base
        .bytes()
        .zip((2..=10).rev())
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(format!("{base}0")),
        10 => None,
        c => Some(format!("{base}{c}")),
    }
}
