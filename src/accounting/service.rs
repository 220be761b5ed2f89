//! The accounting service of `energy-gateway run`: the gateway keeps its books while it runs.
//!
//! One task owns the compute and the persistence of the accounts:
//!
//! - **closing intervals**: each 15-minute interval is closed when it has ended plus
//!   `[accounting.service] interval_grace` (room for late readings of the devices). Then the
//!   month in progress is computed over its closed intervals ("data to 10:15") and written to
//!   the store: `energy_intervals` (15 min, hour, day) and `accounts`, each row with the
//!   revision of the write that last changed it. Rows that did not change keep their revision,
//!   so a recompute sends nothing new.
//! - **quarter and year**: the quarter and the year in progress are recomputed at every full
//!   hour, and like every period once more at their end, which gives their final accounts.
//! - **incremental**: the service keeps the counters' complete hours, days and months as
//!   aggregates ([`super::chunks`]); a cycle reads from the store only the hour in progress (and
//!   what late readings changed), a day is merged from its hours, a month from its days, and a
//!   year is the sum of its months. Only the intervals read in a cycle are written again.
//! - **late readings**: every `republish_every` (and at each close) the service looks at the
//!   readings committed since its last look. Readings inside an interval it had already closed
//!   (a meter's backlog after an outage, `import readings`) and newly recorded meter
//!   replacements make it recompute the months (and their quarter and year) they fall in: the
//!   changed intervals and accounts get a new revision.
//! - **delivery**: the InfluxDB outputs send every row whose revision is newer than what they
//!   sent (measurements `energy_interval` and `energy_account`, same series and timestamp, so a
//!   new revision overwrites); the MQTT indicators carry the month's accounts and are published
//!   as soon as they change.
//! - **one source of truth**: the live page, `/api/v1/status`, `/api/v1/accounts/{period}` (for
//!   the periods it holds), the `intensity` alert rules and the MQTT indicators read what this
//!   service holds; nothing else in `run` computes a period.
//!
//! The compute of a period is [`compute`], the one function to repoint when it moves.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::calendar::{month_of, slot_start, Month, Period, SLOT_MS};
use super::chunks::ChunkCache;
use super::config::AccountingContext;
use super::report::Report;
use super::today::Today;
use crate::storage::accounts::AccountsStore;

/// `[accounting.service]`: the cadence of the accounting service of `run`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// false: `run` keeps no books (accounts only from `energy-gateway report`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long after its end an interval is closed (late readings of the devices).
    #[serde(default = "default_grace", with = "crate::units::duration")]
    pub interval_grace: Duration,
    /// How often, besides each close, the service looks for late readings and recomputes (and
    /// so republishes) what they changed, and refreshes today's figures.
    #[serde(default = "default_republish", with = "crate::units::duration")]
    pub republish_every: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            enabled: true,
            interval_grace: default_grace(),
            republish_every: default_republish(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_grace() -> Duration {
    Duration::from_secs(60)
}
fn default_republish() -> Duration {
    Duration::from_secs(300)
}

/// This month's intensity and the target path's, both tce per 10⁴ CNY (for `intensity` rules).
pub type IntensityUpdate = (Option<f64>, Option<f64>);

/// What the service holds: the latest accounts of the periods in progress.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// Today's figures (from midnight to the last look, site time zone).
    pub today: Option<Today>,
    pub today_error: Option<String>,
    /// The month of the last closed interval.
    pub month: Option<Arc<Report>>,
    pub month_error: Option<String>,
    /// When `month` was computed (RFC 3339).
    pub month_computed_at: Option<String>,
    /// The latest report of each period computed for the current month, quarter and year, by
    /// period name (`2026-11`, `2026-Q4`, `2026`).
    pub reports: BTreeMap<String, Arc<Report>>,
    /// End of the last closed interval.
    pub closed_to_ms: Option<i64>,
    /// Highest revision of the stored accounts.
    pub revision: Option<i64>,
    /// Service cycles run, and the time the last took.
    pub cycles: u64,
    pub last_cycle: Option<Duration>,
    /// Recompute requests answered (see [`Accounts::recompute`]).
    pub served: u64,
}

