//! Counter integrity: cumulative registers (kWh, m³, t, GJ, units produced) → consumption per
//! step between accepted readings, and from steps to 15-minute intervals.
//!
//! Rules, applied to the good (and estimated) readings of one counter in time order:
//!
//! - **Normal**: the counter rose by no more than the rated power allows in the time (when a
//!   rated power is configured): the rise is the consumption.
//! - **Rollover**: the counter fell, a wrap value (`counter_max`) is configured and
//!   `max − previous + current` is plausible (within rated power, or less than half the counter
//!   range when no rated power is set): that is the consumption. Event `rollover`.
//! - **Replacement** recorded by the operator (`energy-gateway counter replace`): consumption is
//!   `old_final − last old reading` plus `first new reading − new_initial`. Event `replacement`.
//! - Any other fall, or a rise beyond the rated power, makes the reading *suspect*; the next
//!   reading decides:
//!   - it follows the reading before the suspect → the suspect was a **spike** and is rejected
//!     (event `spike`); nothing is lost, the step runs from the last good reading.
//!   - it follows the suspect → the counter really moved to a new level. If it fell to a value the
//!     rated power allows since the last reading, it is a **reset** to zero: the value is counted as
//!     consumed since the reset (event `reset`). Otherwise it is a **jump** (an unrecorded meter
//!     replacement or preset): the consumption of that step is estimated from the rate of the
//!     following step (event `jump`). Both steps are marked estimated.
//!   - neither → the suspect is rejected as a spike and the new reading becomes the suspect.
//!   - no next reading yet → the suspect is not counted yet (event `unconfirmed`).
//! - **Gap**: a step longer than `gap_after` is spread evenly over the intervals it spans, which
//!   are marked estimated (event `gap`).
//!
//! Consumption is never negative: every rule yields zero or more.

use serde::Serialize;

use super::calendar::SLOT_MS;
use crate::readings::TimestampMs;

/// One usable counter reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub ts_ms: TimestampMs,
    pub value: f64,
    /// The reading itself was estimated (quality `estimated`).
    pub estimated: bool,
}

impl Sample {
    pub fn new(ts_ms: TimestampMs, value: f64) -> Sample {
        Sample {
            ts_ms,
            value,
            estimated: false,
        }
    }
}

/// A meter replacement recorded by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Replacement {
    pub ts_ms: TimestampMs,
    /// Last reading of the old meter.
    pub old_final: f64,
    /// First reading of the new meter.
    pub new_initial: f64,
}

/// How one counter is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterSettings {
    /// Value at which the counter wraps to zero.
    pub max: Option<f64>,
    /// Largest plausible increase per hour (rated power for kWh counters).
    pub rated_per_hour: Option<f64>,
    /// Steps longer than this are gaps.
    pub gap_after_ms: i64,
}

/// What happened to a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Rollover,
    Reset,
    Replacement,
    Spike,
    Jump,
    Gap,
    Unconfirmed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Rollover => "rollover",
            EventKind::Reset => "reset",
            EventKind::Replacement => "replacement",
            EventKind::Spike => "spike",
            EventKind::Jump => "jump",
            EventKind::Gap => "gap",
            EventKind::Unconfirmed => "unconfirmed",
        }
    }
}

/// A counter event, with the consumption that was counted for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterEvent {
    pub ts_ms: TimestampMs,
    pub kind: EventKind,
    /// Counter value before the event (the last accepted reading).
    pub from_value: Option<f64>,
    /// The reading the event is about.
    pub to_value: Option<f64>,
    /// Consumption counted for the step of the event (0 for a rejected spike).
    pub counted: f64,
    pub detail: String,
}

/// Consumption over `(from_ms, to_ms]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub from_ms: TimestampMs,
    pub to_ms: TimestampMs,
    pub amount: f64,
    pub estimated: bool,
}

/// Where the counter rules put their steps.
pub trait StepSink {
    fn put(&mut self, step: Step);
}

