//! The pipeline wires the stages together, in the one direction data flows:
//!
//! ```text
//! acquisition (one task per device) ──► processing (readings checked, alerts evaluated)
//!     ──► storage writer (group commit to SQLite) ──► outputs (each drains the store by cursor)
//! ```
//!
//! Stages are joined by bounded channels: when a later stage is slow, earlier ones wait.
//! Shutdown runs front to back: sources stop, what they produced is processed and committed,
//! then outputs get a short grace period to deliver what is committed. Anything not delivered
//! stays in the store and goes out after the next start.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::acquisition::modbus;
use crate::acquisition::mqtt::{MqttSource, MqttStats};
use crate::acquisition::{DeviceRegistry, SourceBatch};
use crate::alerting::AlertEngine;
use crate::config::Config;
use crate::outputs::influxdb::{InfluxOutput, OutputStatus};
use crate::outputs::mqtt::{MqttOutbox, MqttOutput, MqttOutputStats};
use crate::readings::{Quantity, TimestampMs};
use crate::storage::writer::{self, OutboxStatus, StoreCommand, WriterOptions, WriterStats};
use crate::storage::Store;

/// How long outputs may keep delivering after shutdown was asked for.
pub const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The latest good value of every series seen since start.
pub type LatestValues = HashMap<(String, Quantity), (TimestampMs, f64)>;

/// Counters of the processing stage.
#[derive(Debug, Default)]
pub struct ProcessingStats {
    pub readings: AtomicU64,
    pub bad_readings: AtomicU64,
    pub alert_events: AtomicU64,
    /// Alert rules firing after the last batch.
    pub alerts_firing: AtomicU64,
    /// Time from handing a batch to the store writer until it is committed (sampled about
    /// once a second).
    pub commit_latency: LatencyStats,
}

/// Upper bounds, in seconds, of the buckets of [`LatencyStats`] (the last one is +Inf).
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    f64::INFINITY,
];

/// A latency histogram in atomics: observations per bucket of [`LATENCY_BUCKETS`] (not
/// cumulative), their count and their sum.
#[derive(Debug, Default)]
pub struct LatencyStats {
    pub buckets: [AtomicU64; 13],
    pub count: AtomicU64,
    pub sum_us: AtomicU64,
}

impl LatencyStats {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len() - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Alerts firing now, by rule id: the event that made each one fire.
pub type ActiveAlerts = Arc<Mutex<BTreeMap<String, crate::storage::AlertEvent>>>;

/// A started gateway. Call [`RunningGateway::shutdown`] to stop it cleanly.
pub struct RunningGateway {
    pub config: Arc<Config>,
    pub devices: DeviceRegistry,
    pub latest: Arc<Mutex<LatestValues>>,
    pub outputs: BTreeMap<String, Arc<OutputStatus>>,
    /// State of the store's outbox (undelivered readings, full events, evictions).
    pub outbox: Arc<OutboxStatus>,
    pub processing: Arc<ProcessingStats>,
    /// Alerts firing now (the alert engine's state; history is in the store).
    pub active_alerts: ActiveAlerts,
    pub committed: watch::Receiver<i64>,
    /// Requests per full poll cycle, by device.
    pub requests_per_cycle: BTreeMap<String, usize>,
    /// MQTT source counters (when `[mqtt]` has subscriptions).
    pub mqtt_in: Option<Arc<MqttStats>>,
    /// MQTT output counters (when `[mqtt]` is configured and publishing).
    pub mqtt_out: Option<Arc<MqttOutputStats>>,
    /// Notifier counters, by notifier id.
    pub notifiers: BTreeMap<String, Arc<crate::alerting::notify::NotifierStats>>,
    cancel_sources: CancellationToken,
    writer_shutdown: CancellationToken,
    stop_outputs: CancellationToken,
    pollers: Vec<JoinHandle<()>>,
    processor: JoinHandle<()>,
    writer: std::thread::JoinHandle<WriterStats>,
    output_tasks: Vec<JoinHandle<()>>,
}

/// What a clean shutdown did.
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    pub writer: WriterStats,
    pub last_committed_id: i64,
}

