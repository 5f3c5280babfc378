//! Field normalisation: raw cell text to the canonical value that is tokenised.
//!
//! Native fields are cleaned (Unicode NFKD, accents stripped, case folded,
//! punctuation dropped, spaces collapsed) and parsed by type; clkhash fields
//! are formatted exactly as clkhash 0.18 does. A value that fails its parser
//! is a reject with a reason; the reason never contains the value itself.
//! Agency side only: this code sees plaintext and must never log it.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::schema::{Field, Kind, Validate};

/// The outcome of normalising one cell.
#[derive(Debug, PartialEq, Eq)]
pub enum Normalised {
    /// A value to tokenise (written into the caller's buffer).
    Value,
    /// The cell is missing (empty or a declared missing marker).
    Missing,
    /// The value cannot be parsed; the reason names the rule, not the value.
    Reject(String),
}

/// Clean free text into `out`: lower case, accents stripped, letters and
/// digits kept, runs of spaces and separators collapsed to one space,
/// other punctuation dropped, trimmed. Idempotent.
pub fn clean_text(raw: &str, out: &mut String) {
    out.clear();
    let mut pending_space = false;
    let mut push = |c: char, out: &mut String| {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        } else if c.is_whitespace() || matches!(c, '-' | '_' | '/' | '.' | ',' | '&' | '+') {
            pending_space = true;
        }
        // Apostrophes and other punctuation vanish: O'Brien -> obrien.
    };
    if raw.is_ascii() {
        for b in raw.bytes() {
            push(b.to_ascii_lowercase() as char, out);
        }
    } else {
        // Decompose, drop accents, fold case, then decompose again: case
        // folding can produce characters NFKD would still change (𝒢 → G → g,
        // İ → i + dot), and the result must be stable (idempotent).
        let lower: String = raw
            .nfkd()
            .filter(|c| !is_combining_mark(*c))
            .flat_map(char::to_lowercase)
            .collect();
        for c in lower.nfkd() {
            if !is_combining_mark(c) {
                push(c, out);
            }
        }
    }
}

/// Whether `raw` is one of the field's missing markers (compared trimmed and
/// lower-cased for native fields, exactly for clkhash fields).
pub fn is_missing(field: &Field, raw: &str) -> bool {
    match field.kind {
        Kind::Raw | Kind::ClkInteger | Kind::ClkDate => field.missing.iter().any(|m| m == raw),
        _ => {
            let t = raw.trim();
            if t.is_empty() {
                return true;
            }
            // Native markers are stored lower-cased. ASCII text compares
            // without allocating; other text is lower-cased once (rare).
            let markers = &field.missing;
            markers.iter().any(|m| m.eq_ignore_ascii_case(t))
                || (!t.is_ascii() && {
                    let lower = t.to_lowercase();
                    markers.contains(&lower)
                })
        }
    }
}

