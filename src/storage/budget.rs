//! The disk budget of the history (`[storage] max_disk`). The store never holds more than the
//! budget in use: past it, the writer drops the oldest readings every output has delivered
//! (down to 90 % of the budget, so it does not run every minute), logs it and counts it
//! (`budget_dropped_total`, in /metrics). Once no delivered raw reading is left, the oldest
//! minute aggregates go, but only those of whole intervals before the oldest raw reading still
//! held (those are undelivered): a minute is rolled up once, so a minute row dropped while its
//! readings wait for an output would never come back, and that period's history would be gone
//! once they are delivered and pruned. Undelivered readings are never dropped here; they have
//! their own bound (`[storage.outbox]`). When only undelivered readings (and the minutes they
//! cover) are left over the budget, the writer says so and counts it. Alert history, accounting
//! intervals and accounts are not readings and stay. Freed pages are reused by new readings, so
//! the file stops growing.

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
    /// True when the budget is passed and nothing may go because what is left is undelivered
    /// readings and the minutes they cover (with counters' boundaries, intervals and accounts).
    pub undelivered_over: bool,
    /// True when the budget is passed and nothing at all may go now (`undelivered_over`, or
    /// only counters' interval boundaries, alert history, intervals and accounts are left).
    pub stuck: bool,
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
    /// (never counters' interval boundaries), in whole intervals before the interval of the
    /// oldest raw reading still held (every one left is undelivered, and its minute must stay
    /// until it is delivered). Sets `undelivered_over` when nothing could go while undelivered
    /// readings are held.
    fn drop_minutes_for(&self, used: u64, budget: u64, report: &mut BudgetReport) -> Result<()> {
        // About 60 bytes a minute row.
        let excess = used.saturating_sub(budget / 10 * 9);
        let oldest_raw: Option<i64> = self
            .conn
            .query_row("SELECT min(min_ts) FROM reading_batches", [], |r| r.get(0))
            .map_err(ctx("find the oldest raw reading"))?;
        let before = oldest_raw.map_or(i64::MAX, |ts| {
            super::tiers::minute_of(ts).div_euclid(15) * 15
        });
        let dropped = self.drop_oldest_minutes((excess / 60).max(1), before)?;
        report.minutes_dropped = dropped;
        report.stuck = dropped == 0;
        report.undelivered_over = dropped == 0 && oldest_raw.is_some();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::readings::{Quantity, Reading};
    use crate::storage::config::Synchronous;
    use crate::storage::tiers::{HistoryPoint, Step};
    use crate::storage::Store;

    #[test]
    fn a_full_budget_drops_the_oldest_delivered_readings_and_keeps_undelivered_and_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sqlite");
        let mut s = Store::open(&p, Synchronous::Normal).unwrap();
        // Accounting tables with an interval and an account, and an alert: they must survive.
        let acc = crate::storage::accounts::AccountsStore::open(&p).unwrap();
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
        const T0: i64 = 1_767_225_600_000;
        let value = |m: usize, q: usize| 230.0 + m as f64 + q as f64 * 0.5;
        let mut t = T0;
        for _ in 0..3600 {
            let rs: Vec<_> = (0..5)
                .flat_map(|m| {
                    (0..15).map(move |q| Reading::new(format!("m{m}"), quantity(q), value(m, q), t))
                })
                .collect();
            s.insert_readings(&rs).unwrap();
            t += 1000;
        }
        let total = s.count_readings().unwrap();
        assert_eq!(total, 3600 * 75);
        // Two thirds delivered to InfluxDB, one third to the MQTT output so far.
        let delivered = (total * 2 / 3) as i64;
        let lagging = (total / 3) as i64;
        s.advance_cursor("influxdb.local", delivered).unwrap();
        s.advance_cursor("mqtt.local", lagging).unwrap();
        let dests = vec!["influxdb.local".to_string(), "mqtt.local".to_string()];
        // (The minute tier holds the hour too: it is part of what the store uses.)
        s.roll_up(i64::MAX).unwrap();
        let used = s.used_bytes().unwrap();
        let budget = used / 2;
        // Only what both outputs have delivered may go: the oldest third, not one reading more.
        let r0 = s.enforce_budget(budget, &dests).unwrap();
        assert_eq!(r0.dropped, lagging as u64, "{r0:?}");
        assert_eq!(s.min_reading_id().unwrap(), lagging + 1);
        assert!(s.used_bytes().unwrap() > budget);
        // The raw readings dropped are still history: the minute tier answers for them.
        assert!(s.raw_dropped_through().unwrap() >= Some(T0 + 1_200_000 - 1000));
        let first_minute = s
            .history("m1", quantity(3), T0, T0 + 59_999, Step::Auto)
            .unwrap();
        assert_eq!(first_minute.kind, "aggregate");
        let HistoryPoint::Aggregate { count, mean, .. } = first_minute.points[0] else {
            panic!("{first_minute:?}")
        };
        assert_eq!((count, mean), (60, Some(value(1, 3))));
        s.advance_cursor("mqtt.local", delivered).unwrap();
        let r = s.enforce_budget(budget, &dests).unwrap();
        assert!(r.dropped > 0, "{r:?}");
        assert!(
            s.used_bytes().unwrap() <= budget,
            "{} > {budget}",
            s.used_bytes().unwrap()
        );
        // The oldest went: what is left is one contiguous run up to the newest.
        let first_left = s.min_reading_id().unwrap();
        assert_eq!(first_left as u64, r0.dropped + r.dropped + 1);
        assert_eq!(s.max_reading_id().unwrap() as u64, total);
        assert_eq!(s.budget_dropped_total().unwrap(), r0.dropped + r.dropped);
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
        // A budget below the undelivered part: everything delivered goes, nothing undelivered
        // (and, the readings being small, the minute tier may start in the same call).
        let r2 = s.enforce_budget(1, &dests).unwrap();
        assert!(r2.undelivered_over || s.min_reading_id().unwrap() == delivered + 1);
        let mut r3 = s.enforce_budget(1, &dests).unwrap();
        for _ in 0..10 {
            if r3.undelivered_over {
                break;
            }
            assert!(r3.minutes_dropped > 0, "{r3:?}");
            r3 = s.enforce_budget(1, &dests).unwrap();
        }
        assert!(r3.undelivered_over, "{r3:?}");
        // The undelivered readings start at minute 40: the interval from minute 30 on keeps all
        // its minutes; before it, the first and last minute of each of the 2 intervals.
        assert_eq!(boundary_rows(&s), 2 * 2 + 30);
        let left: i64 = s
            .conn
            .query_row("SELECT count(*) FROM minute_aggregates", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            left,
            2 * 2 * 5 + 30 * 75,
            "the counters' boundaries and the minutes of undelivered readings"
        );
        assert_eq!(s.min_reading_id().unwrap(), delivered + 1);
        assert_eq!(s.count_readings().unwrap(), total - delivered as u64);
        // The undelivered readings are as they were read: the first poll not delivered.
        let next = s.readings_after(delivered, 75).unwrap();
        let at = T0 + delivered / 75 * 1000;
        assert_eq!(next.len(), 75);
        for (k, r) in next.iter().enumerate() {
            let (m, q) = (k / 15, k % 15);
            assert_eq!(r.reading.device, format!("m{m}"));
            assert_eq!(r.reading.quantity, quantity(q));
            assert_eq!((r.reading.ts_ms, r.reading.value), (at, Some(value(m, q))));
        }
        assert_eq!(s.alert_events().unwrap().len(), 1);
        assert_eq!(
            acc.count(crate::storage::accounts::AccountsTable::EnergyIntervals)
                .unwrap(),
            1
        );
        assert_eq!(
            acc.account("2026-01", "comprehensive_energy_tce").unwrap(),
            Some((3.2, 1))
        );
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn the_budget_keeps_the_minutes_of_undelivered_readings() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        let q = Quantity::ALL[0];
        assert!(!q.is_cumulative());
        // Two hours of one-second readings of one meter; nothing delivered yet.
        const T0: i64 = 1_767_225_600_000;
        const HOUR: i64 = 3_600_000;
        for k in 0..7200 {
            let r = Reading::new("m0", q, 100.0 + (k / 60) as f64, T0 + k * 1000);
            s.insert_readings(std::slice::from_ref(&r)).unwrap();
        }
        let dests = vec!["influxdb.local".to_string()];
        s.roll_up(i64::MAX).unwrap();
        let minutes = |s: &Store, from: i64, to: i64| -> i64 {
            s.conn
                .query_row(
                    "SELECT count(*) FROM minute_aggregates WHERE minute >= ?1 AND minute < ?2",
                    [from / 60_000, to / 60_000],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(minutes(&s, T0, T0 + 2 * HOUR), 120);
        // Over the budget with nothing delivered: nothing goes, not even the minutes of the
        // readings waiting for the output (rolled up once, they would never be rebuilt).
        let r = s.enforce_budget(1, &dests).unwrap();
        assert_eq!((r.dropped, r.minutes_dropped), (0, 0), "{r:?}");
        assert!(r.undelivered_over && r.stuck, "{r:?}");
        assert_eq!(minutes(&s, T0, T0 + 2 * HOUR), 120);
        // The first hour delivered: its raw readings go, then its minutes, never the second's.
        s.advance_cursor("influxdb.local", 3600).unwrap();
        let mut r = s.enforce_budget(1, &dests).unwrap();
        assert_eq!(r.dropped, 3600, "{r:?}");
        for _ in 0..10 {
            if r.undelivered_over {
                break;
            }
            r = s.enforce_budget(1, &dests).unwrap();
        }
        assert!(r.undelivered_over, "{r:?}");
        assert_eq!(minutes(&s, T0, T0 + HOUR), 0);
        assert_eq!(minutes(&s, T0 + HOUR, T0 + 2 * HOUR), 60);
        // Once delivered and dropped from the raw tier, the second hour is still history.
        s.advance_cursor("influxdb.local", 7200).unwrap();
        let r = s.enforce_budget(1, &dests).unwrap();
        assert_eq!(r.dropped, 3600, "{r:?}");
        assert_eq!(s.count_readings().unwrap(), 0);
        let h = s
            .history("m0", q, T0 + HOUR, T0 + 2 * HOUR - 1, Step::Auto)
            .unwrap();
        assert_eq!(h.kind, "aggregate");
        assert_eq!(h.points.len(), 60, "{h:?}");
        for (k, p) in h.points.iter().enumerate() {
            let HistoryPoint::Aggregate { count, mean, .. } = *p else {
                panic!("{p:?}")
            };
            assert_eq!((count, mean), (60, Some(160.0 + k as f64)));
        }
        // Nothing undelivered left: the minutes may go now, and a budget that cannot be met
        // is not put on the outputs.
        let r = s.enforce_budget(1, &dests).unwrap();
        assert!(r.minutes_dropped > 0 && !r.undelivered_over, "{r:?}");
    }
}
