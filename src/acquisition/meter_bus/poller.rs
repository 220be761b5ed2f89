//! One task per DL/T 645 or CJ/T 188 line: it owns the serial port (or the TCP connection to a
//! serial device server) and asks its meters one item at a time. Like the Modbus scheduler,
//! points are grouped by poll interval, a meter that fails `degraded_after` polls in a row is
//! retried with backoff, and every answer must come within the meter's timeout, so a silent
//! meter costs the others at most one timeout per retry. Answers are matched by address,
//! control code and identifier; anything else on the line (garbage, bad checksums, other
//! meters' answers) is counted and skipped.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use super::templates::{BusPoint, Decode};
use crate::acquisition::bcd::{self, MeterTime};
use crate::acquisition::cjt188::{self, Dimension};
use crate::acquisition::dlt645::{self, Scan, Version};
use crate::acquisition::modbus::link::{ByteStream, Link};
use crate::acquisition::{DeviceStatus, LogLimiter, SourceBatch};
use crate::readings::{now_ms, Quantity, Reading};

/// Who a meter is on its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Dlt645 {
        version: Version,
        address: dlt645::Address,
    },
    Cjt188 {
        meter_type: u8,
        address: cjt188::Address,
    },
}

/// One meter on a line with its points and timing.
#[derive(Debug, Clone)]
pub struct BusDevice {
    pub id: crate::readings::DeviceId,
    pub target: Target,
    pub points: Vec<BusPoint>,
    pub interval: Duration,
    pub timeout: Duration,
    pub degraded_after: u32,
    pub max_backoff: Duration,
    pub status: Arc<DeviceStatus>,
}

/// Points of one identifier: one request.
#[derive(Debug, Clone)]
struct Item {
    di: u32,
    points: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Group {
    interval: Duration,
    items: Vec<Item>,
    next_due: Instant,
}

struct DeviceState {
    d: BusDevice,
    groups: Vec<Group>,
    failures_in_row: u32,
    retry_at: Option<Instant>,
    backoff: Duration,
    log: LogLimiter,
}

impl DeviceState {
    fn new(d: BusDevice) -> DeviceState {
        let mut groups: Vec<Group> = Vec::new();
        let now = Instant::now();
        for (i, p) in d.points.iter().enumerate() {
            let interval = p.interval.unwrap_or(d.interval);
            let g = match groups.iter_mut().position(|g| g.interval == interval) {
                Some(gi) => &mut groups[gi],
                None => {
                    groups.push(Group {
                        interval,
                        items: Vec::new(),
                        next_due: now,
                    });
                    let last = groups.len() - 1;
                    &mut groups[last]
                }
            };
            match g.items.iter_mut().find(|it| it.di == p.di) {
                Some(it) => it.points.push(i),
                None => g.items.push(Item {
                    di: p.di,
                    points: vec![i],
                }),
            }
        }
        groups.sort_by_key(|g| g.interval);
        DeviceState {
            backoff: d.interval,
            d,
            groups,
            failures_in_row: 0,
            retry_at: None,
            log: LogLimiter::new(Duration::from_secs(60)),
        }
    }

    fn next_time(&self) -> Instant {
        let due = self
            .groups
            .iter()
            .map(|g| g.next_due)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        self.retry_at.map_or(due, |r| r.max(due))
    }
}

/// Why an exchange got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAnswer {
    Timeout(Duration),
    Line(String),
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::Timeout(t) => write!(f, "no answer within {t:?}"),
            NoAnswer::Line(e) => f.write_str(e),
        }
    }
}

/// The line: its stream, receive buffer and frame pacing.
pub struct Line {
    link: Link,
    gap: Duration,
    stream: Option<Box<dyn ByteStream>>,
    buf: Vec<u8>,
    last_frame: Option<Instant>,
    ser: u8,
    /// Frames and bytes that were not a valid answer (noise, bad checksum), since start.
    pub garbage: u64,
}

impl Line {
    pub fn new(link: Link, pause: Duration) -> Line {
        Line {
            gap: link.inter_frame_gap() + pause,
            link,
            stream: None,
            buf: Vec::new(),
            last_frame: None,
            ser: 0,
            garbage: 0,
        }
    }

    pub fn describe(&self) -> String {
        self.link.describe()
    }

