//! Readings by cursor for the outputs: the store's [`Consumer`] over the reading outbox
//! ([`ReadingFeed`]), with each reading's series named (device and quantity, looked up once).
//! The delivery rules (read in pages after what was sent, advance only over contiguous
//! confirmed sends, send again from the cursor after a loss) are the consumer's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::outputs::influxdb::OutputStatus;
use crate::readings::{Quality, Quantity, TimestampMs};
use crate::storage::consumer::{Consumer, ReadingFeed};
use crate::storage::{Store, StoreError};

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
    consumer: Consumer<ReadingFeed>,
    series: HashMap<i64, Option<(Arc<str>, Quantity)>>,
    status: Arc<OutputStatus>,
}

impl ReadingCursor {
    /// Opens the store on a connection of its own and loads the destination's cursor.
    pub fn open(
        store_path: &Path,
        destination: &str,
        status: Arc<OutputStatus>,
    ) -> anyhow::Result<Self> {
        let feed = ReadingFeed::open(store_path, destination)?;
        let cursor = feed.with(|s| s.cursor(destination))?;
        status.cursor.store(cursor, Ordering::Relaxed);
        Ok(ReadingCursor {
            consumer: Consumer::starting_at(feed, cursor, 1),
            series: HashMap::new(),
            status,
        })
    }

    async fn op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.consumer.op(move |feed| feed.with(f)).await
    }

    /// Sends waiting for confirmation.
    pub fn in_flight(&self) -> usize {
        self.consumer.in_flight()
    }

    /// Up to `limit` readings after the last one sent, in id order. Readings of a series this
    /// build does not know are left out (and confirmed with the send that follows them).
    pub async fn next(&mut self, limit: usize) -> anyhow::Result<Vec<CursorReading>> {
        let rows = self.consumer.next_up_to(limit).await?;
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
        self.consumer.sent(last_id);
    }

    /// The send ending at `last_id` was confirmed: `readings` more delivered; the cursor moves
    /// (in the store too) when every earlier send was confirmed as well.
    pub async fn confirmed(&mut self, last_id: i64, readings: u64) -> anyhow::Result<()> {
        self.status
            .points_sent
            .fetch_add(readings, Ordering::Relaxed);
        if let Some(c) = self.consumer.confirmed(last_id).await? {
            self.status.cursor.store(c, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Forgets unconfirmed sends (the connection was lost): the next read starts again after
    /// the cursor.
    pub fn rewind(&mut self) {
        self.consumer.rewind();
    }
}
