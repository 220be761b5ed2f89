//! The store writer: a dedicated thread that owns the write connection and commits whatever has
//! queued up since its last commit in one transaction (group commit). Throughput grows with load
//! while a lone reading is committed at once.
//!
//! It also keeps the outbox within its bounds (`[storage.outbox]`): before each commit it checks
//! how much is undelivered and, when a bound would be passed, either waits without taking more
//! from its queue (`stop`: the queue fills, the processing stage and the sources wait, nothing
//! is acknowledged upstream) or deletes the oldest undelivered readings (`evict_oldest`). Both
//! are counted in [`OutboxStatus`] and logged.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{AlertEvent, OutboxUsage, Store};
use crate::readings::{now_ms, Reading};
use crate::storage::config::{OutboxConfig, OutboxFullPolicy};

/// How often a writer gathering readings for `commit_delay` looks at its queue.
const COMMIT_POLL: Duration = Duration::from_millis(20);

/// How long a stopping gateway keeps retrying a failing commit before it gives up on the batch.
pub const SHUTDOWN_COMMIT_GRACE: Duration = Duration::from_secs(3);

/// How often the writer checks that the WAL stays within its bound.
const WAL_CHECK_EVERY: Duration = Duration::from_secs(10);

/// What the pipeline asks the writer to make durable.
#[derive(Debug)]
pub enum StoreCommand {
    /// Readings to commit. `ack`, when given, is answered after the commit (sources that must
    /// acknowledge upstream, such as MQTT, wait for it).
    Readings {
        readings: Vec<Reading>,
        ack: Option<oneshot::Sender<()>>,
    },
    /// An alert transition.
    Alert(AlertEvent),
}

/// Settings of the writer thread.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Most readings per transaction.
    pub max_batch: usize,
    /// Readings older than this are pruned (once delivered to every destination).
    pub retention: Duration,
    /// Names of the output destinations whose cursors bound pruning and define the outbox.
    pub destinations: Vec<String>,
    /// How often to prune.
    pub prune_every: Duration,
    /// Bounds of the undelivered part of the store.
    pub outbox: OutboxConfig,
    /// How often a writer held back by a full outbox (`stop`) looks again.
    pub full_recheck: Duration,
    /// Cancelled when the pipeline shuts down: a writer held back by a full outbox then commits
    /// what it has already taken (it was taken from the sources and must not be lost).
    pub shutdown: CancellationToken,
    /// SQLite page cache of the writer's connection, MiB (`[storage] cache_mib`).
    pub cache_mib: u32,
    /// Most bytes the store may use (see [`super::budget`]); 0 = no budget.
    pub disk_budget: u64,
    /// How often the budget is checked.
    pub budget_every: Duration,
    /// Longest time readings are gathered before they are committed (`[storage] commit_delay`).
    pub commit_delay: Duration,
    /// The clock guard: while the wall clock is not trusted, nothing is pruned or evicted by
    /// age (a clock years ahead would otherwise delete the history). None: always trusted.
    pub clock: Option<Arc<crate::clock::Clock>>,
    /// Minute aggregates older than this are pruned, except counters' interval boundaries
    /// (`[storage] minute_retention`, see [`super::tiers`]).
    pub minute_retention: Duration,
    /// How often readings are rolled up into the minute tier.
    pub rollup_every: Duration,
}

impl WriterOptions {
    /// Options with the given batch size and destinations, defaults elsewhere (no outbox bound).
    pub fn new(max_batch: usize, destinations: Vec<String>) -> Self {
        WriterOptions {
            max_batch,
            retention: Duration::from_secs(400 * 86_400),
            destinations,
            prune_every: Duration::from_secs(3600),
            outbox: OutboxConfig {
                max_rows: 0,
                max_bytes: 0,
                max_age: Duration::ZERO,
                when_full: OutboxFullPolicy::Stop,
            },
            full_recheck: Duration::from_millis(200),
            shutdown: CancellationToken::new(),
            cache_mib: 32,
            disk_budget: 0,
            budget_every: Duration::from_secs(60),
            commit_delay: Duration::ZERO,
            clock: None,
            minute_retention: Duration::from_secs(400 * 86_400),
            rollup_every: Duration::from_secs(3600),
        }
    }

