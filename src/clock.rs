//! Clock sanity: whether the wall clock can be trusted to date readings.
//!
//! Edge boxes without a battery-backed clock (RTC) boot in 1970 or wherever the clock stood, and
//! NTP steps the clock later, sometimes by years. A reading dated by such a clock must never be
//! stored as good, or a counter would turn the time step into consumption. The guard compares
//! the wall clock with the monotonic clock (which never steps):
//!
//! - a **step** is a change of the wall clock that the monotonic clock does not show (more than
//!   [`STEP_TOLERANCE_MS`]); each is counted and logged (rate-limited);
//! - the clock is **not trusted** while it is before the build date ([`floor_ms`]), after a step
//!   of more than [`MAX_STEP_MS`], or, at start, more than [`BEHIND_TOLERANCE_MS`] behind the
//!   newest reading in the store;
//! - it is **trusted again** when it is back in line with the last trusted time plus the
//!   monotonic progress since then (within [`MAX_STEP_MS`]), or when it has run without a step
//!   for [`SETTLE`] (never while before the build date).
//!
//! The processing stage holds readings while the clock is not trusted and dates them again by
//! the monotonic clock once it is; the store writer does not prune or expire by age meanwhile.
//! Depends on nothing of ours but `log_limit`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::log_limit::LogLimiter;
use crate::telemetry::metrics::{flag, register_live, CounterDef, GaugeDef, Registry};

/// A difference between the wall and the monotonic clock's progress counted as a step.
pub const STEP_TOLERANCE_MS: i64 = 2_000;
/// Steps up to this size keep a trusted clock trusted (NTP corrections of a drifting clock), and
/// an untrusted clock this close to the last trusted time plus the monotonic progress is trusted.
pub const MAX_STEP_MS: i64 = 5 * 60_000;
/// At start, a clock this far behind the newest stored reading is not trusted.
pub const BEHIND_TOLERANCE_MS: i64 = 24 * 3_600_000;
/// A clock that ran this long without a step is accepted (unless it is before the build date).
pub const SETTLE: Duration = Duration::from_secs(600);
/// The release date of this version, 2026-11-01T00:00:00Z: no reading is older than the binary.
pub const RELEASE_FLOOR_MS: i64 = 1_793_491_200_000;

/// The earliest plausible wall time: `SOURCE_DATE_EPOCH` at build time (seconds), or the
/// release date of this version, whichever is later.
pub fn floor_ms() -> i64 {
    let built = option_env!("SOURCE_DATE_EPOCH")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| s.checked_mul(1000))
        .unwrap_or(0);
    built.max(RELEASE_FLOOR_MS)
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms_between(a: Instant, b: Instant) -> i64 {
    i64::try_from(b.saturating_duration_since(a).as_millis()).unwrap_or(i64::MAX)
}

/// What one look at the clock found.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub trusted: bool,
    pub wall_ms: i64,
    pub mono: Instant,
}

#[derive(Debug)]
struct State {
    last_mono: Instant,
    last_wall: i64,
    /// The last moment the clock was trusted (at start: the newest stored reading), with the
    /// monotonic time it corresponds to.
    reference: Option<(Instant, i64)>,
    steady_since: Instant,
    trusted: bool,
    reason: String,
    log: LogLimiter,
    untrusted_log: LogLimiter,
}

/// The clock guard, shared by the stages of a pipeline and handed to the next one on reload.
#[derive(Debug)]
pub struct Clock {
    floor: i64,
    state: Mutex<State>,
    trusted: AtomicBool,
    steps: AtomicU64,
    held: AtomicU64,
    redated: AtomicU64,
    rejected: AtomicU64,
}

impl Clock {
    /// A guard for a store whose newest reading is dated `newest_stored` (ms).
    pub fn new(newest_stored: Option<i64>) -> Arc<Clock> {
        Self::with_floor(newest_stored, floor_ms())
    }

