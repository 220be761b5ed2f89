//! `GET /metrics`: OpenMetrics text (which Prometheus scrapes as is), built on each scrape from
//! the live counters of the running pipeline.
//!
//! Counters restart from zero when a configuration reload starts a new pipeline; Prometheus'
//! `rate()` and `increase()` handle such resets. Every name starts with `energy_gateway_`:
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `build_info` | `version` | 1 |
//! | `uptime_seconds` | | since the process started |
//! | `pipeline_running` | | 1 while a pipeline runs (0 during a reload) |
//! | `config_reloads_total`, `config_reload_failures_total` | | SIGHUP reloads |
//! | `device_online` | `device` | 1 when the last poll succeeded |
//! | `device_polls_total` | `device` | requests sent |
//! | `device_errors_total` | `device` | failed polls (timeouts, transport errors) |
//! | `device_exceptions_total` | `device` | Modbus exception answers (and DL/T 645 / CJ/T 188 abnormal answers) |
//! | `device_garbage_frames_total` | `device` | garbled frames skipped while waiting for the device (DL/T 645, CJ/T 188) |
//! | `device_consecutive_failures` | `device` | |
//! | `device_missed_slots_total` | `device` | poll slots that passed without a poll |
//! | `device_behind` | `device` | 1 while the device cannot keep to its poll interval |
//! | `device_round_trip_seconds` | `device` | round trip of the last request |
//! | `device_last_success_timestamp_seconds` | `device` | |
//! | `readings_total`, `bad_readings_total` | | readings processed |
//! | `readings_per_second` | | over the last 10 s |
//! | `last_committed_reading_id` | | |
//! | `store_commit_latency_seconds` | | histogram: hand-over to the writer → committed |
//! | `store_commit_errors_total` | | |
//! | `outbox_rows`, `outbox_bytes`, `outbox_full` | | undelivered part of the store |
//! | `outbox_full_events_total`, `outbox_evicted_total` | | |
//! | `store_budget_dropped_total`, `store_used_bytes`, `store_disk_budget_bytes` | | disk budget |
//! | `store_commit_lag_seconds` | | time from the last committed readings reaching the store writer to their commit (over 10 s: not keeping up) |
//! | `output_outbox_depth` | `destination` | readings the destination has not confirmed (`influxdb.NAME`, `mqtt_readings.NAME`) |
//! | `output_outbox_age_seconds` | `destination` | age of the oldest of them |
//! | `output_points_sent_total`, `output_requests_total`, `output_request_failures_total`, `output_quarantined_total` | `destination` | for `mqtt_readings.NAME`: readings acknowledged (PUBACK), messages published |
//! | `output_refused` | `destination` | 1 while the destination refuses the gateway |
//! | `alerts_firing` | | rules firing |
//! | `alert_firing` | `rule`, `device`, `severity` | 1 per firing rule |
//! | `alert_events_total` | | pending/firing/resolved transitions |
//! | `mqtt_source_connected`, `mqtt_output_connected` | | 1 while connected to the broker |
//! | `mqtt_source_connects_total`, `mqtt_source_messages_total`, `mqtt_source_readings_total`, `mqtt_source_bad_messages_total`, `mqtt_source_new_devices_refused_total` | | MQTT in |
//! | `mqtt_output_published_total`, `mqtt_output_acknowledged_total` | | MQTT out (acknowledged = PUBACK) |
//! | `notifier_sent_total`, `notifier_suppressed_total`, `notifier_failures_total` | `notifier` | alert notifications |
//! | `process_resident_memory_bytes`, `process_open_fds`, `process_cpu_seconds_total` | | the gateway process (Linux) |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{ApiError, GatewayView, Shared};
use crate::processing::LATENCY_BUCKETS;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// A histogram whose counts are already known (kept by the pipeline in atomics).
#[derive(Debug)]
struct FixedHistogram {
    sum: f64,
    count: u64,
    /// (upper bound, observations in this bucket only)
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for FixedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: f64) {
    let g = FloatGauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn counter_family(
    reg: &mut Registry,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) {
    let f = Family::<Labels, Counter>::default();
    for (l, v) in rows {
        f.get_or_create(&l).inc_by(v);
    }
    reg.register(name, help, f);
}

fn gauge_family(
    reg: &mut Registry,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, f64)>,
) {
    let f = Family::<Labels, FloatGauge>::default();
    for (l, v) in rows {
        f.get_or_create(&l).set(v);
    }
    reg.register(name, help, f);
}

