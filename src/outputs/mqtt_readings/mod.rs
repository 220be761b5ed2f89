//! Readings northbound over MQTT (`[outputs.mqtt_readings.NAME]`): every reading in the store,
//! delivered to a broker (a park's platform: EMQX, ThingsBoard, an IoT platform) by the
//! destination's own cursor, like the InfluxDB output. Messages go out with QoS 1 and the cursor
//! advances only over readings whose message the broker acknowledged (PUBACK), so a broker
//! restart or an unplugged uplink loses nothing: after a reconnect everything after the cursor
//! is sent again (at least once; a replay carries the same acquisition timestamps).
//!
//! Formats (`format`):
//! - `json`: one message per device poll (a run of consecutive readings of one device) on
//!   `topic` (`{site}`, `{device}` replaced): site, device, and per quantity its value (null
//!   when bad), unit, quality (with the reason when not good) and acquisition time in ms.
//! - `sparkplug_b`: Eclipse Sparkplug B. On every connection: NDEATH as the last will with
//!   `bdSeq` (0-255, one more per connection), NBIRTH (seq 0, `bdSeq`, `Node Control/Rebirth`),
//!   a DBIRTH per device with its metrics (name = quantity, alias = the store's series id,
//!   Double, `engUnit`), then DDATA per device poll with aliases only, the acquisition time per
//!   metric and `seq` 0-255 wrapping. A bad reading is a null metric with the `Quality`
//!   property 0 (bad), an estimated one has `Quality` 64 (uncertain). A new series is born with
//!   a new DBIRTH of its device first; an NCMD `Node Control/Rebirth` = true gets all births
//!   again. Births and data go out with QoS 1 (Sparkplug suggests QoS 0 for them; the PUBACK
//!   is what lets the cursor advance).
//!
//! The connection uses a clean session and is made anew after each loss (a new client, so
//! nothing queued for the old connection is sent behind the cursor's back or before the
//! births).

pub mod config;
pub mod sparkplug;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, Outgoing, Packet, QoS};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use self::config::{MqttReadingsConfig, ReadingsFormat};
use super::cursor::{CursorReading, ReadingCursor};
use super::influxdb::OutputStatus;
use crate::acquisition::mqtt::connection;
use crate::backoff::Backoff;
use crate::log_limit::LogLimiter;
use crate::readings::{now_ms, Quality, Quantity};
use sparkplug::{Metric, Property, Value};

/// Readings read from the store at once.
const BATCH: usize = 1000;

/// Cursor name of destination `name` in the store.
pub fn destination(name: &str) -> String {
    format!("mqtt_readings.{name}")
}

/// Runs of consecutive readings of one device without a repeated quantity: one device poll
/// each (a poll's readings are committed together, in order).
pub fn polls(rows: Vec<CursorReading>) -> Vec<Vec<CursorReading>> {
    let mut out: Vec<Vec<CursorReading>> = Vec::new();
    for r in rows {
        match out.last_mut() {
            Some(p) if p[0].device == r.device && p.iter().all(|x| x.quantity != r.quantity) => {
                p.push(r)
            }
            _ => out.push(vec![r]),
        }
    }
    out
}

/// The JSON message of one device poll.
pub fn json_payload(site: &str, poll: &[CursorReading]) -> String {
    let mut values = serde_json::Map::new();
    for r in poll {
        let mut v = json!({
            "value": r.value,
            "unit": r.quantity.unit(),
            "quality": r.quality.as_str(),
            "ts_ms": r.ts_ms,
        });
        match &r.quality {
            Quality::Good => {}
            Quality::Bad(why) | Quality::Estimated(why) => v["reason"] = json!(why),
        }
        values.insert(r.quantity.as_str().to_string(), v);
    }
    json!({
        "site": site,
        "device": &*poll[0].device,
        "ts_ms": poll.iter().map(|r| r.ts_ms).max(),
        "values": values,
    })
    .to_string()
}

/// One message to publish: the last reading id it carries (births carry none) and how many.
struct Outgoing1 {
    topic: String,
    payload: Vec<u8>,
    last_id: Option<i64>,
    readings: u64,
}

/// Sparkplug session state of the edge node.
#[derive(Default)]
struct Sparkplug {
    group: String,
    node: String,
    /// bdSeq of the current connection, and of the next one.
    bd_seq: u8,
    next_bd_seq: u8,
    seq: u8,
    /// Series born (in a DBIRTH) in this session.
    born: HashSet<i64>,
}

impl Sparkplug {
    fn topic(&self, kind: &str, device: Option<&str>) -> String {
        match device {
            Some(d) => format!("spBv1.0/{}/{kind}/{}/{d}", self.group, self.node),
            None => format!("spBv1.0/{}/{kind}/{}", self.group, self.node),
        }
    }

