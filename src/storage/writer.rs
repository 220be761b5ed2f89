//! The store writer: a dedicated thread that owns the write connection and commits whatever has
//! queued up since its last commit in one transaction (group commit). Throughput grows with load
//! while a lone reading is committed at once.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::{AlertEvent, Store};
use crate::readings::{now_ms, Reading};

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
    /// Names of the output destinations whose cursors bound pruning.
    pub destinations: Vec<String>,
    /// How often to prune.
    pub prune_every: Duration,
}

/// Counters the writer keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    pub readings: u64,
    pub transactions: u64,
    pub errors: u64,
}

/// Starts the writer. It runs until every sender of `rx` is dropped and the queue is drained,
/// then returns its counters. `committed` is updated with the highest committed reading id
/// after each transaction.
pub fn spawn(
    mut store: Store,
    mut rx: mpsc::Receiver<StoreCommand>,
    committed: watch::Sender<i64>,
    opts: WriterOptions,
) -> std::thread::JoinHandle<WriterStats> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let mut stats = WriterStats::default();
            let mut last_prune = Instant::now();
            let mut batch: Vec<Reading> = Vec::new();
            let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
            while let Some(first) = rx.blocking_recv() {
                let mut next = Some(first);
                // Take what is queued now, up to max_batch readings.
                while let Some(cmd) = next.take() {
                    match cmd {
                        StoreCommand::Readings { readings, ack } => {
                            batch.extend(readings);
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
                }
                if !batch.is_empty() {
                    commit(&mut store, &mut batch, &mut acks, &committed, &mut stats);
                }
                if last_prune.elapsed() >= opts.prune_every {
                    last_prune = Instant::now();
                    let before = now_ms() - opts.retention.as_millis() as i64;
                    match store.prune(before, &opts.destinations) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "pruned readings past retention"),
                        Err(e) => tracing::warn!("prune failed: {e}"),
                    }
                }
            }
            tracing::debug!(?stats, "store writer stopped");
            stats
        })
        .expect("spawning the store writer thread")
}

fn commit(
    store: &mut Store,
    batch: &mut Vec<Reading>,
    acks: &mut Vec<oneshot::Sender<()>>,
    committed: &watch::Sender<i64>,
    stats: &mut WriterStats,
) {
    // A failing disk must not lose the batch: retry with a pause, logging each failure.
    let mut delay = Duration::from_millis(100);
    loop {
        match store.insert_readings(batch.iter()) {
            Ok(last) => {
                stats.readings += batch.len() as u64;
                stats.transactions += 1;
                batch.clear();
                for a in acks.drain(..) {
                    let _ = a.send(());
                }
                committed.send_replace(last);
                return;
            }
            Err(e) => {
                stats.errors += 1;
                tracing::error!(
                    readings = batch.len(),
                    "commit failed, retrying in {delay:?}: {e}"
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;
    use crate::readings::Quantity;

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
                max_batch: 7,
                retention: Duration::from_secs(3600),
                destinations: vec![],
                prune_every: Duration::from_secs(3600),
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
}
