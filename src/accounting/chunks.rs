//! Long periods from calendar chunks: the accounts of a month, quarter or year are sums over
//! the counters' intervals, so they can be kept as aggregates of calendar chunks (a month, a
//! day, an hour) instead of every 15-minute interval of every counter at once.
//!
//! A [`Chunk`] holds, per counter, the total and the interval counts of its range, plus the
//! purchased electricity per interval (maximum demand, time of use) and the counter events.
//! [`period_data`] covers a range with chunks: whole months, or with a [`ChunkCache`] (the
//! accounting service of `run`), the month in progress as its days and today as its hours.
//! Complete chunks are kept in the cache and a complete day or month is merged from its
//! parts, so a cycle of the service reads from the store only the hour in progress and what
//! late readings changed ([`ChunkCache::invalidate_from`]); the year is a sum of twelve
//! chunks. Without a cache (`energy-gateway report`) each month is read once and dropped
//! before the next: memory follows a month, not the period.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use chrono_tz::Tz;

use super::calendar::{bucket_start, local_midnight_ms, local_time, month_of, Resolution, SLOT_MS};
use super::counters::{CounterEvent, Sample};
use super::ledger::{
    bucket_quality, buckets, load_range_after, Plan, RangeData, SeriesData, SlotCounts,
};
use super::store::{AccountingStore, IntervalRow};
use crate::readings::TimestampMs;

const HOUR_MS: i64 = 3_600_000;

/// Aggregates of every counter of the plan over `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    /// Per series of [`Plan::series`].
    totals: Vec<f64>,
    counts: Vec<SlotCounts>,
    /// Purchased electricity per 15-minute interval.
    purchased: Vec<(TimestampMs, f64, bool)>,
    events: Vec<Vec<CounterEvent>>,
    /// Per series, the last usable samples before `to_ms`: where the read of the next chunk
    /// starts, so that it need not look back for them.
    tail: Vec<Vec<Sample>>,
}

impl Chunk {
    /// The aggregates of intervals read from the store, with the samples before their end.
    pub fn of(plan: &Plan, data: &RangeData, tail: Vec<Vec<Sample>>) -> Chunk {
        let (from, to) = (data.from_ms, data.to_ms);
        let n = plan.series.len();
        Chunk {
            from_ms: from,
            to_ms: to,
            totals: (0..n).map(|i| data.total(i, from, to)).collect(),
            counts: (0..n).map(|i| data.counts(i, from, to)).collect(),
            purchased: data.purchased(plan, from, to),
            events: data.events.clone(),
            tail,
        }
    }

    /// Adjacent chunks, in order, as one.
    fn merge(parts: &[Arc<Chunk>]) -> Option<Chunk> {
        let first = parts.first()?;
        let mut c = Chunk {
            from_ms: first.from_ms,
            to_ms: first.to_ms,
            totals: vec![0.0; first.totals.len()],
            counts: vec![SlotCounts::default(); first.counts.len()],
            purchased: Vec::new(),
            events: vec![Vec::new(); first.events.len()],
            tail: Vec::new(),
        };
        for p in parts {
            c.to_ms = p.to_ms;
            for (a, b) in c.totals.iter_mut().zip(&p.totals) {
                *a += b;
            }
            for (a, b) in c.counts.iter_mut().zip(&p.counts) {
                a.add(*b);
            }
            c.purchased.extend_from_slice(&p.purchased);
            for (a, b) in c.events.iter_mut().zip(&p.events) {
                a.extend_from_slice(b);
            }
        }
        c.tail = parts.last().map(|p| p.tail.clone()).unwrap_or_default();
        Some(c)
    }

    fn inside(&self, from: TimestampMs, to: TimestampMs) -> bool {
        self.from_ms >= from && self.to_ms <= to
    }
}

/// A range covered by chunks whose bounds are those of the months inside it (and of the range).
#[derive(Debug, Clone)]
pub struct PeriodData {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    chunks: Vec<Arc<Chunk>>,
}

