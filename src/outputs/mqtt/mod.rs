//! MQTT output: the gateway's status, alert transitions and site indicators, published to the
//! park's broker.
//!
//! - Status: retained `online` on connect; the broker publishes the retained last will
//!   `offline` when the gateway disappears, and the gateway publishes `offline` itself on a clean
//!   shutdown.
//! - Alerts: every transition in the store's alert history (`alert_events`), in order.
//! - Indicators: a site summary every `indicators_every` and whenever the accounts change
//!   ([`indicators`]), written to a durable outbox table (`mqtt_outbox`) first.
//!
//! Alerts and indicators are delivered at least once: QoS 1, and a per-stream cursor in the
//! store advances only when the broker's PUBACK for that message arrived (`publish()` only
//! queues). After a disconnect everything not acknowledged is sent again from the cursor. This
//! connection uses a clean session of its own (client id suffix `-pub`), so the client library
//! never resends behind the cursor's back.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, Outgoing, Packet, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub mod indicators;

use crate::backoff::Backoff;
use crate::storage::consumer::{Consumer, Feed};
use crate::storage::feeds::FeedStore;

use crate::acquisition::config::MqttConfig;
use crate::acquisition::mqtt::connection::{self, topic};
use crate::log_limit::LogLimiter;
use crate::settings::SiteConfig;

/// Most messages waiting for a PUBACK at once.
const MAX_IN_FLIGHT: usize = 64;

/// Counters of the MQTT output.
#[derive(Debug, Default)]
pub struct MqttOutputStats {
    pub connected: std::sync::atomic::AtomicBool,
    /// Since when the broker has not been reachable (`/readyz`).
    pub down: crate::health::Liveness,
    pub published: std::sync::atomic::AtomicU64,
    pub acknowledged: std::sync::atomic::AtomicU64,
}

/// The two durable streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stream {
    Alerts,
    Outbox,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Alerts => "alerts",
            Stream::Outbox => "outbox",
        }
    }
}

impl Stream {
    /// Index of the stream's consumer.
    fn index(self) -> usize {
        match self {
            Stream::Alerts => 0,
            Stream::Outbox => 1,
        }
    }
}

/// One stream as a feed of the store's delivery consumer: messages (id, topic, payload, retain).
#[derive(Clone)]
struct MqttFeed {
    outbox: MqttOutbox,
    stream: Stream,
    alerts_topic: Arc<str>,
    site: Arc<str>,
    park: Option<Arc<str>>,
}

impl Feed for MqttFeed {
    type Item = (i64, String, String, bool);
    type Pos = i64;

    fn load_cursor(&self) -> anyhow::Result<i64> {
        Ok(self.outbox.cursor(self.stream)?)
    }

    fn read_after(&self, after: i64, limit: usize) -> anyhow::Result<Vec<Self::Item>> {
        Ok(self.outbox.fetch(
            self.stream,
            after,
            limit,
            &self.alerts_topic,
            &self.site,
            self.park.as_deref(),
        )?)
    }

    fn store_cursor(&self, to: i64) -> anyhow::Result<()> {
        Ok(self.outbox.set_cursor(self.stream, to)?)
    }
}

/// What a queued publish was.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Status,
    Msg(Stream, i64),
}

/// The outbox and cursor tables, on a connection of their own.
#[derive(Clone)]
pub struct MqttOutbox {
    db: FeedStore,
}

impl MqttOutbox {
    pub fn open(path: &std::path::Path) -> crate::storage::Result<Self> {
        Ok(MqttOutbox {
            db: FeedStore::open(path)?,
        })
    }

    /// Queues a message durably.
    pub fn enqueue(&self, topic: &str, payload: &str, retain: bool) -> crate::storage::Result<i64> {
        self.db.outbox_enqueue(topic, payload, retain)
    }

    fn cursor(&self, s: Stream) -> crate::storage::Result<i64> {
        self.db.mqtt_cursor(s.name())
    }

    fn set_cursor(&self, s: Stream, id: i64) -> crate::storage::Result<()> {
        self.db.set_mqtt_cursor(s.name(), id)
    }

