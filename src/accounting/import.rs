//! Imports: meter readings (backfill of old logs), monthly value added, production and manually
//! recorded consumption; and the operator's record of a meter replacement.
//!
//! Each import has one typed row (`ValueAddedRow`, …). A CSV file (`energy-gateway import`, or
//! a `text/csv` body of the HTTP API) and a JSON array of items (the HTTP API) decode into the
//! same rows, and one function per import checks them and writes them. CSV files are UTF-8 with
//! a header line; fields are separated by commas and may be quoted with double quotes; blank
//! lines and lines starting with `#` are skipped. Every row is checked before anything is
//! written: input with a bad row imports nothing, and every bad row is reported with its place
//! (`line 4` of a file, `items[2]` of a JSON array).

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use super::calendar::Month;
use super::config::AccountingContext;
use super::counters::Replacement;
use super::factors::unit_ratio;
use super::ledger::Plan;
use super::store::{AccountingStore, ManualConsumption, ValueAdded};
use crate::readings::{Quantity, Reading, TimestampMs};

/// At most this many row errors are listed.
const MAX_ERRORS: usize = 20;

/// What went wrong with an import. Callers decide on the kind: the command line prints both,
/// the HTTP API answers 422 for [`ImportError::Data`] and 500 for [`ImportError::Store`].
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input: its header, its syntax or its rows (nothing was written).
    #[error("{0}")]
    Data(String),
    /// The store could not be read or written.
    #[error("the store: {0:#}")]
    Store(anyhow::Error),
}

impl ImportError {
    fn store(e: impl Into<anyhow::Error>) -> Self {
        ImportError::Store(e.into())
    }
}

/// Where a row came from: a line of a CSV file or an item of a JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowAt {
    Line(usize),
    Item(usize),
}

impl fmt::Display for RowAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowAt::Line(n) => write!(f, "line {n}"),
            RowAt::Item(k) => write!(f, "items[{k}]"),
        }
    }
}

/// Decoded rows of one import, each with its place, and the rows that could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows<T> {
    pub rows: Vec<(RowAt, T)>,
    pub errors: Vec<(RowAt, String)>,
}

impl<T> Rows<T> {
    /// The items of a JSON array, already decoded.
    pub fn from_items(items: Vec<T>) -> Self {
        Rows {
            rows: items
                .into_iter()
                .enumerate()
                .map(|(k, t)| (RowAt::Item(k), t))
                .collect(),
            errors: Vec::new(),
        }
    }
}

/// One import's row type: its CSV columns and how a CSV record becomes a row.
pub trait ImportRow: Sized {
    /// Columns every file has, in order.
    const REQUIRED: &'static [&'static str];
    /// Columns a file may add after the required ones, in order.
    const OPTIONAL: &'static [&'static str] = &[];
    /// A row from the text of its fields (as many as the header has columns).
    fn from_fields(f: &[String]) -> Result<Self, String>;

    /// Decodes a CSV text into rows.
    fn from_csv(text: &str) -> Result<Rows<Self>, ImportError> {
        parse_csv(text, Self::REQUIRED, Self::OPTIONAL, Self::from_fields)
            .map_err(ImportError::Data)
    }
}