impl PeriodData {
    fn within(&self, from: TimestampMs, to: TimestampMs) -> impl Iterator<Item = &Chunk> {
        self.chunks
            .iter()
            .map(|c| c.as_ref())
            .filter(move |c| c.inside(from, to))
    }
}

impl SeriesData for PeriodData {
    fn total(&self, i: usize, from: TimestampMs, to: TimestampMs) -> f64 {
        self.within(from, to).fold(0.0, |a, c| a + c.totals[i])
    }

    fn counts(&self, i: usize, from: TimestampMs, to: TimestampMs) -> SlotCounts {
        let mut s = SlotCounts::default();
        for c in self.within(from, to) {
            s.add(c.counts[i]);
        }
        s
    }

    fn purchased(
        &self,
        _plan: &Plan,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Vec<(TimestampMs, f64, bool)> {
        self.within(from, to)
            .flat_map(|c| c.purchased.iter().copied())
            .collect()
    }

    fn events(&self, i: usize) -> Vec<CounterEvent> {
        self.chunks
            .iter()
            .flat_map(|c| c.events[i].iter().cloned())
            .collect()
    }

    fn any_covered(&self) -> bool {
        self.chunks
            .iter()
            .any(|c| c.counts.iter().any(|k| k.covered > 0))
    }
}

/// Complete chunks kept between the cycles of the accounting service.
#[derive(Debug)]
pub struct ChunkCache {
    chunks: BTreeMap<(TimestampMs, TimestampMs), Arc<Chunk>>,
    /// Chunks that end after this are not kept: readings may still come for them.
    settled_to: TimestampMs,
    /// Chunks read from the store and chunks merged, since the cache was made (for tests and
    /// the service's log).
    pub read: u64,
    pub merged: u64,
}

impl Default for ChunkCache {
    fn default() -> Self {
        ChunkCache {
            chunks: BTreeMap::new(),
            settled_to: TimestampMs::MIN,
            read: 0,
            merged: 0,
        }
    }
}

impl ChunkCache {
    /// Chunks that end by `ts_ms` may be kept: readings dated before it that arrive from now on
    /// are late readings, for which the owner calls [`ChunkCache::invalidate_from`].
    pub fn settle(&mut self, ts_ms: TimestampMs) {
        self.settled_to = ts_ms;
    }

    /// Drops every chunk.
    pub fn clear(&mut self) {
        self.chunks.clear();
    }

    /// Drops every chunk that ends after `ts_ms`: readings or a meter replacement at `ts_ms`
    /// arrived after those chunks were made.
    pub fn invalidate_from(&mut self, ts_ms: TimestampMs) {
        self.chunks.retain(|(_, to), _| *to <= ts_ms);
    }