    /// Whether the wall clock may be used to judge ages.
    fn clock_trusted(&self) -> bool {
        self.clock.as_ref().is_none_or(|c| c.observe().trusted)
    }
}

/// Counters the writer keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    pub readings: u64,
    pub transactions: u64,
    pub errors: u64,
}

/// Live state of the outbox, updated by the writer after each commit; the pipeline (status
/// summaries, alerting) reads it.
#[derive(Debug, Default)]
pub struct OutboxStatus {
    /// Undelivered readings after the last commit.
    pub rows: AtomicU64,
    /// Estimated bytes of undelivered readings.
    pub bytes: AtomicU64,
    /// Highest committed reading id.
    pub last_id: AtomicI64,
    /// True while a bound is reached (with `stop`: while sources are held back).
    pub full: AtomicBool,
    /// How many times the outbox became full.
    pub full_events: AtomicU64,
    /// Total time the writer held sources back because the outbox was full (ms).
    pub stalled_ms: AtomicU64,
    /// Readings deleted undelivered to make room (`evict_oldest`), since the store was created.
    pub evicted: AtomicU64,
    /// Failed commits (each retried).
    pub commit_errors: AtomicU64,
    /// True from a failed commit until the next one succeeds (disk full, store unwritable).
    pub commit_failing: AtomicBool,
    /// Delivered readings dropped to keep the store within its disk budget, since the store was
    /// created.
    pub budget_dropped: AtomicU64,
    /// Budget checks that found the store over its disk budget with nothing that may go but
    /// undelivered readings and the minutes they cover.
    pub budget_undelivered_over: AtomicU64,
    /// Bytes of the store file in use, at the last budget check.
    pub used_bytes: AtomicU64,
    /// The disk budget in bytes (0 = none).
    pub disk_budget: AtomicU64,
    /// Time from the last committed batch's first readings reaching the writer to its commit
    /// (ms): how far the store lags behind acquisition.
    pub commit_lag_ms: AtomicI64,
}

/// Commit lag past which the pipeline is not keeping up (readyz, warning).
pub const LAG_LIMIT_MS: i64 = 10_000;

/// A copy of [`OutboxStatus`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboxSnapshot {
    pub rows: u64,
    pub bytes: u64,
    pub last_id: i64,
    pub full: bool,
    pub full_events: u64,
    pub stalled_ms: u64,
    pub evicted: u64,
    pub commit_errors: u64,
    pub budget_dropped: u64,
    pub used_bytes: u64,
    pub disk_budget: u64,
    pub commit_lag_ms: i64,
}

impl OutboxStatus {
    pub fn snapshot(&self) -> OutboxSnapshot {
        OutboxSnapshot {
            rows: self.rows.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            last_id: self.last_id.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
            full_events: self.full_events.load(Ordering::Relaxed),
            stalled_ms: self.stalled_ms.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            commit_errors: self.commit_errors.load(Ordering::Relaxed),
            budget_dropped: self.budget_dropped.load(Ordering::Relaxed),
            used_bytes: self.used_bytes.load(Ordering::Relaxed),
            disk_budget: self.disk_budget.load(Ordering::Relaxed),
            commit_lag_ms: self.commit_lag_ms.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, u: &OutboxUsage) {
        self.rows.store(u.rows, Ordering::Relaxed);
        self.bytes.store(u.bytes, Ordering::Relaxed);
        self.last_id.store(u.max_id, Ordering::Relaxed);
    }
}

/// Which bound an incoming batch would pass, if any.
fn over_bound(
    cfg: &OutboxConfig,
    store: &Store,
    u: &OutboxUsage,
    incoming: u64,
) -> Result<Option<&'static str>, super::StoreError> {
    if u.rows == 0 {
        // Nothing undelivered: the batch is always taken, however large.
        return Ok(None);
    }
    if cfg.max_rows > 0 && u.rows + incoming > cfg.max_rows {
        return Ok(Some("max_rows"));
    }
    if cfg.max_bytes > 0 && u.bytes + (incoming as f64 * u.bytes_per_row) as u64 > cfg.max_bytes {
        return Ok(Some("max_bytes"));
    }
    if !cfg.max_age.is_zero() {
        let cutoff = now_ms() - cfg.max_age.as_millis() as i64;
        if store.oldest_after(u.floor)?.is_some_and(|ts| ts < cutoff) {
            return Ok(Some("max_age"));
        }
    }
    Ok(None)
}