/// A CSV text as rows of `T`. The header must name the required columns, then any prefix of the
/// optional ones; every record must have as many fields as the header.
fn parse_csv<T>(
    text: &str,
    required: &[&str],
    optional: &[&str],
    to_row: impl Fn(&[String]) -> Result<T, String>,
) -> Result<Rows<T>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let expected = || {
        let mut s = required.join(",");
        for o in optional {
            s.push_str(&format!("[,{o}]"));
        }
        s
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.records().filter_map(|r| match r {
        // A line of blanks only is a blank line.
        Ok(rec) if rec.iter().all(str::is_empty) => None,
        Ok(rec) => {
            let line = rec.position().map_or(0, |p| p.line() as usize);
            Some(Ok((
                line,
                rec.iter().map(str::to_string).collect::<Vec<_>>(),
            )))
        }
        Err(e) => Some(Err(e)),
    });
    let (n, cols) = match records.next() {
        None => {
            return Err(format!(
                "the file is empty; expected a header line `{}`",
                expected()
            ))
        }
        Some(Err(e)) => return Err(csv_error(&e)),
        Some(Ok(h)) => h,
    };
    let names: Vec<String> = cols.iter().map(|c| c.to_ascii_lowercase()).collect();
    let all: Vec<&str> = required.iter().chain(optional).copied().collect();
    if names.len() < required.len()
        || names.len() > all.len()
        || names.iter().zip(&all).any(|(a, b)| a != b)
    {
        return Err(format!(
            "line {n}: expected the header `{}`, found `{}`",
            expected(),
            cols.join(",")
        ));
    }
    let width = names.len();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for r in records {
        match r {
            Err(e) => errors.push((RowAt::Line(csv_line(&e)), csv_error(&e))),
            Ok((n, f)) if f.len() != width => errors.push((
                RowAt::Line(n),
                format!("{} fields, expected {width} ({})", f.len(), names.join(",")),
            )),
            Ok((n, f)) => match to_row(&f) {
                Ok(t) => rows.push((RowAt::Line(n), t)),
                Err(e) => errors.push((RowAt::Line(n), e)),
            },
        }
    }
    Ok(Rows { rows, errors })
}

fn csv_line(e: &csv::Error) -> usize {
    e.position().map_or(0, |p| p.line() as usize)
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => format!("line {}: the text is not UTF-8", csv_line(e)),
        _ => format!("line {}: {e}", csv_line(e)),
    }
}

fn summarize(mut errors: Vec<(RowAt, String)>) -> ImportError {
    errors.sort_by_key(|e| e.0);
    let n = errors.len();
    let mut shown: Vec<String> = errors
        .into_iter()
        .take(MAX_ERRORS)
        .map(|(at, e)| format!("{at}: {e}"))
        .collect();
    if n > MAX_ERRORS {
        shown.push(format!("… and {} more", n - MAX_ERRORS));
    }
    ImportError::Data(format!(
        "{n} bad row{}, nothing imported:\n  {}",
        if n == 1 { "" } else { "s" },
        shown.join("\n  ")
    ))
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

fn optional_number(s: Option<&String>, what: &str) -> Result<Option<f64>, String> {
    match s.map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(s) => number(s, what).map(Some),
    }
}

/// The largest quantity any import or record may carry (10¹² in its unit: no meter register,
/// monthly production or value added in 10⁴ CNY of one site comes near it; 1e308 would turn a
/// month's accounts into nonsense).
pub const MAX_QUANTITY: f64 = 1e12;

fn non_negative(v: f64, what: &str) -> Result<f64, String> {
    if !v.is_finite() {
        return Err(format!("{what} {v} is not a finite number"));
    }
    if v < 0.0 {
        return Err(format!("{what} {v} is negative"));
    }
    if v > MAX_QUANTITY {
        return Err(format!(
            "{what} {v} is not plausible (more than {MAX_QUANTITY:e}): check the unit and the digits"
        ));
    }
    Ok(v)
}

/// 2000-01-01T00:00:00Z: nothing the gateway records is older.
const EARLIEST_MS: TimestampMs = 946_684_800_000;

/// A time between 2000 and a day from now: a reading or a replacement dated 1970 or in 2999
/// comes from a wrong clock or a typo, not from a meter.
pub fn plausible_time(ts: TimestampMs) -> Result<TimestampMs, String> {
    let now = crate::readings::now_ms();
    if ts < EARLIEST_MS {
        return Err(format!(
            "time {} is before 2000: a wrong clock or a typo",
            fmt_utc(ts)
        ));
    }
    if ts > now + 86_400_000 {
        return Err(format!(
            "time {} is more than a day in the future (now {}): a wrong clock or a typo",
            fmt_utc(ts),
            fmt_utc(now)
        ));
    }
    Ok(ts)
}

