//! Bit-for-bit compatibility with clkhash 0.18.3, against the reference
//! vectors in `../shared/data/clkhash-vectors` (skipped, and said so, when
//! the folder is absent; failed under BLOOMLINK_REQUIRE_REFERENCE=1).

mod common;

use std::path::Path;

use base64::Engine;
use bloomlink::agency::hash::{TokenHasher, clkhash_keys};
use bloomlink::agency::normalise::{Normalised, normalise};
use bloomlink::agency::schema::{Hash, Schema};
use bloomlink::agency::tokenise::TokenBuf;
use bloomlink::agency::{EncodeOptions, Encoder, Secret};

fn secret(v: &Path) -> Secret {
    Secret::from_bytes(std::fs::read(v.join("secret.txt")).unwrap()).unwrap()
}

fn full_file(variant: &str) {
    let Some(data) = common::reference_dir(&format!("clkhash full file {variant}")) else {
        return;
    };
    let v = data.join("clkhash-vectors");
    let schema = Schema::load(&v.join(format!("febrl4-schema-{variant}.json"))).unwrap();
    let enc = Encoder::new(schema, &secret(&v)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for side in ["a", "b"] {
        let out = dir.path().join(format!("{side}.parquet"));
        let r = enc
            .encode_file(
                &data.join(format!("febrl/febrl4_{side}.csv")),
                &out,
                &EncodeOptions::new(side),
            )
            .unwrap();
        assert_eq!(
            r.counts.rejected, 0,
            "{variant} {side}: {:?}",
            r.counts.reject_reasons
        );
        let expected =
            std::fs::read_to_string(v.join(format!("febrl4_{side}_{variant}.clk.b64"))).unwrap();
        let expected: Vec<&str> = expected.lines().collect();
        let got = common::clk_bytes(&out);
        assert_eq!(got.len(), expected.len());
        let b64 = base64::engine::general_purpose::STANDARD;
        let mismatches: Vec<usize> = (0..got.len())
            .filter(|&i| b64.encode(&got[i]) != expected[i])
            .collect();
        assert!(
            mismatches.is_empty(),
            "{variant} {side}: {} of {} CLKs differ from clkhash, first at row {}",
            mismatches.len(),
            got.len(),
            mismatches[0] + 1
        );
        eprintln!(
            "clkhash {variant} side {side}: {} of {} CLKs identical",
            got.len(),
            expected.len()
        );
        // Unfolded, each field's filter is its own CLK bits: together they
        // make the CLK, record by record.
        assert_eq!(enc.schema().xor_folds, 0);
        let e = bloomlink::extract::read_extract(&out).unwrap();
        for i in 0..e.len {
            let mut or = vec![0u64; e.clk.words];
            for f in &e.fields {
                assert_eq!(f.words, e.clk.words, "{}", f.name);
                for (w, x) in or.iter_mut().zip(f.get(i)) {
                    *w |= x;
                }
            }
            assert_eq!(
                or,
                e.clk.get(i),
                "{variant} {side} row {}: field filters",
                i + 1
            );
        }
    }
}

#[test]
fn doublehash_febrl4_clks_are_identical() {
    full_file("doublehash");
}

#[test]
fn blake_febrl4_clks_are_identical() {
    full_file("blake");
}

/// Every token of the small vector set: formatting, tokens, k and bit indices.
fn token_vectors(variant: &str) {
    let Some(data) = common::reference_dir(&format!("clkhash token vectors {variant}")) else {
        return;
    };
    let v = data.join("clkhash-vectors");
    let schema = Schema::load(&v.join(format!("febrl4-schema-{variant}.json"))).unwrap();
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(v.join(format!("vectors-{variant}.json"))).unwrap(),
    )
    .unwrap();
    let l = doc["hash_l"].as_u64().unwrap();
    let kdf = schema.kdf.clone().unwrap();
    let okm = clkhash_keys(&secret(&v), &kdf).unwrap();
    // The derived keys equal clkhash's.
    for (i, fk) in doc["field_keys_hex"].as_array().unwrap().iter().enumerate() {
        let ks = kdf.key_size;
        assert_eq!(
            hex::encode(&okm[2 * i * ks..(2 * i + 1) * ks]),
            fk["key0"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(&okm[(2 * i + 1) * ks..(2 * i + 2) * ks]),
            fk["key1"].as_str().unwrap()
        );
    }
    let mut checked = 0;
    let mut entries: Vec<&serde_json::Value> = Vec::new();
    for r in doc["records"].as_array().unwrap() {
        entries.extend(r["fields"].as_array().unwrap());
    }
    entries.extend(doc["edge_cases"].as_array().unwrap());
    let mut norm = String::new();
    let mut toks = TokenBuf::default();
    for e in entries {
        let name = e["field"].as_str().unwrap();
        let Some(f) = schema.field(name) else {
            // An ignored feature (rec_id) has no tokens.
            assert!(
                e["tokens"].as_array().is_none_or(|t| t.is_empty()),
                "{name}"
            );
            continue;
        };
        let raw = e["raw"].as_str().unwrap();
        let pattern = f
            .validate
            .as_ref()
            .and_then(|v| v.pattern.as_ref())
            .map(|p| regex::Regex::new(&format!("^(?:{p})$")).unwrap());
        let out = normalise(f, pattern.as_ref(), Some(raw), &mut norm);
        assert!(
            matches!(out, Normalised::Value | Normalised::Missing),
            "{name}: {out:?}"
        );
        assert_eq!(norm, e["formatted"].as_str().unwrap(), "{name} formatting");
        toks.tokenise(&f.tokens, &norm);
        let tokens = e["tokens"].as_array().unwrap();
        assert_eq!(toks.len(), tokens.len(), "{name} token count for {raw:?}");
        let ks = kdf.key_size;
        let k1 = &okm[2 * f.key_index * ks..(2 * f.key_index + 1) * ks];
        let k2 = &okm[(2 * f.key_index + 1) * ks..(2 * f.key_index + 2) * ks];
        let hasher = match f.hash {
            Hash::DoubleHash {
                prevent_singularity,
            } => TokenHasher::double(k1, k2, prevent_singularity),
            Hash::Blake => TokenHasher::blake(k1).unwrap(),
            Hash::HmacSha256 => unreachable!(),
        };
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(
                toks.get(i),
                t["token"].as_str().unwrap().as_bytes(),
                "{name} token {i}"
            );
            let k = t["k"].as_u64().unwrap() as usize;
            let h = hasher.hash(toks.get(i), l, k);
            let idx: Vec<u64> = (0..k).map(|j| h.index(j, l) as u64).collect();
            let want: Vec<u64> = t["indices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            assert_eq!(idx, want, "{name} token {:?} indices", t["token"]);
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} tokens checked");
    eprintln!("clkhash {variant}: {checked} tokens with identical bit indices");
}

#[test]
fn doublehash_token_indices_match() {
    token_vectors("doublehash");
}

#[test]
fn blake_token_indices_match() {
    token_vectors("blake");
}
