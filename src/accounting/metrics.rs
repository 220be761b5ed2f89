//! The accounting service's metrics (`accounting_*`): how long its cycles take (closing
//! intervals, recomputing the periods in progress) and how many failed, from [`Accounts`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::service::Accounts;
use crate::telemetry::metrics::{register_live, CounterDef, Registry};

const COUNTERS: [CounterDef<Accounts>; 1] = [(
    "cycle_failures",
    "Accounting service cycles that failed (the store could not be read or written)",
    |a| a.cycle_failures.load(Relaxed),
)];

/// Registers the accounting service's metrics in `reg`.
pub fn register(reg: &mut Registry, accounts: &Arc<Accounts>) {
    let reg = reg.sub_registry_with_prefix("accounting");
    reg.register(
        "cycle_seconds",
        "Time an accounting service cycle took (close intervals, recompute the periods in progress)",
        accounts.cycle_seconds.clone(),
    );
    register_live(reg, accounts, &COUNTERS, &[]);
}
