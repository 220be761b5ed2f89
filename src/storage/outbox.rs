//! The MQTT output's durable outbox (`mqtt_outbox`) and its per-stream cursors
//! (`mqtt_cursors`).

use rusqlite::{params, OptionalExtension};

use super::feeds::FeedStore;
use super::Result;

/// One queued message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub topic: String,
    pub payload: String,
    pub retain: bool,
}

impl FeedStore {
    /// Queues a message durably; returns its id.
    pub fn outbox_enqueue(&self, topic: &str, payload: &str, retain: bool) -> Result<i64> {
        self.with("queue outbox message", |c| {
            c.execute(
                "INSERT INTO mqtt_outbox(topic, payload, retain, ts_ms) VALUES (?1, ?2, ?3, ?4)",
                params![topic, payload, retain, crate::readings::now_ms()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Up to `limit` queued messages after id `after`, in id order.
    pub fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.with("read outbox", |c| {
            let mut st = c.prepare_cached(
                "SELECT id, topic, payload, retain FROM mqtt_outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![after, limit as i64], |r| {
                Ok(OutboxMessage {
                    id: r.get(0)?,
                    topic: r.get(1)?,
                    payload: r.get(2)?,
                    retain: r.get::<_, i64>(3)? != 0,
                })
            })?;
            rows.collect()
        })
    }

    /// The last acknowledged id of an MQTT stream (0 before the first).
    pub fn mqtt_cursor(&self, stream: &str) -> Result<i64> {
        self.with("read mqtt cursor", |c| {
            c.query_row(
                "SELECT last_id FROM mqtt_cursors WHERE stream = ?1",
                [stream],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
        })
    }

    /// Moves an MQTT stream's cursor forward to `id` (never backwards).
    pub fn set_mqtt_cursor(&self, stream: &str, id: i64) -> Result<()> {
        self.with("advance mqtt cursor", |c| {
            c.execute(
                "INSERT INTO mqtt_cursors(stream, last_id) VALUES (?1, ?2)
                 ON CONFLICT(stream) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                params![stream, id],
            )
            .map(|_| ())
        })
    }
}
