//! The processing stage, between acquisition and the store writer: enforces the reading
//! invariants (normalised units, NaN never a number), keeps the latest good value of every
//! series, evaluates the alert rules (on readings, every second for silence and outbox fill,
//! and on intensity updates from the accounts) and hands readings and alert transitions to the
//! store writer. Readings dated by a clock that cannot be trusted are held ([`time_gate`]). It
//! uses `readings`, `clock`, `alerting` and `storage`; `pipeline` wires it.

pub mod metrics;
pub mod time_gate;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc;

use crate::acquisition::SourceBatch;
use crate::alerting::AlertEngine;
use crate::readings::Quantity;
use crate::storage::writer::{OutboxStatus, StoreCommand};
use crate::storage::Store;

/// The latest good value of every series seen since start.
pub use crate::readings::LatestValues;

/// Counters of the processing stage.
#[derive(Debug)]
pub struct ProcessingStats {
    pub readings: AtomicU64,
    pub bad_readings: AtomicU64,
    pub alert_events: AtomicU64,
    /// Alert rules firing after the last batch.
    pub alerts_firing: AtomicU64,
    /// Time from handing a batch to the store writer until it is committed (sampled about
    /// once a second).
    pub commit_latency: Histogram,
}

impl Default for ProcessingStats {
    fn default() -> Self {
        ProcessingStats {
            readings: AtomicU64::new(0),
            bad_readings: AtomicU64::new(0),
            alert_events: AtomicU64::new(0),
            alerts_firing: AtomicU64::new(0),
            commit_latency: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

/// Upper bounds, in seconds, of the buckets of the commit latency (and +Inf).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Alerts firing now, by rule id: the event that made each one fire.
pub type ActiveAlerts = Arc<Mutex<BTreeMap<String, crate::storage::AlertEvent>>>;

/// This month's intensity and the target path's, from the accounting service (for
/// `intensity` rules).
pub use crate::accounting::service::IntensityUpdate;

/// What the processing stage needs for alerting besides the readings.
pub struct AlertInputs {
    pub engine: AlertEngine,
    pub active: ActiveAlerts,
    /// Month intensity updates for `intensity` rules.
    pub intensity: mpsc::Receiver<IntensityUpdate>,
    pub outbox: OutboxFill,
}

/// How full the outbox is, for the outbox alert rule.
pub struct OutboxFill {
    pub status: Arc<OutboxStatus>,
    pub bounds: crate::storage::config::OutboxConfig,
}

impl OutboxFill {
    /// Percent of the tightest configured bound, or None when the outbox is unbounded.
    fn pct(&self) -> Option<f64> {
        let s = self.status.snapshot();
        let mut pct: Option<f64> = None;
        if self.bounds.max_rows > 0 {
            pct = Some(s.rows as f64 / self.bounds.max_rows as f64 * 100.0);
        }
        if self.bounds.max_bytes > 0 {
            let b = s.bytes as f64 / self.bounds.max_bytes as f64 * 100.0;
            pct = Some(pct.map_or(b, |p| p.max(b)));
        }
        pct
    }
}

/// The alert engine, restored from the store's alert history: a rule that was firing when the
/// gateway stopped is firing again, without a new notification.
pub fn alert_engine(
    rules: &[crate::alerting::AlertRule],
    synchronous: crate::storage::config::Synchronous,
    store_path: &std::path::Path,
    active: &ActiveAlerts,
) -> AlertEngine {
    let mut engine = AlertEngine::new(rules.to_vec(), crate::readings::now_ms());
    if engine.is_empty() {
        return engine;
    }
    match crate::alerting::notify::firing_rules(store_path) {
        Ok(firing) => {
            let firing: Vec<String> = firing
                .into_iter()
                .filter(|r| rules.iter().any(|a| &a.id == r))
                .collect();
            if !firing.is_empty() {
                tracing::info!(rules = ?firing, "alerts still firing from before the restart");
                if let Ok(events) =
                    Store::open(store_path, synchronous).and_then(|s| s.alert_events())
                {
                    let mut active = active.lock().unwrap_or_else(|p| p.into_inner());
                    for e in events
                        .into_iter()
                        .filter(|e| e.state == "firing" && firing.contains(&e.rule))
                    {
                        active.insert(e.rule.clone(), e);
                    }
                }
            }
            engine.restore_firing(&firing);
        }
        Err(e) => tracing::warn!("cannot read the alert history to restore firing alerts: {e}"),
    }
    engine
}

/// Records alert transitions: active set, log, store (the durable source of notifications).
/// Returns false when the store writer is gone.
async fn record_alerts(
    events: Vec<crate::storage::AlertEvent>,
    store: &mpsc::Sender<StoreCommand>,
    stats: &ProcessingStats,
    active: &ActiveAlerts,
    firing: usize,
) -> bool {
    if events.is_empty() {
        return true;
    }
    stats.alerts_firing.store(firing as u64, Ordering::Relaxed);
    for e in events {
        stats.alert_events.fetch_add(1, Ordering::Relaxed);
        {
            let mut active = active.lock().unwrap_or_else(|p| p.into_inner());
            match e.state {
                "firing" => {
                    active.insert(e.rule.clone(), e.clone());
                }
                "resolved" => {
                    active.remove(&e.rule);
                }
                _ => {}
            }
        }
        match e.state {
            "firing" => {
                tracing::warn!(rule = %e.rule, device = %e.device, severity = e.severity, "alert firing: {}", e.message)
            }
            "resolved" => {
                tracing::info!(rule = %e.rule, device = %e.device, "alert resolved: {}", e.message)
            }
            _ => {
                tracing::debug!(rule = %e.rule, device = %e.device, "alert pending: {}", e.message)
            }
        }
        if store.send(StoreCommand::Alert(e)).await.is_err() {
            return false;
        }
    }
    true
}

/// The processing stage: enforces the reading invariants, evaluates alerts (on readings, and
/// every second for silence and outbox state), keeps the latest values, and hands everything
/// to the store writer.
pub async fn process(
    mut rx: mpsc::Receiver<SourceBatch>,
    store: mpsc::Sender<StoreCommand>,
    latest: Arc<Mutex<LatestValues>>,
    stats: Arc<ProcessingStats>,
    inputs: AlertInputs,
    clock: Arc<crate::clock::Clock>,
) {
    let mut gate = time_gate::TimeGate::new(clock);
    let AlertInputs {
        engine: mut alerts,
        active,
        mut intensity,
        outbox,
    } = inputs;
    let mut last_latency_sample: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut closed = false;
    while !closed {
        let ready = tokio::select! {
            b = rx.recv(), if !gate.full() => match b {
                // An empty batch (the watchdog's probe) has nothing for the time gate to hold.
                Some(b) if b.readings.is_empty() => vec![b],
                Some(b) => {
                    let latest = latest.lock().unwrap_or_else(|p| p.into_inner());
                    gate.admit(b, &latest)
                }
                None => {
                    closed = true;
                    gate.drain_at_shutdown()
                }
            },
            Some((x, target)) = intensity.recv() => {
                let events = alerts.intensity(crate::readings::now_ms(), x, target);
                let firing = alerts.firing().len();
                if !record_alerts(events, &store, &stats, &active, firing).await {
                    return;
                }
                continue;
            }
            _ = tick.tick(), if !alerts.is_empty() || gate.holding() => {
                if !alerts.is_empty() {
                    let events = alerts.tick(crate::readings::now_ms(), outbox.pct());
                    let firing = alerts.firing().len();
                    if !record_alerts(events, &store, &stats, &active, firing).await {
                        return;
                    }
                }
                let latest = latest.lock().unwrap_or_else(|p| p.into_inner());
                gate.poll(&latest)
            }
        };
        for SourceBatch {
            readings: mut batch,
            mut ack,
        } in ready
        {
            let mut events = Vec::new();
            {
                let mut latest = latest.lock().unwrap_or_else(|p| p.into_inner());
                for r in &mut batch {
                    r.normalize();
                    match r.good_value() {
                        Some(v) => {
                            latest.insert(&r.device, r.quantity, r.ts_ms, v);
                        }
                        None => {
                            stats.bad_readings.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if !alerts.is_empty() {
                        events.extend(alerts.observe(r));
                    }
                }
            }
            stats
                .readings
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let firing = alerts.firing().len();
            if !record_alerts(events, &store, &stats, &active, firing).await {
                return;
            }
            // About once a second, a batch nobody else waits for carries an ack of our own: the
            // time until it is answered is the commit latency.
            if ack.is_none()
                && last_latency_sample.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let sent = std::time::Instant::now();
                last_latency_sample = Some(sent);
                ack = Some(tx);
                let stats = stats.clone();
                tokio::spawn(async move {
                    if rx.await.is_ok() {
                        stats.commit_latency.observe(sent.elapsed().as_secs_f64());
                    }
                });
            }
            if store
                .send(StoreCommand::Readings {
                    readings: batch,
                    ack,
                })
                .await
                .is_err()
            {
                tracing::error!("store writer is gone; processing stops");
                return;
            }
        }
    }
}

/// Sum of the latest active power of the site's main meters (`[site] main_meters`), in kW.
pub fn site_power(main_meters: &[String], latest: &Mutex<LatestValues>) -> Option<f64> {
    let latest = latest.lock().unwrap_or_else(|p| p.into_inner());
    let mut total = None;
    for m in main_meters {
        if let Some((_, v)) = latest.get(m, Quantity::ActivePower) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}