    /// Sends `request` and waits until `limit` for the frame `accept` takes. Other frames and
    /// garbage are skipped (garbage is counted).
    pub async fn exchange<F>(
        &mut self,
        request: &[u8],
        limit: Duration,
        scan: fn(&[u8]) -> Scan<F>,
        accept: impl Fn(&F) -> bool,
    ) -> Result<F, NoAnswer> {
        if self.stream.is_none() {
            let s = self
                .link
                .open_stream(limit)
                .await
                .map_err(|e| NoAnswer::Line(format!("open {}: {e}", self.link.describe())))?;
            self.stream = Some(s);
        }
        if let Some(last) = self.last_frame {
            sleep_until(last + self.gap).await;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(NoAnswer::Line("line closed".into()));
        };
        // Whatever arrived since the last exchange (a late answer) is not for this request.
        self.buf.clear();
        if let Err(e) = stream.write_all(request).await {
            self.stream = None;
            return Err(NoAnswer::Line(format!("write: {e}")));
        }
        let _ = stream.flush().await;
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; 256];
        loop {
            loop {
                match scan(&self.buf) {
                    Scan::Frame(f, used) => {
                        self.buf.drain(..used.min(self.buf.len()));
                        if accept(&f) {
                            self.last_frame = Some(Instant::now());
                            return Ok(f);
                        }
                    }
                    Scan::Garbage { skip, why } => {
                        self.garbage += 1;
                        tracing::debug!(link = %self.link.describe(), "skipped: {why}");
                        self.buf.drain(..skip.min(self.buf.len()));
                    }
                    Scan::Incomplete => break,
                }
            }
            if self.buf.len() > 4096 {
                self.garbage += 1;
                self.buf.clear();
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(NoAnswer::Line("line closed".into()));
            };
            match timeout_at(deadline, stream.read(&mut chunk)).await {
                Err(_) => {
                    self.last_frame = Some(Instant::now());
                    return Err(NoAnswer::Timeout(limit));
                }
                Ok(Ok(0)) => {
                    self.stream = None;
                    return Err(NoAnswer::Line("the line was closed".into()));
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    self.stream = None;
                    return Err(NoAnswer::Line(format!("read: {e}")));
                }
            }
        }
    }

    /// Reads item `di` of a meter: its data, or an abnormal answer as `Ok(Err(reason))`.
    pub async fn read_item(
        &mut self,
        target: Target,
        di: u32,
        limit: Duration,
        status: Option<&DeviceStatus>,
    ) -> Result<Result<Vec<u8>, String>, NoAnswer> {
        let garbage_before = self.garbage;
        let started = Instant::now();
        let r = match target {
            Target::Dlt645 { version, address } => {
                let req = dlt645::read_request(version, address, di);
                let wire = req.encode().map_err(NoAnswer::Line)?;
                let control = req.control;
                self.exchange(&wire, limit, dlt645::scan, |f: &dlt645::Frame| {
                    f.address == address && dlt645::answers(f, control)
                })
                .await
                .map(|f| match dlt645::read_answer(version, di, &f) {
                    Ok(dlt645::Answer::Data(d)) => Ok(d),
                    Ok(dlt645::Answer::Abnormal(code, why)) => {
                        if let Some(s) = status {
                            s.record_exception(code);
                        }
                        Err(why)
                    }
                    Err(e) => Err(e),
                })
            }
            Target::Cjt188 {
                meter_type,
                address,
            } => {
                self.ser = self.ser.wrapping_add(1);
                let di16 = di as u16;
                let wire = cjt188::read_request(meter_type, address, di16, self.ser)
                    .encode()
                    .map_err(NoAnswer::Line)?;
                self.exchange(&wire, limit, cjt188::scan, |f: &cjt188::Frame| {
                    f.address == address
                        && f.control & 0x80 != 0
                        && f.control & 0x1F == cjt188::READ_DATA
                })
                .await
                .map(|f| match cjt188::read_answer(di16, &f) {
                    Ok(cjt188::Answer::Data(d)) => Ok(d),
                    Ok(cjt188::Answer::Abnormal(code, why)) => {
                        if let Some(s) = status {
                            s.record_exception(code);
                        }
                        Err(why)
                    }
                    Err(e) => Err(e),
                })
            }
        };
        if let Some(s) = status {
            s.record_request(started.elapsed());
            for _ in garbage_before..self.garbage {
                s.record_garbage();
            }
        }
        r
    }
}

/// The dimension a CJ/T 188 unit code must have for `q`.
fn dimension_of(q: Quantity) -> Option<Dimension> {
    match q {
        Quantity::HeatEnergy => Some(Dimension::Energy),
        Quantity::HeatPower => Some(Dimension::Power),
        Quantity::WaterVolume | Quantity::GasVolume => Some(Dimension::Volume),
        Quantity::WaterFlow | Quantity::GasFlow => Some(Dimension::Flow),
        _ => None,
    }
}

