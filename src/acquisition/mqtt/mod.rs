//! MQTT acquisition: subscribe to topic filters and turn messages into readings.
//!
//! The session is persistent (clean session off, stable client id, QoS 1), so messages
//! published while the gateway restarts are delivered when it comes back. Acknowledgements are
//! manual: a message is acknowledged to the broker only after its readings are committed to the
//! local store, so a crash between receipt and commit makes the broker deliver it again.
//! Malformed messages are counted per subscription and topic, logged at a limited rate, and
//! acknowledged (so they are not redelivered forever); they never stall other topics.

pub mod connection;
pub mod payload;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

use super::config::MqttConfig;
use super::{LogLimiter, SourceBatch};
use crate::readings::{now_ms, DeviceId};
use crate::settings::SiteConfig;

/// Most distinct topics tracked in the per-topic error counters.
const MAX_TRACKED_TOPICS: usize = 1000;

/// Most devices not in the configuration that one gateway run accepts (`accept_unknown_devices`):
/// beyond that, messages of new ids are bad messages (counted in `new_devices_refused`), so a
/// faulty or hostile publisher cannot grow the series without bound.
pub const MAX_UNKNOWN_DEVICES: usize = 1000;

/// Counters of the MQTT source.
#[derive(Debug, Default)]
pub struct MqttStats {
    pub connected: std::sync::atomic::AtomicBool,
    /// Since when the broker has not been reachable (`/readyz`).
    pub down: crate::health::Liveness,
    pub connects: AtomicU64,
    pub messages: AtomicU64,
    pub readings: AtomicU64,
    pub bad_messages: AtomicU64,
    /// Messages refused because they would add a device beyond MAX_UNKNOWN_DEVICES.
    pub new_devices_refused: AtomicU64,
    /// Problems by topic (at most MAX_TRACKED_TOPICS topics; the rest under "(other)").
    pub bad_by_topic: Mutex<HashMap<String, u64>>,
}

impl MqttStats {
    fn count_bad(&self, topic: &str) {
        self.bad_messages.fetch_add(1, Ordering::Relaxed);
        let mut m = self.bad_by_topic.lock().unwrap_or_else(|p| p.into_inner());
        let key = if m.len() < MAX_TRACKED_TOPICS || m.contains_key(topic) {
            topic.to_string()
        } else {
            "(other)".to_string()
        };
        *m.entry(key).or_default() += 1;
    }
}

/// Subscribes and forwards readings until cancelled.
pub struct MqttSource {
    /// `[mqtt]`: the broker and the subscriptions.
    mqtt: MqttConfig,
    /// The site id (in the client id) and time zone (of local timestamps in payloads).
    site: SiteConfig,
    /// Ids of the configured devices; a subscription with `accept_unknown_devices` admits at
    /// most [`MAX_UNKNOWN_DEVICES`] others.
    devices: HashSet<DeviceId>,
    tx: mpsc::Sender<SourceBatch>,
    stats: Arc<MqttStats>,
    clock: Option<Arc<crate::clock::Clock>>,
    unknown_devices: Mutex<std::collections::HashSet<String>>,
}

impl MqttSource {
    pub fn new(
        mqtt: MqttConfig,
        site: SiteConfig,
        devices: HashSet<DeviceId>,
        tx: mpsc::Sender<SourceBatch>,
        stats: Arc<MqttStats>,
    ) -> Self {
        MqttSource {
            mqtt,
            site,
            devices,
            tx,
            stats,
            clock: None,
            unknown_devices: Mutex::default(),
        }
    }

