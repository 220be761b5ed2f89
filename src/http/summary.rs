//! Today's energy and tce, and this month's account against the target path, for the live page
//! and `/api/v1/status`.
//!
//! Both are what the accounting service of `run` holds ([`crate::accounting::service`]): it
//! computes them when an interval closes and every `[accounting.service] republish_every`, so a
//! look at the page computes nothing.

use std::sync::Arc;

use chrono::TimeZone as _;
use serde::Serialize;

use super::GatewayView;
pub use crate::accounting::today::{compute_today, Today};
use crate::config::Config;
use crate::reporting::Report;

/// This month's account against the intensity target path.
#[derive(Debug, Clone, Serialize)]
pub struct MonthSummary {
    /// `YYYY-MM`.
    pub period: String,
    pub comprehensive_energy_tce: f64,
    pub assessment_energy_tce: f64,
    pub value_added_10k_cny: Option<f64>,
    /// Energy intensity of the month (tce per 10⁴ CNY of value added).
    pub intensity_tce_per_10k_cny: Option<f64>,
    /// `comparable` or `current` prices.
    pub intensity_basis: &'static str,
    pub baseline_year: i32,
    pub baseline_intensity_tce_per_10k_cny: Option<f64>,
    /// The cumulative change the target path allows this year (percent, negative = reduction).
    pub path_change_pct: f64,
    /// The intensity the path allows this year: baseline × (1 + path change).
    pub target_path_intensity_tce_per_10k_cny: Option<f64>,
    /// Change of the month's intensity against the baseline (percent).
    pub change_vs_baseline_pct: Option<f64>,
    pub on_track: Option<bool>,
    pub completeness_pct: f64,
    /// The report's notes (what is missing and why), at most five.
    pub notes: Vec<String>,
    /// The month is in progress: its accounts cover its closed intervals up to `data_to`.
    pub in_progress: bool,
    pub data_to: Option<String>,
    /// Revision of the stored accounts when this was computed.
    pub revision: Option<i64>,
    pub computed_at: String,
}

/// What the status answer shows of the accounts.
#[derive(Debug, Clone, Serialize)]
pub struct AccountsSnapshot {
    pub today: Option<Today>,
    pub today_error: Option<String>,
    pub month: Option<MonthSummary>,
    pub month_error: Option<String>,
    /// The accounting service: cycles run, the time the last one took, the end of the last
    /// closed interval (RFC 3339) and the highest revision of the stored accounts.
    pub service: ServiceState,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceState {
    pub cycles: u64,
    pub last_cycle_ms: Option<f64>,
    pub closed_to: Option<String>,
    pub revision: Option<i64>,
}

/// What the accounting service holds now.
pub fn snapshot(gw: &GatewayView) -> AccountsSnapshot {
    let h = gw.accounts.held();
    AccountsSnapshot {
        today: h.today.clone(),
        today_error: h.today_error.clone(),
        month: h
            .month
            .as_ref()
            .map(|r| month_summary(r, h.revision, h.month_computed_at.clone())),
        month_error: h.month_error.clone(),
        service: ServiceState {
            cycles: h.cycles,
            last_cycle_ms: h.last_cycle.map(|d| d.as_secs_f64() * 1000.0),
            closed_to: h.closed_to_ms.map(|t| local_rfc3339(&gw.config, t)),
            revision: h.revision,
        },
    }
}

fn month_summary(r: &Arc<Report>, revision: Option<i64>, at: Option<String>) -> MonthSummary {
    let base = r.baseline.intensity_tce_per_10k_cny;
    MonthSummary {
        period: r.period.clone(),
        comprehensive_energy_tce: r.comprehensive_energy_tce,
        assessment_energy_tce: r.assessment_energy_tce,
        value_added_10k_cny: r.value_added_10k_cny,
        intensity_tce_per_10k_cny: r.intensity_tce_per_10k_cny,
        intensity_basis: r.intensity_basis,
        baseline_year: r.baseline.year,
        baseline_intensity_tce_per_10k_cny: base,
        path_change_pct: r.target.path_change_pct,
        target_path_intensity_tce_per_10k_cny: base
            .map(|b| b * (1.0 + r.target.path_change_pct / 100.0)),
        change_vs_baseline_pct: r.change_vs_baseline_pct,
        on_track: r.on_track,
        completeness_pct: r.data_quality.completeness_pct,
        notes: r
            .data_quality
            .notes
            .iter()
            .take(5)
            .map(ToString::to_string)
            .collect(),
        in_progress: r.in_progress,
        data_to: r.data_to.clone(),
        revision,
        computed_at: at.unwrap_or_default(),
    }
}

/// Local time of a timestamp in the site's zone, RFC 3339 (UTC when the zone is unknown).
pub fn local_rfc3339(cfg: &Config, ts_ms: i64) -> String {
    match cfg.site.timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => crate::accounting::calendar::rfc3339(tz, ts_ms),
        Err(_) => chrono::Utc
            .timestamp_millis_opt(ts_ms)
            .single()
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default(),
    }
}
