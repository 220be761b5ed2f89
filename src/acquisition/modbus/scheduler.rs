//! The poll scheduler. One [`Poller`] owns one link: a Modbus TCP connection to one device, or a
//! shared line (RTU serial port, RTU over TCP) with all the devices on it, polled one request at
//! a time with the RTU inter-frame gap and the configured pause between requests.
//!
//! Each device's points are split into groups by poll interval (power every second, counters
//! every minute, ratios hourly and at start-up); every group is planned into as few requests as
//! the device's limits allow and polled when due. A device that fails `degraded_after` times in a
//! row is degraded: retried with exponential backoff (up to `max_backoff`) instead of every
//! interval, so a dead meter costs its bus at most one timeout per retry and never shifts the
//! schedule of the others. After a timeout or transport error the link is dropped and opened
//! again before the next request (a late answer would otherwise be taken for the next one).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::Slave;
use tokio_util::sync::CancellationToken;

use super::decode::decode_raw;
use super::link::Link;
use super::plan::{overlaps, plan_spans_around, Block, Limits, Span};
use crate::acquisition::config::{DeviceConfig, ModbusConfig, RegisterKind};
use crate::acquisition::{DeviceStatus, LogLimiter, SourceBatch};
use crate::health::Pulse;
use crate::readings::{now_ms, DeviceId, Reading};

/// What one planned span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Point(usize),
    Ratio(usize),
}

/// How often registers a device refused (exception 2) are asked for again: a firmware update or
/// a replaced meter may have them (they are also re-probed when a TCP connection is reopened).
pub const REPROBE_REFUSED: Duration = Duration::from_secs(3600);

/// Points (or ratios) polled at one interval, planned into requests.
#[derive(Debug, Clone)]
pub struct Group {
    pub interval: Duration,
    pub sources: Vec<Source>,
    pub blocks: Vec<Block>,
    /// The register span of each source (same order as `sources`).
    spans: Vec<Span>,
    /// Sources left out of the requests because the device refused one of their registers.
    pub refused: Vec<usize>,
    next_due: Instant,
}

impl Group {
    /// Plans the group's requests around the registers the device refused.
    fn replan(&mut self, limits: Limits, excluded: &[Span]) {
        self.blocks = plan_spans_around(&self.spans, limits, excluded);
        self.refused = (0..self.spans.len())
            .filter(|&i| excluded.iter().any(|x| overlaps(x, &self.spans[i])))
            .collect();
    }
}

/// The planning limits of a device.
fn limits(modbus: &ModbusConfig) -> Limits {
    Limits {
        max_registers: modbus.max_registers(),
        max_gap: modbus.gap(),
        even: modbus.even(),
    }
}

/// Splits a device's points and ratios into interval groups (ratio groups first, so ratios are
/// known before the points that use them) and plans each group's requests.
pub fn plan_groups(device: &DeviceConfig, modbus: &ModbusConfig) -> Vec<Group> {
    let limits = limits(modbus);
    let mut groups: Vec<(bool, Duration, Vec<Source>, Vec<Span>)> = Vec::new();
    let mut add = |ratio: bool, interval: Duration, src: Source, span: Span| match groups
        .iter_mut()
        .find(|g| g.0 == ratio && g.1 == interval)
    {
        Some(g) => {
            g.2.push(src);
            g.3.push(span);
        }
        None => groups.push((ratio, interval, vec![src], vec![span])),
    };
    for (i, r) in device.ratios.iter().enumerate() {
        let span = Span {
            kind: r.kind,
            register: r.register,
            registers: r.value_type.registers(),
        };
        add(true, r.interval, Source::Ratio(i), span);
    }
    for (i, p) in device.points.iter().enumerate() {
        add(
            false,
            p.interval.unwrap_or(modbus.interval),
            Source::Point(i),
            Span::from(p),
        );
    }
    groups.sort_by_key(|g| (!g.0, g.1));
    let now = Instant::now();
    groups
        .into_iter()
        .map(|(_, interval, sources, spans)| {
            let mut g = Group {
                interval,
                blocks: Vec::new(),
                sources,
                spans,
                refused: Vec::new(),
                next_due: now,
            };
            g.replan(limits, &[]);
            g
        })
        .collect()
}

/// Requests one pass over every group of a device takes.
pub fn requests_per_cycle(groups: &[Group]) -> usize {
    groups.iter().map(|g| g.blocks.len()).sum()
}