/// Opens the store and starts every stage.
pub async fn start(config: Config) -> anyhow::Result<RunningGateway> {
    let config = Arc::new(config);
    let store_path = config.store_path();
    let store = Store::open(&store_path, config.storage.synchronous)
        .with_context(|| format!("opening the store {}", store_path.display()))?;
    let start_id = store.max_reading_id()?;
    let disk_budget = store.disk_budget(&store_path, config.storage.max_disk)?;

    let cap = config.pipeline.channel_capacity;
    let (src_tx, src_rx) = mpsc::channel::<SourceBatch>(cap);
    let (store_tx, store_rx) = mpsc::channel::<StoreCommand>(cap);
    let (committed_tx, committed_rx) = watch::channel(start_id);

    let destinations: Vec<String> = config
        .outputs
        .influxdb
        .iter()
        .filter(|(_, o)| o.enabled)
        .map(|(n, _)| InfluxOutput::destination(n))
        .collect();
    let outbox = Arc::new(OutboxStatus::default());
    let writer_shutdown = CancellationToken::new();
    let writer = writer::spawn_with_status(
        store,
        store_rx,
        committed_tx,
        WriterOptions {
            retention: config.storage.retention,
            outbox: config.storage.outbox.clone(),
            shutdown: writer_shutdown.clone(),
            cache_mib: config.storage.cache_mib,
            disk_budget,
            commit_delay: config.storage.commit_delay,
            ..WriterOptions::new(config.storage.max_batch, destinations)
        },
        outbox.clone(),
    );

    let latest = Arc::new(Mutex::new(LatestValues::new()));
    let (intensity_tx, intensity_rx) = mpsc::channel::<IntensityUpdate>(4);
    let processing = Arc::new(ProcessingStats::default());
    let active_alerts = ActiveAlerts::default();
    let processor = tokio::spawn(process(
        src_rx,
        store_tx,
        latest.clone(),
        processing.clone(),
        AlertInputs {
            engine: alert_engine(&config, &store_path, &active_alerts),
            active: active_alerts.clone(),
            intensity: intensity_rx,
            outbox: OutboxFill {
                status: outbox.clone(),
                bounds: config.storage.outbox.clone(),
            },
        },
    ));

    let cancel_sources = CancellationToken::new();
    let modbus::Started {
        devices,
        tasks: mut pollers,
        requests_per_cycle,
    } = modbus::spawn_pollers(&config, &src_tx, &cancel_sources);
    if config
        .alerts
        .iter()
        .any(|a| a.kind == crate::config::AlertKind::Intensity)
    {
        pollers.push(tokio::spawn(watch_intensity(
            config.clone(),
            intensity_tx,
            cancel_sources.clone(),
        )));
    }
    // The processor ends once every source has stopped and dropped its sender.
    let mqtt_src_tx = src_tx;
    if !config.log.status_every.is_zero() {
        pollers.push(tokio::spawn(log_device_status(
            devices.clone(),
            config.log.status_every,
            cancel_sources.clone(),
        )));
    }

    let stop_outputs = CancellationToken::new();
    let mut outputs = BTreeMap::new();
    let mut output_tasks = Vec::new();
    let mut mqtt_in = None;
    let mut mqtt_out = None;
    if let Some(m) = &config.mqtt {
        if !m.subscriptions.is_empty() {
            let stats = Arc::new(MqttStats::default());
            let source = MqttSource::new(config.clone(), mqtt_src_tx.clone(), stats.clone());
            pollers.push(tokio::spawn(source.run(cancel_sources.clone())));
            mqtt_in = Some(stats);
        }
        if m.publish.enabled {
            let stats = Arc::new(MqttOutputStats::default());
            let out = MqttOutput::new(config.clone(), store_path.clone(), stats.clone())
                .context("starting the mqtt output")?;
            pollers.push(tokio::spawn(publish_indicators(
                config.clone(),
                out.outbox(),
                devices.clone(),
                latest.clone(),
                cancel_sources.clone(),
            )));
            output_tasks.push(tokio::spawn(out.run(stop_outputs.clone())));
            mqtt_out = Some(stats);
        }
    }
    drop(mqtt_src_tx);
    let mut notifiers = BTreeMap::new();
    for n in config.notifiers.iter().filter(|n| n.enabled) {
        let stats = Arc::new(crate::alerting::notify::NotifierStats::default());
        let notifier = crate::alerting::notify::Notifier::new(
            config.clone(),
            n.clone(),
            &store_path,
            stats.clone(),
        )
        .with_context(|| format!("starting notifier {}", n.id))?;
        output_tasks.push(tokio::spawn(notifier.run(stop_outputs.clone())));
        notifiers.insert(n.id.clone(), stats);
    }
    for (name, o) in &config.outputs.influxdb {
        if !o.enabled {
            continue;
        }
        let status = Arc::new(OutputStatus::default());
        let out = InfluxOutput::new(name, &config, store_path.clone(), status.clone())
            .with_context(|| format!("starting output influxdb.{name}"))?;
        outputs.insert(InfluxOutput::destination(name), status);
        output_tasks.push(tokio::spawn(out.run(
            committed_rx.clone(),
            stop_outputs.clone(),
            OUTPUT_DRAIN_GRACE,
        )));
    }

    tracing::info!(
        site = %config.site.id,
        devices = devices.len(),
        outputs = outputs.len(),
        store = %store_path.display(),
        "gateway started"
    );
    Ok(RunningGateway {
        config,
        devices,
        latest,
        outputs,
        outbox,
        processing,
        active_alerts,
        committed: committed_rx,
        requests_per_cycle,
        mqtt_in,
        mqtt_out,
        notifiers,
        cancel_sources,
        writer_shutdown,
        stop_outputs,
        pollers,
        processor,
        writer,
        output_tasks,
    })
}

