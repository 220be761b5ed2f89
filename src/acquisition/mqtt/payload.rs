//! Turning one MQTT message into readings: topic levels to device and quantity, payload (plain
//! number or JSON picked by pointers) to values, an optional timestamp field to the acquisition
//! time. Every way a message can be wrong is a [`PayloadError`], never a panic.

use chrono::{DateTime, NaiveDateTime, TimeZone as _};

use crate::acquisition::config::{MqttSubscription, PayloadFormat, TimestampFormat};
use crate::readings::{DeviceId, Quantity, Reading, TimestampMs};

/// Why a message (or one value of it) was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not a number: {0:?}")]
    NotANumber(String),
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("no value at JSON pointer {0}")]
    MissingPointer(String),
    #[error("value at {0} is not a number")]
    NotNumeric(String),
    #[error("value is NaN or infinite")]
    NotFinite,
    #[error("timestamp {0}")]
    BadTimestamp(String),
    #[error("unknown quantity {0:?} in topic")]
    UnknownQuantity(String),
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    #[error("device id {0:?} is not 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.'")]
    BadDeviceId(String),
    #[error("topic has no level {0}")]
    MissingLevel(usize),
}

/// What one message yielded: readings, and the problems with the parts that were not taken.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub readings: Vec<Reading>,
    pub errors: Vec<PayloadError>,
}

