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
