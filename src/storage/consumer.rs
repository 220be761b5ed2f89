//! Delivery by cursor: the one loop every sink of the store shares (InfluxDB readings and its
//! other series, the MQTT readings and status outputs, the notifiers). A sink has a cursor in the
//! store (the position of the last item it confirmed); it reads a page of items after what it has
//! sent, sends them in order, and the cursor advances — in memory and in the store — only over a
//! contiguous run of confirmed sends. A crash or a lost connection therefore sends again from the
//! cursor and nothing is skipped (at least once; a replay carries the same item, so it
//! overwrites rather than duplicates where the destination keys by time).
//!
//! What differs between sinks is only where their items and cursor are kept ([`Feed`]) and how
//! they send (one request at a time and confirmed at once, or many messages in flight confirmed
//! out of order): [`Consumer`] covers both.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::config::Synchronous;
use super::{OutboxRow, Store, StoreError};

/// Where a sink's items and cursor are kept. Its methods run on the blocking pool; a feed is
/// cheap to clone (it shares its connection).
pub trait Feed: Clone + Send + Sync + 'static {
    type Item: Send + 'static;
    /// The order items are delivered in (a row id, or a revision and id).
    type Pos: Copy + Ord + Default + std::fmt::Debug + Send + Sync + 'static;

    /// The confirmed cursor as stored (the default position when none is).
    fn load_cursor(&self) -> anyhow::Result<Self::Pos>;
    /// Up to `limit` items after `after`, in position order.
    fn read_after(&self, after: Self::Pos, limit: usize) -> anyhow::Result<Vec<Self::Item>>;
    /// Stores the cursor (never moving it backwards).
    fn store_cursor(&self, to: Self::Pos) -> anyhow::Result<()>;
}

/// A sink's delivery state: the confirmed cursor, and the positions sent after it in order with
/// whether each has been confirmed.
#[derive(Debug, Default)]
pub struct Track<P = i64> {
    pub cursor: P,
    pub sent: VecDeque<(P, bool)>,
}

impl<P: Copy + PartialEq> Track<P> {
    /// The position to read after: the last one sent, else the cursor.
    pub fn next_after(&self) -> P {
        self.sent.back().map(|(p, _)| *p).unwrap_or(self.cursor)
    }

    /// Marks `pos` confirmed; returns the new cursor when it moved.
    pub fn ack(&mut self, pos: P) -> Option<P> {
        if let Some(e) = self.sent.iter_mut().find(|(p, _)| *p == pos) {
            e.1 = true;
        }
        let mut moved = None;
        while let Some((p, true)) = self.sent.front().copied() {
            self.cursor = p;
            moved = Some(p);
            self.sent.pop_front();
        }
        moved
    }
}

/// Runs `f` on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// Reads a sink's feed by its cursor in pages and moves the cursor on confirmations. Each send
/// covers a run of items and is confirmed by the position of its last one.
pub struct Consumer<F: Feed> {
    feed: F,
    /// `None` until the cursor was loaded (loading is retried by the next read).
    track: Option<Track<F::Pos>>,
    page: usize,
}

impl<F: Feed> Consumer<F> {
    /// A consumer reading pages of `page` items; the cursor is loaded by the first read.
    pub fn new(feed: F, page: usize) -> Self {
        Consumer {
            feed,
            track: None,
            page: page.max(1),
        }
    }

    /// A consumer whose cursor the caller has loaded.
    pub fn starting_at(feed: F, cursor: F::Pos, page: usize) -> Self {
        Consumer {
            feed,
            track: Some(Track {
                cursor,
                sent: VecDeque::new(),
            }),
            page: page.max(1),
        }
    }

    pub fn feed(&self) -> &F {
        &self.feed
    }

    /// The confirmed cursor (None before it was loaded).
    pub fn cursor(&self) -> Option<F::Pos> {
        self.track.as_ref().map(|t| t.cursor)
    }

    /// The position the next read starts after (None before the cursor was loaded).
    pub fn next_after(&self) -> Option<F::Pos> {
        self.track.as_ref().map(Track::next_after)
    }

    /// Sends waiting for confirmation.
    pub fn in_flight(&self) -> usize {
        self.track.as_ref().map_or(0, |t| t.sent.len())
    }

    /// Items per read.
    pub fn set_page(&mut self, page: usize) {
        self.page = page.max(1);
    }

