//! `bloomlink demo`: synthetic data → encode each agency → link → report,
//! in one command, with nothing outside the binary.

use std::path::PathBuf;

use super::DemoArgs;
use crate::agency::{EncodeOptions, Encoder, Schema, Secret};
use crate::error::{Error, Result};
use crate::hub::{JobConfig, LinkOptions};
use crate::synth;

/// The demo's linkage key. Not a secret: real linkages use a random key
/// shared only between agencies (see the README's security model).
const DEMO_KEY: &[u8] = b"bloomlink demo key - not secret - never use for real data";

/// What the demo did.
pub struct DemoOutcome {
    pub dir: PathBuf,
    pub f1: f64,
    pub report: PathBuf,
}

/// Run the demo into `dir` and return its figures.
pub fn run_demo(
    dir: &std::path::Path,
    people: usize,
    agencies: usize,
    seed: u64,
    progress: bool,
) -> Result<DemoOutcome> {
    // Never over a folder of someone's own files; the key marks a demo's.
    let key_path = dir.join("demo.key");
    crate::io::check_own_folder(
        dir,
        "demo.key",
        &[
            "data",
            "schemas",
            "extracts",
            "payload",
            "linked",
            "analysis.parquet",
            "demo-hub.jobkey",
        ],
        "demo",
    )?;
    crate::io::write_atomic(&key_path, DEMO_KEY)?;
    eprintln!(
        "1/5 synthesising {people} people across {agencies} agencies -> {}",
        dir.join("data").display()
    );
    let s = synth::generate(&synth::Params {
        people,
        agencies,
        seed,
        overlap: 0.6,
    });
    let csvs = synth::write(&s, &dir.join("data"), seed)?;
    let mut extracts = Vec::new();
    let mut payloads = Vec::new();
    for (i, csv) in csvs.iter().enumerate() {
        let name = synth::agency_name(i);
        let schema_path = dir.join("schemas").join(format!("{name}.toml"));
        crate::io::write_atomic(&schema_path, synth::profile(i).schema.as_bytes())?;
        let schema = Schema::load(&schema_path)?;
        let secret = Secret::load(Some(&key_path))?;
        let enc = Encoder::new(schema, &secret)?;
        drop(secret);
        let out = dir.join("extracts").join(format!("{name}.parquet"));
        let payload = dir.join("payload").join(format!("{name}.parquet"));
        let mut o = EncodeOptions::new(&name);
        o.progress = progress;
        o.payload_columns = vec![synth::profile(i).payload_column().to_string()];
        o.payload_output = Some(payload.clone());
        payloads.push((name.clone(), payload));
        let r = enc.encode_file(csv, &out, &o)?;
        eprintln!(
            "2/5 encoded {:<12} {} rows: {} encoded, {} rejected -> {}",
            name,
            r.counts.rows_read,
            r.counts.encoded,
            r.counts.rejected,
            out.display()
        );
        extracts.push(out);
    }
    let out = dir.join("linked");
    eprintln!(
        "3/5 linking {} extracts at the hub (no key) -> {}",
        extracts.len(),
        out.display()
    );
    // The hub's job key for pseudonyms; a real hub keeps its own, secret.
    let job_key = dir.join("demo-hub.jobkey");
    crate::io::write_atomic(&job_key, b"bloomlink demo hub job key - not secret")?;
    let mut config = JobConfig::default();
    config.output.job_key_file = Some(job_key);
    // The demo schemas' postcode and address go wrong together (a move
    // changes both; docs/decisions.md §66).
    config.scoring.dependent = vec![["postcode".into(), "address".into()]];
    let mut opts = LinkOptions::new(extracts, out.clone(), config);
    opts.progress = progress;
    let truth = dir.join("data").join("truth.csv");
    let o =
        super::link::link_and_report(&opts, Some(&truth), vec!["bloomlink".into(), "demo".into()])?;
    let e = o
        .evaluation
        .clone()
        .ok_or_else(|| Error::Runtime("demo evaluation missing".into()))?;
    eprintln!(
        "4/5 linked {} of {} records into {} entities in {:.2}s; against the truth: precision {:.4}, recall {:.4}, F1 {:.4}",
        o.linked, o.records, o.entities, o.seconds, e.precision, e.recall, e.f1
    );
    let analysis = dir.join("analysis.parquet");
    let m = crate::release::release(&crate::release::ReleaseOptions {
        links: out.join("links.parquet"),
        payloads,
        out: analysis.clone(),
        allow: Vec::new(),
    })?;
    eprintln!(
        "5/5 released {} rows for analysts (entity_id, agency, {}) -> {}",
        m.rows,
        m.columns[2..].join(", "),
        analysis.display()
    );
    Ok(DemoOutcome {
        dir: dir.to_path_buf(),
        f1: e.f1,
        report: o.report,
    })
}

/// Run `demo`.
pub fn run(a: DemoArgs, progress: bool) -> Result<()> {
    let dir = a
        .out
        .unwrap_or_else(|| std::env::temp_dir().join("bloomlink-demo"));
    let o = run_demo(&dir, a.people, a.agencies, a.seed, progress)?;
    println!("report: {}", o.report.display());
    eprintln!(
        "open it in a browser; everything else is under {}",
        o.dir.display()
    );
    Ok(())
}
