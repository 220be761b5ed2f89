//! Acquisition's metrics: per device (`device_*`, label `device`) from the [`DeviceStatus`] its
//! poller updates at each request, and the MQTT source's (`mqtt_source_*`) from its
//! [`MqttStats`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::mqtt::MqttStats;
use super::{DeviceRegistry, DeviceStatus};
use crate::telemetry::metrics::{
    flag, register_live, register_live_families, CounterDef, GaugeDef, Registry,
};

const DEVICE_COUNTERS: [CounterDef<DeviceStatus>; 5] = [
    ("polls", "Requests sent to the device", |s| {
        s.requests.load(Relaxed)
    }),
    (
        "errors",
        "Failed polls of the device (timeouts, transport errors)",
        |s| s.failures.load(Relaxed),
    ),
    (
        "exceptions",
        "Modbus exception answers from the device",
        |s| s.exceptions.load(Relaxed),
    ),
    (
        "garbage_frames",
        "Garbled frames skipped while waiting for the device's answers (serial noise, bad checksums)",
        |s| s.garbage.load(Relaxed),
    ),
    (
        "missed_slots",
        "Poll slots of the device that passed without a poll",
        |s| s.missed_slots.load(Relaxed),
    ),
];

const DEVICE_GAUGES: [GaugeDef<DeviceStatus>; 6] = [
    ("online", "1 when the device's last poll succeeded", |s| {
        flag(s.is_online())
    }),
    ("consecutive_failures", "Failed polls in a row", |s| {
        Some(f64::from(s.consecutive_failures.load(Relaxed)))
    }),
    (
        "behind",
        "1 while the device cannot keep to its poll interval",
        |s| flag(s.is_behind()),
    ),
    (
        "stalled",
        "1 while the device's poller has ended no poll (answered or failed) for longer than its interval or backoff, its timeouts and [health] source_grace: it hangs",
        |s| flag(s.stalled_for().is_some()),
    ),
    (
        "round_trip_seconds",
        "Round trip of the device's last request",
        |s| Some(s.last_round_trip_us.load(Relaxed) as f64 / 1e6),
    ),
    (
        "last_success_timestamp_seconds",
        "When the device last answered (Unix time)",
        |s| {
            let ms = s.last_success_ms.load(Relaxed);
            (ms != 0).then(|| ms as f64 / 1000.0)
        },
    ),
];

/// Registers the `device_*` metrics of `devices` in `reg`.
pub fn register_devices(reg: &mut Registry, devices: &DeviceRegistry) {
    register_live_families(
        reg.sub_registry_with_prefix("device"),
        "device",
        devices,
        &DEVICE_COUNTERS,
        &DEVICE_GAUGES,
    );
}

const MQTT_COUNTERS: [CounterDef<MqttStats>; 5] = [
    ("connects", "Connections to the broker", |m| {
        m.connects.load(Relaxed)
    }),
    ("messages", "Messages received", |m| {
        m.messages.load(Relaxed)
    }),
    ("readings", "Readings taken from messages", |m| {
        m.readings.load(Relaxed)
    }),
    (
        "bad_messages",
        "Messages counted as bad (unreadable, oversized, unknown device or quantity)",
        |m| m.bad_messages.load(Relaxed),
    ),
    (
        "new_devices_refused",
        "Messages refused for a new device beyond the limit of devices not in the configuration",
        |m| m.new_devices_refused.load(Relaxed),
    ),
];

const MQTT_GAUGES: [GaugeDef<MqttStats>; 1] = [(
    "connected",
    "1 while the MQTT source is connected to the broker",
    |m| flag(m.connected.load(Relaxed)),
)];

/// Registers the MQTT source's metrics (`mqtt_source_*`) in `reg`.
pub fn register_mqtt(reg: &mut Registry, stats: &Arc<MqttStats>) {
    register_live(
        reg.sub_registry_with_prefix("mqtt_source"),
        stats,
        &MQTT_COUNTERS,
        &MQTT_GAUGES,
    );
}