/// Queues the site indicators for the MQTT output every `[mqtt.publish] indicators_every`.
async fn publish_indicators(
    config: Arc<Config>,
    outbox: MqttOutbox,
    devices: DeviceRegistry,
    latest: Arc<Mutex<LatestValues>>,
    cancel: CancellationToken,
) {
    let Some(every) = config.mqtt.as_ref().map(|m| m.publish.indicators_every) else {
        return;
    };
    if every.is_zero() {
        return;
    }
    let topic = config
        .mqtt
        .as_ref()
        .map(|m| {
            crate::acquisition::mqtt::connection::topic(
                &m.publish.indicators_topic,
                &config.site.id,
            )
        })
        .unwrap_or_default();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let online = devices.values().filter(|s| s.is_online()).count();
        let power = site_power(&config, &latest);
        let payload =
            crate::outputs::mqtt::indicators_payload(&config, online, devices.len(), power);
        let (o, t) = (outbox.clone(), topic.clone());
        match tokio::task::spawn_blocking(move || o.enqueue(&t, &payload, false)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("cannot queue indicators: {e}"),
            Err(e) => tracing::error!("cannot queue indicators: {e}"),
        }
    }
}

/// Sum of the latest active power of the site's main meters, in kW.
fn site_power(config: &Config, latest: &Mutex<LatestValues>) -> Option<f64> {
    let latest = latest.lock().unwrap_or_else(|p| p.into_inner());
    let mut total = None;
    for m in &config.site.main_meters {
        if let Some((_, v)) = latest.get(&(m.clone(), Quantity::ActivePower)) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// Logs one line per device every `every`: the self-observation counters of acquisition.
async fn log_device_status(devices: DeviceRegistry, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (id, st) in &devices {
            let s = st.snapshot();
            tracing::info!(
                device = %id,
                online = s.online,
                last_success_ms = s.last_success_ms,
                consecutive_failures = s.consecutive_failures,
                requests = s.requests,
                failures = s.failures,
                exceptions = ?s.exception_codes,
                round_trip_ms = s.last_round_trip_ms,
                "device status"
            );
        }
    }
}

/// The processing stage: enforces the reading invariants, evaluates alerts, keeps the latest
/// values, and hands everything to the store writer.
/// This month's intensity and the target path's, both tce per 10⁴ CNY (for `intensity` rules).
type IntensityUpdate = (Option<f64>, Option<f64>);

/// How often `intensity` rules are evaluated (a report of the month is computed each time).
const INTENSITY_EVERY: Duration = Duration::from_secs(15 * 60);

/// Computes this month's intensity against the target path every [`INTENSITY_EVERY`] (first
/// after 30 s) for the `intensity` alert rules.
async fn watch_intensity(
    config: Arc<Config>,
    tx: mpsc::Sender<IntensityUpdate>,
    cancel: CancellationToken,
) {
    let mut wait = Duration::from_secs(30);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = INTENSITY_EVERY;
        let cfg = config.clone();
        let update = tokio::task::spawn_blocking(move || -> anyhow::Result<IntensityUpdate> {
            let tz: chrono_tz::Tz = cfg
                .site
                .timezone
                .parse()
                .map_err(|_| anyhow::anyhow!("site.timezone is not a time zone"))?;
            let month = crate::accounting::calendar::month_of(tz, crate::readings::now_ms());
            let r = crate::reporting::build(
                &cfg,
                crate::accounting::calendar::Period::Month(month),
                false,
            )?;
            let target = r
                .baseline
                .intensity_tce_per_10k_cny
                .map(|b| b * (1.0 + r.target.path_change_pct / 100.0));
            Ok((r.intensity_tce_per_10k_cny, target))
        })
        .await;
        match update {
            Ok(Ok(u)) => {
                if tx.send(u).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("intensity alert rules: cannot compute this month's account: {e:#}")
            }
            Err(e) => tracing::warn!("intensity alert rules: {e}"),
        }
    }
}

