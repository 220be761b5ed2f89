//! CSV imports: meter readings (backfill of old logs), monthly value added, production and
//! manually recorded consumption; and the operator's record of a meter replacement.
//!
//! Files are UTF-8 with a header line; fields are separated by commas and may be quoted with
//! double quotes; blank lines and lines starting with `#` are skipped. Every row is checked before
//! anything is written: a file with a bad row imports nothing and every bad row is reported with
//! its line number.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::calendar::Month;
use super::counters::Replacement;
use super::factors::unit_ratio;
use super::ledger::Plan;
use super::store::{AccountingStore, ManualConsumption, ValueAdded};
use crate::config::Config;
use crate::readings::{Quantity, Reading, TimestampMs};

/// At most this many row errors are listed.
const MAX_ERRORS: usize = 20;

/// Splits one CSV line into fields (RFC 4180 quoting, on one line).
pub fn split_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => cur.push(c),
            }
        } else {
            match c {
                ',' => {
                    fields.push(if was_quoted {
                        std::mem::take(&mut cur)
                    } else {
                        cur.trim().to_string()
                    });
                    cur.clear();
                    was_quoted = false;
                }
                '"' if cur.trim().is_empty() && !was_quoted => {
                    cur.clear();
                    quoted = true;
                    was_quoted = true;
                }
                '"' => return Err("a quote in the middle of a field".into()),
                _ if was_quoted && !c.is_whitespace() => {
                    return Err("text after a closing quote".into())
                }
                _ => cur.push(c),
            }
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(if was_quoted {
        cur
    } else {
        cur.trim().to_string()
    });
    Ok(fields)
}

/// A parsed CSV file: its data rows with their line numbers, and the lines that could not be
/// split into the right number of fields.
struct Csv {
    rows: Vec<(usize, Vec<String>)>,
    errors: Vec<(usize, String)>,
}

/// Reads `path`, checks the header against `required` then `optional` column names, and returns
/// the data rows. Rows must have between `required.len()` and all columns.
fn read_csv(path: &Path, required: &[&str], optional: &[&str]) -> Result<Csv> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_csv(&text, required, optional).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn parse_csv(text: &str, required: &[&str], optional: &[&str]) -> Result<Csv, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let expected = || {
        let mut s = required.join(",");
        for o in optional {
            s.push_str(&format!("[,{o}]"));
        }
        s
    };
    let Some((n, header)) = lines.next() else {
        return Err(format!(
            "the file is empty; expected a header line `{}`",
            expected()
        ));
    };
    let cols = split_line(header).map_err(|e| format!("line {n}: {e}"))?;
    let names: Vec<String> = cols.iter().map(|c| c.trim().to_ascii_lowercase()).collect();
    let all: Vec<&str> = required.iter().chain(optional).copied().collect();
    if names.len() < required.len()
        || names.len() > all.len()
        || names.iter().zip(&all).any(|(a, b)| a != b)
    {
        return Err(format!(
            "line {n}: expected the header `{}`, found `{}`",
            expected(),
            header.trim()
        ));
    }
    let width = names.len();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (n, l) in lines {
        match split_line(l) {
            Err(e) => errors.push((n, e)),
            Ok(f) if f.len() != width => errors.push((
                n,
                format!("{} fields, expected {width} ({})", f.len(), names.join(",")),
            )),
            Ok(f) => rows.push((n, f)),
        }
    }
    Ok(Csv { rows, errors })
}

fn summarize(mut errors: Vec<(usize, String)>) -> String {
    errors.sort_by_key(|e| e.0);
    let n = errors.len();
    let mut shown: Vec<String> = errors
        .into_iter()
        .take(MAX_ERRORS)
        .map(|(line, e)| format!("line {line}: {e}"))
        .collect();
    if n > MAX_ERRORS {
        shown.push(format!("… and {} more", n - MAX_ERRORS));
    }
    format!(
        "{n} bad row{}, nothing imported:\n  {}",
        if n == 1 { "" } else { "s" },
        shown.join("\n  ")
    )
}

