//! Tiered history. Three tiers, finest first:
//!
//! 1. **Raw readings** (`reading_batches`): every reading, kept for `[storage] retention`
//!    (default 14 days) once every output has delivered it.
//! 2. **Minute aggregates** (`minute_aggregates`, one row per series and minute): count of usable
//!    readings, bad readings, estimated readings, min, max, sum (mean = sum ÷ count), and the
//!    first and last usable reading with their exact times. Kept for
//!    `[storage] minute_retention` (default 400 days).
//! 3. **Interval boundaries**: past `minute_retention`, the minute rows of counters
//!    (cumulative quantities) that hold the first and the last reading of each 15-minute
//!    interval stay (and the 15-minute intervals and accounts, in accounting's tables). The
//!    readings that bracket every interval boundary are therefore kept as they were read, so the
//!    intervals and accounts of old periods can be recomputed and audited. Only the disk budget
//!    could drop them, and it does not: it drops raw readings first, then minute rows (never
//!    those of readings an output has not delivered yet).
//!
//! Raw readings are rolled up into minute rows before any of them is deleted (pruning, budget,
//! eviction) and every `rollup_every` (an hour: each series then gets its rows of the hour in one
//! page write). Rolling up works by reading id (`meta.rollup_through`) and merges into existing
//! rows, so late readings of a minute already rolled up are added exactly once.
//!
//! Readers never see the tiers: [`Store::series_history`] reads raw readings after the last time
//! dropped from the raw tier (`meta.raw_dropped_ts`) and, before it, the first and last reading
//! of each kept minute; [`Store::history`] returns readings or aggregates for a range from
//! whichever tier holds them.

use rusqlite::{params, OptionalExtension};

use super::batches::SeriesReading;
use super::{ctx, Result, Store, StoreError};
use crate::readings::{Quality, Quantity, TimestampMs};

/// One minute.
pub const MINUTE_MS: i64 = 60_000;
/// Length of an accounting interval: boundary readings of counters are kept per interval.
pub const INTERVAL_MS: i64 = 15 * MINUTE_MS;
/// Most minute rows held in memory while rolling up (then merged into the table).
const ROLLUP_CHUNK: usize = 50_000;

/// A reading kept by an aggregate: time, value, estimated.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Edge {
    pub ts_ms: TimestampMs,
    pub value: f64,
    pub estimated: bool,
}

/// Aggregate of the readings of one series over a span (a minute, or a history step).
/// Aggregates merge exactly: rolling up in pieces gives the same as at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Agg {
    /// Usable readings (good or estimated, with a value).
    pub count: u64,
    /// Bad readings (no value).
    pub bad: u64,
    /// Estimated readings among `count`.
    pub estimated: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
    pub first: Option<Edge>,
    pub last: Option<Edge>,
}

impl Agg {
    /// Adds one reading.
    pub fn add(&mut self, ts_ms: TimestampMs, value: Option<f64>, quality: &Quality) {
        let code = quality.code();
        let Some(v) = value.filter(|v| v.is_finite() && code != 1) else {
            self.bad += 1;
            return;
        };
        let e = Edge {
            ts_ms,
            value: v,
            estimated: code == 2,
        };
        self.merge(&Agg {
            count: 1,
            bad: 0,
            estimated: u64::from(e.estimated),
            min: Some(v),
            max: Some(v),
            sum: v,
            first: Some(e),
            last: Some(e),
        });
    }

    /// Adds the readings `o` aggregates (`o` holds readings committed after this one's on ties).
    pub fn merge(&mut self, o: &Agg) {
        self.count += o.count;
        self.bad += o.bad;
        self.estimated += o.estimated;
        self.min = opt(self.min, o.min, f64::min);
        self.max = opt(self.max, o.max, f64::max);
        self.sum += o.sum;
        self.first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(if b.ts_ms < a.ts_ms { b } else { a }),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, o.last) {
            (Some(a), Some(b)) => Some(if b.ts_ms >= a.ts_ms { b } else { a }),
            (a, b) => a.or(b),
        };
    }

    /// Mean of the usable readings.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

fn opt(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// The minute (ms since the epoch ÷ 60 000, floored) of an instant.
pub fn minute_of(ts_ms: TimestampMs) -> i64 {
    ts_ms.div_euclid(MINUTE_MS)
}

/// What a history query returns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum HistoryPoint {
    /// A reading as acquired.
    Reading {
        ts_ms: TimestampMs,
        value: Option<f64>,
        quality: &'static str,
    },
    /// An aggregate of the step starting at `ts_ms`.
    Aggregate {
        ts_ms: TimestampMs,
        count: u64,
        bad: u64,
        min: Option<f64>,
        max: Option<f64>,
        mean: Option<f64>,
        last: Option<f64>,
        /// Some reading of the step was estimated.
        estimated: bool,
    },
}

/// The resolution of a history query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The readings as stored (only where the raw tier still holds them).
    Raw,
    /// Aggregates per step of this many ms (a multiple of a minute where only minute rows are
    /// left).
    Every(i64),
    /// Readings when the raw tier holds the whole range, else minute aggregates.
    Auto,
}

/// A history query's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct History {
    /// "raw" or "aggregate".
    pub kind: &'static str,
    /// Step of the aggregates, ms (0 for readings).
    pub step_ms: i64,
    /// Raw readings are kept from just after this instant (none were dropped yet: null).
    pub raw_dropped_through_ms: Option<TimestampMs>,
    pub points: Vec<HistoryPoint>,
}