    /// Number of chunks held.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// How a range is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    Month,
    Day,
    Hour,
    /// A 15-minute interval.
    Quarter,
}

/// The next local midnight after `ts_ms`.
fn next_midnight(tz: Tz, ts_ms: TimestampMs) -> TimestampMs {
    let d = local_time(tz, ts_ms).date();
    d.succ_opt()
        .map(|n| local_midnight_ms(tz, n))
        .unwrap_or(ts_ms + 24 * HOUR_MS)
}

/// The end of the 15-minute interval holding `ts_ms`.
fn quarter_end(ts_ms: TimestampMs) -> TimestampMs {
    (ts_ms.div_euclid(SLOT_MS) + 1) * SLOT_MS
}

/// The chunks of `[from, to)`: whole months; with `fine`, the month that `to` cuts as its days,
/// the day that `to` cuts as its hours and the hour that `to` cuts as its 15-minute intervals.
/// `(start, end, natural end, grain)`.
fn cut(tz: Tz, from: TimestampMs, to: TimestampMs, fine: bool) -> Vec<(i64, i64, i64, Grain)> {
    let mut out = Vec::new();
    if to <= from {
        return out;
    }
    let mut m = month_of(tz, from);
    loop {
        let (ms, me) = m.bounds(tz);
        if ms >= to {
            break;
        }
        let a = ms.max(from);
        if me <= to || !fine {
            out.push((a, me.min(to), me, Grain::Month));
        } else {
            let mut d = a;
            while d < to {
                let de = next_midnight(tz, d).min(me);
                if de <= to {
                    out.push((d, de, de, Grain::Day));
                } else {
                    let mut h = d;
                    while h < to {
                        let he = (bucket_start(tz, Resolution::Hour, h) + HOUR_MS).min(de);
                        let he = if he <= h { (h + HOUR_MS).min(de) } else { he };
                        if he <= to {
                            out.push((h, he, he, Grain::Hour));
                        } else {
                            let mut q = h;
                            while q < to {
                                let qe = quarter_end(q).min(he);
                                out.push((q, qe.min(to), qe, Grain::Quarter));
                                q = qe;
                            }
                        }
                        h = he;
                    }
                }
                d = de;
            }
        }
        m = m.next();
    }
    out
}

/// The parts a complete chunk is merged from in the cache: a month's days, a day's hours, an
/// hour's 15-minute intervals.
fn parts(tz: Tz, from: TimestampMs, to: TimestampMs, grain: Grain) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let e = match grain {
            Grain::Month => next_midnight(tz, t),
            Grain::Day => {
                let e = bucket_start(tz, Resolution::Hour, t) + HOUR_MS;
                if e <= t {
                    t + HOUR_MS
                } else {
                    e
                }
            }
            Grain::Hour => quarter_end(t),
            Grain::Quarter => to,
        }
        .min(to);
        out.push((t, e));
        t = e;
    }
    out
}

/// Interval rows of counters read from the store: 15 minutes, hours when the range is made of
/// whole hours, and days when it is made of whole days.
fn interval_rows<'a>(plan: &'a Plan, data: &RangeData, grain: Grain) -> Vec<IntervalRow<'a>> {
    let (from, to) = (data.from_ms, data.to_ms);
    let mut rows = Vec::new();
    for (s, sl) in plan.series.iter().zip(&data.slots) {
        let r = sl.index_range(from, to);
        let t = sl.touched();
        for i in r.start.max(t.start)..r.end.min(t.end) {
            let a = sl.get(i);
            if !a.is_covered() {
                continue;
            }
            rows.push(IntervalRow {
                device: &s.device,
                quantity: s.quantity,
                carrier: &s.carrier,
                unit: &s.unit,
                resolution: "15m",
                start_ms: sl.slot_start(i),
                value: a.amount,
                quality: bucket_quality(std::slice::from_ref(&a)),
            });
        }
        let res: &[(Resolution, &'static str)] = match grain {
            Grain::Month | Grain::Day => &[(Resolution::Hour, "1h"), (Resolution::Day, "1d")],
            Grain::Hour => &[(Resolution::Hour, "1h")],
            Grain::Quarter => &[],
        };
        for (res, name) in res {
            for (start, value, quality) in buckets(plan.tz, sl, *res, from, to) {
                rows.push(IntervalRow {
                    device: &s.device,
                    quantity: s.quantity,
                    carrier: &s.carrier,
                    unit: &s.unit,
                    resolution: name,
                    start_ms: start,
                    value,
                    quality,
                });
            }
        }
    }
    rows
}

/// Rows of a day's or an hour's aggregate (merged from its parts, or so far), at `resolution`
/// ("1d", "1h") starting at `start`.
fn bucket_rows<'a>(
    plan: &'a Plan,
    day: &Chunk,
    resolution: &'static str,
    start: TimestampMs,
) -> Vec<IntervalRow<'a>> {
    plan.series
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let quality = day.counts[i].bucket_quality()?;
            Some(IntervalRow {
                device: &s.device,
                quantity: s.quantity,
                carrier: &s.carrier,
                unit: &s.unit,
                resolution,
                start_ms: start,
                value: day.totals[i],
                quality,
            })
        })
        .collect()
}