/// Fills `{N}` placeholders from the topic's levels.
pub fn expand(template: &str, topic: &str) -> Result<String, PayloadError> {
    if !template.contains('{') {
        return Ok(template.to_string());
    }
    let levels: Vec<&str> = topic.split('/').collect();
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after
            .find('}')
            .and_then(|j| after[..j].parse::<usize>().ok().map(|n| (j, n)))
        {
            Some((j, n)) => {
                out.push_str(levels.get(n).ok_or(PayloadError::MissingLevel(n))?);
                rest = &after[j + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Earliest and latest plausible acquisition times relative to now: a meter clock years off or
/// in the future is a bad message, not a reading.
const EARLIEST_MS: TimestampMs = 946_684_800_000; // 2000-01-01T00:00:00Z
const MAX_FUTURE_MS: TimestampMs = 24 * 3600 * 1000;

fn parse_timestamp(
    v: &serde_json::Value,
    format: TimestampFormat,
    tz: chrono_tz::Tz,
    now_ms: TimestampMs,
) -> Result<TimestampMs, PayloadError> {
    let bad = |m: String| PayloadError::BadTimestamp(m);
    let from_number = |x: f64, ms: bool| -> Result<TimestampMs, PayloadError> {
        if !x.is_finite() {
            return Err(bad(format!("{x} is not a time")));
        }
        Ok(if ms { x as i64 } else { (x * 1000.0) as i64 })
    };
    let ts = match (format, v) {
        (TimestampFormat::EpochS, serde_json::Value::Number(n)) => {
            from_number(n.as_f64().unwrap_or(f64::NAN), false)?
        }
        (TimestampFormat::EpochMs, serde_json::Value::Number(n)) => {
            from_number(n.as_f64().unwrap_or(f64::NAN), true)?
        }
        (TimestampFormat::Auto, serde_json::Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            // Epoch seconds stay below 1e11 until the year 5138; milliseconds are above it.
            from_number(x, x.abs() >= 1e11)?
        }
        (
            TimestampFormat::Rfc3339 | TimestampFormat::Auto | TimestampFormat::Local,
            serde_json::Value::String(s),
        ) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) if format != TimestampFormat::Local => t.timestamp_millis(),
            _ if format == TimestampFormat::Rfc3339 => {
                return Err(bad(format!("{s:?} is not RFC 3339")));
            }
            _ => {
                let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
                    .map_err(|_| bad(format!("{s:?} is not a date and time")))?;
                tz.from_local_datetime(&naive)
                    .earliest()
                    .ok_or_else(|| bad(format!("{s:?} does not exist in {tz}")))?
                    .timestamp_millis()
            }
        },
        (f, other) => return Err(bad(format!("{other} does not fit format {f:?}"))),
    };
    if ts < EARLIEST_MS || ts > now_ms + MAX_FUTURE_MS {
        return Err(bad(format!(
            "{ts} ms is implausible (before 2000 or more than a day ahead)"
        )));
    }
    Ok(ts)
}

/// Parses one message of subscription `sub`. `known` says whether a device id is configured.
pub fn parse(
    sub: &MqttSubscription,
    topic: &str,
    payload: &[u8],
    now_ms: TimestampMs,
    tz: chrono_tz::Tz,
    known: impl Fn(&str) -> bool,
) -> Parsed {
    parse_judged(sub, topic, payload, (now_ms, now_ms), tz, known)
}

/// [`parse`] with two times: `(now_ms, judge_ms)`, the first dates messages without a
/// timestamp, the second is what message timestamps must not be far ahead of (the clock
/// guard's estimate, which differs from the wall clock while that is not trusted).
pub fn parse_judged(
    sub: &MqttSubscription,
    topic: &str,
    payload: &[u8],
    (now_ms, judge_ms): (TimestampMs, TimestampMs),
    tz: chrono_tz::Tz,
    known: impl Fn(&str) -> bool,
) -> Parsed {
    let mut out = Parsed::default();
    let device = match expand(&sub.device, topic).map(|d| (DeviceId::new(&d), d)) {
        Ok((Err(_), d)) => {
            out.errors
                .push(PayloadError::BadDeviceId(d.chars().take(80).collect()));
            return out;
        }
        Ok((Ok(id), _)) if known(&id) || sub.accept_unknown_devices => id,
        Ok((Ok(_), d)) => {
            out.errors.push(PayloadError::UnknownDevice(d));
            return out;
        }
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    match sub.format {
        PayloadFormat::Number => {
            let q = match sub.quantity.as_deref().map(|q| expand(q, topic)) {
                Some(Ok(q)) => match q.parse::<Quantity>() {
                    Ok(q) => q,
                    Err(_) => {
                        out.errors.push(PayloadError::UnknownQuantity(q));
                        return out;
                    }
                },
                Some(Err(e)) => {
                    out.errors.push(e);
                    return out;
                }
                None => {
                    out.errors
                        .push(PayloadError::UnknownQuantity(String::new()));
                    return out;
                }
            };
            let text = String::from_utf8_lossy(payload);
            match text.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    out.readings
                        .push(Reading::new(device, q, v * sub.scale + sub.offset, now_ms))
                }
                Ok(_) => out.errors.push(PayloadError::NotFinite),
                Err(_) => out
                    .errors
                    .push(PayloadError::NotANumber(text.chars().take(40).collect())),
            }
        }
        PayloadFormat::Json => {
            let doc: serde_json::Value = match serde_json::from_slice(payload) {
                Ok(d) => d,
                Err(e) => {
                    out.errors.push(PayloadError::NotJson(e.to_string()));
                    return out;
                }
            };
            let ts = match &sub.timestamp {
                None => now_ms,
                Some(f) => match doc.pointer(&f.pointer) {
                    None => {
                        out.errors
                            .push(PayloadError::MissingPointer(f.pointer.clone()));
                        return out;
                    }
                    Some(v) => match parse_timestamp(v, f.format, tz, judge_ms) {
                        Ok(t) => t,
                        Err(e) => {
                            out.errors.push(e);
                            return out;
                        }
                    },
                },
            };
            for m in &sub.values {
                match doc.pointer(&m.pointer) {
                    None => out
                        .errors
                        .push(PayloadError::MissingPointer(m.pointer.clone())),
                    Some(v) => {
                        let x = match v {
                            serde_json::Value::Number(n) => n.as_f64(),
                            // Some firmwares quote their numbers.
                            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
                            _ => None,
                        };
                        match x {
                            Some(x) if x.is_finite() => out.readings.push(Reading::new(
                                device.clone(),
                                m.quantity,
                                x * m.scale + m.offset,
                                ts,
                            )),
                            Some(_) => out.errors.push(PayloadError::NotFinite),
                            None => out.errors.push(PayloadError::NotNumeric(m.pointer.clone())),
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquisition::config::{JsonValueMapping, TimestampField};

    const NOW: i64 = 1_795_000_000_000; // 2026-11-19
    const TZ: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

    fn number_sub(device: &str, quantity: &str) -> MqttSubscription {
        MqttSubscription {
            topic: "meters/+/+".into(),
            format: PayloadFormat::Number,
            device: device.into(),
            quantity: Some(quantity.into()),
            scale: 1.0,
            offset: 0.0,
            values: vec![],
            timestamp: None,
            accept_unknown_devices: false,
        }
    }

    fn tasmota() -> MqttSubscription {
        MqttSubscription {
            topic: "tele/+/SENSOR".into(),
            format: PayloadFormat::Json,
            device: "{1}".into(),
            quantity: None,
            scale: 1.0,
            offset: 0.0,
            values: vec![
                JsonValueMapping {
                    pointer: "/ENERGY/Power".into(),
                    quantity: Quantity::ActivePower,
                    scale: 0.001,
                    offset: 0.0,
                },
                JsonValueMapping {
                    pointer: "/ENERGY/Total".into(),
                    quantity: Quantity::EnergyImport,
                    scale: 1.0,
                    offset: 0.0,
                },
                JsonValueMapping {
                    pointer: "/ENERGY/Voltage".into(),
                    quantity: Quantity::VoltageL1,
                    scale: 1.0,
                    offset: 0.0,
                },
            ],
            timestamp: Some(TimestampField {
                pointer: "/Time".into(),
                format: TimestampFormat::Auto,
            }),
            accept_unknown_devices: false,
        }
    }

    #[test]
    fn device_and_quantity_from_topic_levels() {
        let p = parse(
            &number_sub("{1}", "{2}"),
            "meters/m7/active_power",
            b" 12.5 ",
            NOW,
            TZ,
            |d| d == "m7",
        );
        assert_eq!(p.errors, vec![]);
        assert_eq!(
            p.readings,
            vec![Reading::new("m7", Quantity::ActivePower, 12.5, NOW)]
        );
        let p = parse(
            &number_sub("{1}", "{2}"),
            "meters/m7/watts",
            b"1",
            NOW,
            TZ,
            |_| true,
        );
        assert_eq!(
            p.errors,
            vec![PayloadError::UnknownQuantity("watts".into())]
        );
        let p = parse(
            &number_sub("{1}", "{2}"),
            "meters/ghost/frequency",
            b"50",
            NOW,
            TZ,
            |d| d == "m7",
        );
        assert_eq!(p.errors, vec![PayloadError::UnknownDevice("ghost".into())]);
    }

    #[test]
    fn device_ids_from_topics_are_validated_before_anything_else() {
        let mut s = number_sub("{1}", "active_power");
        s.accept_unknown_devices = true;
        let long = "x".repeat(5000);
        for bad in ["m1 ", "m1\\", "", long.as_str(), "电表"] {
            let topic = format!("meters/{bad}/active_power");
            let p = parse(&s, &topic, b"1.5", NOW, TZ, |_| true);
            assert!(p.readings.is_empty(), "{bad:?}");
            assert!(
                matches!(p.errors.as_slice(), [PayloadError::BadDeviceId(d)] if d.len() <= 80 * 4),
                "{bad:?}: {:?}",
                p.errors
            );
        }
        let p = parse(&s, "meters/m-1.a_b/active_power", b"1.5", NOW, TZ, |_| true);
        assert_eq!(p.readings.len(), 1, "{:?}", p.errors);
    }

    #[test]
    fn garbage_numbers_are_errors() {
        let s = number_sub("m", "frequency");
        for bad in [&b"abc"[..], b"", b"NaN", b"inf", b"\xff\xfe", b"{\"v\":1}"] {
            let p = parse(&s, "meters/m/frequency", bad, NOW, TZ, |_| true);
            assert!(p.readings.is_empty(), "{bad:?}");
            assert_eq!(p.errors.len(), 1, "{bad:?}");
        }
    }

    #[test]
    fn tasmota_sensor_message_with_local_time() {
        let msg = br#"{"Time":"2026-11-19T10:30:00","ENERGY":{"TotalStartTime":"2026-01-01T00:00:00","Total":123.456,"Yesterday":1.2,"Today":0.5,"Power":1500,"ApparentPower":1550,"ReactivePower":300,"Factor":0.97,"Voltage":229,"Current":6.7}}"#;
        let p = parse(&tasmota(), "tele/plug-3/SENSOR", msg, NOW, TZ, |d| {
            d == "plug-3"
        });
        assert_eq!(p.errors, vec![]);
        // 10:30 in Shanghai (UTC+8) is 02:30 UTC.
        let ts = chrono::Utc
            .with_ymd_and_hms(2026, 11, 19, 2, 30, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            p.readings,
            vec![
                Reading::new("plug-3", Quantity::ActivePower, 1.5, ts),
                Reading::new("plug-3", Quantity::EnergyImport, 123.456, ts),
                Reading::new("plug-3", Quantity::VoltageL1, 229.0, ts),
            ]
        );
    }

    #[test]
    fn json_problems_are_reported_per_value() {
        let msg = br#"{"Time":"2026-11-19T10:30:00","ENERGY":{"Power":"1500","Total":null}}"#;
        let p = parse(&tasmota(), "tele/plug-3/SENSOR", msg, NOW, TZ, |_| true);
        assert_eq!(p.readings.len(), 1); // the quoted number is taken
        assert_eq!(
            p.errors,
            vec![
                PayloadError::NotNumeric("/ENERGY/Total".into()),
                PayloadError::MissingPointer("/ENERGY/Voltage".into())
            ]
        );
        let p = parse(
            &tasmota(),
            "tele/plug-3/SENSOR",
            b"{not json",
            NOW,
            TZ,
            |_| true,
        );
        assert!(matches!(p.errors[..], [PayloadError::NotJson(_)]));
    }

    #[test]
    fn timestamps_in_every_form_and_absurd_ones_rejected() {
        let f = |v: serde_json::Value, fmt| parse_timestamp(&v, fmt, TZ, NOW);
        assert_eq!(
            f(serde_json::json!(1_795_000_000), TimestampFormat::Auto),
            Ok(1_795_000_000_000)
        );
        assert_eq!(
            f(
                serde_json::json!(1_795_000_000_123i64),
                TimestampFormat::Auto
            ),
            Ok(1_795_000_000_123)
        );
        assert_eq!(
            f(serde_json::json!(1_795_000_000.5), TimestampFormat::EpochS),
            Ok(1_795_000_000_500)
        );
        assert_eq!(
            f(
                serde_json::json!("2026-11-19T02:30:00Z"),
                TimestampFormat::Rfc3339
            ),
            Ok(chrono::Utc
                .with_ymd_and_hms(2026, 11, 19, 2, 30, 0)
                .unwrap()
                .timestamp_millis())
        );
        assert!(f(
            serde_json::json!("2026-11-19T02:30:00"),
            TimestampFormat::Rfc3339
        )
        .is_err());
        assert!(f(serde_json::json!(12), TimestampFormat::Auto).is_err()); // 1970
        assert!(f(
            serde_json::json!(NOW + 2 * 86_400_000),
            TimestampFormat::EpochMs
        )
        .is_err());
        assert!(f(serde_json::json!(true), TimestampFormat::Auto).is_err());
    }
}