/// The service's state, shared with the HTTP server and the MQTT indicators.
#[derive(Debug)]
pub struct Accounts {
    held: RwLock<Held>,
    changed: watch::Sender<u64>,
    /// Inputs changed (an import through the API): recompute the periods in progress. The
    /// number of such requests; `Held::served` is the number the last cycle answered.
    requested: AtomicU64,
    wake: Notify,
    /// Time each cycle took (those that ended with an answer, complete or not).
    pub cycle_seconds: Histogram,
    /// Cycles that failed (the store could not be read or written).
    pub cycle_failures: AtomicU64,
}

/// Upper bounds, in seconds, of the buckets of [`Accounts::cycle_seconds`] (and +Inf).
pub const CYCLE_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

impl Default for Accounts {
    fn default() -> Self {
        Accounts {
            held: RwLock::new(Held::default()),
            changed: watch::channel(0).0,
            requested: AtomicU64::new(0),
            wake: Notify::new(),
            cycle_seconds: Histogram::new(CYCLE_BUCKETS),
            cycle_failures: AtomicU64::new(0),
        }
    }
}

impl Accounts {
    /// Asks the service to recompute the month, quarter and year in progress now (their
    /// inputs changed: value added, production or consumption imported), and waits (at most
    /// `limit`) until it has, so what the caller reads next includes the change. False when
    /// it did not answer in time.
    pub async fn recompute(&self, limit: Duration) -> bool {
        let n = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut changed = self.changed.subscribe();
        self.wake.notify_one();
        let wait = async {
            loop {
                if self.held().served >= n {
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// A copy of what the service holds.
    pub fn held(&self) -> Held {
        self.held.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The held report of a period, if the service computed it.
    pub fn report(&self, period: &str) -> Option<Arc<Report>> {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .reports
            .get(period)
            .cloned()
    }

    /// Changes whenever the held accounts change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut Held)) {
        f(&mut self.held.write().unwrap_or_else(|p| p.into_inner()));
        self.changed.send_modify(|g| *g += 1);
    }
}

/// The compute of one period as it stands at `as_of` (with `write`, persisted with revisions).
/// The only place the service computes a period.
pub fn compute(cfg: &AccountingContext, period: Period, write: bool, as_of: i64) -> Result<Report> {
    super::report::build_as_of(cfg, period, write, as_of)
}

/// [`compute`] with the service's chunks: a cycle reads from the store only the hour in
/// progress and what changed since ([`ChunkCache`]).
fn compute_with(
    cfg: &AccountingContext,
    period: Period,
    as_of: i64,
    cache: &mut ChunkCache,
) -> Result<Report> {
    super::report::build_with(cfg, period, true, as_of, Some(cache))
}

/// This month's intensity and the intensity the target path allows, from a month's report.
/// The year to date on the baseline's basis at comparable prices, against the path's value for
/// the year: like with like (803号), and never one month judged against an annual path.
pub fn intensity_update(r: &Report) -> IntensityUpdate {
    let target = r
        .baseline
        .intensity_tce_per_10k_cny
        .map(|b| b * (1.0 + r.progress.path_change_pct / 100.0));
    (r.progress.ytd_intensity_tce_per_10k_cny, target)
}

/// Where the service stands between cycles.
struct Tracker {
    store: AccountsStore,
    /// Last reading id looked at.
    reading_id: i64,
    /// Latest replacement record looked at.
    replacement_ms: i64,
    /// End of the last closed interval.
    closed_end: Option<i64>,
    /// Late readings of a cycle that failed, for the next one.
    pending_late: Option<i64>,
    /// Quarters and years left from the first cycle for the next one, so that the month and
    /// today are there soon after start (a year takes far longer than a month).
    long_due: Vec<Period>,
    /// Complete months, days and hours of the counters, kept between cycles.
    cache: ChunkCache,
}

impl Tracker {
    fn open(cfg: &AccountingContext) -> Result<Tracker> {
        let path = cfg.store_path();
        // Creates the store and its tables when missing.
        let store = AccountsStore::open(&path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        let mut t = Tracker {
            store,
            reading_id: 0,
            replacement_ms: 0,
            closed_end: None,
            pending_late: None,
            long_due: Vec::new(),
            cache: ChunkCache::default(),
        };
        t.reading_id = t.store.last_reading_id()?;
        t.replacement_ms = t.store.last_replacement_recorded_ms()?;
        Ok(t)
    }

    /// The earliest instant touched by readings committed and replacements recorded since the
    /// last look.
    fn changes_since_last_look(&mut self) -> Result<Option<i64>> {
        let (min_ts, max_id) = self.store.committed_after(self.reading_id)?;
        if let Some(id) = max_id {
            self.reading_id = id;
        }
        let (rep_ts, rep_ms) = self
            .store
            .replacements_recorded_after(self.replacement_ms)?;
        if let Some(ms) = rep_ms {
            self.replacement_ms = ms;
        }
        Ok(match (min_ts, rep_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn revision(&self) -> Result<Option<i64>> {
        Ok(self.store.accounts_revision()?)
    }
}

fn quarter_of(m: Month) -> Period {
    Period::Quarter {
        year: m.year,
        quarter: m.quarter(),
    }
}

fn push(periods: &mut Vec<Period>, p: Period) {
    if !periods.contains(&p) {
        periods.push(p);
    }
}

/// The periods one cycle computes, in order (months first, so a quarter or year is computed
/// after its months).
fn periods_due(
    tz: chrono_tz::Tz,
    previous_end: Option<i64>,
    closed_end: i64,
    late_from: Option<i64>,
) -> Vec<Period> {
    let current = month_of(tz, closed_end - 1);
    let mut months = vec![current];
    match previous_end {
        // At start: the month before too, so a restart across a month's end finalises it.
        None => months.insert(0, month_of(tz, current.bounds(tz).0 - 1)),
        Some(prev) => {
            // Late readings (or a long pause of the service): every month from theirs on.
            let from = late_from.map_or(prev, |l| l.min(prev));
            let mut m = month_of(tz, (from - 1).min(closed_end - 1));
            while m < current {
                months.push(m);
                m = m.next();
            }
        }
    }
    months.sort();
    months.dedup();
    let mut periods: Vec<Period> = months.iter().map(|m| Period::Month(*m)).collect();
    let hourly = previous_end.is_none_or(|p| p / 3_600_000 != closed_end / 3_600_000);
    for m in &months {
        if hourly || *m != current || late_from.is_some() {
            push(&mut periods, quarter_of(*m));
            push(&mut periods, Period::Year(m.year));
        }
    }
    periods
}

/// One cycle: what closed or changed since the last, computed and persisted.
fn cycle(
    cfg: &AccountingContext,
    t: &mut Tracker,
    now: i64,
    grace: Duration,
    force: bool,
) -> Result<CycleOut> {
    let tz: chrono_tz::Tz = cfg
        .site
        .timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("site.timezone is not a time zone"))?;
    let closed_end = slot_start(now - grace.as_millis() as i64);
    let changed_from = t.changes_since_last_look()?;
    // Readings before the last closed interval's end arrived after it was closed.
    let late_from = match t.closed_end {
        Some(prev) => changed_from.filter(|ts| *ts < prev),
        None => None,
    };
    let late_from = match (late_from, t.pending_late.take()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let new_interval = t.closed_end.is_none_or(|prev| closed_end > prev);
    let mut out = CycleOut {
        closed_end,
        ..CycleOut::default()
    };
    let long_due = std::mem::take(&mut t.long_due);
    if new_interval || late_from.is_some() || force || !long_due.is_empty() {
        let mut periods = periods_due(tz, t.closed_end, closed_end, late_from);
        if t.closed_end.is_none() && !force {
            // The first cycle: months first; their quarters and years in the next cycle.
            t.long_due = periods
                .iter()
                .filter(|p| !matches!(p, Period::Month(_)))
                .copied()
                .collect();
            periods.retain(|p| matches!(p, Period::Month(_)));
        }
        for p in long_due {
            push(&mut periods, p);
        }
        if force {
            let m = month_of(tz, closed_end - 1);
            push(&mut periods, quarter_of(m));
            push(&mut periods, Period::Year(m.year));
        }
        if let Some(l) = late_from {
            // What the late readings can change: from the start of their month on (a gap
            // bridged by them reaches back to the reading before).
            t.cache
                .invalidate_from(month_of(tz, l.saturating_sub(1)).bounds(tz).0);
        }
        t.cache.settle(closed_end);
        let current = Period::Month(month_of(tz, closed_end - 1));
        let mut failed = false;
        for p in periods {
            let r = compute_with(cfg, p, closed_end, &mut t.cache);
            failed |= r.is_err();
            if p == current {
                out.month = Some(r.as_ref().map_err(|e| format!("{e:#}")).cloned());
            }
            match r {
                Ok(r) => {
                    out.reports.push((p.to_string(), Arc::new(r)));
                }
                Err(e) => tracing::warn!(period = %p, "accounting service: {e:#}"),
            }
        }
        if let Some(l) = late_from {
            tracing::info!(
                from = %crate::accounting::calendar::rfc3339(tz, l),
                "accounting service: late readings, accounts recomputed"
            );
        }
        // After a failure (the store busy, a disk error) the close is tried again next time.
        if failed {
            t.pending_late = late_from;
            // Kept chunks may be newer than the close the next cycle starts from.
            t.cache.clear();
        } else {
            t.closed_end = Some(closed_end);
        }
    }
    out.today =
        Some(super::today::compute_today(cfg, Some(&mut t.cache)).map_err(|e| format!("{e:#}")));
    out.revision = t.revision()?;
    Ok(out)
}

#[derive(Default)]
struct CycleOut {
    closed_end: i64,
    month: Option<std::result::Result<Report, String>>,
    reports: Vec<(String, Arc<Report>)>,
    today: Option<std::result::Result<Today, String>>,
    revision: Option<i64>,
}

/// How soon a cycle follows one that left something undone, for the first cycles after start.
const RETRY_SOON: Duration = Duration::from_secs(2);
const START_RETRIES: u64 = 30;

/// Runs the service until `cancel`: a cycle at start, at each interval's end plus the grace,
/// and every `republish_every`.
pub async fn run(
    cfg: Arc<AccountingContext>,
    state: Arc<Accounts>,
    intensity: Option<mpsc::Sender<IntensityUpdate>>,
    cancel: CancellationToken,
) {
    let sc = cfg.accounting.service.clone();
    let c = cfg.clone();
    let tracker = match tokio::task::spawn_blocking(move || Tracker::open(&c)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::error!("accounting service not started: {e:#}");
            return;
        }
        Err(e) => {
            tracing::error!("accounting service not started: {e}");
            return;
        }
    };
    let tracker = Arc::new(std::sync::Mutex::new(tracker));
    let mut iteration = 0u64;
    loop {
        let started = Instant::now();
        let (c, t) = (cfg.clone(), tracker.clone());
        let grace = sc.interval_grace;
        let requested = state.requested.load(Ordering::SeqCst);
        let force = requested > state.held().served;
        let job = tokio::task::spawn_blocking(move || {
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            cycle(&c, &mut t, crate::readings::now_ms(), grace, force)
        });
        // A cycle under way finishes on its own thread (its writes are one transaction each).
        let res = tokio::select! {
            _ = cancel.cancelled() => return,
            r = job => r,
        };
        let spent = started.elapsed();
        match res {
            Ok(Ok(out)) => {
                let update = match &out.month {
                    Some(Ok(r)) => Some(intensity_update(r)),
                    _ => None,
                };
                apply(&state, out, spent, requested);
                if let (Some(tx), Some(u)) = (&intensity, update) {
                    if tx.send(u).await.is_err() {
                        tracing::debug!("intensity rules gone");
                    }
                }
            }
            Ok(Err(e)) => {
                state.cycle_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("accounting service: {e:#}")
            }
            Err(e) => {
                state.cycle_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("accounting service: {e}")
            }
        }
        // Next: the next close, or the next look for late readings.
        let now = crate::readings::now_ms();
        let grace_ms = sc.interval_grace.as_millis() as i64;
        let next_close = slot_start(now - grace_ms) + SLOT_MS + grace_ms;
        let until_close = Duration::from_millis((next_close - now).max(0) as u64);
        let mut wait = until_close.min(sc.republish_every.max(Duration::from_millis(200)));
        // Soon again, in the first minute after start, while the last cycle failed, quarters and
        // years wait from the first cycle, or today has no figure yet (the first readings were
        // not committed when the cycle ran). Later, the normal cadence.
        let h = state.held();
        iteration += 1;
        let starting = iteration <= START_RETRIES;
        let unfinished = h.today.as_ref().is_none_or(|t| t.energy_kwh.is_none())
            || h.month.is_none()
            || tracker
                .lock()
                .map(|t| !t.long_due.is_empty() || t.closed_end.is_none())
                .unwrap_or(false);
        if starting && unfinished && !cfg.site.main_meters.is_empty() {
            wait = wait.min(RETRY_SOON);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = state.wake.notified() => {}
        }
    }
}

fn apply(state: &Accounts, out: CycleOut, spent: Duration, requested: u64) {
    state.cycle_seconds.observe(spent.as_secs_f64());
    state.update(|h| {
        h.cycles += 1;
        h.served = h.served.max(requested);
        h.last_cycle = Some(spent);
        h.closed_to_ms = Some(out.closed_end);
        h.revision = out.revision;
        match out.today {
            Some(Ok(t)) => {
                h.today = Some(t);
                h.today_error = None;
            }
            Some(Err(e)) => h.today_error = Some(e),
            None => {}
        }
        match out.month {
            Some(Ok(r)) => {
                h.month = Some(Arc::new(r));
                h.month_error = None;
                h.month_computed_at = Some(super::today::now_rfc3339());
            }
            Some(Err(e)) => h.month_error = Some(e),
            None => {}
        }
        for (p, r) in out.reports {
            h.reports.insert(p, r);
        }
        // Keep the periods in progress and the last ended ones only.
        while h.reports.len() > 8 {
            let oldest = h
                .reports
                .iter()
                .min_by_key(|(_, r)| r.from.clone())
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => h.reports.remove(&k),
                None => break,
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn periods_at_start_include_the_previous_month() {
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        let p = periods_due(tz, None, ms("2026-11-30T10:15:00+08:00"), None);
        let names: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["2026-10", "2026-11", "2026-Q4", "2026"]);
    }

    #[test]
    fn a_close_inside_the_hour_computes_the_month_only() {
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        let p = periods_due(
            tz,
            Some(ms("2026-11-30T10:15:00+08:00")),
            ms("2026-11-30T10:30:00+08:00"),
            None,
        );
        assert_eq!(p, [Period::Month(Month::new(2026, 11).unwrap())]);
        // The hour's end: quarter and year too.
        let p = periods_due(
            tz,
            Some(ms("2026-11-30T10:45:00+08:00")),
            ms("2026-11-30T11:00:00+08:00"),
            None,
        );
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn late_readings_recompute_their_months() {
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        let p = periods_due(
            tz,
            Some(ms("2026-12-01T10:15:00+08:00")),
            ms("2026-12-01T10:15:00+08:00"),
            Some(ms("2026-09-30T23:00:00+08:00")),
        );
        let names: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            names,
            ["2026-09", "2026-10", "2026-11", "2026-12", "2026-Q3", "2026", "2026-Q4"]
        );
    }

    #[test]
    fn the_month_end_finalises_the_month() {
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        // The close at midnight computes November over all its intervals (its end).
        let end = ms("2026-12-01T00:00:00+08:00");
        let p = periods_due(tz, Some(ms("2026-11-30T23:45:00+08:00")), end, None);
        assert_eq!(p[0], Period::Month(Month::new(2026, 11).unwrap()));
        assert_eq!(p.len(), 3);
    }
}
