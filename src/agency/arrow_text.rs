//! Parquet input columns of other types than text, turned into text once
//! per batch (columnar, no per-cell conversion in the encoder's loop):
//! dates and time stamps as ISO dates (with the time of day only when it
//! is not midnight), integers of every width as decimals, and dictionary
//! (categorical) columns of strings as their values. This is how the
//! usual exports write a date of birth (`Date32` from a SQL `date`,
//! `Timestamp(ns)` from pandas) and a coded column (pandas categoricals).
//! Agency side; errors name the column and its type, never a value.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::temporal_conversions::as_datetime;
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
        DataType::Timestamp(_, None) => None,
        DataType::Timestamp(_, Some(tz)) if is_utc(tz) => None,
        DataType::Timestamp(_, Some(tz)) => Some(format!(
            "it holds time stamps in time zone `{tz}`, whose local dates bloomlink cannot tell; cast it to a date or to text"
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
        DataType::Date32 => dates::<Date32Type>(a, date_format, &mut b),
        DataType::Date64 => dates::<Date64Type>(a, date_format, &mut b),
        DataType::Timestamp(TimeUnit::Second, _) => {
            dates::<TimestampSecondType>(a, date_format, &mut b)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            dates::<TimestampMillisecondType>(a, date_format, &mut b)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            dates::<TimestampMicrosecondType>(a, date_format, &mut b)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            dates::<TimestampNanosecondType>(a, date_format, &mut b)
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

/// Dates in `format`; a time stamp off midnight as an ISO date and time
/// instead, which the date parser then rejects as a date of birth.
fn dates<T: ArrowPrimitiveType>(a: &ArrayRef, format: &str, b: &mut StringBuilder)
where
    i64: From<T::Native>,
{
    for v in a.as_primitive::<T>() {
        let Some(v) = v else {
            b.append_null();
            continue;
        };
        match as_datetime::<T>(i64::from(v)) {
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
        Date32Array, DictionaryArray, Int8Array, StringArray, TimestampNanosecondArray, UInt64Array,
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

    #[test]
    fn other_types_are_named_and_text_is_read_as_it_is() {
        let london = DataType::Timestamp(TimeUnit::Nanosecond, Some("Europe/London".into()));
        assert!(unreadable(&london).unwrap().contains("Europe/London"));
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
