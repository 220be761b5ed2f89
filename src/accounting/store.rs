//! The accounting tables in the gateway's SQLite store, on a connection of their own (the store
//! runs in WAL mode, so this can read and write while the gateway runs).
//!
//! Inputs: `acc_value_added`, `acc_production`, `acc_consumption` (imports),
//! `acc_counter_replacements` (operator records). Outputs, for dashboards and the InfluxDB output
//! (measurements `energy_interval` and `energy_account`): `energy_intervals`, `accounts` and
//! `counter_events`. Output rows carry `rev`: the revision of the run that last changed them, so a
//! consumer that remembers the highest `rev` it has sent sees every new or changed row.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

use super::calendar::Month;
use super::counters::{CounterEvent, Replacement, Sample};
use crate::readings::{Quantity, TimestampMs};

/// A usable reading of a counter as a sample (bad readings and absent values are not).
fn sample(r: &crate::storage::batches::SeriesReading) -> Option<Sample> {
    if r.quality.code() == 1 {
        return None;
    }
    r.value.map(|value| Sample {
        ts_ms: r.ts_ms,
        value,
        estimated: r.quality.code() == 2,
    })
}

/// One interval row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow<'a> {
    pub device: &'a str,
    pub quantity: Quantity,
    pub carrier: &'a str,
    pub unit: &'a str,
    /// "15m", "1h" or "1d".
    pub resolution: &'static str,
    pub start_ms: TimestampMs,
    pub value: f64,
    pub quality: &'static str,
}

/// One account field to write.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub period: String,
    pub kind: &'static str,
    pub start_ms: TimestampMs,
    pub end_ms: TimestampMs,
    pub field: String,
    pub value: f64,
    pub unit: String,
}

/// Manually imported consumption of a carrier in a month.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualConsumption {
    pub month: Month,
    pub carrier: String,
    pub feedstock: bool,
    pub quantity: f64,
}

/// Value added of one month, 10⁴ CNY.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueAdded {
    pub current: f64,
    pub comparable: Option<f64>,
}

pub struct AccountingStore {
    conn: Connection,
    readings: crate::storage::Store,
}

