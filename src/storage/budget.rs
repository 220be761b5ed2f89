//! The disk budget of the history (`[storage] max_disk`). The store never holds more than the
//! budget in use: past it, the writer drops the oldest readings every output has delivered
//! (down to 90 % of the budget, so it does not run every minute), logs it and counts it
//! (`budget_dropped_total`, in /metrics). Undelivered readings are never dropped here; they have
//! their own bound (`[storage.outbox]`). Alert history, accounting intervals and accounts are
//! not readings and stay. Freed pages are reused by new readings, so the file stops growing.

use std::path::Path;

use super::{ctx, Result, Store, StoreError};

/// Share of the free space of the store's filesystem at the first start that the store may use
/// when no budget is configured.
pub const AUTO_SHARE: f64 = 0.5;

/// What one [`Store::enforce_budget`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetReport {
    /// Bytes in use before (pages not on the free list).
    pub used_bytes: u64,
    pub budget_bytes: u64,
    /// Delivered readings dropped now.
    pub dropped: u64,
    /// Minute aggregates dropped now (once no delivered raw reading was left).
    pub minutes_dropped: u64,
    /// True when the budget is passed and nothing delivered is left to drop.
    pub undelivered_over: bool,
}

impl Store {
    /// Bytes of the database file in use (pages not on the free list).
    pub fn used_bytes(&self) -> Result<u64> {
        let (pages, free, size) = self.page_stats()?;
        Ok(((pages - free).max(0) * size) as u64)
    }

