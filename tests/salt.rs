//! Salted fields at the hub: when exactly one record lacks the salt's source
//! (the date of birth in the demo schemas), the two records' salted name
//! filters are unrelated, and the hub must compare them as missing, not as
//! disagreeing.

mod common;

use bloomlink::hub::compare::Kernel;
use bloomlink::hub::load::{Dataset, load, salt_free_keys};
use bloomlink::hub::score::{cuts32, pair_levels};
use common::{encode_demo, secret_file};

const SOCIAL_CARE: &str =
    "child_id,forename,surname,dob,gender,postcode,address,ethnicity,imd_decile,category
SC1,Amelia,Jones,01/02/2010,F,LS1 1AA,1 High Street,white,3,CP
SC2,Amelia,Jones,,F,LS1 1AA,1 High Street,white,3,CP
SC3,Oliver,Smith,,M,LS2 2BB,2 Low Street,white,4,CIN
SC4,Amelia,Jones,01/02/2011,F,M1 4CC,4 New Road,white,3,CP
SC5,Olivia,Brown,01/02/2011,F,M1 4CC,4 New Road,white,3,CP
SC6,Olivia,Jones,15/03/2011,F,M1 4CC,4 New Road,white,3,CP
";

const SCHOOL: &str = "UPN,LegalForename,LegalSurname,DOB,Sex,Postcode,AddressLine1,EthnicGroup,IDACIDecile,SENProvision
U1,Amelia,Jones,2010-02-01,F,LS1 1AA,1 High Street,white,3,N
U2,Oliver,Smith,,M,LS2 2BB,2 Low Street,white,4,N
";

/// The two demo extracts above, encoded and loaded (the temporary folder
/// is kept alive with them).
fn demo_dataset() -> (tempfile::TempDir, Dataset) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let key = secret_file(dir, b"salt test key");
    let extracts = encode_demo(
        dir,
        &key,
        &[("social_care", SOCIAL_CARE), ("school", SCHOOL)],
    );
    let ds = load(&extracts).unwrap();
    (d, ds)
}

const CUTS: [f64; 5] = [1.0, 0.85, 0.7, 0.55, 0.4];

#[test]
fn salted_fields_are_missing_when_one_salt_is() {
    let (_d, ds) = demo_dataset();
    assert_eq!((ds.agencies[0].len, ds.agencies[1].len), (6, 2));
    let field = |n: &str| ds.fields.iter().position(|f| f.name == n).unwrap();
    let (first, last, dob) = (field("first_name"), field("last_name"), field("dob"));
    let salt = ds.salt.as_ref().expect("the demo schemas salt names");
    assert_eq!(salt.source, dob);
    assert!(salt.salted.contains(&first) && salt.salted.contains(&last));
    let (sc1, sc2, sc3, u1, u2) = (0, 1, 2, 6, 7);
    // The same name under a present and a missing salt: unrelated filters.
    assert_ne!(ds.fields[first].get(sc1), ds.fields[first].get(sc2));
    assert_eq!(ds.fields[first].get(sc1), ds.fields[first].get(u1));

    let cuts = cuts32(&CUTS);
    let kernel = Kernel::detect();
    let levels = |a: usize, b: usize| {
        let mut out = vec![0u8; ds.fields.len()];
        pair_levels(&ds, a, b, &cuts, kernel, &mut out);
        out
    };
    // Both salts present and equal: names agree exactly.
    let l = levels(sc1, u1);
    assert_eq!((l[first], l[last], l[dob]), (1, 1, 1), "{l:?}");
    // Date of birth missing on one side: names (and the date) carry no
    // evidence, while the unsalted postcode still agrees.
    let l = levels(sc2, u1);
    assert_eq!((l[first], l[last], l[dob]), (0, 0, 0), "{l:?}");
    assert_eq!(l[field("postcode")], 1, "{l:?}");
    // Missing on both sides: both have the same (empty) salt, so the names
    // compare as usual.
    let l = levels(sc3, u2);
    assert_eq!((l[first], l[last], l[dob]), (1, 1, 0), "{l:?}");
    // Different people, one salt missing: no evidence either way.
    let l = levels(sc3, u1);
    assert_eq!((l[first], l[last]), (0, 0), "{l:?}");
}

