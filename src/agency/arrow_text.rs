//! Parquet input columns of other types than text, turned into text once
//! per batch (columnar, no per-cell conversion in the encoder's loop):
//! dates and time stamps as ISO dates (with the time of day only when it
//! is not midnight), integers of every width as decimals, and dictionary
//! (categorical) columns of strings as their values. This is how the
//! usual exports write a date of birth (`Date32` from a SQL `date`,
//! `Timestamp(ns)` from pandas) and a coded column (pandas categoricals).
//! A time stamp in a time zone (pandas' `datetime64[ns, Europe/London]`)
//! is read as the date and time on the zone's clocks, where a date of
//! birth stored as local midnight falls on its own day, not on the UTC
//! day before.
//! Agency side; errors name the column and its type, never a value.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::temporal_conversions::{as_datetime, as_datetime_with_timezone};
use arrow_array::timezone::Tz;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType};
use arrow_schema::{DataType, TimeUnit};

/// Whether the encoder reads a column of type `t` as it is.
fn read_as_is(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Int32
            | DataType::Int64
    )
}

/// Why a column of type `t` cannot be read, or `None` when [`to_text`]
/// converts it.
pub fn unreadable(t: &DataType) -> Option<String> {
    match t {
        _ if read_as_is(t) => None,
        DataType::Int8
        | DataType::Int16
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Date32
        | DataType::Date64 => None,
        DataType::Timestamp(_, tz) => zone(tz.as_deref()).err().map(|tz| format!(
            "it holds time stamps in time zone `{tz}`, which bloomlink does not know (it reads IANA names such as `Europe/London` and offsets such as `+01:00`); cast it to a date or to text"
        )),
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8) => None,
        _ => Some(format!(
            "it has type {t}; bloomlink reads text, integer, date and time stamp columns (cast it to text)"
        )),
    }
}

fn is_utc(tz: &str) -> bool {
    matches!(
        tz,
        "UTC" | "utc" | "Z" | "+00:00" | "Etc/UTC" | "GMT" | "Etc/GMT"
    )
}

/// The zone of a time stamp column's clocks: `None` for UTC or no zone
/// (read as they are), or the zone; `Err` with the name when it is
/// neither an IANA name nor an offset.
fn zone(tz: Option<&str>) -> Result<Option<Tz>, &str> {
    match tz {
        None => Ok(None),
        Some(tz) if is_utc(tz) => Ok(None),
        Some(tz) => tz.parse::<Tz>().map(Some).map_err(|_| tz),
    }
}

/// `a` as text, when it is of a type [`unreadable`] accepts and not read
/// as it is; `None` otherwise. Dates are written in `date_format` (a
/// chrono format).
pub fn to_text(a: &ArrayRef, date_format: &str) -> Option<ArrayRef> {
    let t = a.data_type();
    if read_as_is(t) || unreadable(t).is_some() {
        return None;
    }
    let mut b = StringBuilder::with_capacity(a.len(), a.len() * 10);
    match t {
        DataType::Int8 => decimals::<Int8Type>(a, &mut b),
        DataType::Int16 => decimals::<Int16Type>(a, &mut b),
        DataType::UInt8 => decimals::<UInt8Type>(a, &mut b),
        DataType::UInt16 => decimals::<UInt16Type>(a, &mut b),
        DataType::UInt32 => decimals::<UInt32Type>(a, &mut b),
        DataType::UInt64 => decimals::<UInt64Type>(a, &mut b),
        DataType::Date32 => dates::<Date32Type>(a, date_format, None, &mut b),
        DataType::Date64 => dates::<Date64Type>(a, date_format, None, &mut b),
        DataType::Timestamp(unit, tz) => {
            // Known (checked by `unreadable` above).
            let tz = zone(tz.as_deref()).ok()?;
            match unit {
                TimeUnit::Second => dates::<TimestampSecondType>(a, date_format, tz, &mut b),
                TimeUnit::Millisecond => {
                    dates::<TimestampMillisecondType>(a, date_format, tz, &mut b)
                }
                TimeUnit::Microsecond => {
                    dates::<TimestampMicrosecondType>(a, date_format, tz, &mut b)
                }
                TimeUnit::Nanosecond => {
                    dates::<TimestampNanosecondType>(a, date_format, tz, &mut b)
                }
            }
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let keys = d.normalized_keys();
            let values = d.values();
            for (i, &k) in keys.iter().enumerate() {
                if a.is_null(i) || values.is_null(k) {
                    b.append_null();
                } else if let Some(v) = values.as_string_opt::<i32>() {
                    b.append_value(v.value(k));
                } else {
                    b.append_value(values.as_string::<i64>().value(k));
                }
            }
        }
        _ => unreachable!("unreadable() accepts only the types above"),
    }
    Some(Arc::new(b.finish()))
}

fn decimals<T: ArrowPrimitiveType>(a: &ArrayRef, b: &mut StringBuilder)
where
    T::Native: std::fmt::Display,
{
    for v in a.as_primitive::<T>() {
        b.append_option(v.map(|v| v.to_string()));
    }
}

