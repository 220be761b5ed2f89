//! The store's own settings (`[storage]`): where it lives, durability level, retention, the
//! bounds of the outbox (`[storage.outbox]`), composed into the configuration by `config`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::units::{byte_size, duration};

/// Most readings in one commit or one output request: far above what helps throughput, and low
/// enough that a batch always fits in memory.
pub const MAX_BATCH: usize = 1_000_000;

/// `[storage]`: the embedded SQLite store (reading history and outbox).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory holding `store.sqlite` and its WAL.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// SQLite `synchronous` level: `full` (default) also survives power loss at the cost of one
    /// fsync per group commit; `normal` survives a process crash only.
    #[serde(default)]
    pub synchronous: Synchronous,
    /// Raw readings older than this are deleted once every output has delivered them (their
    /// minute aggregates stay, see `minute_retention`).
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
    /// Minute aggregates older than this are deleted, except the interval boundaries of
    /// counters (`storage::tiers`).
    #[serde(default = "default_minute_retention", with = "duration")]
    pub minute_retention: Duration,
    /// The most readings committed in one transaction.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// SQLite page cache of the store writer, MiB. Larger keeps more index pages in memory and
    /// sustains higher ingest rates; smaller keeps the resident memory down on small boxes.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u32,
    /// Longest time the store writer gathers readings before committing them (0 = commit
    /// whatever is queued at once). Readings a source waits on are committed at once.
    #[serde(default = "default_commit_delay", with = "duration")]
    pub commit_delay: Duration,
    /// Most bytes the store may use (`max_disk`); 0 = derived at the first start (half of the
    /// free space of its filesystem then). Past it the oldest delivered readings are dropped.
    #[serde(default, with = "byte_size")]
    pub max_disk: u64,
    /// `[storage.outbox]`: bounds of the undelivered part of the store.
    #[serde(default)]
    pub outbox: OutboxConfig,
}

impl StorageConfig {
    /// Path of the SQLite store.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("store.sqlite")
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: default_data_dir(),
            synchronous: Synchronous::default(),
            retention: default_retention(),
            minute_retention: default_minute_retention(),
            max_batch: default_max_batch(),
            cache_mib: default_cache_mib(),
            max_disk: 0,
            commit_delay: default_commit_delay(),
            outbox: OutboxConfig::default(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/energy-gateway")
}
fn default_commit_delay() -> Duration {
    Duration::from_millis(500)
}

fn default_retention() -> Duration {
    Duration::from_secs(14 * 86_400)
}
fn default_minute_retention() -> Duration {
    Duration::from_secs(400 * 86_400)
}
fn default_cache_mib() -> u32 {
    8
}
fn default_max_batch() -> usize {
    10_000
}

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