fn bounded(cfg: &OutboxConfig) -> bool {
    cfg.max_rows > 0 || cfg.max_bytes > 0 || !cfg.max_age.is_zero()
}

/// Makes room for `incoming` readings by deleting the oldest undelivered ones. Returns how many
/// were deleted.
fn evict_for(
    cfg: &OutboxConfig,
    store: &Store,
    u: &OutboxUsage,
    incoming: u64,
) -> Result<u64, super::StoreError> {
    let mut through = u.floor;
    if cfg.max_rows > 0 && u.rows + incoming > cfg.max_rows {
        let excess = (u.rows + incoming - cfg.max_rows).min(u.rows);
        through = through.max(u.floor + excess as i64);
    }
    if cfg.max_bytes > 0 && u.bytes_per_row > 0.0 {
        let want = u.bytes as f64 + incoming as f64 * u.bytes_per_row;
        if want > cfg.max_bytes as f64 {
            let excess = ((want - cfg.max_bytes as f64) / u.bytes_per_row).ceil() as u64;
            through = through.max(u.floor + excess.min(u.rows) as i64);
        }
    }
    if !cfg.max_age.is_zero() {
        let cutoff = now_ms() - cfg.max_age.as_millis() as i64;
        through = through.max(store.old_prefix_end(u.floor, cutoff)?);
    }
    if through <= u.floor {
        return Ok(0);
    }
    store.evict(u.floor, through)
}

/// Starts the writer. It runs until every sender of `rx` is dropped and the queue is drained,
/// then returns its counters. `committed` is updated with the highest committed reading id
/// after each transaction.
pub fn spawn(
    store: Store,
    rx: mpsc::Receiver<StoreCommand>,
    committed: watch::Sender<i64>,
    opts: WriterOptions,
) -> std::thread::JoinHandle<WriterStats> {
    spawn_with_status(
        store,
        rx,
        committed,
        opts,
        Arc::new(OutboxStatus::default()),
    )
}