/// Dates in `format`, on the clocks of `tz` when given; a time stamp off
/// midnight as an ISO date and time instead, which the date parser then
/// rejects as a date of birth.
fn dates<T: ArrowPrimitiveType>(a: &ArrayRef, format: &str, tz: Option<Tz>, b: &mut StringBuilder)
where
    i64: From<T::Native>,
{
    let local = |v: i64| match tz {
        None => as_datetime::<T>(v),
        Some(tz) => as_datetime_with_timezone::<T>(v, tz).map(|t| t.naive_local()),
    };
    for v in a.as_primitive::<T>() {
        let Some(v) = v else {
            b.append_null();
            continue;
        };
        match local(i64::from(v)) {
            Some(dt) if dt.time() == chrono::NaiveTime::MIN => {
                b.append_value(dt.date().format(format).to_string())
            }
            Some(dt) => b.append_value(dt.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
            // Out of chrono's range: no date, as an empty cell.
            None => b.append_null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        Date32Array, DictionaryArray, Int8Array, StringArray, TimestampNanosecondArray,
        TimestampSecondArray, UInt64Array,
    };

    fn text(a: ArrayRef) -> Vec<Option<String>> {
        let t = to_text(&a, "%Y-%m-%d").expect("converted");
        t.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn dates_time_stamps_integers_and_categories_become_text() {
        let s = |v: &str| Some(v.to_string());
        // 2012-03-04 is day 15,403 of the Unix epoch.
        let d: ArrayRef = Arc::new(Date32Array::from(vec![Some(15403), None, Some(-1)]));
        assert_eq!(text(d), [s("2012-03-04"), None, s("1969-12-31")]);
        let day = 15403i64 * 86_400 * 1_000_000_000;
        let ts: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![
            Some(day),
            Some(day + 3_600_000_000_000),
            None,
        ]));
        assert_eq!(text(ts), [s("2012-03-04"), s("2012-03-04 01:00:00"), None]);
        let utc: ArrayRef =
            Arc::new(TimestampNanosecondArray::from(vec![Some(day)]).with_timezone("UTC"));
        assert_eq!(text(utc), [s("2012-03-04")]);
        let i: ArrayRef = Arc::new(Int8Array::from(vec![Some(-7), None]));
        assert_eq!(text(i), [s("-7"), None]);
        let u: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX]));
        assert_eq!(text(u), [s("18446744073709551615")]);
        let cat: DictionaryArray<Int32Type> = vec![Some("F"), None, Some("M"), Some("F")]
            .into_iter()
            .collect();
        assert_eq!(text(Arc::new(cat)), [s("F"), None, s("M"), s("F")]);
    }

    /// A time stamp in a zone is read on that zone's clocks: local
    /// midnight is its own day, whether the zone is ahead of UTC (summer
    /// time in London, an offset) or behind it.
    #[test]
    fn zoned_time_stamps_are_read_on_their_zones_clocks() {
        let s = |v: &str| Some(v.to_string());
        let at = |secs: i64, tz: &str| -> ArrayRef {
            Arc::new(TimestampSecondArray::from(vec![Some(secs), None]).with_timezone(tz))
        };
        // 1990-06-01 is day 7,456; local midnight in British Summer Time
        // is 23:00 UTC the day before.
        let june = 7456 * 86_400;
        assert_eq!(
            text(at(june - 3600, "Europe/London")),
            [s("1990-06-01"), None]
        );
        // In winter London keeps UTC.
        let jan = 7305 * 86_400; // 1990-01-01
        assert_eq!(text(at(jan, "Europe/London")), [s("1990-01-01"), None]);
        // Offsets and zones, ahead of UTC and behind it (New York keeps
        // UTC-4 in summer).
        assert_eq!(text(at(june - 19_800, "+05:30")), [s("1990-06-01"), None]);
        assert_eq!(
            text(at(june + 4 * 3600, "America/New_York")),
            [s("1990-06-01"), None]
        );
        // Read as UTC, the London stamp would fall on the day before.
        assert_eq!(
            text(at(june - 3600, "UTC")),
            [s("1990-05-31 23:00:00"), None]
        );
        // Off midnight on the zone's clocks: a date and time.
        assert_eq!(
            text(at(june, "Europe/London")),
            [s("1990-06-01 01:00:00"), None]
        );
    }

    #[test]
    fn other_types_are_named_and_text_is_read_as_it_is() {
        let london = DataType::Timestamp(TimeUnit::Nanosecond, Some("Europe/London".into()));
        assert!(unreadable(&london).is_none());
        let mars = DataType::Timestamp(TimeUnit::Nanosecond, Some("Mars/Olympus".into()));
        let why = unreadable(&mars).unwrap();
        assert!(
            why.contains("`Mars/Olympus`") && why.contains("Europe/London"),
            "{why}"
        );
        assert!(unreadable(&DataType::Float64).unwrap().contains("Float64"));
        assert!(unreadable(&DataType::Boolean).is_some());
        let t: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        assert!(to_text(&t, "%Y-%m-%d").is_none() && unreadable(t.data_type()).is_none());
        // Dates in the format given.
        let d: ArrayRef = Arc::new(Date32Array::from(vec![15403]));
        let t = to_text(&d, "%d/%m/%Y").unwrap();
        assert_eq!(t.as_string::<i32>().value(0), "04/03/2012");
    }
}
