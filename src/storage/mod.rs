//! The embedded store: one SQLite database in WAL mode holding the reading history, the alert
//! history and, per output destination, a cursor saying how far delivery has got. The reading
//! table is the durable outbox: a reading is committed here before anything else sees it, and an
//! output advances its cursor only after its destination confirmed the write.

pub mod accounts;
pub mod batches;
pub mod budget;
pub mod codec;
pub mod config;
pub mod consumer;
pub mod feeds;
pub mod history;
pub mod metrics;
pub mod notify_log;
pub mod outbox;
pub mod quarantine;
mod refs;
pub mod safety;
pub mod scan;
pub mod schema;
pub mod streams;
pub mod tiers;
pub mod wal;
pub mod writer;

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::readings::{Quality, Quantity, Reading, TimestampMs};
use crate::storage::config::Synchronous;

/// Errors from the store, with the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("store at {path}: {message}")]
    Open { path: String, message: String },
    #[error("store damaged: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn ctx(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

/// A reading as kept in the store, with its outbox id.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReading {
    pub id: i64,
    pub reading: Reading,
}

/// An alert transition to record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertEvent {
    pub ts_ms: TimestampMs,
    pub rule: String,
    pub device: String,
    /// The quantity the rule watches (none for device- or gateway-level rules).
    pub quantity: Option<Quantity>,
    pub state: &'static str,
    pub severity: &'static str,
    pub value: Option<f64>,
    pub message: String,
}

/// One connection to the store. The writer thread owns one; readers open their own.
pub struct Store {
    conn: Connection,
    /// device → quantity → series id
    series: foldhash::HashMap<String, foldhash::HashMap<Quantity, i64>>,
    /// Id the next inserted reading gets (known once this connection has inserted).
    next_id: Option<i64>,
    /// Batches decoded by history reads on this connection (see [`Store::batches_decoded`]).
    batches_decoded: std::sync::atomic::AtomicU64,
    /// SQLite steps of minute prunes on this connection (see [`Store::minute_prune_steps`]).
    minute_prune_steps: std::sync::atomic::AtomicU64,
    /// Reference values of the readings' encoding (see `refs`).
    refs: refs::Refs,
}

/// A row of the outbox as outputs read it: the series by id (see [`Store::series`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub series_id: i64,
    pub ts_ms: TimestampMs,
    pub value: Option<f64>,
    pub quality: Quality,
}

/// How much undelivered data the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxUsage {
    /// Readings with an id above this are undelivered (the lowest cursor, or what was evicted).
    pub floor: i64,
    /// Highest reading id.
    pub max_id: i64,
    /// Undelivered readings.
    pub rows: u64,
    /// Estimated bytes of the undelivered readings (rows × the store's bytes per reading).
    pub bytes: u64,
    /// Bytes the store uses per reading, on average (pages in use ÷ readings).
    pub bytes_per_row: f64,
}

/// A point a destination rejected for good.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuarantinedLine {
    pub destination: String,
    pub reading_id: i64,
    /// When it was quarantined (ms since the epoch).
    pub quarantined_ms: TimestampMs,
    /// HTTP status of the rejection; `None` when the gateway could not encode the point.
    pub status: Option<u16>,
    pub error: String,
    /// The line protocol as sent.
    pub line: String,
}

