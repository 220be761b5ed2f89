//! The time gate of the processing stage: no reading dated by a clock that cannot be trusted
//! reaches the store as good (see [`crate::clock`]).
//!
//! - While the clock is not trusted, batches are held in memory, in order, with the monotonic
//!   time they arrived (at most [`MAX_HELD_READINGS`]; beyond that the stage stops taking
//!   batches and the sources wait, as with a slow store). Their acknowledgements (MQTT) wait too.
//! - Once it is trusted again, the held readings stamped by the local clock (within
//!   [`LOCAL_WINDOW_MS`] of the wall clock when they arrived) are dated again: the trusted time
//!   now minus the monotonic time since they arrived. Readings that carry their source's own
//!   time keep it.
//! - Every reading is judged on its time: before the build date, or more than a day ahead of
//!   the trusted time, it is stored as bad at the time it arrived, its own date in the reason. A locally stamped reading dated
//!   before the previous good reading of its series (the clock stepped back a little, which a
//!   trusted clock may) is bad too, so a counter never sees time run backwards: the consumption
//!   of the step is in the next reading, nothing is lost.
//! - When the gateway stops with readings held, readings a source waits on (MQTT) are not
//!   acknowledged, so the broker delivers them again; the others are stored as bad with their
//!   value in the reason, never as good.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::acquisition::SourceBatch;
use crate::clock::{Clock, Observation};
use crate::readings::{rfc3339_utc, Quality, Reading};

use super::LatestValues;

/// Most readings held while the clock is not trusted.
pub const MAX_HELD_READINGS: usize = 200_000;
/// A reading dated within this of the wall clock when it reached processing was stamped by the
/// local clock.
pub const LOCAL_WINDOW_MS: i64 = 60_000;
/// Readings dated further ahead than this of the trusted time are bad.
pub const MAX_AHEAD_MS: i64 = 24 * 3_600_000;

struct Held {
    batch: SourceBatch,
    mono: Instant,
    wall_ms: i64,
}

/// Holds, dates again and judges readings by the clock's trust.
pub struct TimeGate {
    clock: Arc<Clock>,
    held: VecDeque<Held>,
    held_readings: usize,
}

impl TimeGate {
    pub fn new(clock: Arc<Clock>) -> TimeGate {
        TimeGate {
            clock,
            held: VecDeque::new(),
            held_readings: 0,
        }
    }

    /// True while batches are held.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// True when no more batches may be taken.
    pub fn full(&self) -> bool {
        self.held_readings >= MAX_HELD_READINGS
    }

    /// A batch arrived: the batches that may go on now (held ones first), judged and dated.
    pub fn admit(&mut self, batch: SourceBatch, latest: &LatestValues) -> Vec<SourceBatch> {
        let obs = self.clock.observe();
        if !obs.trusted {
            self.held_readings += batch.readings.len();
            self.held.push_back(Held {
                batch,
                mono: obs.mono,
                wall_ms: obs.wall_ms,
            });
            self.clock.set_held(self.held_readings as u64);
            return Vec::new();
        }
        let mut out = self.release(&obs, latest);
        let mut batch = batch;
        self.judge(&mut batch.readings, &obs, latest);
        out.push(batch);
        out
    }

