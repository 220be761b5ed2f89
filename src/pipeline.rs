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
use futures_util::FutureExt as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::accounting::service::Accounts;
use crate::acquisition::modbus;
use crate::acquisition::mqtt::{MqttSource, MqttStats};
use crate::acquisition::{DeviceRegistry, SourceBatch};
use crate::clock::Clock;
use crate::config::Config;
use crate::outputs::influxdb::{InfluxOutput, OutputStatus};
use crate::outputs::mqtt::{MqttOutput, MqttOutputStats};
use crate::processing::{
    self, ActiveAlerts, AlertInputs, IntensityUpdate, LatestValues, OutboxFill, ProcessingStats,
};
use crate::storage::writer::{self, OutboxStatus, StoreCommand, WriterOptions, WriterStats};
use crate::storage::Store;
use crate::telemetry::metrics::{Live, Registry};

pub mod fault;
pub mod heartbeat;
pub mod supervise;

pub use supervise::{supervise, TaskHealth};

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
    pub requests_per_cycle: BTreeMap<crate::readings::DeviceId, usize>,
    /// MQTT source counters (when `[mqtt]` has subscriptions).
    pub mqtt_in: Option<Arc<MqttStats>>,
    /// MQTT output counters (when `[mqtt]` is configured and publishing).
    pub mqtt_out: Option<Arc<MqttOutputStats>>,
    /// Readings destinations over MQTT: destination → connected to its broker.
    pub mqtt_readings: BTreeMap<String, Arc<std::sync::atomic::AtomicBool>>,
    /// Notifier counters, by notifier id.
    pub notifiers: BTreeMap<String, Arc<crate::alerting::notify::NotifierStats>>,
    /// The accounts the accounting service keeps (`[accounting.service]`).
    pub accounts: Arc<Accounts>,
    /// Whether the wall clock can be trusted (kept across reloads).
    pub clock: Arc<Clock>,
    /// Tasks that panicked: restarted, or dead for good (`run` then exits non-zero for the
    /// service manager to restart the gateway); see [`supervise`].
    pub tasks: Arc<TaskHealth>,
    /// Probes progress through processing and the store writer (the systemd watchdog).
    pub heartbeat: heartbeat::Heartbeat,
    /// The metrics of this pipeline's components (`/metrics`), dropped with it.
    pub metrics: Arc<Registry>,
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
    start_with_clock(config, None).await
}