    /// Runs `f` on the feed on the blocking pool.
    pub async fn op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&F) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let feed = self.feed.clone();
        blocking(move || f(&feed)).await
    }

    async fn track(&mut self) -> anyhow::Result<&mut Track<F::Pos>> {
        if self.track.is_none() {
            let cursor = self.op(|f| f.load_cursor()).await?;
            self.track = Some(Track {
                cursor,
                sent: VecDeque::new(),
            });
        }
        self.track
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("cursor not loaded"))
    }

    /// The next page of items after the last one sent (empty when none waits).
    pub async fn next(&mut self) -> anyhow::Result<Vec<F::Item>> {
        let page = self.page;
        self.next_up_to(page).await
    }

    /// Up to `limit` items after the last one sent.
    pub async fn next_up_to(&mut self, limit: usize) -> anyhow::Result<Vec<F::Item>> {
        let after = self.track().await?.next_after();
        self.op(move |f| f.read_after(after, limit)).await
    }

    /// Records a send covering the items up to `pos`.
    pub fn sent(&mut self, pos: F::Pos) {
        if let Some(t) = self.track.as_mut() {
            t.sent.push_back((pos, false));
        }
    }

    /// The send ending at `pos` was confirmed: the cursor moves (in the store too) when every
    /// earlier send was confirmed as well. Returns the new cursor when it moved. When the store
    /// cannot take the new cursor the error is returned (the items go again from the stored
    /// cursor after a restart, or at once after [`Consumer::reload`]).
    pub async fn confirmed(&mut self, pos: F::Pos) -> anyhow::Result<Option<F::Pos>> {
        let Some(c) = self.track.as_mut().and_then(|t| t.ack(pos)) else {
            return Ok(None);
        };
        self.op(move |f| f.store_cursor(c)).await?;
        Ok(Some(c))
    }

    /// A send ending at `pos` was made and confirmed at once (one request at a time).
    pub async fn delivered(&mut self, pos: F::Pos) -> anyhow::Result<Option<F::Pos>> {
        self.sent(pos);
        self.confirmed(pos).await
    }

    /// Forgets the cursor and the sends: the next read loads the cursor from the store again
    /// (and sends again what came after it).
    pub fn reload(&mut self) {
        self.track = None;
    }

    /// Forgets unconfirmed sends (the connection was lost): the next read starts again after
    /// the cursor.
    pub fn rewind(&mut self) {
        if let Some(t) = self.track.as_mut() {
            t.sent.clear();
        }
    }
}

/// The reading outbox as a feed: readings by id after a destination's cursor (`cursors`).
#[derive(Clone)]
pub struct ReadingFeed {
    store: Arc<Mutex<Store>>,
    destination: Arc<str>,
}

impl ReadingFeed {
    /// Opens the store at `path` on a connection of its own for `destination`.
    pub fn open(path: &std::path::Path, destination: &str) -> Result<Self, StoreError> {
        Ok(ReadingFeed {
            store: Arc::new(Mutex::new(Store::open(path, Synchronous::Normal)?)),
            destination: destination.into(),
        })
    }

    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// Runs `f` on the feed's store connection (in the calling thread).
    pub fn with<T>(&self, f: impl FnOnce(&Store) -> Result<T, StoreError>) -> anyhow::Result<T> {
        let s = self
            .store
            .lock()
            .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
        Ok(f(&s)?)
    }
}

impl Feed for ReadingFeed {
    type Item = OutboxRow;
    type Pos = i64;

    fn load_cursor(&self) -> anyhow::Result<i64> {
        self.with(|s| s.cursor(&self.destination))
    }

    fn read_after(&self, after: i64, limit: usize) -> anyhow::Result<Vec<OutboxRow>> {
        self.with(|s| s.outbox_after(after, limit))
    }

    fn store_cursor(&self, to: i64) -> anyhow::Result<()> {
        self.with(|s| s.advance_cursor(&self.destination, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::{Quantity, Reading};

    #[test]
    fn cursor_advances_only_over_contiguous_acknowledgements() {
        let mut t = Track {
            cursor: 10,
            sent: VecDeque::new(),
        };
        for id in [11, 12, 14] {
            t.sent.push_back((id, false));
        }
        assert_eq!(t.next_after(), 14);
        assert_eq!(t.ack(12), None); // 11 still open
        assert_eq!(t.ack(11), Some(12));
        assert_eq!(t.ack(14), Some(14));
        assert!(t.sent.is_empty());
        assert_eq!(t.next_after(), 14);
    }

    #[tokio::test]
    async fn pages_in_order_and_a_durable_cursor_only_over_confirmed_sends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut store = Store::open(&path, Synchronous::Normal).unwrap();
        let rs: Vec<Reading> = (0..10)
            .map(|i| Reading::new("m", Quantity::ActivePower, i as f64, 1_000 + i))
            .collect();
        store.insert_readings(&rs).unwrap();
        let ids: Vec<i64> = store
            .outbox_after(0, 100)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        let feed = ReadingFeed::open(&path, "d").unwrap();
        let mut c = Consumer::new(feed.clone(), 4);
        let page = |v: &[OutboxRow]| v.iter().map(|r| r.id).collect::<Vec<_>>();

        // Two pages in flight; the second confirmed first does not move the cursor.
        let a = c.next().await.unwrap();
        assert_eq!(page(&a), ids[0..4]);
        c.sent(ids[3]);
        let b = c.next().await.unwrap();
        assert_eq!(page(&b), ids[4..8]);
        c.sent(ids[7]);
        assert_eq!(c.in_flight(), 2);
        assert_eq!(c.confirmed(ids[7]).await.unwrap(), None);
        assert_eq!(store.cursor("d").unwrap(), 0);
        assert_eq!(c.confirmed(ids[3]).await.unwrap(), Some(ids[7]));
        assert_eq!(store.cursor("d").unwrap(), ids[7]);

        // Sent, never confirmed, connection lost: the same items come again.
        let rest = c.next().await.unwrap();
        assert_eq!(page(&rest), ids[8..10]);
        c.sent(ids[9]);
        c.rewind();
        assert_eq!(page(&c.next().await.unwrap()), ids[8..10]);
        // A new consumer (a restart) starts from the stored cursor.
        let mut again = Consumer::new(feed, 100);
        assert_eq!(page(&again.next().await.unwrap()), ids[8..10]);
        assert_eq!(again.delivered(ids[9]).await.unwrap(), Some(ids[9]));
        assert!(again.next().await.unwrap().is_empty());
        assert_eq!(store.cursor("d").unwrap(), ids[9]);
    }
}
