//! The accounting commands (`import`, `report`, `counter`), as library functions that return the
//! text to print, so the command line stays a thin layer.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use super::labels::Lang;
use super::{build, json, Format};
use crate::accounting::calendar::{rfc3339, Period};
use crate::accounting::import;
use crate::config::{self, Config};

/// Loads and checks a configuration; every problem is listed in the error.
pub fn load_config(path: &Path) -> Result<Config> {
    config::load(path).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        anyhow!(
            "invalid configuration {}:\n{}",
            path.display(),
            list.join("\n")
        )
    })
}

/// What `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    Readings,
    ValueAdded,
    Production,
    Consumption,
}

/// `energy-gateway import KIND FILE --config CONFIG`
pub fn import(kind: ImportKind, file: &Path, config: &Path) -> Result<String> {
    use import::{ConsumptionRow, ImportRow, ProductionRow, ReadingRow, ValueAddedRow};
    let cfg = load_config(config)?.accounting_context();
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow!("{}: the file is not UTF-8 text", file.display()))?;
    let result = match kind {
        ImportKind::Readings => {
            ReadingRow::from_csv(&text).and_then(|r| import::import_readings(&cfg, r))
        }
        ImportKind::ValueAdded => {
            ValueAddedRow::from_csv(&text).and_then(|r| import::import_value_added(&cfg, r))
        }
        ImportKind::Production => {
            ProductionRow::from_csv(&text).and_then(|r| import::import_production(&cfg, r))
        }
        ImportKind::Consumption => {
            ConsumptionRow::from_csv(&text).and_then(|r| import::import_consumption(&cfg, r))
        }
    };
    let s = result.map_err(|e| anyhow!("{}: {e}", file.display()))?;
    Ok(format!(
        "{}: {} rows, {} written, {} already in the store\n",
        file.display(),
        s.rows,
        s.written,
        s.skipped
    ))
}

/// `energy-gateway report --config CONFIG --period P --format F [--lang L] [--output FILE]
/// [--no-store]`
pub fn report(
    config: &Path,
    period: &str,
    format: &str,
    lang: &str,
    output: Option<&Path>,
    store: bool,
) -> Result<String> {
    let period: Period = period.parse().map_err(anyhow::Error::msg)?;
    let format: Format = format.parse().map_err(anyhow::Error::msg)?;
    let lang: Lang = lang.parse().map_err(anyhow::Error::msg)?;
    let cfg = load_config(config)?.accounting_context();
    let r = build(&cfg, period, store)?;
    let text = match format {
        Format::Json => json::render(&r),
        Format::Csv => super::csv::render(&r, lang),
        Format::Html => super::html::render(&r, lang),
        Format::Md => super::markdown::render(&r, lang),
        Format::Lp => super::park::account_lines(&r, cfg.site.park.as_deref()),
    };
    write_or_return(text, output, &r.period)
}

fn write_or_return(text: String, output: Option<&Path>, what: &str) -> Result<String> {
    match output {
        None => Ok(text),
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?;
            Ok(format!("{}: report {what} written\n", p.display()))
        }
    }
}

/// `energy-gateway report --park --source influxdb --url URL --db DB --period P --format F`
pub fn park_report(
    url: &str,
    db: &str,
    period: &str,
    park: Option<&str>,
    format: &str,
    lang: &str,
    output: Option<&Path>,
) -> Result<String> {
    let p: Period = period.parse().map_err(anyhow::Error::msg)?;
    let format: Format = format.parse().map_err(anyhow::Error::msg)?;
    let lang: Lang = lang.parse().map_err(anyhow::Error::msg)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(anyhow!(
            "--url must start with http:// or https://, got \"{url}\""
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = rt.block_on(super::park::fetch(url, db, &p.to_string(), park))?;
    let text = super::park::render(&report, format, lang)?;
    write_or_return(text, output, &report.period)
}

/// `energy-gateway export monitoring --config CONFIG --period P --out DIR [--format json|csv]
/// [--codes FILE]`
pub fn export_monitoring(
    config: &Path,
    period: &str,
    out_dir: &Path,
    format: &str,
    codes: Option<&Path>,
) -> Result<String> {
    let period: Period = period.parse().map_err(anyhow::Error::msg)?;
    let cfg = load_config(config)?;
    let paths = super::monitoring::export(&cfg, period, codes, out_dir, format)?;
    Ok(paths.iter().map(|p| format!("{}\n", p.display())).collect())
}

/// `energy-gateway counter replace …`
pub fn counter_replace(
    config: &Path,
    device: &str,
    quantity: &str,
    time: &str,
    old_final: f64,
    new_initial: f64,
    note: Option<&str>,
) -> Result<String> {
    let cfg = load_config(config)?.accounting_context();
    let r = import::record_replacement(&cfg, device, quantity, time, old_final, new_initial, note)?;
    let tz: chrono_tz::Tz = cfg.site.timezone.parse().unwrap_or(chrono_tz::Tz::UTC);
    Ok(format!(
        "recorded: {device} {quantity} replaced at {}, old meter final {old_final}, new meter initial {new_initial}\n",
        rfc3339(tz, r.ts_ms)
    ))
}
