//! InfluxDB line protocol encoding (`measurement,tag=v field=v timestamp`), with the escaping
//! rules of the InfluxDB 1.x/2.x reference: commas and spaces in measurements; commas, equals
//! signs and spaces in tag keys, tag values and field keys; double quotes and backslashes in
//! string field values. Line breaks cannot be expressed in keys or tag values and are replaced
//! by spaces.

use std::fmt::Write as _;

use crate::readings::Reading;

/// Appends `s` escaped for a measurement name.
pub fn push_measurement(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            ',' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
}

/// Appends `s` escaped for a tag key, tag value or field key.
pub fn push_key(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
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

/// Builds the series part (`measurement,tag=value,…`) from tags; tags are sorted by key, as
/// InfluxDB recommends, and empty values are left out (InfluxDB rejects them).
pub fn series_key(measurement: &str, tags: &[(&str, &str)]) -> String {
    let mut tags: Vec<_> = tags.iter().filter(|(_, v)| !v.is_empty()).collect();
    tags.sort_by_key(|(k, _)| *k);
    let mut out = String::with_capacity(64);
    push_measurement(&mut out, measurement);
    for (k, v) in tags {
        out.push(',');
        push_key(&mut out, k);
        out.push('=');
        push_key(&mut out, v);
    }
    out
}

/// Appends one line for a reading: fields `value` (float, absent when bad), `quality` (string)
/// and `reason` (string, when not good); timestamp in milliseconds.
pub fn push_reading(out: &mut String, series: &str, r: &Reading) {
    out.push_str(series);
    out.push(' ');
    if let Some(v) = r.value.filter(|v| v.is_finite()) {
        // `{:?}` keeps a decimal point or exponent so the value is always a float field.
        let _ = write!(out, "value={v:?},");
    }
    out.push_str("quality=");
    push_string_field(out, r.quality.as_str());
    if let Some(reason) = r.quality.reason() {
        out.push_str(",reason=");
        push_string_field(out, reason);
    }
    let _ = writeln!(out, " {}", r.ts_ms);
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
        );
        assert_eq!(key, r"my\ reading\,x,device=a\=b\,c,site=plant\ 1");
        let mut s = String::new();
        push_string_field(&mut s, r#"say "hi" \o/"#);
        assert_eq!(s, r#""say \"hi\" \\o/""#);
    }

    #[test]
    fn good_and_bad_readings() {
        let mut out = String::new();
        push_reading(
            &mut out,
            "reading,device=m",
            &Reading::new("m", Quantity::ActivePower, 12.0, 1700000000123),
        );
        push_reading(
            &mut out,
            "reading,device=m",
            &Reading::bad("m", Quantity::ActivePower, 5, "modbus exception: \"2\""),
        );
        assert_eq!(
            out,
            "reading,device=m value=12.0,quality=\"good\" 1700000000123\n\
             reading,device=m quality=\"bad\",reason=\"modbus exception: \\\"2\\\"\" 5\n"
        );
    }

    #[test]
    fn floats_stay_floats() {
        let mut out = String::new();
        push_reading(
            &mut out,
            "r",
            &Reading::new("m", Quantity::ActivePower, 1e21, 0),
        );
        assert!(out.starts_with("r value=1e21,"), "{out}");
    }
}
