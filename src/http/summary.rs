//! Today's energy and tce, and this month's account against the target path, for the live page
//! and `/api/v1/status`.
//!
//! Both come from the store through the accounting module ([`crate::accounting`],
//! [`crate::reporting`]), which reads counters and builds 15-minute intervals: too much work
//! for every poll of the page. So they are computed on a blocking thread when asked for and
//! older than their time to live, and the answer carries what was last computed (nothing on
//! the very first call). Nobody looking costs nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::TimeZone as _;
use serde::Serialize;

use super::{GatewayView, Shared};
use crate::accounting::calendar::{local_midnight_ms, month_of, Period};
use crate::accounting::ledger::{ledger, load_range, Inputs, Plan};
use crate::accounting::store::AccountingStore;
use crate::config::{Config, Synchronous};
use crate::readings::Quantity;
use crate::storage::Store;

/// How long today's figures are reused.
const TODAY_TTL: Duration = Duration::from_secs(30);
/// How long the month's account is reused (it reads the whole month).
const MONTH_TTL: Duration = Duration::from_secs(300);
/// How long an incomplete answer (no counter read yet) is reused.
const INCOMPLETE_TTL: Duration = Duration::from_secs(2);

/// Energy used today (site time zone), from midnight to now.
#[derive(Debug, Clone, Serialize)]
pub struct Today {
    /// Local date, `YYYY-MM-DD`.
    pub date: String,
    /// Energy imported by the main meters (`[site] main_meters`, counter `energy_import`).
    pub energy_kwh: Option<f64>,
    /// Gross comprehensive energy consumption (equivalent value) of every accounted carrier,
    /// from the meters only (manual consumption is monthly).
    pub tce: Option<f64>,
    /// Electricity consumed according to the accounts (purchase + generation − export).
    pub electricity_kwh: Option<f64>,
    /// RFC 3339 time of the computation.
    pub computed_at: String,
}

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
    pub computed_at: String,
}

#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    error: Option<String>,
    at: Option<Instant>,
    running: bool,
    generation: u64,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            value: None,
            error: None,
            at: None,
            running: false,
            generation: 0,
        }
    }
}

/// The cached figures.
#[derive(Debug, Default)]
pub struct Cache {
    today: Mutex<Slot<Today>>,
    month: Mutex<Slot<MonthSummary>>,
    generation: std::sync::atomic::AtomicU64,
}

/// What the status answer shows of the accounts.
#[derive(Debug, Clone, Serialize)]
pub struct AccountsSnapshot {
    pub today: Option<Today>,
    pub today_error: Option<String>,
    pub month: Option<MonthSummary>,
    pub month_error: Option<String>,
}

impl Cache {
    /// Forgets everything (the configuration changed).
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.today.lock().unwrap_or_else(|p| p.into_inner()) = Slot::default();
        *self.month.lock().unwrap_or_else(|p| p.into_inner()) = Slot::default();
    }
}

/// The cached figures, starting a refresh of those that are stale.
pub fn snapshot(shared: &Arc<Shared>, gw: &GatewayView) -> AccountsSnapshot {
    refresh_if_stale(
        shared,
        &gw.config,
        |c| &c.today,
        TODAY_TTL,
        compute_today,
        |t| t.energy_kwh.is_some(),
    );
    refresh_if_stale(
        shared,
        &gw.config,
        |c| &c.month,
        MONTH_TTL,
        compute_month,
        |_| true,
    );
    let c = &shared.summary;
    let t = c.today.lock().unwrap_or_else(|p| p.into_inner());
    let m = c.month.lock().unwrap_or_else(|p| p.into_inner());
    AccountsSnapshot {
        today: t.value.clone(),
        today_error: t.error.clone(),
        month: m.value.clone(),
        month_error: m.error.clone(),
    }
}

fn refresh_if_stale<T: Send + 'static>(
    shared: &Arc<Shared>,
    cfg: &Arc<Config>,
    slot: fn(&Cache) -> &Mutex<Slot<T>>,
    ttl: Duration,
    compute: fn(&Config) -> anyhow::Result<T>,
    complete: fn(&T) -> bool,
) {
    let generation = shared
        .summary
        .generation
        .load(std::sync::atomic::Ordering::Relaxed);
    {
        let mut s = slot(&shared.summary)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let fresh = s.at.is_some_and(|t| t.elapsed() < ttl);
        if fresh || s.running {
            return;
        }
        s.running = true;
        s.generation = generation;
    }
    let shared = shared.clone();
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let r = compute(&cfg);
        let mut s = slot(&shared.summary)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if s.generation != generation {
            return; // reloaded meanwhile: this answer is for another configuration
        }
        s.running = false;
        s.at = Some(Instant::now());
        match r {
            Ok(v) => {
                // Just after start the counters may not have been read yet: look again soon.
                if !complete(&v) {
                    s.at = Instant::now().checked_sub(ttl.saturating_sub(INCOMPLETE_TTL));
                }
                s.value = Some(v);
                s.error = None;
            }
            Err(e) => {
                tracing::debug!("accounts for the live page: {e:#}");
                s.error = Some(format!("{e:#}"));
            }
        }
    });
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Today's figures, from midnight (site time zone) to now.
pub fn compute_today(cfg: &Config) -> anyhow::Result<Today> {
    let tz: chrono_tz::Tz = cfg
        .site
        .timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("site.timezone is not a time zone"))?;
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let date = now.with_timezone(&tz).date_naive();
    let midnight = local_midnight_ms(tz, date);

    let store = Store::open(&cfg.store_path(), Synchronous::Normal)?;
    let mut energy = None;
    for m in &cfg.site.main_meters {
        let first = store.first_good_since(m, Quantity::EnergyImport, midnight)?;
        let last = store.latest_good(m, Quantity::EnergyImport)?;
        if let (Some(a), Some(b)) = (first, last) {
            *energy.get_or_insert(0.0) += (b.1 - a.1).max(0.0);
        }
    }
    drop(store);

    let plan = Plan::build(cfg)?;
    let acc = AccountingStore::open(&cfg.store_path())?;
    let data = load_range(&plan, &acc, midnight, now_ms + 1)?;
    // The ledger of this month over data that covers only today is today's ledger. Manual
    // consumption is monthly and so left out (`Inputs::default()`).
    let l = ledger(&plan, &data, &Inputs::default(), &[month_of(tz, now_ms)]);
    let measured = !plan.meters.is_empty();
    Ok(Today {
        date: date.format("%Y-%m-%d").to_string(),
        energy_kwh: energy,
        tce: measured.then_some(l.gross_tce),
        electricity_kwh: measured.then_some(l.electricity.consumed_kwh),
        computed_at: now_rfc3339(),
    })
}

/// This month's account (the report of the current month, not written to the store).
pub fn compute_month(cfg: &Config) -> anyhow::Result<MonthSummary> {
    let tz: chrono_tz::Tz = cfg
        .site
        .timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("site.timezone is not a time zone"))?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let month = month_of(tz, now_ms);
    let r = crate::reporting::build(cfg, Period::Month(month), false)?;
    let base = r.baseline.intensity_tce_per_10k_cny;
    Ok(MonthSummary {
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
        notes: r.data_quality.notes.iter().take(5).cloned().collect(),
        computed_at: now_rfc3339(),
    })
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