/// Normalise one raw cell into `out`. `None` is a null cell.
/// `pattern` is the field's compiled clkhash pattern, if any.
pub fn normalise(
    field: &Field,
    pattern: Option<&regex::Regex>,
    raw: Option<&str>,
    out: &mut String,
) -> Normalised {
    out.clear();
    let Some(raw) = raw else {
        return Normalised::Missing;
    };
    if is_missing(field, raw) {
        return match (&field.replace_with, field.kind) {
            (Some(r), _) => {
                out.push_str(r);
                if out.is_empty() {
                    Normalised::Missing
                } else {
                    Normalised::Value
                }
            }
            // clkhash keeps the sentinel itself when there is no replacement.
            (None, Kind::Raw | Kind::ClkInteger | Kind::ClkDate) => {
                out.push_str(raw);
                if out.is_empty() {
                    Normalised::Missing
                } else {
                    Normalised::Value
                }
            }
            (None, _) => Normalised::Missing,
        };
    }
    match field.kind {
        Kind::String | Kind::Name | Kind::Forename => {
            clean_text(raw, out);
            if field.kind == Kind::Forename
                && let Some(formal) = super::nicknames::formal(out)
            {
                out.clear();
                out.push_str(formal);
            }
            if out.is_empty() {
                Normalised::Missing
            } else {
                Normalised::Value
            }
        }
        Kind::Postcode => {
            clean_text(raw, out);
            out.retain(|c| c != ' ');
            if out.is_empty() {
                Normalised::Missing
            } else if out.len() > 10 {
                Normalised::Reject("postcode longer than 10 characters".into())
            } else {
                Normalised::Value
            }
        }
        Kind::Sex => match raw.trim().to_ascii_lowercase().as_str() {
            "m" | "male" | "1" | "man" | "boy" => {
                out.push('m');
                Normalised::Value
            }
            "f" | "female" | "2" | "woman" | "girl" => {
                out.push('f');
                Normalised::Value
            }
            _ => Normalised::Reject("not a recognised sex code (m/f/male/female/1/2)".into()),
        },
        Kind::Integer => match canonical_integer(raw.trim(), false) {
            Some(v) => {
                out.push_str(&v);
                Normalised::Value
            }
            None => Normalised::Reject("not a whole number".into()),
        },
        Kind::Date => {
            let t = raw.trim();
            // Then without a midnight time of day, as spreadsheets and
            // databases write a date held as a date-time.
            for t in [Some(t), without_midnight(t)].into_iter().flatten() {
                for fmt in &field.formats {
                    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, fmt) {
                        out.push_str(&d.format("%Y%m%d").to_string());
                        return Normalised::Value;
                    }
                }
            }
            Normalised::Reject(format!(
                "not a valid date in any declared format ({}); the values are shaped like {}",
                field.formats.join(", "),
                shape(t)
            ))
        }
        Kind::Raw => {
            if let Some(v) = &field.validate
                && let Err(m) = validate_string(v, pattern, raw)
            {
                return Normalised::Reject(m);
            }
            out.push_str(raw);
            if out.is_empty() {
                Normalised::Missing
            } else {
                Normalised::Value
            }
        }
        Kind::ClkInteger => match canonical_integer(raw, true) {
            Some(v) => {
                if let Some(val) = &field.validate {
                    let n: i128 = v.parse().unwrap_or(0);
                    if val.minimum.is_some_and(|m| n < m as i128) {
                        return Normalised::Reject("integer below the schema's minimum".into());
                    }
                    if val.maximum.is_some_and(|m| n > m as i128) {
                        return Normalised::Reject("integer above the schema's maximum".into());
                    }
                }
                out.push_str(&v);
                Normalised::Value
            }
            None => Normalised::Reject("not an integer".into()),
        },
        Kind::ClkDate => {
            let fmt = &field.formats[0];
            match chrono::NaiveDate::parse_from_str(raw, fmt) {
                Ok(d) => {
                    out.push_str(&d.format("%Y%m%d").to_string());
                    Normalised::Value
                }
                Err(_) => Normalised::Reject(format!("not a date in the format {fmt}")),
            }
        }
    }
}

/// `t` without a trailing midnight time of day (` 00:00`, ` 00:00:00`,
/// `T00:00:00.000Z` and the like), if it has one.
fn without_midnight(t: &str) -> Option<&str> {
    let at = t.rfind([' ', 'T'])?;
    let time = t[at + 1..].trim_end_matches('Z');
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let midnight =
        matches!(hms, "00:00" | "00:00:00") && !frac.is_empty() && frac.bytes().all(|b| b == b'0');
    midnight.then(|| t[..at].trim_end())
}

/// The shape of a date value, for a reject reason that must not hold the
/// value: each digit as `9`, each letter as `a`, anything else as itself
/// (at most 24 characters).
fn shape(t: &str) -> String {
    let mut s: String = t
        .chars()
        .take(24)
        .map(|c| match c {
            c if c.is_ascii_digit() => '9',
            c if c.is_alphabetic() => 'a',
            c => c,
        })
        .collect();
    if t.chars().count() > 24 {
        s.push('…');
    }
    s
}

/// Canonical decimal form of an integer, like Python's `str(int(s, 10))`:
/// surrounding whitespace, a sign and (when `python`) `_` separators between
/// digits are accepted. Returns `None` when `s` is not an integer.
pub fn canonical_integer(s: &str, python: bool) -> Option<String> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut out = String::with_capacity(digits.len() + 1);
    for c in digits.chars() {
        if c == '_' && python {
            continue;
        }
        let d = c.to_digit(10)?;
        if out.is_empty() && d == 0 {
            continue;
        }
        out.push(char::from_digit(d, 10)?);
    }
    if out.is_empty() {
        return Some("0".into());
    }
    if neg {
        out.insert(0, '-');
    }
    Some(out)
}