/// A meter's local date-time as UTC milliseconds.
fn meter_time_ms(t: MeterTime, tz: chrono_tz::Tz) -> Result<i64, String> {
    let naive = t.to_naive()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.timestamp_millis())
        .ok_or_else(|| format!("{naive} does not exist in {tz}"))
}

/// The latest `MMDDhhmm` (fields `[MM, DD, hh, mm]`) in `tz` at most a day after `at_ms`.
fn latest_without_year(f: &[u32], tz: chrono_tz::Tz, at_ms: i64) -> Result<i64, String> {
    use chrono::Datelike;
    let [month, day, hour, minute] = f else {
        return Err(format!("{} date fields, expected MMDDhhmm", f.len()));
    };
    let year = tz
        .timestamp_millis_opt(at_ms)
        .single()
        .map(|d| d.year())
        .ok_or_else(|| format!("no date for {at_ms} ms"))?;
    let limit = at_ms + 86_400_000;
    // Four years back reach the last 29 February.
    (year - 4..=year)
        .rev()
        .filter_map(|year| {
            let t = MeterTime {
                year,
                month: *month,
                day: *day,
                hour: *hour,
                minute: *minute,
                second: 0,
            };
            meter_time_ms(t, tz).ok()
        })
        .find(|ms| *ms <= limit)
        .ok_or_else(|| format!("impossible meter date/time {f:?} (MMDDhhmm)"))
}

/// One point's value from its item's data (not the clock, see [`clock_offset`]); `at_ms` is
/// when it was read (the year of a date that has none).
pub fn decode_point(
    p: &BusPoint,
    data: &[u8],
    tz: chrono_tz::Tz,
    at_ms: i64,
) -> Result<f64, String> {
    let bytes = data.get(p.offset..p.end()).ok_or_else(|| {
        format!(
            "answer has {} data bytes, the point needs bytes {}..{}",
            data.len(),
            p.offset,
            p.end()
        )
    })?;
    let v = match p.decode {
        Decode::Number {
            format,
            signed,
            unit_code,
        } => {
            let v = bcd::decode(&bytes[..format.bytes], format, signed)?;
            if unit_code {
                let code = bytes[format.bytes];
                let (dim, factor) =
                    cjt188::unit(code).ok_or_else(|| format!("unknown unit code {code:#04x}"))?;
                if Some(dim) != dimension_of(p.quantity) {
                    return Err(format!(
                        "unit code {code:#04x} ({dim:?}) does not measure {}",
                        p.quantity
                    ));
                }
                v * factor
            } else {
                v
            }
        }
        Decode::DateTime => {
            let f = bcd::fields(bytes)?;
            let t = MeterTime {
                year: bcd::year_2000(f[0]),
                month: f[1],
                day: f[2],
                hour: f[3],
                minute: f[4],
                second: 0,
            };
            (meter_time_ms(t, tz)? / 1000) as f64
        }
        Decode::DateTimeNoYear => {
            (latest_without_year(&bcd::fields(bytes)?, tz, at_ms)? / 1000) as f64
        }
        Decode::Clock { .. } => return Err("the meter clock is read with its time item".into()),
    };
    Ok(v * p.scale)
}

/// Meter clock minus `gateway_ms`, in seconds, from the `YYMMDDWW` date and `hhmmss` time items.
pub fn clock_offset(
    date: &[u8],
    time: &[u8],
    tz: chrono_tz::Tz,
    gateway_ms: i64,
) -> Result<f64, String> {
    if date.len() < 4 || time.len() < 3 {
        return Err(format!(
            "date/time items of {} and {} bytes, expected 4 and 3",
            date.len(),
            time.len()
        ));
    }
    let d = bcd::fields(&date[..4])?; // YY MM DD WW
    let t = bcd::fields(&time[..3])?; // hh mm ss
    let meter = meter_time_ms(
        MeterTime {
            year: bcd::year_2000(d[0]),
            month: d[1],
            day: d[2],
            hour: t[0],
            minute: t[1],
            second: t[2],
        },
        tz,
    )?;
    Ok((meter - gateway_ms) as f64 / 1000.0)
}

/// Polls every meter of one line until cancelled.
pub struct BusPoller {
    line: Line,
    devices: Vec<DeviceState>,
    tz: chrono_tz::Tz,
    tx: mpsc::Sender<SourceBatch>,
}