/// [`spawn`], publishing the outbox state in `status`.
pub fn spawn_with_status(
    mut store: Store,
    mut rx: mpsc::Receiver<StoreCommand>,
    committed: watch::Sender<i64>,
    opts: WriterOptions,
    status: Arc<OutboxStatus>,
) -> std::thread::JoinHandle<WriterStats> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let mut stats = WriterStats::default();
            let mut last_prune = Instant::now();
            let mut last_rollup = Instant::now();
            let mut last_wal_check = Instant::now();
            // When the batch being gathered got its first readings.
            let mut gathering: Option<Instant> = None;
            let mut last_budget_check: Option<Instant> = None;
            status
                .disk_budget
                .store(opts.disk_budget, Ordering::Relaxed);
            if let Ok(n) = store.budget_dropped_total() {
                status.budget_dropped.store(n, Ordering::Relaxed);
            }
            let mut batch: Vec<Reading> = Vec::new();
            // When the batch's first readings reached the writer: commit lag.
            let mut batch_since: Option<Instant> = None;
            let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
            let mut evict_log = crate::log_limit::LogLimiter::new(Duration::from_secs(60));
            store.keep_value_refs();
            if let Err(e) = store.set_cache_mib(opts.cache_mib) {
                tracing::warn!("{e}");
            }
            if let Ok(n) = store.evicted_total() {
                status.evicted.store(n, Ordering::Relaxed);
            }
            if let Ok(u) = store.outbox_usage(&opts.destinations) {
                status.publish(&u);
            }
            while let Some(first) = rx.blocking_recv() {
                let mut next = Some(first);
                // Take what is queued now, up to max_batch readings.
                while let Some(cmd) = next.take() {
                    match cmd {
                        StoreCommand::Readings { readings, ack } => {
                            if batch_since.is_none() && !readings.is_empty() {
                                batch_since = Some(Instant::now());
                            }
                            if batch.is_empty() {
                                batch = readings;
                            } else {
                                batch.extend(readings);
                            }
                            acks.extend(ack);
                        }
                        StoreCommand::Alert(e) => {
                            if let Err(err) = store.insert_alert_event(&e) {
                                stats.errors += 1;
                                tracing::error!("cannot record alert event: {err}");
                            }
                        }
                    }
                    if batch.len() < opts.max_batch {
                        next = rx.try_recv().ok();
                    }
                    // Group readings for up to commit_delay: each commit costs a few pages
                    // written twice (WAL, checkpoint) whatever its size. Readings a source waits
                    // on (ack) and a stopping gateway commit at once.
                    if next.is_none()
                        && !batch.is_empty()
                        && acks.is_empty()
                        && batch.len() < opts.max_batch
                        && !opts.shutdown.is_cancelled()
                    {
                        let waited = gathering.get_or_insert_with(Instant::now).elapsed();
                        if waited < opts.commit_delay {
                            std::thread::sleep(COMMIT_POLL.min(opts.commit_delay - waited));
                            next = match rx.try_recv() {
                                Ok(cmd) => Some(cmd),
                                Err(mpsc::error::TryRecvError::Empty) => {
                                    Some(StoreCommand::Readings {
                                        readings: Vec::new(),
                                        ack: None,
                                    })
                                }
                                Err(mpsc::error::TryRecvError::Disconnected) => None,
                            };
                        }
                    }
                }
                gathering = None;
                if !batch.is_empty() {
                    if bounded(&opts.outbox) && !opts.destinations.is_empty() {
                        make_room(
                            &mut store,
                            batch.len() as u64,
                            &opts,
                            &status,
                            &mut evict_log,
                        );
                    }
                    commit(
                        &mut store, &mut batch, &mut acks, &committed, &mut stats, &status, &opts,
                    );
                    if let Some(t) = batch_since.take() {
                        record_lag(&status, t.elapsed().as_millis() as i64);
                    }
                } else {
                    // Nothing to commit (an empty batch: the watchdog's probe): everything
                    // before it is committed, so whoever waits is answered now.
                    for a in acks.drain(..) {
                        let _ = a.send(());
                    }
                }
                if last_wal_check.elapsed() >= WAL_CHECK_EVERY {
                    last_wal_check = Instant::now();
                    if let Err(e) = store.bound_wal(super::wal::WAL_LIMIT_BYTES) {
                        tracing::warn!("checkpoint failed: {e}");
                    }
                }
                if opts.disk_budget > 0
                    && last_budget_check.is_none_or(|t| t.elapsed() >= opts.budget_every)
                {
                    last_budget_check = Some(Instant::now());
                    keep_budget(&store, &opts, &status);
                }
                if last_rollup.elapsed() >= opts.rollup_every {
                    last_rollup = Instant::now();
                    if let Err(e) = store.roll_up(i64::MAX) {
                        tracing::warn!("rolling readings up into minutes failed: {e}");
                    }
                }
                if last_prune.elapsed() >= opts.prune_every {
                    last_prune = Instant::now();
                    if !opts.clock_trusted() {
                        tracing::warn!("clock not trusted (时钟不可信): retention pruning skipped");
                        continue;
                    }
                    let before = now_ms() - opts.retention.as_millis() as i64;
                    match store.prune(before, &opts.destinations) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "pruned readings past retention"),
                        Err(e) => tracing::warn!("prune failed: {e}"),
                    }
                    let before = now_ms() - opts.minute_retention.as_millis() as i64;
                    match store.prune_minutes(before) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(
                            deleted = n,
                            "pruned minute aggregates past minute_retention (interval boundaries of counters kept)"
                        ),
                        Err(e) => tracing::warn!("pruning minute aggregates failed: {e}"),
                    }
                }
            }
            tracing::debug!(?stats, "store writer stopped");
            stats
        })
        .expect("spawning the store writer thread")
}

