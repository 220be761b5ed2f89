//! The alerts summary of a report: the alert transitions of the store (written by the alerting
//! rules, read through [`crate::storage::feeds::alert_transitions`]) that fall in the report's
//! period, per rule and device.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::accounting::calendar::rfc3339;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRuleSummary {
    pub rule: String,
    pub device: String,
    /// The highest severity seen ("critical" > "warning" > "info").
    pub severity: String,
    pub fired: usize,
    pub resolved: usize,
    pub first_fired: Option<String>,
    pub last_fired: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertsSummary {
    pub fired: usize,
    pub resolved: usize,
    pub rules: Vec<AlertRuleSummary>,
}

fn rank(s: &str) -> u8 {
    match s {
        "critical" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

/// Reads the transitions in `[from_ms, to_ms)`. A store without the table (accounting only,
/// never run) has no alerts.
pub fn summary(store: &Path, tz: chrono_tz::Tz, from_ms: i64, to_ms: i64) -> Result<AlertsSummary> {
    let mut out = AlertsSummary {
        fired: 0,
        resolved: 0,
        rules: Vec::new(),
    };
    let transitions = crate::storage::feeds::alert_transitions(store, from_ms, to_ms)
        .with_context(|| format!("reading the alerts of the store {}", store.display()))?;
    let mut by: BTreeMap<(String, String), AlertRuleSummary> = BTreeMap::new();
    for t in transitions {
        let (ts, rule, device, state, severity) = (t.ts_ms, t.rule, t.device, t.state, t.severity);
        let e = by
            .entry((rule.clone(), device.clone()))
            .or_insert_with(|| AlertRuleSummary {
                rule,
                device,
                severity: severity.clone(),
                fired: 0,
                resolved: 0,
                first_fired: None,
                last_fired: None,
            });
        if rank(&severity) > rank(&e.severity) {
            e.severity = severity;
        }
        match state.as_str() {
            "firing" => {
                e.fired += 1;
                out.fired += 1;
                let t = rfc3339(tz, ts);
                if e.first_fired.is_none() {
                    e.first_fired = Some(t.clone());
                }
                e.last_fired = Some(t);
            }
            "resolved" => {
                e.resolved += 1;
                out.resolved += 1;
            }
            _ => {}
        }
    }
    out.rules = by.into_values().collect();
    Ok(out)
}