    fn next_seq(&mut self) -> u8 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    fn bd_seq_metric(&self) -> Metric {
        Metric {
            name: Some("bdSeq".into()),
            alias: None,
            timestamp: Some(now_ms() as u64),
            value: Value::UInt64(u64::from(self.bd_seq)),
            properties: vec![],
        }
    }

    fn ndeath(&self) -> Vec<u8> {
        sparkplug::encode(now_ms() as u64, &[self.bd_seq_metric()], None)
    }

    fn nbirth(&mut self) -> Outgoing1 {
        self.seq = 0;
        self.born.clear();
        let metrics = [
            self.bd_seq_metric(),
            Metric {
                name: Some(sparkplug::REBIRTH.into()),
                alias: None,
                timestamp: Some(now_ms() as u64),
                value: Value::Boolean(false),
                properties: vec![],
            },
        ];
        let seq = self.next_seq();
        Outgoing1 {
            topic: self.topic("NBIRTH", None),
            payload: sparkplug::encode(now_ms() as u64, &metrics, Some(seq)),
            last_id: None,
            readings: 0,
        }
    }

    fn dbirth(&mut self, device: &str, series: &[(i64, Quantity)]) -> Outgoing1 {
        let ts = now_ms() as u64;
        let metrics: Vec<Metric> = series
            .iter()
            .map(|(id, q)| Metric {
                name: Some(q.as_str().into()),
                alias: Some(*id as u64),
                timestamp: Some(ts),
                value: Value::Null(sparkplug::DOUBLE),
                properties: vec![("engUnit".into(), Property::String(q.unit().into()))],
            })
            .collect();
        self.born.extend(series.iter().map(|(id, _)| *id));
        let seq = self.next_seq();
        Outgoing1 {
            topic: self.topic("DBIRTH", Some(device)),
            payload: sparkplug::encode(ts, &metrics, Some(seq)),
            last_id: None,
            readings: 0,
        }
    }

    fn ddata(&mut self, poll: &[CursorReading]) -> Outgoing1 {
        let metrics: Vec<Metric> = poll
            .iter()
            .map(|r| {
                let (value, properties) = match (&r.quality, r.value) {
                    (Quality::Good, Some(v)) => (Value::Double(v), vec![]),
                    (Quality::Estimated(_), Some(v)) => (
                        Value::Double(v),
                        vec![("Quality".into(), Property::Int32(64))],
                    ),
                    _ => (
                        Value::Null(sparkplug::DOUBLE),
                        vec![("Quality".into(), Property::Int32(0))],
                    ),
                };
                Metric {
                    name: None,
                    alias: Some(r.series_id as u64),
                    timestamp: Some(r.ts_ms as u64),
                    value,
                    properties,
                }
            })
            .collect();
        let seq = self.next_seq();
        Outgoing1 {
            topic: self.topic("DDATA", Some(&poll[0].device)),
            payload: sparkplug::encode(now_ms() as u64, &metrics, Some(seq)),
            last_id: poll.last().map(|r| r.id),
            readings: poll.len() as u64,
        }
    }
}

/// One readings destination.
pub struct MqttReadingsOutput {
    name: String,
    dest: String,
    cfg: MqttReadingsConfig,
    site: String,
    cursor: ReadingCursor,
    status: Arc<OutputStatus>,
    connected: Arc<AtomicBool>,
    sp: Sparkplug,
}

/// What a connection's loop ended with.
enum End {
    Lost(String),
    Stopped,
}

impl MqttReadingsOutput {
    /// Prepares destination `name` (the configuration must have passed the check).
    pub fn new(
        name: &str,
        cfg: &MqttReadingsConfig,
        site: &str,
        store_path: &std::path::Path,
        status: Arc<OutputStatus>,
        connected: Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        let dest = destination(name);
        let cursor = ReadingCursor::open(store_path, &dest, status.clone())?;
        Ok(MqttReadingsOutput {
            name: name.to_string(),
            dest,
            sp: Sparkplug {
                group: cfg.group_id.clone(),
                node: cfg.edge_node.replace("{site}", site),
                ..Sparkplug::default()
            },
            cfg: cfg.clone(),
            site: site.to_string(),
            cursor,
            status,
            connected,
        })
    }

    fn sparkplug(&self) -> bool {
        self.cfg.format == ReadingsFormat::SparkplugB
    }

    /// Births of the node and of every device with series in the store.
    async fn births(&mut self) -> anyhow::Result<Vec<Outgoing1>> {
        let mut out = vec![self.sp.nbirth()];
        let mut by_device: BTreeMap<String, Vec<(i64, Quantity)>> = BTreeMap::new();
        for (id, d, q) in self.cursor.all_series().await? {
            by_device.entry(d).or_default().push((id, q));
        }
        for (d, series) in by_device {
            out.push(self.sp.dbirth(&d, &series));
        }
        Ok(out)
    }

