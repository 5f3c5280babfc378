//! The checked-in fixtures are exactly what their documented command makes.

use std::path::Path;

#[test]
fn fixtures_regenerate_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    let s = bloomlink::synth::generate(&bloomlink::synth::Params {
        people: 300,
        agencies: 3,
        seed: 7,
        overlap: 0.6,
    });
    bloomlink::synth::write(&s, d.path(), 7).unwrap();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synth3");
    for f in [
        "social_care.csv",
        "school.csv",
        "health.csv",
        "truth.csv",
        "synth_stats.json",
    ] {
        assert_eq!(
            std::fs::read(d.path().join(f)).unwrap(),
            std::fs::read(fx.join(f)).unwrap(),
            "fixtures/synth3/{f} is stale: regenerate it with the command in fixtures/README.md"
        );
    }
}

#[test]
fn fixture_extracts_encode_and_link() {
    let d = tempfile::tempdir().unwrap();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synth3");
    let mut ex = Vec::new();
    for (i, name) in ["social_care", "school", "health"].iter().enumerate() {
        let sp = d.path().join(format!("{name}.toml"));
        std::fs::write(&sp, bloomlink::synth::profile(i).schema).unwrap();
        let enc = bloomlink::agency::Encoder::new(
            bloomlink::agency::Schema::load(&sp).unwrap(),
            &bloomlink::agency::Secret::from_bytes(b"fixture".to_vec()).unwrap(),
        )
        .unwrap();
        let out = d.path().join(format!("{name}.parquet"));
        let r = enc
            .encode_file(
                &fx.join(format!("{name}.csv")),
                &out,
                &bloomlink::agency::EncodeOptions::new(name),
            )
            .unwrap();
        assert_eq!(r.counts.rows_read, r.counts.encoded + r.counts.rejected);
        ex.push(out);
    }
    let opts = bloomlink::hub::LinkOptions::new(
        ex,
        d.path().join("out"),
        bloomlink::hub::JobConfig::default(),
    );
    let o =
        bloomlink::cli::link::link_and_report(&opts, Some(&fx.join("truth.csv")), vec![]).unwrap();
    let e = o.evaluation.unwrap();
    assert!(e.f1 > 0.9, "{e:?}");
}
