//! The notifiers' metrics (`notifier_*`, label `notifier`), from the [`NotifierStats`] each
//! notifier updates at each delivery attempt.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::notify::NotifierStats;
use crate::telemetry::metrics::{register_live_families, CounterDef, Registry};

const COUNTERS: [CounterDef<NotifierStats>; 3] = [
    ("sent", "Notifications delivered", |s| s.sent.load(Relaxed)),
    (
        "suppressed",
        "Notifications held back by the rate limit",
        |s| s.suppressed.load(Relaxed),
    ),
    ("failures", "Failed delivery attempts", |s| {
        s.failures.load(Relaxed)
    }),
];

/// Registers the `notifier_*` metrics of `notifiers` (by id) in `reg`.
pub fn register_notifiers(reg: &mut Registry, notifiers: &BTreeMap<String, Arc<NotifierStats>>) {
    register_live_families(
        reg.sub_registry_with_prefix("notifier"),
        "notifier",
        notifiers,
        &COUNTERS,
        &[],
    );
}