    /// The budget in bytes: `configured` when not 0; else the one derived at the store's first
    /// start ([`AUTO_SHARE`] of the free space of its filesystem then, plus what the store
    /// already held), remembered in the store so it does not shrink as the disk fills.
    pub fn disk_budget(&self, path: &Path, configured: u64) -> Result<u64> {
        if configured > 0 {
            return Ok(configured);
        }
        let remembered = self.meta_i64("disk_budget_bytes")?;
        if remembered > 0 {
            return Ok(remembered as u64);
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let st = rustix::fs::statvfs(dir).map_err(|e| StoreError::Open {
            path: dir.display().to_string(),
            message: format!("cannot read the free space of the filesystem: {e}"),
        })?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        let budget = (free as f64 * AUTO_SHARE) as u64 + self.used_bytes()?;
        self.raise_meta_i64("disk_budget_bytes", budget as i64)?;
        tracing::info!(
            budget_bytes = budget,
            "storage.max_disk not set: the store may use half of the free disk space it found at its first start"
        );
        Ok(budget)
    }

    /// Delivered readings dropped for the budget since the store was created.
    pub fn budget_dropped_total(&self) -> Result<u64> {
        Ok(self.meta_i64("budget_dropped_total")?.max(0) as u64)
    }

    /// Keeps the store within `budget` bytes: drops the oldest readings that every one of
    /// `destinations` has confirmed (all of them when there is none) until 90 % of the budget.
    pub fn enforce_budget(&self, budget: u64, destinations: &[String]) -> Result<BudgetReport> {
        let used = self.used_bytes()?;
        let mut report = BudgetReport {
            used_bytes: used,
            budget_bytes: budget,
            ..BudgetReport::default()
        };
        if budget == 0 || used <= budget {
            return Ok(report);
        }
        // Readings about to go are rolled up first: the minute rows count too.
        self.roll_up(i64::MAX)?;
        let mut used = self.used_bytes()?;
        // The bytes a reading takes are estimated from the whole store (minute rows, alerts and
        // accounts included), so a few rounds may be needed.
        for _ in 0..4 {
            if used <= budget {
                break;
            }
            let readings = self.count_readings()?;
            let min_id = self.min_reading_id()?;
            if readings == 0 || min_id == 0 {
                if report.dropped == 0 {
                    self.drop_minutes_for(used, budget, &mut report)?;
                }
                return Ok(report);
            }
            let mut delivered = self.max_reading_id()?;
            for d in destinations {
                delivered = delivered.min(self.cursor(d)?);
            }
            let excess = used - budget / 10 * 9;
            let per_reading = (used as f64 / readings as f64).max(1.0);
            let n = (excess as f64 / per_reading).ceil() as i64;
            let through = (min_id - 1).saturating_add(n).min(delivered);
            if through < min_id {
                if report.dropped == 0 {
                    self.drop_minutes_for(used, budget, &mut report)?;
                }
                return Ok(report);
            }
            let dropped = self.delete_ids(min_id - 1, through)?;
            self.raise_meta_i64("deleted_through", through)?;
            let total = self.budget_dropped_total()? as i64 + dropped as i64;
            self.conn
                .execute(
                    "INSERT INTO meta(key, value) VALUES ('budget_dropped_total', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [total.to_string()],
                )
                .map_err(ctx("count budget drops"))?;
            report.dropped += dropped;
            used = self.used_bytes()?;
        }
        Ok(report)
    }

    /// The next tier once no delivered raw reading is left: the oldest minute aggregates
    /// (never counters' interval boundaries). Sets `undelivered_over` when nothing could go.
    fn drop_minutes_for(&self, used: u64, budget: u64, report: &mut BudgetReport) -> Result<()> {
        let rows: i64 = self
            .conn
            .query_row("SELECT count(*) FROM minute_aggregates", [], |r| r.get(0))
            .map_err(ctx("count minutes"))?;
        // About 60 bytes a minute row.
        let excess = used.saturating_sub(budget / 10 * 9);
        let n = (excess / 60).max(1).min(rows.max(0) as u64);
        let dropped = if n > 0 {
            self.drop_oldest_minutes(n)?
        } else {
            0
        };
        report.minutes_dropped = dropped;
        report.undelivered_over = dropped == 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::readings::{Quantity, Reading};
    use crate::storage::config::Synchronous;
    use crate::storage::Store;

    #[test]
    fn a_full_budget_drops_the_oldest_delivered_readings_and_keeps_undelivered_and_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sqlite");
        let mut s = Store::open(&p, Synchronous::Normal).unwrap();
        // Accounting tables with an interval and an account, and an alert: they must survive.
        let acc = crate::accounting::store::AccountingStore::open(&p).unwrap();
        s.conn
            .execute_batch(
                "INSERT INTO energy_intervals(device, quantity, carrier, unit, resolution, start_ms, value, quality, rev)
                   VALUES ('m0', 'energy_import', 'electricity', 'kWh', '15m', 1767225600000, 12.5, 'measured', 1);
                 INSERT INTO accounts(period, kind, start_ms, end_ms, field, value, unit, rev)
                   VALUES ('2026-01', 'month', 1767225600000, 1769904000000, 'comprehensive_energy_tce', 3.2, 'tce', 1);
                 INSERT INTO alert_events(ts_ms, rule, device, quantity, state, severity, value, message)
                   VALUES (1, 'r', 'm0', '', 'firing', 'warning', NULL, 'kept');",
            )
            .unwrap();
        // 14 instantaneous quantities and a counter.
        fn quantity(q: usize) -> Quantity {
            if q == 14 {
                Quantity::EnergyImport
            } else {
                Quantity::ALL[q]
            }
        }
        // Synthetic history: an hour of one-second polls of 5 meters × 15 values.
        let mut t = 1_767_225_600_000i64;
        for _ in 0..3600 {
            let rs: Vec<_> = (0..5)
                .flat_map(|m| {
                    (0..15).map(move |q| {
                        Reading::new(
                            format!("m{m}"),
                            quantity(q),
                            230.0 + f64::from(m) + f64::from(q as u32) * 0.5,
                            t,
                        )
                    })
                })
                .collect();
            s.insert_readings(&rs).unwrap();
            t += 1000;
        }
        let total = s.count_readings().unwrap();
        assert_eq!(total, 3600 * 75);
        // Two thirds delivered.
        let delivered = (total * 2 / 3) as i64;
        s.advance_cursor("influxdb.local", delivered).unwrap();
        let dests = vec!["influxdb.local".to_string()];
        // (The minute tier holds the hour too: it is part of what the store uses.)
        s.roll_up(i64::MAX).unwrap();
        let used = s.used_bytes().unwrap();
        // Three quarters: met by dropping some of the delivered readings, not all (the minute
        // tier is a good part of what the store uses).
        let budget = used / 4 * 3;
        let r = s.enforce_budget(budget, &dests).unwrap();
        assert!(r.dropped > 0, "{r:?}");
        assert!(
            s.used_bytes().unwrap() <= budget,
            "{} > {budget}",
            s.used_bytes().unwrap()
        );
        // The oldest went: what is left is one contiguous run up to the newest.
        let first_left = s.min_reading_id().unwrap();
        assert_eq!(first_left as u64, r.dropped + 1);
        assert_eq!(s.max_reading_id().unwrap() as u64, total);
        assert_eq!(s.budget_dropped_total().unwrap(), r.dropped);
        // A budget below the undelivered part: everything delivered goes, nothing undelivered.
        let r2 = s.enforce_budget(1, &dests).unwrap();
        assert!(r2.undelivered_over || s.min_reading_id().unwrap() == delivered + 1);
        // Then the next tier: minute aggregates, oldest first, but never the readings of
        // counters at interval boundaries.
        let boundary_rows = |s: &Store| -> i64 {
            s.conn
                .query_row(
                    "SELECT count(*) FROM minute_aggregates WHERE series_id = (SELECT id FROM series WHERE device = 'm0' AND quantity = ?1)",
                    [Quantity::EnergyImport.as_str()],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(boundary_rows(&s), 60);
        let mut r3 = s.enforce_budget(1, &dests).unwrap();
        for _ in 0..10 {
            if r3.undelivered_over {
                break;
            }
            assert!(r3.minutes_dropped > 0, "{r3:?}");
            r3 = s.enforce_budget(1, &dests).unwrap();
        }
        assert!(r3.undelivered_over, "{r3:?}");
        // First and last minute of each of the 4 intervals of the hour.
        assert_eq!(boundary_rows(&s), 8);
        let left: i64 = s
            .conn
            .query_row("SELECT count(*) FROM minute_aggregates", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 8 * 5, "only the counters' boundaries");
        assert_eq!(s.min_reading_id().unwrap(), delivered + 1);
        assert_eq!(s.count_readings().unwrap(), total - delivered as u64);
        assert_eq!(s.alert_events().unwrap().len(), 1);
        assert_eq!(acc.count("energy_intervals").unwrap(), 1);
        assert_eq!(
            acc.account("2026-01", "comprehensive_energy_tce").unwrap(),
            Some((3.2, 1))
        );
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }
}