/// [`start`], keeping the clock guard of a previous pipeline (a reload) when given.
pub async fn start_with_clock(
    config: Config,
    clock: Option<Arc<Clock>>,
) -> anyhow::Result<RunningGateway> {
    let config = Arc::new(config);
    let store_path = config.store_path();
    crate::storage::safety::refuse_empty(&store_path)?;
    let store = Store::open(&store_path, config.storage.synchronous)
        .with_context(|| format!("opening the store {}", store_path.display()))?;
    let start_id = store.max_reading_id()?;
    let clock = match clock {
        Some(c) => c,
        None => Clock::new(store.newest_ts()?),
    };
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
        .chain(
            config
                .outputs
                .mqtt_readings
                .iter()
                .filter(|(_, o)| o.enabled)
                .map(|(n, _)| crate::outputs::mqtt_readings::destination(n)),
        )
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
            clock: Some(clock.clone()),
            ..WriterOptions::new(config.storage.max_batch, destinations)
        },
        outbox.clone(),
    );

    let latest = Arc::new(Mutex::new(LatestValues::new()));
    let (intensity_tx, intensity_rx) = mpsc::channel::<IntensityUpdate>(4);
    let processing = Arc::new(ProcessingStats::default());
    let active_alerts = ActiveAlerts::default();
    let tasks = Arc::new(TaskHealth::default());
    let processor = supervise::spawn(
        "processing",
        processing::process(
            src_rx,
            store_tx,
            latest.clone(),
            processing.clone(),
            AlertInputs {
                engine: processing::alert_engine(
                    &config.alerts,
                    config.storage.synchronous,
                    &store_path,
                    &active_alerts,
                ),
                active: active_alerts.clone(),
                intensity: intensity_rx,
                outbox: OutboxFill {
                    status: outbox.clone(),
                    bounds: config.storage.outbox.clone(),
                },
            },
            clock.clone(),
        )
        .boxed(),
    );
    let processor = supervise("processing", &tasks, processor);

    let cancel_sources = CancellationToken::new();
    // Pollers started as a group: a panic among them cannot be restarted alone.
    let modbus::Started {
        mut devices,
        tasks: modbus_pollers,
        mut requests_per_cycle,
    } = modbus::spawn_pollers(
        &config.devices,
        &config.buses,
        &src_tx,
        &cancel_sources,
        config.health.source_grace,
        |ids, fut| {
            let names: Vec<String> = ids.iter().map(|id| format!("source:modbus:{id}")).collect();
            fault::hang(&names, cancel_sources.clone(), fut)
        },
    );
    let mut pollers: Vec<JoinHandle<()>> = modbus_pollers
        .into_iter()
        .map(|h| supervise("source:modbus", &tasks, h))
        .collect();
    let meters = crate::acquisition::meter_bus::spawn_pollers(
        &config.devices,
        &config.buses,
        config.modbus.templates_dir.as_deref(),
        &config.site.timezone,
        &src_tx,
        &cancel_sources,
    );
    devices.extend(meters.devices);
    requests_per_cycle.extend(meters.requests_per_cycle);
    pollers.extend(
        meters
            .tasks
            .into_iter()
            .map(|h| supervise("source:meter_bus", &tasks, h)),
    );
    let opcua = crate::acquisition::opcua::spawn(
        config
            .devices
            .iter()
            .filter(|d| d.enabled)
            .filter_map(|d| d.opcua.as_ref().map(|o| (&d.id, o))),
        &config.storage.data_dir,
        &config.site.id,
        &src_tx,
        &cancel_sources,
        &mut devices,
    );
    pollers.extend(
        opcua
            .into_iter()
            .map(|h| supervise("source:opcua", &tasks, h)),
    );
    // Tasks built again from their settings after a panic; sources and services stop with
    // the sources.
    let restarting = |name: String, stop: &CancellationToken, build: supervise::Build| {
        supervise::supervise_restarting(name, &tasks, stop.clone(), build)
    };
    let accounts = Arc::new(Accounts::default());
    if config.accounting.service.enabled {
        let has_intensity_rules = config
            .alerts
            .iter()
            .any(|a| a.kind() == crate::config::AlertKind::Intensity);
        let (context, accounts, cancel) = (
            Arc::new(config.accounting_context()),
            accounts.clone(),
            cancel_sources.clone(),
        );
        let intensity = has_intensity_rules.then_some(intensity_tx);
        pollers.push(restarting(
            "accounting".into(),
            &cancel_sources,
            Box::new(move || {
                Ok(crate::accounting::service::run(
                    context.clone(),
                    accounts.clone(),
                    intensity.clone(),
                    cancel.clone(),
                )
                .boxed())
            }),
        )?);
    }
    // The processor ends once every source has stopped and dropped its sender (the heartbeat
    // keeps a weak one).
    let heartbeat = heartbeat::Heartbeat {
        src: src_tx.downgrade(),
        devices: devices.clone(),
        outbox: outbox.clone(),
        clock: clock.clone(),
    };
    let mqtt_src_tx = src_tx;
    if !config.log.status_every.is_zero() {
        let (devices, every, cancel) = (
            devices.clone(),
            config.log.status_every,
            cancel_sources.clone(),
        );
        pollers.push(restarting(
            "device_status_log".into(),
            &cancel_sources,
            Box::new(move || {
                Ok(
                    crate::acquisition::log_device_status(devices.clone(), every, cancel.clone())
                        .boxed(),
                )
            }),
        )?);
    }

    let stop_outputs = CancellationToken::new();
    let mut outputs = BTreeMap::new();
    let mut output_tasks = Vec::new();
    let mut mqtt_in = None;
    let mut mqtt_out = None;
    if let Some(m) = &config.mqtt {
        if !m.subscriptions.is_empty() {
            let stats = Arc::new(MqttStats::default());
            // The broker delivers again what the panicked client had not acknowledged.
            let (settings, site, ids, tx, st, clock, cancel) = (
                m.clone(),
                config.site.clone(),
                config
                    .devices
                    .iter()
                    .map(|d| d.id.clone())
                    .collect::<std::collections::HashSet<_>>(),
                mqtt_src_tx.clone(),
                stats.clone(),
                clock.clone(),
                cancel_sources.clone(),
            );
            pollers.push(restarting(
                "source:mqtt".into(),
                &cancel_sources,
                Box::new(move || {
                    Ok(MqttSource::new(
                        settings.clone(),
                        site.clone(),
                        ids.clone(),
                        tx.clone(),
                        st.clone(),
                    )
                    .with_clock(clock.clone())
                    .run(cancel.clone())
                    .boxed())
                }),
            )?);
            mqtt_in = Some(stats);
        }
        if m.publish.enabled {
            let stats = Arc::new(MqttOutputStats::default());
            let out = MqttOutput::new(
                m.clone(),
                config.site.clone(),
                store_path.clone(),
                stats.clone(),
            )
            .context("starting the mqtt output")?;
            let (publish, site, outbox, devs, lat, acc, cancel) = (
                m.publish.clone(),
                config.site.clone(),
                out.outbox(),
                devices.clone(),
                latest.clone(),
                accounts.clone(),
                cancel_sources.clone(),
            );
            pollers.push(restarting(
                "output:mqtt.indicators".into(),
                &cancel_sources,
                Box::new(move || {
                    Ok(crate::outputs::mqtt::indicators::publish(
                        publish.clone(),
                        site.clone(),
                        outbox.clone(),
                        devs.clone(),
                        lat.clone(),
                        acc.clone(),
                        cancel.clone(),
                    )
                    .boxed())
                }),
            )?);
            let (settings, site, path, st, stop) = (
                m.clone(),
                config.site.clone(),
                store_path.clone(),
                stats.clone(),
                stop_outputs.clone(),
            );
            let mut first = Some(out);
            output_tasks.push(restarting(
                "output:mqtt".into(),
                &stop_outputs,
                Box::new(move || {
                    let out = match first.take() {
                        Some(o) => o,
                        None => MqttOutput::new(
                            settings.clone(),
                            site.clone(),
                            path.clone(),
                            st.clone(),
                        )?,
                    };
                    Ok(out.run(stop.clone()).boxed())
                }),
            )?);
            mqtt_out = Some(stats);
        }
    }
    drop(mqtt_src_tx);
    let mut notifiers = BTreeMap::new();
    let notify_context = Arc::new(config.notify_context());
    for n in config.notifiers.iter().filter(|n| n.enabled) {
        let stats = Arc::new(crate::alerting::notify::NotifierStats::default());
        let (ctx, settings, path, st, stop) = (
            notify_context.clone(),
            n.clone(),
            store_path.clone(),
            stats.clone(),
            stop_outputs.clone(),
        );
        output_tasks.push(
            restarting(
                format!("notifier:{}", n.id),
                &stop_outputs,
                Box::new(move || {
                    let notifier = crate::alerting::notify::Notifier::new(
                        ctx.clone(),
                        settings.clone(),
                        &path,
                        st.clone(),
                    )?;
                    Ok(notifier.run(stop.clone()).boxed())
                }),
            )
            .with_context(|| format!("starting notifier {}", n.id))?,
        );
        notifiers.insert(n.id.clone(), stats);
    }
    for (name, o) in &config.outputs.influxdb {
        if !o.enabled {
            continue;
        }
        let status = Arc::new(OutputStatus::default());
        let dest = InfluxOutput::destination(name);
        // Delivery goes on from the destination's cursor in the store.
        let (name_, settings, site, devs, path, st, committed, stop) = (
            name.clone(),
            o.clone(),
            config.site.clone(),
            config.devices.clone(),
            store_path.clone(),
            status.clone(),
            committed_rx.clone(),
            stop_outputs.clone(),
        );
        output_tasks.push(
            restarting(
                format!("output:{dest}"),
                &stop_outputs,
                Box::new(move || {
                    let out = InfluxOutput::new(
                        &name_,
                        settings.clone(),
                        &site,
                        &devs,
                        path.clone(),
                        st.clone(),
                    )?;
                    Ok(out
                        .run(committed.clone(), stop.clone(), OUTPUT_DRAIN_GRACE)
                        .boxed())
                }),
            )
            .with_context(|| format!("starting output influxdb.{name}"))?,
        );
        outputs.insert(dest, status);
    }
    let mut mqtt_readings = BTreeMap::new();
    for (name, o) in config
        .outputs
        .mqtt_readings
        .iter()
        .filter(|(_, o)| o.enabled)
    {
        let status = Arc::new(OutputStatus::default());
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dest = crate::outputs::mqtt_readings::destination(name);
        let (name_, settings, site, path, st, conn, committed, stop) = (
            name.clone(),
            o.clone(),
            config.site.id.clone(),
            store_path.clone(),
            status.clone(),
            connected.clone(),
            committed_rx.clone(),
            stop_outputs.clone(),
        );
        output_tasks.push(
            restarting(
                format!("output:{dest}"),
                &stop_outputs,
                Box::new(move || {
                    let out = crate::outputs::mqtt_readings::MqttReadingsOutput::new(
                        &name_,
                        &settings,
                        &site,
                        &path,
                        st.clone(),
                        conn.clone(),
                    )?;
                    Ok(out
                        .run(committed.clone(), stop.clone(), OUTPUT_DRAIN_GRACE)
                        .boxed())
                }),
            )
            .with_context(|| format!("starting output mqtt_readings.{name}"))?,
        );
        outputs.insert(dest.clone(), status);
        mqtt_readings.insert(dest, connected);
    }

    let metrics = Arc::new(register_metrics(&Stages {
        devices: &devices,
        processing: &processing,
        active_alerts: &active_alerts,
        outbox: &outbox,
        outputs: &outputs,
        mqtt_in: mqtt_in.as_ref(),
        mqtt_out: mqtt_out.as_ref(),
        notifiers: &notifiers,
        mqtt_readings: &mqtt_readings,
        accounts: config.accounting.service.enabled.then_some(&accounts),
        clock: &clock,
        tasks: &tasks,
        committed: &committed_rx,
    }));
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
        mqtt_readings,
        notifiers,
        accounts,
        clock,
        tasks,
        heartbeat,
        metrics,
        cancel_sources,
        writer_shutdown,
        stop_outputs,
        pollers,
        processor,
        writer,
        output_tasks,
    })
}

