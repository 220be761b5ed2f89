//! The accounting tables behind typed functions, on a connection of their own (the store runs in
//! WAL mode, so the accounts are read and written while the gateway runs).
//!
//! Inputs: `acc_value_added`, `acc_production`, `acc_consumption` (imports),
//! `acc_counter_replacements` (operator records). Outputs, for dashboards and the InfluxDB output
//! (measurements `energy_interval` and `energy_account`): `energy_intervals`, `accounts` and
//! `counter_events`. Output rows carry `rev`: the revision of the run that last changed them, so a
//! consumer that remembers the highest `rev` it has sent sees every new or changed row (their
//! delivery side is [`super::streams`]).
//!
//! Months are `YYYY-MM` text here; `accounting` parses them into its calendar.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{ctx, Result};
use crate::readings::{Quantity, TimestampMs};

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

/// One counter event to write.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterEventRow<'a> {
    pub device: &'a str,
    pub quantity: Quantity,
    pub ts_ms: TimestampMs,
    pub kind: &'static str,
    pub from_value: Option<f64>,
    pub to_value: Option<f64>,
    pub counted: f64,
    pub detail: &'a str,
}

/// A recorded meter replacement of a counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplacementRecord {
    pub ts_ms: TimestampMs,
    pub old_final: f64,
    pub new_initial: f64,
}

/// Imported value added of a month, 10⁴ CNY.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueAddedRecord {
    pub month: String,
    pub current: f64,
    pub comparable: Option<f64>,
}

/// Imported production of a product in a month.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductionRecord {
    pub month: String,
    pub product: String,
    pub quantity: f64,
}

/// Imported consumption of a carrier in a month, for energy use or as feedstock.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumptionRecord {
    pub month: String,
    pub carrier: String,
    pub feedstock: bool,
    pub quantity: f64,
}

/// The accounting tables whose rows can be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountsTable {
    EnergyIntervals,
    Accounts,
    CounterEvents,
    Replacements,
}

impl AccountsTable {
    /// The table of a name, when it is one of the accounting tables that can be counted.
    pub fn from_name(name: &str) -> Option<AccountsTable> {
        Some(match name {
            "energy_intervals" => AccountsTable::EnergyIntervals,
            "accounts" => AccountsTable::Accounts,
            "counter_events" => AccountsTable::CounterEvents,
            "acc_counter_replacements" => AccountsTable::Replacements,
            _ => return None,
        })
    }

    fn count_sql(self) -> &'static str {
        match self {
            AccountsTable::EnergyIntervals => "SELECT count(*) FROM energy_intervals",
            AccountsTable::Accounts => "SELECT count(*) FROM accounts",
            AccountsTable::CounterEvents => "SELECT count(*) FROM counter_events",
            AccountsTable::Replacements => "SELECT count(*) FROM acc_counter_replacements",
        }
    }
}

/// A connection to the store for the accounting tables.
pub struct AccountsStore {
    conn: Connection,
}

