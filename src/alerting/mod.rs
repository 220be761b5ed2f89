//! Alerting: rules evaluated on every reading as it passes through the pipeline, and on a clock
//! tick for what the absence of readings says (deadman) and for gateway state (outbox).
//!
//! A rule goes inactive → pending (condition holds, `for` not yet elapsed) → firing → resolved.
//! Only transitions are emitted, so an alert is never repeated while it fires. Times are the
//! readings' acquisition times, so evaluation is deterministic. Transitions are recorded in the
//! store's alert history; on start the engine is restored from it, so a restart neither loses a
//! firing alert nor fires it again.
//!
//! Rule kinds (config `kind`): threshold (above / below / band, optional mean over a window),
//! rate_of_change, deadman (meter offline), demand (15-min demand projected to the window's end
//! against the contracted demand), power_factor (mean |PF| over a window), imbalance (parent vs
//! the sum of its sub-meters), counter (a cumulative counter going backwards or jumping), outbox
//! (store-and-forward backlog).

pub mod config;
pub mod metrics;
pub mod notify;
pub mod words;

use std::collections::{HashMap, VecDeque};

pub use self::config::{
    AlertKind, AlertRule, Condition, NotifierConfig, NotifierKind, NotifyContext, Severity,
    SiteInfo,
};
use crate::readings::{Quantity, Reading, TimestampMs};
use crate::storage::AlertEvent;

/// The 15-minute demand window used by tariffs (maximum demand is the highest 15-min average).
pub const DEMAND_WINDOW_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Inactive,
    Pending { since: TimestampMs },
    Firing,
}

#[derive(Debug, Clone)]
struct RuleState {
    phase: Phase,
    window: VecDeque<(TimestampMs, f64)>,
    prev: Option<(TimestampMs, f64)>,
    last_seen: Option<TimestampMs>,
    slot: TimestampMs,
    slot_kwh: f64,
    /// A two-sided threshold was last violated below its lower limit (its clear names that).
    under: bool,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState {
            phase: Phase::Inactive,
            window: VecDeque::new(),
            prev: None,
            last_seen: None,
            slot: i64::MIN,
            slot_kwh: 0.0,
            under: false,
        }
    }
}

/// Words in the stored message of a band's clear when it had been violated below its lower
/// limit ([`words::describe`] names that limit then).
pub const BACK_ABOVE_LOWER: &str = "back above the lower limit";

/// What one evaluation found.
struct Verdict {
    violated: bool,
    cleared: bool,
    value: f64,
    what: String,
}

/// Evaluates all configured rules.
#[derive(Debug)]
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    state: Vec<RuleState>,
    /// Rules to evaluate for readings of (device, quantity).
    by_series: HashMap<(String, Quantity), Vec<usize>>,
    /// Deadman rules by device.
    by_device: HashMap<String, Vec<usize>>,
    /// Latest good values (imbalance needs the children's).
    latest: crate::readings::LatestValues,
    started_ms: TimestampMs,
}

fn mean_over(w: &mut VecDeque<(TimestampMs, f64)>, ts: TimestampMs, v: f64, span_ms: i64) -> f64 {
    w.push_back((ts, v));
    while w.front().is_some_and(|(t, _)| *t < ts - span_ms) {
        w.pop_front();
    }
    w.iter().map(|(_, x)| x).sum::<f64>() / w.len() as f64
}