    /// Messages of a stream after `after`: (id, topic, payload, retain).
    fn fetch(
        &self,
        s: Stream,
        after: i64,
        limit: usize,
        alerts_topic: &str,
        site: &str,
        park: Option<&str>,
    ) -> crate::storage::Result<Vec<(i64, String, String, bool)>> {
        match s {
            Stream::Outbox => Ok(self
                .db
                .outbox_after(after, limit)?
                .into_iter()
                .map(|m| (m.id, m.topic, m.payload, m.retain))
                .collect()),
            Stream::Alerts => Ok(self
                .db
                .alerts_after(after, limit, false)?
                .into_iter()
                .map(|a| {
                    let unit = a
                        .quantity
                        .parse::<crate::readings::Quantity>()
                        .map(|q| q.unit())
                        .unwrap_or("");
                    let payload = json!({
                        "site": site,
                        "park": park,
                        "id": a.id,
                        "rule": a.rule,
                        "device": a.device,
                        "quantity": a.quantity,
                        "unit": unit,
                        "state": a.state,
                        "severity": a.severity,
                        "value": a.value,
                        "message": a.message,
                        "ts_ms": a.ts_ms,
                        "time": chrono::DateTime::from_timestamp_millis(a.ts_ms).map(|t| t.to_rfc3339()),
                    });
                    (a.id, alerts_topic.to_string(), payload.to_string(), false)
                })
                .collect()),
        }
    }
}

/// Publishes until cancelled.
pub struct MqttOutput {
    /// `[mqtt]`: the broker and what to publish where.
    mqtt: MqttConfig,
    /// The site id and park (in topics, the client id and the messages).
    site: SiteConfig,
    outbox: MqttOutbox,
    stats: Arc<MqttOutputStats>,
}

impl MqttOutput {
    pub fn new(
        mqtt: MqttConfig,
        site: SiteConfig,
        store_path: PathBuf,
        stats: Arc<MqttOutputStats>,
    ) -> anyhow::Result<Self> {
        let outbox = MqttOutbox::open(&store_path)?;
        Ok(MqttOutput {
            mqtt,
            site,
            outbox,
            stats,
        })
    }

    /// The durable outbox (to queue indicator messages).
    pub fn outbox(&self) -> MqttOutbox {
        self.outbox.clone()
    }

