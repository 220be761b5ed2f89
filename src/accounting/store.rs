//! What the accounts read and write in the gateway's store, in accounting's terms (months,
//! counter samples, replacements, events): the counters' readings through
//! [`crate::storage::Store`], the accounting tables through [`crate::storage::accounts`] (which
//! owns their SQL; see there for the tables).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::calendar::Month;
use super::counters::{CounterEvent, Replacement, Sample};
use crate::readings::{Quantity, TimestampMs};
pub use crate::storage::accounts::{AccountRow, IntervalRow};
use crate::storage::accounts::{
    AccountsStore, AccountsTable, ConsumptionRecord, CounterEventRow, ProductionRecord,
    ReplacementRecord, ValueAddedRecord,
};

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
    accounts: AccountsStore,
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
        let accounts = AccountsStore::open(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        Ok(AccountingStore { accounts, readings })
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
        let r = ReplacementRecord {
            ts_ms: r.ts_ms,
            old_final: r.old_final,
            new_initial: r.new_initial,
        };
        Ok(self
            .accounts
            .record_replacement(device, quantity, &r, note)?)
    }

    /// The recorded replacements of a counter, oldest first.
    pub fn replacements(&self, device: &str, quantity: Quantity) -> Result<Vec<Replacement>> {
        Ok(self
            .accounts
            .replacements(device, quantity)?
            .into_iter()
            .map(|r| Replacement {
                ts_ms: r.ts_ms,
                old_final: r.old_final,
                new_initial: r.new_initial,
            })
            .collect())
    }

    pub fn put_value_added(&mut self, rows: &[(Month, ValueAdded)]) -> Result<()> {
        let rows: Vec<_> = rows
            .iter()
            .map(|(m, v)| ValueAddedRecord {
                month: m.to_string(),
                current: v.current,
                comparable: v.comparable,
            })
            .collect();
        Ok(self.accounts.put_value_added(&rows)?)
    }

    pub fn value_added(&self) -> Result<BTreeMap<Month, ValueAdded>> {
        let mut out = BTreeMap::new();
        for r in self.accounts.value_added()? {
            if let Ok(m) = r.month.parse::<Month>() {
                let v = ValueAdded {
                    current: r.current,
                    comparable: r.comparable,
                };
                out.insert(m, v);
            }
        }
        Ok(out)
    }

    pub fn put_production(&mut self, rows: &[(Month, String, f64)]) -> Result<()> {
        let rows: Vec<_> = rows
            .iter()
            .map(|(m, p, q)| ProductionRecord {
                month: m.to_string(),
                product: p.clone(),
                quantity: *q,
            })
            .collect();
        Ok(self.accounts.put_production(&rows)?)
    }

    /// Imported production: (month, product) → quantity.
    pub fn production(&self) -> Result<BTreeMap<(Month, String), f64>> {
        let mut out = BTreeMap::new();
        for r in self.accounts.production()? {
            if let Ok(m) = r.month.parse::<Month>() {
                out.insert((m, r.product), r.quantity);
            }
        }
        Ok(out)
    }

    pub fn put_consumption(&mut self, rows: &[ManualConsumption]) -> Result<()> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| ConsumptionRecord {
                month: r.month.to_string(),
                carrier: r.carrier.clone(),
                feedstock: r.feedstock,
                quantity: r.quantity,
            })
            .collect();
        Ok(self.accounts.put_consumption(&rows)?)
    }

    pub fn consumption(&self) -> Result<Vec<ManualConsumption>> {
        let mut out = Vec::new();
        for r in self.accounts.consumption()? {
            if let Ok(month) = r.month.parse::<Month>() {
                out.push(ManualConsumption {
                    month,
                    carrier: r.carrier,
                    feedstock: r.feedstock,
                    quantity: r.quantity,
                });
            }
        }
        Ok(out)
    }

    /// Writes intervals, accounts and events in one transaction. Rows whose values did not
    /// change keep their revision. Returns the revision of this write.
    pub fn write_outputs(
        &mut self,
        intervals: &[IntervalRow],
        accounts: &[AccountRow],
        events: &[(String, Quantity, CounterEvent)],
    ) -> Result<i64> {
        let events: Vec<_> = events
            .iter()
            .map(|(device, quantity, e)| CounterEventRow {
                device,
                quantity: *quantity,
                ts_ms: e.ts_ms,
                kind: e.kind.as_str(),
                from_value: e.from_value,
                to_value: e.to_value,
                counted: e.counted,
                detail: &e.detail,
            })
            .collect();
        Ok(self.accounts.write_outputs(intervals, accounts, &events)?)
    }

    /// Number of rows in an accounting output table (for tests and diagnostics).
    pub fn count(&self, table: &str) -> Result<i64> {
        let Some(t) = AccountsTable::from_name(table) else {
            anyhow::bail!("not an accounting table: {table}")
        };
        Ok(self.accounts.count(t)?)
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
            .accounts
            .interval(device, quantity, resolution, start_ms)?)
    }

    /// The value and revision of one account field.
    pub fn account(&self, period: &str, field: &str) -> Result<Option<(f64, i64)>> {
        Ok(self.accounts.account(period, field)?)
    }
}