fn fmt_utc(ts: TimestampMs) -> String {
    chrono::DateTime::from_timestamp_millis(ts)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ts.to_string())
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
    s.trim().parse::<Month>()
}

/// `import readings`: `time,device,quantity,value`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingRow {
    pub time: String,
    pub device: String,
    pub quantity: String,
    pub value: f64,
}

impl ImportRow for ReadingRow {
    const REQUIRED: &'static [&'static str] = &["time", "device", "quantity", "value"];
    fn from_fields(f: &[String]) -> Result<Self, String> {
        Ok(ReadingRow {
            time: f[0].clone(),
            device: f[1].clone(),
            quantity: f[2].clone(),
            value: number(&f[3], "value")?,
        })
    }
}

/// `import value-added`: `period,value_added_10k_cny[,value_added_comparable_10k_cny]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueAddedRow {
    pub period: String,
    pub value_added_10k_cny: f64,
    #[serde(default)]
    pub value_added_comparable_10k_cny: Option<f64>,
}

impl ImportRow for ValueAddedRow {
    const REQUIRED: &'static [&'static str] = &["period", "value_added_10k_cny"];
    const OPTIONAL: &'static [&'static str] = &["value_added_comparable_10k_cny"];
    fn from_fields(f: &[String]) -> Result<Self, String> {
        Ok(ValueAddedRow {
            period: f[0].clone(),
            value_added_10k_cny: number(&f[1], "value_added_10k_cny")?,
            value_added_comparable_10k_cny: optional_number(
                f.get(2),
                "value_added_comparable_10k_cny",
            )?,
        })
    }
}

/// `import production`: `period,product,quantity`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductionRow {
    pub period: String,
    pub product: String,
    pub quantity: f64,
}

impl ImportRow for ProductionRow {
    const REQUIRED: &'static [&'static str] = &["period", "product", "quantity"];
    fn from_fields(f: &[String]) -> Result<Self, String> {
        Ok(ProductionRow {
            period: f[0].clone(),
            product: f[1].clone(),
            quantity: number(&f[2], "quantity")?,
        })
    }
}

/// `import consumption`: `period,carrier,quantity,unit[,use]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumptionRow {
    pub period: String,
    pub carrier: String,
    pub quantity: f64,
    pub unit: String,
    /// `energy` (default) or `feedstock`.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
}

impl ImportRow for ConsumptionRow {
    const REQUIRED: &'static [&'static str] = &["period", "carrier", "quantity", "unit"];
    const OPTIONAL: &'static [&'static str] = &["use"];
    fn from_fields(f: &[String]) -> Result<Self, String> {
        Ok(ConsumptionRow {
            period: f[0].clone(),
            carrier: f[1].clone(),
            quantity: number(&f[2], "quantity")?,
            unit: f[3].clone(),
            use_: f.get(4).filter(|s| !s.trim().is_empty()).cloned(),
        })
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub rows: usize,
    pub written: usize,
    /// Rows already in the store (same series and instant), left as they were.
    pub skipped: usize,
}

