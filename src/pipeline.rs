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

use crate::acquisition::modbus::ModbusPoller;
use crate::acquisition::{DeviceRegistry, DeviceStatus};
use crate::alerting::AlertEngine;
use crate::config::Config;
use crate::outputs::influxdb::{InfluxOutput, OutputStatus};
use crate::readings::{Quantity, Reading, TimestampMs};
use crate::storage::writer::{self, StoreCommand, WriterOptions, WriterStats};
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
}

/// A started gateway. Call [`RunningGateway::shutdown`] to stop it cleanly.
pub struct RunningGateway {
    pub config: Arc<Config>,
    pub devices: DeviceRegistry,
    pub latest: Arc<Mutex<LatestValues>>,
    pub outputs: BTreeMap<String, Arc<OutputStatus>>,
    pub processing: Arc<ProcessingStats>,
    pub committed: watch::Receiver<i64>,
    /// Requests per full poll cycle, by device.
    pub requests_per_cycle: BTreeMap<String, usize>,
    cancel_sources: CancellationToken,
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

    let cap = config.pipeline.channel_capacity;
    let (src_tx, src_rx) = mpsc::channel::<Vec<Reading>>(cap);
    let (store_tx, store_rx) = mpsc::channel::<StoreCommand>(cap);
    let (committed_tx, committed_rx) = watch::channel(start_id);

    let destinations: Vec<String> = config
        .outputs
        .influxdb
        .iter()
        .filter(|(_, o)| o.enabled)
        .map(|(n, _)| InfluxOutput::destination(n))
        .collect();
    let writer = writer::spawn(
        store,
        store_rx,
        committed_tx,
        WriterOptions {
            max_batch: config.storage.max_batch,
            retention: config.storage.retention,
            destinations,
            prune_every: Duration::from_secs(3600),
        },
    );

    let latest = Arc::new(Mutex::new(LatestValues::new()));
    let processing = Arc::new(ProcessingStats::default());
    let processor = tokio::spawn(process(
        src_rx,
        store_tx,
        AlertEngine::new(config.alerts.clone()),
        latest.clone(),
        processing.clone(),
    ));

    let cancel_sources = CancellationToken::new();
    let mut devices = DeviceRegistry::new();
    let mut pollers = Vec::new();
    let mut requests_per_cycle = BTreeMap::new();
    for d in config.devices.iter().filter(|d| d.enabled) {
        let status = Arc::new(DeviceStatus::default());
        devices.insert(d.id.clone(), status.clone());
        if let Some(p) = ModbusPoller::new(Arc::new(d.clone()), status, src_tx.clone()) {
            requests_per_cycle.insert(d.id.clone(), p.requests_per_cycle());
            pollers.push(tokio::spawn(p.run(cancel_sources.clone())));
        }
    }
    drop(src_tx); // the processor ends once every poller has stopped

    let stop_outputs = CancellationToken::new();
    let mut outputs = BTreeMap::new();
    let mut output_tasks = Vec::new();
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
        processing,
        committed: committed_rx,
        requests_per_cycle,
        cancel_sources,
        stop_outputs,
        pollers,
        processor,
        writer,
        output_tasks,
    })
}

/// The processing stage: enforces the reading invariants, evaluates alerts, keeps the latest
/// values, and hands everything to the store writer.
async fn process(
    mut rx: mpsc::Receiver<Vec<Reading>>,
    store: mpsc::Sender<StoreCommand>,
    mut alerts: AlertEngine,
    latest: Arc<Mutex<LatestValues>>,
    stats: Arc<ProcessingStats>,
) {
    while let Some(mut batch) = rx.recv().await {
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
        if !events.is_empty() {
            stats
                .alerts_firing
                .store(alerts.firing().len() as u64, Ordering::Relaxed);
        }
        for e in events {
            stats.alert_events.fetch_add(1, Ordering::Relaxed);
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
                return;
            }
        }
        if store
            .send(StoreCommand::Readings {
                readings: batch,
                ack: None,
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
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = None;
        for m in &self.config.site.main_meters {
            if let Some((_, v)) = latest.get(&(m.clone(), Quantity::ActivePower)) {
                *total.get_or_insert(0.0) += v;
            }
        }
        total
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