/// One device on a poller's link.
pub struct Target {
    pub device: Arc<DeviceConfig>,
    pub modbus: ModbusConfig,
    pub status: Arc<DeviceStatus>,
}

struct DeviceState {
    t: Target,
    groups: Vec<Group>,
    ratios: HashMap<String, f64>,
    failures_in_row: u32,
    retry_at: Option<Instant>,
    backoff: Duration,
    log: LogLimiter,
    /// Registers the device answered with exception 2 (illegal data address), planned around
    /// until `reprobe_at`.
    refused: Vec<Span>,
    reprobe_at: Option<Instant>,
}

impl DeviceState {
    /// Remembers a refused span and plans every group around it.
    fn refuse(&mut self, span: Span) {
        if !self.refused.contains(&span) {
            tracing::warn!(device = %self.t.device.id, table = ?span.kind, register = span.register, registers = span.registers,
                "the device refuses this register (illegal data address): left out of the requests, asked again in {REPROBE_REFUSED:?} or on reconnect");
            self.refused.push(span);
        }
        self.reprobe_at
            .get_or_insert(Instant::now() + REPROBE_REFUSED);
        self.replan();
    }

    /// Forgets the refused registers: the next poll asks for them again.
    fn reprobe(&mut self) {
        if self.refused.is_empty() {
            return;
        }
        self.refused.clear();
        self.reprobe_at = None;
        self.replan();
    }

    fn replan(&mut self) {
        let limits = limits(&self.t.modbus);
        for g in &mut self.groups {
            g.replan(limits, &self.refused);
        }
    }

    fn next_time(&self) -> Instant {
        let due = self
            .groups
            .iter()
            .map(|g| g.next_due)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        match self.retry_at {
            Some(r) => r.max(due),
            None => due,
        }
    }
}

/// Why a device's poll ended early.
struct PollFailure {
    error: String,
    drop_link: bool,
}

/// Polls every device on one link until cancelled.
pub struct Poller {
    link: Link,
    pause: Duration,
    devices: Vec<DeviceState>,
    ctx: Option<Context>,
    tx: mpsc::Sender<SourceBatch>,
    last_frame: Option<Instant>,
    /// When a poll last ended (see [`Poller::watch`]).
    pulse: Option<Arc<Pulse>>,
}

impl Poller {
    pub fn new(
        link: Link,
        pause: Duration,
        targets: Vec<Target>,
        tx: mpsc::Sender<SourceBatch>,
    ) -> Self {
        let devices = targets
            .into_iter()
            .map(|t| DeviceState {
                groups: plan_groups(&t.device, &t.modbus),
                backoff: t.modbus.interval,
                t,
                ratios: HashMap::new(),
                failures_in_row: 0,
                retry_at: None,
                log: LogLimiter::new(Duration::from_secs(60)),
                refused: Vec::new(),
                reprobe_at: None,
            })
            .collect();
        Poller {
            link,
            pause,
            devices,
            ctx: None,
            tx,
            last_frame: None,
            pulse: None,
        }
    }

    /// The longest one poll of a device on this link may take: a connect and every request of
    /// a cycle, each up to its timeout after the line's gap.
    pub fn longest_poll(&self) -> Duration {
        let gap = self.link.inter_frame_gap().saturating_add(self.pause);
        self.devices
            .iter()
            .map(|d| {
                let steps = u32::try_from(requests_per_cycle(&d.groups))
                    .unwrap_or(u32::MAX)
                    .saturating_add(1);
                d.t.modbus.timeout.saturating_add(gap).saturating_mul(steps)
            })
            .max()
            .unwrap_or_default()
    }

    /// Within how long the next poll ends: when the next is due (the interval, or the backoff
    /// of a failing device), then the longest poll.
    fn next_poll_within(&self) -> Duration {
        let due = self.devices.iter().map(DeviceState::next_time).min();
        due.map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
            .saturating_add(self.longest_poll())
    }

    /// Keeps a [`Pulse`] of the polls this poller ends, shared with its devices' status: a
    /// poller that ends none for `grace` longer than it said ([`Poller::next_poll_within`]) is
    /// stalled.
    pub fn watch(&mut self, grace: Duration) {
        let pulse = Arc::new(Pulse::new(self.next_poll_within(), grace));
        for d in &self.devices {
            d.t.status.watch(pulse.clone());
        }
        self.pulse = Some(pulse);
    }

    /// Requests per full cycle, by device id.
    pub fn requests_per_cycle(&self) -> Vec<(DeviceId, usize)> {
        self.devices
            .iter()
            .map(|d| (d.t.device.id.clone(), requests_per_cycle(&d.groups)))
            .collect()
    }

