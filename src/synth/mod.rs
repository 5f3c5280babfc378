//! Synthetic multi-agency data: realistic plaintext extracts with known truth.
//!
//! People are drawn from frequency-weighted name lists of several origins,
//! with dates of birth, UK-style postcodes and addresses, sex, an ethnicity
//! group and a deprivation decile. Each agency sees a subset of people, in its
//! own column names and formats, with errors at the rates in [`RATES`]
//! (documented in docs/synthetic-data.md). Names of origins that are often
//! transliterated or re-ordered get higher error rates, so the bias report
//! has a real difference to find. Deterministic for a seed. Nobody real is in
//! this data; it is the only plaintext bloomlink ever ships.

pub mod names;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::Pending;
use names::{NICKNAMES, Origin, POSTCODE_AREAS, STREET_TYPES, STREETS};

/// Documented error rates: (name, base rate). Name errors (typo, phonetic,
/// swap) are doubled — the swap tripled — for names of origins that are often
/// transliterated or re-ordered.
pub const RATES: &[(&str, f64)] = &[
    ("typo_first_name", 0.04),
    ("typo_last_name", 0.04),
    ("phonetic_first_name", 0.02),
    ("phonetic_last_name", 0.02),
    ("ocr_slip", 0.01),
    ("nickname", 0.15),
    ("name_swap", 0.015),
    ("surname_change", 0.03),
    ("dob_day_month_swap", 0.02),
    ("dob_typo", 0.02),
    ("missing_first_name", 0.01),
    ("missing_last_name", 0.01),
    ("missing_dob", 0.02),
    ("missing_sex", 0.02),
    ("missing_postcode", 0.05),
    ("missing_address", 0.05),
    ("moved_address", 0.15),
    ("duplicate_record", 0.02),
];

/// The rate of a named error.
pub fn rate(name: &str) -> f64 {
    RATES
        .iter()
        .find(|r| r.0 == name)
        .map(|r| r.1)
        .expect("known rate")
}

/// Reference date for ages and age bands.
pub const REFERENCE_DATE: &str = "2026-03-31";

/// How an agency writes sex.
#[derive(Debug, Clone, Copy)]
enum SexStyle {
    Mf,
    Words,
    Digits,
}

/// An agency's system: its column names and formats.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    prefix: &'static str,
    id: &'static str,
    first: &'static str,
    last: &'static str,
    dob: &'static str,
    dob_format: &'static str,
    sex: &'static str,
    sex_style: SexStyle,
    postcode: &'static str,
    address: &'static str,
    ethnicity: &'static str,
    imd: &'static str,
    /// A non-identifying payload column and its values.
    payload: (&'static str, &'static [&'static str]),
    upper: bool,
    /// The shipped schema for this profile.
    pub schema: &'static str,
}

/// The five shipped agency profiles, in the order agencies are made.
pub const PROFILES: [Profile; 5] = [
    Profile {
        name: "social_care",
        prefix: "SC",
        id: "child_id",
        first: "forename",
        last: "surname",
        dob: "dob",
        dob_format: "%d/%m/%Y",
        sex: "gender",
        sex_style: SexStyle::Mf,
        postcode: "postcode",
        address: "address",
        ethnicity: "ethnicity",
        imd: "imd_decile",
        payload: ("category", &["CIN", "CP", "LAC", "EH"]),
        upper: false,
        schema: include_str!("../../config/demo/social_care.toml"),
    },
    Profile {
        name: "school",
        prefix: "U",
        id: "UPN",
        first: "LegalForename",
        last: "LegalSurname",
        dob: "DOB",
        dob_format: "%Y-%m-%d",
        sex: "Sex",
        sex_style: SexStyle::Mf,
        postcode: "Postcode",
        address: "AddressLine1",
        ethnicity: "EthnicGroup",
        imd: "IDACIDecile",
        payload: ("SENProvision", &["N", "K", "E"]),
        upper: false,
        schema: include_str!("../../config/demo/school.toml"),
    },
    Profile {
        name: "health",
        prefix: "HV",
        id: "hv_ref",
        first: "first_name",
        last: "last_name",
        dob: "date_of_birth",
        dob_format: "%Y%m%d",
        sex: "sex",
        sex_style: SexStyle::Words,
        postcode: "post_code",
        address: "street",
        ethnicity: "ethnic_category",
        imd: "imd",
        payload: ("visits", &["0", "1", "2", "3", "4", "5"]),
        upper: false,
        schema: include_str!("../../config/demo/health.toml"),
    },
    Profile {
        name: "police",
        prefix: "PN",
        id: "PERSON_REF",
        first: "FIRST_NAME",
        last: "SURNAME",
        dob: "DOB",
        dob_format: "%d-%b-%Y",
        sex: "SEX",
        sex_style: SexStyle::Digits,
        postcode: "POSTCODE",
        address: "ADDRESS",
        ethnicity: "ETHNICITY",
        imd: "IMD",
        payload: ("INCIDENTS", &["1", "2", "3", "4"]),
        upper: true,
        schema: include_str!("../../config/demo/police.toml"),
    },
    Profile {
        name: "housing",
        prefix: "T",
        id: "tenant_ref",
        first: "given_names",
        last: "family_name",
        dob: "birth_date",
        dob_format: "%d.%m.%Y",
        sex: "gender",
        sex_style: SexStyle::Words,
        postcode: "postcode",
        address: "address_line_1",
        ethnicity: "ethnic_origin",
        imd: "imd_decile",
        payload: ("tenure", &["council", "housing association", "temporary"]),
        upper: false,
        schema: include_str!("../../config/demo/housing.toml"),
    },
];

impl Profile {
    /// The profile's non-identifying payload column.
    pub fn payload_column(&self) -> &'static str {
        self.payload.0
    }
}