    pub async fn run(self, stop: CancellationToken) {
        use std::sync::atomic::Ordering;
        let mcfg = self.mqtt.clone();
        if !mcfg.publish.enabled {
            return;
        }
        let site = self.site.id.clone();
        let park = self.site.park.clone();
        let status_topic = topic(&mcfg.publish.status_topic, &site);
        let alerts_topic = topic(&mcfg.publish.alerts_topic, &site);
        let mut opts = match connection::options(&mcfg, &site, "-pub") {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("mqtt output not started: {e}");
                return;
            }
        };
        opts.set_clean_session(true);
        opts.set_last_will(LastWill::new(
            status_topic.clone(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(opts, 2 * MAX_IN_FLIGHT);
        let mut backoff = Backoff::with_limits(Duration::from_secs(1), mcfg.max_backoff);
        let mut log = LogLimiter::new(Duration::from_secs(60));
        let mut consumers: Vec<Consumer<MqttFeed>> = [Stream::Alerts, Stream::Outbox]
            .into_iter()
            .map(|stream| {
                let feed = MqttFeed {
                    outbox: self.outbox.clone(),
                    stream,
                    alerts_topic: alerts_topic.as_str().into(),
                    site: site.as_str().into(),
                    park: park.as_deref().map(Arc::from),
                };
                Consumer::new(feed, MAX_IN_FLIGHT / 2)
            })
            .collect();
        let mut queued: VecDeque<Key> = VecDeque::new(); // published, not yet written out
        let mut in_flight: HashMap<u16, Key> = HashMap::new();
        let mut connected = false;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut drain_until: Option<tokio::time::Instant> = None;
        loop {
            if drain_until.is_none() && stop.is_cancelled() {
                drain_until = Some(tokio::time::Instant::now() + Duration::from_secs(2));
            }
            if let Some(d) = drain_until {
                let idle = consumers.iter().all(|c| c.in_flight() == 0);
                if tokio::time::Instant::now() >= d || !connected || idle {
                    break;
                }
            }
            tokio::select! {
                _ = stop.cancelled(), if drain_until.is_none() => continue,
                _ = tick.tick(), if connected => {
                    let busy = consumers.iter().map(Consumer::in_flight).sum::<usize>();
                    if busy >= MAX_IN_FLIGHT {
                        continue;
                    }
                    for c in consumers.iter_mut() {
                        let s = c.feed().stream;
                        let msgs = match c.next().await {
                            Ok(m) => m,
                            Err(e) => {
                                tracing::error!("mqtt outbox: {e}");
                                continue;
                            }
                        };
                        for (id, t, payload, retain) in msgs {
                            if client.try_publish(t, QoS::AtLeastOnce, retain, payload).is_err() {
                                break;
                            }
                            queued.push_back(Key::Msg(s, id));
                            c.sent(id);
                            self.stats.published.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        self.stats.connected.store(true, Ordering::Relaxed);
                        self.stats.down.mark_up();
                        backoff.reset();
                        log.reset();
                        tracing::info!(url = %mcfg.url, "mqtt output connected");
                        if client.try_publish(status_topic.clone(), QoS::AtLeastOnce, true, "online").is_ok() {
                            queued.push_back(Key::Status);
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(k) = queued.pop_front() {
                            in_flight.insert(pkid, k);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        if let Some(Key::Msg(s, id)) = in_flight.remove(&a.pkid) {
                            self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = consumers[s.index()].confirmed(id).await {
                                tracing::error!("mqtt outbox: {e}");
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        connected = false;
                        self.stats.connected.store(false, Ordering::Relaxed);
                        self.stats.down.mark_down();
                        // Everything not acknowledged goes again from the cursors.
                        queued.clear();
                        in_flight.clear();
                        for c in consumers.iter_mut() {
                            c.rewind();
                        }
                        if drain_until.is_some() {
                            break;
                        }
                        let delay = backoff.next_delay();
                        if let Some(suppressed) = log.allow() {
                            tracing::warn!(url = %mcfg.url, suppressed, "mqtt output disconnected, retrying in {delay:?}: {e}");
                        }
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        }
        if connected {
            // A clean stop says so itself (the last will is only for disappearing).
            let _ = client.try_publish(status_topic, QoS::AtLeastOnce, true, "offline");
            disconnect(&client, &mut eventloop).await;
        }
        self.stats
            .connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!("mqtt output stopped");
    }
}

/// Sends what is queued and disconnects, waiting at most half a second.
pub async fn disconnect(client: &AsyncClient, eventloop: &mut rumqttc::EventLoop) {
    let _ = client.try_disconnect();
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        tokio::select! {
            r = eventloop.poll() => if matches!(r, Err(_) | Ok(Event::Outgoing(Outgoing::Disconnect))) { break },
            _ = tokio::time::sleep_until(until) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_is_durable_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sqlite");
        let o = MqttOutbox::open(&p).unwrap();
        o.enqueue("a/b", "{\"x\":1}", false).unwrap();
        o.enqueue("a/c", "{\"x\":2}", true).unwrap();
        o.set_cursor(Stream::Outbox, 1).unwrap();
        let o = MqttOutbox::open(&p).unwrap();
        assert_eq!(o.cursor(Stream::Outbox).unwrap(), 1);
        let rest = o.fetch(Stream::Outbox, 1, 10, "", "s", None).unwrap();
        assert_eq!(
            rest,
            vec![(2, "a/c".to_string(), "{\"x\":2}".to_string(), true)]
        );
        // no alerts yet: nothing, no error
        assert!(o
            .fetch(Stream::Alerts, 0, 10, "t", "s", None)
            .unwrap()
            .is_empty());
    }
}
