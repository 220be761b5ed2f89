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
    Migration {
        name: "the feeds' and accounting's tables, declared here (adopted where they exist)",
        step: Step::Sql(FEEDS_AND_ACCOUNTING),
    },
    Migration {
        name: "reference values of the readings' encoding (see storage::refs)",
        step: Step::Sql(VALUE_REFS),
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

const VALUE_REFS: &str = "
-- Reference values (storage::refs): one value per series, which batches of version 2
-- (storage::codec) are encoded against. Written once, deleted when no batch uses them.
CREATE TABLE value_refs (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
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

/// Until this migration, the MQTT output, the notifiers, the InfluxDB streams and accounting
/// each created their own tables (`IF NOT EXISTS`) when they opened the store; these are those
/// statements unchanged, so a store that has the tables keeps them and their rows as they are.
const FEEDS_AND_ACCOUNTING: &str = "
-- MQTT output: messages queued durably before publishing, and per stream the last id the
-- broker acknowledged (streams: alerts, outbox).
CREATE TABLE IF NOT EXISTS mqtt_outbox (
    id      INTEGER PRIMARY KEY,
    topic   TEXT NOT NULL,
    payload TEXT NOT NULL,
    retain  INTEGER NOT NULL DEFAULT 0,
    ts_ms   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mqtt_cursors (
    stream  TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
-- Notifiers: per notifier the last alert id delivered; what was sent or suppressed (rate limit).
CREATE TABLE IF NOT EXISTS notifier_cursors (
    notifier TEXT PRIMARY KEY,
    last_id  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notifier_log (
    id       INTEGER PRIMARY KEY,
    notifier TEXT NOT NULL,
    alert_id INTEGER NOT NULL,
    rule     TEXT NOT NULL,
    ts_ms    INTEGER NOT NULL,
    outcome  TEXT NOT NULL,   -- sent | suppressed
    detail   TEXT
);
CREATE INDEX IF NOT EXISTS notifier_log_rule ON notifier_log (notifier, rule, ts_ms);
-- InfluxDB: per destination and stream (alert, energy_interval, energy_account) the confirmed
-- position: (rev, id); rev is 0 for alerts.
CREATE TABLE IF NOT EXISTS influx_stream_cursors (
    destination TEXT NOT NULL,
    stream      TEXT NOT NULL,
    last_rev    INTEGER NOT NULL,
    last_id     INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (destination, stream)
);
-- Accounting (see storage::accounts): operator records and imports, then the outputs, whose
-- rows carry the revision of the run that last changed them.
CREATE TABLE IF NOT EXISTS acc_counter_replacements (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL,
    quantity    TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    old_final   REAL NOT NULL,
    new_initial REAL NOT NULL,
    note        TEXT,
    recorded_ms INTEGER NOT NULL,
    UNIQUE (device, quantity, ts_ms)
);
CREATE TABLE IF NOT EXISTS acc_value_added (
    month              TEXT PRIMARY KEY,      -- YYYY-MM
    current_10k_cny    REAL NOT NULL,
    comparable_10k_cny REAL,
    imported_ms        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS acc_production (
    month       TEXT NOT NULL,
    product     TEXT NOT NULL,
    quantity    REAL NOT NULL,
    imported_ms INTEGER NOT NULL,
    PRIMARY KEY (month, product)
);
CREATE TABLE IF NOT EXISTS acc_consumption (
    month       TEXT NOT NULL,
    carrier     TEXT NOT NULL,
    use         TEXT NOT NULL,               -- energy | feedstock
    quantity    REAL NOT NULL,               -- in the carrier's report unit
    imported_ms INTEGER NOT NULL,
    PRIMARY KEY (month, carrier, use)
);
-- Consumption of every accounted counter per local 15-minute, hour and day bucket
-- (measurement energy_interval).
CREATE TABLE IF NOT EXISTS energy_intervals (
    id         INTEGER PRIMARY KEY,
    device     TEXT NOT NULL,
    quantity   TEXT NOT NULL,
    carrier    TEXT NOT NULL,
    unit       TEXT NOT NULL,
    resolution TEXT NOT NULL,                -- 15m | 1h | 1d
    start_ms   INTEGER NOT NULL,
    value      REAL NOT NULL,
    quality    TEXT NOT NULL,                -- measured | estimated | partial
    rev        INTEGER NOT NULL,
    UNIQUE (device, quantity, resolution, start_ms)
);
CREATE INDEX IF NOT EXISTS energy_intervals_rev ON energy_intervals (rev);
-- Period accounts, one row per field (measurement energy_account).
CREATE TABLE IF NOT EXISTS accounts (
    id        INTEGER PRIMARY KEY,
    period    TEXT NOT NULL,                 -- 2026-10, 2026-Q3, 2026
    kind      TEXT NOT NULL,                 -- month | quarter | year
    start_ms  INTEGER NOT NULL,
    end_ms    INTEGER NOT NULL,
    field     TEXT NOT NULL,
    value     REAL NOT NULL,
    unit      TEXT NOT NULL,
    rev       INTEGER NOT NULL,
    UNIQUE (period, field)
);
CREATE INDEX IF NOT EXISTS accounts_rev ON accounts (rev);
CREATE TABLE IF NOT EXISTS counter_events (
    id         INTEGER PRIMARY KEY,
    device     TEXT NOT NULL,
    quantity   TEXT NOT NULL,
    ts_ms      INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    from_value REAL,
    to_value   REAL,
    counted    REAL NOT NULL,
    detail     TEXT NOT NULL,
    rev        INTEGER NOT NULL,
    UNIQUE (device, quantity, ts_ms, kind)
);
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
        let at = 1_767_225_600_000 + 100_000 + 1;
        let mut found = false;
        s.series_history("m1", Quantity::EnergyImport, at, at, true, |_| {
            found = true;
            false
        })
        .unwrap();
        assert!(found);
    }
}

#[cfg(test)]
mod adoption_tests {
    use rusqlite::Connection;

    use super::{Step, MIGRATIONS};
    use crate::storage::config::Synchronous;
    use crate::storage::feeds::FeedStore;
    use crate::storage::Store;

    /// A store as the code before migration 4 left it: the 0.1.0 fixture upgraded through
    /// migrations 1-3 (`user_version` 3), then the tables the MQTT output, the notifiers, the
    /// InfluxDB streams and accounting created themselves, with rows in them.
    fn store_before_migration_4(p: &std::path::Path) {
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/store-0.1.0.sqlite"
            ),
            p,
        )
        .unwrap();
        let mut c = Connection::open(p).unwrap();
        let tx = c.transaction().unwrap();
        for m in &MIGRATIONS[..3] {
            match m.step {
                Step::Sql(sql) => tx.execute_batch(sql).unwrap(),
                Step::Code(f) => f(&tx).unwrap(),
            }
        }
        tx.pragma_update(None, "user_version", 3).unwrap();
        tx.commit().unwrap();
        // The old modules' own DDL (tests/fixtures/README.md) and rows they wrote.
        c.execute_batch(include_str!(
            "../../tests/fixtures/feeds-ddl-before-migration-4.sql"
        ))
        .unwrap();
        c.execute_batch(
            "INSERT INTO mqtt_outbox(topic, payload, retain, ts_ms) VALUES ('t/a', '{}', 1, 5), ('t/b', '[]', 0, 6);
             INSERT INTO mqtt_cursors VALUES ('outbox', 1), ('alerts', 1);
             INSERT INTO notifier_cursors VALUES ('ops', 1);
             INSERT INTO notifier_log(notifier, alert_id, rule, ts_ms, outcome, detail)
               VALUES ('ops', 1, 'r', 9000000000000, 'sent', '');
             INSERT INTO influx_stream_cursors VALUES ('influxdb.local', 'energy_account', 4, 2, 7);
             INSERT INTO accounts(period, kind, start_ms, end_ms, field, value, unit, rev)
               VALUES ('2026-01', 'month', 0, 1, 'a', 1.5, 'tce', 4), ('2026-01', 'month', 0, 1, 'b', 2.5, 'tce', 4),
                      ('2026-01', 'month', 0, 1, 'c', 3.5, 'tce', 5);
             INSERT INTO energy_intervals(device, quantity, carrier, unit, resolution, start_ms, value, quality, rev)
               VALUES ('m1', 'energy_import', 'electricity', 'kWh', '15m', 0, 2.0, 'measured', 1);
             INSERT INTO acc_value_added VALUES ('2026-01', 100.0, NULL, 1);",
        )
        .unwrap();
    }

    #[test]
    fn tables_the_modules_created_are_adopted_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.sqlite");
        store_before_migration_4(&p);
        let s = Store::open(&p, Synchronous::Normal).unwrap();
        let v: i64 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, super::version());
        assert_eq!(s.integrity_check().unwrap(), "ok");
        assert_eq!(s.count_readings().unwrap(), 840, "no reading lost");
        assert_eq!(s.cursor("influxdb.local").unwrap(), 700);
        drop(s);
        let f = FeedStore::open(&p).unwrap();
        assert_eq!(f.mqtt_cursor("outbox").unwrap(), 1);
        let rest = f.outbox_after(1, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].id, rest[0].topic.as_str()), (2, "t/b"));
        assert_eq!(f.notifier_cursor("ops").unwrap(), 1);
        assert_eq!(f.notifications_sent_since("ops", "r", 0).unwrap(), 1);
        let (rev, id) = f.stream_cursor("influxdb.local", "energy_account").unwrap();
        assert_eq!((rev, id), (4, 2));
        let acc = f.accounts_after(rev, id, 10).unwrap();
        assert_eq!(acc.len(), 1);
        assert_eq!((acc[0].field.as_str(), acc[0].value), ("c", 3.5));
        assert_eq!(f.intervals_after(0, 0, 10).unwrap()[0].value, 2.0);
        // The one 0.1.0 alert transition is still there for the feeds.
        assert_eq!(f.alerts_after(0, 10, true).unwrap().len(), 1);
        // New rows continue the adopted tables' ids.
        assert_eq!(f.outbox_enqueue("t/c", "{}", false).unwrap(), 3);
        let imported: i64 = Connection::open(&p)
            .unwrap()
            .query_row("SELECT count(*) FROM acc_value_added", [], |r| r.get(0))
            .unwrap();
        assert_eq!(imported, 1);
    }

    #[test]
    fn a_new_store_has_every_table_of_every_module() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.sqlite");
        let f = FeedStore::open(&p).unwrap();
        assert_eq!(f.outbox_enqueue("t", "{}", false).unwrap(), 1);
        let c = Connection::open(&p).unwrap();
        for t in [
            "mqtt_outbox",
            "mqtt_cursors",
            "notifier_cursors",
            "notifier_log",
            "influx_stream_cursors",
            "acc_counter_replacements",
            "acc_value_added",
            "acc_production",
            "acc_consumption",
            "energy_intervals",
            "accounts",
            "counter_events",
        ] {
            let n: i64 = c
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [t],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{t}");
        }
    }
}