impl StepSink for Slots {
    fn put(&mut self, step: Step) {
        self.add(step);
    }
}

struct FnSink<F>(F);

impl<F: FnMut(Step)> StepSink for FnSink<F> {
    fn put(&mut self, step: Step) {
        (self.0)(step);
    }
}

struct Integrator<'a, K: StepSink> {
    s: &'a CounterSettings,
    sink: K,
    events: Vec<CounterEvent>,
    base: Option<Sample>,
    pending: Option<Sample>,
}

fn fmt_duration(ms: i64) -> String {
    let s = ms / 1000;
    if s % 3600 == 0 {
        format!("{} h", s / 3600)
    } else if s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

impl<K: StepSink> Integrator<'_, K> {
    fn allowed(&self, a: &Sample, b: &Sample) -> Option<f64> {
        self.s
            .rated_per_hour
            .map(|r| r * (b.ts_ms - a.ts_ms) as f64 / 3_600_000.0)
    }

    /// `Some((consumption, rolled_over))` when `b` plausibly follows `a`.
    fn follows(&self, a: &Sample, b: &Sample) -> Option<(f64, bool)> {
        let allowed = self.allowed(a, b);
        let within = |d: f64| allowed.is_none_or(|x| d <= x * (1.0 + 1e-12));
        if b.value >= a.value {
            let d = b.value - a.value;
            return within(d).then_some((d, false));
        }
        if let Some(max) = self.s.max {
            let d = max - a.value + b.value;
            let plausible = match allowed {
                Some(_) => within(d),
                None => d < max / 2.0,
            };
            if d >= 0.0 && plausible {
                return Some((d, true));
            }
        }
        None
    }

    fn event(
        &mut self,
        ts_ms: i64,
        kind: EventKind,
        from: Option<f64>,
        to: Option<f64>,
        counted: f64,
        detail: String,
    ) {
        self.events.push(CounterEvent {
            ts_ms,
            kind,
            from_value: from,
            to_value: to,
            counted,
            detail,
        });
    }

    fn step(&mut self, a: Sample, b: Sample, amount: f64, estimated: bool) {
        let amount = if amount.is_finite() {
            amount.max(0.0)
        } else {
            0.0
        };
        let long = b.ts_ms - a.ts_ms > self.s.gap_after_ms;
        if long {
            self.event(
                a.ts_ms,
                EventKind::Gap,
                Some(a.value),
                Some(b.value),
                amount,
                format!(
                    "no reading for {}; {amount} spread evenly over the intervals until the next reading",
                    fmt_duration(b.ts_ms - a.ts_ms)
                ),
            );
        }
        self.sink.put(Step {
            from_ms: a.ts_ms,
            to_ms: b.ts_ms,
            amount,
            estimated: estimated || long || a.estimated || b.estimated,
        });
    }

    fn accept(&mut self, a: Sample, b: Sample, d: f64, rolled: bool) {
        if rolled {
            let max = self.s.max.unwrap_or(0.0);
            self.event(
                b.ts_ms,
                EventKind::Rollover,
                Some(a.value),
                Some(b.value),
                d,
                format!(
                    "counter wrapped at {max}: {max} − {} + {} = {d}",
                    a.value, b.value
                ),
            );
        }
        self.step(a, b, d, false);
        self.base = Some(b);
    }

    fn spike(&mut self, base: Sample, p: Sample) {
        let why = match self.allowed(&base, &p) {
            Some(x) if p.value >= base.value => format!(
                "a rise of {} in {} exceeds the {x} the rated power allows",
                p.value - base.value,
                fmt_duration(p.ts_ms - base.ts_ms)
            ),
            _ => format!("{} does not follow {}", p.value, base.value),
        };
        self.event(
            p.ts_ms,
            EventKind::Spike,
            Some(base.value),
            Some(p.value),
            0.0,
            format!("rejected: {why}, and the next reading does not confirm it"),
        );
    }

    /// The counter moved to the level of `p`, confirmed by `next`; `d_next` is the step p→next.
    fn new_level(&mut self, base: Sample, p: Sample, next: Sample, d_next: f64) {
        let allowed = self.allowed(&base, &p);
        if p.value < base.value && allowed.is_none_or(|x| p.value <= x) {
            self.event(
                p.ts_ms,
                EventKind::Reset,
                Some(base.value),
                Some(p.value),
                p.value,
                format!(
                    "counter fell from {} to {}; {} counted as consumed since a reset to zero. If the meter was replaced, record it with `energy-gateway counter replace`",
                    base.value, p.value, p.value
                ),
            );
            self.step(base, p, p.value, true);
        } else {
            let rate = d_next / (next.ts_ms - p.ts_ms).max(1) as f64;
            let mut est = rate * (p.ts_ms - base.ts_ms) as f64;
            if let Some(x) = allowed {
                est = est.min(x);
            }
            self.event(
                p.ts_ms,
                EventKind::Jump,
                Some(base.value),
                Some(p.value),
                est,
                format!(
                    "counter jumped from {} to {} and stayed there; {est} estimated for the step from the rate of the next one. If the meter was replaced, record it with `energy-gateway counter replace`",
                    base.value, p.value
                ),
            );
            self.step(base, p, est, true);
        }
        self.base = Some(p);
    }

    fn push(&mut self, cur: Sample) {
        if !cur.value.is_finite() {
            return;
        }
        let Some(base) = self.base else {
            self.base = Some(cur);
            return;
        };
        if cur.ts_ms <= base.ts_ms {
            return;
        }
        if let Some(p) = self.pending {
            if cur.ts_ms <= p.ts_ms {
                return;
            }
            if let Some((d, rolled)) = self.follows(&base, &cur) {
                self.pending = None;
                self.spike(base, p);
                self.accept(base, cur, d, rolled);
            } else if let Some((d, rolled)) = self.follows(&p, &cur) {
                self.pending = None;
                self.new_level(base, p, cur, d);
                self.accept(p, cur, d, rolled);
            } else {
                self.spike(base, p);
                self.pending = Some(cur);
            }
            return;
        }
        match self.follows(&base, &cur) {
            Some((d, rolled)) => self.accept(base, cur, d, rolled),
            None => self.pending = Some(cur),
        }
    }

    fn replace(&mut self, r: &Replacement) {
        let anchor_old = Sample::new(r.ts_ms, r.old_final);
        if let (Some(p), Some(base)) = (self.pending.take(), self.base) {
            if p.value >= base.value && p.value <= r.old_final {
                self.accept(base, p, p.value - base.value, false);
            } else {
                self.spike(base, p);
            }
        }
        let mut counted = 0.0;
        if let Some(base) = self.base.filter(|b| b.ts_ms <= r.ts_ms) {
            counted = r.old_final - base.value;
            if counted < 0.0 {
                self.event(
                    r.ts_ms,
                    EventKind::Replacement,
                    Some(base.value),
                    Some(r.old_final),
                    0.0,
                    format!(
                        "the recorded final reading {} of the old meter is below its last reading {}; 0 counted for its last step",
                        r.old_final, base.value
                    ),
                );
                counted = 0.0;
            }
            self.step(base, anchor_old, counted, false);
        }
        self.event(
            r.ts_ms,
            EventKind::Replacement,
            Some(r.old_final),
            Some(r.new_initial),
            counted,
            format!(
                "meter replaced: old meter final {}, new meter initial {}; the new meter counts on from {}",
                r.old_final, r.new_initial, r.new_initial
            ),
        );
        self.base = Some(Sample::new(r.ts_ms, r.new_initial));
    }

    fn finish(mut self) -> (Vec<CounterEvent>, K) {
        if let (Some(p), Some(base)) = (self.pending.take(), self.base) {
            self.event(
                p.ts_ms,
                EventKind::Unconfirmed,
                Some(base.value),
                Some(p.value),
                0.0,
                format!(
                    "{} does not follow {} and no later reading confirms or rejects it yet; not counted",
                    p.value, base.value
                ),
            );
        }
        (self.events, self.sink)
    }
}