    /// The next messages to send (at most `room` device polls); empty when nothing waits.
    async fn next_messages(&mut self, room: usize) -> anyhow::Result<Vec<Outgoing1>> {
        let rows = self.cursor.next(BATCH).await?;
        let full = rows.len() == BATCH;
        let mut polls = polls(rows);
        if full && polls.len() > 1 {
            polls.pop(); // it may go on in the next rows
        }
        polls.truncate(room);
        let mut out = Vec::new();
        for poll in polls {
            if !self.sparkplug() {
                let topic = self
                    .cfg
                    .topic
                    .replace("{site}", &self.site)
                    .replace("{device}", &poll[0].device);
                out.push(Outgoing1 {
                    topic,
                    payload: json_payload(&self.site, &poll).into_bytes(),
                    last_id: poll.last().map(|r| r.id),
                    readings: poll.len() as u64,
                });
                continue;
            }
            if poll.iter().any(|r| !self.sp.born.contains(&r.series_id)) {
                let device = poll[0].device.to_string();
                let mut series: Vec<(i64, Quantity)> = self
                    .cursor
                    .all_series()
                    .await?
                    .into_iter()
                    .filter(|(_, d, _)| *d == device)
                    .map(|(id, _, q)| (id, q))
                    .collect();
                for r in &poll {
                    if !series.iter().any(|(id, _)| *id == r.series_id) {
                        series.push((r.series_id, r.quantity));
                    }
                }
                out.push(self.sp.dbirth(&device, &series));
            }
            out.push(self.sp.ddata(&poll));
        }
        Ok(out)
    }

