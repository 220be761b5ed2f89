//! Delivery by cursor: the part every output that reads readings from the store shares. A
//! destination has a cursor in the store (the highest reading id it confirmed); it reads the
//! readings after what it has sent, sends them in order, and the cursor advances only over a
//! contiguous run of confirmed sends, so a crash or a lost connection sends again from the cursor
//! and nothing is skipped (at least once; a replay carries the same acquisition timestamps).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::outputs::influxdb::OutputStatus;
use crate::readings::{Quality, Quantity, TimestampMs};
use crate::storage::config::Synchronous;
use crate::storage::{Store, StoreError};

/// A destination's delivery state: the confirmed cursor, and the ids sent after it in order with
/// whether each has been confirmed.
#[derive(Debug, Default)]
pub struct Track {
    pub cursor: i64,
    pub sent: VecDeque<(i64, bool)>,
}

impl Track {
    /// The id to read after: the last one sent, else the cursor.
    pub fn next_after(&self) -> i64 {
        self.sent.back().map(|(id, _)| *id).unwrap_or(self.cursor)
    }
    /// Marks `id` confirmed; returns the new cursor when it moved.
    pub fn ack(&mut self, id: i64) -> Option<i64> {
        if let Some(e) = self.sent.iter_mut().find(|(i, _)| *i == id) {
            e.1 = true;
        }
        let before = self.cursor;
        while let Some((i, true)) = self.sent.front().copied() {
            self.cursor = i;
            self.sent.pop_front();
        }
        (self.cursor != before).then_some(self.cursor)
    }
}

/// Runs `f` on an output's store connection on the blocking pool.
pub async fn store_op<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let s = store
            .lock()
            .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
        Ok::<_, anyhow::Error>(f(&s)?)
    })
    .await?
}

/// A reading as an output sends it: its store id and series (the series id is stable, so it
/// can name the series on the wire, e.g. as a Sparkplug alias).
#[derive(Debug, Clone, PartialEq)]
pub struct CursorReading {
    pub id: i64,
    pub series_id: i64,
    pub device: Arc<str>,
    pub quantity: Quantity,
    pub ts_ms: TimestampMs,
    pub value: Option<f64>,
    pub quality: Quality,
}

/// Reads a destination's readings from the store by its cursor and moves the cursor on
/// confirmations. Each send covers a run of ids and is confirmed by its last id.
pub struct ReadingCursor {
    store: Arc<Mutex<Store>>,
    destination: String,
    series: HashMap<i64, Option<(Arc<str>, Quantity)>>,
    track: Track,
    status: Arc<OutputStatus>,
}

impl ReadingCursor {
    /// Opens the store on a connection of its own and loads the destination's cursor.
    pub fn open(
        store_path: &Path,
        destination: &str,
        status: Arc<OutputStatus>,
    ) -> Result<Self, StoreError> {
        let store = Store::open(store_path, Synchronous::Normal)?;
        let cursor = store.cursor(destination)?;
        status.cursor.store(cursor, Ordering::Relaxed);
        Ok(ReadingCursor {
            store: Arc::new(Mutex::new(store)),
            destination: destination.to_string(),
            series: HashMap::new(),
            track: Track {
                cursor,
                sent: VecDeque::new(),
            },
            status,
        })
    }

    async fn op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> anyhow::Result<T> {
        store_op(&self.store, f).await
    }

    /// Sends waiting for confirmation.
    pub fn in_flight(&self) -> usize {
        self.track.sent.len()
    }

    /// Up to `limit` readings after the last one sent, in id order. Readings of a series this
    /// build does not know are left out (and confirmed with the send that follows them).
    pub async fn next(&mut self, limit: usize) -> anyhow::Result<Vec<CursorReading>> {
        let after = self.track.next_after();
        let rows = self.op(move |s| s.outbox_after(after, limit)).await?;
        let unknown: Vec<i64> = rows
            .iter()
            .map(|r| r.series_id)
            .filter(|id| !self.series.contains_key(id))
            .collect();
        if !unknown.is_empty() {
            let names = self.op(|s| s.series_names()).await?;
            for id in unknown {
                let v = names.get(&id).and_then(|(d, q)| {
                    q.parse::<Quantity>()
                        .ok()
                        .map(|q| (Arc::<str>::from(d.as_str()), q))
                });
                self.series.insert(id, v);
            }
        }
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let (device, quantity) = self.series.get(&r.series_id)?.clone()?;
                Some(CursorReading {
                    id: r.id,
                    series_id: r.series_id,
                    device,
                    quantity,
                    ts_ms: r.ts_ms,
                    value: r.value,
                    quality: r.quality,
                })
            })
            .collect())
    }

    /// Every series in the store: id → (device, quantity), in id order.
    pub async fn all_series(&self) -> anyhow::Result<Vec<(i64, String, Quantity)>> {
        let names = self.op(|s| s.series_names()).await?;
        let mut v: Vec<(i64, String, Quantity)> = names
            .into_iter()
            .filter_map(|(id, (d, q))| q.parse::<Quantity>().ok().map(|q| (id, d, q)))
            .collect();
        v.sort_by_key(|s| s.0);
        Ok(v)
    }

    /// Records a send covering readings up to `last_id`.
    pub fn sent(&mut self, last_id: i64) {
        self.track.sent.push_back((last_id, false));
    }

    /// The send ending at `last_id` was confirmed: `readings` more delivered; the cursor moves
    /// (in the store too) when every earlier send was confirmed as well.
    pub async fn confirmed(&mut self, last_id: i64, readings: u64) -> anyhow::Result<()> {
        self.status
            .points_sent
            .fetch_add(readings, Ordering::Relaxed);
        if let Some(c) = self.track.ack(last_id) {
            let d = self.destination.clone();
            self.op(move |s| s.advance_cursor(&d, c)).await?;
            self.status.cursor.store(c, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Forgets unconfirmed sends (the connection was lost): the next read starts again after
    /// the cursor.
    pub fn rewind(&mut self) {
        self.track.sent.clear();
    }
}
