//! The outputs' metrics: per destination (`output_*`, label `destination`: `influxdb.NAME`,
//! `mqtt_readings.NAME`) from the [`OutputStatus`] each output updates at each request, and the
//! MQTT output's (`mqtt_output_*`) from its [`MqttOutputStats`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::influxdb::OutputStatus;
use super::mqtt::MqttOutputStats;
use crate::telemetry::metrics::{
    flag, register_live, register_live_families, CounterDef, GaugeDef, Live, Registry,
};

const COUNTERS: [CounterDef<OutputStatus>; 4] = [
    ("points_sent", "Points the destination confirmed", |s| {
        s.points_sent.load(Relaxed)
    }),
    ("requests", "Write requests sent to the destination", |s| {
        s.requests.load(Relaxed)
    }),
    (
        "request_failures",
        "Write requests that did not succeed",
        |s| s.requests_failed.load(Relaxed),
    ),
    (
        "quarantined",
        "Points the destination rejected for good",
        |s| s.quarantined.load(Relaxed),
    ),
];

const GAUGES: [GaugeDef<OutputStatus>; 1] = [(
    "refused",
    "1 while the destination refuses the gateway (credentials, missing database)",
    |s| flag(s.refused.load(Relaxed)),
)];

/// Registers the `output_*` metrics of `outputs` (by destination) in `reg`.
pub fn register_destinations(reg: &mut Registry, outputs: &BTreeMap<String, Arc<OutputStatus>>) {
    register_live_families(
        reg.sub_registry_with_prefix("output"),
        "destination",
        outputs,
        &COUNTERS,
        &GAUGES,
    );
}

const MQTT_COUNTERS: [CounterDef<MqttOutputStats>; 2] = [
    ("published", "Messages published", |m| {
        m.published.load(Relaxed)
    }),
    (
        "acknowledged",
        "Messages the broker acknowledged (PUBACK)",
        |m| m.acknowledged.load(Relaxed),
    ),
];

const MQTT_GAUGES: [GaugeDef<MqttOutputStats>; 1] = [(
    "connected",
    "1 while the MQTT output is connected to the broker",
    |m| flag(m.connected.load(Relaxed)),
)];

/// Registers the MQTT output's metrics (`mqtt_output_*`) in `reg`.
pub fn register_mqtt(reg: &mut Registry, stats: &Arc<MqttOutputStats>) {
    register_live(
        reg.sub_registry_with_prefix("mqtt_output"),
        stats,
        &MQTT_COUNTERS,
        &MQTT_GAUGES,
    );
}

/// Registers `output_connected` of the readings destinations over MQTT (by destination: 1
/// while connected to its broker).
pub fn register_mqtt_readings(
    reg: &mut Registry,
    connected: &BTreeMap<String, Arc<std::sync::atomic::AtomicBool>>,
) {
    reg.sub_registry_with_prefix("output").register(
        "connected",
        "1 while the destination is connected to its MQTT broker (mqtt_readings destinations)",
        Live::gauges("destination", connected, |c| flag(c.load(Relaxed))),
    );
}