impl BusPoller {
    pub fn new(
        line: Line,
        devices: Vec<BusDevice>,
        tz: chrono_tz::Tz,
        tx: mpsc::Sender<SourceBatch>,
    ) -> BusPoller {
        BusPoller {
            line,
            devices: devices.into_iter().map(DeviceState::new).collect(),
            tz,
            tx,
        }
    }

    /// Requests one pass over every point takes, by device (the clock takes two).
    pub fn requests_per_cycle(&self) -> Vec<(crate::readings::DeviceId, usize)> {
        self.devices
            .iter()
            .map(|s| {
                let n = s
                    .groups
                    .iter()
                    .flat_map(|g| &g.items)
                    .map(|it| {
                        1 + usize::from(
                            it.points
                                .iter()
                                .any(|&p| matches!(s.d.points[p].decode, Decode::Clock { .. })),
                        )
                    })
                    .sum();
                (s.d.id.clone(), n)
            })
            .collect()
    }

    /// Garbled frames seen on the line so far.
    pub fn garbage(&self) -> u64 {
        self.line.garbage
    }

    /// Reads every point of device `di` once, now (`energy-gateway probe`).
    pub async fn poll_once(&mut self, di: usize) -> Result<Vec<Reading>, String> {
        let now = Instant::now();
        for g in &mut self.devices[di].groups {
            g.next_due = now;
        }
        let mut out = Vec::new();
        poll_groups(&mut self.line, &self.devices[di], now, self.tz, &mut out).await?;
        Ok(out)
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        tracing::info!(link = %self.line.describe(), devices = self.devices.len(), "polling meters");
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
            if !readings.is_empty() && self.tx.send(SourceBatch::new(readings)).await.is_err() {
                break;
            }
        }
    }

    async fn poll_device(&mut self, di: usize) -> Vec<Reading> {
        let now = Instant::now();
        let mut out = Vec::new();
        let result = poll_groups(&mut self.line, &self.devices[di], now, self.tz, &mut out).await;
        let s = &mut self.devices[di];
        for g in s.groups.iter_mut().filter(|g| g.next_due <= now) {
            while g.next_due <= now {
                g.next_due += g.interval;
            }
        }
        let id = &s.d.id;
        match result {
            Ok(()) => {
                if !s.d.status.is_online() {
                    tracing::info!(device = %id, link = %self.line.describe(), "meter online");
                    s.log.reset();
                }
                s.d.status.record_success();
                s.failures_in_row = 0;
                s.retry_at = None;
                s.backoff = s.d.interval;
            }
            Err(e) => {
                s.failures_in_row += 1;
                let n = s.d.status.record_failure();
                if let Some(suppressed) = s.log.allow() {
                    tracing::warn!(device = %id, link = %self.line.describe(), consecutive_failures = n, suppressed, "poll failed: {e}");
                }
                if s.failures_in_row >= s.d.degraded_after {
                    s.backoff = (s.backoff * 2).min(s.d.max_backoff).max(s.d.interval);
                    s.retry_at = Some(Instant::now() + s.backoff);
                }
            }
        }
        out
    }
}

