//! The store's own settings: durability level and the bounds of the outbox (`[storage]`,
//! `[storage.outbox]`), composed into the configuration by `config`.

use std::time::Duration;

use serde::Deserialize;

use crate::units::{byte_size, duration};

/// Most readings in one commit or one output request: far above what helps throughput, and low
/// enough that a batch always fits in memory.
pub const MAX_BATCH: usize = 1_000_000;

/// SQLite durability level for commits (WAL mode).
///
/// - `Normal`: a commit is written to the WAL but the WAL is fsynced only at checkpoints. A
///   crash or SIGKILL of the gateway loses nothing committed (the OS has the pages); a power
///   cut or kernel crash may roll back the commits since the last checkpoint (never corrupts
///   the store) — readings an MQTT broker was already told were stored among them.
/// - `Full` (default): the WAL is fsynced at every commit, so a committed (and acknowledged)
///   reading also survives power loss. With group commits (`commit_delay`) that is at most a few
///   fsyncs a second, whatever the number of readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    #[default]
    Full,
}

/// `[storage.outbox]`: how much undelivered data (readings some enabled output has not confirmed
/// yet) the store may hold, and what happens when a bound is reached. 0 disables a bound.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Most undelivered readings.
    #[serde(default)]
    pub max_rows: u64,
    /// Most bytes of undelivered readings (estimated from the store's bytes per reading).
    #[serde(default = "default_outbox_max_bytes", with = "byte_size")]
    pub max_bytes: u64,
    /// Oldest undelivered reading (by acquisition time).
    #[serde(default, with = "duration")]
    pub max_age: Duration,
    /// What to do when a bound is reached.
    #[serde(default)]
    pub when_full: OutboxFullPolicy,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_rows: 0,
            max_bytes: default_outbox_max_bytes(),
            max_age: Duration::ZERO,
            when_full: OutboxFullPolicy::default(),
        }
    }
}

fn default_outbox_max_bytes() -> u64 {
    4 << 30
}

/// What the store does when the outbox is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxFullPolicy {
    /// Stop taking readings (sources wait, nothing is acknowledged upstream) until outputs
    /// have delivered enough.
    #[default]
    Stop,
    /// Delete the oldest undelivered readings to make room (counted and logged).
    EvictOldest,
}