/// Most points one history query returns.
pub const MAX_POINTS: usize = 1_000_000;

impl Store {
    /// Latest acquisition time of a reading dropped from the raw tier (None: none dropped).
    pub fn raw_dropped_through(&self) -> Result<Option<TimestampMs>> {
        let v = self.meta_i64("raw_dropped_ts")?;
        Ok((v != 0).then_some(v))
    }

    /// Rolls every reading with an id up to `through` (all with `i64::MAX`) that is not rolled up
    /// yet into the minute tier. Returns how many readings were rolled up.
    pub fn roll_up(&self, through: i64) -> Result<u64> {
        let tx = self.write_transaction("begin roll-up")?;
        let n = self.roll_up_in_tx(through)?;
        tx.commit().map_err(ctx("commit roll-up"))?;
        Ok(n)
    }

    /// [`Store::roll_up`] inside the caller's transaction.
    pub(super) fn roll_up_in_tx(&self, through: i64) -> Result<u64> {
        let done = self.meta_i64("rollup_through")?;
        let max_id = self.max_reading_id()?;
        let through = through.min(max_id);
        if through <= done {
            return Ok(0);
        }
        let mut aggs: foldhash::HashMap<(i64, i64), Agg> = Default::default();
        let mut rolled = 0u64;
        let mut failed = None;
        self.scan_ids(done, |id, r| {
            if id > through {
                return false;
            }
            aggs.entry((r.series_id, minute_of(r.ts_ms)))
                .or_default()
                .add(r.ts_ms, r.value, &r.quality);
            rolled += 1;
            if aggs.len() >= ROLLUP_CHUNK {
                if let Err(e) = self.merge_minutes(&mut aggs) {
                    failed = Some(e);
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.merge_minutes(&mut aggs)?;
        self.raise_meta_i64("rollup_through", through)?;
        Ok(rolled)
    }

    /// Merges `aggs` into the minute table and empties it.
    fn merge_minutes(&self, aggs: &mut foldhash::HashMap<(i64, i64), Agg>) -> Result<()> {
        let mut keys: Vec<_> = aggs.keys().copied().collect();
        keys.sort_unstable();
        // Minutes the minute prune has already passed (late readings): the next prune looks
        // at them again.
        let pruned_before = self.meta_i64("minutes_pruned_before")?;
        if let Some(late) = keys
            .iter()
            .map(|k| k.1)
            .filter(|&m| m < pruned_before)
            .min()
        {
            self.conn
                .execute(
                    "INSERT INTO meta(key, value) VALUES ('minutes_late_from', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = min(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                    [late.to_string()],
                )
                .map_err(ctx("write meta"))?;
        }
        let mut get = self
            .conn
            .prepare_cached(
                "SELECT n, bad, est, min, max, sum, first_ts, first, last_ts, last, flags
                 FROM minute_aggregates WHERE series_id = ?1 AND minute = ?2",
            )
            .map_err(ctx("prepare minute read"))?;
        let mut put = self
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO minute_aggregates
                 (series_id, minute, n, bad, est, min, max, sum, first_ts, first, last_ts, last, flags)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .map_err(ctx("prepare minute write"))?;
        for k in keys {
            let Some(new) = aggs.get(&k) else { continue };
            let mut a = get
                .query_row(params![k.0, k.1], row_agg)
                .optional()
                .map_err(ctx("read minute"))?
                .unwrap_or_default();
            a.merge(new);
            let flags = i64::from(a.first.is_some_and(|e| e.estimated))
                | (i64::from(a.last.is_some_and(|e| e.estimated)) << 1);
            put.execute(params![
                k.0,
                k.1,
                a.count as i64,
                a.bad as i64,
                a.estimated as i64,
                a.min,
                a.max,
                (a.count > 0).then_some(a.sum),
                a.first.map(|e| e.ts_ms),
                a.first.map(|e| e.value),
                a.last.map(|e| e.ts_ms),
                a.last.map(|e| e.value),
                flags
            ])
            .map_err(ctx("write minute"))?;
        }
        aggs.clear();
        Ok(())
    }

    /// Minute rows of a series in `[from_minute, to_minute]`, in minute order (newest first
    /// unless `ascending`), until `f` returns false.
    fn minutes(
        &self,
        sid: i64,
        from_minute: i64,
        to_minute: i64,
        ascending: bool,
        mut f: impl FnMut(i64, Agg) -> bool,
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached(if ascending {
                "SELECT n, bad, est, min, max, sum, first_ts, first, last_ts, last, flags, minute
                 FROM minute_aggregates WHERE series_id = ?1 AND minute BETWEEN ?2 AND ?3
                 ORDER BY minute"
            } else {
                "SELECT n, bad, est, min, max, sum, first_ts, first, last_ts, last, flags, minute
                 FROM minute_aggregates WHERE series_id = ?1 AND minute BETWEEN ?2 AND ?3
                 ORDER BY minute DESC"
            })
            .map_err(ctx("prepare minute query"))?;
        let mut rows = stmt
            .query(params![sid, from_minute, to_minute])
            .map_err(ctx("query minutes"))?;
        while let Some(r) = rows.next().map_err(ctx("read minutes"))? {
            let a = row_agg(r).map_err(ctx("read minutes"))?;
            let m: i64 = r.get(11).map_err(ctx("read minutes"))?;
            if !f(m, a) {
                break;
            }
        }
        Ok(())
    }

    /// The part of [`Store::series_history`] before the raw tier's cut (`to` at most the cut):
    /// the first and last reading of every kept minute, merged with raw readings there that are
    /// not rolled up yet (late arrivals). Returns false when `f` asked to stop.
    pub(super) fn tier_history(
        &self,
        sid: i64,
        from: TimestampMs,
        to: TimestampMs,
        ascending: bool,
        f: &mut dyn FnMut(SeriesReading) -> bool,
    ) -> Result<bool> {
        if from > to {
            return Ok(true);
        }
        let rolled = self.meta_i64("rollup_through")?;
        // Late raw readings of the range (normally none: everything dropped was rolled up).
        let mut late: Vec<SeriesReading> = Vec::new();
        self.raw_series_range(sid, from, to, None, &mut |r| {
            if r.id > rolled {
                late.push(r);
            }
            true
        })?;
        late.sort_by_key(|r| (r.ts_ms, r.id));
        if !ascending {
            late.reverse();
        }
        let mut late = late.into_iter().peekable();
        let mut go = true;
        let before = |a: &SeriesReading, b: &SeriesReading| {
            if ascending {
                a.ts_ms <= b.ts_ms
            } else {
                a.ts_ms >= b.ts_ms
            }
        };
        self.minutes(sid, minute_of(from), minute_of(to), ascending, |_, a| {
            let mut edges: Vec<Edge> = a.first.into_iter().collect();
            if let Some(l) = a.last {
                if a.first
                    .is_none_or(|e| e.ts_ms != l.ts_ms || e.value != l.value)
                {
                    edges.push(l);
                }
            }
            if !ascending {
                edges.reverse();
            }
            for e in edges {
                if e.ts_ms < from || e.ts_ms > to {
                    continue;
                }
                let s = SeriesReading {
                    id: 0,
                    ts_ms: e.ts_ms,
                    value: Some(e.value),
                    // A minute with an estimated reading never looks measured.
                    quality: if e.estimated || a.estimated > 0 {
                        Quality::Estimated("minute aggregate".into())
                    } else {
                        Quality::Good
                    },
                };
                while let Some(l) = late.next_if(|l| before(l, &s)) {
                    if !f(l) {
                        go = false;
                        return false;
                    }
                }
                if !f(s) {
                    go = false;
                    return false;
                }
            }
            true
        })?;
        if go {
            for l in late {
                if !f(l) {
                    return Ok(false);
                }
            }
        }
        Ok(go)
    }

    /// Deletes the minute rows before `before_ms` (aligned down to an interval) except, for
    /// counters, the rows holding the first and last reading of each 15-minute interval.
    /// Minute rows rolled up after an earlier prune had passed their minute (late readings) are
    /// pruned too, their whole interval looked at again. Returns how many rows were deleted.
    pub fn prune_minutes(&self, before_ms: TimestampMs) -> Result<u64> {
        let cut = minute_of(before_ms.div_euclid(INTERVAL_MS) * INTERVAL_MS);
        let done = self.meta_i64("minutes_pruned_before")?;
        // The oldest minute rolled up after the prune had passed it (late readings), if any.
        let late: Option<i64> = self
            .conn
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'minutes_late_from'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(ctx("read meta"))?;
        if cut <= done && late.is_none() {
            return Ok(0);
        }
        // Whole intervals from the late minute on, so each one's boundary rows are known.
        let from = late.map_or(done, |m| done.min(m.div_euclid(15) * 15));
        let cut = cut.max(done);
        let series = self.series_kinds()?;
        let tx = self.write_transaction("begin minute prune")?;
        let mut doomed: Vec<(i64, i64)> = Vec::new();
        let mut steps = 0u64;
        {
            // Series by series through the primary key: only the rows of the range are visited,
            // never the rest of the table (a year of minutes).
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT minute, n FROM minute_aggregates
                     WHERE series_id = ?1 AND minute >= ?2 AND minute < ?3 ORDER BY minute",
                )
                .map_err(ctx("prepare minute prune"))?;
            // Per interval: usable rows in order; for counters the first and last are kept.
            let mut group: Vec<(i64, bool)> = Vec::new();
            let flush = |sid: i64,
                         keep: bool,
                         group: &mut Vec<(i64, bool)>,
                         doomed: &mut Vec<(i64, i64)>| {
                let usable: Vec<usize> = (0..group.len()).filter(|&i| group[i].1).collect();
                for (i, g) in group.iter().enumerate() {
                    let edge = usable.first() == Some(&i) || usable.last() == Some(&i);
                    if !(keep && edge) {
                        doomed.push((sid, g.0));
                    }
                }
                group.clear();
            };
            for &(sid, counter) in &series {
                let mut rows = stmt
                    .query(params![sid, from, cut])
                    .map_err(ctx("query minute prune"))?;
                while let Some(r) = rows.next().map_err(ctx("read minute prune"))? {
                    let (m, n): (i64, i64) = (
                        r.get(0).map_err(ctx("read minute prune"))?,
                        r.get(1).map_err(ctx("read minute prune"))?,
                    );
                    if group
                        .first()
                        .is_some_and(|g| g.0.div_euclid(15) != m.div_euclid(15))
                    {
                        flush(sid, counter, &mut group, &mut doomed);
                    }
                    group.push((m, n > 0));
                }
                flush(sid, counter, &mut group, &mut doomed);
            }
            steps += stmt.reset_status(rusqlite::StatementStatus::VmStep).max(0) as u64;
        }
        {
            let mut del = self
                .conn
                .prepare_cached(
                    "DELETE FROM minute_aggregates WHERE series_id = ?1 AND minute = ?2",
                )
                .map_err(ctx("prepare minute delete"))?;
            for (sid, m) in &doomed {
                del.execute(params![sid, m]).map_err(ctx("delete minute"))?;
            }
            steps += del.reset_status(rusqlite::StatementStatus::VmStep).max(0) as u64;
        }
        self.raise_meta_i64("minutes_pruned_before", cut)?;
        self.conn
            .execute("DELETE FROM meta WHERE key = 'minutes_late_from'", [])
            .map_err(ctx("write meta"))?;
        tx.commit().map_err(ctx("commit minute prune"))?;
        self.minute_prune_steps
            .fetch_add(steps, std::sync::atomic::Ordering::Relaxed);
        Ok(doomed.len() as u64)
    }

    /// SQLite steps (virtual machine instructions) the minute prunes (retention and disk budget)
    /// on this connection ran so far: what a prune costs, in proportion to the rows it visits.
    pub fn minute_prune_steps(&self) -> u64 {
        self.minute_prune_steps
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every series' id and whether it is a cumulative quantity (a counter).
    fn series_kinds(&self) -> Result<Vec<(i64, bool)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, quantity FROM series ORDER BY id")
            .map_err(ctx("prepare series query"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(ctx("query series"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, q) = row.map_err(ctx("read series"))?;
            out.push((id, q.parse::<Quantity>().is_ok_and(|q| q.is_cumulative())));
        }
        Ok(out)
    }

    /// For the disk budget, after every delivered raw reading is gone: deletes about `rows` of
    /// the oldest minute rows that are not interval boundaries of counters (those stay, like the
    /// intervals and accounts), in whole intervals before the minute `before` (the interval of
    /// the oldest raw reading still held: those readings are undelivered, and once rolled up
    /// their minutes are not rebuilt, so they must stay). Returns how many were deleted.
    pub(super) fn drop_oldest_minutes(&self, rows: u64, before: i64) -> Result<u64> {
        let done = self.meta_i64("minutes_pruned_before")?;
        let series = self.series_kinds()?;
        // Interval by interval from the oldest kept minute until `rows` are counted, series by
        // series through the primary key: the rows counted and one seek per series and interval
        // are visited, not the whole table.
        let mut next = self
            .conn
            .prepare_cached(
                "SELECT minute FROM minute_aggregates WHERE series_id = ?1 AND minute >= ?2
                 ORDER BY minute LIMIT 1",
            )
            .map_err(ctx("prepare oldest minute"))?;
        let mut count = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM minute_aggregates
                 WHERE series_id = ?1 AND minute >= ?2 AND minute < ?3",
            )
            .map_err(ctx("prepare minute count"))?;
        let mut end = None;
        let mut counted = 0u64;
        let mut at = done;
        while counted < rows {
            let mut oldest: Option<i64> = None;
            for &(sid, _) in &series {
                let m: Option<i64> = next
                    .query_row(params![sid, at], |r| r.get(0))
                    .optional()
                    .map_err(ctx("find oldest minute"))?;
                oldest = match (oldest, m) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let Some(oldest) = oldest else { break };
            // Whole intervals, so the boundary rows of each are known.
            let from = oldest.div_euclid(15) * 15;
            if from.saturating_add(15) > before {
                break;
            }
            at = from + 15;
            for &(sid, _) in &series {
                let n: i64 = count
                    .query_row(params![sid, from, at], |r| r.get(0))
                    .map_err(ctx("count minutes"))?;
                counted += n.max(0) as u64;
            }
            end = Some(at);
        }
        let steps = next.reset_status(rusqlite::StatementStatus::VmStep).max(0)
            + count.reset_status(rusqlite::StatementStatus::VmStep).max(0);
        self.minute_prune_steps
            .fetch_add(steps as u64, std::sync::atomic::Ordering::Relaxed);
        match end {
            Some(end) => self.prune_minutes(end * MINUTE_MS),
            None => Ok(0),
        }
    }

    /// Readings or aggregates of one series in `[from, to]` (see [`Step`]), oldest first, at
    /// most [`MAX_POINTS`].
    pub fn history(
        &self,
        device: &str,
        quantity: Quantity,
        from: TimestampMs,
        to: TimestampMs,
        step: Step,
    ) -> Result<History> {
        let cut = self.raw_dropped_through()?;
        let mut out = History {
            kind: "raw",
            step_ms: 0,
            raw_dropped_through_ms: cut,
            points: Vec::new(),
        };
        let Some(sid) = self.find_series(device, quantity)? else {
            return Ok(out);
        };
        let step = match step {
            Step::Auto if cut.is_some_and(|c| c >= from) => Step::Every(MINUTE_MS),
            Step::Auto => Step::Raw,
            s => s,
        };
        match step {
            Step::Raw | Step::Auto => {
                let from = cut.map_or(from, |c| from.max(c.saturating_add(1)));
                self.raw_history(sid, from, to, true, &mut |r| {
                    out.points.push(HistoryPoint::Reading {
                        ts_ms: r.ts_ms,
                        value: r.value,
                        quality: r.quality.as_str(),
                    });
                    out.points.len() < MAX_POINTS
                })?;
            }
            Step::Every(step_ms) => {
                if step_ms <= 0 {
                    return Err(StoreError::Corrupt("history step must be positive".into()));
                }
                out.kind = "aggregate";
                out.step_ms = step_ms;
                let bucket = |ts: i64| ts.div_euclid(step_ms) * step_ms;
                let mut buckets: Vec<(i64, Agg)> = Vec::new();
                let mut push = |ts: i64, a: &Agg| -> bool {
                    let b = bucket(ts);
                    match buckets.last_mut() {
                        Some((lb, la)) if *lb == b => la.merge(a),
                        _ => buckets.push((b, *a)),
                    }
                    buckets.len() <= MAX_POINTS
                };
                // Rolled-up minutes first (each minute whole in one step when the step is a
                // multiple of a minute), then readings not rolled up yet, merged per step.
                let rolled = self.meta_i64("rollup_through")?;
                let whole_minutes = step_ms % MINUTE_MS == 0;
                if whole_minutes {
                    self.minutes(sid, minute_of(from), minute_of(to), true, |m, a| {
                        let inside = m * MINUTE_MS >= from && (m + 1) * MINUTE_MS - 1 <= to;
                        if inside {
                            push(m * MINUTE_MS, &a)
                        } else {
                            true
                        }
                    })?;
                }
                // Readings: those not rolled up (or all, when minutes do not fit the steps or
                // are cut by the range's ends).
                let mut extra: Vec<(i64, Agg)> = Vec::new();
                let mut add = |r: SeriesReading| {
                    let mut a = Agg::default();
                    a.add(r.ts_ms, r.value, &r.quality);
                    extra.push((bucket(r.ts_ms), a));
                    true
                };
                if whole_minutes {
                    // Readings not rolled up yet (only the newest batches are decoded), and
                    // the rolled-up ones of the minutes the range's ends cut.
                    self.raw_series_range(sid, from, to, Some(rolled), &mut |r| add(r))?;
                    let first_whole = from.div_euclid(MINUTE_MS) * MINUTE_MS;
                    let first_whole = if first_whole < from {
                        first_whole + MINUTE_MS
                    } else {
                        first_whole
                    };
                    let last_whole = (to.saturating_add(1)).div_euclid(MINUTE_MS) * MINUTE_MS;
                    let mut edges = vec![(from, first_whole.min(to.saturating_add(1)) - 1)];
                    if last_whole > from {
                        edges.push((last_whole.max(first_whole), to));
                    }
                    for (a, b) in edges {
                        if a <= b {
                            self.raw_series_range(sid, a, b, None, &mut |r| {
                                r.id > rolled || add(r)
                            })?;
                        }
                    }
                } else {
                    let raw_from = cut.map_or(from, |c| from.max(c.saturating_add(1)));
                    self.raw_series_range(sid, raw_from, to, None, &mut |r| add(r))?;
                }
                if !extra.is_empty() {
                    let mut all: std::collections::BTreeMap<i64, Agg> = buckets.drain(..).collect();
                    for (b, a) in extra {
                        all.entry(b).or_default().merge(&a);
                    }
                    buckets = all.into_iter().collect();
                }
                buckets.truncate(MAX_POINTS);
                out.points = buckets
                    .into_iter()
                    .map(|(ts, a)| HistoryPoint::Aggregate {
                        ts_ms: ts,
                        count: a.count,
                        bad: a.bad,
                        min: a.min,
                        max: a.max,
                        mean: a.mean(),
                        last: a.last.map(|e| e.value),
                        estimated: a.estimated > 0,
                    })
                    .collect();
            }
        }
        Ok(out)
    }
}

fn row_agg(r: &rusqlite::Row) -> rusqlite::Result<Agg> {
    let flags: i64 = r.get(10)?;
    let edge = |ts: Option<i64>, v: Option<f64>, est: bool| match (ts, v) {
        (Some(ts_ms), Some(value)) => Some(Edge {
            ts_ms,
            value,
            estimated: est,
        }),
        _ => None,
    };
    Ok(Agg {
        count: r.get::<_, i64>(0)?.max(0) as u64,
        bad: r.get::<_, i64>(1)?.max(0) as u64,
        estimated: r.get::<_, i64>(2)?.max(0) as u64,
        min: r.get(3)?,
        max: r.get(4)?,
        sum: r.get::<_, Option<f64>>(5)?.unwrap_or(0.0),
        first: edge(r.get(6)?, r.get(7)?, flags & 1 != 0),
        last: edge(r.get(8)?, r.get(9)?, flags & 2 != 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::counters::{CounterSettings, SlotAcc};
    use crate::readings::Reading;
    use crate::storage::config::Synchronous;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00Z, an interval boundary

    /// Two hours of one-second readings of a counter and a power value (some bad, some
    /// estimated, a pause of 40 s across a boundary), committed in polls.
    fn fill(s: &mut Store) {
        let mut e = 1000.0;
        for i in 0..7200i64 {
            let ts = T0 + i * 1000 + (i % 3);
            if (890..930).contains(&i) {
                continue; // no reading 00:14:50 .. 00:15:30
            }
            e += 0.01 + (i % 7) as f64 * 0.001;
            let mut rs = vec![Reading::new("m", Quantity::EnergyImport, e, ts)];
            if i % 97 == 5 {
                rs.push(Reading::bad("m", Quantity::ActivePower, ts, "timeout"));
            } else {
                rs.push(Reading::new(
                    "m",
                    Quantity::ActivePower,
                    10.0 + (i % 11) as f64,
                    ts,
                ));
            }
            if i % 500 == 3 {
                rs[0].quality = Quality::Estimated("bridged".into());
            }
            s.insert_readings(&rs).unwrap();
        }
    }

    #[test]
    fn a_roll_up_waits_for_another_writer_instead_of_failing() {
        use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut s = Store::open(&path, Synchronous::Normal).unwrap();
        s.insert_readings(&[Reading::new("m", Quantity::ActivePower, 1.0, T0)])
            .unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let written = std::sync::Arc::new(AtomicI64::new(0));
        // Another connection (an import, a tool) commits readings as fast as it can.
        let other = {
            let (path, stop, written) = (path.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut o = Store::open(&path, Synchronous::Normal).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let i = written.fetch_add(1, Ordering::Relaxed) + 1;
                    o.insert_readings(&[Reading::new("m", Quantity::ActivePower, 1.0, T0 + i)])
                        .unwrap();
                }
            })
        };
        // Roll-ups interleaved with 200 of its commits (or for 20 s at most).
        let mut failures = Vec::new();
        let (started, mut rollups) = (std::time::Instant::now(), 0);
        while written.load(Ordering::Relaxed) < 200 && started.elapsed().as_secs() < 20 {
            if let Err(e) = s.roll_up(i64::MAX) {
                failures.push(e.to_string());
            }
            rollups += 1;
        }
        stop.store(true, Ordering::Relaxed);
        other.join().unwrap();
        assert!(
            written.load(Ordering::Relaxed) >= 200,
            "the other writer was starved"
        );
        assert!(
            failures.is_empty(),
            "{} of {rollups} roll-ups failed: {:?}",
            failures.len(),
            failures.first()
        );
    }

    fn samples(s: &Store, from: i64, to: i64) -> Vec<(i64, f64, bool)> {
        let mut v = Vec::new();
        s.series_history("m", Quantity::EnergyImport, from, to, true, |r| {
            if let Some(x) = r.value.filter(|_| r.quality.code() != 1) {
                v.push((r.ts_ms, x, r.quality.code() == 2));
            }
            true
        })
        .unwrap();
        v
    }

    /// The readings bracketing each interval boundary: last before, first at or after.
    fn brackets(v: &[(i64, f64, bool)]) -> Vec<((i64, f64), (i64, f64))> {
        (1..8)
            .filter_map(|k| {
                let b = T0 + k * INTERVAL_MS;
                let before = v.iter().rev().find(|x| x.0 < b)?;
                let after = v.iter().find(|x| x.0 >= b)?;
                Some(((before.0, before.1), (after.0, after.1)))
            })
            .collect()
    }

    /// The 15-minute intervals accounting computes from what `series_history` returns.
    fn intervals(s: &Store) -> Vec<SlotAcc> {
        let v: Vec<_> = samples(s, i64::MIN, i64::MAX)
            .into_iter()
            .map(
                |(ts_ms, value, estimated)| crate::accounting::counters::Sample {
                    ts_ms,
                    value,
                    estimated,
                },
            )
            .collect();
        let settings = CounterSettings {
            max: None,
            rated_per_hour: None,
            gap_after_ms: INTERVAL_MS,
        };
        let (slots, _) =
            crate::accounting::ledger::run_series(&v, &[], &settings, T0, T0 + 2 * 3_600_000);
        slots.iter(0..slots.len()).collect()
    }

    #[test]
    fn old_periods_read_from_the_tier_that_holds_them_with_the_same_intervals() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        fill(&mut s);
        let raw = samples(&s, i64::MIN, i64::MAX);
        let raw_intervals = intervals(&s);
        let raw_minutes = s
            .history(
                "m",
                Quantity::ActivePower,
                T0,
                T0 + 7_200_000 - 1,
                Step::Every(MINUTE_MS),
            )
            .unwrap();
        assert_eq!(raw_minutes.points.len(), 120);
        assert_eq!(s.raw_dropped_through().unwrap(), None);

        // Raw readings past the retention go (everything delivered: no outputs).
        let deleted = s.prune(T0 + 7_200_000 + 10, &[]).unwrap();
        assert_eq!(deleted as u64, 2 * (7200 - 40));
        assert_eq!(s.count_readings().unwrap(), 0);
        assert!(s.raw_dropped_through().unwrap().is_some());

        // Accounting's view: the same readings around every boundary, the same intervals.
        let tier = samples(&s, i64::MIN, i64::MAX);
        assert!(
            tier.len() < raw.len() / 20,
            "{} of {}",
            tier.len(),
            raw.len()
        );
        assert_eq!(brackets(&tier), brackets(&raw));
        let tier_intervals = intervals(&s);
        assert_eq!(tier_intervals.len(), raw_intervals.len());
        // Same amounts and coverage; time around an estimated reading may count as estimated
        // for its whole minute (never the other way round).
        for (a, b) in tier_intervals.iter().zip(&raw_intervals) {
            assert!((a.amount - b.amount).abs() < 1e-9, "{a:?} vs {b:?}");
            assert_eq!(
                a.measured_ms + a.estimated_ms,
                b.measured_ms + b.estimated_ms
            );
            assert!(a.measured_ms <= b.measured_ms, "{a:?} vs {b:?}");
        }
        assert!(tier_intervals.iter().any(|a| a.estimated_ms > 0));
        // Newest first works too.
        let mut last = None;
        s.series_history(
            "m",
            Quantity::EnergyImport,
            i64::MIN,
            i64::MAX,
            false,
            |r| {
                last = Some(r.ts_ms);
                false
            },
        )
        .unwrap();
        assert_eq!(last, Some(raw.last().unwrap().0));

        // Aggregates per minute are what they were from the raw readings.
        let minutes = s
            .history(
                "m",
                Quantity::ActivePower,
                T0,
                T0 + 7_200_000 - 1,
                Step::Every(MINUTE_MS),
            )
            .unwrap();
        assert_eq!(minutes.points, raw_minutes.points);
        let quarter = s
            .history(
                "m",
                Quantity::ActivePower,
                T0,
                T0 + 7_200_000 - 1,
                Step::Every(INTERVAL_MS),
            )
            .unwrap();
        assert_eq!(quarter.points.len(), 8);
        // Auto: the raw tier no longer holds the range, so minutes.
        let auto = s
            .history("m", Quantity::ActivePower, T0, T0 + 600_000, Step::Auto)
            .unwrap();
        assert_eq!(auto.kind, "aggregate");
        assert!(s
            .history("m", Quantity::ActivePower, T0, T0 + 600_000, Step::Raw)
            .unwrap()
            .points
            .is_empty());

        // A late reading older than the cut is there at once.
        s.insert_readings(&[Reading::new("m", Quantity::ActivePower, 99.0, T0 + 5)])
            .unwrap();
        let m0 = s
            .history(
                "m",
                Quantity::ActivePower,
                T0,
                T0 + MINUTE_MS - 1,
                Step::Every(MINUTE_MS),
            )
            .unwrap();
        let HistoryPoint::Aggregate { count, max, .. } = m0.points[0] else {
            panic!("{m0:?}")
        };
        // 59 usable readings of the minute (one was bad) and the late one.
        assert_eq!((count, max), (60, Some(99.0)));

        // Past minute_retention only the counter's interval boundaries stay: still the same
        // intervals.
        let pruned = s.prune_minutes(T0 + 3 * 3_600_000).unwrap();
        assert!(pruned > 200, "{pruned}");
        let kept = samples(&s, i64::MIN, i64::MAX);
        assert!(kept.len() <= 8 * 2 * 2, "{}", kept.len());
        assert_eq!(brackets(&kept), brackets(&raw));
        for (a, b) in intervals(&s).iter().zip(&raw_intervals) {
            assert!((a.amount - b.amount).abs() < 1e-9, "{a:?} vs {b:?}");
            assert_eq!(
                a.measured_ms + a.estimated_ms,
                b.measured_ms + b.estimated_ms
            );
        }
        assert!(s
            .history(
                "m",
                Quantity::ActivePower,
                T0 + MINUTE_MS,
                T0 + 7_200_000,
                Step::Every(MINUTE_MS)
            )
            .unwrap()
            .points
            .is_empty());
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    fn minute_rows(s: &Store) -> Vec<(i64, i64)> {
        let mut st = s
            .conn
            .prepare("SELECT series_id, minute FROM minute_aggregates ORDER BY series_id, minute")
            .unwrap();
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    #[test]
    fn minutes_rolled_up_late_behind_the_prune_point_are_pruned_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        fill(&mut s);
        s.prune(T0 + 7_200_000 + 10, &[]).unwrap();
        s.prune_minutes(T0 + 3 * 3_600_000).unwrap();
        let kept = minute_rows(&s);
        let raw_brackets = brackets(&samples(&s, i64::MIN, i64::MAX));
        // Late readings of minutes the prune has passed: a power value, and a counter reading
        // inside an interval (not at its edges), rolled up and their raw readings dropped.
        let e = samples(&s, T0 + INTERVAL_MS, T0 + 2 * INTERVAL_MS)[0].1;
        s.insert_readings(&[
            Reading::new("m", Quantity::ActivePower, 99.0, T0 + 20 * MINUTE_MS + 5),
            Reading::new(
                "m",
                Quantity::EnergyImport,
                e + 0.001,
                T0 + 22 * MINUTE_MS + 5,
            ),
        ])
        .unwrap();
        s.prune(T0 + 7_200_000 + 10, &[]).unwrap();
        assert_eq!(s.count_readings().unwrap(), 0);
        assert_eq!(minute_rows(&s).len(), kept.len() + 2);
        // The next prune (even with the same cut) deletes them; the boundaries stay.
        assert_eq!(s.prune_minutes(T0 + 3 * 3_600_000).unwrap(), 2);
        assert_eq!(minute_rows(&s), kept);
        assert_eq!(brackets(&samples(&s, i64::MIN, i64::MAX)), raw_brackets);
        // Nothing more to do afterwards.
        assert_eq!(s.prune_minutes(T0 + 3 * 3_600_000).unwrap(), 0);
        // A late counter reading in an interval that had none is both its first and its
        // last: it stays.
        s.insert_readings(&[Reading::new(
            "m",
            Quantity::EnergyImport,
            999.0,
            T0 - 10 * MINUTE_MS,
        )])
        .unwrap();
        s.prune(T0 + 7_200_000 + 10, &[]).unwrap();
        assert_eq!(s.prune_minutes(T0 + 3 * 3_600_000).unwrap(), 0);
        assert_eq!(minute_rows(&s).len(), kept.len() + 1);
        assert_eq!(
            samples(&s, i64::MIN, T0 - 1),
            vec![(T0 - 10 * MINUTE_MS, 999.0, false)]
        );
    }

    /// Adds minute rows (60 usable readings each) for every series over `[from, from + n)`.
    fn add_minutes(s: &Store, from: i64, n: i64) {
        s.conn
            .execute(
                "WITH RECURSIVE m(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM m WHERE x < ?1 + ?2 - 1)
                 INSERT OR REPLACE INTO minute_aggregates
                 SELECT s.id, m.x, 60, 0, 0, 1.0, 2.0, 90.0, m.x * 60000, 1.0, m.x * 60000 + 59000, 2.0, 0
                 FROM series s, m",
                params![from, n],
            )
            .unwrap();
    }

    #[test]
    fn a_minute_prune_visits_the_rows_of_its_range_not_the_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        // Twelve series, six of them counters, with two days of minute rows each.
        let mut rs = Vec::new();
        for d in 0..6 {
            let dev = format!("d{d}");
            rs.push(Reading::new(&dev, Quantity::ActivePower, 1.0, T0));
            rs.push(Reading::new(&dev, Quantity::EnergyImport, 1.0, T0));
        }
        s.insert_readings(&rs).unwrap();
        let m0 = minute_of(T0);
        add_minutes(&s, m0, 2 * 1440);
        let table = minute_rows(&s).len();
        assert_eq!(table, 12 * 2 * 1440);
        s.prune_minutes(T0 + INTERVAL_MS).unwrap();
        // One interval: 15 rows of each series, the counters' first and last kept.
        let prune = |s: &Store, k: i64| {
            let before = s.minute_prune_steps();
            let n = s.prune_minutes(T0 + k * INTERVAL_MS).unwrap();
            assert_eq!(n, 6 * 15 + 6 * 13);
            s.minute_prune_steps() - before
        };
        let steps = prune(&s, 2);
        // A handful of steps per row visited or deleted, not a pass over the 34 560 rows.
        let rows = 12 * 15;
        assert!(steps < 40 * rows, "{steps} steps for {rows} rows");
        // Three times the rows: the next interval costs the same.
        add_minutes(&s, m0 + 2 * 1440, 4 * 1440);
        assert_eq!(minute_rows(&s).len(), 3 * table - 2 * (6 * 15 + 6 * 13));
        let more = prune(&s, 3);
        assert!(more <= steps + steps / 10, "{more} steps after {steps}");
        // Nothing to prune: no row is visited.
        let before = s.minute_prune_steps();
        assert_eq!(s.prune_minutes(T0 + 3 * INTERVAL_MS).unwrap(), 0);
        assert_eq!(s.minute_prune_steps(), before);
        // The disk budget's drop of the oldest minutes (one interval's worth) costs about as much.
        let before = s.minute_prune_steps();
        assert_eq!(
            s.drop_oldest_minutes(rows, i64::MAX).unwrap(),
            6 * 15 + 6 * 13
        );
        let dropped = s.minute_prune_steps() - before;
        assert!(
            dropped < 2 * steps,
            "{dropped} steps to drop, {steps} to prune"
        );
    }

    #[test]
    fn aggregates_merge_exactly_in_any_split() {
        let q = Quality::Good;
        let mut all = Agg::default();
        let (mut a, mut b) = (Agg::default(), Agg::default());
        for (k, v) in [3.0, 1.0, 7.0, 2.0].iter().enumerate() {
            all.add(k as i64, Some(*v), &q);
            if k < 2 {
                a.add(k as i64, Some(*v), &q)
            } else {
                b.add(k as i64, Some(*v), &q)
            }
        }
        all.add(9, None, &Quality::Bad("x".into()));
        b.add(9, None, &Quality::Bad("x".into()));
        let mut m = b;
        m.merge(&a);
        assert_eq!(m, all);
        assert_eq!(all.mean(), Some(3.25));
        assert_eq!(all.first.map(|e| e.value), Some(3.0));
        assert_eq!(all.last.map(|e| e.value), Some(2.0));
        assert_eq!((all.count, all.bad), (4, 1));
    }

    #[test]
    fn aggregates_over_rolled_up_minutes_decode_only_the_cut_minutes_and_the_newest_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        fill(&mut s);
        let (from, to) = (T0 + 90_500, T0 + 5_000_250);
        let read = |s: &Store| {
            s.history("m", Quantity::ActivePower, from, to, Step::Every(300_000))
                .unwrap()
        };
        let before = read(&s);
        assert!(before.points.len() > 10);
        s.roll_up(i64::MAX).unwrap();
        // Readings that come after the roll-up are read from their batches.
        for i in 0..5 {
            let ts = T0 + 4_000_000 + i;
            s.insert_readings(&[Reading::new("m", Quantity::ActivePower, 1e6, ts)])
                .unwrap();
        }
        let decoded = s.batches_decoded();
        let after = read(&s);
        // The two minutes the range's ends cut (one batch per second) and the five new batches,
        // not the 4 900 batches of the range.
        assert!(
            s.batches_decoded() - decoded <= 2 * 61 + 5,
            "{}",
            s.batches_decoded() - decoded
        );
        let max = |h: &History| {
            h.points
                .iter()
                .filter_map(|p| match p {
                    HistoryPoint::Aggregate { max, .. } => *max,
                    _ => None,
                })
                .fold(f64::MIN, f64::max)
        };
        assert_eq!(max(&after), 1e6);
        assert_eq!(after.points.len(), before.points.len());
        let counts = |h: &History| -> u64 {
            h.points
                .iter()
                .map(|p| match p {
                    HistoryPoint::Aggregate { count, bad, .. } => count + bad,
                    _ => 0,
                })
                .sum()
        };
        assert_eq!(counts(&after), counts(&before) + 5);
    }
}