/// `GET /metrics`
pub async fn metrics(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let gw = shared.gateway();
    let backlogs = match &gw {
        Some(gw) => super::api::backlogs(&shared, gw)
            .await
            .map_err(ApiError::internal)?,
        None => Vec::new(),
    };
    let text = render(&shared, gw.as_deref(), &backlogs).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn device_label(id: &str) -> Labels {
    vec![("device", id.to_string())]
}

fn dest_label(d: &str) -> Labels {
    vec![("destination", d.to_string())]
}

/// The metrics text of the current state.
pub fn render(
    shared: &Shared,
    gw: Option<&GatewayView>,
    backlogs: &[super::api::Backlog],
) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    reg.register(
        "energy_gateway_build",
        "Version of the running binary",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_string())]),
    );
    gauge(
        &mut reg,
        "energy_gateway_uptime_seconds",
        "Seconds since the process started",
        shared.uptime().as_secs_f64(),
    );
    gauge(
        &mut reg,
        "energy_gateway_pipeline_running",
        "1 while a pipeline runs (0 while starting, reloading or stopping)",
        if gw.is_some() { 1.0 } else { 0.0 },
    );
    let reload = shared.reload_state();
    counter(
        &mut reg,
        "energy_gateway_config_reloads",
        "Configuration reloads asked for with SIGHUP",
        reload.reloads,
    );
    counter(
        &mut reg,
        "energy_gateway_config_reload_failures",
        "Reloads whose configuration was rejected or could not start",
        reload.failures,
    );

    if let Some(gw) = gw {
        let snaps: Vec<(String, crate::acquisition::DeviceStatusSnapshot)> = gw
            .devices
            .iter()
            .map(|(id, s)| (id.clone(), s.snapshot()))
            .collect();
        gauge_family(
            &mut reg,
            "energy_gateway_device_online",
            "1 when the device's last poll succeeded",
            snaps
                .iter()
                .map(|(d, s)| (device_label(d), if s.online { 1.0 } else { 0.0 })),
        );
        counter_family(
            &mut reg,
            "energy_gateway_device_polls",
            "Requests sent to the device",
            snaps.iter().map(|(d, s)| (device_label(d), s.requests)),
        );
        counter_family(
            &mut reg,
            "energy_gateway_device_errors",
            "Failed polls of the device (timeouts, transport errors)",
            snaps.iter().map(|(d, s)| (device_label(d), s.failures)),
        );
        counter_family(
            &mut reg,
            "energy_gateway_device_exceptions",
            "Modbus exception answers from the device",
            snaps.iter().map(|(d, s)| (device_label(d), s.exceptions)),
        );
        counter_family(
            &mut reg,
            "energy_gateway_device_garbage_frames",
            "Garbled frames skipped while waiting for the device's answers (serial noise, bad checksums)",
            snaps.iter().map(|(d, s)| (device_label(d), s.garbage)),
        );
        gauge_family(
            &mut reg,
            "energy_gateway_device_consecutive_failures",
            "Failed polls in a row",
            snaps
                .iter()
                .map(|(d, s)| (device_label(d), f64::from(s.consecutive_failures))),
        );
        counter_family(
            &mut reg,
            "energy_gateway_device_missed_slots",
            "Poll slots of the device that passed without a poll",
            snaps.iter().map(|(d, s)| (device_label(d), s.missed_slots)),
        );
        gauge_family(
            &mut reg,
            "energy_gateway_device_behind",
            "1 while the device cannot keep to its poll interval",
            snaps
                .iter()
                .map(|(d, s)| (device_label(d), f64::from(u8::from(s.behind)))),
        );
        gauge_family(
            &mut reg,
            "energy_gateway_device_round_trip_seconds",
            "Round trip of the device's last request",
            snaps
                .iter()
                .map(|(d, s)| (device_label(d), s.last_round_trip_ms / 1000.0)),
        );
        gauge_family(
            &mut reg,
            "energy_gateway_device_last_success_timestamp_seconds",
            "When the device last answered (Unix time)",
            snaps.iter().filter_map(|(d, s)| {
                s.last_success_ms
                    .map(|ms| (device_label(d), ms as f64 / 1000.0))
            }),
        );

        let p = &gw.processing;
        counter(
            &mut reg,
            "energy_gateway_readings",
            "Readings processed",
            p.readings.load(Ordering::Relaxed),
        );
        counter(
            &mut reg,
            "energy_gateway_bad_readings",
            "Readings without a usable value (timeouts, NaN, sentinels)",
            p.bad_readings.load(Ordering::Relaxed),
        );
        gauge(
            &mut reg,
            "energy_gateway_readings_per_second",
            "Readings processed per second over the last 10 s",
            shared.readings_per_second().unwrap_or(0.0),
        );
        gauge(
            &mut reg,
            "energy_gateway_last_committed_reading_id",
            "Highest reading id committed to the store",
            gw.committed_id() as f64,
        );
        let lat = &p.commit_latency;
        reg.register(
            "energy_gateway_store_commit_latency_seconds",
            "Time from handing readings to the store writer until they are committed (sampled once a second)",
            FixedHistogram {
                sum: lat.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
                count: lat.count.load(Ordering::Relaxed),
                buckets: LATENCY_BUCKETS
                    .iter()
                    .zip(&lat.buckets)
                    .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
                    .collect(),
            },
        );

        let ob = gw.outbox.snapshot();
        counter(
            &mut reg,
            "energy_gateway_store_commit_errors",
            "Failed store commits (each retried)",
            ob.commit_errors,
        );
        gauge(
            &mut reg,
            "energy_gateway_outbox_rows",
            "Readings some enabled output has not confirmed",
            ob.rows as f64,
        );
        gauge(
            &mut reg,
            "energy_gateway_outbox_bytes",
            "Estimated bytes of the undelivered readings",
            ob.bytes as f64,
        );
        gauge(
            &mut reg,
            "energy_gateway_outbox_full",
            "1 while an outbox bound is reached",
            if ob.full { 1.0 } else { 0.0 },
        );
        counter(
            &mut reg,
            "energy_gateway_outbox_full_events",
            "Times the outbox became full",
            ob.full_events,
        );
        counter(
            &mut reg,
            "energy_gateway_store_budget_dropped",
            "Delivered readings dropped to keep the store within storage.max_disk",
            ob.budget_dropped,
        );
        gauge(
            &mut reg,
            "energy_gateway_store_used_bytes",
            "Bytes of the store file in use (at the last budget check)",
            ob.used_bytes as f64,
        );
        gauge(
            &mut reg,
            "energy_gateway_store_disk_budget_bytes",
            "The store's disk budget (storage.max_disk or derived at the first start)",
            ob.disk_budget as f64,
        );
        gauge(
            &mut reg,
            "energy_gateway_store_commit_lag_seconds",
            "Age of the newest reading of the last commit when it was committed",
            ob.commit_lag_ms as f64 / 1000.0,
        );
        counter(
            &mut reg,
            "energy_gateway_outbox_evicted",
            "Readings deleted undelivered to make room (storage.outbox.when_full = evict_oldest)",
            ob.evicted,
        );

        gauge_family(
            &mut reg,
            "energy_gateway_output_outbox_depth",
            "Committed readings the destination has not confirmed",
            backlogs
                .iter()
                .map(|b| (dest_label(&b.destination), b.depth as f64)),
        );
        gauge_family(
            &mut reg,
            "energy_gateway_output_outbox_age_seconds",
            "Age of the oldest reading the destination has not confirmed (0 when none waits)",
            backlogs
                .iter()
                .map(|b| (dest_label(&b.destination), b.age_seconds)),
        );
        let outs: Vec<(&String, &Arc<crate::outputs::influxdb::OutputStatus>)> =
            gw.outputs.iter().collect();
        counter_family(
            &mut reg,
            "energy_gateway_output_points_sent",
            "Points the destination confirmed",
            outs.iter()
                .map(|(d, s)| (dest_label(d), s.points_sent.load(Ordering::Relaxed))),
        );
        counter_family(
            &mut reg,
            "energy_gateway_output_requests",
            "Write requests sent to the destination",
            outs.iter()
                .map(|(d, s)| (dest_label(d), s.requests.load(Ordering::Relaxed))),
        );
        counter_family(
            &mut reg,
            "energy_gateway_output_request_failures",
            "Write requests that did not succeed",
            outs.iter()
                .map(|(d, s)| (dest_label(d), s.requests_failed.load(Ordering::Relaxed))),
        );
        counter_family(
            &mut reg,
            "energy_gateway_output_quarantined",
            "Points the destination rejected for good",
            outs.iter()
                .map(|(d, s)| (dest_label(d), s.quarantined.load(Ordering::Relaxed))),
        );
        gauge_family(
            &mut reg,
            "energy_gateway_output_refused",
            "1 while the destination refuses the gateway (credentials, missing database)",
            outs.iter().map(|(d, s)| {
                (
                    dest_label(d),
                    if s.refused.load(Ordering::Relaxed) {
                        1.0
                    } else {
                        0.0
                    },
                )
            }),
        );

        let active = gw
            .active_alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        gauge(
            &mut reg,
            "energy_gateway_alerts_firing",
            "Alert rules firing",
            active.len() as f64,
        );
        gauge_family(
            &mut reg,
            "energy_gateway_alert_firing",
            "1 per firing alert rule",
            active.values().map(|e| {
                (
                    vec![
                        ("rule", e.rule.clone()),
                        ("device", e.device.clone()),
                        ("severity", e.severity.to_string()),
                    ],
                    1.0,
                )
            }),
        );
        counter(
            &mut reg,
            "energy_gateway_alert_events",
            "Alert transitions (pending, firing, resolved)",
            p.alert_events.load(Ordering::Relaxed),
        );
    }

    if let Some(gw) = gw {
        counter(
            &mut reg,
            "energy_gateway_task_panics",
            "Pipeline tasks that panicked (the gateway then exits non-zero to be restarted)",
            gw.tasks.panics.load(Ordering::Relaxed),
        );
        let c = &gw.clock;
        gauge(
            &mut reg,
            "energy_gateway_clock_trusted",
            "1 while the wall clock is trusted to date readings (0: readings are held)",
            f64::from(u8::from(c.observe().trusted)),
        );
        counter(
            &mut reg,
            "energy_gateway_clock_steps",
            "Steps of the wall clock (changes the monotonic clock did not show) since start",
            c.steps(),
        );
        gauge(
            &mut reg,
            "energy_gateway_clock_held_readings",
            "Readings held until the clock is trusted",
            c.held() as f64,
        );
        counter(
            &mut reg,
            "energy_gateway_clock_redated_readings",
            "Held readings dated again by the monotonic clock once the clock was trusted",
            c.redated(),
        );
        counter(
            &mut reg,
            "energy_gateway_clock_rejected_readings",
            "Readings stored as bad for their time (before the build date, far ahead, before the previous one)",
            c.rejected(),
        );
        if let Some(m) = &gw.mqtt_in {
            gauge(
                &mut reg,
                "energy_gateway_mqtt_source_connected",
                "1 while the MQTT source is connected to the broker",
                f64::from(u8::from(m.connected.load(Ordering::Relaxed))),
            );
            for (name, help, v) in [
                ("connects", "Connections to the broker", &m.connects),
                ("messages", "Messages received", &m.messages),
                ("readings", "Readings taken from messages", &m.readings),
                (
                    "bad_messages",
                    "Messages counted as bad (unreadable, oversized, unknown device or quantity)",
                    &m.bad_messages,
                ),
                (
                    "new_devices_refused",
                    "Messages refused for a new device beyond the limit of devices not in the configuration",
                    &m.new_devices_refused,
                ),
            ] {
                counter(
                    &mut reg,
                    &format!("energy_gateway_mqtt_source_{name}"),
                    help,
                    v.load(Ordering::Relaxed),
                );
            }
        }
        if let Some(m) = &gw.mqtt_out {
            gauge(
                &mut reg,
                "energy_gateway_mqtt_output_connected",
                "1 while the MQTT output is connected to the broker",
                f64::from(u8::from(m.connected.load(Ordering::Relaxed))),
            );
            counter(
                &mut reg,
                "energy_gateway_mqtt_output_published",
                "Messages published",
                m.published.load(Ordering::Relaxed),
            );
            counter(
                &mut reg,
                "energy_gateway_mqtt_output_acknowledged",
                "Messages the broker acknowledged (PUBACK)",
                m.acknowledged.load(Ordering::Relaxed),
            );
        }
        for (name, help) in [
            ("sent", "Notifications delivered"),
            ("suppressed", "Notifications held back by the rate limit"),
            ("failures", "Failed delivery attempts"),
        ] {
            counter_family(
                &mut reg,
                &format!("energy_gateway_notifier_{name}"),
                help,
                gw.notifiers.iter().map(|(id, st)| {
                    let v = match name {
                        "sent" => &st.sent,
                        "suppressed" => &st.suppressed,
                        _ => &st.failures,
                    };
                    (vec![("notifier", id.clone())], v.load(Ordering::Relaxed))
                }),
            );
        }
    }
    let proc = process_stats();
    if let Some(rss) = proc.rss_bytes {
        gauge(
            &mut reg,
            "energy_gateway_process_resident_memory_bytes",
            "Resident memory of the gateway process",
            rss as f64,
        );
    }
    if let Some(fds) = proc.open_fds {
        gauge(
            &mut reg,
            "energy_gateway_process_open_fds",
            "Open file descriptors of the gateway process",
            fds as f64,
        );
    }
    if let Some(cpu) = proc.cpu_seconds {
        let c = Counter::<f64, AtomicU64>::default();
        c.inc_by(cpu);
        reg.register(
            "energy_gateway_process_cpu_seconds",
            "CPU time of the gateway process (user + system), seconds",
            c,
        );
    }

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

/// What the kernel says of this process (Linux `/proc/self`); None where it cannot be read.
#[derive(Debug, Default)]
struct ProcessStats {
    rss_bytes: Option<u64>,
    open_fds: Option<u64>,
    cpu_seconds: Option<f64>,
}

fn process_stats() -> ProcessStats {
    let mut p = ProcessStats::default();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        p.rss_bytes = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024);
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    // Fields 14 and 15 of /proc/self/stat (utime, stime) in clock ticks, after the command
    // name in parentheses; ticks are 100 per second on every Linux the gateway targets.
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(u), Some(s)) = (
                f.get(11).and_then(|v| v.parse::<f64>().ok()),
                f.get(12).and_then(|v| v.parse::<f64>().ok()),
            ) {
                p.cpu_seconds = Some((u + s) / 100.0);
            }
        }
    }
    p
}