fn validate_string(
    v: &Validate,
    pattern: Option<&regex::Regex>,
    raw: &str,
) -> std::result::Result<(), String> {
    let len = raw.chars().count() as u64;
    if v.min_length.is_some_and(|m| len < m) {
        return Err("shorter than the schema's minLength".into());
    }
    if v.max_length.is_some_and(|m| len > m) {
        return Err("longer than the schema's maxLength".into());
    }
    if let Some(case) = v.case.as_deref() {
        let ok = match case {
            "upper" => raw.to_uppercase() == raw,
            "lower" => raw.to_lowercase() == raw,
            _ => true,
        };
        if !ok {
            return Err(format!("not in the schema's case ({case})"));
        }
    }
    if let Some(values) = &v.values
        && !values.iter().any(|x| x == raw)
    {
        return Err("not one of the schema's enum values".into());
    }
    if let Some(re) = pattern
        && !re.is_match(raw)
    {
        return Err("does not match the schema's pattern".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut o = String::new();
        clean_text(s, &mut o);
        o
    }

    #[test]
    fn dates_held_as_date_times_at_midnight_parse() {
        for (t, d) in [
            ("1964-05-02 00:00:00", Some("1964-05-02")),
            ("1964-05-02 00:00", Some("1964-05-02")),
            ("1964-05-02T00:00:00Z", Some("1964-05-02")),
            ("1964-05-02 00:00:00.000", Some("1964-05-02")),
            ("1964-05-02T00:00:00.000Z", Some("1964-05-02")),
            ("1964-05-02 13:45:00", None),
            ("1964-05-02 00:00:01", None),
            ("1964-05-02 00:00:00.5", None),
            ("1964-05-02", None),
            ("00:00:00", None),
        ] {
            assert_eq!(without_midnight(t), d, "{t}");
        }
    }

    #[test]
    fn a_date_shape_holds_no_digit_or_letter() {
        assert_eq!(shape("02/May/1964 13:45"), "99/aaa/9999 99:99");
        assert_eq!(
            shape("1964-05-02T13:45:00.000+0100"),
            "9999-99-99a99:99:99.999+…"
        );
    }

    #[test]
    fn cleans_text() {
        assert_eq!(clean("  José  O'Brien-Smith "), "jose obrien smith");
        assert_eq!(clean("ZOË"), "zoe");
        assert_eq!(clean("𝒢ary İlhan"), "gary ilhan");
        assert_eq!(clean("St. Mary's   Rd"), "st marys rd");
        assert_eq!(clean("..."), "");
    }

    #[test]
    fn missing_markers_compare_trimmed_and_case_folded() {
        let schema = crate::agency::schema::Schema::from_toml(
            r#"
version = 1
record_id = "id"
[[field]]
name = "town"
type = "string"
missing = ["Unknown", "Ÿ-INCONNU", "n/a"]
"#,
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let f = &schema.fields[0];
        for raw in [
            "unknown",
            " UNKNOWN ",
            "N/A",
            "",
            "   ",
            "ÿ-inconnu",
            "Ÿ-Inconnu",
        ] {
            assert!(is_missing(f, raw), "{raw:?} is a marker");
        }
        for raw in ["unknow", "n/a/", "ÿ-inconnue", "Leeds"] {
            assert!(!is_missing(f, raw), "{raw:?} is not a marker");
        }
    }

    #[test]
    fn integers_like_python() {
        assert_eq!(canonical_integer("007", true).as_deref(), Some("7"));
        assert_eq!(canonical_integer(" +12", true).as_deref(), Some("12"));
        assert_eq!(canonical_integer("1_0", true).as_deref(), Some("10"));
        assert_eq!(canonical_integer("-0", true).as_deref(), Some("0"));
        assert_eq!(canonical_integer("1a", true), None);
        assert_eq!(canonical_integer("", true), None);
        assert_eq!(canonical_integer("_1", true), None);
    }
}
