//! `energy-gateway quarantine list|export`: the points destinations rejected for good.
//!
//! A quarantined point is one a destination refused for its content (parse error, field type
//! conflict, timestamp out of range, larger than the server accepts) while the rest of its batch
//! was delivered. It stays in the store with the server's answer so it can be looked at, fixed
//! and replayed by hand; it never holds back the points after it.

use std::io::Write;
use std::path::Path;

use super::{QuarantinedLine, Store};
use crate::storage::config::Synchronous;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line with every recorded detail.
    JsonLines,
    /// The rejected lines as line protocol, ready to fix and replay.
    LineProtocol,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" | "json" => Ok(ExportFormat::JsonLines),
            "lp" | "line-protocol" => Ok(ExportFormat::LineProtocol),
            _ => Err(format!("unknown format \"{s}\"; use jsonl or lp")),
        }
    }
}

fn open_existing(store_path: &Path) -> anyhow::Result<Store> {
    if !store_path.exists() {
        anyhow::bail!(
            "no store at {} (has the gateway run with this configuration?)",
            store_path.display()
        );
    }
    Ok(Store::open(store_path, Synchronous::Normal)?)
}

fn destination_filter(destination: Option<&str>) -> Option<String> {
    destination.map(|d| {
        if d.contains('.') {
            d.to_string()
        } else {
            format!("influxdb.{d}")
        }
    })
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Prints a summary per destination and every quarantined point.
pub fn list(
    store_path: &Path,
    destination: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let store = open_existing(store_path)?;
    let filter = destination_filter(destination);
    let lines = store.quarantined(filter.as_deref())?;
    writeln!(
        out,
        "{}: {} quarantined point{}",
        store_path.display(),
        lines.len(),
        if lines.len() == 1 { "" } else { "s" }
    )?;
    for (d, n) in store.quarantine_counts()? {
        if filter.as_deref().is_none_or(|f| f == d) {
            writeln!(out, "  {d}: {n}")?;
        }
    }
    for q in &lines {
        let status = q
            .status
            .map(|s| format!("HTTP {s}"))
            .unwrap_or_else(|| "not sent".into());
        writeln!(
            out,
            "{}  reading {}  quarantined {}  {}: {}",
            q.destination,
            q.reading_id,
            format_ms(q.quarantined_ms),
            status,
            q.error.replace('\n', " | ")
        )?;
        writeln!(out, "    {}", q.line)?;
    }
    Ok(lines.len())
}

/// Writes every quarantined point (of `destination`, when given) in `format`.
pub fn export(
    store_path: &Path,
    destination: Option<&str>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let store = open_existing(store_path)?;
    let filter = destination_filter(destination);
    let lines: Vec<QuarantinedLine> = store.quarantined(filter.as_deref())?;
    for q in &lines {
        match format {
            ExportFormat::JsonLines => {
                serde_json::to_writer(&mut *out, q)?;
                writeln!(out)?;
            }
            ExportFormat::LineProtocol => writeln!(out, "{}", q.line)?,
        }
    }
    out.flush()?;
    Ok(lines.len())
}
