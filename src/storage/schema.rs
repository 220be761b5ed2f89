//! The store's schema, owned here: one ordered list of migrations. `PRAGMA user_version` says
//! how many of them a file has had; [`migrate`] applies the rest in one transaction when a
//! store is opened, so a store written by any earlier release opens and is upgraded in place.
//! A file whose version is higher than this build knows is refused (no silent downgrade).
//!
//! Stores written by 0.1.0 have `user_version` 0 and a `meta.schema_version` of 1 or 2; the
//! first migration is 0.1.0's schema exactly (every statement `IF NOT EXISTS`), so for them it
//! only adds what a version-1 file lacked.

use std::path::Path;

use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::codec::{self, Encoded};
use super::{ctx, Result, StoreError};
use crate::readings::Quality;

/// One step of the schema's history.
pub struct Migration {
    /// What it does, for the log.
    pub name: &'static str,
    pub step: Step,
}

/// How a migration is applied.
pub enum Step {
    Sql(&'static str),
    Code(fn(&Transaction) -> rusqlite::Result<()>),
}

/// Every migration, oldest first. Append only: never edit or reorder a released one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0.1.0 schema: series, readings, cursors, alert events, quarantine",
        step: Step::Sql(SCHEMA_0_1_0),
    },
    Migration {
        name: "readings stored as compact batches (one row per commit)",
        step: Step::Code(readings_to_batches),
    },
    Migration {
        name: "minute aggregates (tiered history, see storage::tiers)",
        step: Step::Sql(MINUTES),
    },
];

/// The schema version of the newest migration (`PRAGMA user_version` of an up-to-date file).
pub fn version() -> i64 {
    MIGRATIONS.len() as i64
}

