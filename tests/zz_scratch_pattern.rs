use std::path::Path;
use bloomlink::agency::normalise::clean_text;
use bloomlink::agency::{EncodeOptions, Encoder, Schema, Secret};
use bloomlink::report::pattern::{PatternParams, pattern_attack};
fn names(csv: &Path, col: usize) -> Vec<String> {
    let mut r = csv::Reader::from_path(csv).unwrap();
    r.records().map(|x| { let mut o = String::new(); clean_text(&x.unwrap()[col], &mut o); o }).collect()
}
#[test]
fn scratch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data/febrl");
    let base: String = std::fs::read_to_string(root.join("config/febrl4.toml")).unwrap().lines()
        .filter(|l| !l.starts_with("salt") && !l.starts_with("blip")).map(|l| format!("{l}\n")).collect();
    let d = tempfile::tempdir().unwrap();
    let sp = d.path().join("s.toml"); std::fs::write(&sp, base).unwrap();
    let secret = Secret::from_bytes(b"k".to_vec()).unwrap();
    let enc = Encoder::new(Schema::load(&sp).unwrap(), &secret).unwrap();
    let p = d.path().join("a.parquet");
    enc.encode_file(&data.join("febrl4_a.csv"), &p, &EncodeOptions::new("a")).unwrap();
    let e = bloomlink::extract::read_extract(&p).unwrap();
    for (fi, col) in [(0usize, 1usize), (1, 2)] {
        let truth = names(&data.join("febrl4_a.csv"), col);
        let mut c: std::collections::HashMap<String, f64> = Default::default();
        for n in names(&data.join("febrl4_b.csv"), col) { if !n.is_empty() { *c.entry(n).or_default() += 1.0; } }
        let mut reference: Vec<(String, f64)> = c.into_iter().collect();
        reference.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let f = &e.fields[fi];
        let t = |i: usize| Some(truth[i].clone());
        let r = pattern_attack(&f.name, e.len, f.words, |i| f.valid[i].then(|| f.get(i)), &reference, Some(&t), PatternParams::default());
        eprintln!("{r:?} words {} top refs {:?}", f.words, &reference[..5]);
    }
}