/// Runs the rules over `samples` (sorted by time, streamed: a year of one-second readings need
/// not be in memory) and the replacements (sorted by time), feeding every step to `sink`.
/// Returns the events.
pub fn integrate(
    samples: impl IntoIterator<Item = Sample>,
    replacements: &[Replacement],
    settings: &CounterSettings,
    sink: impl FnMut(Step),
) -> Vec<CounterEvent> {
    let mut run = CounterRun::with_sink(settings, replacements, FnSink(sink));
    for s in samples {
        run.push(s);
    }
    run.finish().0
}

/// The counter rules over samples pushed one at a time (in time order), for readers that
/// visit many counters at once.
pub struct CounterRun<'a, K: StepSink = Slots> {
    it: Integrator<'a, K>,
    replacements: &'a [Replacement],
    next: usize,
}

impl<'a> CounterRun<'a, Slots> {
    /// Rules whose steps are spread over `slots`.
    pub fn new(
        settings: &'a CounterSettings,
        replacements: &'a [Replacement],
        slots: Slots,
    ) -> Self {
        CounterRun::with_sink(settings, replacements, slots)
    }
}

impl<'a, K: StepSink> CounterRun<'a, K> {
    fn with_sink(settings: &'a CounterSettings, replacements: &'a [Replacement], sink: K) -> Self {
        CounterRun {
            it: Integrator {
                s: settings,
                sink,
                events: Vec::new(),
                base: None,
                pending: None,
            },
            replacements,
            next: 0,
        }
    }

