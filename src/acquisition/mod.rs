//! Acquisition: the sources that talk to meters and turn what they answer into [`Reading`]s.
//!
//! Each source sends batches of readings into one bounded channel; when the pipeline is busy the
//! send waits, which slows polling instead of growing memory.
//!
//! [`Reading`]: crate::readings::Reading

pub mod bcd;
pub mod cjt188;
pub mod config;
pub mod dlt645;
pub mod meter_bus;
pub mod metrics;
pub mod modbus;
pub mod mqtt;
pub mod opcua;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use crate::log_limit::LogLimiter;
use crate::readings::{now_ms, TimestampMs};

/// A batch of readings from a source. `ack`, when given, is answered once the readings are
/// committed to the store (MQTT acknowledges its messages to the broker only then).
#[derive(Debug)]
pub struct SourceBatch {
    pub readings: Vec<crate::readings::Reading>,
    pub ack: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SourceBatch {
    pub fn new(readings: Vec<crate::readings::Reading>) -> Self {
        SourceBatch {
            readings,
            ack: None,
        }
    }
}

/// Live health of one device, shared between its poller and whoever reports on it.
#[derive(Debug, Default)]
pub struct DeviceStatus {
    online: AtomicBool,
    last_success_ms: AtomicI64,
    consecutive_failures: AtomicU32,
    requests: AtomicU64,
    failures: AtomicU64,
    exceptions: AtomicU64,
    /// Modbus exceptions by code (index = exception code, 0..=15).
    exception_codes: [AtomicU64; 16],
    last_round_trip_us: AtomicU64,
    /// Frames that were not a valid answer (serial noise, bad checksums) while waiting for one.
    garbage: AtomicU64,
    /// Why the device last failed (connect, authentication, certificate…), for people.
    last_error: std::sync::Mutex<Option<String>>,
    /// Poll slots that passed without a poll (the device or its link could not keep up).
    missed_slots: AtomicU64,
    /// The last poll missed slots or ended after the next slot was due.
    behind: AtomicBool,
    /// Since when the device has not answered (`/readyz`, with `[health] source_grace`).
    down: crate::health::Liveness,
    /// How a source that has a choice reads the device now (OPC UA), else none.
    mode: std::sync::Mutex<Option<AcquisitionMode>>,
    /// When the device's poller (shared by the devices of its line) last ended a poll, to see
    /// a poller that hangs without failing; pollers that keep none are never stalled.
    pulse: std::sync::OnceLock<Arc<crate::health::Pulse>>,
}

/// How a source that can be told of changes reads its device (OPC UA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AcquisitionMode {
    /// The server reports changes (a subscription).
    Subscribe,
    /// Every value is read each interval, as configured.
    Poll,
    /// Read each interval because the server refused a subscription (`mode = "subscribe"`).
    PollFallback,
}

/// A copy of a [`DeviceStatus`] at one instant.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceStatusSnapshot {
    pub online: bool,
    pub last_success_ms: Option<TimestampMs>,
    pub consecutive_failures: u32,
    pub requests: u64,
    pub failures: u64,
    pub exceptions: u64,
    /// Exceptions by code, e.g. `{2: 17}` for 17 × "illegal data address".
    pub exception_codes: BTreeMap<u8, u64>,
    pub last_round_trip_ms: f64,
    /// Garbled frames skipped while waiting for this device's answers (serial lines).
    pub garbage: u64,
    /// Why the device last failed, when a source says so (OPC UA: refused credentials…).
    pub last_error: Option<String>,
    /// Poll slots missed since start.
    pub missed_slots: u64,
    /// Falling behind its interval now.
    pub behind: bool,
    /// How the source reads the device now, for sources that have a choice (OPC UA):
    /// `subscribe`, `poll`, or `poll_fallback` when the server refused a subscription.
    pub mode: Option<AcquisitionMode>,
}

impl DeviceStatus {
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    pub fn record_success(&self) {
        self.online.store(true, Ordering::Relaxed);
        self.last_success_ms.store(now_ms(), Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.down.mark_up();
    }

    /// How long the device has not answered (since its first failure after a success).
    pub fn down_for(&self) -> Option<Duration> {
        self.down.down_for()
    }

    /// The pulse of the task that polls the device (set once, when the poller starts).
    pub fn watch(&self, pulse: Arc<crate::health::Pulse>) {
        let _ = self.pulse.set(pulse);
    }

    /// How long the device's poller has ended no poll, once that is longer than its interval
    /// (or backoff), its timeouts and `[health] source_grace`: the poller hangs.
    pub fn stalled_for(&self) -> Option<Duration> {
        self.pulse.get().and_then(|p| p.stalled_for())
    }

    /// Returns the number of consecutive failures including this one.
    pub fn record_failure(&self) -> u32 {
        self.online.store(false, Ordering::Relaxed);
        self.down.mark_down();
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn record_request(&self, round_trip: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.last_round_trip_us
            .store(round_trip.as_micros() as u64, Ordering::Relaxed);
    }

    /// Remembers why the device failed (shown in the device API until the next success).
    pub fn record_error(&self, message: impl Into<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.into());
    }

    /// Records how the source reads the device now (see [`AcquisitionMode`]).
    pub fn set_mode(&self, mode: AcquisitionMode) {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = Some(mode);
    }

    /// Forgets the last error (the source works again).
    pub fn clear_error(&self) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records how a poll kept to the schedule: `missed` slots passed without a poll, `behind`
    /// when the device is not keeping to its interval. Returns the missed total.
    pub fn record_schedule(&self, missed: u64, behind: bool) -> u64 {
        self.behind.store(behind, Ordering::Relaxed);
        self.missed_slots.fetch_add(missed, Ordering::Relaxed) + missed
    }

    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Relaxed)
    }

    pub fn record_exception(&self, code: u8) {
        self.exceptions.fetch_add(1, Ordering::Relaxed);
        self.exception_codes[usize::from(code & 0x0F)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_garbage(&self) {
        self.garbage.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> DeviceStatusSnapshot {
        let last = self.last_success_ms.load(Ordering::Relaxed);
        DeviceStatusSnapshot {
            online: self.is_online(),
            last_success_ms: (last != 0).then_some(last),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            exceptions: self.exceptions.load(Ordering::Relaxed),
            exception_codes: self
                .exception_codes
                .iter()
                .enumerate()
                .filter_map(|(c, n)| {
                    let n = n.load(Ordering::Relaxed);
                    (n > 0).then_some((c as u8, n))
                })
                .collect(),
            last_round_trip_ms: self.last_round_trip_us.load(Ordering::Relaxed) as f64 / 1000.0,
            garbage: self.garbage.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            missed_slots: self.missed_slots.load(Ordering::Relaxed),
            behind: self.is_behind(),
            mode: *self.mode.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }
}

/// Status of every configured device, by id.
pub type DeviceRegistry = BTreeMap<crate::readings::DeviceId, Arc<DeviceStatus>>;

/// Logs one line per device every `every`: the self-observation counters of acquisition.
pub async fn log_device_status(
    devices: DeviceRegistry,
    every: Duration,
    cancel: CancellationToken,
) {
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
                last_success = %crate::readings::rfc3339_utc(s.last_success_ms),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_failures_until_success() {
        let s = DeviceStatus::default();
        assert_eq!(s.record_failure(), 1);
        assert_eq!(s.record_failure(), 2);
        assert!(!s.is_online());
        s.record_success();
        let snap = s.snapshot();
        assert!(snap.online);
        assert_eq!(snap.consecutive_failures, 0);
        assert_eq!(snap.failures, 2);
    }
}
