//! Several series read in one pass. A batch holds every series of its commit, so reading one
//! series over a range decodes every reading of that range; reading the counters of a site one
//! by one costs the number of counters times that. [`Store::series_histories`] decodes each
//! batch of the range once and hands every picked series its readings in time order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;

use super::batches::{ByTime, SeriesReading};
use super::{ctx, Result, Store};
use crate::readings::{Quantity, TimestampMs};

/// The series of a scan: store series id → the caller's index, and which still want readings.
pub(super) struct Pick {
    /// Caller's index by series id (`usize::MAX`: not picked).
    by_sid: Vec<usize>,
    sids: Vec<Option<i64>>,
    active: Vec<bool>,
    left: usize,
}

impl Pick {
    pub(super) fn new(sids: Vec<Option<i64>>) -> Pick {
        let max = sids.iter().flatten().copied().max().unwrap_or(-1);
        let mut by_sid = vec![usize::MAX; usize::try_from(max + 1).unwrap_or(0)];
        let mut active = vec![false; sids.len()];
        let mut left = 0;
        for (i, s) in sids.iter().enumerate() {
            if let Some(slot) = s
                .and_then(|s| usize::try_from(s).ok())
                .and_then(|s| by_sid.get_mut(s))
            {
                *slot = i;
                active[i] = true;
                left += 1;
            }
        }
        Pick {
            by_sid,
            sids,
            active,
            left,
        }
    }

    /// The caller's index of a series that still wants readings.
    fn wanted(&self, sid: i64) -> Option<usize> {
        let i = *self.by_sid.get(usize::try_from(sid).ok()?)?;
        self.active.get(i).copied().unwrap_or(false).then_some(i)
    }

    /// Hands `r` to the caller; false once no series wants more.
    fn give(
        &mut self,
        i: usize,
        r: SeriesReading,
        f: &mut dyn FnMut(usize, SeriesReading) -> bool,
    ) -> bool {
        if self.active[i] && !f(i, r) {
            self.active[i] = false;
            self.left -= 1;
        }
        self.left > 0
    }

    fn done(&self) -> bool {
        self.left == 0
    }
}

impl Store {
    /// Batches that history reads on this connection decoded so far: what a read of many
    /// series costs.
    pub fn batches_decoded(&self) -> u64 {
        self.batches_decoded.load(Ordering::Relaxed)
    }

    /// Reads several series over `[from, to]` at once, each batch decoded once: every series
    /// gets its readings in time order (oldest first when `ascending`, else newest first; equal
    /// times by id) until `f` returns false for it (`f(index in series, reading)`). The scan
    /// ends when no series wants more. Like [`Store::series_history`], the part of the range the
    /// raw tier no longer holds is read from the minute tier.
    pub fn series_histories(
        &self,
        series: &[(&str, Quantity)],
        from: TimestampMs,
        to: TimestampMs,
        ascending: bool,
        f: &mut dyn FnMut(usize, SeriesReading) -> bool,
    ) -> Result<()> {
        let mut sids = Vec::with_capacity(series.len());
        for (device, quantity) in series {
            sids.push(self.find_series(device, *quantity)?);
        }
        let mut pick = Pick::new(sids);
        if from > to || pick.done() {
            return Ok(());
        }
        let Some(cut) = self.raw_dropped_through()?.filter(|&c| c >= from) else {
            return self.raw_multi(&mut pick, from, to, ascending, f);
        };
        let raw_from = cut.saturating_add(1).max(from);
        if ascending {
            self.tiers_multi(&mut pick, from, to.min(cut), true, f)?;
            if raw_from <= to && !pick.done() {
                self.raw_multi(&mut pick, raw_from, to, true, f)?;
            }
            return Ok(());
        }
        if raw_from <= to {
            self.raw_multi(&mut pick, raw_from, to, false, f)?;
        }
        if !pick.done() {
            self.tiers_multi(&mut pick, from, to.min(cut), false, f)?;
        }
        Ok(())
    }

    /// The minute tier's part: series by series (its rows are indexed by series).
    fn tiers_multi(
        &self,
        pick: &mut Pick,
        from: TimestampMs,
        to: TimestampMs,
        ascending: bool,
        f: &mut dyn FnMut(usize, SeriesReading) -> bool,
    ) -> Result<()> {
        for i in 0..pick.sids.len() {
            let Some(sid) = pick.sids[i].filter(|_| pick.active[i]) else {
                continue;
            };
            let mut more = true;
            self.tier_history(sid, from, to, ascending, &mut |r| {
                more = f(i, r);
                more
            })?;
            if !more {
                pick.active[i] = false;
                pick.left -= 1;
            }
        }
        Ok(())
    }