/// Keeps the store within its disk budget (see [`super::budget`]), logging what it dropped.
fn keep_budget(store: &Store, opts: &WriterOptions, status: &OutboxStatus) {
    match store.enforce_budget(opts.disk_budget, &opts.destinations) {
        Ok(r) => {
            status.used_bytes.store(r.used_bytes, Ordering::Relaxed);
            if r.dropped > 0 {
                let total = status
                    .budget_dropped
                    .fetch_add(r.dropped, Ordering::Relaxed)
                    + r.dropped;
                tracing::warn!(
                    dropped = r.dropped,
                    dropped_total = total,
                    used_bytes = r.used_bytes,
                    budget_bytes = r.budget_bytes,
                    "store at its disk budget (storage.max_disk): dropped the oldest delivered readings"
                );
            } else if r.minutes_dropped > 0 {
                tracing::warn!(
                    minutes_dropped = r.minutes_dropped,
                    used_bytes = r.used_bytes,
                    budget_bytes = r.budget_bytes,
                    "store at its disk budget (storage.max_disk) with no delivered raw reading left: dropped the oldest minute aggregates (counters' interval boundaries, intervals and accounts stay)"
                );
            } else if r.undelivered_over {
                let total = status
                    .budget_undelivered_over
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                tracing::error!(
                    used_bytes = r.used_bytes,
                    budget_bytes = r.budget_bytes,
                    checks_total = total,
                    "store over its disk budget (storage.max_disk) with nothing delivered left to drop: undelivered readings and the minutes they cover stay; the outputs are behind; bound the undelivered part with [storage.outbox]"
                );
            } else if r.stuck {
                tracing::error!(
                    used_bytes = r.used_bytes,
                    budget_bytes = r.budget_bytes,
                    "store over its disk budget (storage.max_disk) with only counters' interval boundaries, alert history, intervals and accounts left: raise storage.max_disk"
                );
            }
        }
        Err(e) => tracing::warn!("cannot keep the disk budget: {e}"),
    }
}

/// Applies the outbox policy before `incoming` readings are committed.
fn make_room(
    store: &mut Store,
    incoming: u64,
    opts: &WriterOptions,
    status: &OutboxStatus,
    evict_log: &mut crate::log_limit::LogLimiter,
) {
    // Ages mean nothing on a clock that cannot be trusted: max_age waits for a trusted one.
    let aged;
    let cfg = if opts.outbox.max_age.is_zero() || opts.clock_trusted() {
        &opts.outbox
    } else {
        aged = OutboxConfig {
            max_age: Duration::ZERO,
            ..opts.outbox.clone()
        };
        &aged
    };
    let check = |store: &Store| -> Option<(OutboxUsage, &'static str)> {
        let u = match store.outbox_usage(&opts.destinations) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!("cannot measure the outbox: {e}");
                return None;
            }
        };
        status.publish(&u);
        match over_bound(cfg, store, &u, incoming) {
            Ok(Some(bound)) => Some((u, bound)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("cannot check the outbox bounds: {e}");
                None
            }
        }
    };
    let Some((u, bound)) = check(store) else {
        status.full.store(false, Ordering::Relaxed);
        return;
    };
    status.full_events.fetch_add(1, Ordering::Relaxed);
    status.full.store(true, Ordering::Relaxed);
    match cfg.when_full {
        OutboxFullPolicy::EvictOldest => {
            match evict_for(cfg, store, &u, incoming) {
                Ok(n) => {
                    let total = status.evicted.fetch_add(n, Ordering::Relaxed) + n;
                    if let Some(suppressed) = evict_log.allow() {
                        tracing::error!(
                            bound,
                            evicted = n,
                            evicted_total = total,
                            undelivered = u.rows,
                            suppressed,
                            "outbox full: deleted the oldest undelivered readings to make room (storage.outbox.when_full = \"evict_oldest\"); they will never reach the outputs"
                        );
                    }
                }
                Err(e) => tracing::error!("outbox full but eviction failed: {e}"),
            }
            status.full.store(false, Ordering::Relaxed);
        }
        OutboxFullPolicy::Stop => {
            if opts.shutdown.is_cancelled() {
                // Shutting down: what was taken from the sources is committed beyond the bound.
                tracing::debug!(bound, "outbox full during shutdown: committing anyway");
                status.full.store(false, Ordering::Relaxed);
                return;
            }
            let started = Instant::now();
            tracing::warn!(
                bound,
                undelivered = u.rows,
                undelivered_bytes = u.bytes,
                "outbox full: not taking new readings until outputs deliver (storage.outbox.when_full = \"stop\"); sources are held back"
            );
            let mut shutdown_logged = false;
            loop {
                if opts.shutdown.is_cancelled() {
                    if !shutdown_logged {
                        tracing::warn!(
                            "shutting down with a full outbox: committing the readings already taken beyond the bound"
                        );
                    }
                    shutdown_logged = true;
                    break;
                }
                std::thread::sleep(opts.full_recheck);
                if check(store).is_none() {
                    break;
                }
            }
            let ms = started.elapsed().as_millis() as u64;
            status.stalled_ms.fetch_add(ms, Ordering::Relaxed);
            status.full.store(false, Ordering::Relaxed);
            if !shutdown_logged {
                tracing::info!(
                    held_back_ms = ms,
                    "outbox below its bounds again: taking readings"
                );
            }
        }
    }
}

