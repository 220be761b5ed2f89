//! InfluxDB line protocol encoding (`measurement,tag=v field=v timestamp`).
//!
//! Escaping follows the line protocol reference of InfluxDB 1.x and 2.x/3.x:
//! - measurement: `,` and space are escaped;
//! - tag keys, tag values, field keys: `,`, `=` and space are escaped;
//! - a backslash is written as `\\` where it would otherwise be read as an escape (before one of
//!   the escaped characters, before another backslash, or at the end); elsewhere it is written
//!   as is, which every server version reads as a literal backslash;
//! - string field values: `"` and `\` are escaped; line breaks are kept (they are legal inside
//!   the quotes).
//!
//! Line breaks, tabs and NUL cannot be expressed in a measurement, key or tag value, nor can a
//! backslash at the end of one (InfluxDB rejects it): they are written as spaces ([`sanitize`]). Field types: float (always written with a decimal point or
//! an exponent), integer `i`, unsigned `u`, boolean and string. Timestamps are converted from the
//! readings' milliseconds to the destination's precision.

use std::fmt::Write as _;

pub use super::config::Precision;
use crate::readings::Reading;

/// Why a point cannot be written as line protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("the measurement name is empty")]
    EmptyMeasurement,
    #[error("the measurement name starts with '#' (a comment in line protocol)")]
    CommentMeasurement,
    #[error("a field key is empty")]
    EmptyFieldKey,
    #[error("a point needs at least one field")]
    NoFields,
    #[error("field {0:?} is not a finite number (line protocol has no NaN or infinity)")]
    NonFinite(String),
    #[error(
        "timestamp {ts_ms} ms is outside the range InfluxDB can store at precision {precision}"
    )]
    TimestampOutOfRange { ts_ms: i64, precision: &'static str },
}

/// A field value of any line protocol type.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(&'a str),
}

/// Query-string spelling of a precision for the v1 API (`/write?precision=`).
pub fn precision_v1(p: Precision) -> &'static str {
    match p {
        Precision::S => "s",
        Precision::Ms => "ms",
        Precision::Us => "u",
        Precision::Ns => "ns",
    }
}

/// Query-string spelling of a precision for the v2 API (`/api/v2/write?precision=`).
pub fn precision_v2(p: Precision) -> &'static str {
    match p {
        Precision::S => "s",
        Precision::Ms => "ms",
        Precision::Us => "us",
        Precision::Ns => "ns",
    }
}

/// InfluxDB stores nanoseconds in an i64 and reserves the two extreme values.
const MIN_NS: i128 = i64::MIN as i128 + 2;
const MAX_NS: i128 = i64::MAX as i128 - 1;

/// Converts a millisecond timestamp to `precision`, checking that InfluxDB can store it.
pub fn timestamp(ts_ms: i64, precision: Precision) -> Result<i64, EncodeError> {
    let ns = i128::from(ts_ms) * 1_000_000;
    if !(MIN_NS..=MAX_NS).contains(&ns) {
        return Err(EncodeError::TimestampOutOfRange {
            ts_ms,
            precision: precision_v2(precision),
        });
    }
    Ok(match precision {
        Precision::S => ts_ms.div_euclid(1000),
        Precision::Ms => ts_ms,
        Precision::Us => ts_ms * 1000,
        Precision::Ns => (ns) as i64,
    })
}

/// What a measurement, key or tag value reads as once written: line breaks, tabs, NUL and a
/// final backslash, which line protocol cannot carry there, become spaces.
pub fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\n', '\r', '\t', '\0']) && !s.ends_with('\\') {
        return s.into();
    }
    let mut out = s.replace(['\n', '\r', '\t', '\0'], " ");
    if out.ends_with('\\') {
        out.pop();
        out.push(' ');
    }
    out.into()
}

fn push_escaped(out: &mut String, s: &str, special: &[char]) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' | '\t' | '\0' => out.push_str("\\ "),
            '\\' => match chars.peek().copied() {
                // A final backslash cannot be expressed: it becomes an (escaped) space.
                None => out.push_str("\\ "),
                Some(n) => {
                    out.push('\\');
                    if n == '\\' || special.contains(&n) || matches!(n, '\n' | '\r' | '\t' | '\0') {
                        out.push('\\');
                    }
                }
            },
            c if special.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// Appends `s` escaped for a measurement name.
pub fn push_measurement(out: &mut String, s: &str) {
    push_escaped(out, s, &[',', ' ']);
}