/// Opens a connection to the store at `path` (creating the directory and file, private, if
/// needed) with a busy timeout and in WAL mode; the schema is not touched.
fn connect(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            safety::create_private_dir(dir).map_err(|e| StoreError::Open {
                path: dir.display().to_string(),
                message: format!("cannot create data directory: {e}"),
            })?;
        }
    }
    safety::create_private_file(path).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        message: format!("cannot create the store file: {e}"),
    })?;
    let conn = Connection::open(path).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(ctx("set busy timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(ctx("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open {
            path: path.display().to_string(),
            message: format!("journal mode is {mode}, WAL could not be enabled"),
        });
    }
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path, sync: Synchronous) -> Result<Store> {
        let mut conn = connect(path)?;
        let sync = match sync {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        // Larger WAL checkpoints (32 MiB) write each hot page once per checkpoint instead of
        // once per 4 MiB of WAL; after one the WAL file is cut back to wal::WAL_LIMIT_BYTES.
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync}; PRAGMA wal_autocheckpoint=8192; PRAGMA journal_size_limit={};",
            wal::WAL_LIMIT_BYTES
        ))
        .map_err(ctx("set synchronous"))?;
        schema::migrate(&mut conn, path)?;
        Ok(Store {
            conn,
            series: Default::default(),
            next_id: None,
            batches_decoded: std::sync::atomic::AtomicU64::new(0),
            minute_prune_steps: std::sync::atomic::AtomicU64::new(0),
            refs: refs::Refs::default(),
        })
    }

    /// A transaction that reads, then writes: begun with the write lock (waiting for it up to the
    /// busy timeout). Begun as a reader it would fail at once with "database is locked" when
    /// another connection (an import, a tool) committed between its reads and its first write.
    pub(crate) fn write_transaction(&self, op: &'static str) -> Result<rusqlite::Transaction<'_>> {
        rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
            .map_err(ctx(op))
    }

    /// Gives this connection a page cache of `mib` MiB (SQLite's default is 2 MiB). The store
    /// writer uses `[storage] cache_mib` (8 MiB by default); readers keep SQLite's default.
    pub fn set_cache_mib(&self, mib: u32) -> Result<()> {
        self.conn
            .execute_batch(&format!("PRAGMA cache_size=-{};", u64::from(mib) * 1024))
            .map_err(ctx("set cache size"))
    }

    /// Batches committed through this connection are encoded against reference values
    /// (`refs`): the store writer of `run`. Other writers (imports, tools) write batches that
    /// stand alone.
    pub fn keep_value_refs(&mut self) {
        self.refs.enable_writer();
    }

    /// A decoder of a batch's blob, with the reference values it names.
    pub(crate) fn decoder<'a>(&self, blob: &'a [u8]) -> Result<codec::Decoder<'a>> {
        let reference = match codec::ref_id(blob).map_err(batches::decode_err)? {
            None => None,
            Some(id) => Some(self.refs.values(&self.conn, id)?),
        };
        codec::Decoder::with_ref(blob, reference).map_err(batches::decode_err)
    }

    fn meta_i64(&self, key: &str) -> Result<i64> {
        let v: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(ctx("read meta"))?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    fn raise_meta_i64(&self, key: &str, value: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                params![key, value.to_string()],
            )
            .map_err(ctx("write meta"))?;
        Ok(())
    }

    /// The id the next reading gets. Ids are never reused, even after every row was pruned or
    /// evicted: cursors and the outbox bounds rely on ids only growing.
    fn next_reading_id(&mut self) -> Result<i64> {
        if let Some(n) = self.next_id {
            return Ok(n);
        }
        let max_cursor: i64 = self
            .conn
            .query_row("SELECT coalesce(max(last_id), 0) FROM cursors", [], |r| {
                r.get(0)
            })
            .map_err(ctx("read cursors"))?;
        let n = self
            .max_reading_id()?
            .max(max_cursor)
            .max(self.meta_i64("deleted_through")?)
            + 1;
        self.next_id = Some(n);
        Ok(n)
    }

    /// Records an alert transition.
    pub fn insert_alert_event(&mut self, e: &AlertEvent) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO alert_events(ts_ms, rule, device, quantity, state, severity, value, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    e.ts_ms,
                    e.rule,
                    e.device,
                    e.quantity.map(Quantity::as_str).unwrap_or(""),
                    e.state,
                    e.severity,
                    e.value,
                    e.message
                ])
            })
            .map_err(ctx("insert alert event"))?;
        Ok(())
    }

    /// All alert transitions, oldest first.
    pub fn alert_events(&self) -> Result<Vec<AlertEvent>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT ts_ms, rule, device, quantity, state, severity, value, message FROM alert_events ORDER BY id",
            )
            .map_err(ctx("prepare alert query"))?;
        let rows = stmt
            .query_map([], |r| {
                let q: String = r.get(3)?;
                let state: String = r.get(4)?;
                let sev: String = r.get(5)?;
                Ok(AlertEvent {
                    ts_ms: r.get(0)?,
                    rule: r.get(1)?,
                    device: r.get(2)?,
                    quantity: q.parse().ok(),
                    state: intern_state(&state),
                    severity: intern_severity(&sev),
                    value: r.get(6)?,
                    message: r.get(7)?,
                })
            })
            .map_err(ctx("query alert events"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(ctx("read alert events"))
    }

    /// Highest reading id confirmed by `destination` (0 when it has confirmed nothing).
    pub fn cursor(&self, destination: &str) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT last_id FROM cursors WHERE destination = ?1",
                [destination],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(ctx("read cursor"))
    }

    /// Moves `destination`'s cursor forward to `last_id` (never backwards).
    pub fn advance_cursor(&self, destination: &str, last_id: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO cursors(destination, last_id, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(destination) DO UPDATE SET
                   last_id = max(last_id, excluded.last_id), updated_ms = excluded.updated_ms",
                params![destination, last_id, crate::readings::now_ms()],
            )
            .map_err(ctx("advance cursor"))?;
        Ok(())
    }

    /// Device and quantity name of a series (`None` for an unknown id).
    pub fn series(&self, series_id: i64) -> Result<Option<(String, String)>> {
        self.conn
            .prepare_cached("SELECT device, quantity FROM series WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([series_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(ctx("read series"))
    }

    /// Keeps a point `destination` rejected for good. Recording the same reading twice for a
    /// destination (a batch replayed after a crash) keeps the first record.
    pub fn quarantine_line(
        &self,
        destination: &str,
        reading_id: i64,
        status: Option<u16>,
        error: &str,
        line: &str,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO quarantine_lines(destination, reading_id, ts_ms, status, error, line)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(destination, reading_id) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    destination,
                    reading_id,
                    crate::readings::now_ms(),
                    status,
                    error,
                    line
                ])
            })
            .map_err(ctx("quarantine"))?;
        Ok(())
    }

    /// Quarantined points, oldest first; only `destination`'s when given.
    pub fn quarantined(&self, destination: Option<&str>) -> Result<Vec<QuarantinedLine>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT destination, reading_id, ts_ms, status, error, line FROM quarantine_lines
                 WHERE ?1 IS NULL OR destination = ?1 ORDER BY destination, reading_id",
            )
            .map_err(ctx("prepare quarantine query"))?;
        let rows = stmt
            .query_map([destination], |r| {
                Ok(QuarantinedLine {
                    destination: r.get(0)?,
                    reading_id: r.get(1)?,
                    quarantined_ms: r.get(2)?,
                    status: r.get::<_, Option<i64>>(3)?.map(|s| s as u16),
                    error: r.get(4)?,
                    line: r.get(5)?,
                })
            })
            .map_err(ctx("query quarantine"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(ctx("read quarantine"))
    }

    /// Number of quarantined points per destination.
    pub fn quarantine_counts(&self) -> Result<BTreeMap<String, u64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT destination, count(*) FROM quarantine_lines GROUP BY destination")
            .map_err(ctx("prepare quarantine count"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(ctx("count quarantine"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(ctx("count quarantine rows"))
    }

    /// How much of the store is undelivered to `destinations` (the enabled outputs). With no
    /// destination nothing is waiting for delivery.
    pub fn outbox_usage(&self, destinations: &[String]) -> Result<OutboxUsage> {
        let max_id = match self.next_id {
            Some(n) => n - 1,
            None => self.max_reading_id()?,
        };
        let mut floor = i64::MAX;
        for d in destinations {
            floor = floor.min(self.cursor(d)?);
        }
        if destinations.is_empty() {
            floor = max_id;
        }
        floor = floor.max(self.meta_i64("evicted_through")?).min(max_id);
        let min_id = self.min_reading_id()?;
        let (page_count, free, page_size) = self.page_stats()?;
        let stored = if min_id == 0 { 0 } else { max_id - min_id + 1 };
        let fixed = self.schema_pages(page_size)?;
        let used = (page_count - free - fixed).max(0) as f64 * page_size as f64;
        let bytes_per_row = if stored > 0 {
            used / stored as f64
        } else {
            0.0
        };
        let rows = (max_id - floor).max(0) as u64;
        Ok(OutboxUsage {
            floor,
            max_id,
            rows,
            bytes: (rows as f64 * bytes_per_row) as u64,
            bytes_per_row,
        })
    }

    /// Deletes the undelivered readings with ids in `floor+1..=through` (the oldest ones) to make
    /// room. Destinations behind `through` skip them. Returns how many were deleted.
    pub fn evict(&self, floor: i64, through: i64) -> Result<u64> {
        let n = self.delete_ids(floor, through)?;
        self.raise_meta_i64("evicted_through", through)?;
        self.raise_meta_i64("deleted_through", through)?;
        let total = self.meta_i64("evicted_total")? + n as i64;
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES ('evicted_total', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [total.to_string()],
            )
            .map_err(ctx("count evictions"))?;
        Ok(n)
    }

    /// Pages of the database file, pages of it free, and the page size in bytes.
    pub fn page_stats(&self) -> Result<(i64, i64, i64)> {
        let pragma = |name: &'static str| -> Result<i64> {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .map_err(ctx(name))
        };
        Ok((
            pragma("page_count")?,
            pragma("freelist_count")?,
            pragma("page_size")?,
        ))
    }

    /// Pages the store takes whatever its readings: the schema (page 1 and what its text
    /// overflows into) and one page for each table or index that holds no readings (every
    /// module's tables exist from the start, most small or empty), so the bytes per reading are
    /// not inflated by them while few readings are stored.
    fn schema_pages(&self, page_size: i64) -> Result<i64> {
        let (others, text): (i64, i64) = self
            .conn
            .query_row(
                "SELECT count(*) FILTER (WHERE rootpage > 0
                          AND tbl_name NOT IN ('reading_batches', 'minute_aggregates', 'value_refs')),
                        coalesce(sum(length(sql)), 0)
                 FROM sqlite_master",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(ctx("schema pages"))?;
        Ok(others + 1 + text / page_size.max(1))
    }

    /// Readings evicted from the outbox since the store was created.
    pub fn evicted_total(&self) -> Result<u64> {
        Ok(self.meta_i64("evicted_total")?.max(0) as u64)
    }

    /// Runs SQLite's integrity check; `Ok("ok")` for a sound file.
    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(ctx("integrity check"))
    }
}

fn intern_state(s: &str) -> &'static str {
    match s {
        "pending" => "pending",
        "firing" => "firing",
        "resolved" => "resolved",
        _ => "unknown",
    }
}