    /// The raw tier's part: batches overlapping the range in order of their first (ascending) or
    /// last (descending) time; a reading is released from the merge buffer once no later batch
    /// can hold an earlier (later) one.
    pub(super) fn raw_multi(
        &self,
        pick: &mut Pick,
        from: TimestampMs,
        to: TimestampMs,
        ascending: bool,
        f: &mut dyn FnMut(usize, SeriesReading) -> bool,
    ) -> Result<()> {
        if from > to || pick.done() {
            return Ok(());
        }
        let mut stmt = if ascending {
            self.conn.prepare_cached(
                "SELECT first_id, min_ts, max_ts, data FROM reading_batches
                 WHERE min_ts >= (SELECT coalesce(min(min_ts), ?1) FROM reading_batches WHERE max_ts >= ?1)
                   AND min_ts <= ?2 AND max_ts >= ?1 ORDER BY min_ts, first_id",
            )
        } else {
            self.conn.prepare_cached(
                "SELECT first_id, min_ts, max_ts, data FROM reading_batches
                 WHERE max_ts >= ?1 AND min_ts <= ?2 ORDER BY max_ts DESC, first_id DESC",
            )
        }
        .map_err(ctx("prepare history query"))?;
        let mut rows = stmt.query([from, to]).map_err(ctx("query history"))?;
        let mut asc: BinaryHeap<Reverse<(ByTime, usize)>> = BinaryHeap::new();
        let mut desc: BinaryHeap<(ByTime, usize)> = BinaryHeap::new();
        // Hands out buffered readings beyond `bound`; false when no series wants more.
        let mut release = |pick: &mut Pick,
                           asc: &mut BinaryHeap<Reverse<(ByTime, usize)>>,
                           desc: &mut BinaryHeap<(ByTime, usize)>,
                           bound: Option<i64>|
         -> bool {
            if ascending {
                while let Some(Reverse((top, _))) = asc.peek() {
                    if bound.is_some_and(|b| top.0.ts_ms >= b) {
                        break;
                    }
                    let Some(Reverse((r, i))) = asc.pop() else {
                        break;
                    };
                    if !pick.give(i, r.0, f) {
                        return false;
                    }
                }
            } else {
                while let Some((top, _)) = desc.peek() {
                    if bound.is_some_and(|b| top.0.ts_ms <= b) {
                        break;
                    }
                    let Some((r, i)) = desc.pop() else { break };
                    if !pick.give(i, r.0, f) {
                        return false;
                    }
                }
            }
            true
        };
        while let Some(row) = rows.next().map_err(ctx("read history"))? {
            let first: i64 = row.get(0).map_err(ctx("read history"))?;
            let min_ts: i64 = row.get(1).map_err(ctx("read history"))?;
            let max_ts: i64 = row.get(2).map_err(ctx("read history"))?;
            let bound = if ascending { min_ts } else { max_ts };
            if !release(pick, &mut asc, &mut desc, Some(bound)) {
                return Ok(());
            }
            self.batches_decoded.fetch_add(1, Ordering::Relaxed);
            let data = row.get_ref(3).map_err(ctx("read history"))?;
            let blob = data.as_blob().map_err(|e| ctx("read history")(e.into()))?;
            for (k, r) in self.decoder(blob)?.enumerate() {
                let r = r.map_err(super::batches::decode_err)?;
                if r.ts_ms < from || r.ts_ms > to {
                    continue;
                }
                let Some(i) = pick.wanted(r.series_id) else {
                    continue;
                };
                let sr = ByTime(SeriesReading {
                    id: first + k as i64,
                    ts_ms: r.ts_ms,
                    value: r.value,
                    quality: r.quality,
                });
                if ascending {
                    asc.push(Reverse((sr, i)));
                } else {
                    desc.push((sr, i));
                }
            }
        }
        release(pick, &mut asc, &mut desc, None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::{Quality, Reading};
    use crate::storage::config::Synchronous;

    fn reading(device: &str, ts_ms: i64, v: f64) -> Reading {
        let mut r = Reading::new(device, Quantity::EnergyImport, v, ts_ms);
        if v < 0.0 {
            r.quality = Quality::Bad("test".into());
            r.value = None;
        }
        r
    }

    /// Five meters, commits of every meter at once, some commits late (out of time order), a
    /// bad reading and a meter that stops early.
    fn site() -> (tempfile::TempDir, Store, Vec<(String, Quantity)>) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.sqlite"), Synchronous::Normal).unwrap();
        let devices: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
        let mut commits: Vec<Vec<Reading>> = Vec::new();
        for t in 0..60i64 {
            let ts = 1_000_000 + t * 1000;
            let mut c = Vec::new();
            for (k, d) in devices.iter().enumerate() {
                if k == 4 && t > 20 {
                    continue;
                }
                let v = if k == 2 && t == 30 {
                    -1.0
                } else {
                    (t * 10 + k as i64) as f64
                };
                c.push(reading(d, ts, v));
            }
            commits.push(c);
        }
        // Commits 10..15 arrive after commit 40.
        let late: Vec<_> = commits.drain(10..15).collect();
        let at = commits.len() - 20;
        for (k, c) in late.into_iter().enumerate() {
            commits.insert(at + k, c);
        }
        for c in commits {
            s.insert_readings(&c).unwrap();
        }
        let keys = devices
            .into_iter()
            .map(|d| (d, Quantity::EnergyImport))
            .collect();
        (dir, s, keys)
    }

    fn one(
        s: &Store,
        key: &(String, Quantity),
        from: i64,
        to: i64,
        asc: bool,
    ) -> Vec<SeriesReading> {
        let mut v = Vec::new();
        s.series_history(&key.0, key.1, from, to, asc, |r| {
            v.push(r);
            true
        })
        .unwrap();
        v
    }

    #[test]
    fn many_series_read_together_get_what_each_read_alone_gets_decoding_each_batch_once() {
        let (_d, s, keys) = site();
        let refs: Vec<(&str, Quantity)> = keys.iter().map(|(d, q)| (d.as_str(), *q)).collect();
        let mut with_unknown = refs.clone();
        with_unknown.push(("never-seen", Quantity::EnergyImport));
        for asc in [true, false] {
            for (from, to) in [
                (0, i64::MAX),
                (1_005_000, 1_045_000),
                (1_012_500, 1_013_000),
            ] {
                let mut got = vec![Vec::new(); with_unknown.len()];
                let before = s.batches_decoded();
                s.series_histories(&with_unknown, from, to, asc, &mut |i, r| {
                    got[i].push(r);
                    true
                })
                .unwrap();
                let decoded = s.batches_decoded() - before;
                for (k, key) in keys.iter().enumerate() {
                    assert_eq!(
                        got[k],
                        one(&s, key, from, to, asc),
                        "{key:?} {from}..{to} asc {asc}"
                    );
                }
                assert!(got[5].is_empty());
                // One commit per second: the batches overlapping the range, each once.
                let overlapping = (0..60i64)
                    .filter(|t| {
                        let ts = 1_000_000 + t * 1000;
                        ts >= from && ts <= to
                    })
                    .count() as u64;
                assert_eq!(decoded, overlapping, "{from}..{to} asc {asc}");
            }
        }
        // In time order despite the late commits.
        let mut got = vec![Vec::new(); refs.len()];
        s.series_histories(&refs, 0, i64::MAX, true, &mut |i, r| {
            got[i].push(r.ts_ms);
            true
        })
        .unwrap();
        assert!(got[0].windows(2).all(|w| w[0] < w[1]));
        assert_eq!(got[0].len(), 60);
        assert_eq!(got[4].len(), 21);
    }

    #[test]
    fn each_series_stops_on_its_own_and_the_scan_ends_when_none_wants_more() {
        let (_d, s, keys) = site();
        let refs: Vec<(&str, Quantity)> = keys.iter().map(|(d, q)| (d.as_str(), *q)).collect();
        // Newest first, three of each: the meter that stopped early is looked for further back.
        let mut got = vec![Vec::new(); refs.len()];
        let before = s.batches_decoded();
        s.series_histories(&refs, i64::MIN, i64::MAX, false, &mut |i, r| {
            got[i].push(r.ts_ms);
            got[i].len() < 3
        })
        .unwrap();
        for g in &got[..4] {
            assert_eq!(g, &vec![1_059_000, 1_058_000, 1_057_000]);
        }
        assert_eq!(got[4], vec![1_020_000, 1_019_000, 1_018_000]);
        // Back to m4's last readings (t = 18) and no further: 60 - 18 batches, not all 60.
        assert_eq!(s.batches_decoded() - before, 42);
    }
}