/// What a pipeline's components keep their counts in, for [`register_metrics`].
struct Stages<'a> {
    devices: &'a DeviceRegistry,
    processing: &'a Arc<ProcessingStats>,
    active_alerts: &'a ActiveAlerts,
    outbox: &'a Arc<OutboxStatus>,
    outputs: &'a BTreeMap<String, Arc<OutputStatus>>,
    mqtt_in: Option<&'a Arc<MqttStats>>,
    mqtt_out: Option<&'a Arc<MqttOutputStats>>,
    notifiers: &'a BTreeMap<String, Arc<crate::alerting::notify::NotifierStats>>,
    mqtt_readings: &'a BTreeMap<String, Arc<std::sync::atomic::AtomicBool>>,
    /// When the accounting service runs.
    accounts: Option<&'a Arc<Accounts>>,
    clock: &'a Arc<Clock>,
    tasks: &'a Arc<TaskHealth>,
    committed: &'a watch::Receiver<i64>,
}

/// The pipeline's registry: each component registers its own metrics.
fn register_metrics(s: &Stages) -> Registry {
    let mut reg = crate::telemetry::metrics::registry();
    crate::acquisition::metrics::register_devices(&mut reg, s.devices);
    processing::metrics::register(&mut reg, s.processing, s.active_alerts);
    crate::storage::metrics::register(&mut reg, s.outbox);
    reg.register(
        "last_committed_reading_id",
        "Highest reading id committed to the store",
        Live::gauge(Arc::new(s.committed.clone()), |c| Some(*c.borrow() as f64)),
    );
    crate::outputs::metrics::register_destinations(&mut reg, s.outputs);
    if let Some(m) = s.mqtt_in {
        crate::acquisition::metrics::register_mqtt(&mut reg, m);
    }
    if let Some(m) = s.mqtt_out {
        crate::outputs::metrics::register_mqtt(&mut reg, m);
    }
    crate::alerting::metrics::register_notifiers(&mut reg, s.notifiers);
    crate::outputs::metrics::register_mqtt_readings(&mut reg, s.mqtt_readings);
    if let Some(a) = s.accounts {
        crate::accounting::metrics::register(&mut reg, a);
    }
    crate::clock::register_metrics(&mut reg, s.clock);
    reg.register(
        "task_panics",
        "Pipeline tasks that panicked (restarted in the process, or the gateway exits non-zero to be restarted)",
        Live::counter(s.tasks.clone(), |t| {
            t.panics.load(std::sync::atomic::Ordering::Relaxed)
        }),
    );
    reg.register(
        "task_restarts",
        "Pipeline tasks built again and restarted in the process after a panic",
        Live::counter(s.tasks.clone(), |t| {
            t.restarts.load(std::sync::atomic::Ordering::Relaxed)
        }),
    );
    reg
}

impl RunningGateway {
    /// Sum of the latest active power of the site's main meters, in kW.
    pub fn site_power_kw(&self) -> Option<f64> {
        processing::site_power(&self.config.site.main_meters, &self.latest)
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