fn number(s: &str, what: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{what} \"{s}\" is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{what} \"{s}\" is not a finite number"));
    }
    Ok(v)
}

fn non_negative(s: &str, what: &str) -> Result<f64, String> {
    let v = number(s, what)?;
    if v < 0.0 {
        return Err(format!("{what} {v} is negative"));
    }
    Ok(v)
}

/// Parses an RFC 3339 time (`2026-10-01T00:00:00+08:00`).
pub fn parse_time(s: &str) -> Result<TimestampMs, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.timestamp_millis())
        .map_err(|e| {
            format!(
                "time \"{s}\" is not RFC 3339 with an offset, e.g. 2026-10-01T08:00:00+08:00 ({e})"
            )
        })
}

fn month(s: &str) -> Result<Month, String> {
    s.parse::<Month>()
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub rows: usize,
    pub written: usize,
    /// Rows already in the store (same series and instant), left as they were.
    pub skipped: usize,
}

/// `import readings`: `time,device,quantity,value`.
pub fn import_readings(cfg: &Config, path: &Path) -> Result<ImportSummary> {
    let csv = read_csv(path, &["time", "device", "quantity", "value"], &[])?;
    let mut errors = csv.errors;
    let mut readings = Vec::new();
    let mut seen: HashMap<(String, Quantity, TimestampMs), usize> = HashMap::new();
    for (n, f) in &csv.rows {
        let mut row = || -> Result<Reading, String> {
            let ts = parse_time(&f[0])?;
            let device = f[1].trim();
            if cfg.device(device).is_none() {
                return Err(format!(
                    "unknown device \"{device}\" (not in the configuration)"
                ));
            }
            let q: Quantity = f[2]
                .trim()
                .parse()
                .map_err(|e: crate::readings::UnknownQuantity| e.to_string())?;
            let v = number(&f[3], "value")?;
            if let Some(first) = seen.insert((device.to_string(), q, ts), *n) {
                return Err(format!(
                    "the same device, quantity and time as line {first}"
                ));
            }
            Ok(Reading::new(device, q, v, ts))
        };
        match row() {
            Ok(r) => readings.push(r),
            Err(e) => errors.push((*n, e)),
        }
    }
    if !errors.is_empty() {
        bail!("{}: {}", path.display(), summarize(errors));
    }
    let acc = AccountingStore::open(&cfg.store_path())?;
    let present = acc.has_readings(&readings)?;
    let fresh: Vec<Reading> = readings
        .iter()
        .zip(present)
        .filter(|(_, there)| !there)
        .map(|(r, _)| r.clone())
        .collect();
    drop(acc);
    let mut store = crate::storage::Store::open(&cfg.store_path(), cfg.storage.synchronous)?;
    for chunk in fresh.chunks(cfg.storage.max_batch.max(1)) {
        store.insert_readings(chunk)?;
    }
    Ok(ImportSummary {
        rows: readings.len(),
        written: fresh.len(),
        skipped: readings.len() - fresh.len(),
    })
}

/// `import value-added`: `period,value_added_10k_cny[,value_added_comparable_10k_cny]`.
pub fn import_value_added(cfg: &Config, path: &Path) -> Result<ImportSummary> {
    let csv = read_csv(
        path,
        &["period", "value_added_10k_cny"],
        &["value_added_comparable_10k_cny"],
    )?;
    let mut errors = csv.errors;
    let mut rows = Vec::new();
    let mut seen = HashMap::new();
    for (n, f) in &csv.rows {
        let row = || -> Result<(Month, ValueAdded), String> {
            let m = month(&f[0])?;
            let current = non_negative(&f[1], "value_added_10k_cny")?;
            let comparable = match f.get(2).map(|s| s.trim()) {
                None | Some("") => None,
                Some(s) => Some(non_negative(s, "value_added_comparable_10k_cny")?),
            };
            Ok((
                m,
                ValueAdded {
                    current,
                    comparable,
                },
            ))
        };
        match row() {
            Ok(r) => {
                if let Some(first) = seen.insert(r.0, *n) {
                    errors.push((*n, format!("month {} is also on line {first}", r.0)));
                }
                rows.push(r);
            }
            Err(e) => errors.push((*n, e)),
        }
    }
    if !errors.is_empty() {
        bail!("{}: {}", path.display(), summarize(errors));
    }
    let mut acc = AccountingStore::open(&cfg.store_path())?;
    acc.put_value_added(&rows)?;
    Ok(ImportSummary {
        rows: rows.len(),
        written: rows.len(),
        skipped: 0,
    })
}