impl AccountingStore {
    /// Opens the store at `path` (creating it and the gateway's own schema if needed) and the
    /// accounting tables.
    pub fn open(path: &Path) -> Result<AccountingStore> {
        // The gateway's store creates the directory, WAL mode and every table (the accounting
        // tables are in storage's migrations); readings are read through it.
        let readings =
            crate::storage::Store::open(path, crate::storage::config::Synchronous::Normal)
                .with_context(|| format!("opening the store {}", path.display()))?;
        let conn = Connection::open(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(AccountingStore { conn, readings })
    }

    /// Batches of readings decoded by this store's reads so far (see
    /// [`crate::storage::Store::batches_decoded`]).
    pub fn batches_decoded(&self) -> u64 {
        self.readings.batches_decoded()
    }

    /// Up to `margin` usable readings of a counter before `from`, oldest first.
    pub fn samples_before(
        &self,
        device: &str,
        quantity: Quantity,
        from: TimestampMs,
        margin: usize,
    ) -> Result<Vec<Sample>> {
        let mut before = Vec::new();
        if margin > 0 {
            self.readings
                .series_history(device, quantity, i64::MIN, from - 1, false, |r| {
                    before.extend(sample(&r));
                    before.len() < margin
                })?;
        }
        before.reverse();
        Ok(before)
    }

    /// Streams the usable readings of a counter in `[from, to]` and then up to `margin` after
    /// `to`, in time order, to `f` (nothing is collected: a year of one-second readings is fine).
    pub fn for_each_sample(
        &self,
        device: &str,
        quantity: Quantity,
        from: TimestampMs,
        to: TimestampMs,
        margin: usize,
        mut f: impl FnMut(Sample),
    ) -> Result<()> {
        self.readings
            .series_history(device, quantity, from, to, true, |r| {
                if let Some(s) = sample(&r) {
                    f(s);
                }
                true
            })?;
        let mut after = 0;
        if margin > 0 && to < i64::MAX {
            self.readings
                .series_history(device, quantity, to + 1, i64::MAX, true, |r| {
                    if let Some(s) = sample(&r) {
                        f(s);
                        after += 1;
                    }
                    after < margin
                })?;
        }
        Ok(())
    }

    /// [`AccountingStore::samples_before`] of several counters at once: each batch before `from`
    /// is decoded once for all of them, back to where every counter has `margin` samples.
    pub fn samples_before_many(
        &self,
        series: &[(&str, Quantity)],
        from: TimestampMs,
        margin: usize,
    ) -> Result<Vec<Vec<Sample>>> {
        let mut out = vec![Vec::new(); series.len()];
        if margin > 0 {
            self.readings
                .series_histories(series, i64::MIN, from - 1, false, &mut |i, r| {
                    out[i].extend(sample(&r));
                    out[i].len() < margin
                })?;
        }
        for v in &mut out {
            v.reverse();
        }
        Ok(out)
    }

    /// [`AccountingStore::for_each_sample`] of several counters at once (`f(index in series,
    /// sample)`, each counter's samples in time order): each batch of the range is decoded once
    /// for all of them.
    pub fn for_each_sample_many(
        &self,
        series: &[(&str, Quantity)],
        from: TimestampMs,
        to: TimestampMs,
        margin: usize,
        f: &mut dyn FnMut(usize, Sample),
    ) -> Result<()> {
        let mut after = vec![0usize; series.len()];
        let end = if margin > 0 { i64::MAX } else { to };
        self.readings
            .series_histories(series, from, end, true, &mut |i, r| {
                let Some(s) = sample(&r) else {
                    return true;
                };
                f(i, s);
                if r.ts_ms <= to {
                    return true;
                }
                after[i] += 1;
                after[i] < margin
            })?;
        Ok(())
    }

    /// For each reading, whether the store already has one of its series at its instant.
    pub fn has_readings(&self, readings: &[crate::readings::Reading]) -> Result<Vec<bool>> {
        Ok(self.readings.contains_readings(readings)?)
    }

    /// True when the store already has a reading of this series at this instant.
    pub fn has_reading(
        &self,
        device: &str,
        quantity: Quantity,
        ts_ms: TimestampMs,
    ) -> Result<bool> {
        let mut found = false;
        self.readings
            .series_history(device, quantity, ts_ms, ts_ms, true, |_| {
                found = true;
                false
            })?;
        Ok(found)
    }

    /// Records a meter replacement (replacing an earlier record at the same instant).
    pub fn record_replacement(
        &self,
        device: &str,
        quantity: Quantity,
        r: &Replacement,
        note: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO acc_counter_replacements(device, quantity, ts_ms, old_final, new_initial, note, recorded_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(device, quantity, ts_ms) DO UPDATE SET old_final = excluded.old_final,
               new_initial = excluded.new_initial, note = excluded.note, recorded_ms = excluded.recorded_ms",
            params![device, quantity.as_str(), r.ts_ms, r.old_final, r.new_initial, note, crate::readings::now_ms()],
        )?;
        Ok(())
    }

    /// The recorded replacements of a counter, oldest first.
    pub fn replacements(&self, device: &str, quantity: Quantity) -> Result<Vec<Replacement>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts_ms, old_final, new_initial FROM acc_counter_replacements
             WHERE device = ?1 AND quantity = ?2 ORDER BY ts_ms",
        )?;
        let rows = stmt.query_map(params![device, quantity.as_str()], |r| {
            Ok(Replacement {
                ts_ms: r.get(0)?,
                old_final: r.get(1)?,
                new_initial: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn put_value_added(&mut self, rows: &[(Month, ValueAdded)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now = crate::readings::now_ms();
        for (m, v) in rows {
            tx.execute(
                "INSERT INTO acc_value_added(month, current_10k_cny, comparable_10k_cny, imported_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(month) DO UPDATE SET current_10k_cny = excluded.current_10k_cny,
                   comparable_10k_cny = excluded.comparable_10k_cny, imported_ms = excluded.imported_ms",
                params![m.to_string(), v.current, v.comparable, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn value_added(&self) -> Result<BTreeMap<Month, ValueAdded>> {
        let mut stmt = self
            .conn
            .prepare("SELECT month, current_10k_cny, comparable_10k_cny FROM acc_value_added")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                ValueAdded {
                    current: r.get(1)?,
                    comparable: r.get(2)?,
                },
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (m, v) = row?;
            if let Ok(m) = m.parse::<Month>() {
                out.insert(m, v);
            }
        }
        Ok(out)
    }

    pub fn put_production(&mut self, rows: &[(Month, String, f64)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now = crate::readings::now_ms();
        for (m, p, q) in rows {
            tx.execute(
                "INSERT INTO acc_production(month, product, quantity, imported_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(month, product) DO UPDATE SET quantity = excluded.quantity, imported_ms = excluded.imported_ms",
                params![m.to_string(), p, q, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Imported production: (month, product) → quantity.
    pub fn production(&self) -> Result<BTreeMap<(Month, String), f64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT month, product, quantity FROM acc_production")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (m, p, q) = row?;
            if let Ok(m) = m.parse::<Month>() {
                out.insert((m, p), q);
            }
        }
        Ok(out)
    }

    pub fn put_consumption(&mut self, rows: &[ManualConsumption]) -> Result<()> {
        let tx = self.conn.transaction()?;
        let now = crate::readings::now_ms();
        for r in rows {
            tx.execute(
                "INSERT INTO acc_consumption(month, carrier, use, quantity, imported_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(month, carrier, use) DO UPDATE SET quantity = excluded.quantity, imported_ms = excluded.imported_ms",
                params![
                    r.month.to_string(),
                    r.carrier,
                    if r.feedstock { "feedstock" } else { "energy" },
                    r.quantity,
                    now
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn consumption(&self) -> Result<Vec<ManualConsumption>> {
        let mut stmt = self
            .conn
            .prepare("SELECT month, carrier, use, quantity FROM acc_consumption ORDER BY month, carrier, use")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (m, carrier, u, quantity) = row?;
            if let Ok(month) = m.parse::<Month>() {
                out.push(ManualConsumption {
                    month,
                    carrier,
                    feedstock: u == "feedstock",
                    quantity,
                });
            }
        }
        Ok(out)
    }

    fn next_rev(tx: &rusqlite::Transaction) -> Result<i64> {
        let r: i64 = tx.query_row(
            "SELECT max(coalesce((SELECT max(rev) FROM energy_intervals), 0),
                        coalesce((SELECT max(rev) FROM accounts), 0),
                        coalesce((SELECT max(rev) FROM counter_events), 0)) + 1",
            [],
            |r| r.get(0),
        )?;
        Ok(r)
    }

    /// Writes intervals, accounts and events in one transaction. Rows whose values did not
    /// change keep their revision. Returns the revision of this write.
    pub fn write_outputs(
        &mut self,
        intervals: &[IntervalRow],
        accounts: &[AccountRow],
        events: &[(String, Quantity, CounterEvent)],
    ) -> Result<i64> {
        // Immediate: the gateway's writer commits all the time; a deferred transaction that
        // read first could not upgrade to a write (SQLITE_BUSY without waiting).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rev = Self::next_rev(&tx)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO energy_intervals(device, quantity, carrier, unit, resolution, start_ms, value, quality, rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(device, quantity, resolution, start_ms) DO UPDATE SET value = excluded.value,
                   quality = excluded.quality, carrier = excluded.carrier, unit = excluded.unit, rev = excluded.rev
                 WHERE value IS NOT excluded.value OR quality IS NOT excluded.quality
                   OR carrier IS NOT excluded.carrier OR unit IS NOT excluded.unit",
            )?;
            for r in intervals {
                stmt.execute(params![
                    r.device,
                    r.quantity.as_str(),
                    r.carrier,
                    r.unit,
                    r.resolution,
                    r.start_ms,
                    r.value,
                    r.quality,
                    rev
                ])?;
            }
            let mut stmt = tx.prepare_cached(
                "INSERT INTO accounts(period, kind, start_ms, end_ms, field, value, unit, rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(period, field) DO UPDATE SET value = excluded.value, unit = excluded.unit,
                   kind = excluded.kind, start_ms = excluded.start_ms, end_ms = excluded.end_ms, rev = excluded.rev
                 WHERE value IS NOT excluded.value OR unit IS NOT excluded.unit",
            )?;
            for a in accounts {
                stmt.execute(params![
                    a.period, a.kind, a.start_ms, a.end_ms, a.field, a.value, a.unit, rev
                ])?;
            }
            let mut stmt = tx.prepare_cached(
                "INSERT INTO counter_events(device, quantity, ts_ms, kind, from_value, to_value, counted, detail, rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(device, quantity, ts_ms, kind) DO UPDATE SET from_value = excluded.from_value,
                   to_value = excluded.to_value, counted = excluded.counted, detail = excluded.detail, rev = excluded.rev
                 WHERE counted IS NOT excluded.counted OR detail IS NOT excluded.detail",
            )?;
            for (d, q, e) in events {
                stmt.execute(params![
                    d,
                    q.as_str(),
                    e.ts_ms,
                    e.kind.as_str(),
                    e.from_value,
                    e.to_value,
                    e.counted,
                    e.detail,
                    rev
                ])?;
            }
        }
        tx.commit()?;
        Ok(rev)
    }

    /// Number of rows in an accounting output table (for tests and diagnostics).
    pub fn count(&self, table: &str) -> Result<i64> {
        let table = match table {
            "energy_intervals" | "accounts" | "counter_events" | "acc_counter_replacements" => {
                table
            }
            other => anyhow::bail!("not an accounting table: {other}"),
        };
        Ok(self
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
    }

    /// The value and quality of one interval row.
    pub fn interval(
        &self,
        device: &str,
        quantity: Quantity,
        resolution: &str,
        start_ms: TimestampMs,
    ) -> Result<Option<(f64, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value, quality FROM energy_intervals
                 WHERE device = ?1 AND quantity = ?2 AND resolution = ?3 AND start_ms = ?4",
                params![device, quantity.as_str(), resolution, start_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The value and revision of one account field.
    pub fn account(&self, period: &str, field: &str) -> Result<Option<(f64, i64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value, rev FROM accounts WHERE period = ?1 AND field = ?2",
                params![period, field],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}