/// The profile of agency `i` (profiles repeat past five).
pub fn profile(i: usize) -> Profile {
    PROFILES[i % PROFILES.len()]
}

/// The agency name of agency `i`: the profile name, suffixed past five.
pub fn agency_name(i: usize) -> String {
    let p = profile(i);
    if i < PROFILES.len() {
        p.name.to_string()
    } else {
        format!("{}_{}", p.name, i / PROFILES.len() + 1)
    }
}

/// Generation parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub people: usize,
    pub agencies: usize,
    pub seed: u64,
    /// Probability that a person appears in each agency.
    pub overlap: f64,
}

/// A person's true details.
#[derive(Debug, Clone)]
pub struct Person {
    pub origin: Origin,
    pub first: String,
    pub last: String,
    pub dob: NaiveDate,
    pub male: bool,
    pub postcode: String,
    pub address: String,
    pub ethnic: &'static str,
    pub imd: u8,
}

/// What was generated, with error counts (applied / opportunities).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub people: usize,
    pub records: BTreeMap<String, usize>,
    pub errors: BTreeMap<String, (u64, u64)>,
    /// Same, split into higher-error origins and the rest.
    pub errors_higher: BTreeMap<String, (u64, u64)>,
}

struct Gen {
    rng: ChaCha8Rng,
    stats: Stats,
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = list.iter().map(|x| x.1).sum();
    let mut r = rng.random_range(0..total);
    for (s, w) in list {
        if r < *w {
            return s;
        }
        r -= w;
    }
    list[0].0
}

impl Gen {
    fn chance(&mut self, name: &str, higher: bool, factor: f64) -> bool {
        let hit = self.rng.random_bool((rate(name) * factor).min(1.0));
        let map = if higher {
            &mut self.stats.errors_higher
        } else {
            &mut self.stats.errors
        };
        let e = map.entry(name.to_string()).or_default();
        e.1 += 1;
        if hit {
            e.0 += 1;
        }
        hit
    }

    fn postcode(&mut self) -> String {
        let area = pick(&mut self.rng, POSTCODE_AREAS);
        const L: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";
        format!(
            "{area}{} {}{}{}",
            self.rng.random_range(1..30),
            self.rng.random_range(1..10),
            L[self.rng.random_range(0..L.len())] as char,
            L[self.rng.random_range(0..L.len())] as char
        )
    }