    /// Delivers until `stop` is cancelled, then for at most `drain` while readings wait.
    pub async fn run(
        mut self,
        mut committed: watch::Receiver<i64>,
        stop: CancellationToken,
        drain: Duration,
    ) {
        let mcfg = self.cfg.connection(&self.site, &self.name);
        let mut backoff = Backoff::with_limits(Duration::from_secs(1), mcfg.max_backoff);
        let mut log = LogLimiter::new(Duration::from_secs(60));
        tracing::info!(output = %self.dest, url = %reqwest::Url::parse(&mcfg.url).map(|u| crate::redact::url(&u)).unwrap_or_default(), "mqtt readings output started");
        loop {
            let end = match connection::options(&mcfg, &self.site, "") {
                Ok(opts) => {
                    self.connection(opts, &mut committed, &stop, drain, &mut backoff)
                        .await
                }
                Err(e) => End::Lost(e),
            };
            self.connected.store(false, Ordering::Relaxed);
            self.cursor.rewind();
            match end {
                End::Stopped => break,
                End::Lost(e) => {
                    self.status.down.mark_down();
                    if stop.is_cancelled() {
                        break;
                    }
                    let delay = backoff.next_delay();
                    if let Some(suppressed) = log.allow() {
                        tracing::warn!(output = %self.dest, suppressed, "disconnected, retrying in {delay:?}: {e}");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        tracing::info!(output = %self.dest, "mqtt readings output stopped");
    }

    /// One connection, from connect to loss or stop.
    async fn connection(
        &mut self,
        mut opts: rumqttc::MqttOptions,
        committed: &mut watch::Receiver<i64>,
        stop: &CancellationToken,
        drain: Duration,
        backoff: &mut Backoff,
    ) -> End {
        opts.set_clean_session(true);
        let sparkplug = self.sparkplug();
        let ncmd = self.sp.topic("NCMD", None);
        if sparkplug {
            self.sp.bd_seq = self.sp.next_bd_seq;
            self.sp.next_bd_seq = self.sp.next_bd_seq.wrapping_add(1);
            opts.set_last_will(LastWill::new(
                self.sp.topic("NDEATH", None),
                self.sp.ndeath(),
                QoS::AtLeastOnce,
                false,
            ));
        }
        let max_in_flight = self.cfg.max_in_flight.max(1);
        let (client, mut eventloop) = AsyncClient::new(opts, 2 * max_in_flight + 64);
        // Published, not yet written out; written out, waiting for the PUBACK.
        let mut queued: VecDeque<(Option<i64>, u64)> = VecDeque::new();
        let mut in_flight: HashMap<u16, (Option<i64>, u64)> = HashMap::new();
        let mut connected = false;
        let mut idle = false;
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut send: Vec<Outgoing1> = Vec::new();
        // The store writer's commit signal; closed once the writer has stopped (shutdown).
        let mut committed_open = true;
        loop {
            if drain_until.is_none() && stop.is_cancelled() {
                drain_until = Some(tokio::time::Instant::now() + drain);
            }
            if let Some(d) = drain_until {
                let done = idle && self.cursor.in_flight() == 0;
                if tokio::time::Instant::now() >= d || !connected || done {
                    break;
                }
            }
            let mut fill = false;
            tokio::select! {
                _ = stop.cancelled(), if drain_until.is_none() => continue,
                _ = tick.tick(), if connected => fill = true,
                r = committed.changed(), if connected && committed_open => {
                    committed_open = r.is_ok();
                    fill = true;
                }
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        self.connected.store(true, Ordering::Relaxed);
                        self.status.down.mark_up();
                        backoff.reset();
                        tracing::info!(output = %self.dest, "connected to the broker");
                        if sparkplug {
                            if let Err(e) = client.try_subscribe(ncmd.clone(), QoS::AtLeastOnce) {
                                return End::Lost(format!("subscribe {ncmd}: {e}"));
                            }
                            match self.births().await {
                                Ok(b) => send.extend(b),
                                Err(e) => return End::Lost(format!("births: {e}")),
                            }
                        }
                        fill = true;
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(k) = queued.pop_front() {
                            in_flight.insert(pkid, k);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        if let Some((Some(id), n)) = in_flight.remove(&a.pkid) {
                            if let Err(e) = self.cursor.confirmed(id, n).await {
                                tracing::error!(output = %self.dest, "cannot advance the cursor (the readings will be sent again): {e}");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if sparkplug && p.topic == ncmd => {
                        match sparkplug::command_metrics(&p.payload) {
                            Ok(m) if m.iter().any(|(n, v)| n == sparkplug::REBIRTH && *v) => {
                                tracing::info!(output = %self.dest, "rebirth requested");
                                match self.births().await {
                                    Ok(b) => send.extend(b),
                                    Err(e) => return End::Lost(format!("births: {e}")),
                                }
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(output = %self.dest, "unreadable NCMD: {e}"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return End::Lost(e.to_string()),
                }
            }
            if fill && connected {
                let room = max_in_flight.saturating_sub(self.cursor.in_flight());
                if room > 0 && send.is_empty() {
                    match self.next_messages(room).await {
                        Ok(m) => {
                            idle = m.is_empty();
                            send.extend(m);
                        }
                        Err(e) => {
                            tracing::error!(output = %self.dest, "cannot read the store: {e}");
                        }
                    }
                }
            }
            for m in send.drain(..) {
                if let Err(e) = client.try_publish(m.topic, QoS::AtLeastOnce, false, m.payload) {
                    // A full request queue: start again from the cursor on a new connection.
                    return End::Lost(format!("publish: {e}"));
                }
                queued.push_back((m.last_id, m.readings));
                if let Some(id) = m.last_id {
                    self.cursor.sent(id);
                }
                self.status.requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        if connected {
            if sparkplug {
                // A clean stop says so itself (the will is for disappearing).
                let _ = client.try_publish(
                    self.sp.topic("NDEATH", None),
                    QoS::AtLeastOnce,
                    false,
                    self.sp.ndeath(),
                );
            }
            super::mqtt::disconnect(&client, &mut eventloop).await;
        }
        End::Stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: i64, device: &str, quantity: Quantity, quality: Quality) -> CursorReading {
        CursorReading {
            id,
            series_id: id,
            device: device.into(),
            quantity,
            ts_ms: 1_000 + id,
            value: (quality != Quality::Bad("x".into())).then_some(id as f64),
            quality,
        }
    }

    #[test]
    fn a_poll_ends_at_another_device_or_a_repeated_quantity() {
        let rows = vec![
            r(1, "a", Quantity::ActivePower, Quality::Good),
            r(2, "a", Quantity::Frequency, Quality::Good),
            r(3, "b", Quantity::ActivePower, Quality::Good),
            r(4, "b", Quantity::ActivePower, Quality::Good),
        ];
        let p: Vec<Vec<i64>> = polls(rows)
            .iter()
            .map(|p| p.iter().map(|r| r.id).collect())
            .collect();
        assert_eq!(p, vec![vec![1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn json_says_unit_quality_and_why_a_value_is_missing() {
        let poll = [
            r(1, "a", Quantity::ActivePower, Quality::Good),
            r(2, "a", Quantity::Frequency, Quality::Bad("x".into())),
        ];
        let v: serde_json::Value = serde_json::from_str(&json_payload("s", &poll)).unwrap();
        assert_eq!(v["device"], "a");
        assert_eq!(v["ts_ms"], 1_002);
        assert_eq!(v["values"]["active_power"]["value"], 1.0);
        assert_eq!(v["values"]["active_power"]["unit"], "kW");
        assert_eq!(v["values"]["frequency"]["value"], serde_json::Value::Null);
        assert_eq!(v["values"]["frequency"]["quality"], "bad");
        assert_eq!(v["values"]["frequency"]["reason"], "x");
    }
}
