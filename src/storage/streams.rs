//! The accounting outputs as delivery feeds (`energy_intervals`, `accounts`) and the per
//! destination cursors of the streams delivered besides readings (`influx_stream_cursors`).
//! Accounting rows carry `rev`, the revision of the run that last changed them; a cursor is a
//! (`rev`, id) position, so a changed row is read again.

use rusqlite::{params, OptionalExtension};

use super::feeds::FeedStore;
use super::Result;

/// One row of `energy_intervals`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRecord {
    pub id: i64,
    pub rev: i64,
    pub device: String,
    pub quantity: String,
    pub carrier: String,
    pub unit: String,
    pub resolution: String,
    pub start_ms: i64,
    pub value: f64,
    pub quality: String,
}

/// One row of `accounts`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRecord {
    pub id: i64,
    pub rev: i64,
    pub period: String,
    pub kind: String,
    pub start_ms: i64,
    pub field: String,
    pub value: f64,
    pub unit: String,
}

impl FeedStore {
    /// The confirmed (`rev`, id) of `destination` in `stream`; (0, 0) before the first.
    pub fn stream_cursor(&self, destination: &str, stream: &str) -> Result<(i64, i64)> {
        self.with("read stream cursor", |c| {
            c.prepare_cached(
                "SELECT last_rev, last_id FROM influx_stream_cursors
                 WHERE destination = ?1 AND stream = ?2",
            )?
            .query_row(params![destination, stream], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    /// Moves the cursor of `destination` in `stream` forward to (`rev`, `id`), never backwards.
    pub fn advance_stream_cursor(
        &self,
        destination: &str,
        stream: &str,
        rev: i64,
        id: i64,
    ) -> Result<()> {
        self.with("advance stream cursor", |c| {
            c.prepare_cached(
                "INSERT INTO influx_stream_cursors(destination, stream, last_rev, last_id, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(destination, stream) DO UPDATE SET
                   last_rev = excluded.last_rev, last_id = excluded.last_id,
                   updated_ms = excluded.updated_ms
                 WHERE (excluded.last_rev, excluded.last_id) > (last_rev, last_id)",
            )?
            .execute(params![destination, stream, rev, id, crate::readings::now_ms()])
            .map(|_| ())
        })
    }

    /// Up to `limit` interval rows after (`rev`, `id`), in (`rev`, id) order.
    pub fn intervals_after(&self, rev: i64, id: i64, limit: usize) -> Result<Vec<IntervalRecord>> {
        self.with("read energy intervals", |c| {
            c.prepare_cached(
                "SELECT id, rev, device, quantity, carrier, unit, resolution, start_ms, value, quality
                 FROM energy_intervals WHERE rev >= ?1 AND (rev > ?1 OR id > ?2)
                 ORDER BY rev, id LIMIT ?3",
            )?
            .query_map(params![rev, id, limit as i64], |r| {
                Ok(IntervalRecord {
                    id: r.get(0)?,
                    rev: r.get(1)?,
                    device: r.get(2)?,
                    quantity: r.get(3)?,
                    carrier: r.get(4)?,
                    unit: r.get(5)?,
                    resolution: r.get(6)?,
                    start_ms: r.get(7)?,
                    value: r.get(8)?,
                    quality: r.get(9)?,
                })
            })?
            .collect()
        })
    }

    /// Up to `limit` account rows after (`rev`, `id`), in (`rev`, id) order.
    pub fn accounts_after(&self, rev: i64, id: i64, limit: usize) -> Result<Vec<AccountRecord>> {
        self.with("read accounts", |c| {
            c.prepare_cached(
                "SELECT id, rev, period, kind, start_ms, field, value, unit
                 FROM accounts WHERE rev >= ?1 AND (rev > ?1 OR id > ?2)
                 ORDER BY rev, id LIMIT ?3",
            )?
            .query_map(params![rev, id, limit as i64], |r| {
                Ok(AccountRecord {
                    id: r.get(0)?,
                    rev: r.get(1)?,
                    period: r.get(2)?,
                    kind: r.get(3)?,
                    start_ms: r.get(4)?,
                    field: r.get(5)?,
                    value: r.get(6)?,
                    unit: r.get(7)?,
                })
            })?
            .collect()
        })
    }
}