    fn address(&mut self) -> String {
        format!(
            "{} {} {}",
            self.rng.random_range(1..240),
            STREETS[self.rng.random_range(0..STREETS.len())],
            STREET_TYPES[self.rng.random_range(0..STREET_TYPES.len())]
        )
    }

    fn person(&mut self, reference: NaiveDate) -> Person {
        let total: u32 = Origin::ALL.iter().map(|x| x.1).sum();
        let mut r = self.rng.random_range(0..total);
        let mut origin = Origin::WhiteBritish;
        for (o, w) in Origin::ALL {
            if r < w {
                origin = o;
                break;
            }
            r -= w;
        }
        let (m, f, s) = names::lists(origin);
        let male = self.rng.random_bool(0.5);
        let first = pick(&mut self.rng, if male { m } else { f }).to_string();
        let last = pick(&mut self.rng, s).to_string();
        let age_days = if self.rng.random_bool(0.7) {
            self.rng.random_range(0..18 * 365)
        } else {
            self.rng.random_range(18 * 365..70 * 365)
        };
        let dob = reference - chrono::Duration::days(age_days);
        let ethnic = if self.rng.random_bool(0.05) {
            "mixed"
        } else {
            origin.ethnic_group()
        };
        Person {
            origin,
            first,
            last,
            dob,
            male,
            postcode: self.postcode(),
            address: self.address(),
            ethnic,
            imd: self.rng.random_range(1..=10),
        }
    }

    fn typo(&mut self, s: &str) -> String {
        let mut c: Vec<char> = s.chars().collect();
        if c.len() < 2 {
            return s.to_string();
        }
        let i = self.rng.random_range(0..c.len());
        let letter = (b'a' + self.rng.random_range(0..26u8)) as char;
        match self.rng.random_range(0..4) {
            0 => c.insert(i, letter),
            1 => {
                c.remove(i);
            }
            2 => c[i] = letter,
            _ => {
                let j = if i + 1 < c.len() { i + 1 } else { i - 1 };
                c.swap(i, j);
            }
        }
        c.into_iter().collect()
    }

    fn replace_one(&mut self, s: &str, table: &[(&str, &str)]) -> String {
        let options: Vec<&(&str, &str)> = table.iter().filter(|(a, _)| s.contains(a)).collect();
        if options.is_empty() {
            // Double a letter: a common phonetic slip.
            let c: Vec<char> = s.chars().collect();
            let i = self.rng.random_range(0..c.len());
            let mut out: String = c[..=i].iter().collect();
            out.push(c[i]);
            out.extend(&c[i + 1..]);
            return out;
        }
        let (a, b) = options[self.rng.random_range(0..options.len())];
        s.replacen(a, b, 1)
    }

    fn phonetic(&mut self, s: &str) -> String {
        const T: &[(&str, &str)] = &[
            ("ph", "f"),
            ("f", "ph"),
            ("ck", "k"),
            ("c", "k"),
            ("ie", "y"),
            ("y", "ie"),
            ("ee", "ea"),
            ("ou", "ow"),
            ("s", "z"),
            ("mm", "m"),
            ("ll", "l"),
            ("tt", "t"),
            ("ai", "ay"),
            ("ei", "ie"),
            ("oo", "u"),
            ("kh", "k"),
            ("sh", "ch"),
            ("w", "v"),
            ("j", "y"),
        ];
        self.replace_one(s, T)
    }

    fn ocr(&mut self, s: &str) -> String {
        const T: &[(&str, &str)] = &[
            ("rn", "m"),
            ("m", "rn"),
            ("l", "1"),
            ("O", "0"),
            ("i", "l"),
            ("cl", "d"),
            ("S", "5"),
            ("B", "8"),
        ];
        self.replace_one(s, T)
    }
}

