//! Sub-meter balance: a parent meter against the sum of its children (devices whose `parent` is
//! it) over a period. A difference beyond `[accounting] balance_tolerance_pct` of the parent is
//! flagged; it catches CT-ratio, wiring and missing-meter mistakes.

use serde::Serialize;

use super::config::MeterRole;
use super::ledger::{Ledger, Plan};
use crate::readings::Quantity;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Child {
    pub device: String,
    pub consumption: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalanceLine {
    pub parent: String,
    pub quantity: Quantity,
    pub unit: String,
    pub parent_consumption: f64,
    pub children: Vec<Child>,
    pub children_consumption: f64,
    /// parent − Σ children
    pub difference: f64,
    /// difference ÷ parent × 100 (absent when the parent measured nothing)
    pub difference_pct: Option<f64>,
    pub tolerance_pct: f64,
    pub flagged: bool,
}

/// Every parent with children among the plan's meters.
pub fn balance(plan: &Plan, ledger: &Ledger) -> Vec<BalanceLine> {
    let tol = plan.cfg.balance_tolerance_pct;
    let total = |device: &str, q: Quantity| {
        plan.series_index(device, q)
            .map(|i| ledger.series_totals[i])
            .unwrap_or(0.0)
    };
    let mut out = Vec::new();
    for p in plan.meters.iter().filter(|m| m.role != MeterRole::Ignore) {
        let kids: Vec<_> = plan
            .meters
            .iter()
            .filter(|c| {
                c.parent.as_deref() == Some(p.device.as_str()) && c.role != MeterRole::Ignore
            })
            .collect();
        if kids.is_empty() {
            continue;
        }
        let parent = total(&p.device, p.counter);
        let children: Vec<Child> = kids
            .iter()
            .map(|c| Child {
                device: c.device.clone(),
                consumption: total(&c.device, c.counter),
            })
            .collect();
        let sum: f64 = children
            .iter()
            .map(|c| c.consumption)
            .fold(0.0, |a, b| a + b);
        let diff = parent - sum;
        let pct = (parent != 0.0).then(|| diff / parent * 100.0);
        out.push(BalanceLine {
            parent: p.device.clone(),
            quantity: p.counter,
            unit: p.counter.unit().to_string(),
            parent_consumption: parent,
            children,
            children_consumption: sum,
            difference: diff,
            difference_pct: pct,
            tolerance_pct: tol,
            flagged: match pct {
                Some(x) => x.abs() > tol,
                None => sum != 0.0,
            },
        });
    }
    out
}
