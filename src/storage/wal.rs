//! Keeping the write-ahead log bounded. SQLite's automatic checkpoints are PASSIVE: they copy
//! what no reader still needs and never wait, so with outputs reading the store continuously the
//! WAL may never be reset and grows without bound (15.9 GB after 6 minutes was seen at 5000
//! devices). The writer therefore checks the WAL now and then and, past [`WAL_LIMIT_BYTES`],
//! runs a RESTART checkpoint, which waits (up to the busy timeout) for the readers' current
//! transactions — they are short — so that the next commit starts the WAL from its beginning;
//! `journal_size_limit` then truncates the file back to the limit.

use super::{ctx, Result, Store};

/// WAL size past which the writer forces a checkpoint, and to which SQLite truncates the WAL
/// file after one (`PRAGMA journal_size_limit`).
pub const WAL_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Result of a checkpoint: frames in the WAL, and of them copied into the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub busy: bool,
    pub wal_frames: i64,
    pub checkpointed: i64,
}

impl Store {
    fn checkpoint(&self, mode: &str) -> Result<Checkpoint> {
        self.conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok(Checkpoint {
                    busy: r.get::<_, i64>(0)? != 0,
                    wal_frames: r.get(1)?,
                    checkpointed: r.get(2)?,
                })
            })
            .map_err(ctx("checkpoint"))
    }

    /// Copies the WAL into the database without waiting; when the WAL holds more than
    /// `limit_bytes`, waits for readers so the WAL restarts from its beginning.
    pub fn bound_wal(&self, limit_bytes: i64) -> Result<Checkpoint> {
        let passive = self.checkpoint("PASSIVE")?;
        let page_size = self.page_stats()?.2.max(1);
        if passive.wal_frames * page_size <= limit_bytes {
            return Ok(passive);
        }
        let c = self.checkpoint("RESTART")?;
        if c.busy {
            tracing::warn!(
                wal_frames = c.wal_frames,
                "the WAL could not be restarted: a reader held it for longer than the busy timeout"
            );
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use crate::readings::{Quantity, Reading};
    use crate::storage::config::Synchronous;
    use crate::storage::Store;

    #[test]
    fn the_wal_stays_within_its_bound_while_a_reader_reads_continuously() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sqlite");
        let mut w = Store::open(&p, Synchronous::Normal).unwrap();
        // Only bound_wal checkpoints here.
        w.conn.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let r = Store::open(&p, Synchronous::Normal).unwrap();
                let mut reads = 0u64;
                // Back-to-back read transactions: some reader always holds a WAL snapshot, so
                // checkpoints that never wait (SQLite's automatic ones) cannot reset the WAL.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    r.conn.execute_batch("BEGIN").unwrap();
                    r.outbox_after(0, 100).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    r.conn.execute_batch("COMMIT").unwrap();
                    reads += 1;
                }
                reads
            })
        };
        let wal = || {
            std::fs::metadata(p.with_extension("sqlite-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let mut max = 0;
        for round in 0..60 {
            let rs: Vec<_> = (0..2000)
                .map(|i| {
                    Reading::new(
                        format!("m{i}"),
                        Quantity::ActivePower,
                        f64::from(i) + 0.1,
                        round,
                    )
                })
                .collect();
            w.insert_readings(&rs).unwrap();
            w.bound_wal(256 * 1024).unwrap();
            max = max.max(wal());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        // With PASSIVE checkpoints only (bound_wal(i64::MAX)) the WAL holds all 60 commits.
        assert!(max < 1024 * 1024, "WAL grew to {max} bytes");
        assert_eq!(w.count_readings().unwrap(), 120_000);
    }
}