/// One agency record before formatting.
#[derive(Debug, Clone)]
pub struct Record {
    pub person: usize,
    pub first: Option<String>,
    pub last: Option<String>,
    pub dob: Option<NaiveDate>,
    pub male: Option<bool>,
    pub postcode: Option<String>,
    pub address: Option<String>,
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = true;
    for c in s.chars() {
        if up {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        up = c == ' ' || c == '-' || c == '\'';
    }
    out
}

/// Everything generated.
pub struct Synth {
    pub people: Vec<Person>,
    /// Per agency: records in output order, with their record ids.
    pub agencies: Vec<Vec<(String, Record)>>,
    pub stats: Stats,
}

/// Generate people and agency records (no files).
pub fn generate(p: &Params) -> Synth {
    let reference = NaiveDate::parse_from_str(REFERENCE_DATE, "%Y-%m-%d").expect("valid");
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(p.seed),
        stats: Stats::default(),
    };
    let people: Vec<Person> = (0..p.people).map(|_| g.person(reference)).collect();
    g.stats.people = p.people;
    let mut agencies = Vec::new();
    for a in 0..p.agencies {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ ((a as u64 + 1) << 40));
        std::mem::swap(&mut g.rng, &mut rng);
        let mut recs: Vec<Record> = Vec::new();
        for (pi, person) in people.iter().enumerate() {
            if !g.rng.random_bool(p.overlap) {
                continue;
            }
            let copies = if g.chance("duplicate_record", false, 1.0) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                recs.push(make_record(&mut g, pi, person, &people));
            }
        }
        // Shuffle so that row order says nothing about the person.
        for i in (1..recs.len()).rev() {
            let j = g.rng.random_range(0..=i);
            recs.swap(i, j);
        }
        let prefix = profile(a).prefix;
        let mut ids: Vec<u32> = (0..recs.len() as u32).collect();
        for i in (1..ids.len()).rev() {
            let j = g.rng.random_range(0..=i);
            ids.swap(i, j);
        }
        let out: Vec<(String, Record)> = recs
            .into_iter()
            .zip(ids)
            .map(|(r, id)| (format!("{prefix}{:07}", id + 100_000), r))
            .collect();
        g.stats.records.insert(agency_name(a), out.len());
        agencies.push(out);
        std::mem::swap(&mut g.rng, &mut rng);
    }
    Synth {
        people,
        agencies,
        stats: g.stats,
    }
}

fn make_record(g: &mut Gen, pi: usize, p: &Person, people: &[Person]) -> Record {
    let hi = p.origin.higher_error();
    let f = if hi { 2.0 } else { 1.0 };
    let mut first = p.first.clone();
    let mut last = p.last.clone();
    if let Some((_, nicks)) = NICKNAMES.iter().find(|(n, _)| *n == first)
        && g.chance("nickname", hi, 1.0)
    {
        first = nicks[g.rng.random_range(0..nicks.len())].to_string();
    }
    if g.chance("surname_change", hi, 1.0) {
        let other = &people[g.rng.random_range(0..people.len())].last;
        last = if g.rng.random_bool(0.5) {
            format!("{last}-{other}")
        } else {
            other.clone()
        };
    }
    if g.chance("typo_first_name", hi, f) {
        first = g.typo(&first);
    }
    if g.chance("typo_last_name", hi, f) {
        last = g.typo(&last);
    }
    if g.chance("phonetic_first_name", hi, f) {
        first = g.phonetic(&first);
    }
    if g.chance("phonetic_last_name", hi, f) {
        last = g.phonetic(&last);
    }
    if g.chance("ocr_slip", hi, 1.0) {
        last = g.ocr(&last);
    }
    if g.chance("name_swap", hi, if hi { 3.0 } else { 1.0 }) {
        std::mem::swap(&mut first, &mut last);
    }
    let mut dob = Some(p.dob);
    if g.chance("dob_day_month_swap", hi, 1.0) && p.dob.day() <= 12 && p.dob.day() != p.dob.month()
    {
        dob = NaiveDate::from_ymd_opt(p.dob.year(), p.dob.day(), p.dob.month());
    }
    if g.chance("dob_typo", hi, 1.0) {
        // Change one digit of the year's last digit or the day, keeping a valid date.
        let d = dob.unwrap_or(p.dob);
        let alt = if g.rng.random_bool(0.5) {
            d.with_year(d.year() + if g.rng.random_bool(0.5) { 1 } else { -1 })
        } else {
            d.with_day(((d.day() + g.rng.random_range(1..9) - 1) % 28) + 1)
        };
        dob = alt.or(dob);
    }
    let (postcode, address) = if g.chance("moved_address", hi, 1.0) {
        (g.postcode(), g.address())
    } else {
        (p.postcode.clone(), p.address.clone())
    };
    let keep = |g: &mut Gen, name: &str| !g.chance(name, hi, 1.0);
    let first = keep(g, "missing_first_name").then_some(first);
    let last = keep(g, "missing_last_name").then_some(last);
    if !keep(g, "missing_dob") {
        dob = None;
    }
    let male = keep(g, "missing_sex").then_some(p.male);
    let postcode = keep(g, "missing_postcode").then_some(postcode);
    let address = keep(g, "missing_address").then_some(address);
    Record {
        person: pi,
        first,
        last,
        dob,
        male,
        postcode,
        address,
    }
}

