#[test]
#[ignore]
fn dump_levels() {
    use bloomlink::hub::compare::Kernel;
    use bloomlink::hub::score::{cuts32, pair_levels};
    let ex: Vec<std::path::PathBuf> = ["social_care", "school"]
        .iter()
        .map(|a| std::path::PathBuf::from(format!("/tmp/d20/extracts/{a}.parquet")))
        .collect();
    let ds = bloomlink::hub::load::load(&ex).unwrap();
    let find = |id: &str| (0..ds.len()).find(|&i| ds.ids.get(i) == id).unwrap();
    let cuts = cuts32(&[1.0, 0.85, 0.7, 0.55, 0.4]);
    let names: Vec<_> = ds.fields.iter().map(|f| f.name.clone()).collect();
    eprintln!("{names:?}");
    for (a, b) in [
        ("SC0107341", "U0111666"),
        ("SC0107341", "U0108138"),
        ("SC0104266", "U0111140"),
        ("SC0106938", "U0104685"),
        ("SC0102266", "U0105112"),
    ] {
        let mut out = vec![0u8; ds.fields.len()];
        pair_levels(&ds, find(a), find(b), &cuts, Kernel::detect(), &mut out);
        eprintln!("{a} {b} {out:?}");
    }
}
