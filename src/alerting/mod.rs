//! Alerting: threshold rules evaluated on every reading as it passes through the pipeline.
//!
//! A rule goes inactive → pending (condition holds, `for` not yet elapsed) → firing → resolved.
//! Times are the readings' acquisition times, so evaluation is deterministic and a burst of
//! late readings is judged by when they were measured.

use std::collections::HashMap;

use crate::config::AlertRule;
use crate::readings::{Reading, TimestampMs};
use crate::storage::AlertEvent;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Inactive,
    Pending { since: TimestampMs },
    Firing,
}

/// Evaluates all configured rules.
#[derive(Debug)]
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    state: Vec<State>,
    by_series: HashMap<(String, crate::readings::Quantity), Vec<usize>>,
}

impl AlertEngine {
    pub fn new(rules: Vec<AlertRule>) -> Self {
        let mut by_series: HashMap<_, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_series
                .entry((r.device.clone(), r.quantity))
                .or_default()
                .push(i);
        }
        AlertEngine {
            state: vec![State::Inactive; rules.len()],
            rules,
            by_series,
        }
    }

    /// True when no rules are configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Feeds one reading; returns the transitions it caused.
    pub fn observe(&mut self, r: &Reading) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        let Some(v) = r.good_value() else {
            return out;
        };
        let Some(idx) = self.by_series.get(&(r.device.clone(), r.quantity)) else {
            return out;
        };
        for &i in idx {
            let rule = &self.rules[i];
            let violated = rule.above.is_some_and(|a| v > a) || rule.below.is_some_and(|b| v < b);
            let cleared = !rule.above.is_some_and(|a| v > a - rule.hysteresis)
                && !rule.below.is_some_and(|b| v < b + rule.hysteresis);
            let for_ms = rule.for_duration.as_millis() as i64;
            let next = match self.state[i] {
                State::Inactive if violated && for_ms == 0 => {
                    out.push(event(rule, r, v, "firing"));
                    State::Firing
                }
                State::Inactive if violated => {
                    out.push(event(rule, r, v, "pending"));
                    State::Pending { since: r.ts_ms }
                }
                State::Pending { since } if violated => {
                    if r.ts_ms - since >= for_ms {
                        out.push(event(rule, r, v, "firing"));
                        State::Firing
                    } else {
                        State::Pending { since }
                    }
                }
                State::Pending { .. } if !violated => State::Inactive,
                State::Firing if cleared => {
                    out.push(event(rule, r, v, "resolved"));
                    State::Inactive
                }
                s => s,
            };
            self.state[i] = next;
        }
        out
    }

    /// Ids of the rules currently firing.
    pub fn firing(&self) -> Vec<&str> {
        self.rules
            .iter()
            .zip(&self.state)
            .filter(|(_, s)| **s == State::Firing)
            .map(|(r, _)| r.id.as_str())
            .collect()
    }
}

fn event(rule: &AlertRule, r: &Reading, v: f64, state: &'static str) -> AlertEvent {
    let bound = match (rule.above, rule.below) {
        (Some(a), Some(b)) => format!("outside {b}..{a}"),
        (Some(a), None) => format!("above {a}"),
        (None, Some(b)) => format!("below {b}"),
        (None, None) => String::new(),
    };
    AlertEvent {
        ts_ms: r.ts_ms,
        rule: rule.id.clone(),
        device: r.device.clone(),
        quantity: r.quantity,
        state,
        severity: rule.severity.as_str(),
        value: Some(v),
        message: format!(
            "{} {} of {} is {v} {} (rule: {bound})",
            rule.id,
            r.quantity,
            r.device,
            r.quantity.unit()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Severity;
    use crate::readings::Quantity;

    fn rule(above: Option<f64>, below: Option<f64>, for_s: u64, hysteresis: f64) -> AlertRule {
        AlertRule {
            id: "r".into(),
            device: "m".into(),
            quantity: Quantity::ActivePower,
            above,
            below,
            for_duration: Duration::from_secs(for_s),
            hysteresis,
            severity: Severity::Critical,
        }
    }

    fn run(engine: &mut AlertEngine, seq: &[(i64, f64)]) -> Vec<(i64, &'static str)> {
        seq.iter()
            .flat_map(|&(t, v)| {
                engine
                    .observe(&Reading::new("m", Quantity::ActivePower, v, t * 1000))
                    .into_iter()
                    .map(|e| (e.ts_ms / 1000, e.state))
            })
            .collect()
    }

    #[test]
    fn fires_after_for_duration_and_resolves_with_hysteresis() {
        let mut e = AlertEngine::new(vec![rule(Some(100.0), None, 10, 5.0)]);
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
        // pending at 1 s, firing at 11 s (10 s later), still firing at 97 (within hysteresis),
        // resolved at 94, pending again at 14.
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
    fn pending_that_clears_never_fires() {
        let mut e = AlertEngine::new(vec![rule(Some(100.0), None, 10, 0.0)]);
        let got = run(&mut e, &[(0, 150.0), (5, 50.0), (20, 50.0)]);
        assert_eq!(got, vec![(0, "pending")]);
        assert!(e.firing().is_empty());
    }

    #[test]
    fn outside_band_without_delay_fires_at_once_and_ignores_other_series() {
        let mut e = AlertEngine::new(vec![rule(Some(55.0), Some(45.0), 0, 0.0)]);
        assert_eq!(run(&mut e, &[(0, 50.0), (1, 44.0)]), vec![(1, "firing")]);
        assert_eq!(e.firing(), vec!["r"]);
        let other = Reading::new("other", Quantity::ActivePower, 0.0, 2000);
        assert!(e.observe(&other).is_empty());
        let bad = Reading::bad("m", Quantity::ActivePower, 3000, "timeout");
        assert!(e.observe(&bad).is_empty());
        assert_eq!(run(&mut e, &[(4, 50.0)]), vec![(4, "resolved")]);
    }
}
