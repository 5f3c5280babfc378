//! Property tests: normalisation is idempotent, tokenisation and Dice keep
//! their invariants, and every parser that takes outside input returns an
//! error instead of panicking on arbitrary bytes (a stable-Rust stand-in for
//! cargo-fuzz, which needs a nightly toolchain this project does not use).

use std::path::Path;

use proptest::prelude::*;

use bloomlink::agency::normalise::clean_text;
use bloomlink::agency::schema::{Schema, Tokens};
use bloomlink::agency::tokenise::TokenBuf;
use bloomlink::bloom::dice;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn normalisation_is_idempotent(s in "\\PC{0,40}") {
        let mut once = String::new();
        clean_text(&s, &mut once);
        let mut twice = String::new();
        clean_text(&once, &mut twice);
        prop_assert_eq!(&once, &twice);
        prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
    }

    #[test]
    fn qgrams_cover_the_padded_value(s in "[a-z ]{0,20}", q in 1u32..5) {
        let mut t = TokenBuf::default();
        t.tokenise(&Tokens::Qgram { q, positional: false }, &s);
        let n = s.chars().count();
        let expect = if n == 0 { 0 } else { n + q as usize - 1 };
        prop_assert_eq!(t.len(), expect);
        for tok in t.iter() {
            prop_assert_eq!(std::str::from_utf8(tok).unwrap().chars().count(), q as usize);
        }
    }

    #[test]
    fn dice_is_symmetric_bounded_and_one_for_identical(
        a in proptest::collection::vec(any::<u64>(), 16),
        b in proptest::collection::vec(any::<u64>(), 16),
    ) {
        let (x, y) = (dice(&a, &b), dice(&b, &a));
        prop_assert_eq!(x, y);
        prop_assert!((0.0..=1.0).contains(&x));
        if a.iter().any(|w| *w != 0) {
            prop_assert_eq!(dice(&a, &a), 1.0);
        }
    }

    #[test]
    fn schema_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Schema::from_toml(&text, Path::new("fuzz.toml"));
        let _ = Schema::from_clkhash_json(&text, Path::new("fuzz.json"));
    }

    #[test]
    fn schema_parser_survives_mutated_valid_schemas(cut in 0usize..2000, junk in "\\PC{0,8}") {
        let base = include_str!("../config/demo/social_care.toml");
        let cut = cut.min(base.len());
        let cut = (0..=cut).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
        let text = format!("{}{}{}", &base[..cut], junk, &base[cut..]);
        let _ = Schema::from_toml(&text, Path::new("fuzz.toml"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn csv_input_and_extract_reader_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let d = tempfile::tempdir().unwrap();
        // Arbitrary bytes as an agency CSV: encode must succeed or return an error.
        let csv = d.path().join("in.csv");
        let mut data = b"id,first name,dob,postcode,area\n".to_vec();
        data.extend_from_slice(&bytes);
        std::fs::write(&csv, &data).unwrap();
        let schema = Schema::from_toml(
            "record_id = \"id\"\n[[field]]\nname = \"first\"\ncolumn = \"first name\"\ntype = \"name\"\n[[field]]\nname = \"dob\"\ntype = \"date\"\nformats = [\"%Y-%m-%d\"]\n",
            Path::new("s.toml"),
        ).unwrap();
        let enc = bloomlink::agency::Encoder::new(schema, &bloomlink::agency::Secret::from_bytes(b"k".to_vec()).unwrap()).unwrap();
        let out = d.path().join("o.parquet");
        if let Ok(r) = enc.encode_file(&csv, &out, &bloomlink::agency::EncodeOptions::new("a")) {
            prop_assert_eq!(r.counts.rows_read, r.counts.encoded + r.counts.rejected);
            // Corrupt the extract at a random place: the reader must not panic.
            let mut pq = std::fs::read(&out).unwrap();
            if !pq.is_empty() {
                let i = bytes.first().copied().unwrap_or(0) as usize * pq.len() / 256;
                pq[i] ^= 0x5a;
                let bad = d.path().join("bad.parquet");
                std::fs::write(&bad, &pq).unwrap();
                let _ = bloomlink::extract::read_extract(&bad);
            }
        }
        // Arbitrary bytes as an extract.
        let junk = d.path().join("junk.parquet");
        std::fs::write(&junk, &bytes).unwrap();
        prop_assert!(bloomlink::extract::read_extract(&junk).is_err());
    }
}
