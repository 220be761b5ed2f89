//! Property tests of the line protocol encoder: whatever the strings and numbers, what the
//! gateway writes parses back (with InfluxData's own `influxdb-line-protocol` parser) to exactly
//! the measurement, tags, fields and timestamp it was given. Characters that line protocol
//! cannot carry in names and tag values (line breaks, tab, NUL, a final backslash) come back as
//! spaces, as documented.

use std::collections::BTreeMap;

use energy_gateway::config::Precision;
use energy_gateway::outputs::influxdb::line_protocol::{
    push_line, push_reading, sanitize, series_key, FieldValue,
};
use energy_gateway::readings::{Quality, Quantity, Reading};
use influxdb_line_protocol::{parse_lines, FieldValue as Parsed, ParsedLine};
use proptest::prelude::*;

/// Strings rich in the characters that need escaping, plus arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::string::string_regex("[ ,=\\\\\"'#\t\n\ra-zA-Z0-9_.-]{1,16}").unwrap(),
        1 => any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn measurement() -> impl Strategy<Value = String> {
    text().prop_filter("a line starting with '#' is a comment", |m| {
        !m.starts_with('#')
    })
}

/// Tag keys that stay distinct after sanitising.
fn tags() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(text(), text(), 0..5).prop_filter(
        "keys distinct after sanitising",
        |m| {
            let mut keys: Vec<String> = m.keys().map(|k| sanitize(k).into_owned()).collect();
            keys.sort();
            keys.dedup();
            keys.len() == m.len()
        },
    )
}

fn field_value() -> impl Strategy<Value = (u8, f64, i64, u64, bool, String)> {
    (
        0u8..5,
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        any::<i64>(),
        any::<u64>(),
        any::<bool>(),
        any::<String>(),
    )
}

fn parse_one(line: &str) -> ParsedLine<'_> {
    let mut it = parse_lines(line);
    let parsed = it
        .next()
        .unwrap_or_else(|| panic!("no line in {line:?}"))
        .unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert!(it.next().is_none(), "more than one line in {line:?}");
    parsed
}

fn parsed_tags(p: &ParsedLine<'_>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_names_tags_and_fields_round_trip(
        m in measurement(),
        tags in tags(),
        fields in proptest::collection::btree_map(text(), field_value(), 1..5)
            .prop_filter("field keys distinct after sanitising", |m| {
                let mut k: Vec<String> = m.keys().map(|k| sanitize(k).into_owned()).collect();
                k.sort();
                k.dedup();
                k.len() == m.len()
            }),
        ts in -9_000_000_000_000i64..9_000_000_000_000,
    ) {
        let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let series = series_key(&m, &tag_refs).unwrap();
        let values: Vec<(&str, FieldValue<'_>)> = fields
            .iter()
            .map(|(k, (kind, f, i, u, b, s))| {
                let v = match kind {
                    0 => FieldValue::Float(*f),
                    1 => FieldValue::Int(*i),
                    2 => FieldValue::UInt(*u),
                    3 => FieldValue::Bool(*b),
                    _ => FieldValue::Str(s),
                };
                (k.as_str(), v)
            })
            .collect();
        let mut out = String::new();
        push_line(&mut out, &series, &values, ts, Precision::Ms).unwrap();
        prop_assert!(out.ends_with('\n'));

        let p = parse_one(&out);
        let want_m = sanitize(&m).into_owned();
        prop_assert_eq!(p.series.measurement.as_str(), want_m.as_str());
        let mut want: Vec<(String, String)> = tags
            .iter()
            .map(|(k, v)| (sanitize(k).into_owned(), sanitize(v).into_owned()))
            .collect();
        want.sort();
        prop_assert_eq!(parsed_tags(&p), want);
        prop_assert_eq!(p.timestamp, Some(ts));
        prop_assert_eq!(p.field_set.len(), values.len());
        for (k, v) in &values {
            let got = p
                .field_value(sanitize(k).as_ref())
                .unwrap_or_else(|| panic!("field {k:?} missing in {out:?}"));
            match (v, got) {
                (FieldValue::Float(a), Parsed::F64(b)) => prop_assert_eq!(a.to_bits(), b.to_bits()),
                (FieldValue::Int(a), Parsed::I64(b)) => prop_assert_eq!(a, b),
                (FieldValue::UInt(a), Parsed::U64(b)) => prop_assert_eq!(a, b),
                (FieldValue::Bool(a), Parsed::Boolean(b)) => prop_assert_eq!(a, b),
                (FieldValue::Str(a), Parsed::String(b)) => prop_assert_eq!(*a, b.as_str()),
                (want, got) => prop_assert!(false, "{want:?} came back as {got:?} in {out:?}"),
            }
        }
    }

    #[test]
    fn readings_round_trip_with_any_reason(
        tags in tags(),
        value in proptest::option::of(any::<f64>()),
        reason in any::<String>(),
        quality in 0u8..3,
        ts in 0i64..4_000_000_000_000,
    ) {
        let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let series = series_key("reading", &tag_refs).unwrap();
        let quality = match quality {
            0 => Quality::Good,
            1 => Quality::Bad(reason.clone()),
            _ => Quality::Estimated(reason.clone()),
        };
        let r = Reading {
            device: "d".into(),
            quantity: Quantity::ActivePower,
            value: if matches!(quality, Quality::Bad(_)) { None } else { value },
            ts_ms: ts,
            quality: quality.clone(),
        };
        for (precision, scale) in [(Precision::Ms, 1i64), (Precision::Us, 1000), (Precision::Ns, 1_000_000)] {
            let mut out = String::new();
            push_reading(&mut out, &series, &r, precision).unwrap();
            let p = parse_one(&out);
            prop_assert_eq!(p.timestamp, Some(ts * scale));
            match r.value.filter(|v| v.is_finite()) {
                Some(v) => prop_assert_eq!(p.field_value("value"), Some(&Parsed::F64(v))),
                None => prop_assert!(p.field_value("value").is_none()),
            }
            match p.field_value("quality") {
                Some(Parsed::String(q)) => prop_assert_eq!(q.as_str(), quality.as_str()),
                other => prop_assert!(false, "quality {other:?}"),
            }
            match (quality.reason(), p.field_value("reason")) {
                (Some(want), Some(Parsed::String(got))) => prop_assert_eq!(want, got.as_str()),
                (None, None) => {}
                (want, got) => prop_assert!(false, "reason {want:?} came back as {got:?}"),
            }
        }
    }
}

/// The concrete cases the properties cover, spelled out.
#[test]
fn escaping_examples() {
    let key = series_key(
        "m ,x",
        &[("t k", "a=b,c d"), ("back", "end\\"), ("nl", "x\ny")],
    )
    .unwrap();
    let mut out = String::new();
    push_line(
        &mut out,
        &key,
        &[("f,=", FieldValue::Str("q\"uo\\te\nline"))],
        1,
        Precision::Ms,
    )
    .unwrap();
    let p = parse_one(&out);
    assert_eq!(p.series.measurement.as_str(), "m ,x");
    assert_eq!(
        parsed_tags(&p),
        vec![
            ("back".to_string(), "end ".to_string()),
            ("nl".to_string(), "x y".to_string()),
            ("t k".to_string(), "a=b,c d".to_string()),
        ]
    );
    match p.field_value("f,=") {
        Some(Parsed::String(s)) => assert_eq!(s.as_str(), "q\"uo\\te\nline"),
        other => panic!("{other:?}"),
    }
}