/// Reads the due items of one meter; stops at the first item without an answer.
async fn poll_groups(
    line: &mut Line,
    s: &DeviceState,
    now: Instant,
    tz: chrono_tz::Tz,
    out: &mut Vec<Reading>,
) -> Result<(), String> {
    let d = &s.d;
    for g in s.groups.iter().filter(|g| g.next_due <= now) {
        for item in &g.items {
            let ts = now_ms();
            let answer = line
                .read_item(d.target, item.di, d.timeout, Some(&d.status))
                .await
                .map_err(|e| format!("item {:X}: {e}", item.di))?;
            for &pi in &item.points {
                let p = &d.points[pi];
                let value = match (&answer, p.decode) {
                    (Err(why), _) => Err(why.clone()),
                    (Ok(date), Decode::Clock { time_di }) => {
                        let t = line
                            .read_item(d.target, time_di, d.timeout, Some(&d.status))
                            .await
                            .map_err(|e| format!("item {time_di:X}: {e}"))?;
                        let at = now_ms();
                        // Read just after midnight, the date read before may be yesterday's:
                        // read it again.
                        let date = match &t {
                            Ok(time) if time.get(1..3) == Some(&[0, 0]) => line
                                .read_item(d.target, item.di, d.timeout, Some(&d.status))
                                .await
                                .map_err(|e| format!("item {:X}: {e}", item.di))?,
                            _ => Ok(date.clone()),
                        };
                        t.and_then(|time| clock_offset(&date?, &time, tz, at))
                    }
                    (Ok(data), _) => decode_point(p, data, tz, ts),
                };
                out.push(match value {
                    Ok(v) => Reading::new(&d.id, p.quantity, v, ts),
                    Err(why) => Reading::bad(&d.id, p.quantity, ts, why),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquisition::bcd::BcdFormat;

    fn point(q: Quantity, format: &str, offset: usize, unit_code: bool) -> BusPoint {
        BusPoint {
            quantity: q,
            di: 0x901F,
            offset,
            decode: Decode::Number {
                format: BcdFormat::parse(format).unwrap(),
                signed: false,
                unit_code,
            },
            scale: 1.0,
            interval: None,
        }
    }

    #[test]
    fn unit_codes_convert_and_must_fit_the_quantity() {
        let tz = chrono_tz::Asia::Shanghai;
        // 1234.56 kWh of heat = 4.444416 GJ
        let p = point(Quantity::HeatEnergy, "XXXXXX.XX", 0, true);
        let v = decode_point(&p, &[0x56, 0x34, 0x12, 0x00, 0x05], tz, 0).unwrap();
        assert!((v - 4.444416).abs() < 1e-9, "{v}");
        // a volume unit for heat is refused, as is an unknown code
        assert!(decode_point(&p, &[0x56, 0x34, 0x12, 0x00, 0x2C], tz, 0).is_err());
        assert!(decode_point(&p, &[0x56, 0x34, 0x12, 0x00, 0x77], tz, 0).is_err());
        // too short
        assert!(decode_point(&p, &[0x56, 0x34], tz, 0).is_err());
    }

    #[test]
    fn demand_time_and_clock_offset_use_the_site_time_zone() {
        let tz = chrono_tz::Asia::Shanghai;
        let p = BusPoint {
            quantity: Quantity::MaxDemandImportTime,
            di: 0x0101_0000,
            offset: 3,
            decode: Decode::DateTime,
            scale: 1.0,
            interval: None,
        };
        // 26-11-29 08:15 Shanghai = 2026-11-29T00:15:00Z
        let data = [0x00, 0x25, 0x12, 0x15, 0x08, 0x29, 0x11, 0x26];
        assert_eq!(decode_point(&p, &data, tz, 0), Ok(1_795_911_300.0));
        // meter 2026-11-29 08:15:30 (Sunday, WW = 00) vs gateway 08:15:00
        let off = clock_offset(
            &[0x00, 0x29, 0x11, 0x26],
            &[0x30, 0x15, 0x08],
            tz,
            1_795_911_300_000,
        );
        assert_eq!(off, Ok(30.0));
        assert!(clock_offset(&[0x00, 0x31, 0x02, 0x26], &[0, 0, 0], tz, 0).is_err());
    }

    /// DL/T 645-1997 B010: the demand time `MMDDhhmm` has no year; it is the latest such moment
    /// not more than a day after the read.
    #[test]
    fn a_demand_time_without_year_is_the_latest_before_the_read() {
        let tz = chrono_tz::Asia::Shanghai;
        let p = BusPoint {
            quantity: Quantity::MaxDemandImportTime,
            di: 0xB010,
            offset: 0,
            decode: Decode::DateTimeNoYear,
            scale: 1.0,
            interval: None,
        };
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        let secs = |s: &str| (at(s) / 1000) as f64;
        // mm hh DD MM on the wire: 11-29 08:15
        let nov29 = [0x15, 0x08, 0x29, 0x11];
        assert_eq!(
            decode_point(&p, &nov29, tz, at("2026-12-07T10:00:00+08:00")),
            Ok(secs("2026-11-29T08:15:00+08:00"))
        );
        // Read in January: last year's November.
        assert_eq!(
            decode_point(&p, &nov29, tz, at("2027-01-02T10:00:00+08:00")),
            Ok(secs("2026-11-29T08:15:00+08:00"))
        );
        // A meter clock a few minutes ahead: still today.
        assert_eq!(
            decode_point(&p, &nov29, tz, at("2026-11-29T08:10:00+08:00")),
            Ok(secs("2026-11-29T08:15:00+08:00"))
        );
        // 29 February is found in the last leap year; 31 April in none.
        assert_eq!(
            decode_point(
                &p,
                &[0x00, 0x12, 0x29, 0x02],
                tz,
                at("2027-03-01T00:00:00+08:00")
            ),
            Ok(secs("2024-02-29T12:00:00+08:00"))
        );
        assert!(decode_point(&p, &[0x00, 0x12, 0x31, 0x04], tz, 0).is_err());
    }
}