/// Time from readings reaching the writer to their commit (a slow or failing disk, a store
/// that cannot keep up), with a warning when it passes [`LAG_LIMIT_MS`]. Measured from arrival,
/// not from the readings' timestamps: a meter's backlog or an MQTT replay of old readings is
/// not a store falling behind.
fn record_lag(status: &OutboxStatus, lag: i64) {
    let was = status.commit_lag_ms.swap(lag, Ordering::Relaxed);
    if lag > LAG_LIMIT_MS && was <= LAG_LIMIT_MS {
        tracing::warn!(
            lag_ms = lag,
            "the store is falling behind acquisition: readings are committed {lag} ms after they reached it (the pipeline cannot keep up; fewer devices or points, a longer interval, or a faster disk)"
        );
    } else if lag <= LAG_LIMIT_MS && was > LAG_LIMIT_MS {
        tracing::info!(lag_ms = lag, "the store keeps up with acquisition again");
    }
}

fn commit(
    store: &mut Store,
    batch: &mut Vec<Reading>,
    acks: &mut Vec<oneshot::Sender<()>>,
    committed: &watch::Sender<i64>,
    stats: &mut WriterStats,
    status: &OutboxStatus,
    opts: &WriterOptions,
) {
    let destinations = &opts.destinations;
    // A failing disk must not lose the batch: retry with a pause, logging each failure. Only a
    // stopping gateway gives up, after SHUTDOWN_COMMIT_GRACE of failures, so that it stops in
    // time: what it could not commit is logged, and nothing of it is acknowledged (MQTT brokers
    // deliver it again).
    let mut delay = Duration::from_millis(100);
    let mut failing_since: Option<Instant> = None;
    // Already failing while stopping: one attempt per batch.
    let gave_up = opts.shutdown.is_cancelled() && status.commit_failing.load(Ordering::Relaxed);
    loop {
        match store.insert_readings(batch.iter()) {
            Ok(last) => {
                status.commit_failing.store(false, Ordering::Relaxed);
                stats.readings += batch.len() as u64;
                stats.transactions += 1;
                batch.clear();
                // The status is current before anyone hears of the commit.
                if destinations.is_empty() {
                    status.last_id.store(last, Ordering::Relaxed);
                } else {
                    match store.outbox_usage(destinations) {
                        Ok(u) => status.publish(&u),
                        Err(e) => tracing::warn!("cannot measure the outbox: {e}"),
                    }
                }
                // The committed id first: whoever is acknowledged sees it.
                committed.send_replace(last);
                for a in acks.drain(..) {
                    let _ = a.send(());
                }
                return;
            }
            Err(e) => {
                stats.errors += 1;
                status.commit_errors.fetch_add(1, Ordering::Relaxed);
                status.commit_failing.store(true, Ordering::Relaxed);
                let since = *failing_since.get_or_insert_with(Instant::now);
                if opts.shutdown.is_cancelled()
                    && (gave_up || since.elapsed() >= SHUTDOWN_COMMIT_GRACE)
                {
                    tracing::error!(
                        readings = batch.len(),
                        "stopping although the store cannot commit ({e}): these readings are not stored; none of them was acknowledged"
                    );
                    batch.clear();
                    acks.clear();
                    return;
                }
                tracing::error!(
                    readings = batch.len(),
                    "commit failed, retrying in {delay:?}: {e}"
                );
                // In short naps, so that a shutdown is noticed at once.
                let until = Instant::now() + delay;
                while Instant::now() < until && !opts.shutdown.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if opts.shutdown.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(200));
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::Quantity;
    use crate::storage::config::Synchronous;

    #[test]
    fn drains_everything_and_acks_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path, Synchronous::Normal).unwrap();
        let (tx, rx) = mpsc::channel(4);
        let (ctx, crx) = watch::channel(0);
        let h = spawn(
            store,
            rx,
            ctx,
            WriterOptions {
                retention: Duration::from_secs(3600),
                ..WriterOptions::new(7, vec![])
            },
        );
        let (ack_tx, ack_rx) = oneshot::channel();
        for i in 0..50 {
            let readings = vec![Reading::new("m", Quantity::ActivePower, i as f64, now_ms())];
            tx.blocking_send(StoreCommand::Readings {
                readings,
                ack: None,
            })
            .unwrap();
        }
        tx.blocking_send(StoreCommand::Readings {
            readings: vec![Reading::new("m", Quantity::ActivePower, 99.0, now_ms())],
            ack: Some(ack_tx),
        })
        .unwrap();
        ack_rx.blocking_recv().unwrap();
        // The ack came after the commit: a fresh connection sees all 51.
        let reader = Store::open(&path, Synchronous::Normal).unwrap();
        assert_eq!(reader.count_readings().unwrap(), 51);
        drop(tx);
        let stats = h.join().unwrap();
        assert_eq!(stats.readings, 51);
        assert!(stats.transactions <= 51);
        assert_eq!(*crx.borrow(), 51);
    }

    #[test]
    fn the_writer_keeps_the_disk_budget_and_counts_what_it_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path, Synchronous::Normal).unwrap();
        let (tx, rx) = mpsc::channel(4);
        let (ctx, _crx) = watch::channel(0);
        let status = Arc::new(OutboxStatus::default());
        let h = spawn_with_status(
            store,
            rx,
            ctx,
            WriterOptions {
                disk_budget: 1 << 20,
                budget_every: Duration::ZERO,
                ..WriterOptions::new(100_000, vec![])
            },
            status.clone(),
        );
        // 3 MB of history at ~5 bytes a reading (no outputs: all of it is delivered).
        for round in 0..60 {
            let readings = (0..10_000)
                .map(|i| {
                    Reading::new(
                        format!("m{}", i % 500),
                        Quantity::ALL[i % 15],
                        f64::from(round * 10_000 + i as i32) + 0.5,
                        now_ms(),
                    )
                })
                .collect();
            tx.blocking_send(StoreCommand::Readings {
                readings,
                ack: None,
            })
            .unwrap();
        }
        drop(tx);
        h.join().unwrap();
        let s = status.snapshot();
        assert!(s.budget_dropped > 0, "{s:?}");
        assert_eq!(s.disk_budget, 1 << 20);
        let store = Store::open(&path, Synchronous::Normal).unwrap();
        assert!(store.used_bytes().unwrap() <= (1 << 20) + 100_000 * 6);
        assert_eq!(store.budget_dropped_total().unwrap(), s.budget_dropped);
        // The newest readings are kept.
        assert_eq!(store.max_reading_id().unwrap(), 600_000);
    }

    #[test]
    fn readings_are_gathered_for_commit_delay_and_acked_ones_commit_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        let (tx, rx) = mpsc::channel(1024);
        let (ctx, crx) = watch::channel(0);
        let h = spawn(
            store,
            rx,
            ctx,
            WriterOptions {
                commit_delay: Duration::from_millis(400),
                ..WriterOptions::new(10_000, vec![])
            },
        );
        // 40 polls arriving over ~200 ms: one or two commits, not 40.
        for i in 0..40 {
            tx.blocking_send(StoreCommand::Readings {
                readings: vec![Reading::new(
                    "m",
                    Quantity::ActivePower,
                    f64::from(i),
                    i.into(),
                )],
                ack: None,
            })
            .unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        // A reading a source waits on is committed without waiting out the delay.
        let (ack_tx, ack_rx) = oneshot::channel();
        let t = Instant::now();
        tx.blocking_send(StoreCommand::Readings {
            readings: vec![Reading::new("m", Quantity::ActivePower, 1.0, 100)],
            ack: Some(ack_tx),
        })
        .unwrap();
        ack_rx.blocking_recv().unwrap();
        // Well under the 400 ms delay (generous: a loaded CI box).
        assert!(
            t.elapsed() < Duration::from_millis(390),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(*crx.borrow(), 41);
        drop(tx);
        let stats = h.join().unwrap();
        assert_eq!(stats.readings, 41);
        assert!(stats.transactions <= 3, "{stats:?}");
    }
}
