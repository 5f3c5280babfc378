//! The demo schemas' formal forename (`type = "forename"`, `fallback_for =
//! "first_name"`): diminutives meet at the agency, the hub compares the
//! field only where the forename is not exactly equal, and the field adds
//! nothing to the record-level CLK.

mod common;

use bloomlink::hub::compare::Kernel;
use bloomlink::hub::load::load;
use bloomlink::hub::score::{cuts32, pair_levels};
use common::{encode, encode_demo, secret_file};

const SOCIAL_CARE: &str =
    "child_id,forename,surname,dob,gender,postcode,address,ethnicity,imd_decile,category
SC1,Bill,Jones,01/02/2010,M,LS1 1AA,1 High Street,white,3,CP
SC2,Thomsa,Smith,03/04/2011,M,LS2 2BB,2 Low Street,white,4,CIN
SC3,Amelia,Brown,05/06/2012,F,LS3 3CC,3 Mid Street,white,5,CP
";

const SCHOOL: &str = "UPN,LegalForename,LegalSurname,DOB,Sex,Postcode,AddressLine1,EthnicGroup,IDACIDecile,SENProvision
U1,William,Jones,2010-02-01,M,LS1 1AA,1 High Street,white,3,N
U2,Thomas,Smith,2011-04-03,M,LS2 2BB,2 Low Street,white,4,N
U3,Amelia,Brown,2012-06-05,F,LS3 3CC,3 Mid Street,white,5,N
";

#[test]
fn the_formal_forename_speaks_only_where_the_forename_does_not_agree() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = secret_file(dir, b"fallback test key");
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo");
    // The same records with the demo schema and with the schema less its
    // formal forename.
    let schema = std::fs::read_to_string(demo.join("social_care.toml")).unwrap();
    let start = schema
        .find("[[field]]\nname = \"first_name_formal\"")
        .unwrap();
    let end = start + schema[start..].find("\n\n").unwrap() + 2;
    let without = schema[..start].to_string() + &schema[end..];
    let without = without.replace(", \"first_name_formal\"]", "]");
    assert!(!without.contains("formal\""), "{without}");
    let plain_schema = dir.join("plain.toml");
    std::fs::write(&plain_schema, without).unwrap();
    let extracts = encode_demo(
        dir,
        &key,
        &[("social_care", SOCIAL_CARE), ("school", SCHOOL)],
    );
    let plain = dir.join("plain.parquet");
    let input = dir.join("social_care.csv");
    let o = encode(&plain_schema, &key, &input, &plain, "social_care", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let ds = load(&extracts).unwrap();
    let field = |n: &str| ds.fields.iter().position(|f| f.name == n).unwrap();
    let (first, formal) = (field("first_name"), field("first_name_formal"));
    assert_eq!(ds.fields[formal].fallback_for, Some(first));
    let cuts = cuts32(&[1.0, 0.85, 0.7, 0.55, 0.4]);
    let disagree = cuts.len() as u8 + 1;
    let kernel = Kernel::detect();
    let levels = |a: usize, b: usize| {
        let mut out = vec![0u8; ds.fields.len()];
        pair_levels(&ds, a, b, &cuts, kernel, &mut out);
        (out[first], out[formal])
    };
    let (sc1, sc2, sc3, u1, u2, u3) = (0, 1, 2, 3, 4, 5);
    // Bill and William: unlike as written, the same formal name.
    let (f, g) = levels(sc1, u1);
    assert!(f > 1, "forename level {f}");
    assert_eq!(g, 1);
    // A typo: the formal names differ as the forenames do.
    let (f, g) = levels(sc2, u2);
    assert!(f > 1, "forename level {f}");
    assert_eq!(g, disagree);
    // Equal forenames: the fallback stays silent.
    assert_eq!(levels(sc3, u3), (1, 0));

    // The formal forename has a filter of its own but leaves the CLK as
    // the schema without it makes it.
    let with = load(&extracts[..1]).unwrap();
    let without = load(&[plain]).unwrap();
    assert_eq!(with.len(), without.len());
    for g in 0..with.len() {
        assert_eq!(with.clk.get(g), without.clk.get(g), "record {g}");
    }
    assert_eq!(with.fields.len(), without.fields.len() + 1);
}