impl AccountsStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<AccountsStore> {
        let mut conn = super::connect(path)?;
        super::schema::migrate(&mut conn, path)?;
        Ok(AccountsStore { conn })
    }

    /// Id of the last reading committed (0 for none).
    pub fn last_reading_id(&self) -> Result<i64> {
        super::batches::last_reading_id(&self.conn).map_err(ctx("read last reading id"))
    }

    /// The earliest acquisition time and the highest id among the readings committed after id
    /// `after` (see [`super::batches::committed_after`]).
    pub fn committed_after(&self, after: i64) -> Result<(Option<TimestampMs>, Option<i64>)> {
        super::batches::committed_after(&self.conn, after).map_err(ctx("read committed readings"))
    }

    /// Records a meter replacement (replacing an earlier record at the same instant).
    pub fn record_replacement(
        &self,
        device: &str,
        quantity: Quantity,
        r: &ReplacementRecord,
        note: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO acc_counter_replacements(device, quantity, ts_ms, old_final, new_initial, note, recorded_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(device, quantity, ts_ms) DO UPDATE SET old_final = excluded.old_final,
               new_initial = excluded.new_initial, note = excluded.note, recorded_ms = excluded.recorded_ms",
            params![device, quantity.as_str(), r.ts_ms, r.old_final, r.new_initial, note, crate::readings::now_ms()],
        )
        .map_err(ctx("record meter replacement"))?;
        Ok(())
    }

    /// The recorded replacements of a counter, oldest first.
    pub fn replacements(&self, device: &str, quantity: Quantity) -> Result<Vec<ReplacementRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ts_ms, old_final, new_initial FROM acc_counter_replacements
                 WHERE device = ?1 AND quantity = ?2 ORDER BY ts_ms",
            )
            .map_err(ctx("read meter replacements"))?;
        let rows = stmt
            .query_map(params![device, quantity.as_str()], |r| {
                Ok(ReplacementRecord {
                    ts_ms: r.get(0)?,
                    old_final: r.get(1)?,
                    new_initial: r.get(2)?,
                })
            })
            .map_err(ctx("read meter replacements"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(ctx("read meter replacements"))
    }

    /// When the latest replacement was recorded (0 for none).
    pub fn last_replacement_recorded_ms(&self) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT coalesce(max(recorded_ms), 0) FROM acc_counter_replacements",
                [],
                |r| r.get(0),
            )
            .map_err(ctx("read meter replacements"))
    }

    /// Of the replacements recorded after `recorded_ms`: the earliest instant they are at and
    /// when the latest was recorded (both None when there are none).
    pub fn replacements_recorded_after(
        &self,
        recorded_ms: i64,
    ) -> Result<(Option<TimestampMs>, Option<i64>)> {
        self.conn
            .query_row(
                "SELECT min(ts_ms), max(recorded_ms) FROM acc_counter_replacements WHERE recorded_ms > ?1",
                params![recorded_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(ctx("read meter replacements"))
    }

    /// Writes (or replaces) the value added of months, in one transaction.
    pub fn put_value_added(&mut self, rows: &[ValueAddedRecord]) -> Result<()> {
        let now = crate::readings::now_ms();
        self.in_transaction("import value added", |tx| {
            for r in rows {
                tx.execute(
                    "INSERT INTO acc_value_added(month, current_10k_cny, comparable_10k_cny, imported_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(month) DO UPDATE SET current_10k_cny = excluded.current_10k_cny,
                       comparable_10k_cny = excluded.comparable_10k_cny, imported_ms = excluded.imported_ms",
                    params![r.month, r.current, r.comparable, now],
                )?;
            }
            Ok(())
        })
    }

    /// The imported value added of every month.
    pub fn value_added(&self) -> Result<Vec<ValueAddedRecord>> {
        let op = "read value added";
        let mut stmt = self
            .conn
            .prepare("SELECT month, current_10k_cny, comparable_10k_cny FROM acc_value_added")
            .map_err(ctx(op))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ValueAddedRecord {
                    month: r.get(0)?,
                    current: r.get(1)?,
                    comparable: r.get(2)?,
                })
            })
            .map_err(ctx(op))?;
        rows.collect::<rusqlite::Result<_>>().map_err(ctx(op))
    }

    /// Writes (or replaces) the production of products in months, in one transaction.
    pub fn put_production(&mut self, rows: &[ProductionRecord]) -> Result<()> {
        let now = crate::readings::now_ms();
        self.in_transaction("import production", |tx| {
            for r in rows {
                tx.execute(
                    "INSERT INTO acc_production(month, product, quantity, imported_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(month, product) DO UPDATE SET quantity = excluded.quantity, imported_ms = excluded.imported_ms",
                    params![r.month, r.product, r.quantity, now],
                )?;
            }
            Ok(())
        })
    }

    /// The imported production of every product and month.
    pub fn production(&self) -> Result<Vec<ProductionRecord>> {
        let op = "read production";
        let mut stmt = self
            .conn
            .prepare("SELECT month, product, quantity FROM acc_production")
            .map_err(ctx(op))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ProductionRecord {
                    month: r.get(0)?,
                    product: r.get(1)?,
                    quantity: r.get(2)?,
                })
            })
            .map_err(ctx(op))?;
        rows.collect::<rusqlite::Result<_>>().map_err(ctx(op))
    }

    /// Writes (or replaces) the consumption of carriers in months, in one transaction.
    pub fn put_consumption(&mut self, rows: &[ConsumptionRecord]) -> Result<()> {
        let now = crate::readings::now_ms();
        self.in_transaction("import consumption", |tx| {
            for r in rows {
                tx.execute(
                    "INSERT INTO acc_consumption(month, carrier, use, quantity, imported_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(month, carrier, use) DO UPDATE SET quantity = excluded.quantity, imported_ms = excluded.imported_ms",
                    params![
                        r.month,
                        r.carrier,
                        if r.feedstock { "feedstock" } else { "energy" },
                        r.quantity,
                        now
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The imported consumption, by month, carrier and use.
    pub fn consumption(&self) -> Result<Vec<ConsumptionRecord>> {
        let op = "read consumption";
        let mut stmt = self
            .conn
            .prepare("SELECT month, carrier, use, quantity FROM acc_consumption ORDER BY month, carrier, use")
            .map_err(ctx(op))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ConsumptionRecord {
                    month: r.get(0)?,
                    carrier: r.get(1)?,
                    feedstock: r.get::<_, String>(2)? == "feedstock",
                    quantity: r.get(3)?,
                })
            })
            .map_err(ctx(op))?;
        rows.collect::<rusqlite::Result<_>>().map_err(ctx(op))
    }

    fn in_transaction(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<()> {
        let tx = self.conn.transaction().map_err(ctx(op))?;
        f(&tx).map_err(ctx(op))?;
        tx.commit().map_err(ctx(op))
    }

    /// Writes intervals, accounts and events in one transaction. Rows whose values did not
    /// change keep their revision. Returns the revision of this write.
    pub fn write_outputs(
        &mut self,
        intervals: &[IntervalRow],
        accounts: &[AccountRow],
        events: &[CounterEventRow],
    ) -> Result<i64> {
        let op = "write accounts";
        // Immediate: the gateway's writer commits all the time; a deferred transaction that
        // read first could not upgrade to a write (SQLITE_BUSY without waiting).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(ctx(op))?;
        let rev = write_outputs(&tx, intervals, accounts, events).map_err(ctx(op))?;
        tx.commit().map_err(ctx(op))?;
        Ok(rev)
    }

    /// Number of rows in an accounting table (for tests and diagnostics).
    pub fn count(&self, table: AccountsTable) -> Result<i64> {
        self.conn
            .query_row(table.count_sql(), [], |r| r.get(0))
            .map_err(ctx("count rows"))
    }

    /// The highest revision of the accounts (None before the first write).
    pub fn accounts_revision(&self) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT max(rev) FROM accounts", [], |r| r.get(0))
            .map_err(ctx("read accounts revision"))
    }

    /// The value and quality of one interval row.
    pub fn interval(
        &self,
        device: &str,
        quantity: Quantity,
        resolution: &str,
        start_ms: TimestampMs,
    ) -> Result<Option<(f64, String)>> {
        self.conn
            .query_row(
                "SELECT value, quality FROM energy_intervals
                 WHERE device = ?1 AND quantity = ?2 AND resolution = ?3 AND start_ms = ?4",
                params![device, quantity.as_str(), resolution, start_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(ctx("read energy interval"))
    }

    /// The value and revision of one account field.
    pub fn account(&self, period: &str, field: &str) -> Result<Option<(f64, i64)>> {
        self.conn
            .query_row(
                "SELECT value, rev FROM accounts WHERE period = ?1 AND field = ?2",
                params![period, field],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(ctx("read account"))
    }
}

fn next_rev(tx: &rusqlite::Transaction) -> rusqlite::Result<i64> {
    tx.query_row(
        "SELECT max(coalesce((SELECT max(rev) FROM energy_intervals), 0),
                    coalesce((SELECT max(rev) FROM accounts), 0),
                    coalesce((SELECT max(rev) FROM counter_events), 0)) + 1",
        [],
        |r| r.get(0),
    )
}

fn write_outputs(
    tx: &rusqlite::Transaction,
    intervals: &[IntervalRow],
    accounts: &[AccountRow],
    events: &[CounterEventRow],
) -> rusqlite::Result<i64> {
    let rev = next_rev(tx)?;
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
    for e in events {
        stmt.execute(params![
            e.device,
            e.quantity.as_str(),
            e.ts_ms,
            e.kind,
            e.from_value,
            e.to_value,
            e.counted,
            e.detail,
            rev
        ])?;
    }
    Ok(rev)
}
