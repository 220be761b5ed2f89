//! History queries as people and tools ask them (`GET /api/v1/history`, `energy-gateway
//! history`): parameters as text, answers as JSON or CSV. The tiers behind are the store's
//! business ([`super::tiers`]).

use std::io::Write;
use std::path::Path;

use super::config::Synchronous;
use super::tiers::{History, HistoryPoint, Step};
use super::Store;
use crate::readings::{Quantity, TimestampMs};

/// A history query, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub device: String,
    pub quantity: Quantity,
    pub from: TimestampMs,
    pub to: TimestampMs,
    pub step: Step,
}

/// Longest range one query may ask for (ten years).
const MAX_RANGE_MS: i64 = 10 * 366 * 86_400_000;

/// RFC 3339 UTC with milliseconds (readings keep their acquisition millisecond).
fn time_text(ms: TimestampMs) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

fn time(name: &str, s: &str) -> Result<TimestampMs, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|e| {
            format!(
                "{name} \"{s}\" is neither RFC 3339 with an offset (2026-10-01T08:00:00+08:00) nor milliseconds since the epoch ({e})"
            )
        })
}

impl HistoryQuery {
    /// Reads the parameters: `from`/`to` RFC 3339 or ms since the epoch (`to` inclusive,
    /// default now), `step` `raw`, `auto` (default) or a duration (`1m`, `15m`, `1h`, `1d`).
    pub fn parse(
        device: &str,
        quantity: &str,
        from: &str,
        to: Option<&str>,
        step: Option<&str>,
    ) -> Result<HistoryQuery, String> {
        if device.trim().is_empty() {
            return Err("device is required".into());
        }
        let quantity: Quantity = quantity
            .trim()
            .parse()
            .map_err(|_| format!("quantity \"{quantity}\" is not a known quantity"))?;
        let from = time("from", from)?;
        let to = match to {
            Some(t) => time("to", t)?,
            None => crate::readings::now_ms(),
        };
        if to < from {
            return Err("to is before from".into());
        }
        if to - from > MAX_RANGE_MS {
            return Err("the range is longer than ten years".into());
        }
        let step = match step.map(str::trim) {
            None | Some("") | Some("auto") => Step::Auto,
            Some("raw") => Step::Raw,
            Some(s) => {
                let d = crate::units::duration::parse(s)
                    .map_err(|e| format!("step \"{s}\": {e} (or raw, auto)"))?;
                let ms = d.as_millis() as i64;
                if ms < 1000 {
                    return Err(format!("step \"{s}\" must be at least 1s"));
                }
                Step::Every(ms)
            }
        };
        Ok(HistoryQuery {
            device: device.trim().to_string(),
            quantity,
            from,
            to,
            step,
        })
    }

    /// Runs the query on `store`.
    pub fn run(&self, store: &Store) -> super::Result<History> {
        store.history(&self.device, self.quantity, self.from, self.to, self.step)
    }

    /// Runs the query on the store at `path` (a connection of its own).
    pub fn run_at(&self, path: &Path) -> super::Result<History> {
        self.run(&Store::open(path, Synchronous::Normal)?)
    }