/// One chunk: from the cache, merged from its parts when the cache holds some of them (the
/// others read), or read from the store. Interval rows of what is read (and the day rows of a
/// day merged from hours) are written with `write`.
fn chunk(
    plan: &Plan,
    store: &mut AccountingStore,
    (a, b, end, grain): (i64, i64, i64, Grain),
    cache: Option<&mut ChunkCache>,
    write: bool,
    before: Option<&Chunk>,
) -> Result<Arc<Chunk>> {
    // The samples before `a`, from the chunk that ends there.
    let before = before.filter(|p| p.to_ms == a);
    let complete = b == end;
    if let Some(c) = cache {
        if complete && b <= c.settled_to {
            if let Some(found) = c.chunks.get(&(a, b)) {
                return Ok(found.clone());
            }
            let sub = match grain {
                Grain::Month => Some(Grain::Day),
                Grain::Day => Some(Grain::Hour),
                Grain::Hour => Some(Grain::Quarter),
                Grain::Quarter => None,
            };
            let keys = sub.map(|_| parts(plan.tz, a, b, grain)).unwrap_or_default();
            if let Some(g) = sub.filter(|_| keys.iter().any(|k| c.chunks.contains_key(k))) {
                let mut held: Vec<Arc<Chunk>> = Vec::with_capacity(keys.len());
                for (x, y) in &keys {
                    let prev = held.last().map(|p| p.as_ref()).or(before);
                    held.push(chunk(plan, store, (*x, *y, *y, g), Some(c), write, prev)?);
                }
                if let Some(m) = Chunk::merge(&held) {
                    let m = Arc::new(m);
                    if write && grain == Grain::Day {
                        store.write_outputs(&bucket_rows(plan, &m, "1d", m.from_ms), &[], &[])?;
                    }
                    if write && grain == Grain::Hour {
                        store.write_outputs(&bucket_rows(plan, &m, "1h", m.from_ms), &[], &[])?;
                    }
                    for k in &keys {
                        c.chunks.remove(k);
                    }
                    c.chunks.insert((a, b), m.clone());
                    c.merged += 1;
                    return Ok(m);
                }
            }
        }
        let read = read_chunk(plan, store, a, b, grain, write, before)?;
        c.read += 1;
        if complete && b <= c.settled_to {
            c.chunks.insert((a, b), read.clone());
        }
        return Ok(read);
    }
    read_chunk(plan, store, a, b, grain, write, before)
}

fn read_chunk(
    plan: &Plan,
    store: &mut AccountingStore,
    a: TimestampMs,
    b: TimestampMs,
    grain: Grain,
    write: bool,
    before: Option<&Chunk>,
) -> Result<Arc<Chunk>> {
    let (data, tail) = load_range_after(plan, store, a, b, before.map(|c| c.tail.as_slice()))?;
    if write {
        store.write_outputs(&interval_rows(plan, &data, grain), &[], &[])?;
    }
    Ok(Arc::new(Chunk::of(plan, &data, tail)))
}