/// Appends `s` escaped for a tag key, tag value or field key.
pub fn push_key(out: &mut String, s: &str) {
    push_escaped(out, s, &[',', '=', ' ']);
}

/// Appends `s` as a quoted string field value.
pub fn push_string_field(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Appends a field value in its line protocol type.
pub fn push_field_value(out: &mut String, v: &FieldValue<'_>) -> Result<(), EncodeError> {
    match v {
        FieldValue::Float(f) => {
            if !f.is_finite() {
                return Err(EncodeError::NonFinite(f.to_string()));
            }
            // `{:?}` keeps a decimal point or exponent, so the value stays a float field.
            let _ = write!(out, "{f:?}");
        }
        FieldValue::Int(i) => {
            let _ = write!(out, "{i}i");
        }
        FieldValue::UInt(u) => {
            let _ = write!(out, "{u}u");
        }
        FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        FieldValue::Str(s) => push_string_field(out, s),
    }
    Ok(())
}

/// Builds the series part (`measurement,tag=value,…`) from tags; tags are sorted by key, as
/// InfluxDB recommends, and tags with an empty key or value are left out (InfluxDB rejects them).
pub fn series_key(measurement: &str, tags: &[(&str, &str)]) -> Result<String, EncodeError> {
    if measurement.is_empty() {
        return Err(EncodeError::EmptyMeasurement);
    }
    if measurement.starts_with('#') {
        return Err(EncodeError::CommentMeasurement);
    }
    let mut tags: Vec<_> = tags
        .iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect();
    tags.sort_by_key(|(k, _)| *k);
    let mut out = String::with_capacity(64);
    push_measurement(&mut out, measurement);
    for (k, v) in tags {
        out.push(',');
        push_key(&mut out, k);
        out.push('=');
        push_key(&mut out, v);
    }
    Ok(out)
}

/// Appends one complete line (with its trailing newline): `series` from [`series_key`], then the
/// fields, then the timestamp (milliseconds, converted to `precision`). On error nothing is
/// appended.
pub fn push_line(
    out: &mut String,
    series: &str,
    fields: &[(&str, FieldValue<'_>)],
    ts_ms: i64,
    precision: Precision,
) -> Result<(), EncodeError> {
    if fields.is_empty() {
        return Err(EncodeError::NoFields);
    }
    let ts = timestamp(ts_ms, precision)?;
    let start = out.len();
    out.push_str(series);
    for (i, (k, v)) in fields.iter().enumerate() {
        if k.is_empty() {
            out.truncate(start);
            return Err(EncodeError::EmptyFieldKey);
        }
        out.push(if i == 0 { ' ' } else { ',' });
        push_key(out, k);
        out.push('=');
        if let Err(e) = push_field_value(out, v) {
            out.truncate(start);
            return Err(e);
        }
    }
    let _ = writeln!(out, " {ts}");
    Ok(())
}

/// Appends one line for a reading: fields `value` (float, absent when bad or not finite),
/// `quality` (string) and `reason` (string, when not good).
pub fn push_reading(
    out: &mut String,
    series: &str,
    r: &Reading,
    precision: Precision,
) -> Result<(), EncodeError> {
    let ts = timestamp(r.ts_ms, precision)?;
    out.push_str(series);
    out.push(' ');
    if let Some(v) = r.value.filter(|v| v.is_finite()) {
        // Shortest round-trip form, always with a decimal point or an exponent (a float field).
        out.push_str("value=");
        out.push_str(ryu::Buffer::new().format_finite(v));
        out.push(',');
    }
    out.push_str("quality=");
    push_string_field(out, r.quality.as_str());
    if let Some(reason) = r.quality.reason() {
        out.push_str(",reason=");
        push_string_field(out, reason);
    }
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(ts));
    out.push('\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::Quantity;

    #[test]
    fn escapes_each_part_by_its_rules() {
        let key = series_key(
            "my reading,x",
            &[("site", "plant 1"), ("device", "a=b,c"), ("empty", "")],
        )
        .unwrap();
        assert_eq!(key, r"my\ reading\,x,device=a\=b\,c,site=plant\ 1");
        let mut s = String::new();
        push_string_field(&mut s, r#"say "hi" \o/"#);
        assert_eq!(s, r#""say \"hi\" \\o/""#);
    }

    #[test]
    fn backslashes_are_escaped_only_where_they_would_escape() {
        let mut s = String::new();
        push_key(&mut s, r"a\b");
        assert_eq!(s, r"a\b");
        s.clear();
        push_key(&mut s, r"end\");
        assert_eq!(s, r"end\ ");
        s.clear();
        push_key(&mut s, r"x\,y\\");
        assert_eq!(s, r"x\\\,y\\\ ");
        s.clear();
        push_key(&mut s, "two\nlines\tand tab");
        assert_eq!(s, r"two\ lines\ and\ tab");
    }

    #[test]
    fn good_and_bad_readings() {
        let mut out = String::new();
        push_reading(
            &mut out,
            "reading,device=m",
            &Reading::new("m", Quantity::ActivePower, 12.0, 1700000000123),
            Precision::Ms,
        )
        .unwrap();
        push_reading(
            &mut out,
            "reading,device=m",
            &Reading::bad("m", Quantity::ActivePower, 5, "modbus exception: \"2\""),
            Precision::Ms,
        )
        .unwrap();
        assert_eq!(
            out,
            "reading,device=m value=12.0,quality=\"good\" 1700000000123\n\
             reading,device=m quality=\"bad\",reason=\"modbus exception: \\\"2\\\"\" 5\n"
        );
    }

    #[test]
    fn values_are_written_exactly_and_as_floats() {
        for v in [
            0.0,
            -0.0,
            1.0,
            230.5,
            -1.25e-7,
            0.1,
            1e16,
            1e21,
            123_456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::from(231.7f32),
        ] {
            let mut out = String::new();
            push_reading(
                &mut out,
                "r",
                &Reading::new("m", Quantity::ActivePower, v, 1),
                Precision::Ms,
            )
            .unwrap();
            let text = out
                .strip_prefix("r value=")
                .and_then(|t| t.split(',').next())
                .unwrap();
            assert!(
                text.contains(['.', 'e']),
                "{text} would be read as an integer"
            );
            assert_eq!(
                text.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{text}"
            );
            assert!(out.ends_with(" 1\n"), "{out}");
        }
    }

    #[test]
    fn floats_stay_floats() {
        let mut out = String::new();
        push_reading(
            &mut out,
            "r",
            &Reading::new("m", Quantity::ActivePower, 1e21, 0),
            Precision::Ms,
        )
        .unwrap();
        assert!(out.starts_with("r value=1e21,"), "{out}");
    }

    #[test]
    fn precisions_and_range() {
        assert_eq!(
            timestamp(1_700_000_000_123, Precision::S).unwrap(),
            1_700_000_000
        );
        assert_eq!(timestamp(-1, Precision::S).unwrap(), -1);
        assert_eq!(
            timestamp(1_700_000_000_123, Precision::Us).unwrap(),
            1_700_000_000_123_000
        );
        assert_eq!(
            timestamp(1_700_000_000_123, Precision::Ns).unwrap(),
            1_700_000_000_123_000_000
        );
        // Year 2262 and later cannot be stored in nanoseconds, at any precision.
        assert!(matches!(
            timestamp(9_300_000_000_000, Precision::Ms),
            Err(EncodeError::TimestampOutOfRange { .. })
        ));
        let mut out = String::new();
        let r = Reading::new("m", Quantity::ActivePower, 1.0, i64::MAX);
        assert!(push_reading(&mut out, "r", &r, Precision::Ms).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn generic_lines_with_every_type() {
        let mut out = String::new();
        push_line(
            &mut out,
            &series_key("m", &[("t", "v")]).unwrap(),
            &[
                ("f", FieldValue::Float(1.5)),
                ("i", FieldValue::Int(-3)),
                ("u", FieldValue::UInt(7)),
                ("b", FieldValue::Bool(true)),
                ("s", FieldValue::Str("x \"y\"")),
            ],
            2000,
            Precision::S,
        )
        .unwrap();
        assert_eq!(out, "m,t=v f=1.5,i=-3i,u=7u,b=true,s=\"x \\\"y\\\"\" 2\n");
        assert_eq!(
            push_line(
                &mut out,
                "m",
                &[("f", FieldValue::Float(f64::NAN))],
                0,
                Precision::Ms
            ),
            Err(EncodeError::NonFinite("NaN".into()))
        );
        assert_eq!(
            push_line(&mut out, "m", &[], 0, Precision::Ms),
            Err(EncodeError::NoFields)
        );
        assert_eq!(series_key("#m", &[]), Err(EncodeError::CommentMeasurement));
        assert_eq!(series_key("", &[]), Err(EncodeError::EmptyMeasurement));
        assert!(
            out.ends_with(" 2\n"),
            "failed lines must not leave partial output: {out}"
        );
    }
}