    pub fn push(&mut self, s: Sample) {
        let reps = self.replacements;
        while let Some(r) = reps.get(self.next).filter(|r| s.ts_ms >= r.ts_ms) {
            self.it.replace(r);
            self.next += 1;
        }
        self.it.push(s);
    }

    /// The events, and the sink with every step.
    pub fn finish(mut self) -> (Vec<CounterEvent>, K) {
        let reps = self.replacements;
        for r in reps.get(self.next..).unwrap_or_default() {
            self.it.replace(r);
        }
        self.it.finish()
    }
}

/// Consumption and coverage of one 15-minute interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SlotAcc {
    pub amount: f64,
    /// Milliseconds of the interval covered by measured steps.
    pub measured_ms: i64,
    /// Milliseconds covered by estimated steps (gaps, resets, jumps).
    pub estimated_ms: i64,
}

impl SlotAcc {
    /// Fully covered by measured steps.
    pub fn is_measured(&self) -> bool {
        self.estimated_ms == 0 && self.measured_ms >= SLOT_MS
    }
    pub fn is_estimated(&self) -> bool {
        self.estimated_ms > 0
    }
    pub fn is_covered(&self) -> bool {
        self.measured_ms + self.estimated_ms > 0
    }
}

/// The 15-minute intervals of `[start_ms, end_ms)` of one counter.
///
/// Only the extent the steps touched is held (`lo..lo + acc.len()`); the intervals outside it
/// read as empty. A year has 35 040 intervals: held densely for every counter of a big site
/// that is hundreds of MB, while a counter read for a few days holds a few hundred.
#[derive(Debug, Clone, PartialEq)]
pub struct Slots {
    pub start_ms: TimestampMs,
    /// Number of intervals of the range.
    len: usize,
    /// Index of `acc[0]`.
    lo: usize,
    acc: Vec<SlotAcc>,
}

impl Slots {
    /// `start_ms` and `end_ms` are rounded out to whole intervals.
    pub fn new(start_ms: TimestampMs, end_ms: TimestampMs) -> Slots {
        let start = start_ms.div_euclid(SLOT_MS) * SLOT_MS;
        let n = ((end_ms - start).max(0) + SLOT_MS - 1) / SLOT_MS;
        Slots {
            start_ms: start,
            len: usize::try_from(n).unwrap_or(0),
            lo: 0,
            acc: Vec::new(),
        }
    }

