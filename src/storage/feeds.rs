//! A connection of its own to the store for the delivery feeds besides readings: the alert
//! history, the accounting outputs, their cursors, the MQTT outbox and the notifier log. The
//! tables are the store's (declared in [`super::schema`]); the SQL is here and in
//! [`super::streams`], [`super::outbox`] and [`super::notify_log`], so outputs and alerting call
//! typed functions and never see the schema.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};

use super::{ctx, Result};

/// One alert transition as stored (the delivery feeds' view of `alert_events`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    pub id: i64,
    pub ts_ms: i64,
    pub rule: String,
    pub device: String,
    /// Empty for device- or gateway-level rules.
    pub quantity: String,
    pub state: String,
    pub severity: String,
    pub value: Option<f64>,
    pub message: String,
}

/// A shared connection to the store for the feeds (cheap to clone; calls are serialised).
#[derive(Clone)]
pub struct FeedStore {
    conn: Arc<Mutex<Connection>>,
}

impl FeedStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<FeedStore> {
        let mut conn = super::connect(path)?;
        super::schema::migrate(&mut conn, path)?;
        Ok(FeedStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(super) fn with<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&c).map_err(ctx(op))
    }

    /// Up to `limit` alert transitions after id `after`, in id order; `pending` ones only when
    /// `with_pending`.
    pub fn alerts_after(
        &self,
        after: i64,
        limit: usize,
        with_pending: bool,
    ) -> Result<Vec<StoredAlert>> {
        self.with("read alert events", |c| {
            let mut st = c.prepare_cached(
                "SELECT id, ts_ms, rule, device, quantity, state, severity, value, message
                 FROM alert_events WHERE id > ?1 AND (?3 OR state != 'pending')
                 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![after, limit as i64, with_pending], |r| {
                Ok(StoredAlert {
                    id: r.get(0)?,
                    ts_ms: r.get(1)?,
                    rule: r.get(2)?,
                    device: r.get(3)?,
                    quantity: r.get(4)?,
                    state: r.get(5)?,
                    severity: r.get(6)?,
                    value: r.get(7)?,
                    message: r.get(8)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Ids of the rules whose latest non-pending transition is `firing`.
    pub fn firing_rules(&self) -> Result<Vec<String>> {
        self.with("read firing rules", |c| {
            let mut st = c.prepare(
                "SELECT rule FROM alert_events WHERE id IN
                   (SELECT max(id) FROM alert_events WHERE state != 'pending' GROUP BY rule)
                 AND state = 'firing' ORDER BY id",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }
}

/// One alert transition as the reports read it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertTransition {
    pub ts_ms: i64,
    pub rule: String,
    pub device: String,
    pub state: String,
    pub severity: String,
}

/// The alert transitions in `[from_ms, to_ms)` of the store at `path`, in time order, read
/// without creating or changing anything: a store that does not exist, or has no alert history
/// (accounting only, never run), has none.
pub fn alert_transitions(path: &Path, from_ms: i64, to_ms: i64) -> Result<Vec<AlertTransition>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| super::StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    let has: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alert_events'",
            [],
            |r| r.get(0),
        )
        .map_err(ctx("read the store's tables"))?;
    if has == 0 {
        return Ok(Vec::new());
    }
    let op = "read alert events";
    let mut stmt = conn
        .prepare(
            "SELECT ts_ms, rule, device, state, severity FROM alert_events
             WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id",
        )
        .map_err(ctx(op))?;
    let rows = stmt
        .query_map([from_ms, to_ms], |r| {
            Ok(AlertTransition {
                ts_ms: r.get(0)?,
                rule: r.get(1)?,
                device: r.get(2)?,
                state: r.get(3)?,
                severity: r.get(4)?,
            })
        })
        .map_err(ctx(op))?;
    rows.collect::<rusqlite::Result<_>>().map_err(ctx(op))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::config::Synchronous;
    use crate::storage::{AlertEvent, Store};

    #[test]
    fn alert_transitions_of_a_range_without_creating_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        assert!(alert_transitions(&path, 0, i64::MAX).unwrap().is_empty());
        assert!(!path.exists(), "reading created the store");
        let mut s = Store::open(&path, Synchronous::Normal).unwrap();
        for (ts, state) in [(10, "firing"), (20, "resolved"), (30, "firing")] {
            s.insert_alert_event(&AlertEvent {
                ts_ms: ts,
                rule: "r".into(),
                device: "m".into(),
                quantity: None,
                state,
                severity: "warning",
                value: None,
                message: String::new(),
            })
            .unwrap();
        }
        let got = alert_transitions(&path, 10, 30).unwrap();
        let got: Vec<_> = got.iter().map(|t| (t.ts_ms, t.state.as_str())).collect();
        assert_eq!(got, [(10, "firing"), (20, "resolved")]);
    }
}