impl AlertEngine {
    /// `now_ms` is the start time (deadman rules count silence from it).
    pub fn new(rules: Vec<AlertRule>, now_ms: TimestampMs) -> Self {
        let mut by_series: HashMap<(String, Quantity), Vec<usize>> = HashMap::new();
        let mut by_device: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            let Some(device) = r.device().map(str::to_string) else {
                continue;
            };
            match (&r.condition, r.quantity()) {
                (Condition::Deadman(_), _) => by_device.entry(device).or_default().push(i),
                (_, Some(q)) => by_series.entry((device, q)).or_default().push(i),
                (_, None) => {}
            }
        }
        AlertEngine {
            state: vec![RuleState::default(); rules.len()],
            rules,
            by_series,
            by_device,
            latest: crate::readings::LatestValues::new(),
            started_ms: now_ms,
        }
    }

    /// True when no rules are configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Marks the rules that were firing before a restart (from the alert history) as firing, so
    /// they are neither lost nor fired again.
    pub fn restore_firing(&mut self, firing: &[String]) {
        for (r, s) in self.rules.iter().zip(self.state.iter_mut()) {
            if firing.contains(&r.id) {
                s.phase = Phase::Firing;
            }
        }
    }

    /// Ids of the rules currently firing.
    pub fn firing(&self) -> Vec<&str> {
        self.rules
            .iter()
            .zip(&self.state)
            .filter(|(_, s)| s.phase == Phase::Firing)
            .map(|(r, _)| r.id.as_str())
            .collect()
    }

    /// Feeds one reading; returns the transitions it caused.
    pub fn observe(&mut self, r: &Reading) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        let Some(v) = r.good_value() else {
            return out;
        };
        self.latest.insert(&r.device, r.quantity, r.ts_ms, v);
        // A good reading ends a deadman alert on that device.
        if let Some(idx) = self.by_device.get(&r.device).cloned() {
            for i in idx {
                let rule = &self.rules[i];
                if rule.quantity().is_some_and(|q| q != r.quantity) {
                    continue;
                }
                self.state[i].last_seen = Some(r.ts_ms);
                let verdict = Verdict {
                    violated: false,
                    cleared: true,
                    value: 0.0,
                    what: format!("{} reporting again", r.device),
                };
                out.extend(self.step(i, verdict, r.ts_ms));
            }
        }
        // Imbalance rules also listen to their children's readings (latest kept above) but are
        // evaluated on the parent's.
        let Some(idx) = self.by_series.get(&(r.device.clone(), r.quantity)).cloned() else {
            return out;
        };
        for i in idx {
            if let Some(verdict) = self.evaluate(i, r, v) {
                out.extend(self.step(i, verdict, r.ts_ms));
            }
        }
        out
    }

    /// Evaluates the clock-driven rules: deadman (silence longer than `timeout`) and outbox
    /// (`outbox_fill_pct` of the bound, when the outbox is bounded).
    pub fn tick(&mut self, now_ms: TimestampMs, outbox_fill_pct: Option<f64>) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let verdict = match &rule.condition {
                Condition::Deadman(c) => {
                    let timeout = c.timeout.as_millis() as i64;
                    let last = self.state[i].last_seen.unwrap_or(self.started_ms);
                    let silent = now_ms - last;
                    if silent <= timeout {
                        continue; // resolution comes with the next good reading
                    }
                    Verdict {
                        violated: true,
                        cleared: false,
                        value: silent as f64 / 1000.0,
                        what: format!(
                            "no good reading from {} for {} s (limit {} s): meter offline",
                            c.device,
                            silent / 1000,
                            timeout / 1000
                        ),
                    }
                }
                Condition::Outbox(c) => {
                    let Some(fill) = outbox_fill_pct else {
                        continue;
                    };
                    let limit = c.fill_pct;
                    Verdict {
                        violated: fill > limit,
                        cleared: fill <= limit - rule.hysteresis,
                        value: fill,
                        what: format!("outbox {fill:.1} % full (limit {limit} %): destinations are not confirming"),
                    }
                }
                _ => continue,
            };
            out.extend(self.step(i, verdict, now_ms));
        }
        out
    }

    /// True when an `intensity` rule is configured (the pipeline then computes the month's
    /// intensity every 15 minutes).
    pub fn has_intensity_rules(&self) -> bool {
        self.rules.iter().any(|r| r.kind() == AlertKind::Intensity)
    }

    /// Evaluates the `intensity` rules with the year-to-date intensity and the target path's
    /// intensity for the year (both tce per 10⁴ CNY); `None` when the accounts cannot tell (no
    /// value added, no baseline): nothing changes then.
    pub fn intensity(
        &mut self,
        now_ms: TimestampMs,
        intensity: Option<f64>,
        target: Option<f64>,
    ) -> Vec<AlertEvent> {
        let (Some(x), Some(t)) = (intensity, target) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let Condition::Intensity(c) = &rule.condition else {
                continue;
            };
            let limit = t * (1.0 + c.tolerance_pct / 100.0);
            let verdict = Verdict {
                violated: x > limit,
                cleared: x <= limit - rule.hysteresis,
                value: x,
                what: format!(
                    "the year-to-date energy intensity is {x:.4} tce/10k CNY (on the baseline's basis), above the target path's {t:.4} (limit {limit:.4})"
                ),
            };
            out.extend(self.step(i, verdict, now_ms));
        }
        out
    }

    fn evaluate(&mut self, i: usize, r: &Reading, v: f64) -> Option<Verdict> {
        let rule = &self.rules[i];
        let st = &mut self.state[i];
        let unit = r.quantity.unit();
        let h = rule.hysteresis;
        match &rule.condition {
            Condition::Threshold(c) => {
                let x = match c.window {
                    Some(w) => mean_over(&mut st.window, r.ts_ms, v, w.as_millis() as i64),
                    None => v,
                };
                let mean = if c.window.is_some() { "mean " } else { "" };
                let over = c.above.is_some_and(|a| x > a);
                let under = c.below.is_some_and(|b| x < b);
                if over || under {
                    st.under = under;
                }
                let cleared =
                    !c.above.is_some_and(|a| x > a - h) && !c.below.is_some_and(|b| x < b + h);
                // A band's clear says which side it came back from (the notifications name it).
                let side = match c.below {
                    Some(b) if cleared && st.under && c.above.is_some() => {
                        format!(", {BACK_ABOVE_LOWER} {b}")
                    }
                    _ => String::new(),
                };
                Some(Verdict {
                    violated: over || under,
                    cleared,
                    value: x,
                    what: format!(
                        "{mean}{} of {} is {x} {unit} ({}{side})",
                        r.quantity,
                        r.device,
                        bounds(c)
                    ),
                })
            }
            Condition::PowerFactor(c) => {
                let w = c.window.as_millis() as i64;
                let x = mean_over(&mut st.window, r.ts_ms, v.abs(), w);
                let below = c.below;
                Some(Verdict {
                    violated: x < below,
                    cleared: x >= below + h,
                    value: x,
                    what: format!(
                        "power factor of {} averages {x:.3} over {} min (limit {below})",
                        r.device,
                        w / 60_000
                    ),
                })
            }
            Condition::RateOfChange(c) => {
                let prev = st.prev.replace((r.ts_ms, v));
                let (pt, pv) = prev?;
                let minutes = (r.ts_ms - pt) as f64 / 60_000.0;
                if minutes <= 0.0 {
                    return None;
                }
                let rate = (v - pv).abs() / minutes;
                let max = c.max_rate_per_min;
                Some(Verdict {
                    violated: rate > max,
                    cleared: rate <= max - h,
                    value: rate,
                    what: format!(
                        "{} of {} changes by {rate:.3} {unit}/min (limit {max})",
                        r.quantity, r.device
                    ),
                })
            }
            Condition::Counter(c) => {
                let prev = st.prev.replace((r.ts_ms, v));
                let (pt, pv) = prev?;
                let minutes = (r.ts_ms - pt) as f64 / 60_000.0;
                let rate = if minutes > 0.0 {
                    (v - pv) / minutes
                } else {
                    0.0
                };
                let (violated, what) = if v < pv {
                    (true, format!("counter {} of {} went backwards from {pv} to {v} {unit} (reset or meter replaced?)", r.quantity, r.device))
                } else if let Some(max) = c.max_rate_per_min.filter(|m| rate > *m) {
                    (
                        true,
                        format!(
                            "counter {} of {} jumped by {} {unit} ({rate:.3}/min, limit {max})",
                            r.quantity,
                            r.device,
                            v - pv,
                        ),
                    )
                } else {
                    (
                        false,
                        format!(
                            "counter {} of {} counts normally again",
                            r.quantity, r.device
                        ),
                    )
                };
                Some(Verdict {
                    violated,
                    cleared: !violated,
                    value: v,
                    what,
                })
            }
            Condition::Demand(c) => {
                let slot = r.ts_ms - r.ts_ms.rem_euclid(DEMAND_WINDOW_MS);
                if slot != st.slot {
                    st.slot = slot;
                    st.slot_kwh = 0.0;
                    // Energy from the slot start to this reading, at the previous power.
                    if let Some((pt, pv)) = st.prev {
                        if r.ts_ms - pt < DEMAND_WINDOW_MS {
                            st.slot_kwh = pv * (r.ts_ms - slot) as f64 / 3_600_000.0;
                        }
                    }
                } else if let Some((pt, pv)) = st.prev {
                    st.slot_kwh += pv * (r.ts_ms - pt) as f64 / 3_600_000.0;
                }
                st.prev = Some((r.ts_ms, v));
                let remaining_h = (slot + DEMAND_WINDOW_MS - r.ts_ms) as f64 / 3_600_000.0;
                let projected = (st.slot_kwh + v * remaining_h) / 0.25;
                let contracted = c.contracted_kw;
                Some(Verdict {
                    violated: projected > contracted,
                    cleared: projected <= contracted - h,
                    value: projected,
                    what: format!("15-min demand of {} projected to {projected:.1} kW at the window's end (contracted {contracted} kW)", r.device),
                })
            }
            Condition::Imbalance(c) => {
                let w = c.window.as_millis() as i64;
                let mut sum = 0.0;
                for child in &c.children {
                    match self.latest.get(child, r.quantity) {
                        Some((t, x)) if r.ts_ms - t <= w => sum += x,
                        _ => return None, // a child without a recent value: cannot judge
                    }
                }
                if v.abs() < 1e-9 {
                    return None;
                }
                let diff = (v - sum).abs() / v.abs() * 100.0;
                let tol = c.tolerance_pct;
                Some(Verdict {
                    violated: diff > tol,
                    cleared: diff <= tol - h,
                    value: diff,
                    what: format!("{} of {} is {v} {unit} but its sub-meters sum to {sum} {unit}: {diff:.1} % apart (tolerance {tol} %)", r.quantity, r.device),
                })
            }
            Condition::Deadman(_) | Condition::Outbox(_) | Condition::Intensity(_) => None,
        }
    }

    /// Applies a verdict to rule `i`'s lifecycle; returns the transition, if any.
    fn step(&mut self, i: usize, v: Verdict, ts: TimestampMs) -> Option<AlertEvent> {
        let rule = &self.rules[i];
        let for_ms = rule.for_duration.as_millis() as i64;
        let (next, state) = match self.state[i].phase {
            Phase::Inactive if v.violated && for_ms == 0 => (Phase::Firing, Some("firing")),
            Phase::Inactive if v.violated => (Phase::Pending { since: ts }, Some("pending")),
            Phase::Pending { since } if v.violated && ts - since >= for_ms => {
                (Phase::Firing, Some("firing"))
            }
            Phase::Pending { .. } if !v.violated => (Phase::Inactive, None),
            Phase::Firing if v.cleared => (Phase::Inactive, Some("resolved")),
            p => (p, None),
        };
        self.state[i].phase = next;
        let state = state?;
        Some(AlertEvent {
            ts_ms: ts,
            rule: rule.id.clone(),
            device: rule.device().unwrap_or_default().to_string(),
            quantity: rule.quantity(),
            state,
            severity: rule.severity.as_str(),
            value: Some(v.value).filter(|x| x.is_finite()),
            message: format!("{}: {}", rule.id, v.what),
        })
    }
}