fn intern_severity(s: &str) -> &'static str {
    match s {
        "info" => "info",
        "critical" => "critical",
        _ => "warning",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        (dir, s)
    }

    #[test]
    fn readings_round_trip_in_commit_order() {
        let (_d, mut s) = store();
        let rs = vec![
            Reading::new("m1", Quantity::ActivePower, 1.5, 1000),
            Reading::bad(
                "m1",
                Quantity::Frequency,
                1000,
                "modbus exception: IllegalDataAddress",
            ),
            Reading::new("m2", Quantity::EnergyImport, 42.0, 1001),
        ];
        let last = s.insert_readings(&rs).unwrap();
        assert_eq!(last, 3);
        let back = s.readings_after(0, 10).unwrap();
        assert_eq!(
            back.iter().map(|r| r.reading.clone()).collect::<Vec<_>>(),
            rs
        );
        assert_eq!(s.readings_after(2, 10).unwrap().len(), 1);
        assert_eq!(s.count_by_device().unwrap()["m1"], 2);
    }

    #[test]
    fn cursor_only_moves_forward_and_prune_respects_it() {
        let (_d, mut s) = store();
        let rs: Vec<_> = (0..10)
            .map(|i| Reading::new("m1", Quantity::ActivePower, i as f64, i))
            .collect();
        s.insert_readings(&rs).unwrap();
        assert_eq!(s.cursor("influx").unwrap(), 0);
        s.advance_cursor("influx", 6).unwrap();
        s.advance_cursor("influx", 4).unwrap();
        assert_eq!(s.cursor("influx").unwrap(), 6);
        // all are old, but only the confirmed ones may go
        assert_eq!(s.prune(100, &["influx".into()]).unwrap(), 6);
        assert_eq!(s.count_readings().unwrap(), 4);
        // without outputs everything old goes
        assert_eq!(s.prune(100, &[]).unwrap(), 4);
    }

    #[test]
    fn first_and_latest_good_skip_bad_values() {
        let (_d, mut s) = store();
        s.insert_readings(&[
            Reading::bad("m", Quantity::EnergyImport, 5, "nan"),
            Reading::new("m", Quantity::EnergyImport, 10.0, 10),
            Reading::new("m", Quantity::EnergyImport, 12.0, 20),
            Reading::bad("m", Quantity::EnergyImport, 30, "nan"),
        ])
        .unwrap();
        assert_eq!(
            s.first_good_since("m", Quantity::EnergyImport, 0).unwrap(),
            Some((10, 10.0))
        );
        assert_eq!(
            s.latest_good("m", Quantity::EnergyImport).unwrap(),
            Some((20, 12.0))
        );
        assert_eq!(
            s.first_good_since("m", Quantity::EnergyImport, 21).unwrap(),
            None
        );
    }

    #[test]
    fn commits_are_fsynced_by_default_and_normal_is_what_it_says() {
        // Power loss keeps what `full` committed: SQLite fsyncs the WAL at each commit when the
        // connection's synchronous level is FULL (2); NORMAL (1) only at checkpoints.
        let dir = tempfile::tempdir().unwrap();
        let level = |sync| -> i64 {
            let s = Store::open(&dir.path().join("s.sqlite"), sync).unwrap();
            s.conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(Synchronous::default(), Synchronous::Full);
        assert_eq!(level(Synchronous::default()), 2);
        assert_eq!(level(Synchronous::Normal), 1);
    }

    #[test]
    fn reopening_keeps_data_and_series_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sqlite");
        {
            let mut s = Store::open(&p, Synchronous::Full).unwrap();
            s.insert_readings(&[Reading::new("m", Quantity::Frequency, 50.0, 1)])
                .unwrap();
        }
        let mut s = Store::open(&p, Synchronous::Normal).unwrap();
        s.insert_readings(&[Reading::new("m", Quantity::Frequency, 50.1, 2)])
            .unwrap();
        assert_eq!(s.count_readings().unwrap(), 2);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }
}