const SCHEMA_0_1_0: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per (device, quantity): readings refer to it to keep rows small.
CREATE TABLE IF NOT EXISTS series (
    id       INTEGER PRIMARY KEY,
    device   TEXT NOT NULL,
    quantity TEXT NOT NULL,
    UNIQUE (device, quantity)
);
-- Reading history and outbox. id grows with commit order; outputs deliver by id.
CREATE TABLE IF NOT EXISTS readings (
    id        INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL REFERENCES series(id),
    ts_ms     INTEGER NOT NULL,
    value     REAL,
    quality   INTEGER NOT NULL,   -- 0 good, 1 bad, 2 estimated
    reason    TEXT
);
CREATE INDEX IF NOT EXISTS readings_series_ts ON readings (series_id, ts_ms);
-- Per destination: the highest reading id it has confirmed.
CREATE TABLE IF NOT EXISTS cursors (
    destination TEXT PRIMARY KEY,
    last_id     INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
-- Alert transitions (pending/firing/resolved).
CREATE TABLE IF NOT EXISTS alert_events (
    id       INTEGER PRIMARY KEY,
    ts_ms    INTEGER NOT NULL,
    rule     TEXT NOT NULL,
    device   TEXT NOT NULL,
    quantity TEXT NOT NULL,
    state    TEXT NOT NULL,
    severity TEXT NOT NULL,
    value    REAL,
    message  TEXT NOT NULL
);
-- Points a destination rejected for good (the rest of their batch was delivered). The line
-- is kept as sent, so it can be inspected, fixed and replayed (`energy-gateway quarantine`).
-- (Schema version 1 had a table `quarantine` of whole batches; it is left as it was.)
CREATE TABLE IF NOT EXISTS quarantine_lines (
    id          INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    reading_id  INTEGER NOT NULL,
    ts_ms       INTEGER NOT NULL,   -- when it was quarantined
    status      INTEGER,            -- HTTP status, NULL when refused before sending
    error       TEXT NOT NULL,
    line        TEXT NOT NULL,
    UNIQUE (destination, reading_id)
);
";

const BATCHES: &str = "
-- Reading history and outbox: one row per commit (see storage::batches). The readings of a
-- row have the ids first_id .. first_id + n - 1; outputs deliver by id.
CREATE TABLE reading_batches (
    first_id INTEGER PRIMARY KEY,
    n        INTEGER NOT NULL,
    min_ts   INTEGER NOT NULL,
    max_ts   INTEGER NOT NULL,
    data     BLOB NOT NULL       -- storage::codec, last so scans by time skip it unread
);
CREATE INDEX reading_batches_min_ts ON reading_batches (min_ts, max_ts);
CREATE INDEX reading_batches_max_ts ON reading_batches (max_ts, min_ts);
";

const MINUTES: &str = "
-- The minute tier: per series and minute (ms since the epoch / 60000), the usable readings'
-- count, min, max and sum, the bad and estimated counts, and the first and last usable reading
-- (flags: 1 first estimated, 2 last estimated). See storage::tiers.
CREATE TABLE minute_aggregates (
    series_id INTEGER NOT NULL,
    minute    INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    bad       INTEGER NOT NULL,
    est       INTEGER NOT NULL,
    min       REAL,
    max       REAL,
    sum       REAL,
    first_ts  INTEGER,
    first     REAL,
    last_ts   INTEGER,
    last      REAL,
    flags     INTEGER NOT NULL,
    PRIMARY KEY (series_id, minute)
) WITHOUT ROWID;
";

/// Moves every row of 0.1.0's `readings` into batches, keeping ids (runs of consecutive ids
/// become batches; gaps left by pruning stay gaps), then drops the table and its index.
fn readings_to_batches(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(BATCHES)?;
    let mut insert = tx.prepare(
        "INSERT INTO reading_batches(first_id, n, min_ts, max_ts, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut flush = |first: i64, chunk: &mut Vec<Encoded>| -> rusqlite::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let (lo, hi) = chunk.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
            (lo.min(r.ts_ms), hi.max(r.ts_ms))
        });
        let blob = codec::encode(
            chunk
                .iter()
                .map(|r| (r.series_id, r.ts_ms, r.value, &r.quality)),
        );
        insert.execute(params![first, chunk.len() as i64, lo, hi, blob])?;
        chunk.clear();
        Ok(())
    };
    let mut stmt = tx
        .prepare("SELECT id, series_id, ts_ms, value, quality, reason FROM readings ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut chunk: Vec<Encoded> = Vec::new();
    let mut first = 0i64;
    let mut moved = 0u64;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        if !chunk.is_empty()
            && (id != first + chunk.len() as i64 || chunk.len() >= super::batches::BATCH_MAX)
        {
            flush(first, &mut chunk)?;
        }
        if chunk.is_empty() {
            first = id;
        }
        chunk.push(Encoded {
            series_id: r.get(1)?,
            ts_ms: r.get(2)?,
            value: r.get(3)?,
            quality: Quality::from_code(r.get(4)?, r.get(5)?),
        });
        moved += 1;
    }
    flush(first, &mut chunk)?;
    drop(rows);
    drop(stmt);
    drop(insert);
    tx.execute_batch(
        "DROP INDEX IF EXISTS readings_series_ts; DROP TABLE readings;
         INSERT INTO meta(key, value) VALUES ('schema_version', '3')
           ON CONFLICT(key) DO UPDATE SET value = excluded.value;",
    )?;
    if moved > 0 {
        tracing::info!(
            readings = moved,
            "store upgraded: readings moved into compact batches"
        );
    }
    Ok(())
}