#[test]
fn the_name_key_speaks_only_where_the_salted_names_cannot() {
    let (_d, mut ds) = demo_dataset();
    // The demo schemas' `names` key (soundex of both names) is built from
    // salted fields only; `last_yob` holds the salt's source and is not.
    let keys = salt_free_keys(&ds);
    assert_eq!(keys, vec!["names".to_string()]);
    ds.compare_keys(&keys).unwrap();
    let field = |n: &str| ds.fields.iter().position(|f| f.name == n).unwrap();
    let (first, last, dob, key) = (
        field("first_name"),
        field("last_name"),
        field("dob"),
        field("bk_names"),
    );
    assert!(ds.fields[key].exact && !ds.fields[first].exact);
    let cuts = cuts32(&CUTS);
    let disagree = cuts.len() as u8 + 1;
    let kernel = Kernel::detect();
    let levels = |a: usize, b: usize| {
        let mut out = vec![0u8; ds.fields.len()];
        pair_levels(&ds, a, b, &cuts, kernel, &mut out);
        out
    };
    let (sc1, sc2, sc4, sc5, sc6, u1) = (0, 1, 3, 4, 5, 6);
    // Same date of birth: the names' filters speak, the key stays silent.
    let l = levels(sc1, u1);
    assert_eq!((l[first], l[last], l[dob], l[key]), (1, 1, 1, 0), "{l:?}");
    // The year of birth mistyped: the same names under different salts
    // look unrelated, and the key says they agree.
    let l = levels(sc4, u1);
    assert_eq!((l[first], l[last]), (disagree, disagree), "{l:?}");
    assert_ne!(l[dob], 1, "{l:?}");
    assert_eq!(l[key], 1, "{l:?}");
    // A different person with the same mistyped date: the key disagrees.
    let l = levels(sc5, u1);
    assert_eq!(l[key], disagree, "{l:?}");
    // The date missing on one side: names are null and the key agrees.
    let l = levels(sc2, u1);
    assert_eq!((l[first], l[last], l[key]), (0, 0, 1), "{l:?}");
    // Same year, another day, the surname agreeing: the key is null
    // although it differs (the surname's filter has counted the names).
    let l = levels(sc4, sc6);
    assert_eq!((l[last], l[key]), (1, 0), "{l:?}");
    assert_ne!(l[dob], 1, "{l:?}");
    // Unknown keys are refused with the keys the extracts have.
    let err = ds
        .compare_keys(&["nope".to_string()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`nope`") && err.contains("names"), "{err}");
}

/// The cross-agency pairs of the key passes `passes` (packed, sorted).
fn key_pairs(ds: &Dataset, passes: &[&str]) -> bloomlink::Result<Vec<(u32, u32)>> {
    use bloomlink::hub::block::group;
    use bloomlink::hub::config::{Blocking, BlockingMethod};
    let cfg = Blocking {
        method: BlockingMethod::Keys,
        passes: passes.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    };
    let grouped = group(ds, &cfg, false, 1, None)?;
    let mut out = Vec::new();
    for pass in &grouped.passes {
        for block in pass.blocks() {
            for (i, &a) in block.iter().enumerate() {
                for &b in &block[i + 1..] {
                    if ds.agency_of[a as usize] != ds.agency_of[b as usize] {
                        out.push((a, b));
                    }
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[test]
fn a_compound_pass_blocks_on_both_keys_and_unknown_passes_are_errors() {
    let (_d, ds) = demo_dataset();
    let (sc1, sc2, sc3, sc4, u1, u2) = (0, 1, 2, 3, 6, 7);
    // Amelia Jones: born 2010, no date, born 2011 in social care; 2010 at
    // school. The soundex codes of both names put all four in one block,
    // and Oliver Smith (no date on either side) in another.
    assert_eq!(
        key_pairs(&ds, &["names"]).unwrap(),
        vec![(sc1, u1), (sc2, u1), (sc3, u2), (sc4, u1)]
    );
    // With the surname code and year of birth as well, only the record born
    // in the same year remains; records without a date have no key.
    assert_eq!(
        key_pairs(&ds, &["names+last_yob"]).unwrap(),
        vec![(sc1, u1)]
    );
    for bad in ["nmes", "names+year"] {
        let e = key_pairs(&ds, &[bad]).unwrap_err().to_string();
        let unknown = bad.split('+').find(|p| *p != "names").unwrap();
        assert!(
            e.contains(&format!("`{unknown}`")) && e.contains("last_yob"),
            "{e}"
        );
    }
}

const SOCIAL_CARE_DATES: &str =
    "child_id,forename,surname,dob,gender,postcode,address,ethnicity,imd_decile,category
S1,Amelia,Jones,02/01/2010,F,LS1 1AA,1 High Street,white,3,CP
S2,Amelia,Jones,01/02/2011,F,LS1 1AA,1 High Street,white,3,CP
S3,Amelia,Jones,01/02/2012,F,LS1 1AA,1 High Street,white,3,CP
S4,Amelia,Jones,01/02/2009,F,LS1 1AA,1 High Street,white,3,CP
S5,Amelia,Jones,05/02/2010,F,LS1 1AA,1 High Street,white,3,CP
S6,Amelia,Jones,01/02/2010,F,LS1 1AA,1 High Street,white,3,CP
S7,Amelia,Jones,,F,LS1 1AA,1 High Street,white,3,CP
";

const SCHOOL_DATES: &str = "UPN,LegalForename,LegalSurname,DOB,Sex,Postcode,AddressLine1,EthnicGroup,IDACIDecile,SENProvision
V1,Amelia,Jones,2010-02-01,F,LS1 1AA,1 High Street,white,3,N
";

#[test]
fn date_variants_tell_swapped_days_and_years_one_off_from_other_dates() {
    use bloomlink::hub::load::{DATE_SAME_MONTH, DATE_SWAPPED, DATE_YEAR_OFF};
    let d = tempfile::tempdir().unwrap();
    let key = secret_file(d.path(), b"date variants key");
    let extracts = encode_demo(
        d.path(),
        &key,
        &[("social_care", SOCIAL_CARE_DATES), ("school", SCHOOL_DATES)],
    );
    let mut ds = load(&extracts).unwrap();
    let field = |ds: &Dataset, n: &str| ds.fields.iter().position(|f| f.name == n).unwrap();
    let (first, last, dob) = (
        field(&ds, "first_name"),
        field(&ds, "last_name"),
        field(&ds, "dob"),
    );
    let cuts = cuts32(&CUTS);
    let disagree = cuts.len() as u8 + 1;
    let kernel = Kernel::detect();
    let levels = |ds: &Dataset, a: usize| {
        let mut out = vec![0u8; ds.fields.len()];
        pair_levels(ds, a, 7, &cuts, kernel, &mut out);
        (out[first], out[last], out[dob])
    };
    // Without the variants, 1 Feb 2011 against 1 Feb 2010 is a middling
    // date and two disagreeing names (salted by different years).
    let (f, l, date) = levels(&ds, 1);
    assert_eq!((f, l), (disagree, disagree));
    assert!(date > 1 && date < disagree, "{date}");
    let before: Vec<_> = (0..7).map(|a| levels(&ds, a)).collect();
    {
        let key = |n: &str| &ds.blocks.iter().find(|b| b.0 == n).unwrap().1;
        let (swap, even, odd) = (key("dob_swap"), key("dob_year_even"), key("dob_year_odd"));
        // 2011 and 2010 round down to the even 2010, 2009 and 2010 to the
        // odd 2009; 2012 and 2010 share neither.
        assert!(even.get(1) == even.get(7) && odd.get(1) != odd.get(7));
        assert!(odd.get(3) == odd.get(7) && even.get(3) != even.get(7));
        assert!(even.get(2) != even.get(7) && odd.get(2) != odd.get(7));
        // Day and month as an unordered pair, with the year.
        assert!(swap.get(0) == swap.get(7) && swap.get(5) == swap.get(7));
        assert!(swap.get(1) != swap.get(7) && swap.get(4) != swap.get(7));
        let month = key("dob_month");
        assert!(month.get(4) == month.get(7) && month.get(5) == month.get(7));
        assert!(month.get(0) != month.get(7) && month.get(1) != month.get(7));
        assert!(swap.get(6).is_none() && even.get(6).is_none() && odd.get(6).is_none());
    }

    assert_eq!(
        ds.compare_date_variants(),
        vec!["dob (dob_swap, dob_year_even, dob_year_odd, dob_month)".to_string()]
    );
    // 2 Jan 2010: day and month swapped, same year, so the names agree.
    assert_eq!(levels(&ds, 0), (1, 1, DATE_SWAPPED));
    // 1 Feb 2011 and 1 Feb 2009: a year off either way; the names, salted
    // by another year, say nothing.
    assert_eq!(levels(&ds, 1), (0, 0, DATE_YEAR_OFF));
    assert_eq!(levels(&ds, 3), (0, 0, DATE_YEAR_OFF));
    // Two years off: no variant, a Dice level below them; the names look
    // unrelated as before.
    let (f, l, date) = levels(&ds, 2);
    assert_eq!((f, l), (disagree, disagree));
    assert!(date > DATE_SAME_MONTH, "{date}");
    // Another day of the same month.
    assert_eq!(levels(&ds, 4), (1, 1, DATE_SAME_MONTH));
    // Date variants are evidence, not default passes: `passes = []` blocks
    // on every other key; a compound pass may still name them.
    {
        use bloomlink::hub::block::group;
        use bloomlink::hub::config::{Blocking, BlockingMethod};
        let names = |passes: &[&str]| -> Vec<String> {
            let cfg = Blocking {
                method: BlockingMethod::Keys,
                passes: passes.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            };
            let g = group(&ds, &cfg, false, 1, None).unwrap();
            g.passes.iter().map(|p| p.stats.name.clone()).collect()
        };
        let all = names(&[]);
        assert!(all.contains(&"dob".to_string()), "{all:?}");
        assert!(!all.iter().any(|p| p.starts_with("dob_")), "{all:?}");
        assert_eq!(names(&["names+dob_year_even"]), ["names+dob_year_even"]);
    }
    // Exact and missing dates are unchanged.
    assert_eq!(levels(&ds, 5), (1, 1, 1));
    assert_eq!(levels(&ds, 6), before[6]);
    assert_eq!(levels(&ds, 6).2, 0);
}
