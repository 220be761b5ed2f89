//! Readings stored as batches: one row of `reading_batches` per commit (split at
//! [`BATCH_MAX`] readings) holding a compact blob ([`super::codec`]). Appending a batch touches
//! the end of the table only, so a commit writes about the bytes it stores instead of one
//! dirtied 4 KiB index page per reading. Reading ids stay dense and ordered by commit:
//! `first_id + position`. The outbox reads by id; history reads per series use the batches'
//! time ranges (two small indexes, one entry per batch).

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, OptionalExtension};

use super::codec::{self, Encoded};
use super::{ctx, OutboxRow, Result, Store, StoreError, StoredReading};
use crate::readings::{Quality, Quantity, Reading, TimestampMs};

/// Most readings in one batch row (a commit of more is split).
pub const BATCH_MAX: usize = 8192;

/// A reading of a series as history reads return it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesReading {
    pub id: i64,
    pub ts_ms: TimestampMs,
    pub value: Option<f64>,
    pub quality: Quality,
}

pub(super) fn decode_err(e: codec::DecodeError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Ordered by (ts, id) for the merge buffers of history scans.
pub(super) struct ByTime(pub(super) SeriesReading);

impl PartialEq for ByTime {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for ByTime {}
impl PartialOrd for ByTime {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for ByTime {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (self.0.ts_ms, self.0.id).cmp(&(o.0.ts_ms, o.0.id))
    }
}

/// The highest reading id in the store (0 when empty), on any connection to it: for readers
/// that keep their own connection (the accounting service).
pub fn last_reading_id(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT first_id + n - 1 FROM reading_batches ORDER BY first_id DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .optional()
    .map(|v| v.unwrap_or(0))
}

/// The earliest acquisition time and the highest id among the readings committed after id
/// `after` (both None when there are none). The time is a batch's earliest, so it may be a
/// little earlier than the new readings' own: never later.
pub fn committed_after(
    conn: &rusqlite::Connection,
    after: i64,
) -> rusqlite::Result<(Option<TimestampMs>, Option<i64>)> {
    conn.query_row(
        "SELECT min(min_ts), max(first_id + n - 1) FROM reading_batches WHERE first_id + n - 1 > ?1",
        params![after],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

impl Store {
    /// Commits the readings in one transaction (group commit). Returns the id of the last row
    /// (the previous last id when `readings` is empty).
    pub fn insert_readings<'a>(
        &mut self,
        readings: impl IntoIterator<Item = &'a Reading>,
    ) -> Result<i64> {
        // Series seen for the first time are added in the same transaction (one commit).
        let mut rows = Vec::new();
        let mut new_series: HashMap<(&str, Quantity), i64> = HashMap::new();
        // New series get their ids in the order they first appear, so a device's quantities
        // get consecutive ids and the codec leaves them out (its "next series" flag).
        let mut new_order: Vec<(&str, Quantity)> = Vec::new();
        for r in readings {
            let known = self.series.get(&r.device).and_then(|m| m.get(&r.quantity));
            if known.is_none()
                && new_series
                    .insert((r.device.as_str(), r.quantity), 0)
                    .is_none()
            {
                new_order.push((r.device.as_str(), r.quantity));
            }
            rows.push((known.copied().unwrap_or(0), r));
        }
        let cached = self.next_reading_id()?;
        // Another process may add readings to the same store (`import readings` while `run`
        // runs): the first id is settled inside a write transaction, above every existing one.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(ctx("begin"))?;
        let stored_max: i64 = tx
            .query_row(
                "SELECT first_id + n - 1 FROM reading_batches ORDER BY first_id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(ctx("read the last reading id"))?
            .unwrap_or(0);
        let first = cached.max(stored_max + 1);
        if !new_series.is_empty() {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO series(device, quantity) VALUES (?1, ?2)
                     ON CONFLICT(device, quantity) DO UPDATE SET device=excluded.device
                     RETURNING id",
                )
                .map_err(ctx("prepare series insert"))?;
            for key in &new_order {
                let id = stmt
                    .query_row(params![key.0, key.1.as_str()], |r| r.get(0))
                    .map_err(ctx("insert series"))?;
                new_series.insert(*key, id);
            }
            for (sid, r) in rows.iter_mut() {
                if let Some(id) = new_series.get(&(r.device.as_str(), r.quantity)) {
                    *sid = *id;
                }
            }
        }
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO reading_batches(first_id, n, min_ts, max_ts, data)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(ctx("prepare batch insert"))?;
            for (k, chunk) in rows.chunks(BATCH_MAX).enumerate() {
                let (min_ts, max_ts) = chunk.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
                    (lo.min(r.1.ts_ms), hi.max(r.1.ts_ms))
                });
                let reference = self.refs.for_batch(&tx, chunk)?;
                let blob = codec::encode_with(
                    chunk
                        .iter()
                        .map(|(sid, r)| (*sid, r.ts_ms, r.value, &r.quality)),
                    reference.as_ref().map(|(id, v)| (*id, &**v)),
                );
                insert
                    .execute(params![
                        first + (k * BATCH_MAX) as i64,
                        chunk.len() as i64,
                        min_ts,
                        max_ts,
                        blob
                    ])
                    .map_err(ctx("insert readings"))?;
            }
        }
        tx.commit().map_err(ctx("commit"))?;
        for ((device, quantity), id) in new_series {
            self.series
                .entry(device.to_string())
                .or_default()
                .insert(quantity, id);
        }
        let next = first + rows.len() as i64;
        self.next_id = Some(next);
        // Readings older than what the raw tier has dropped (a backfill, an import) are read
        // from the minute tier: roll them up now.
        let oldest = rows.iter().map(|r| r.1.ts_ms).min();
        if let (Some(oldest), Some(cut)) = (oldest, self.raw_dropped_through()?) {
            if oldest <= cut {
                self.roll_up(next - 1)?;
            }
        }
        Ok(next - 1)
    }

    /// Visits the readings with id > `after` in id order until `f` returns false.
    pub(super) fn scan_ids(
        &self,
        after: i64,
        mut f: impl FnMut(i64, Encoded) -> bool,
    ) -> Result<()> {
        let start: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(first_id), 0) FROM reading_batches WHERE first_id <= ?1",
                [after.saturating_add(1)],
                |r| r.get(0),
            )
            .map_err(ctx("find batch"))?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT first_id, data FROM reading_batches WHERE first_id >= ?1 ORDER BY first_id",
            )
            .map_err(ctx("prepare batch scan"))?;
        let mut rows = stmt.query([start]).map_err(ctx("scan batches"))?;
        while let Some(row) = rows.next().map_err(ctx("read batch"))? {
            let first: i64 = row.get(0).map_err(ctx("read batch"))?;
            let data = row.get_ref(1).map_err(ctx("read batch"))?;
            let blob = data.as_blob().map_err(|e| ctx("read batch")(e.into()))?;
            for (k, r) in self.decoder(blob)?.enumerate() {
                let id = first + k as i64;
                let r = r.map_err(decode_err)?;
                if id > after && !f(id, r) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Every series: id → (device, quantity name).
    pub fn series_names(&self) -> Result<HashMap<i64, (String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, device, quantity FROM series")
            .map_err(ctx("prepare series query"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .map_err(ctx("query series"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(ctx("read series"))
    }

    /// Up to `limit` readings with id greater than `after`, in id order.
    pub fn readings_after(&self, after: i64, limit: usize) -> Result<Vec<StoredReading>> {
        let names = self.series_names()?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan_ids(after, |id, r| {
            // A quantity this build does not know (written by a newer version) is skipped.
            if let Some((device, q)) = names.get(&r.series_id) {
                if let Ok(quantity) = q.parse::<Quantity>() {
                    out.push(StoredReading {
                        id,
                        reading: Reading {
                            device: device.clone(),
                            quantity,
                            value: r.value,
                            ts_ms: r.ts_ms,
                            quality: r.quality,
                        },
                    });
                }
            }
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Up to `limit` outbox rows with id greater than `after`, in id order, without the series
    /// names (outputs cache those by series id).
    pub fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<OutboxRow>> {
        let mut out = Vec::with_capacity(limit.min(100_000));
        if limit == 0 {
            return Ok(out);
        }
        self.scan_ids(after, |id, r| {
            out.push(OutboxRow {
                id,
                series_id: r.series_id,
                ts_ms: r.ts_ms,
                value: r.value,
                quality: r.quality,
            });
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Acquisition time of the oldest reading above `floor` (the oldest undelivered one).
    pub fn oldest_after(&self, floor: i64) -> Result<Option<TimestampMs>> {
        let mut ts = None;
        self.scan_ids(floor, |_, r| {
            ts = Some(r.ts_ms);
            false
        })?;
        Ok(ts)
    }

    /// The highest id above `floor` such that every reading in `floor+1..=id` was acquired
    /// before `before_ms` (`floor` when the first one is younger).
    pub fn old_prefix_end(&self, floor: i64, before_ms: TimestampMs) -> Result<i64> {
        let start: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(first_id), 0) FROM reading_batches WHERE first_id <= ?1",
                [floor.saturating_add(1)],
                |r| r.get(0),
            )
            .map_err(ctx("find batch"))?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT first_id, n, max_ts, data FROM reading_batches WHERE first_id >= ?1
                 ORDER BY first_id",
            )
            .map_err(ctx("prepare batch scan"))?;
        let mut rows = stmt.query([start]).map_err(ctx("scan batches"))?;
        let mut end = floor;
        while let Some(row) = rows.next().map_err(ctx("read batch"))? {
            let first: i64 = row.get(0).map_err(ctx("read batch"))?;
            let n: i64 = row.get(1).map_err(ctx("read batch"))?;
            let max_ts: i64 = row.get(2).map_err(ctx("read batch"))?;
            if max_ts < before_ms {
                // The whole batch is old: its blob is not even read.
                end = end.max(first + n - 1);
                continue;
            }
            let data = row.get_ref(3).map_err(ctx("read batch"))?;
            let blob = data.as_blob().map_err(|e| ctx("read batch")(e.into()))?;
            for (k, r) in self.decoder(blob)?.enumerate() {
                let id = first + k as i64;
                if id <= floor {
                    continue;
                }
                if r.map_err(decode_err)?.ts_ms >= before_ms {
                    return Ok(end.max(floor).max(id - 1));
                }
                end = id;
            }
        }
        Ok(end.max(floor))
    }

    /// Deletes the readings with ids in `after+1..=through`; batches cut by the range keep
    /// their other readings (re-encoded). Returns how many readings were deleted.
    pub(super) fn delete_ids(&self, after: i64, through: i64) -> Result<u64> {
        if through <= after {
            return Ok(0);
        }
        let tx = self.write_transaction("begin delete")?;
        // Nothing leaves the raw tier before it is in the minute tier.
        self.roll_up_in_tx(through)?;
        let mut dropped_ts = i64::MIN;
        let start: i64 = tx
            .query_row(
                "SELECT coalesce(max(first_id), 0) FROM reading_batches WHERE first_id <= ?1",
                [after.saturating_add(1)],
                |r| r.get(0),
            )
            .map_err(ctx("find batch"))?;
        let batches: Vec<(i64, i64, i64)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT first_id, n, max_ts FROM reading_batches WHERE first_id >= ?1 AND first_id <= ?2
                     ORDER BY first_id",
                )
                .map_err(ctx("prepare delete"))?;
            let rows = stmt
                .query_map([start, through], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(ctx("find batches"))?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(ctx("find batches"))?
        };
        let mut deleted = 0u64;
        for (first, n, max_ts) in batches {
            let last = first + n - 1;
            if last <= after {
                continue;
            }
            if first > after && last <= through {
                tx.execute("DELETE FROM reading_batches WHERE first_id = ?1", [first])
                    .map_err(ctx("delete batch"))?;
                deleted += n as u64;
                dropped_ts = dropped_ts.max(max_ts);
                continue;
            }
            // Cut: keep [first, after] and [through+1, last].
            let blob: Vec<u8> = tx
                .query_row(
                    "SELECT data FROM reading_batches WHERE first_id = ?1",
                    [first],
                    |r| r.get(0),
                )
                .map_err(ctx("read batch"))?;
            // The pieces kept are written as batches that stand alone (version 1).
            let rs = self
                .decoder(&blob)?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(decode_err)?;
            tx.execute("DELETE FROM reading_batches WHERE first_id = ?1", [first])
                .map_err(ctx("delete batch"))?;
            let head_len = (after - first + 1).clamp(0, n) as usize;
            let tail_from = (through - first + 1).clamp(0, n) as usize;
            deleted += (tail_from - head_len) as u64;
            for r in &rs[head_len..tail_from] {
                dropped_ts = dropped_ts.max(r.ts_ms);
            }
            for (piece_first, piece) in [
                (first, &rs[..head_len]),
                (first + tail_from as i64, &rs[tail_from..]),
            ] {
                if piece.is_empty() {
                    continue;
                }
                let (lo, hi) = piece.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
                    (lo.min(r.ts_ms), hi.max(r.ts_ms))
                });
                let data = codec::encode(
                    piece
                        .iter()
                        .map(|r| (r.series_id, r.ts_ms, r.value, &r.quality)),
                );
                tx.execute(
                    "INSERT INTO reading_batches(first_id, n, min_ts, max_ts, data)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![piece_first, piece.len() as i64, lo, hi, data],
                )
                .map_err(ctx("rewrite batch"))?;
            }
        }
        if deleted > 0 {
            self.raise_meta_i64("raw_dropped_ts", dropped_ts)?;
            super::refs::drop_unused(&tx)?;
        }
        tx.commit().map_err(ctx("commit delete"))?;
        Ok(deleted)
    }

    /// Lowest reading id in the store (0 when empty).
    pub(super) fn min_reading_id(&self) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT coalesce(min(first_id), 0) FROM reading_batches",
                [],
                |r| r.get(0),
            )
            .map_err(ctx("min id"))
    }

    /// The latest acquisition time among the most recently committed readings (the clock guard
    /// compares the wall clock with it at start), or None for an empty store.
    pub fn newest_ts(&self) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT max(max_ts) FROM (SELECT max_ts FROM reading_batches
                 ORDER BY first_id DESC LIMIT 64)",
                [],
                |r| r.get(0),
            )
            .map_err(ctx("newest reading time"))
    }

    /// Highest reading id in the store (0 when empty).
    pub fn max_reading_id(&self) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT first_id + n - 1 FROM reading_batches ORDER BY first_id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(ctx("max id"))
    }

    /// Number of readings per device, all qualities (reads every batch).
    pub fn count_by_device(&self) -> Result<BTreeMap<String, u64>> {
        let names = self.series_names()?;
        let mut per_series: HashMap<i64, u64> = HashMap::new();
        self.scan_ids(0, |_, r| {
            *per_series.entry(r.series_id).or_default() += 1;
            true
        })?;
        let mut out = BTreeMap::new();
        for (sid, n) in per_series {
            if let Some((device, _)) = names.get(&sid) {
                *out.entry(device.clone()).or_default() += n;
            }
        }
        Ok(out)
    }

    /// Total number of readings.
    pub fn count_readings(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT coalesce(sum(n), 0) FROM reading_batches", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(ctx("count readings"))
    }

    /// Id of a known series (`None` when it never had a reading).
    pub fn find_series(&self, device: &str, quantity: Quantity) -> Result<Option<i64>> {
        if let Some(id) = self.series.get(device).and_then(|m| m.get(&quantity)) {
            return Ok(Some(*id));
        }
        self.conn
            .prepare_cached("SELECT id FROM series WHERE device = ?1 AND quantity = ?2")
            .and_then(|mut s| {
                s.query_row(params![device, quantity.as_str()], |r| r.get(0))
                    .optional()
            })
            .map_err(ctx("find series"))
    }

    /// Visits the readings of one series acquired in `[from, to]` in time order (oldest first
    /// when `ascending`, else newest first; equal times by id) until `f` returns false. Nothing
    /// is collected beyond the batches whose time ranges overlap: a year of one-second readings
    /// streams in constant memory.
    ///
    /// Where the raw tier no longer holds the range (before [`Store::raw_dropped_through`]),
    /// the first and last reading of every kept minute stand in (see [`super::tiers`]): a
    /// counter's readings at every interval boundary are among them.
    pub fn series_history(
        &self,
        device: &str,
        quantity: Quantity,
        from: TimestampMs,
        to: TimestampMs,
        ascending: bool,
        mut f: impl FnMut(SeriesReading) -> bool,
    ) -> Result<()> {
        let Some(sid) = self.find_series(device, quantity)? else {
            return Ok(());
        };
        if from > to {
            return Ok(());
        }
        let Some(cut) = self.raw_dropped_through()?.filter(|&c| c >= from) else {
            return self.raw_history(sid, from, to, ascending, &mut f);
        };
        let raw_from = cut.saturating_add(1).max(from);
        if ascending {
            if self.tier_history(sid, from, to.min(cut), true, &mut f)? && raw_from <= to {
                self.raw_history(sid, raw_from, to, true, &mut f)?;
            }
            return Ok(());
        }
        let mut go = true;
        if raw_from <= to {
            self.raw_history(sid, raw_from, to, false, &mut |r| {
                go = f(r);
                go
            })?;
        }
        if go {
            self.tier_history(sid, from, to.min(cut), false, &mut f)?;
        }
        Ok(())
    }

    /// Readings of series `sid` in `[from, to]` in id order (not time order), until `f` returns
    /// false. With `after_id`, only readings with a greater id, and only the batches that hold
    /// such ids are decoded (by id range, not by time).
    pub(super) fn raw_series_range(
        &self,
        sid: i64,
        from: TimestampMs,
        to: TimestampMs,
        after_id: Option<i64>,
        f: &mut dyn FnMut(SeriesReading) -> bool,
    ) -> Result<()> {
        // Two statements, so that each keeps its own plan (the time indexes, or the id range).
        let mut stmt = self
            .conn
            .prepare_cached(if after_id.is_some() {
                "SELECT first_id, data FROM reading_batches
                 WHERE first_id > ?3 - ?4 AND first_id + n - 1 > ?3 AND max_ts >= ?1 AND min_ts <= ?2
                 ORDER BY first_id"
            } else {
                "SELECT first_id, data FROM reading_batches WHERE max_ts >= ?1 AND min_ts <= ?2
                 ORDER BY first_id"
            })
            .map_err(ctx("prepare history query"))?;
        let mut rows = match after_id {
            Some(after) => stmt.query(params![from, to, after, BATCH_MAX as i64]),
            None => stmt.query(params![from, to]),
        }
        .map_err(ctx("query history"))?;
        let floor = after_id.unwrap_or(i64::MIN);
        while let Some(row) = rows.next().map_err(ctx("read history"))? {
            let first: i64 = row.get(0).map_err(ctx("read history"))?;
            self.batches_decoded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let data = row.get_ref(1).map_err(ctx("read history"))?;
            let blob = data.as_blob().map_err(|e| ctx("read history")(e.into()))?;
            for (k, r) in self.decoder(blob)?.enumerate() {
                let r = r.map_err(decode_err)?;
                let id = first + k as i64;
                if id <= floor || r.series_id != sid || r.ts_ms < from || r.ts_ms > to {
                    continue;
                }
                let go = f(SeriesReading {
                    id,
                    ts_ms: r.ts_ms,
                    value: r.value,
                    quality: r.quality,
                });
                if !go {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The raw tier's part of [`Store::series_history`].
    pub(super) fn raw_history(
        &self,
        sid: i64,
        from: TimestampMs,
        to: TimestampMs,
        ascending: bool,
        f: &mut dyn FnMut(SeriesReading) -> bool,
    ) -> Result<()> {
        let mut pick = super::scan::Pick::new(vec![Some(sid)]);
        self.raw_multi(&mut pick, from, to, ascending, &mut |_, r| f(r))
    }

    /// For each reading, whether the store already has one of its series at its instant (any
    /// quality). One pass over the batches of the readings' time span: re-importing a file of
    /// readings checks them all at once.
    pub fn contains_readings(&self, readings: &[Reading]) -> Result<Vec<bool>> {
        let mut wanted: HashMap<(i64, TimestampMs), Vec<usize>> = HashMap::new();
        let (mut from, mut to) = (i64::MAX, i64::MIN);
        for (k, r) in readings.iter().enumerate() {
            if let Some(sid) = self.find_series(&r.device, r.quantity)? {
                wanted.entry((sid, r.ts_ms)).or_default().push(k);
                from = from.min(r.ts_ms);
                to = to.max(r.ts_ms);
            }
        }
        let mut found = vec![false; readings.len()];
        if wanted.is_empty() {
            return Ok(found);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM reading_batches WHERE max_ts >= ?1 AND min_ts <= ?2")
            .map_err(ctx("prepare history query"))?;
        let mut rows = stmt.query([from, to]).map_err(ctx("query history"))?;
        while let Some(row) = rows.next().map_err(ctx("read history"))? {
            let data = row.get_ref(0).map_err(ctx("read history"))?;
            let blob = data.as_blob().map_err(|e| ctx("read history")(e.into()))?;
            for r in self.decoder(blob)? {
                let r = r.map_err(decode_err)?;
                if let Some(ks) = wanted.get(&(r.series_id, r.ts_ms)) {
                    for &k in ks {
                        found[k] = true;
                    }
                }
            }
        }
        Ok(found)
    }

    /// The latest good value of a series: (timestamp, value).
    pub fn latest_good(
        &self,
        device: &str,
        quantity: Quantity,
    ) -> Result<Option<(TimestampMs, f64)>> {
        self.edge_good(device, quantity, i64::MIN, false)
    }

    /// The first good value of a series at or after `since_ms`.
    pub fn first_good_since(
        &self,
        device: &str,
        quantity: Quantity,
        since_ms: TimestampMs,
    ) -> Result<Option<(TimestampMs, f64)>> {
        self.edge_good(device, quantity, since_ms, true)
    }

    fn edge_good(
        &self,
        device: &str,
        quantity: Quantity,
        since_ms: TimestampMs,
        ascending: bool,
    ) -> Result<Option<(TimestampMs, f64)>> {
        let mut found = None;
        self.series_history(device, quantity, since_ms, i64::MAX, ascending, |r| {
            if r.quality.code() == 1 {
                return true;
            }
            found = r.value.map(|v| (r.ts_ms, v));
            found.is_none()
        })?;
        Ok(found)
    }

    /// Deletes the oldest readings acquired before `before_ms` that every listed destination
    /// has confirmed: the longest such run from the oldest id on (history is kept in commit
    /// order; a reading acquired earlier but committed after a younger one waits for it).
    /// Returns how many were deleted.
    pub fn prune(&self, before_ms: TimestampMs, destinations: &[String]) -> Result<usize> {
        let mut limit = i64::MAX;
        for d in destinations {
            limit = limit.min(self.cursor(d)?);
        }
        let min_id = self.min_reading_id()?;
        if min_id == 0 {
            return Ok(0);
        }
        let through = self.old_prefix_end(min_id - 1, before_ms)?.min(limit);
        if through < min_id {
            return Ok(0);
        }
        let n = self.delete_ids(min_id - 1, through)?;
        self.raise_meta_i64("deleted_through", through)?;
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::config::Synchronous;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        (dir, s)
    }

    fn ids(s: &Store) -> Vec<i64> {
        s.readings_after(0, 1000)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    }

    #[test]
    fn deleting_an_id_range_cuts_batches_and_keeps_the_rest() {
        let (_d, mut s) = store();
        for b in 0..3 {
            let rs: Vec<_> = (0..10)
                .map(|i| Reading::new("m", Quantity::ActivePower, f64::from(b * 10 + i), 0))
                .collect();
            s.insert_readings(&rs).unwrap();
        }
        // ids 1..=30 in batches 1..=10, 11..=20, 21..=30; delete 5..=24
        assert_eq!(s.delete_ids(4, 24).unwrap(), 20);
        let left = s.readings_after(0, 100).unwrap();
        assert_eq!(
            left.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 25, 26, 27, 28, 29, 30]
        );
        // each id keeps its reading
        assert!(left
            .iter()
            .all(|r| r.reading.value == Some((r.id - 1) as f64)));
        assert_eq!(s.readings_after(4, 1).unwrap()[0].id, 25);
        assert_eq!(s.oldest_after(3).unwrap(), Some(0));
        assert_eq!(s.count_readings().unwrap(), 10);
        // a middle cut of one batch
        assert_eq!(s.delete_ids(25, 27).unwrap(), 2);
        assert_eq!(ids(&s), vec![1, 2, 3, 4, 25, 28, 29, 30]);
        assert_eq!(s.delete_ids(0, 100).unwrap(), 8);
        assert_eq!(s.max_reading_id().unwrap(), 0);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn history_of_a_series_is_in_time_order_across_out_of_order_batches() {
        let (_d, mut s) = store();
        // live readings, then a backfill of older ones, then live again
        let live = |t: i64| Reading::new("m", Quantity::EnergyImport, t as f64, t);
        s.insert_readings(&[
            live(100),
            Reading::new("x", Quantity::EnergyImport, 1.0, 150),
            live(200),
        ])
        .unwrap();
        s.insert_readings(&[live(50), live(120), live(10)]).unwrap();
        s.insert_readings(&[
            live(300),
            Reading::bad("m", Quantity::EnergyImport, 400, "nan"),
        ])
        .unwrap();
        let mut seen = Vec::new();
        s.series_history("m", Quantity::EnergyImport, i64::MIN, i64::MAX, true, |r| {
            seen.push(r.ts_ms);
            true
        })
        .unwrap();
        assert_eq!(seen, vec![10, 50, 100, 120, 200, 300, 400]);
        seen.clear();
        s.series_history("m", Quantity::EnergyImport, 60, 250, false, |r| {
            seen.push(r.ts_ms);
            true
        })
        .unwrap();
        assert_eq!(seen, vec![200, 120, 100]);
        assert_eq!(
            s.latest_good("m", Quantity::EnergyImport).unwrap(),
            Some((300, 300.0))
        );
        assert_eq!(
            s.first_good_since("m", Quantity::EnergyImport, 11).unwrap(),
            Some((50, 50.0))
        );
        assert_eq!(
            s.first_good_since("none", Quantity::EnergyImport, 0)
                .unwrap(),
            None
        );
    }

    #[test]
    fn prune_deletes_the_oldest_delivered_run_only() {
        let (_d, mut s) = store();
        let rs: Vec<_> = [10, 20, 30, 500, 40, 50]
            .iter()
            .map(|&t| Reading::new("m", Quantity::ActivePower, 1.0, t))
            .collect();
        s.insert_readings(&rs[..3]).unwrap();
        s.insert_readings(&rs[3..]).unwrap();
        s.advance_cursor("out", 6).unwrap();
        // 40 and 50 are old too but wait behind the young 500
        assert_eq!(s.prune(100, &["out".into()]).unwrap(), 3);
        assert_eq!(ids(&s), vec![4, 5, 6]);
        // ids are never reused
        let s2 = Store::open(&_d.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        s2.delete_ids(0, 100).unwrap();
        drop(s2);
        let mut s3 = Store::open(&_d.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        assert_eq!(s3.insert_readings(&rs[..1]).unwrap(), 7);
        drop(s);
    }

    fn blob_bytes(s: &Store) -> i64 {
        s.conn
            .query_row("SELECT sum(length(data)) FROM reading_batches", [], |r| {
                r.get(0)
            })
            .unwrap()
    }

    fn refs_kept(s: &Store) -> Vec<i64> {
        let mut st = s
            .conn
            .prepare("SELECT id FROM value_refs ORDER BY id")
            .unwrap();
        let ids = st.query_map([], |r| r.get(0)).unwrap();
        ids.collect::<std::result::Result<_, _>>().unwrap()
    }

    /// 50 devices × 15 registers polled `polls` times from `t0`, every register its own value,
    /// unchanged from poll to poll but for the first device's power, which moves a little.
    fn polls(t0: i64, polls: i64) -> Vec<Vec<Reading>> {
        let qs = [
            Quantity::VoltageL1,
            Quantity::VoltageL2,
            Quantity::VoltageL3,
            Quantity::CurrentL1,
            Quantity::CurrentL2,
            Quantity::CurrentL3,
            Quantity::ActivePower,
            Quantity::ActivePowerL1,
            Quantity::ActivePowerL2,
            Quantity::ActivePowerL3,
            Quantity::ReactivePower,
            Quantity::ApparentPower,
            Quantity::PowerFactor,
            Quantity::Frequency,
            Quantity::EnergyImport,
        ];
        (0..polls)
            .map(|p| {
                let ts = t0 + p * 1000;
                (0..50)
                    .flat_map(|d| {
                        qs.iter().enumerate().map(move |(k, q)| {
                            let mut v = f64::from(230.0f32 + d as f32 + k as f32 * 2.0);
                            if d == 0 && *q == Quantity::ActivePower {
                                v = f64::from(1000.25f32 + p as f32 * 0.5);
                            }
                            Reading::new(format!("m{d}"), *q, v, ts)
                        })
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_writer_encodes_unchanged_registers_in_about_a_byte_each() {
        let (d, mut s) = store();
        s.keep_value_refs();
        let all = polls(1_767_225_600_000, 20);
        for p in &all {
            s.insert_readings(p).unwrap();
        }
        let n = (all.len() * all[0].len()) as i64;
        // Version 1 blobs take 5 bytes a reading (tag and f32); against the reference an
        // unchanged register takes its tag byte.
        let per_reading = blob_bytes(&s) as f64 / n as f64;
        assert!(per_reading < 1.3, "{per_reading} bytes a reading");
        // Every reading reads back exactly, on this connection and on another one.
        let want: Vec<(String, Quantity, Option<f64>, i64)> = all
            .iter()
            .flatten()
            .map(|r| (r.device.clone(), r.quantity, r.value, r.ts_ms))
            .collect();
        let other = Store::open(&d.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        for st in [&s, &other] {
            let got: Vec<_> = st
                .readings_after(0, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|r| {
                    (
                        r.reading.device,
                        r.reading.quantity,
                        r.reading.value,
                        r.reading.ts_ms,
                    )
                })
                .collect();
            assert_eq!(got, want);
        }
        let mut power = Vec::new();
        other
            .series_history("m0", Quantity::ActivePower, i64::MIN, i64::MAX, true, |r| {
                power.push(r.value.unwrap());
                true
            })
            .unwrap();
        assert_eq!(power.len(), 20);
        assert_eq!(power[19], 1000.25 + 19.0 * 0.5);
    }

    #[test]
    fn references_go_with_the_last_batch_that_uses_them() {
        let (_d, mut s) = store();
        s.keep_value_refs();
        let t0 = 1_767_225_600_000;
        // A restart of the writer starts a new reference (it knows no values).
        s.insert_readings(&polls(t0, 1)[0]).unwrap();
        let mut s = {
            drop(s);
            let mut s = Store::open(&_d.path().join("s.sqlite"), Synchronous::Normal).unwrap();
            s.keep_value_refs();
            s
        };
        for p in &polls(t0 + 1000, 3) {
            s.insert_readings(p).unwrap();
        }
        assert_eq!(refs_kept(&s), vec![1, 2]);
        // Deleting up to the second batch lets the first reference go; what is left of a cut
        // batch is rewritten standing alone.
        assert_eq!(s.delete_ids(0, 10).unwrap(), 10);
        assert_eq!(refs_kept(&s), vec![2]);
        assert_eq!(s.readings_after(0, usize::MAX).unwrap().len(), 4 * 750 - 10);
        assert_eq!(s.delete_ids(10, 760).unwrap(), 750);
        assert_eq!(refs_kept(&s), vec![2]);
        let left = s.readings_after(0, usize::MAX).unwrap();
        assert_eq!(left.len(), 3 * 750 - 10);
        assert_eq!(left[0].id, 761);
        assert_eq!(left[0].reading.value, polls(t0, 2)[1][10].value);
        // Everything deleted: the newest reference stays for the next batch.
        s.delete_ids(0, i64::MAX).unwrap();
        assert_eq!(refs_kept(&s), vec![2]);
        s.insert_readings(&polls(t0 + 5000, 1)[0]).unwrap();
        assert_eq!(s.readings_after(0, usize::MAX).unwrap().len(), 750);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }
}