    /// Polls every group of device `di` once, now; `Err` when the device did not answer. Used by
    /// `energy-gateway probe`.
    pub async fn poll_once(&mut self, di: usize) -> Result<Vec<Reading>, String> {
        let mut out = Vec::new();
        let now = Instant::now();
        for g in &mut self.devices[di].groups {
            g.next_due = now;
        }
        match self.poll_groups(di, now, &mut out).await {
            Ok(()) => Ok(out),
            Err(f) => Err(f.error),
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        tracing::info!(link = %self.link.describe(), devices = self.devices.len(), "polling");
        loop {
            let Some((di, when)) = self
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| (i, d.next_time()))
                .min_by_key(|(_, t)| *t)
            else {
                return;
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = sleep_until(when) => {}
            }
            let readings = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.poll_device(di) => r,
            };
            let pulse = self.pulse.clone();
            let beat = |p: &Self| {
                if let Some(pulse) = &pulse {
                    pulse.beat(p.next_poll_within());
                }
            };
            beat(&self);
            if !readings.is_empty() {
                // Held back by a busy pipeline is waiting, not hanging.
                pulse.as_deref().inspect(|p| p.set_waiting(true));
                let sent = self.tx.send(SourceBatch::new(readings)).await;
                pulse.as_deref().inspect(|p| p.set_waiting(false));
                beat(&self);
                if sent.is_err() {
                    break; // pipeline shut down
                }
            }
        }
        tracing::debug!(link = %self.link.describe(), "poller stopped");
    }

    /// Polls the due groups of device `di`; returns what it read (also after a failure).
    async fn poll_device(&mut self, di: usize) -> Vec<Reading> {
        let mut out = Vec::new();
        let now = Instant::now();
        let result = self.poll_groups(di, now, &mut out).await;
        let d = &mut self.devices[di];
        // Every due group moves to its next slot, failed or not: the schedule never drifts.
        // Slots that passed before this poll began were missed; a poll that ends after the
        // next slot means the device (or its link) cannot keep to its interval.
        // (A device in backoff after failures skips slots on purpose: not counted.)
        let in_backoff = d.retry_at.is_some();
        let mut missed = 0u64;
        for g in d.groups.iter_mut().filter(|g| g.next_due <= now) {
            g.next_due += g.interval;
            while g.next_due <= now {
                g.next_due += g.interval;
                missed += 1;
            }
        }
        if in_backoff {
            missed = 0;
        }
        let ended = Instant::now();
        let behind = !in_backoff && (missed > 0 || d.groups.iter().any(|g| g.next_due < ended));
        let was_behind = d.t.status.is_behind();
        let missed_total = d.t.status.record_schedule(missed, behind);
        let id = &d.t.device.id;
        if behind && !was_behind {
            tracing::warn!(device = %id, link = %self.link.describe(), missed, missed_total, "device falling behind its poll interval: slots are skipped (too many devices or points on the link, a slow device, or a short interval)");
        } else if !behind && was_behind {
            tracing::info!(device = %id, missed_total, "device keeping to its poll interval again");
        }
        match result {
            Ok(()) => {
                if !d.t.status.is_online() {
                    tracing::info!(device = %id, link = %self.link.describe(), "device online");
                    d.log.reset();
                }
                d.t.status.record_success();
                d.failures_in_row = 0;
                d.retry_at = None;
                d.backoff = d.t.modbus.interval;
            }
            Err(f) => {
                if f.drop_link {
                    self.ctx = None;
                }
                d.failures_in_row += 1;
                let n = d.t.status.record_failure();
                if let Some(suppressed) = d.log.allow() {
                    tracing::warn!(device = %id, link = %self.link.describe(), consecutive_failures = n, suppressed, "poll failed: {}", f.error);
                }
                if d.failures_in_row >= d.t.modbus.degraded_after {
                    d.backoff = (d.backoff * 2)
                        .min(d.t.modbus.max_backoff)
                        .max(d.t.modbus.interval);
                    d.retry_at = Some(Instant::now() + d.backoff);
                    if d.failures_in_row == d.t.modbus.degraded_after {
                        tracing::warn!(device = %id, retry_in = ?d.backoff, "device degraded after {} failures in a row; retrying with backoff", d.failures_in_row);
                    }
                }
            }
        }
        out
    }

    async fn poll_groups(
        &mut self,
        di: usize,
        now: Instant,
        out: &mut Vec<Reading>,
    ) -> Result<(), PollFailure> {
        let (unit, limit) = {
            let m = &self.devices[di].t.modbus;
            (m.unit, m.timeout)
        };
        if self.ctx.is_none() {
            let ctx = self
                .link
                .connect(unit, limit)
                .await
                .map_err(|e| PollFailure {
                    error: format!("connect: {e}"),
                    drop_link: true,
                })?;
            self.ctx = Some(ctx);
            if !self.link.is_rtu() {
                // A new connection may be a restarted or replaced meter: ask again for what
                // it refused.
                self.devices[di].reprobe();
            }
        }
        if self.devices[di].reprobe_at.is_some_and(|t| t <= now) {
            self.devices[di].reprobe();
        }
        let gap = self.link.inter_frame_gap() + self.pause;
        let is_rtu = self.link.is_rtu();
        let n_groups = self.devices[di].groups.len();
        for gi in 0..n_groups {
            if self.devices[di].groups[gi].next_due > now {
                continue;
            }
            refused_readings(&self.devices[di], gi, now_ms(), out);
            // Requests still to send; a block refused with exception 2 comes back as halves.
            let mut work: Vec<Block> = self.devices[di].groups[gi].blocks.clone();
            work.reverse();
            while let Some(block) = work.pop() {
                if is_rtu || !self.pause.is_zero() {
                    if let Some(last) = self.last_frame {
                        sleep_until(last + gap).await;
                    }
                }
                let Some(ctx) = self.ctx.as_mut() else {
                    return Err(PollFailure {
                        error: "link closed".into(),
                        drop_link: true,
                    });
                };
                ctx.set_slave(Slave(unit));
                let ts = now_ms();
                let started = Instant::now();
                let req = async {
                    match block.kind {
                        RegisterKind::Holding => {
                            ctx.read_holding_registers(block.start, block.count).await
                        }
                        RegisterKind::Input => {
                            ctx.read_input_registers(block.start, block.count).await
                        }
                    }
                };
                let res = timeout(limit, req).await;
                self.last_frame = Some(Instant::now());
                let d = &mut self.devices[di];
                d.t.status.record_request(started.elapsed());
                match res {
                    Ok(Ok(Ok(regs))) if regs.len() == usize::from(block.count) => {
                        decode_block(d, gi, &block, &regs, ts, out);
                    }
                    Ok(Ok(Ok(regs))) => {
                        return Err(PollFailure {
                            error: format!(
                                "short answer: asked {} registers at {}, got {}",
                                block.count,
                                block.start,
                                regs.len()
                            ),
                            drop_link: true,
                        })
                    }
                    Ok(Ok(Err(exception)))
                        if exception == tokio_modbus::ExceptionCode::IllegalDataAddress =>
                    {
                        d.t.status.record_exception(u8::from(exception));
                        // One register of the block may be missing on this meter variant:
                        // read the halves, down to single values; a single value refused is
                        // remembered and planned around from now on.
                        match split_block(&block, &d.groups[gi].spans, d.t.modbus.even()) {
                            Some((a, b)) => {
                                work.push(b);
                                work.push(a);
                            }
                            None => {
                                let si = block.points[0];
                                let span = d.groups[gi].spans[si];
                                d.refuse(span);
                                refused_readings_of(d, gi, &[si], ts, out);
                            }
                        }
                    }
                    Ok(Ok(Err(exception))) => {
                        d.t.status.record_exception(u8::from(exception));
                        let reason =
                            format!("modbus exception {:#04x}: {exception}", u8::from(exception));
                        for &si in &block.points {
                            if let Source::Point(pi) = d.groups[gi].sources[si] {
                                out.push(Reading::bad(
                                    &d.t.device.id,
                                    d.t.device.points[pi].quantity,
                                    ts,
                                    &reason,
                                ));
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        // Which layer failed: the connection, or the device's answer.
                        let layer = match &e {
                            tokio_modbus::Error::Transport(io)
                                if io.kind() != std::io::ErrorKind::InvalidData =>
                            {
                                "transport"
                            }
                            _ => "protocol",
                        };
                        return Err(PollFailure {
                            error: format!("{layer}: {e}"),
                            drop_link: true,
                        });
                    }
                    Err(_) => {
                        return Err(PollFailure {
                            error: format!(
                                "read {:?} {}+{}: no answer within {limit:?}",
                                block.kind, block.start, block.count
                            ),
                            drop_link: true,
                        })
                    }
                }
            }
        }
        Ok(())
    }
}

/// Halves of a block by its values (in register order), each a request of its own (even length
/// when the device needs it); `None` for a block of one value.
fn split_block(block: &Block, spans: &[Span], even: bool) -> Option<(Block, Block)> {
    if block.points.len() < 2 {
        return None;
    }
    let mut points = block.points.clone();
    points.sort_by_key(|&i| spans[i].register);
    let second = points.split_off(points.len() / 2);
    let sub = |points: Vec<usize>| {
        let start = points
            .iter()
            .map(|&i| spans[i].register)
            .min()
            .unwrap_or(block.start);
        let end = points
            .iter()
            .map(|&i| u32::from(spans[i].register) + u32::from(spans[i].registers))
            .max()
            .unwrap_or(u32::from(start));
        let mut count = (end - u32::from(start)) as u16;
        if even && count % 2 == 1 && end < u32::from(u16::MAX) {
            count += 1;
        }
        Block {
            kind: block.kind,
            start,
            count,
            points,
        }
    };
    Some((sub(points), sub(second)))
}

/// Bad readings for the values of group `gi` left out because the device refused a register.
fn refused_readings(d: &DeviceState, gi: usize, ts: i64, out: &mut Vec<Reading>) {
    refused_readings_of(d, gi, &d.groups[gi].refused, ts, out);
}

fn refused_readings_of(
    d: &DeviceState,
    gi: usize,
    sources: &[usize],
    ts: i64,
    out: &mut Vec<Reading>,
) {
    for &si in sources {
        if let Source::Point(pi) = d.groups[gi].sources[si] {
            let p = &d.t.device.points[pi];
            out.push(Reading::bad(
                &d.t.device.id,
                p.quantity,
                ts,
                format!(
                    "modbus exception 0x02: illegal data address ({:?} register {}); not asked again until re-probed",
                    p.kind, p.register
                ),
            ));
        }
    }
}

/// Decodes one block's registers into readings (points) or ratio values.
fn decode_block(
    d: &mut DeviceState,
    gi: usize,
    block: &Block,
    regs: &[u16],
    ts: i64,
    out: &mut Vec<Reading>,
) {
    for &si in &block.points {
        match d.groups[gi].sources[si] {
            Source::Ratio(ri) => {
                let r = &d.t.device.ratios[ri];
                let off = usize::from(r.register - block.start);
                let n = usize::from(r.value_type.registers());
                match decode_raw(&regs[off..off + n], r.value_type, r.order) {
                    Ok((v, _)) if (v * r.scale).is_finite() && v * r.scale > 0.0 => {
                        d.ratios.insert(r.name.clone(), v * r.scale);
                    }
                    Ok((v, _)) => {
                        tracing::warn!(device = %d.t.device.id, ratio = %r.name, "implausible ratio {v}; keeping the previous one");
                    }
                    Err(e) => tracing::warn!(device = %d.t.device.id, ratio = %r.name, "{e}"),
                }
            }
            Source::Point(pi) => {
                let p = &d.t.device.points[pi];
                let off = usize::from(p.register - block.start);
                let n = usize::from(p.value_type.registers());
                out.push(decode_point(
                    &d.t.device.id,
                    p,
                    &regs[off..off + n],
                    &d.ratios,
                    ts,
                ));
            }
        }
    }
}

/// One point's reading from its registers: sentinels and NaN give bad readings, bit fields give
/// 0/1, then scale, offset and ratios apply.
pub fn decode_point(
    device: &str,
    p: &crate::acquisition::config::PointConfig,
    regs: &[u16],
    ratios: &HashMap<String, f64>,
    ts: i64,
) -> Reading {
    let (raw, bits) = match decode_raw(regs, p.value_type, p.order) {
        Ok(v) => v,
        Err(e) => return Reading::bad(device, p.quantity, ts, e),
    };
    if p.not_available.contains(&bits) {
        return Reading::bad(
            device,
            p.quantity,
            ts,
            format!("meter reports not available ({bits:#x})"),
        );
    }
    let raw = match p.bit {
        Some(b) => ((bits >> b) & 1) as f64,
        None => raw,
    };
    let mut v = raw * p.scale + p.offset;
    for name in &p.multiply_by {
        match ratios.get(name) {
            Some(r) => v *= r,
            None => {
                return Reading::bad(
                    device,
                    p.quantity,
                    ts,
                    format!("ratio `{name}` not read from the meter yet"),
                )
            }
        }
    }
    Reading::new(device, p.quantity, v, ts)
}