    /// The held batches, when the clock is trusted again (called every second while holding).
    pub fn poll(&mut self, latest: &LatestValues) -> Vec<SourceBatch> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let obs = self.clock.observe();
        if !obs.trusted {
            return Vec::new();
        }
        self.release(&obs, latest)
    }

    fn release(&mut self, obs: &Observation, latest: &LatestValues) -> Vec<SourceBatch> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.held.len());
        let mut redated = 0u64;
        for mut h in std::mem::take(&mut self.held) {
            let since = i64::try_from(obs.mono.saturating_duration_since(h.mono).as_millis())
                .unwrap_or(i64::MAX);
            let arrived = obs.wall_ms.saturating_sub(since);
            for r in &mut h.batch.readings {
                let age = h.wall_ms.saturating_sub(r.ts_ms);
                if age.abs() <= LOCAL_WINDOW_MS {
                    r.ts_ms = arrived.saturating_sub(age);
                    redated += 1;
                }
            }
            self.judge(&mut h.batch.readings, obs, latest);
            out.push(h.batch);
        }
        tracing::warn!(
            batches = out.len(),
            readings = self.held_readings,
            redated,
            "clock trusted: held readings released, those stamped by the local clock dated again by the monotonic clock"
        );
        self.clock.add_redated(redated);
        self.held_readings = 0;
        self.clock.set_held(0);
        out
    }

    /// Marks the readings whose time is implausible as bad, with the reason.
    fn judge(&self, readings: &mut [Reading], obs: &Observation, latest: &LatestValues) {
        let floor = self.clock.floor();
        let mut rejected = 0;
        for r in readings.iter_mut() {
            if r.good_value().is_none() {
                continue;
            }
            let why = if r.ts_ms < floor {
                Some(format!(
                    "dated {}, before the build date {}: the clock was wrong",
                    rfc3339_utc(Some(r.ts_ms)),
                    rfc3339_utc(Some(floor))
                ))
            } else if r.ts_ms > obs.wall_ms.saturating_add(MAX_AHEAD_MS) {
                Some(format!(
                    "dated {}, more than a day ahead of the clock",
                    rfc3339_utc(Some(r.ts_ms))
                ))
            } else {
                match latest.get(&r.device, r.quantity) {
                    Some((prev, _))
                        if prev > r.ts_ms
                            && obs.wall_ms.saturating_sub(r.ts_ms).abs() <= LOCAL_WINDOW_MS =>
                    {
                        Some(format!(
                            "dated {}, before the previous reading of the series ({}): the clock stepped back",
                            rfc3339_utc(Some(r.ts_ms)),
                            rfc3339_utc(Some(prev))
                        ))
                    }
                    _ => None,
                }
            };
            if let Some(why) = why {
                // An absurd date is kept in the reason only: stored at the trusted time of
                // arrival, it cannot reach a far period or the store's newest time.
                if r.ts_ms < floor || r.ts_ms > obs.wall_ms {
                    r.ts_ms = obs.wall_ms;
                }
                r.value = None;
                r.quality = Quality::Bad(why);
                rejected += 1;
            }
        }
        if rejected > 0 {
            self.clock.add_rejected(rejected);
        }
    }

    /// The gateway stops while readings are held: the batches to store (their readings bad, the
    /// values in the reason); batches a source waits on are dropped unacknowledged.
    pub fn drain_at_shutdown(&mut self) -> Vec<SourceBatch> {
        let mut out = Vec::new();
        let mut rejected = 0;
        let mut unacked = 0;
        let estimate = self.clock.estimated_now_ms();
        for mut h in std::mem::take(&mut self.held) {
            if h.batch.ack.is_some() {
                unacked += h.batch.readings.len();
                continue;
            }
            for r in &mut h.batch.readings {
                let was = r
                    .good_value()
                    .map(|v| format!("value {v}"))
                    .unwrap_or_else(|| "no value".into());
                r.value = None;
                r.quality = Quality::Bad(format!(
                    "clock not trusted at acquisition (read {}, {was}); the gateway stopped before it was",
                    rfc3339_utc(Some(r.ts_ms))
                ));
                r.ts_ms = estimate.unwrap_or(r.ts_ms);
                rejected += 1;
            }
            out.push(h.batch);
        }
        if rejected > 0 || unacked > 0 {
            tracing::error!(
                stored_bad = rejected,
                left_to_the_broker = unacked,
                "stopping with readings held for an untrusted clock"
            );
        }
        self.clock.add_rejected(rejected);
        self.held_readings = 0;
        self.clock.set_held(0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::Quantity;

    fn now() -> i64 {
        crate::readings::now_ms()
    }

    #[test]
    fn a_trusted_clock_passes_readings_and_rejects_absurd_times() {
        let mut gate = TimeGate::new(Clock::with_floor(None, 1_000_000));
        let mut latest = LatestValues::new();
        latest.insert("m", Quantity::EnergyImport, now() + 30_000, 5.0);
        let out = gate.admit(
            SourceBatch::new(vec![
                Reading::new("m", Quantity::ActivePower, 1.0, now()),
                Reading::new("m", Quantity::ActivePower, 1.0, 5),
                Reading::new("m", Quantity::ActivePower, 1.0, now() + 2 * MAX_AHEAD_MS),
                Reading::new("m", Quantity::EnergyImport, 4.0, now()),
                Reading::new("m", Quantity::EnergyImport, 4.0, now() - 3_600_000),
            ]),
            &latest,
        );
        let q: Vec<&str> = out[0].readings.iter().map(|r| r.quality.as_str()).collect();
        assert_eq!(q, ["good", "bad", "bad", "bad", "good"]);
        let reason = out[0].readings[3].quality.reason().unwrap();
        assert!(reason.contains("stepped back"), "{reason}");
        assert_eq!(gate.clock.rejected(), 3);
    }

    #[test]
    fn an_untrusted_clock_holds_and_shutdown_never_stores_good() {
        let mut gate = TimeGate::new(Clock::with_floor(None, now() + 86_400_000));
        let latest = LatestValues::new();
        let out = gate.admit(
            SourceBatch::new(vec![Reading::new("m", Quantity::ActivePower, 1.0, now())]),
            &latest,
        );
        assert!(out.is_empty());
        assert!(gate.holding());
        assert_eq!(gate.clock.held(), 1);
        assert!(gate.poll(&latest).is_empty());
        let (tx, _rx) = tokio::sync::oneshot::channel();
        gate.admit(
            SourceBatch {
                readings: vec![Reading::new("m", Quantity::ActivePower, 2.0, now())],
                ack: Some(tx),
            },
            &latest,
        );
        let out = gate.drain_at_shutdown();
        assert_eq!(out.len(), 1, "the acknowledged batch is left to the broker");
        let r = &out[0].readings[0];
        assert_eq!(r.quality.as_str(), "bad");
        assert!(r.quality.reason().unwrap().contains("value 1"), "{r:?}");
        assert_eq!(gate.clock.held(), 0);
    }
}
