//! Reports: renders the accounts that [`crate::accounting`] computes and persists
//! ([`crate::accounting::report`]; the model is re-exported here). Formats: [`json`], [`csv`],
//! [`html`], [`markdown`] (the last three from the same tables, [`tables`]); the park report is
//! [`park`], the online-monitoring export [`monitoring`], the accounting commands [`cli`].

pub mod cli;
pub mod cover;
pub mod csv;
pub mod html;
pub mod json;
pub mod labels;
pub mod markdown;
pub mod monitoring;
pub mod notes;
pub mod park;
pub mod rounding;
pub mod tables;

pub use crate::accounting::alert_summary as alerts;
pub use crate::accounting::indicators;
pub use crate::accounting::report::*;

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Html,
    Md,
    /// InfluxDB line protocol of the period's accounts (measurement `energy_account`, see
    /// [`park`]), for a gateway to send to the park's central InfluxDB.
    Lp,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "html" => Ok(Format::Html),
            "md" | "markdown" => Ok(Format::Md),
            "lp" => Ok(Format::Lp),
            other => Err(format!(
                "unknown format \"{other}\"; available: json, csv, html, md, lp"
            )),
        }
    }
}