    /// The answer as JSON: the query, the tier's kind and the points (times RFC 3339 UTC).
    pub fn json(&self, h: &History) -> serde_json::Value {
        let points: Vec<serde_json::Value> = h
            .points
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                if let (
                    Some(o),
                    HistoryPoint::Reading { ts_ms, .. } | HistoryPoint::Aggregate { ts_ms, .. },
                ) = (v.as_object_mut(), p)
                {
                    o.insert("time".into(), time_text(*ts_ms).into());
                }
                v
            })
            .collect();
        serde_json::json!({
            "device": self.device,
            "quantity": self.quantity.as_str(),
            "unit": self.quantity.unit(),
            "from": time_text(self.from),
            "to": time_text(self.to),
            "kind": h.kind,
            "step_ms": h.step_ms,
            "raw_dropped_through": h.raw_dropped_through_ms.map(time_text),
            "truncated": h.points.len() >= super::tiers::MAX_POINTS,
            "points": points,
        })
    }

    /// The answer as CSV: readings `time,device,quantity,value,quality`, aggregates
    /// `time,device,quantity,count,bad,min,max,mean,last,estimated` (empty cells for missing
    /// values, never 0).
    pub fn write_csv(&self, h: &History, out: &mut dyn Write) -> std::io::Result<()> {
        let cell = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let (d, q) = (&self.device, self.quantity.as_str());
        if h.kind == "raw" {
            writeln!(out, "time,device,quantity,value,quality")?;
        } else {
            writeln!(
                out,
                "time,device,quantity,count,bad,min,max,mean,last,estimated"
            )?;
        }
        for p in &h.points {
            match p {
                HistoryPoint::Reading {
                    ts_ms,
                    value,
                    quality,
                } => writeln!(
                    out,
                    "{},{d},{q},{},{quality}",
                    time_text(*ts_ms),
                    cell(*value)
                )?,
                HistoryPoint::Aggregate {
                    ts_ms,
                    count,
                    bad,
                    min,
                    max,
                    mean,
                    last,
                    estimated,
                } => writeln!(
                    out,
                    "{},{d},{q},{count},{bad},{},{},{},{},{estimated}",
                    time_text(*ts_ms),
                    cell(*min),
                    cell(*max),
                    cell(*mean),
                    cell(*last)
                )?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::Reading;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00Z

    /// The mean of each step that has one (the live page's curves): (step start, mean).
    fn means(s: &Store, device: &str, from: i64, to: i64, step_ms: i64) -> Vec<(i64, f64)> {
        let h = s
            .history(
                device,
                Quantity::ActivePower,
                from,
                to,
                Step::Every(step_ms),
            )
            .unwrap();
        h.points
            .into_iter()
            .filter_map(|p| match p {
                HistoryPoint::Aggregate {
                    ts_ms,
                    mean: Some(m),
                    ..
                } => Some((ts_ms, m)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn step_means_are_exact_before_and_after_the_raw_readings_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        // 30 minutes of one-second power readings; minute 7 has none, some are bad.
        let value = |i: i64| 10.0 + (i % 17) as f64 + (i / 60) as f64 * 0.5;
        for i in 0..1800i64 {
            if (420..480).contains(&i) {
                continue;
            }
            let ts = T0 + i * 1000;
            let r = if i % 41 == 0 {
                Reading::bad("m", Quantity::ActivePower, ts, "timeout")
            } else {
                Reading::new("m", Quantity::ActivePower, value(i), ts)
            };
            s.insert_readings(&[r]).unwrap();
        }
        let expected = |step_s: i64| -> Vec<(i64, f64)> {
            let mut out: Vec<(i64, f64, u32)> = Vec::new();
            for i in (0..1800i64).filter(|i| !(420..480).contains(i) && i % 41 != 0) {
                let b = T0 + i / step_s * step_s * 1000;
                match out.last_mut() {
                    Some(l) if l.0 == b => {
                        l.1 += value(i);
                        l.2 += 1;
                    }
                    _ => out.push((b, value(i), 1)),
                }
            }
            out.into_iter()
                .map(|(b, s, n)| (b, s / f64::from(n)))
                .collect()
        };
        let close = |a: &[(i64, f64)], b: &[(i64, f64)]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.0 == y.0 && (x.1 - y.1).abs() < 1e-9)
        };
        let to = T0 + 1_800_000 - 1;
        for step_s in [60, 300, 900] {
            let got = means(&s, "m", T0, to, step_s * 1000);
            assert!(close(&got, &expected(step_s)), "{step_s}: {got:?}");
        }
        assert_eq!(
            means(&s, "m", T0, to, 60_000).len(),
            29,
            "the empty minute is absent"
        );
        // Raw readings gone: the minute tier gives the same means.
        s.prune(T0 + 1_800_000 + 10, &[]).unwrap();
        assert_eq!(s.count_readings().unwrap(), 0);
        for step_s in [60, 300, 900] {
            let got = means(&s, "m", T0, to, step_s * 1000);
            assert!(close(&got, &expected(step_s)), "{step_s}: {got:?}");
        }
        // Unknown series: nothing.
        assert!(means(&s, "x", T0, to, 60_000).is_empty());
    }
}