/// `import readings`: stores the rows as readings; rows already in the store (same series and
/// instant) are left as they were.
pub fn import_readings(
    cfg: &AccountingContext,
    input: Rows<ReadingRow>,
) -> Result<ImportSummary, ImportError> {
    let mut errors = input.errors;
    let mut readings = Vec::new();
    let mut seen: HashMap<(String, Quantity, TimestampMs), RowAt> = HashMap::new();
    for (at, f) in &input.rows {
        let mut row = || -> Result<Reading, String> {
            let ts = plausible_time(parse_time(&f.time)?)?;
            let device = f.device.trim();
            if cfg.device(device).is_none() {
                return Err(format!(
                    "unknown device \"{device}\" (not in the configuration)"
                ));
            }
            let q: Quantity = f
                .quantity
                .trim()
                .parse()
                .map_err(|e: crate::readings::UnknownQuantity| e.to_string())?;
            if !f.value.is_finite() {
                return Err(format!("value {} is not a finite number", f.value));
            }
            if f.value.abs() > MAX_QUANTITY {
                return Err(format!(
                    "value {} is not plausible (more than {MAX_QUANTITY:e} in size)",
                    f.value
                ));
            }
            if let Some(first) = seen.insert((device.to_string(), q, ts), *at) {
                return Err(format!("the same device, quantity and time as {first}"));
            }
            Ok(Reading::new(device, q, f.value, ts))
        };
        match row() {
            Ok(r) => readings.push(r),
            Err(e) => errors.push((*at, e)),
        }
    }
    if !errors.is_empty() {
        return Err(summarize(errors));
    }
    let acc = AccountingStore::open(&cfg.store_path()).map_err(ImportError::store)?;
    let present = acc.has_readings(&readings).map_err(ImportError::store)?;
    let fresh: Vec<Reading> = readings
        .iter()
        .zip(present)
        .filter(|(_, there)| !there)
        .map(|(r, _)| r.clone())
        .collect();
    drop(acc);
    let mut store = crate::storage::Store::open(&cfg.store_path(), cfg.storage.synchronous)
        .map_err(ImportError::store)?;
    for chunk in fresh.chunks(cfg.storage.max_batch.max(1)) {
        store.insert_readings(chunk).map_err(ImportError::store)?;
    }
    Ok(ImportSummary {
        rows: readings.len(),
        written: fresh.len(),
        skipped: readings.len() - fresh.len(),
    })
}

/// `import value-added`: monthly value added; a month already stored is replaced.
pub fn import_value_added(
    cfg: &AccountingContext,
    input: Rows<ValueAddedRow>,
) -> Result<ImportSummary, ImportError> {
    let mut errors = input.errors;
    let mut rows = Vec::new();
    let mut seen = HashMap::new();
    for (at, f) in &input.rows {
        let row = || -> Result<(Month, ValueAdded), String> {
            let m = month(&f.period)?;
            let current = non_negative(f.value_added_10k_cny, "value_added_10k_cny")?;
            let comparable = f
                .value_added_comparable_10k_cny
                .map(|v| non_negative(v, "value_added_comparable_10k_cny"))
                .transpose()?;
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
                if let Some(first) = seen.insert(r.0, *at) {
                    errors.push((*at, format!("month {} is also on {first}", r.0)));
                }
                rows.push(r);
            }
            Err(e) => errors.push((*at, e)),
        }
    }
    if !errors.is_empty() {
        return Err(summarize(errors));
    }
    let mut acc = AccountingStore::open(&cfg.store_path()).map_err(ImportError::store)?;
    acc.put_value_added(&rows).map_err(ImportError::store)?;
    Ok(ImportSummary {
        rows: rows.len(),
        written: rows.len(),
        skipped: 0,
    })
}

/// `import production`: monthly production per product; a month and product already stored is
/// replaced.
pub fn import_production(
    cfg: &AccountingContext,
    input: Rows<ProductionRow>,
) -> Result<ImportSummary, ImportError> {
    let mut errors = input.errors;
    let mut rows = Vec::new();
    let mut seen = HashMap::new();
    for (at, f) in &input.rows {
        let row = || -> Result<(Month, String, f64), String> {
            let m = month(&f.period)?;
            let p = f.product.trim();
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
            Ok((m, p.to_string(), non_negative(f.quantity, "quantity")?))
        };
        match row() {
            Ok(r) => {
                if let Some(first) = seen.insert((r.0, r.1.clone()), *at) {
                    errors.push((*at, format!("{} {} is also on {first}", r.0, r.1)));
                }
                rows.push(r);
            }
            Err(e) => errors.push((*at, e)),
        }
    }
    if !errors.is_empty() {
        return Err(summarize(errors));
    }
    let mut acc = AccountingStore::open(&cfg.store_path()).map_err(ImportError::store)?;
    acc.put_production(&rows).map_err(ImportError::store)?;
    Ok(ImportSummary {
        rows: rows.len(),
        written: rows.len(),
        skipped: 0,
    })
}