    /// Number of intervals of the range.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn end_ms(&self) -> TimestampMs {
        self.start_ms + self.len as i64 * SLOT_MS
    }

    /// Start of interval `i`.
    pub fn slot_start(&self, i: usize) -> TimestampMs {
        self.start_ms + i as i64 * SLOT_MS
    }

    /// Interval `i` (empty when no step touched it).
    pub fn get(&self, i: usize) -> SlotAcc {
        i.checked_sub(self.lo)
            .and_then(|k| self.acc.get(k))
            .copied()
            .unwrap_or_default()
    }

    /// Index range of the intervals some step touched (empty when none did).
    pub fn touched(&self) -> std::ops::Range<usize> {
        self.lo..self.lo + self.acc.len()
    }

    /// Whether any interval has data.
    pub fn any_covered(&self) -> bool {
        self.acc.iter().any(|a| a.is_covered())
    }

    /// Index range of the intervals inside `[from, to)`.
    pub fn index_range(&self, from: TimestampMs, to: TimestampMs) -> std::ops::Range<usize> {
        let clamp = |t: TimestampMs| {
            (((t - self.start_ms).max(0) + SLOT_MS - 1) / SLOT_MS).min(self.len as i64) as usize
        };
        clamp(from)..clamp(to)
    }

    /// The intervals of `r`, untouched ones as empty.
    pub fn iter(&self, r: std::ops::Range<usize>) -> impl Iterator<Item = SlotAcc> + '_ {
        r.map(|i| self.get(i))
    }

    /// Interval `i`, held from now on (`i < len`).
    fn slot_mut(&mut self, i: usize) -> &mut SlotAcc {
        if self.acc.is_empty() {
            self.lo = i;
        } else if i < self.lo {
            let extra = self.lo - i;
            self.acc
                .splice(0..0, std::iter::repeat_n(SlotAcc::default(), extra));
            self.lo = i;
        }
        let k = i - self.lo;
        if k >= self.acc.len() {
            self.acc.resize(k + 1, SlotAcc::default());
        }
        &mut self.acc[k]
    }

    /// Spreads a step over the intervals it overlaps, in proportion to time. The part outside the
    /// covered range is dropped (it belongs to another range).
    pub fn add(&mut self, step: Step) {
        let (a, b) = (step.from_ms, step.to_ms);
        if b <= a {
            // A step of no duration (a reading and a replacement at the same instant) belongs to
            // the interval that ends at that instant.
            let t = b - 1;
            if t >= self.start_ms && t < self.end_ms() {
                let i = ((t - self.start_ms) / SLOT_MS) as usize;
                self.slot_mut(i).amount += step.amount;
            }
            return;
        }
        let lo = a.max(self.start_ms);
        let hi = b.min(self.end_ms());
        if hi <= lo {
            return;
        }
        let dur = (b - a) as f64;
        let mut t = lo;
        let mut i = ((t - self.start_ms) / SLOT_MS) as usize;
        while t < hi {
            let seg_end = (self.start_ms + (i as i64 + 1) * SLOT_MS).min(hi);
            let len = seg_end - t;
            let acc = self.slot_mut(i);
            acc.amount += if len == b - a {
                step.amount
            } else {
                step.amount * (len as f64 / dur)
            };
            if step.estimated {
                acc.estimated_ms += len;
            } else {
                acc.measured_ms += len;
            }
            t = seg_end;
            i += 1;
        }
    }

    /// Total consumption in `[from, to)`.
    pub fn total(&self, from: TimestampMs, to: TimestampMs) -> f64 {
        let r = self.index_range(from, to);
        let t = self.touched();
        let (a, b) = (r.start.max(t.start), r.end.min(t.end));
        self.iter(a..b.max(a)).fold(0.0, |x, s| x + s.amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn settings(max: Option<f64>, rated: Option<f64>) -> CounterSettings {
        CounterSettings {
            max,
            rated_per_hour: rated,
            gap_after_ms: 15 * 60 * 1000,
        }
    }

    fn run(
        samples: &[(i64, f64)],
        reps: &[Replacement],
        s: &CounterSettings,
    ) -> (Vec<Step>, Vec<CounterEvent>) {
        let samples: Vec<Sample> = samples.iter().map(|(t, v)| Sample::new(*t, *v)).collect();
        let mut steps = Vec::new();
        let ev = integrate(samples, reps, s, |st| steps.push(st));
        (steps, ev)
    }

    fn total(steps: &[Step]) -> f64 {
        steps.iter().map(|s| s.amount).sum()
    }

    fn kinds(ev: &[CounterEvent]) -> Vec<EventKind> {
        ev.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn plain_counter_sums_its_rises() {
        let (steps, ev) = run(
            &[(0, 100.0), (H / 4, 150.0), (H / 2, 175.5)],
            &[],
            &settings(None, None),
        );
        assert_eq!(total(&steps), 75.5);
        assert!(ev.is_empty());
        assert!(steps.iter().all(|s| !s.estimated));
    }

    #[test]
    fn rollover_at_the_configured_maximum() {
        // A counter that wraps at 100 000 kWh: 99 990 → 15 is 100 000 − 99 990 + 15 = 25 kWh.
        let (steps, ev) = run(
            &[
                (0, 99_950.0),
                (H / 4, 99_990.0),
                (H / 2, 15.0),
                (3 * H / 4, 40.0),
            ],
            &[],
            &settings(Some(100_000.0), Some(200.0)),
        );
        assert_eq!(
            steps.iter().map(|s| s.amount).collect::<Vec<_>>(),
            vec![40.0, 25.0, 25.0]
        );
        assert_eq!(total(&steps), 90.0);
        assert_eq!(kinds(&ev), vec![EventKind::Rollover]);
        assert_eq!(ev[0].counted, 25.0);
    }

    #[test]
    fn rollover_without_rated_power_uses_half_the_range() {
        let (steps, ev) = run(
            &[(0, 65_500.0), (H / 4, 20.0)],
            &[],
            &settings(Some(65_536.0), None),
        );
        assert_eq!(total(&steps), 56.0);
        assert_eq!(kinds(&ev), vec![EventKind::Rollover]);
    }

    #[test]
    fn reset_to_zero_counts_the_value_since_the_reset() {
        // 5 000 → 3 → 10: the meter was reset; 3 kWh since the reset, then 7 more.
        let (steps, ev) = run(
            &[
                (0, 4_990.0),
                (H / 4, 5_000.0),
                (H / 2, 3.0),
                (3 * H / 4, 10.0),
            ],
            &[],
            &settings(None, Some(100.0)),
        );
        assert_eq!(
            steps.iter().map(|s| s.amount).collect::<Vec<_>>(),
            vec![10.0, 3.0, 7.0]
        );
        assert_eq!(total(&steps), 20.0);
        assert_eq!(kinds(&ev), vec![EventKind::Reset]);
        assert!(steps[1].estimated && !steps[2].estimated);
    }

    #[test]
    fn recorded_replacement_loses_no_energy() {
        // Old meter: 12 000 at 00:00, 12 020 at 00:15, removed at 00:30 reading 12 040. New meter
        // installed reading 5, reads 25 at 00:45 and 45 at 01:00.
        // Consumption = (12 020 − 12 000) + (12 040 − 12 020) + (25 − 5) + (45 − 25) = 80.
        let rep = Replacement {
            ts_ms: H / 2,
            old_final: 12_040.0,
            new_initial: 5.0,
        };
        let (steps, ev) = run(
            &[
                (0, 12_000.0),
                (H / 4, 12_020.0),
                (3 * H / 4, 25.0),
                (H, 45.0),
            ],
            &[rep],
            &settings(None, Some(200.0)),
        );
        assert_eq!(
            steps.iter().map(|s| s.amount).collect::<Vec<_>>(),
            vec![20.0, 20.0, 20.0, 20.0]
        );
        assert_eq!(total(&steps), 80.0);
        assert_eq!(kinds(&ev), vec![EventKind::Replacement]);
        assert_eq!(ev[0].counted, 20.0);
        assert!(steps.iter().all(|s| !s.estimated));
        // Without the record the fall 12 020 → 25 looks like a reset to zero: 25 counted (instead
        // of 20 + 20), estimated, and the event asks for the replacement to be recorded.
        let (steps, ev) = run(
            &[
                (0, 12_000.0),
                (H / 4, 12_020.0),
                (3 * H / 4, 25.0),
                (H, 45.0),
            ],
            &[],
            &settings(None, Some(200.0)),
        );
        assert_eq!(kinds(&ev), vec![EventKind::Reset, EventKind::Gap]);
        assert_eq!(total(&steps), 65.0);
        assert!(steps[1].estimated);
    }

    #[test]
    fn unrecorded_replacement_is_a_jump_estimated_from_the_next_rate() {
        // 8 000 → (new meter, unrecorded) 500 → 520 → 540, rated 100 kW, 15-minute steps.
        // 500 is far above what 100 kW allows in 15 min (25 kWh), so it is no reset; 520 follows
        // 500, so the level is real: jump. Step 8 000→500 estimated at the next rate: 20 kWh.
        let (steps, ev) = run(
            &[
                (0, 8_000.0),
                (H / 4, 500.0),
                (H / 2, 520.0),
                (3 * H / 4, 540.0),
            ],
            &[],
            &settings(None, Some(100.0)),
        );
        assert_eq!(
            steps.iter().map(|s| s.amount).collect::<Vec<_>>(),
            vec![20.0, 20.0, 20.0]
        );
        assert_eq!(kinds(&ev), vec![EventKind::Jump]);
        assert!(steps[0].estimated);
    }

    #[test]
    fn spike_is_rejected_and_nothing_is_lost() {
        // Rated 400 kW: at most 100 kWh per 15 min. 1 000 → 1 090 → 999 999 (spike) → 1 270.
        // The spike is dropped; 1 090 → 1 270 over 30 min = 180 kWh ≤ 200 allowed.
        let (steps, ev) = run(
            &[
                (0, 1_000.0),
                (H / 4, 1_090.0),
                (H / 2, 999_999.0),
                (3 * H / 4, 1_270.0),
            ],
            &[],
            &settings(None, Some(400.0)),
        );
        assert_eq!(total(&steps), 270.0);
        // Bridging the rejected reading makes a 30-minute step: its two intervals share the
        // 180 kWh by time and are marked estimated.
        assert_eq!(kinds(&ev), vec![EventKind::Spike, EventKind::Gap]);
        assert!(steps[1].estimated);
        assert_eq!(ev[0].to_value, Some(999_999.0));
        assert_eq!(ev[0].counted, 0.0);
        // A downward glitch (a read returning 0) is a spike too.
        let (steps, ev) = run(
            &[(0, 1_000.0), (H / 4, 0.0), (H / 2, 1_050.0)],
            &[],
            &settings(None, Some(400.0)),
        );
        assert_eq!(total(&steps), 50.0);
        assert_eq!(kinds(&ev), vec![EventKind::Spike, EventKind::Gap]);
    }

    #[test]
    fn gap_is_bridged_and_spread_as_estimated() {
        // Readings at 00:00 (100) and 02:00 (180): 80 over 8 intervals, 10 each, estimated.
        let (steps, ev) = run(
            &[(0, 100.0), (2 * H, 180.0)],
            &[],
            &settings(None, Some(400.0)),
        );
        assert_eq!(kinds(&ev), vec![EventKind::Gap]);
        assert!(steps[0].estimated);
        let mut slots = Slots::new(0, 2 * H);
        for s in steps {
            slots.add(s);
        }
        assert_eq!(slots.len(), 8);
        for a in slots.iter(0..slots.len()) {
            assert_eq!(a.amount, 10.0);
            assert!(a.is_estimated());
        }
        assert_eq!(slots.total(0, 2 * H), 80.0);
    }

    #[test]
    fn last_suspect_reading_waits_for_confirmation() {
        let (steps, ev) = run(
            &[(0, 100.0), (H / 4, 110.0), (H / 2, 5.0)],
            &[],
            &settings(None, Some(100.0)),
        );
        assert_eq!(total(&steps), 10.0);
        assert_eq!(kinds(&ev), vec![EventKind::Unconfirmed]);
    }

    #[test]
    fn never_negative() {
        // A counter running backwards with no wrap value and no later confirmation.
        let (steps, _) = run(
            &[(0, 100.0), (H / 4, 90.0), (H / 2, 80.0), (3 * H / 4, 70.0)],
            &[],
            &settings(None, None),
        );
        assert!(steps.iter().all(|s| s.amount >= 0.0));
        // Replacement whose recorded final is below the last reading.
        let rep = Replacement {
            ts_ms: H / 2,
            old_final: 50.0,
            new_initial: 0.0,
        };
        let (steps, ev) = run(&[(0, 100.0), (H, 10.0)], &[rep], &settings(None, None));
        assert!(steps.iter().all(|s| s.amount >= 0.0));
        assert_eq!(total(&steps), 10.0);
        assert_eq!(ev[0].kind, EventKind::Replacement);
    }

    #[test]
    fn slots_hold_only_the_touched_extent() {
        // A year of intervals, data on one day: only that day's 96 intervals are held.
        let day = 96 * 15 * 60 * 1000;
        let mut slots = Slots::new(0, 365 * day);
        assert_eq!(slots.len(), 365 * 96);
        assert!(slots.touched().is_empty());
        assert!(!slots.any_covered());
        slots.add(Step {
            from_ms: 200 * day,
            to_ms: 201 * day,
            amount: 96.0,
            estimated: false,
        });
        assert_eq!(slots.touched(), 200 * 96..201 * 96);
        assert_eq!(slots.get(200 * 96).amount, 1.0);
        assert!(slots.get(200 * 96).is_measured());
        assert_eq!(slots.get(10), SlotAcc::default());
        assert_eq!(slots.total(0, 365 * day), 96.0);
        assert_eq!(slots.total(0, 200 * day), 0.0);
        // A step before the held extent widens it at the front (steps may come out of order).
        slots.add(Step {
            from_ms: 100 * day,
            to_ms: 100 * day + SLOT_MS,
            amount: 5.0,
            estimated: true,
        });
        assert_eq!(slots.touched(), 100 * 96..201 * 96);
        assert!(slots.get(100 * 96).is_estimated());
        assert_eq!(slots.get(200 * 96).amount, 1.0);
        assert_eq!(slots.total(0, 365 * day), 101.0);
        assert!(slots.any_covered());
    }

    #[test]
    fn steps_split_across_interval_boundaries_in_proportion() {
        // 23:59:59 → 00:00:00 lies entirely before midnight; 00:00:00 → 00:00:01 after it.
        let mid = 96 * 15 * 60 * 1000; // a multiple of 15 min
        let mut slots = Slots::new(mid - H, mid + H);
        slots.add(Step {
            from_ms: mid - 1000,
            to_ms: mid,
            amount: 2.0,
            estimated: false,
        });
        slots.add(Step {
            from_ms: mid,
            to_ms: mid + 1000,
            amount: 3.0,
            estimated: false,
        });
        assert_eq!(slots.total(mid - H, mid), 2.0);
        assert_eq!(slots.total(mid, mid + H), 3.0);
        // A 10-minute step from 23:55 to 00:05 splits 1:1.
        let mut slots = Slots::new(mid - H, mid + H);
        slots.add(Step {
            from_ms: mid - 300_000,
            to_ms: mid + 300_000,
            amount: 8.0,
            estimated: false,
        });
        assert_eq!(slots.total(mid - H, mid), 4.0);
        assert_eq!(slots.total(mid, mid + H), 4.0);
    }
}