/// Brings the file's schema up to date (see the module doc).
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let have = |c: &Connection| -> Result<i64> {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(ctx("read schema version"))
    };
    let newer = |v: i64| StoreError::Open {
        path: path.display().to_string(),
        message: format!(
            "schema version {v} is newer than this build understands ({}); upgrade energy-gateway",
            version()
        ),
    };
    let v = have(conn)?;
    if v == version() {
        return Ok(());
    }
    if v > version() {
        return Err(newer(v));
    }
    // One writer migrates; another process opening at the same time waits, then finds it done.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(ctx("begin migration"))?;
    let v = have(&tx)?;
    if v > version() {
        return Err(newer(v));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(v.max(0) as usize) {
        tracing::debug!(version = i + 1, migration = m.name, "migrating the store");
        match m.step {
            Step::Sql(sql) => tx.execute_batch(sql),
            Step::Code(f) => f(&tx),
        }
        .map_err(ctx("migrate"))?;
    }
    tx.pragma_update(None, "user_version", version())
        .map_err(ctx("write schema version"))?;
    tx.commit().map_err(ctx("commit migration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_gets_every_migration_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sqlite");
        let mut c = Connection::open(&p).unwrap();
        migrate(&mut c, &p).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, version());
        let tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('readings', 'reading_batches')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "readings is gone, reading_batches is there");
        c.pragma_update(None, "user_version", version() + 1)
            .unwrap();
        let e = migrate(&mut c, &p).unwrap_err().to_string();
        assert!(e.contains("newer than this build"), "{e}");
    }
}

#[cfg(test)]
mod upgrade_tests {
    use crate::readings::{Quality, Quantity, Reading};
    use crate::storage::config::Synchronous;
    use crate::storage::Store;

    /// tests/fixtures/store-0.1.0.sqlite was written by 0.1.0 (see tests/fixtures/README.md).
    #[test]
    fn a_store_written_by_0_1_0_opens_and_keeps_every_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.sqlite");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/store-0.1.0.sqlite"
            ),
            &p,
        )
        .unwrap();
        let mut s = Store::open(&p, Synchronous::Normal).unwrap();
        assert_eq!(s.integrity_check().unwrap(), "ok");
        // ids 361..=1200 survived 0.1.0's pruning; each keeps its id and content.
        assert_eq!(s.count_readings().unwrap(), 840);
        assert_eq!(s.max_reading_id().unwrap(), 1200);
        let all = s.readings_after(0, 10_000).unwrap();
        assert_eq!(all.len(), 840);
        assert_eq!(all.first().unwrap().id, 361);
        for (k, r) in all.iter().enumerate() {
            assert_eq!(r.id, 361 + k as i64);
            // The generator's pattern: poll i, meter m1/m2, quantities in order.
            let i = (r.id - 1) / 6;
            let ts = 1_767_225_600_000 + i * 1000 + (i % 3);
            assert_eq!(r.reading.ts_ms, ts, "reading {}", r.id);
            let expect = match (r.id - 1) % 3 {
                0 => Some(1000.0 + i as f64 * 0.25),
                1 => Some(12.5 + (i % 7) as f64 * 0.1),
                _ if i % 50 == 7 => None,
                _ => Some(50.0 + (i % 5) as f64 * 0.01),
            };
            assert_eq!(r.reading.value, expect, "reading {}", r.id);
            if expect.is_none() {
                assert_eq!(
                    r.reading.quality,
                    Quality::Bad("modbus exception: IllegalDataAddress".into())
                );
            }
        }
        assert_eq!(s.cursor("influxdb.local").unwrap(), 700);
        assert_eq!(s.alert_events().unwrap().len(), 1);
        assert_eq!(s.quarantined(None).unwrap()[0].reading_id, 650);
        assert_eq!(
            s.latest_good("m2", Quantity::EnergyImport).unwrap(),
            Some((1_767_225_600_000 + 199 * 1000 + 1, 1000.0 + 199.0 * 0.25))
        );
        // New readings continue the ids; a second open migrates nothing.
        let last = s
            .insert_readings(&[Reading::new("m1", Quantity::Frequency, 50.0, 1)])
            .unwrap();
        assert_eq!(last, 1201);
        drop(s);
        let s = Store::open(&p, Synchronous::Normal).unwrap();
        assert_eq!(s.count_readings().unwrap(), 841);
        let acc = crate::accounting::store::AccountingStore::open(&p).unwrap();
        assert!(acc
            .has_reading(
                "m1",
                Quantity::EnergyImport,
                1_767_225_600_000 + 100_000 + 1
            )
            .unwrap());
    }
}
