//! Whether a non-identifying column (payload for analysts) looks like an
//! identifier after all, from its name and a sample of its values. Shared
//! by encode (which warns as it writes a payload file) and release (which
//! refuses). Never returns a value: only what kind of value was seen.

/// Column names that suggest an identifier.
pub const IDENTIFYING_NAMES: &[&str] = &[
    "name",
    "forename",
    "surname",
    "first",
    "last",
    "given",
    "family",
    "dob",
    "birth",
    "postcode",
    "post_code",
    "zip",
    "address",
    "street",
    "nhs",
    "upn",
    "nino",
    "ni_number",
    "ssn",
    "soc_sec",
    "phone",
    "mobile",
    "email",
    "passport",
    "licence",
    "record_id",
    "person_ref",
    "child_id",
];

/// Why a column looks identifying, if it does.
pub fn identifying_reason(column: &str, values: &[&str]) -> Option<String> {
    let lc = column.to_lowercase();
    if let Some(w) = IDENTIFYING_NAMES.iter().find(|w| lc.contains(*w)) {
        return Some(format!("its name contains `{w}`"));
    }
    let patterns: [(&str, &str); 5] = [
        (
            r"^[A-Za-z]{1,2}[0-9][A-Za-z0-9]?\s*[0-9][A-Za-z]{2}$",
            "UK postcodes",
        ),
        (
            r"^([0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}|[0-9]{4}-[0-9]{2}-[0-9]{2}|(19|20)[0-9]{6})$",
            "dates",
        ),
        (
            r"^[0-9]{3}\s?[0-9]{3}\s?[0-9]{4}$",
            "10-digit numbers (NHS-number shaped)",
        ),
        (r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "e-mail addresses"),
        (
            r"^[A-Za-z]+([ '-][A-Za-z]+)+$",
            "multi-word names or addresses",
        ),
    ];
    let nonnull: Vec<&&str> = values.iter().filter(|v| !v.trim().is_empty()).collect();
    if nonnull.is_empty() {
        return None;
    }
    for (re, what) in patterns {
        let re = regex::Regex::new(re).expect("valid pattern");
        let hits = nonnull.iter().filter(|v| re.is_match(v.trim())).count();
        if hits * 5 >= nonnull.len() {
            return Some(format!(
                "{hits} of {} sampled values look like {what}",
                nonnull.len()
            ));
        }
    }
    // Nearly every value distinct and long: a free-text or id column.
    let mut distinct: Vec<&&&str> = nonnull.iter().collect();
    distinct.sort();
    distinct.dedup();
    if nonnull.len() >= 50 && distinct.len() * 10 >= nonnull.len() * 9 {
        return Some("almost every value is unique, like an identifier".into());
    }
    None
}