/// The counters of `[from, to)` as chunks. With `write`, the intervals of every chunk read from
/// the store (and of each day assembled from hours) are written to it, one transaction each.
pub fn period_data(
    plan: &Plan,
    store: &mut AccountingStore,
    from: TimestampMs,
    to: TimestampMs,
    mut cache: Option<&mut ChunkCache>,
    write: bool,
) -> Result<PeriodData> {
    let tz = plan.tz;
    let mut chunks: Vec<Arc<Chunk>> = Vec::new();
    // Hours and 15-minute intervals of the day in progress, to write its day rows; the
    // intervals of the hour in progress, to write its hour rows.
    let mut hours: Vec<Arc<Chunk>> = Vec::new();
    let mut quarters: Vec<Arc<Chunk>> = Vec::new();
    for part in cut(tz, from, to, cache.is_some()) {
        let prev = chunks.last().map(|p| p.as_ref());
        let c = chunk(plan, store, part, cache.as_deref_mut(), write, prev)?;
        match part.3 {
            Grain::Hour => hours.push(c.clone()),
            Grain::Quarter => {
                hours.push(c.clone());
                quarters.push(c.clone());
            }
            Grain::Month | Grain::Day => {}
        }
        chunks.push(c);
    }
    if write {
        if let Some(hour) = Chunk::merge(&quarters) {
            let start = bucket_start(tz, Resolution::Hour, hour.from_ms);
            store.write_outputs(&bucket_rows(plan, &hour, "1h", start), &[], &[])?;
        }
        if let Some(day) = Chunk::merge(&hours) {
            let start = bucket_start(tz, Resolution::Day, day.from_ms);
            store.write_outputs(&bucket_rows(plan, &day, "1d", start), &[], &[])?;
        }
    }
    Ok(PeriodData {
        from_ms: from,
        to_ms: to,
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::ledger::quality;
    use crate::readings::{Quantity, Reading};
    use crate::storage::config::Synchronous;
    use crate::storage::Store;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    /// Two meters with one-minute readings from 2026-11-01 to 2026-11-04 10:40 (site time),
    /// with a two-hour gap on the 2nd.
    fn site() -> (tempfile::TempDir, Plan, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
[site]
id = "chunks"
timezone = "Asia/Shanghai"
main_meters = ["main"]
[storage]
data_dir = "{}"
[[devices]]
id = "main"
carrier = "electricity"
[devices.modbus]
address = "127.0.0.1:1502"
[[devices.points]]
quantity = "energy_import"
register = 0
[[devices]]
id = "press"
carrier = "electricity"
parent = "main"
[devices.modbus]
address = "127.0.0.1:1502"
[[devices.points]]
quantity = "energy_import"
register = 0
"#,
            dir.path().display()
        );
        let cfg = crate::config::load_str(&toml).unwrap().accounting_context();
        let mut store = Store::open(&cfg.store_path(), Synchronous::Normal).unwrap();
        let (from, to) = (
            ms("2026-10-31T23:50:00+08:00"),
            ms("2026-11-04T10:40:00+08:00"),
        );
        let gap = (
            ms("2026-11-02T08:00:00+08:00"),
            ms("2026-11-02T10:00:00+08:00"),
        );
        // Both meters every minute, committed ten minutes at a time.
        let mut rs = Vec::new();
        let mut t = from;
        let mut k = 0.0;
        while t <= to {
            for (device, per_min) in [("main", 2.5), ("press", 1.0)] {
                if t < gap.0 || t >= gap.1 {
                    rs.push(Reading::new(
                        device,
                        Quantity::EnergyImport,
                        100.0 + per_min * k,
                        t,
                    ));
                }
            }
            k += 1.0;
            t += 60_000;
            if (t - from) % 600_000 == 0 {
                store.insert_readings(&std::mem::take(&mut rs)).unwrap();
            }
        }
        store.insert_readings(&rs).unwrap();
        (dir, Plan::build(&cfg).unwrap(), cfg.store_path())
    }

    fn assert_same(plan: &Plan, a: &PeriodData, b: &PeriodData, from: i64, to: i64) {
        for i in 0..plan.series.len() {
            assert!((a.total(i, from, to) - b.total(i, from, to)).abs() < 1e-9);
            assert_eq!(a.counts(i, from, to), b.counts(i, from, to));
            assert_eq!(a.events(i), b.events(i));
        }
        assert_eq!(quality(plan, a, from, to), quality(plan, b, from, to));
        assert_eq!(a.purchased(plan, from, to), b.purchased(plan, from, to));
    }

    #[test]
    fn the_service_reads_only_the_hour_in_progress_and_gets_the_same_accounts() {
        let (_dir, plan, path) = site();
        let mut store = AccountingStore::open(&path).unwrap();
        let month = ms("2026-11-01T00:00:00+08:00");
        // In progress: data to 10:30 of the 4th (the hour in progress is 10:00–10:30).
        let to = ms("2026-11-04T10:30:00+08:00");
        let whole = period_data(&plan, &mut store, month, to, None, false).unwrap();
        let main = plan.series_index("main", Quantity::EnergyImport).unwrap();
        let t = whole.total(main, month, to);
        assert!((t - 2.5 * 60.0 * (3.0 * 24.0 + 10.5)).abs() < 1e-6, "{t}");

        let mut cache = ChunkCache::default();
        cache.settle(to);
        let first = period_data(&plan, &mut store, month, to, Some(&mut cache), false).unwrap();
        assert_same(&plan, &whole, &first, month, to);
        // Three days, ten hours and the two 15-minute intervals of the hour in progress, read
        // one by one and held.
        assert_eq!(cache.read, 3 + 10 + 2);
        assert_eq!(cache.len(), 15);

        // The next cycle, 15 minutes on: only the new 15-minute interval is read, starting from
        // the samples the one before left: the store decodes the batches of 10:30–10:40 (two
        // commits of ten minutes) and none before.
        let to2 = to + 15 * 60_000;
        cache.settle(to2);
        let decoded = store.batches_decoded();
        let second = period_data(&plan, &mut store, month, to2, Some(&mut cache), false).unwrap();
        assert_eq!(cache.read, 16);
        assert_eq!(store.batches_decoded() - decoded, 2);
        let whole2 = period_data(&plan, &mut store, month, to2, None, false).unwrap();
        assert_same(&plan, &whole2, &second, month, to2);

        // At midnight the day is merged from its hours: nothing read but the new hour.
        let read = cache.read;
        let midnight = ms("2026-11-05T00:00:00+08:00");
        cache.settle(midnight);
        let day = period_data(&plan, &mut store, month, midnight, Some(&mut cache), false).unwrap();
        assert_eq!(cache.read - read, 24 - 10);
        assert!(cache.merged >= 1);
        let whole3 = period_data(&plan, &mut store, month, midnight, None, false).unwrap();
        assert_same(&plan, &whole3, &day, month, midnight);

        // Late readings on the 2nd: the month's chunks are read again, with the same result as
        // reading the month whole.
        cache.invalidate_from(month);
        assert!(cache.is_empty());
        let again =
            period_data(&plan, &mut store, month, midnight, Some(&mut cache), false).unwrap();
        assert_same(&plan, &whole3, &again, month, midnight);
    }

    #[test]
    fn the_hour_in_progress_is_read_by_quarters_and_its_rows_are_whole() {
        let (_dir, plan, path) = site();
        let mut store = AccountingStore::open(&path).unwrap();
        let month = ms("2026-11-01T00:00:00+08:00");
        let hour = ms("2026-11-04T09:00:00+08:00");
        let mut cache = ChunkCache::default();
        let row = |store: &AccountingStore, res: &str, start: i64| {
            store
                .interval("main", Quantity::EnergyImport, res, start)
                .unwrap()
                .map(|(v, q)| ((v * 1e6).round() / 1e6, q))
        };
        // 09:00–09:30: the hour row so far holds its two intervals.
        let to = hour + 30 * 60_000;
        cache.settle(to);
        period_data(&plan, &mut store, month, to, Some(&mut cache), true).unwrap();
        assert_eq!(row(&store, "1h", hour), Some((75.0, "measured".into())));
        assert_eq!(
            row(&store, "15m", hour + 15 * 60_000),
            Some((37.5, "measured".into()))
        );
        // At 10:00 the hour is merged from its four intervals (two held, two read) and its row
        // is the whole hour; the day so far has ten hours.
        let to = hour + 60 * 60_000;
        cache.settle(to);
        let read = cache.read;
        period_data(&plan, &mut store, month, to, Some(&mut cache), true).unwrap();
        assert_eq!(cache.read - read, 2);
        assert_eq!(row(&store, "1h", hour), Some((150.0, "measured".into())));
        let day = ms("2026-11-04T00:00:00+08:00");
        assert_eq!(row(&store, "1d", day), Some((1500.0, "measured".into())));
    }
}