/// What the processing stage needs for alerting besides the readings.
struct AlertInputs {
    engine: AlertEngine,
    active: ActiveAlerts,
    /// Month intensity updates for `intensity` rules.
    intensity: mpsc::Receiver<IntensityUpdate>,
    outbox: OutboxFill,
}

/// How full the outbox is, for the outbox alert rule.
struct OutboxFill {
    status: Arc<OutboxStatus>,
    bounds: crate::config::OutboxConfig,
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
fn alert_engine(
    config: &Config,
    store_path: &std::path::Path,
    active: &ActiveAlerts,
) -> AlertEngine {
    let mut engine = AlertEngine::new(config.alerts.clone(), crate::readings::now_ms());
    if engine.is_empty() {
        return engine;
    }
    match crate::alerting::notify::firing_rules(store_path) {
        Ok(firing) => {
            let firing: Vec<String> = firing
                .into_iter()
                .filter(|r| config.alerts.iter().any(|a| &a.id == r))
                .collect();
            if !firing.is_empty() {
                tracing::info!(rules = ?firing, "alerts still firing from before the restart");
                if let Ok(events) = Store::open(store_path, config.storage.synchronous)
                    .and_then(|s| s.alert_events())
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
async fn process(
    mut rx: mpsc::Receiver<SourceBatch>,
    store: mpsc::Sender<StoreCommand>,
    latest: Arc<Mutex<LatestValues>>,
    stats: Arc<ProcessingStats>,
    inputs: AlertInputs,
) {
    let AlertInputs {
        engine: mut alerts,
        active,
        mut intensity,
        outbox,
    } = inputs;
    let mut last_latency_sample: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let SourceBatch {
            readings: mut batch,
            mut ack,
        } = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => return,
            },
            Some((x, target)) = intensity.recv() => {
                let events = alerts.intensity(crate::readings::now_ms(), x, target);
                let firing = alerts.firing().len();
                if !record_alerts(events, &store, &stats, &active, firing).await {
                    return;
                }
                continue;
            }
            _ = tick.tick(), if !alerts.is_empty() => {
                let events = alerts.tick(crate::readings::now_ms(), outbox.pct());
                let firing = alerts.firing().len();
                if !record_alerts(events, &store, &stats, &active, firing).await {
                    return;
                }
                continue;
            }
        };
        let mut events = Vec::new();
        {
            let mut latest = latest.lock().unwrap_or_else(|p| p.into_inner());
            for r in &mut batch {
                r.normalize();
                match r.good_value() {
                    Some(v) => {
                        latest.insert((r.device.clone(), r.quantity), (r.ts_ms, v));
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
                    stats.commit_latency.observe(sent.elapsed());
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

impl RunningGateway {
    /// Sum of the latest active power of the site's main meters, in kW.
    pub fn site_power_kw(&self) -> Option<f64> {
        site_power(&self.config, &self.latest)
    }

    /// Number of devices whose last poll succeeded.
    pub fn devices_online(&self) -> usize {
        self.devices.values().filter(|s| s.is_online()).count()
    }

    /// Stops sources, commits what they produced, gives outputs a grace period, and waits for
    /// every stage to finish.
    pub async fn shutdown(self) -> anyhow::Result<ShutdownReport> {
        tracing::info!("shutting down: stopping sources");
        self.cancel_sources.cancel();
        // A writer held back by a full outbox commits what it has taken, so the stages drain.
        self.writer_shutdown.cancel();
        for p in self.pollers {
            let _ = p.await;
        }
        let _ = self.processor.await;
        let writer = tokio::task::spawn_blocking(move || self.writer.join())
            .await
            .context("joining the store writer")?
            .map_err(|_| anyhow::anyhow!("the store writer panicked"))?;
        let last_committed_id = *self.committed.borrow();
        tracing::info!(
            readings = writer.readings,
            "store flushed; draining outputs"
        );
        self.stop_outputs.cancel();
        for o in self.output_tasks {
            let _ = o.await;
        }
        tracing::info!("shutdown complete");
        Ok(ShutdownReport {
            writer,
            last_committed_id,
        })
    }
}