    /// Judges message timestamps against the clock guard's estimate of the time (the wall clock
    /// when trusted), so a wrong local clock does not drop correctly dated messages.
    pub fn with_clock(mut self, clock: Arc<crate::clock::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The time message timestamps are judged against: far ahead when nothing is known.
    fn judge_now(&self) -> i64 {
        match &self.clock {
            None => now_ms(),
            Some(c) => c.estimated_now_ms().unwrap_or(i64::MAX / 4),
        }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let mcfg = self.mqtt.clone();
        if mcfg.subscriptions.is_empty() {
            return;
        }
        let mut opts = match connection::options(&mcfg, &self.site.id, "") {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("mqtt source not started: {e}");
                return;
            }
        };
        opts.set_clean_session(false);
        opts.set_manual_acks(true);
        let tz: chrono_tz::Tz = self
            .site
            .timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Shanghai);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut backoff = Backoff::with_limits(Duration::from_secs(1), mcfg.max_backoff);
        let mut conn_log = LogLimiter::new(Duration::from_secs(60));
        let mut bad_log = LogLimiter::new(Duration::from_secs(60));
        let mut acks: JoinSet<()> = JoinSet::new();
        tracing::info!(url = %mcfg.url, subscriptions = mcfg.subscriptions.len(), "mqtt source starting");
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => break,
                ev = eventloop.poll() => ev,
                Some(_) = acks.join_next(), if !acks.is_empty() => continue,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    self.stats.connected.store(true, Ordering::Relaxed);
                    self.stats.down.mark_up();
                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    backoff.reset();
                    conn_log.reset();
                    tracing::info!(
                        session_present = ack.session_present,
                        "mqtt source connected"
                    );
                    for s in &mcfg.subscriptions {
                        if let Err(e) = client.try_subscribe(s.topic.clone(), QoS::AtLeastOnce) {
                            tracing::error!(topic = %s.topic, "cannot subscribe: {e}");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    self.handle(&client, p, tz, &mut acks, &mut bad_log).await;
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats.connected.store(false, Ordering::Relaxed);
                    self.stats.down.mark_down();
                    let delay = backoff.next_delay();
                    if let Some(suppressed) = conn_log.allow() {
                        tracing::warn!(url = %mcfg.url, suppressed, "mqtt source disconnected, retrying in {delay:?}: {e}");
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        // Shutdown: wait for the commits of what was received, send those acknowledgements, then
        // leave. Whatever is not acknowledged is delivered again by the broker next time.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !acks.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = acks.join_next() => {}
                _ = eventloop.poll() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let _ = client.try_disconnect();
        let flush_until = tokio::time::Instant::now() + Duration::from_millis(500);
        loop {
            tokio::select! {
                r = eventloop.poll() => {
                    if matches!(r, Err(_) | Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(flush_until) => break,
            }
        }
        self.stats.connected.store(false, Ordering::Relaxed);
        tracing::debug!("mqtt source stopped");
    }

    async fn handle(
        &self,
        client: &AsyncClient,
        p: Publish,
        tz: chrono_tz::Tz,
        acks: &mut JoinSet<()>,
        bad_log: &mut LogLimiter,
    ) {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        let mcfg = &self.mqtt;
        let topic = p.topic.clone();
        if p.payload.len() as u64 > mcfg.max_message_size {
            self.stats.count_bad(&topic);
            if let Some(suppressed) = bad_log.allow() {
                tracing::warn!(
                    topic = %topic,
                    suppressed,
                    "bad mqtt message: {} bytes, over mqtt.max_message_size ({} bytes); skipped",
                    p.payload.len(),
                    mcfg.max_message_size
                );
            }
            let client = client.clone();
            acks.spawn(async move {
                let _ = client.ack(&p).await;
            });
            return;
        }
        let sub = mcfg
            .subscriptions
            .iter()
            .find(|s| rumqttc::matches(&topic, &s.topic));
        let parsed = match sub {
            Some(s) => payload::parse_judged(
                s,
                &topic,
                &p.payload,
                (now_ms(), self.judge_now()),
                tz,
                |d| self.devices.contains(d),
            ),
            None => payload::Parsed {
                readings: vec![],
                errors: vec![payload::PayloadError::UnknownDevice(format!(
                    "no subscription matches {topic}"
                ))],
            },
        };
        let mut parsed = parsed;
        let before = parsed.readings.len();
        {
            let mut seen = self
                .unknown_devices
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            parsed.readings.retain(|r| {
                self.devices.contains(r.device.as_str())
                    || seen.contains(&r.device)
                    || (seen.len() < MAX_UNKNOWN_DEVICES && seen.insert(r.device.clone()))
            });
        }
        if parsed.readings.len() < before {
            self.stats
                .new_devices_refused
                .fetch_add(1, Ordering::Relaxed);
            parsed.errors.push(payload::PayloadError::UnknownDevice(format!(
                "new device refused: {MAX_UNKNOWN_DEVICES} devices not in the configuration already seen"
            )));
        }
        if !parsed.errors.is_empty() {
            self.stats.count_bad(&topic);
            if let Some(suppressed) = bad_log.allow() {
                tracing::warn!(topic = %topic, suppressed, "bad mqtt message: {}", parsed.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "));
            }
        }
        if parsed.readings.is_empty() {
            // Acknowledged from a task of its own: awaiting the client's request queue here, in
            // the loop that drains it, could deadlock, and a dropped ack would stall the session.
            let client = client.clone();
            acks.spawn(async move {
                let _ = client.ack(&p).await;
            });
            return;
        }
        self.stats
            .readings
            .fetch_add(parsed.readings.len() as u64, Ordering::Relaxed);
        let (ack_tx, ack_rx) = oneshot::channel();
        if self
            .tx
            .send(SourceBatch {
                readings: parsed.readings,
                ack: Some(ack_tx),
            })
            .await
            .is_err()
        {
            return; // shutting down: not acknowledged, the broker delivers it again
        }
        let client = client.clone();
        acks.spawn(async move {
            if ack_rx.await.is_ok() {
                let _ = client.ack(&p).await;
            }
        });
    }
}
