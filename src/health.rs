//! Health of the links a gateway depends on: since when a source (a meter, a gateway's line, an
//! MQTT broker) or a sink (an InfluxDB destination, an MQTT output) has been down, measured on
//! the monotonic clock (a wall-clock step never makes a link look down longer or shorter), and
//! `[health]`: how long each may be down before `/readyz` says the gateway is not ready.
//!
//! A task can also hang without failing (a deadlock, a blocking call, an await outside the
//! timeouts): its link never looks down, because nothing ends. A [`Pulse`] records when such a
//! task last finished a unit of work, answered or failed, to tell that it stalled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::units::duration;

/// Longest grace `check` accepts: a day. Longer would hide a dead link from the service manager
/// and the monitoring for longer than anyone would want.
pub const MAX_GRACE: Duration = Duration::from_secs(86_400);

/// `[health]`: how long a source or a sink may be down before the gateway is not ready.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// A source: every device of a line or gateway (or every polled device of the site) not
    /// answering, or the MQTT source's broker not connected.
    #[serde(default = "default_source_grace", with = "duration")]
    pub source_grace: Duration,
    /// A sink: an InfluxDB destination failing its writes, an MQTT output or readings
    /// destination not connected to its broker. Readings wait in the store meanwhile, so a
    /// sink may be down longer than a source before anyone needs to act.
    #[serde(default = "default_sink_grace", with = "duration")]
    pub sink_grace: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            source_grace: default_source_grace(),
            sink_grace: default_sink_grace(),
        }
    }
}

fn default_source_grace() -> Duration {
    Duration::from_secs(60)
}

fn default_sink_grace() -> Duration {
    Duration::from_secs(300)
}

impl HealthConfig {
    /// Problems as (key, message), for `check`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        for (key, v) in [
            ("source_grace", self.source_grace),
            ("sink_grace", self.sink_grace),
        ] {
            if v > MAX_GRACE {
                p.push((
                    key,
                    format!(
                        "{} is too long; the most is \"1d\" (\"0s\" says not ready at the first failure)",
                        humantime::format_duration(v)
                    ),
                ));
            }
        }
        p
    }
}

/// Since when a link has been down (first failure after the last success), or not down. A link
/// nobody tried yet is not down.
#[derive(Debug, Default)]
pub struct Liveness {
    down_since: Mutex<Option<Instant>>,
}

impl Liveness {
    /// The link works (a poll answered, a connection acknowledged, a write accepted).
    pub fn mark_up(&self) {
        *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The link failed; it is down since its first failure after the last success.
    pub fn mark_down(&self) {
        self.down_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
    }

    /// How long the link has been down, `None` while it works (or was never tried).
    pub fn down_for(&self) -> Option<Duration> {
        self.down_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// Down for at least `grace`.
    pub fn down_beyond(&self, grace: Duration) -> bool {
        self.down_for().is_some_and(|d| d >= grace)
    }
}

/// The stall rule: a task that said it would end its next unit of work within `expected` (the
/// wait until its next poll is due, and the time one poll may take with its timeouts) has
/// stalled once it has ended none for longer than `expected` + `grace`. A task waiting for the
/// next stage to take what it produced is not stalled: the pipeline's own checks see that wait.
pub fn is_stalled(silent: Duration, expected: Duration, grace: Duration, waiting: bool) -> bool {
    !waiting && silent > expected.saturating_add(grace)
}

/// When a task (a poller) last ended a unit of work, answered or failed, and within how long it
/// expects to end the next one, on the monotonic clock; shared by the devices the task polls.
#[derive(Debug)]
pub struct Pulse {
    origin: Instant,
    /// Milliseconds from `origin` to the last beat (the task's start until the first one).
    last_ms: AtomicU64,
    /// Milliseconds after the last beat within which the next is expected.
    expected_ms: AtomicU64,
    waiting: AtomicBool,
    grace: Duration,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Pulse {
    /// A pulse for a task that ends its first unit of work within `first`, stalled after `grace`
    /// more (`[health] source_grace`).
    pub fn new(first: Duration, grace: Duration) -> Self {
        Pulse {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            expected_ms: AtomicU64::new(millis(first)),
            waiting: AtomicBool::new(false),
            grace,
        }
    }

    /// A unit of work ended (a poll answered or failed); the next is expected within `next`.
    pub fn beat(&self, next: Duration) {
        self.expected_ms.store(millis(next), Ordering::Relaxed);
        self.last_ms
            .store(millis(self.origin.elapsed()), Ordering::Relaxed);
    }

    /// The task waits (`true`) or no longer waits for the next stage to take its output.
    pub fn set_waiting(&self, waiting: bool) {
        self.waiting.store(waiting, Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// How long the task has been silent when it stalled by [`is_stalled`], `None` otherwise.
    pub fn stalled_for(&self) -> Option<Duration> {
        let silent = self.silent_for();
        is_stalled(
            silent,
            Duration::from_millis(self.expected_ms.load(Ordering::Relaxed)),
            self.grace,
            self.waiting.load(Ordering::Relaxed),
        )
        .then_some(silent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_stalls_after_its_normal_gap_and_the_grace_unless_it_waits_for_the_pipeline() {
        let (gap, grace) = (Duration::from_secs(5), Duration::from_secs(60));
        assert!(!is_stalled(Duration::from_secs(65), gap, grace, false));
        assert!(is_stalled(Duration::from_millis(65_001), gap, grace, false));
        assert!(!is_stalled(Duration::from_secs(3600), gap, grace, true));
        assert!(!is_stalled(Duration::MAX, Duration::MAX, grace, false));

        let p = Pulse::new(Duration::from_millis(20), Duration::from_millis(20));
        assert_eq!(p.stalled_for(), None);
        std::thread::sleep(Duration::from_millis(60));
        let s = p.stalled_for().unwrap();
        assert!(s >= Duration::from_millis(60), "{s:?}");
        p.set_waiting(true);
        assert_eq!(p.stalled_for(), None);
        p.set_waiting(false);
        // A beat expecting the next one in an hour (a device in backoff): not stalled for long.
        p.beat(Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(p.stalled_for(), None);
        assert!(p.silent_for() >= Duration::from_millis(60));
    }

    #[test]
    fn down_since_the_first_failure_until_a_success() {
        let l = Liveness::default();
        assert_eq!(l.down_for(), None);
        l.mark_down();
        std::thread::sleep(Duration::from_millis(30));
        l.mark_down();
        let d = l.down_for().unwrap();
        assert!(d >= Duration::from_millis(30), "{d:?}");
        assert!(l.down_beyond(Duration::from_millis(30)));
        assert!(!l.down_beyond(Duration::from_secs(60)));
        l.mark_up();
        assert_eq!(l.down_for(), None);
        assert!(!l.down_beyond(Duration::ZERO));
    }

    #[test]
    fn graces_are_bounded() {
        let mut h = HealthConfig::default();
        assert!(h.problems().is_empty());
        assert_eq!(h.source_grace, Duration::from_secs(60));
        assert_eq!(h.sink_grace, Duration::from_secs(300));
        h.sink_grace = Duration::from_secs(86_401);
        let p = h.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "sink_grace");
    }
}
