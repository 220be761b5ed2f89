//! The processing stage's metrics: readings, the commit latency histogram it observes, and the
//! alert engine's state (`alerts_firing`, `alert_firing`, `alert_events_total`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;

use super::{ActiveAlerts, ProcessingStats};
use crate::telemetry::metrics::{register_live, CounterDef, Live, Registry};

const COUNTERS: [CounterDef<ProcessingStats>; 3] = [
    ("readings", "Readings processed", |s| {
        s.readings.load(Relaxed)
    }),
    (
        "bad_readings",
        "Readings without a usable value (timeouts, NaN, sentinels)",
        |s| s.bad_readings.load(Relaxed),
    ),
    (
        "alert_events",
        "Alert transitions (pending, firing, resolved)",
        |s| s.alert_events.load(Relaxed),
    ),
];

/// Registers the processing stage's metrics in `reg`: `stats` are updated as batches pass,
/// `active` as alerts fire and resolve.
pub fn register(reg: &mut Registry, stats: &Arc<ProcessingStats>, active: &ActiveAlerts) {
    register_live(reg, stats, &COUNTERS, &[]);
    reg.register(
        "store_commit_latency_seconds",
        "Time from handing readings to the store writer until they are committed (sampled once a second)",
        stats.commit_latency.clone(),
    );
    reg.register(
        "alerts_firing",
        "Alert rules firing",
        Live::gauge(active.clone(), |a| {
            Some(a.lock().unwrap_or_else(|p| p.into_inner()).len() as f64)
        }),
    );
    reg.register(
        "alert_firing",
        "1 per firing alert rule",
        FiringAlerts(active.clone()),
    );
}

/// `alert_firing{rule, device, severity} 1` for each alert firing now.
#[derive(Debug)]
struct FiringAlerts(ActiveAlerts);

impl EncodeMetric for FiringAlerts {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let active = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for e in active.values() {
            let labels = [
                ("rule", e.rule.as_str()),
                ("device", e.device.as_str()),
                ("severity", e.severity),
            ];
            encoder.encode_family(&labels)?.encode_gauge(&1.0)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}