/// Write one CSV per agency, `truth.csv` (`agency,record_id,entity`) and
/// `synth_stats.json` into `dir`. Returns the agency CSV paths.
pub fn write(s: &Synth, dir: &Path, seed: u64) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
    let mut paths = Vec::new();
    let mut pending = Vec::new();
    let mut truth = String::from("agency,record_id,entity\n");
    for (a, recs) in s.agencies.iter().enumerate() {
        let prof = profile(a);
        let name = agency_name(a);
        let path = dir.join(format!("{name}.csv"));
        let p = Pending::create(&path)?;
        let mut w = csv::Writer::from_writer(std::io::BufWriter::new(p.file()?));
        let err = |e: csv::Error| Error::write(&path, std::io::Error::other(e.to_string()));
        w.write_record([
            prof.id,
            prof.first,
            prof.last,
            prof.dob,
            prof.sex,
            prof.postcode,
            prof.address,
            prof.ethnicity,
            prof.imd,
            prof.payload.0,
        ])
        .map_err(err)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfeed ^ a as u64);
        for (id, r) in recs {
            let person = &s.people[r.person];
            let case = |v: &Option<String>| -> String {
                match v {
                    None => String::new(),
                    Some(v) if prof.upper => v.to_uppercase(),
                    Some(v) => title(v),
                }
            };
            let dob = r
                .dob
                .map(|d| d.format(prof.dob_format).to_string())
                .unwrap_or_default();
            let sex = match (r.male, prof.sex_style) {
                (None, _) => String::new(),
                (Some(m), SexStyle::Mf) => (if m { "M" } else { "F" }).into(),
                (Some(m), SexStyle::Words) => (if m { "Male" } else { "Female" }).into(),
                (Some(m), SexStyle::Digits) => (if m { "1" } else { "2" }).into(),
            };
            let payload = prof.payload.1[rng.random_range(0..prof.payload.1.len())];
            w.write_record([
                id.as_str(),
                &case(&r.first),
                &case(&r.last),
                &dob,
                &sex,
                r.postcode.as_deref().unwrap_or_default(),
                &case(&r.address),
                person.ethnic,
                &person.imd.to_string(),
                payload,
            ])
            .map_err(err)?;
            truth.push_str(&format!("{name},{id},P{:07}\n", r.person));
        }
        w.flush().map_err(|e| Error::write(&path, e))?;
        drop(w);
        pending.push(p);
        paths.push(path);
    }
    let tp = dir.join("truth.csv");
    let t = Pending::create(&tp)?;
    t.file()?
        .write_all(truth.as_bytes())
        .map_err(|e| Error::write(&tp, e))?;
    pending.push(t);
    let sp = dir.join("synth_stats.json");
    let st = Pending::create(&sp)?;
    st.file()?
        .write_all(
            serde_json::to_string_pretty(&s.stats)
                .expect("json")
                .as_bytes(),
        )
        .map_err(|e| Error::write(&sp, e))?;
    pending.push(st);
    for p in pending {
        p.commit()?;
    }
    Ok(paths)
}
