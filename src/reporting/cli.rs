//! The accounting commands (`import`, `report`, `counter`), as library functions that return the
//! text to print, so the command line stays a thin layer.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

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
    let cfg = load_config(config)?;
    let s = match kind {
        ImportKind::Readings => import::import_readings(&cfg, file)?,
        ImportKind::ValueAdded => import::import_value_added(&cfg, file)?,
        ImportKind::Production => import::import_production(&cfg, file)?,
        ImportKind::Consumption => import::import_consumption(&cfg, file)?,
    };
    Ok(format!(
        "{}: {} rows, {} written, {} already in the store\n",
        file.display(),
        s.rows,
        s.written,
        s.skipped
    ))
}

/// `energy-gateway report --config CONFIG --period P --format F [--output FILE] [--no-store]`
pub fn report(
    config: &Path,
    period: &str,
    format: &str,
    output: Option<&Path>,
    store: bool,
) -> Result<String> {
    let period: Period = period.parse().map_err(anyhow::Error::msg)?;
    let format: Format = format.parse().map_err(anyhow::Error::msg)?;
    let cfg = load_config(config)?;
    let r = build(&cfg, period, store)?;
    let text = match format {
        Format::Json => json::render(&r),
    };
    match output {
        None => Ok(text),
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?;
            Ok(format!("{}: report {} written\n", p.display(), r.period))
        }
    }
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
    let cfg = load_config(config)?;
    let r = import::record_replacement(&cfg, device, quantity, time, old_final, new_initial, note)?;
    let tz: chrono_tz::Tz = cfg.site.timezone.parse().unwrap_or(chrono_tz::Tz::UTC);
    Ok(format!(
        "recorded: {device} {quantity} replaced at {}, old meter final {old_final}, new meter initial {new_initial}\n",
        rfc3339(tz, r.ts_ms)
    ))
}