/// `import production`: `period,product,quantity`.
pub fn import_production(cfg: &Config, path: &Path) -> Result<ImportSummary> {
    let csv = read_csv(path, &["period", "product", "quantity"], &[])?;
    let mut errors = csv.errors;
    let mut rows = Vec::new();
    let mut seen = HashMap::new();
    for (n, f) in &csv.rows {
        let row = || -> Result<(Month, String, f64), String> {
            let m = month(&f[0])?;
            let p = f[1].trim();
            if !cfg.accounting.products.iter().any(|x| x.id == p) {
                return Err(format!(
                    "unknown product \"{p}\" (configured: {})",
                    cfg.accounting
                        .products
                        .iter()
                        .map(|x| x.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Ok((m, p.to_string(), non_negative(&f[2], "quantity")?))
        };
        match row() {
            Ok(r) => {
                if let Some(first) = seen.insert((r.0, r.1.clone()), *n) {
                    errors.push((*n, format!("{} {} is also on line {first}", r.0, r.1)));
                }
                rows.push(r);
            }
            Err(e) => errors.push((*n, e)),
        }
    }
    if !errors.is_empty() {
        bail!("{}: {}", path.display(), summarize(errors));
    }
    let mut acc = AccountingStore::open(&cfg.store_path())?;
    acc.put_production(&rows)?;
    Ok(ImportSummary {
        rows: rows.len(),
        written: rows.len(),
        skipped: 0,
    })
}

/// `import consumption`: `period,carrier,quantity,unit[,use]` for carriers without a meter
/// (coal deliveries, diesel…); `use` is `energy` (default) or `feedstock`.
pub fn import_consumption(cfg: &Config, path: &Path) -> Result<ImportSummary> {
    let plan = Plan::build(cfg)?;
    let csv = read_csv(path, &["period", "carrier", "quantity", "unit"], &["use"])?;
    let mut errors = csv.errors;
    let mut rows = Vec::new();
    let mut seen = HashMap::new();
    for (n, f) in &csv.rows {
        let row = || -> Result<ManualConsumption, String> {
            let m = month(&f[0])?;
            let carrier = f[1].trim();
            let factor = plan.factors.get(carrier).ok_or_else(|| {
                format!(
                    "unknown carrier \"{carrier}\" (the factor tables know: {})",
                    plan.factors.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            let q = non_negative(&f[2], "quantity")?;
            let unit = f[3].trim();
            let ratio = unit_ratio(unit, &factor.unit).ok_or_else(|| {
                format!(
                    "unit \"{unit}\" does not convert to {} (the unit of {carrier})",
                    factor.unit
                )
            })?;
            let feedstock = match f.get(4).map(|s| s.trim()) {
                None | Some("") | Some("energy") => false,
                Some("feedstock") => true,
                Some(other) => return Err(format!("use \"{other}\" must be energy or feedstock")),
            };
            Ok(ManualConsumption {
                month: m,
                carrier: carrier.to_string(),
                feedstock,
                quantity: q * ratio,
            })
        };
        match row() {
            Ok(r) => {
                if let Some(first) = seen.insert((r.month, r.carrier.clone(), r.feedstock), *n) {
                    errors.push((
                        *n,
                        format!("{} {} is also on line {first}", r.month, r.carrier),
                    ));
                }
                rows.push(r);
            }
            Err(e) => errors.push((*n, e)),
        }
    }
    if !errors.is_empty() {
        bail!("{}: {}", path.display(), summarize(errors));
    }
    let mut acc = AccountingStore::open(&cfg.store_path())?;
    acc.put_consumption(&rows)?;
    Ok(ImportSummary {
        rows: rows.len(),
        written: rows.len(),
        skipped: 0,
    })
}

/// `counter replace`: records a meter replacement so the accounts lose no energy.
pub fn record_replacement(
    cfg: &Config,
    device: &str,
    quantity: &str,
    time: &str,
    old_final: f64,
    new_initial: f64,
    note: Option<&str>,
) -> Result<Replacement> {
    if cfg.device(device).is_none() {
        bail!("unknown device \"{device}\" (not in the configuration)");
    }
    let q: Quantity = quantity.parse()?;
    if !q.is_cumulative() {
        bail!("{q} is not a cumulative counter");
    }
    let ts = parse_time(time).map_err(anyhow::Error::msg)?;
    for (v, what) in [(old_final, "--old-final"), (new_initial, "--new-initial")] {
        if !v.is_finite() || v < 0.0 {
            bail!("{what} must be a number of zero or more, not {v}");
        }
    }
    let r = Replacement {
        ts_ms: ts,
        old_final,
        new_initial,
    };
    let acc = AccountingStore::open(&cfg.store_path())?;
    acc.record_replacement(device, q, &r, note)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_split_with_quotes() {
        assert_eq!(split_line("a, b ,c").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(
            split_line("\"2026-10\",\"1,5\",x").unwrap(),
            vec!["2026-10", "1,5", "x"]
        );
        assert_eq!(
            split_line("\"say \"\"hi\"\"\",").unwrap(),
            vec!["say \"hi\"", ""]
        );
        assert!(split_line("\"open").is_err());
        assert!(split_line("a\"b").is_err());
    }

    #[test]
    fn header_and_row_errors_name_the_line() {
        let e = parse_csv("period,value\n", &["period", "value_added_10k_cny"], &[])
            .err()
            .unwrap();
        assert!(
            e.starts_with("line 1: expected the header `period,value_added_10k_cny`"),
            "{e}"
        );
        let c = parse_csv("# comment\n\nperiod,product,quantity\n2026-10,tile\n2026-11,tile,1,2\n2026-12,tile,3\n", &["period", "product", "quantity"], &[])
            .unwrap();
        let e = summarize(c.errors);
        assert!(e.starts_with("2 bad rows, nothing imported"), "{e}");
        assert!(e.contains("line 4: 2 fields, expected 3"), "{e}");
        assert!(e.contains("line 5: 4 fields, expected 3"), "{e}");
        assert_eq!(c.rows.len(), 1);
        let ok = parse_csv(
            "\u{feff}period,value_added_10k_cny\n2026-10,5\n",
            &["period", "value_added_10k_cny"],
            &["value_added_comparable_10k_cny"],
        )
        .unwrap();
        assert_eq!(
            ok.rows,
            vec![(2, vec!["2026-10".to_string(), "5".to_string()])]
        );
        assert!(parse_csv("", &["a"], &[]).err().unwrap().contains("empty"));
    }

    #[test]
    fn values_and_times() {
        assert_eq!(number("1.5", "v"), Ok(1.5));
        assert!(number("NaN", "v").is_err());
        assert!(number("x", "v").unwrap_err().contains("not a number"));
        assert!(non_negative("-1", "q").unwrap_err().contains("negative"));
        assert_eq!(
            parse_time("2026-10-01T00:00:00+08:00").unwrap(),
            1_790_784_000_000
        );
        assert!(parse_time("2026-10-01 00:00").is_err());
    }
}
