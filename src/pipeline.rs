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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::accounting::service::Accounts;
use crate::acquisition::modbus;
use crate::acquisition::mqtt::{MqttSource, MqttStats};
use crate::acquisition::{DeviceRegistry, SourceBatch};
use crate::config::Config;
use crate::outputs::influxdb::{InfluxOutput, OutputStatus};
use crate::outputs::mqtt::{MqttOutbox, MqttOutput, MqttOutputStats};
use crate::processing::{
    self, ActiveAlerts, AlertInputs, IntensityUpdate, LatestValues, OutboxFill, ProcessingStats,
};
use crate::storage::writer::{self, OutboxStatus, StoreCommand, WriterOptions, WriterStats};
use crate::storage::Store;

/// How long outputs may keep delivering after shutdown was asked for.
pub const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(2);

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
    /// The accounts the accounting service keeps (`[accounting.service]`).
    pub accounts: Arc<Accounts>,
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
            minute_retention: config.storage.minute_retention,
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
    let processor = tokio::spawn(processing::process(
        src_rx,
        store_tx,
        latest.clone(),
        processing.clone(),
        AlertInputs {
            engine: processing::alert_engine(&config, &store_path, &active_alerts),
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
    let accounts = Arc::new(Accounts::default());
    if config.accounting.service.enabled {
        let has_intensity_rules = config
            .alerts
            .iter()
            .any(|a| a.kind == crate::config::AlertKind::Intensity);
        pollers.push(tokio::spawn(crate::accounting::service::run(
            config.clone(),
            accounts.clone(),
            has_intensity_rules.then_some(intensity_tx),
            cancel_sources.clone(),
        )));
    }
    // The processor ends once every source has stopped and dropped its sender.
    let mqtt_src_tx = src_tx;
    if !config.log.status_every.is_zero() {
        pollers.push(tokio::spawn(crate::acquisition::log_device_status(
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
                accounts.clone(),
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
        accounts,
        cancel_sources,
        writer_shutdown,
        stop_outputs,
        pollers,
        processor,
        writer,
        output_tasks,
    })
}

/// Queues the site indicators for the MQTT output every `[mqtt.publish] indicators_every`, and
/// at once whenever the accounting service has new accounts.
async fn publish_indicators(
    config: Arc<Config>,
    outbox: MqttOutbox,
    devices: DeviceRegistry,
    latest: Arc<Mutex<LatestValues>>,
    accounts: Arc<Accounts>,
    cancel: CancellationToken,
) {
    let mut changed = accounts.subscribe();
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
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
            }
        }
        let online = devices.values().filter(|s| s.is_online()).count();
        let power = processing::site_power(&config, &latest);
        let payload = crate::outputs::mqtt::indicators_payload(
            &config,
            online,
            devices.len(),
            power,
            &accounts.held(),
        );
        let (o, t) = (outbox.clone(), topic.clone());
        match tokio::task::spawn_blocking(move || o.enqueue(&t, &payload, false)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("cannot queue indicators: {e}"),
            Err(e) => tracing::error!("cannot queue indicators: {e}"),
        }
    }
}

impl RunningGateway {
    /// Sum of the latest active power of the site's main meters, in kW.
    pub fn site_power_kw(&self) -> Option<f64> {
        processing::site_power(&self.config, &self.latest)
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
