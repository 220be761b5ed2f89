//! `GET /metrics`: OpenMetrics text (which Prometheus scrapes as is).
//!
//! Every component registers its own metrics when its pipeline starts and updates them where
//! the event happens ([`crate::telemetry::metrics`]); a scrape only encodes them. The process's
//! registry ([`ProcessMetrics`], kept by the HTTP server for as long as it runs) holds what
//! outlives a pipeline; each pipeline brings its own registry and drops it when it stops. So a
//! configuration reload, which starts a new pipeline, restarts the pipeline's counters from zero
//! (Prometheus' `rate()` and `increase()` handle such resets) and drops the series of removed
//! devices, outputs and notifiers; the reload counters, build and process metrics go on.
//! Every name starts with `energy_gateway_`:
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
//! | `store_budget_dropped_total`, `store_budget_undelivered_over_total`, `store_used_bytes`, `store_disk_budget_bytes` | | disk budget |
//! | `store_commit_lag_seconds` | | time from the last committed readings reaching the store writer to their commit (over 10 s: not keeping up) |
//! | `output_outbox_depth` | `destination` | readings the destination has not confirmed (`influxdb.NAME`, `mqtt_readings.NAME`) |
//! | `output_outbox_age_seconds` | `destination` | age of the oldest of them |
//! | `output_points_sent_total`, `output_requests_total`, `output_request_failures_total`, `output_quarantined_total` | `destination` | for `mqtt_readings.NAME`: readings acknowledged (PUBACK), messages published |
//! | `output_refused` | `destination` | 1 while the destination refuses the gateway |
//! | `output_connected` | `destination` | `mqtt_readings.NAME`: 1 while connected to its broker |
//! | `alerts_firing` | | rules firing |
//! | `alert_firing` | `rule`, `device`, `severity` | 1 per firing rule |
//! | `alert_events_total` | | pending/firing/resolved transitions |
//! | `mqtt_source_connected`, `mqtt_output_connected` | | 1 while connected to the broker |
//! | `mqtt_source_connects_total`, `mqtt_source_messages_total`, `mqtt_source_readings_total`, `mqtt_source_bad_messages_total`, `mqtt_source_new_devices_refused_total` | | MQTT in |
//! | `mqtt_output_published_total`, `mqtt_output_acknowledged_total` | | MQTT out (acknowledged = PUBACK) |
//! | `notifier_sent_total`, `notifier_suppressed_total`, `notifier_failures_total` | `notifier` | alert notifications |
//! | `process_resident_memory_bytes`, `process_open_fds`, `process_cpu_seconds_total` | | the gateway process (Linux) |
//! | `task_panics_total` | | pipeline tasks that panicked (restarted in the process, or the gateway exits non-zero) |
//! | `task_restarts_total` | | pipeline tasks built again and restarted in the process after a panic |
//! | `clock_trusted` | | 1 while the wall clock is trusted to date readings |
//! | `clock_steps_total`, `clock_redated_readings_total`, `clock_rejected_readings_total` | | wall clock steps; held readings dated again; readings stored as bad for their time |
//! | `clock_held_readings` | | readings held until the clock is trusted |
//! | `accounting_cycle_seconds` | | histogram: time an accounting service cycle took (closing intervals, recomputing the periods in progress) |
//! | `accounting_cycle_failures_total` | | accounting service cycles that failed |

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::family::Family;

use super::{ApiError, ReloadState, Shared};
use crate::telemetry::metrics::{self as telemetry, FloatGauge, Labels, Live, Registry};

/// The metrics of the process, beside those of the running pipeline: build and process
/// ([`telemetry::register_process`]), reloads, whether a pipeline runs, its readings rate and
/// the destinations' backlogs (a store query at each scrape).
pub struct ProcessMetrics {
    registry: Registry,
    pipeline_running: FloatGauge,
    readings_per_second: FloatGauge,
    outbox_depth: Family<Labels, FloatGauge>,
    outbox_age: Family<Labels, FloatGauge>,
    /// Held from refreshing the backlogs to encoding, so that scrapes do not interleave.
    scrape: Mutex<()>,
}

impl ProcessMetrics {
    pub(super) fn new(started: Instant, reload: &Arc<Mutex<ReloadState>>) -> ProcessMetrics {
        let mut registry = telemetry::registry();
        telemetry::register_process(&mut registry, started);
        let pipeline_running = FloatGauge::default();
        registry.register(
            "pipeline_running",
            "1 while a pipeline runs (0 while starting, reloading or stopping)",
            pipeline_running.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads asked for with SIGHUP",
            Live::counter(reload.clone(), |r| lock(r).reloads),
        );
        registry.register(
            "config_reload_failures",
            "Reloads whose configuration was rejected or could not start",
            Live::counter(reload.clone(), |r| lock(r).failures),
        );
        let readings_per_second = FloatGauge::default();
        registry.register(
            "readings_per_second",
            "Readings processed per second over the last 10 s",
            readings_per_second.clone(),
        );
        let outbox_depth = Family::<Labels, FloatGauge>::default();
        registry.register(
            "output_outbox_depth",
            "Committed readings the destination has not confirmed",
            outbox_depth.clone(),
        );
        let outbox_age = Family::<Labels, FloatGauge>::default();
        registry.register(
            "output_outbox_age_seconds",
            "Age of the oldest reading the destination has not confirmed (0 when none waits)",
            outbox_age.clone(),
        );
        ProcessMetrics {
            registry,
            pipeline_running,
            readings_per_second,
            outbox_depth,
            outbox_age,
            scrape: Mutex::new(()),
        }
    }

    /// A pipeline started (true) or stopped (false).
    pub(super) fn set_running(&self, running: bool) {
        self.pipeline_running.set(if running { 1.0 } else { 0.0 });
        if !running {
            self.readings_per_second.set(0.0);
        }
    }

    /// The readings rate, sampled once a second.
    pub(super) fn set_rate(&self, per_second: f64) {
        self.readings_per_second.set(per_second);
    }

    /// The exposition: the process's metrics with `backlogs`, then `pipeline`'s.
    pub fn render(
        &self,
        pipeline: Option<&Registry>,
        backlogs: &[super::api::Backlog],
    ) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = lock(&self.scrape);
        self.outbox_depth.clear();
        self.outbox_age.clear();
        for b in backlogs {
            let l = vec![("destination", b.destination.clone())];
            self.outbox_depth.get_or_create(&l).set(b.depth as f64);
            self.outbox_age.get_or_create(&l).set(b.age_seconds);
        }
        let mut out = String::new();
        telemetry::encode(&mut out, std::iter::once(&self.registry).chain(pipeline))?;
        Ok(out)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    let text = shared
        .metrics
        .render(gw.as_ref().map(|g| &*g.metrics), &backlogs)
        .map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