fn bounds(c: &config::Threshold) -> String {
    match (c.above, c.below) {
        (Some(a), Some(b)) => format!("allowed {b}..{a}"),
        (Some(a), None) => format!("limit above {a}"),
        (None, Some(b)) => format!("limit below {b}"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::config::*;
    use super::*;

    fn rule(condition: Condition) -> AlertRule {
        AlertRule {
            id: "r".into(),
            condition,
            for_duration: Duration::ZERO,
            hysteresis: 0.0,
            severity: Severity::Critical,
            labels: Default::default(),
            notify: vec![],
        }
    }

    /// A threshold rule on `m`'s active power.
    fn threshold(above: Option<f64>, below: Option<f64>) -> Threshold {
        Threshold {
            device: "m".into(),
            quantity: Quantity::ActivePower,
            above,
            below,
            window: None,
        }
    }

    /// Feeds (seconds, value) readings of `m`/`q`; returns (seconds, state) transitions.
    fn run_q(e: &mut AlertEngine, q: Quantity, seq: &[(i64, f64)]) -> Vec<(i64, &'static str)> {
        seq.iter()
            .flat_map(|&(t, v)| {
                e.observe(&Reading::new("m", q, v, t * 1000))
                    .into_iter()
                    .map(|e| (e.ts_ms / 1000, e.state))
            })
            .collect()
    }

    fn run(e: &mut AlertEngine, seq: &[(i64, f64)]) -> Vec<(i64, &'static str)> {
        run_q(e, Quantity::ActivePower, seq)
    }

    #[test]
    fn threshold_fires_after_for_duration_and_resolves_with_hysteresis() {
        let mut r = rule(Condition::Threshold(threshold(Some(100.0), None)));
        r.for_duration = Duration::from_secs(10);
        r.hysteresis = 5.0;
        let mut e = AlertEngine::new(vec![r], 0);
        let got = run(
            &mut e,
            &[
                (0, 90.0),
                (1, 101.0),
                (5, 120.0),
                (11, 101.0),
                (12, 97.0),
                (13, 94.0),
                (14, 200.0),
            ],
        );
        assert_eq!(
            got,
            vec![
                (1, "pending"),
                (11, "firing"),
                (13, "resolved"),
                (14, "pending")
            ]
        );
    }

    #[test]
    fn threshold_pending_that_clears_never_fires() {
        let mut r = rule(Condition::Threshold(threshold(Some(100.0), None)));
        r.for_duration = Duration::from_secs(10);
        let mut e = AlertEngine::new(vec![r], 0);
        assert_eq!(
            run(&mut e, &[(0, 150.0), (5, 50.0), (20, 50.0)]),
            vec![(0, "pending")]
        );
        assert!(e.firing().is_empty());
    }

    #[test]
    fn threshold_band_and_window_mean() {
        let r = rule(Condition::Threshold(threshold(Some(55.0), Some(45.0))));
        let mut e = AlertEngine::new(vec![r], 0);
        assert_eq!(
            run(&mut e, &[(0, 50.0), (1, 44.0), (2, 50.0)]),
            vec![(1, "firing"), (2, "resolved")]
        );
        // The clear says which side it came back from: below, then above.
        let clear = |e: &mut AlertEngine, out: f64, t: i64| {
            let q = Quantity::ActivePower;
            let mut ev = e.observe(&Reading::new("m", q, out, t * 1000));
            ev.extend(e.observe(&Reading::new("m", q, 50.0, t * 1000 + 1000)));
            assert_eq!(ev.len(), 2);
            ev[1].message.clone()
        };
        let m = clear(&mut e, 44.0, 3);
        assert!(
            m.ends_with("(allowed 45..55, back above the lower limit 45)"),
            "{m}"
        );
        let m = clear(&mut e, 56.0, 5);
        assert!(m.ends_with("(allowed 45..55)"), "{m}");
        // mean over 10 s: one spike of 80 among 50s does not fire; a sustained rise does
        let r = rule(Condition::Threshold(Threshold {
            window: Some(Duration::from_secs(10)),
            ..threshold(Some(55.0), None)
        }));
        let mut e = AlertEngine::new(vec![r], 0);
        let got = run(
            &mut e,
            &[
                (0, 50.0),
                (2, 50.0),
                (4, 50.0),
                (6, 50.0),
                (8, 50.0),
                (10, 70.0),
                (12, 50.0),
                (14, 60.0),
                (16, 60.0),
                (18, 40.0),
            ],
        );
        // means over the last 10 s: the spike at 10 s gives 53.3, at 14 s 330/6 = 55.0 (not above),
        // at 16 s 340/6 = 56.7 fires, at 18 s 330/6 = 55.0 resolves.
        assert_eq!(got, vec![(16, "firing"), (18, "resolved")]);
    }

    #[test]
    fn rate_of_change() {
        let r = rule(Condition::RateOfChange(RateOfChange {
            device: "m".into(),
            quantity: Quantity::ActivePower,
            max_rate_per_min: 60.0, // kW per minute = 1 kW/s
        }));
        let mut e = AlertEngine::new(vec![r], 0);
        let got = run(&mut e, &[(0, 100.0), (10, 105.0), (20, 200.0), (30, 205.0)]);
        // 0.5/s, then 9.5/s (570/min) fires, then 0.5/s resolves
        assert_eq!(got, vec![(20, "firing"), (30, "resolved")]);
    }

    #[test]
    fn deadman_fires_on_silence_and_resolves_on_the_next_reading() {
        let r = rule(Condition::Deadman(Deadman {
            device: "m".into(),
            quantity: None,
            timeout: Duration::from_secs(30),
        }));
        let mut e = AlertEngine::new(vec![r], 0);
        assert!(e.tick(25_000, None).is_empty()); // silence since start: 25 s
        let ev = e.tick(31_000, None);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].state, "firing");
        assert_eq!(ev[0].value, Some(31.0));
        assert!(ev[0].message.contains("offline"));
        assert!(e.tick(60_000, None).is_empty()); // no repeat while firing
                                                  // any quantity of the device ends it
        assert_eq!(
            run_q(&mut e, Quantity::Frequency, &[(61, 50.0)]),
            vec![(61, "resolved")]
        );
        assert!(e.tick(80_000, None).is_empty());
        assert_eq!(e.tick(92_000, None)[0].state, "firing");
    }

    #[test]
    fn demand_projection_to_the_end_of_the_15_minute_window() {
        let mut r = rule(Condition::Demand(Demand {
            device: "m".into(),
            contracted_kw: 500.0,
        }));
        r.hysteresis = 10.0;
        let mut e = AlertEngine::new(vec![r], 0);
        // Window 0..900 s. 400 kW for 300 s (33.33 kWh), then 700 kW at 300 s:
        // projected = (33.333 + 700 × 600/3600) / 0.25 = (33.333 + 116.667) × 4 = 600 kW > 500.
        let got = run(&mut e, &[(0, 400.0), (150, 400.0), (300, 700.0)]);
        assert_eq!(got, vec![(300, "firing")]);
        // Load drops to 100 kW at 450 s: E = 33.333 + 700 × 150/3600 = 62.5 kWh;
        // projected = (62.5 + 100 × 450/3600) × 4 = (62.5 + 12.5) × 4 = 300 kW: resolved.
        let got = run(&mut e, &[(450, 100.0)]);
        assert_eq!(got, vec![(450, "resolved")]);
        // The next window starts fresh: 480 kW is below the contract.
        assert!(run(&mut e, &[(900, 480.0), (1000, 480.0)]).is_empty());
    }

    #[test]
    fn demand_projection_value_is_exact() {
        let r = rule(Condition::Demand(Demand {
            device: "m".into(),
            contracted_kw: 500.0,
        }));
        let mut e = AlertEngine::new(vec![r], 0);
        e.observe(&Reading::new("m", Quantity::ActivePower, 400.0, 0));
        let ev = e.observe(&Reading::new("m", Quantity::ActivePower, 700.0, 300_000));
        assert!(
            (ev[0].value.unwrap() - 600.0).abs() < 1e-9,
            "{:?}",
            ev[0].value
        );
    }

    #[test]
    fn power_factor_mean_over_window_uses_magnitude() {
        let mut r = rule(Condition::PowerFactor(PowerFactor {
            device: "m".into(),
            below: 0.90,
            window: Duration::from_secs(60),
        }));
        r.hysteresis = 0.01;
        let mut e = AlertEngine::new(vec![r], 0);
        // capacitive -0.95 counts as 0.95
        let got = run_q(
            &mut e,
            Quantity::PowerFactor,
            &[
                (0, -0.95),
                (20, 0.86),
                (40, 0.85),
                (60, 0.86),
                (120, 0.95),
                (140, 0.95),
            ],
        );
        // means over 60 s: .95, .905, .8867 fires, .88, then (60..120) .905 is not yet .91 (the
        // hysteresis), and (80..140) .95 resolves.
        assert_eq!(got, vec![(40, "firing"), (140, "resolved")]);
    }

    #[test]
    fn imbalance_of_parent_and_children() {
        let r = rule(Condition::Imbalance(Imbalance {
            device: "m".into(),
            children: vec!["a".into(), "b".into()],
            quantity: Quantity::ActivePower,
            tolerance_pct: 10.0,
            window: Duration::from_secs(15 * 60),
        }));
        let mut e = AlertEngine::new(vec![r], 0);
        let feed = |e: &mut AlertEngine, d: &str, v: f64, t: i64| {
            e.observe(&Reading::new(d, Quantity::ActivePower, v, t * 1000))
        };
        assert!(feed(&mut e, "m", 100.0, 0).is_empty()); // children unknown yet
        feed(&mut e, "a", 50.0, 1);
        feed(&mut e, "b", 45.0, 1);
        assert!(feed(&mut e, "m", 100.0, 2).is_empty()); // 5 % apart
        feed(&mut e, "b", 20.0, 3);
        let ev = feed(&mut e, "m", 100.0, 4); // 30 % apart: a CT ratio or wiring mistake
        assert_eq!(ev[0].state, "firing");
        assert!((ev[0].value.unwrap() - 30.0).abs() < 1e-9);
        feed(&mut e, "b", 48.0, 5);
        assert_eq!(feed(&mut e, "m", 100.0, 6)[0].state, "resolved");
    }

    #[test]
    fn counter_backwards_and_jumps() {
        let r = rule(Condition::Counter(Counter {
            device: "m".into(),
            quantity: Quantity::EnergyImport,
            max_rate_per_min: Some(10.0), // kWh per minute (600 kW rated)
        }));
        let mut e = AlertEngine::new(vec![r], 0);
        let got = run_q(
            &mut e,
            Quantity::EnergyImport,
            &[
                (0, 1000.0),
                (60, 1005.0),
                (120, 12.0),
                (180, 15.0),
                (240, 500.0),
                (300, 505.0),
            ],
        );
        assert_eq!(
            got,
            vec![
                (120, "firing"),
                (180, "resolved"),
                (240, "firing"),
                (300, "resolved")
            ]
        );
    }

    #[test]
    fn outbox_fill() {
        let mut r = rule(Condition::Outbox(Outbox { fill_pct: 80.0 }));
        r.hysteresis = 10.0;
        let mut e = AlertEngine::new(vec![r], 0);
        assert!(e.tick(1000, Some(50.0)).is_empty());
        assert_eq!(e.tick(2000, Some(85.0))[0].state, "firing");
        assert!(e.tick(3000, Some(75.0)).is_empty()); // inside the hysteresis
        assert_eq!(e.tick(4000, Some(65.0))[0].state, "resolved");
        assert!(e.tick(5000, None).is_empty()); // unbounded outbox: nothing to judge
    }

    #[test]
    fn intensity_above_the_target_path() {
        let r = rule(Condition::Intensity(Intensity { tolerance_pct: 5.0 }));
        let mut e = AlertEngine::new(vec![r], 0);
        assert!(e.has_intensity_rules());
        // path 0.30: the limit is 0.315
        assert!(e.intensity(1, Some(0.31), Some(0.30)).is_empty());
        assert!(e.intensity(2, None, Some(0.30)).is_empty()); // no value added yet
        let ev = e.intensity(3, Some(0.32), Some(0.30));
        assert_eq!(ev[0].state, "firing");
        assert_eq!(ev[0].value, Some(0.32));
        assert_eq!(ev[0].quantity, None);
        assert_eq!(e.intensity(4, Some(0.30), Some(0.30))[0].state, "resolved");
    }

    #[test]
    fn restored_firing_rule_is_not_fired_again_and_still_resolves() {
        let r = rule(Condition::Threshold(threshold(Some(100.0), None)));
        let mut e = AlertEngine::new(vec![r], 0);
        e.restore_firing(&["r".to_string()]);
        assert_eq!(e.firing(), vec!["r"]);
        assert_eq!(
            run(&mut e, &[(0, 150.0), (1, 160.0), (2, 50.0)]),
            vec![(2, "resolved")]
        );
    }
}