/// `import consumption`: monthly quantities of carriers without a meter (coal deliveries,
/// diesel…), for energy use or as feedstock.
pub fn import_consumption(
    cfg: &AccountingContext,
    input: Rows<ConsumptionRow>,
) -> Result<ImportSummary, ImportError> {
    let plan = Plan::build(cfg).map_err(|e| ImportError::Data(format!("{e:#}")))?;
    let mut errors = input.errors;
    let mut rows = Vec::new();
    let mut seen = HashMap::new();
    for (at, f) in &input.rows {
        let row = || -> Result<ManualConsumption, String> {
            let m = month(&f.period)?;
            let carrier = f.carrier.trim();
            let factor = plan.factors.get(carrier).ok_or_else(|| {
                format!(
                    "unknown carrier \"{carrier}\" (the factor tables know: {})",
                    plan.factors.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            let q = non_negative(f.quantity, "quantity")?;
            let unit = f.unit.trim();
            let ratio = unit_ratio(unit, &factor.unit).ok_or_else(|| {
                format!(
                    "unit \"{unit}\" does not convert to {} (the unit of {carrier})",
                    factor.unit
                )
            })?;
            let feedstock = match f.use_.as_deref().map(str::trim) {
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
                if let Some(first) = seen.insert((r.month, r.carrier.clone(), r.feedstock), *at) {
                    errors.push((*at, format!("{} {} is also on {first}", r.month, r.carrier)));
                }
                rows.push(r);
            }
            Err(e) => errors.push((*at, e)),
        }
    }
    if !errors.is_empty() {
        return Err(summarize(errors));
    }
    let mut acc = AccountingStore::open(&cfg.store_path()).map_err(ImportError::store)?;
    acc.put_consumption(&rows).map_err(ImportError::store)?;
    Ok(ImportSummary {
        rows: rows.len(),
        written: rows.len(),
        skipped: 0,
    })
}

/// `counter replace` and `POST /api/v1/meter-replacements`: records a meter replacement so the
/// accounts lose no energy.
pub fn record_replacement(
    cfg: &AccountingContext,
    device: &str,
    quantity: &str,
    time: &str,
    old_final: f64,
    new_initial: f64,
    note: Option<&str>,
) -> Result<Replacement, ImportError> {
    let data = ImportError::Data;
    if cfg.device(device).is_none() {
        return Err(data(format!(
            "unknown device \"{device}\" (not in the configuration)"
        )));
    }
    let q: Quantity = quantity
        .parse()
        .map_err(|e: crate::readings::UnknownQuantity| data(e.to_string()))?;
    if !q.is_cumulative() {
        return Err(data(format!("{q} is not a cumulative counter")));
    }
    let ts = parse_time(time).and_then(plausible_time).map_err(data)?;
    for (v, what) in [(old_final, "old_final"), (new_initial, "new_initial")] {
        if !v.is_finite() || v < 0.0 {
            return Err(data(format!(
                "{what} must be a number of zero or more, not {v}"
            )));
        }
        non_negative(v, what).map_err(data)?;
    }
    let r = Replacement {
        ts_ms: ts,
        old_final,
        new_initial,
    };
    let acc = AccountingStore::open(&cfg.store_path()).map_err(ImportError::store)?;
    // Against the counter's last stored reading before the replacement: the old meter cannot
    // have run backwards, nor used more than its rated power allows since then.
    let last = acc
        .samples_before(device, q, ts + 1, 1)
        .map_err(ImportError::store)?;
    if let Some(last) = last.last() {
        let tolerance = 1e-9 * last.value.abs().max(1.0);
        if old_final + tolerance < last.value {
            return Err(data(format!(
                "old_final {old_final} is below the counter's last reading {} at {}: the old meter cannot have run backwards",
                last.value,
                fmt_utc(last.ts_ms)
            )));
        }
        let rated = Plan::build(cfg).ok().and_then(|p| {
            p.series
                .iter()
                .find(|s| s.device == device && s.quantity == q)
                .and_then(|s| s.settings.rated_per_hour)
        });
        if let Some(rated) = rated {
            let hours = (ts - last.ts_ms).max(0) as f64 / 3_600_000.0;
            let most = rated * hours * 1.2 + 1.0;
            if old_final - last.value > most {
                return Err(data(format!(
                    "old_final {old_final} is {:.3} above the last reading {} at {}: more than the meter's rated power allows in {hours:.2} h (at most {most:.3})",
                    old_final - last.value,
                    last.value,
                    fmt_utc(last.ts_ms)
                )));
            }
        }
    }
    acc.record_replacement(device, q, &r, note)
        .map_err(ImportError::store)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(
        text: &str,
        required: &[&str],
        optional: &[&str],
    ) -> Result<Rows<Vec<String>>, String> {
        parse_csv(text, required, optional, |f| Ok(f.to_vec()))
    }

    fn one_row(line: &str, width: usize) -> Vec<String> {
        let names: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let text = format!("{}\n{line}\n", names.join(","));
        let mut r = fields(&text, &names[..1], &names[1..]).unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        r.rows.remove(0).1
    }

    #[test]
    fn csv_fields_are_trimmed_and_quotes_are_honoured() {
        assert_eq!(one_row("a, b ,c", 3), vec!["a", "b", "c"]);
        assert_eq!(
            one_row("\"2026-10\",\"1,5\",x", 3),
            vec!["2026-10", "1,5", "x"]
        );
        assert_eq!(one_row("\"say \"\"hi\"\"\",x", 2), vec!["say \"hi\"", "x"]);
    }

    #[test]
    fn header_and_row_errors_name_the_line() {
        let e = fields("period,value\n", &["period", "value_added_10k_cny"], &[])
            .err()
            .unwrap();
        assert!(
            e.starts_with("line 1: expected the header `period,value_added_10k_cny`"),
            "{e}"
        );
        let c = fields("# comment\n\nperiod,product,quantity\n2026-10,tile\n2026-11,tile,1,2\n2026-12,tile,3\n", &["period", "product", "quantity"], &[])
            .unwrap();
        let e = summarize(c.errors).to_string();
        assert!(e.starts_with("2 bad rows, nothing imported"), "{e}");
        assert!(e.contains("line 4: 2 fields, expected 3"), "{e}");
        assert!(e.contains("line 5: 4 fields, expected 3"), "{e}");
        assert_eq!(c.rows.len(), 1);
        let ok = fields(
            "\u{feff}period,value_added_10k_cny\n2026-10,5\n",
            &["period", "value_added_10k_cny"],
            &["value_added_comparable_10k_cny"],
        )
        .unwrap();
        assert_eq!(
            ok.rows,
            vec![(RowAt::Line(2), vec!["2026-10".to_string(), "5".to_string()])]
        );
        assert!(fields("", &["a"], &[]).err().unwrap().contains("empty"));
    }

    #[test]
    fn csv_and_json_decode_into_the_same_rows() {
        let csv = ValueAddedRow::from_csv(
            "period,value_added_10k_cny,value_added_comparable_10k_cny\n2026-10,5,\n2026-11,6,5.5\n",
        )
        .unwrap();
        let json: Vec<ValueAddedRow> = serde_json::from_str(
            r#"[{"period": "2026-10", "value_added_10k_cny": 5},
                {"period": "2026-11", "value_added_10k_cny": 6, "value_added_comparable_10k_cny": 5.5}]"#,
        )
        .unwrap();
        let json = Rows::from_items(json);
        let strip =
            |r: &Rows<ValueAddedRow>| r.rows.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
        assert_eq!(strip(&csv), strip(&json));
        assert_eq!(csv.rows[1].0.to_string(), "line 3");
        assert_eq!(json.rows[1].0.to_string(), "items[1]");
        let bad = ValueAddedRow::from_csv("period,value_added_10k_cny\n2026-10,x\n").unwrap();
        assert_eq!(
            bad.errors,
            vec![(
                RowAt::Line(2),
                "value_added_10k_cny \"x\" is not a number".to_string()
            )]
        );
    }

    #[test]
    fn values_and_times() {
        assert_eq!(number("1.5", "v"), Ok(1.5));
        assert!(number("NaN", "v").is_err());
        assert!(number("x", "v").unwrap_err().contains("not a number"));
        assert!(non_negative(-1.0, "q").unwrap_err().contains("negative"));
        assert!(non_negative(1e308, "old_final")
            .unwrap_err()
            .contains("not plausible"));
        assert_eq!(non_negative(1e11, "q"), Ok(1e11));
        assert_eq!(
            parse_time("2026-10-01T00:00:00+08:00").unwrap(),
            1_790_784_000_000
        );
        assert!(parse_time("2026-10-01 00:00").is_err());
    }

    #[test]
    fn times_from_a_wrong_clock_or_a_typo_are_refused() {
        let now = crate::readings::now_ms();
        assert!(plausible_time(0).unwrap_err().contains("before 2000"));
        assert!(plausible_time(now + 2 * 86_400_000)
            .unwrap_err()
            .contains("future"));
        assert_eq!(plausible_time(now - 1000), Ok(now - 1000));
        assert_eq!(plausible_time(EARLIEST_MS), Ok(EARLIEST_MS));
    }

    #[test]
    fn a_replacement_is_checked_against_the_last_reading_and_the_rated_power() {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
[site]
id = "rep"
timezone = "Asia/Shanghai"
[storage]
data_dir = "{}"
[[devices]]
id = "press"
carrier = "electricity"
[devices.modbus]
address = "127.0.0.1:1502"
[[devices.points]]
quantity = "energy_import"
register = 0
[[accounting.meters]]
device = "press"
role = "purchase"
rated_power = 100.0
"#,
            dir.path().display()
        );
        let cfg = crate::config::load_str(&toml).unwrap().accounting_context();
        let now = crate::readings::now_ms();
        let hour_ago = now - 3_600_000;
        let mut store = crate::storage::Store::open(
            &cfg.store_path(),
            crate::storage::config::Synchronous::Normal,
        )
        .unwrap();
        store
            .insert_readings(&[Reading::new(
                "press",
                Quantity::EnergyImport,
                5000.0,
                hour_ago,
            )])
            .unwrap();
        drop(store);
        let at = fmt_utc(now - 60_000);
        let err = |old: f64| match record_replacement(
            &cfg,
            "press",
            "energy_import",
            &at,
            old,
            0.0,
            None,
        ) {
            Err(ImportError::Data(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(err(4000.0).contains("run backwards"), "{}", err(4000.0));
        // 100 kW for 59 minutes: at most ~118 kWh more (with the margin); 1e308 and 9000 are not.
        assert!(err(9000.0).contains("rated power"));
        assert!(err(1e308).contains("not plausible"));
        assert!(record_replacement(
            &cfg,
            "press",
            "energy_import",
            "1970-01-01T00:00:00Z",
            5050.0,
            0.0,
            None
        )
        .is_err());
        let r = record_replacement(&cfg, "press", "energy_import", &at, 5090.0, 0.0, None).unwrap();
        assert_eq!(r.old_final, 5090.0);
    }
}
