//! The store writer's metrics: the outbox (undelivered readings), commits and the disk budget,
//! read from the [`OutboxStatus`] the writer updates after each commit.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::storage::writer::OutboxStatus;
use crate::telemetry::metrics::{flag, register_live, CounterDef, GaugeDef, Registry};

const COUNTERS: [CounterDef<OutboxStatus>; 5] = [
    (
        "store_commit_errors",
        "Failed store commits (each retried)",
        |s| s.commit_errors.load(Relaxed),
    ),
    ("outbox_full_events", "Times the outbox became full", |s| {
        s.full_events.load(Relaxed)
    }),
    (
        "store_budget_dropped",
        "Delivered readings dropped to keep the store within storage.max_disk",
        |s| s.budget_dropped.load(Relaxed),
    ),
    (
        "store_budget_undelivered_over",
        "Budget checks that found the store over storage.max_disk with only undelivered readings and the minutes they cover left to drop",
        |s| s.budget_undelivered_over.load(Relaxed),
    ),
    (
        "outbox_evicted",
        "Readings deleted undelivered to make room (storage.outbox.when_full = evict_oldest)",
        |s| s.evicted.load(Relaxed),
    ),
];

const GAUGES: [GaugeDef<OutboxStatus>; 6] = [
    (
        "outbox_rows",
        "Readings some enabled output has not confirmed",
        |s| Some(s.rows.load(Relaxed) as f64),
    ),
    (
        "outbox_bytes",
        "Estimated bytes of the undelivered readings",
        |s| Some(s.bytes.load(Relaxed) as f64),
    ),
    ("outbox_full", "1 while an outbox bound is reached", |s| {
        flag(s.full.load(Relaxed))
    }),
    (
        "store_used_bytes",
        "Bytes of the store file in use (at the last budget check)",
        |s| Some(s.used_bytes.load(Relaxed) as f64),
    ),
    (
        "store_disk_budget_bytes",
        "The store's disk budget (storage.max_disk or derived at the first start)",
        |s| Some(s.disk_budget.load(Relaxed) as f64),
    ),
    (
        "store_commit_lag_seconds",
        "Age of the newest reading of the last commit when it was committed",
        |s| Some(s.commit_lag_ms.load(Relaxed) as f64 / 1000.0),
    ),
];

/// Registers the writer's metrics (`outbox_*`, `store_*`) in `reg`.
pub fn register(reg: &mut Registry, s: &Arc<OutboxStatus>) {
    register_live(reg, s, &COUNTERS, &GAUGES);
}