    /// [`Clock::new`] with another build-date floor (tests).
    pub fn with_floor(newest_stored: Option<i64>, floor: i64) -> Arc<Clock> {
        let mono = Instant::now();
        let wall = wall_ms();
        let (trusted, reason) = if wall < floor {
            (false, before_floor(wall, floor))
        } else {
            match newest_stored {
                Some(n) if wall < n.saturating_sub(BEHIND_TOLERANCE_MS) => (
                    false,
                    format!(
                        "the clock ({}) is behind the newest stored reading ({})",
                        fmt(wall),
                        fmt(n)
                    ),
                ),
                _ => (true, String::new()),
            }
        };
        if !trusted {
            tracing::error!(
                "clock not trusted (时钟不可信): {reason}; readings are held until it is (see the deploy notes: NTP, RTC)"
            );
        }
        let reference = if trusted {
            Some((mono, wall))
        } else {
            newest_stored.map(|n| (mono, n))
        };
        Arc::new(Clock {
            floor,
            state: Mutex::new(State {
                last_mono: mono,
                last_wall: wall,
                reference,
                steady_since: mono,
                trusted,
                reason,
                log: LogLimiter::new(Duration::from_secs(60)),
                untrusted_log: LogLimiter::new(Duration::from_secs(60)),
            }),
            trusted: AtomicBool::new(trusted),
            steps: AtomicU64::new(0),
            held: AtomicU64::new(0),
            redated: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    /// The build-date floor in use.
    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// Looks at the wall and monotonic clocks: detects steps and decides whether the wall clock
    /// is trusted now.
    pub fn observe(&self) -> Observation {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mono = Instant::now();
        let wall = wall_ms();
        let expected = st.last_wall.saturating_add(ms_between(st.last_mono, mono));
        let jump = wall.saturating_sub(expected);
        let stepped = jump.abs() > STEP_TOLERANCE_MS;
        if stepped {
            self.steps.fetch_add(1, Ordering::Relaxed);
            st.steady_since = mono;
            if let Some(suppressed) = st.log.allow() {
                tracing::warn!(
                    step_ms = jump,
                    from = %fmt(expected),
                    to = %fmt(wall),
                    suppressed,
                    "wall clock stepped (the monotonic clock did not)"
                );
            }
        }
        st.last_mono = mono;
        st.last_wall = wall;
        let was = st.trusted;
        let verdict: Result<(), String> = if wall < self.floor {
            Err(before_floor(wall, self.floor))
        } else if was {
            if stepped && jump.abs() > MAX_STEP_MS {
                Err(format!(
                    "the clock stepped by {} s, from {} to {}",
                    jump / 1000,
                    fmt(expected),
                    fmt(wall)
                ))
            } else {
                Ok(())
            }
        } else {
            let expected = st
                .reference
                .map(|(m, w)| w.saturating_add(ms_between(m, mono)));
            let in_line = expected.is_none_or(|e| wall.saturating_sub(e).abs() <= MAX_STEP_MS);
            if in_line {
                Ok(())
            } else if mono.saturating_duration_since(st.steady_since) >= SETTLE {
                tracing::warn!(
                    time = %fmt(wall),
                    "accepting the clock: it ran {} min without a step, though it does not match the last trusted time",
                    SETTLE.as_secs() / 60
                );
                Ok(())
            } else if stepped {
                Err(format!(
                    "the clock ({}) is far from the last trusted time plus the time since ({})",
                    fmt(wall),
                    fmt(expected.unwrap_or(wall))
                ))
            } else {
                Err(st.reason.clone())
            }
        };
        match verdict {
            Ok(()) => {
                st.reference = Some((mono, wall));
                if !was {
                    tracing::warn!(time = %fmt(wall), "clock trusted again (时钟恢复可信)");
                }
                st.trusted = true;
                st.reason.clear();
            }
            Err(reason) => {
                if was || stepped {
                    st.untrusted_log.reset();
                }
                if let Some(suppressed) = st.untrusted_log.allow() {
                    tracing::error!(
                        suppressed,
                        "clock not trusted (时钟不可信): {reason}; readings are held until it is"
                    );
                }
                st.trusted = false;
                st.reason = reason;
            }
        }
        self.trusted.store(st.trusted, Ordering::Relaxed);
        Observation {
            trusted: st.trusted,
            wall_ms: wall,
            mono,
        }
    }

    /// Whether the clock was trusted at the last look.
    pub fn trusted(&self) -> bool {
        self.trusted.load(Ordering::Relaxed)
    }

    /// Why the clock is not trusted (empty when it is).
    pub fn reason(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reason
            .clone()
    }

    /// The best estimate of the time now: the wall clock when trusted, else the last trusted
    /// time plus the monotonic progress since, else nothing.
    pub fn estimated_now_ms(&self) -> Option<i64> {
        let obs = self.observe();
        if obs.trusted {
            return Some(obs.wall_ms);
        }
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.reference
            .map(|(m, w)| w.saturating_add(ms_between(m, Instant::now())))
    }

    /// Steps seen since start.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Readings held now, waiting for a trusted clock.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn set_held(&self, n: u64) {
        self.held.store(n, Ordering::Relaxed);
    }

    /// Readings dated again by the monotonic clock once the clock was trusted.
    pub fn redated(&self) -> u64 {
        self.redated.load(Ordering::Relaxed)
    }

    pub fn add_redated(&self, n: u64) {
        self.redated.fetch_add(n, Ordering::Relaxed);
    }

    /// Readings stored as bad for their time (before the build date, in the future, before
    /// the previous reading of their series, or held at shutdown).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub fn add_rejected(&self, n: u64) {
        self.rejected.fetch_add(n, Ordering::Relaxed);
    }
}

fn before_floor(wall: i64, floor: i64) -> String {
    format!(
        "the clock ({}) is before the build date ({})",
        fmt(wall),
        fmt(floor)
    )
}

fn fmt(ms: i64) -> String {
    crate::readings::rfc3339_utc(Some(ms))
}

const COUNTERS: [CounterDef<Clock>; 3] = [
    (
        "steps",
        "Steps of the wall clock (changes the monotonic clock did not show) since start",
        Clock::steps,
    ),
    (
        "redated_readings",
        "Held readings dated again by the monotonic clock once the clock was trusted",
        Clock::redated,
    ),
    (
        "rejected_readings",
        "Readings stored as bad for their time (before the build date, far ahead, before the previous one)",
        Clock::rejected,
    ),
];

const GAUGES: [GaugeDef<Clock>; 2] = [
    (
        "trusted",
        "1 while the wall clock is trusted to date readings (0: readings are held)",
        |c| flag(c.observe().trusted),
    ),
    (
        "held_readings",
        "Readings held until the clock is trusted",
        |c| Some(c.held() as f64),
    ),
];

/// Registers the clock guard's metrics (`clock_*`) in `reg`, read from the guard when scraped.
pub fn register_metrics(reg: &mut Registry, clock: &Arc<Clock>) {
    register_live(
        reg.sub_registry_with_prefix("clock"),
        clock,
        &COUNTERS,
        &GAUGES,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_before_the_floor_is_not_trusted_and_says_why() {
        let c = Clock::with_floor(None, wall_ms() + 86_400_000);
        assert!(!c.trusted());
        assert!(!c.observe().trusted);
        assert!(
            c.reason().contains("before the build date"),
            "{}",
            c.reason()
        );
        assert_eq!(c.estimated_now_ms(), None);
    }

    #[test]
    fn a_clock_behind_the_store_is_not_trusted_and_estimates_from_the_store() {
        let ahead = wall_ms() + 3 * BEHIND_TOLERANCE_MS;
        let c = Clock::with_floor(Some(ahead), 0);
        assert!(!c.observe().trusted);
        assert!(
            c.reason().contains("behind the newest stored"),
            "{}",
            c.reason()
        );
        let est = c.estimated_now_ms().unwrap();
        assert!((est - ahead).abs() < 5_000, "{est} {ahead}");
    }

    #[test]
    fn a_sane_clock_is_trusted_without_steps() {
        let c = Clock::with_floor(Some(wall_ms() - 60_000), 0);
        for _ in 0..3 {
            assert!(c.observe().trusted);
        }
        assert_eq!(c.steps(), 0);
        assert!(c.reason().is_empty());
        // A forward gap from the store (the box was off) is no reason for distrust.
        let c = Clock::with_floor(Some(wall_ms() - 30 * 86_400_000), 0);
        assert!(c.observe().trusted);
    }
}
