//! OPC UA acquisition: PLCs, MES and SCADA servers as sources (production counters for
//! unit-product energy, meters a PLC already reads, process values). Uses `config` (the device
//! list), `readings`, `backoff`, `log_limit`; the OPC UA stack is async-opcua (pure Rust crypto).
//!
//! - [`config`]: `[devices.opcua]` settings and their checks.
//! - [`client`]: certificates, trust, identity, endpoint, readable status codes.
//! - [`values`]: node ids, values, status codes and timestamps → readings.
//! - [`probe`]: `energy-gateway probe --opcua`.
//!
//! One task and one session per device. In `subscribe` mode the server reports changes of the
//! monitored items every publishing interval; in `poll` mode every node is read each interval,
//! and so is it in `subscribe` mode when the server has no subscription to give (the fallback
//! is taken again with each new session, so a server that frees one is subscribed to again).
//! Values carry the server's source timestamps. The session reconnects by itself with backoff
//! (reactivating the session, or creating a new one and moving the subscription to it); if even
//! the endpoint cannot be had, the task starts over with backoff. The device's online state and
//! last error, and the mode it reads in (`poll_fallback` when a subscription was refused), are in
//! the registry (/readyz, /metrics, /api/v1/devices).

pub mod client;
pub mod config;
pub mod probe;
pub mod values;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use opcua_client::{DataChangeCallback, Session, SessionConnectMode, SessionPollResult};
use opcua_types::{
    MonitoredItemCreateRequest, NodeId, ReadValueId, StatusCode, TimestampsToReturn,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{AcquisitionMode, DeviceRegistry, DeviceStatus, LogLimiter, SourceBatch};
use crate::backoff::Backoff;
use crate::readings::{now_ms, Reading};
pub use config::{NodeConfig, OpcUaConfig, OpcUaMode};

/// Most readings forwarded in one batch.
const MAX_BATCH: usize = 1000;

/// Starts one task per device that has `[devices.opcua]`, and enters the devices in `registry`.
pub fn spawn<'a>(
    devices: impl IntoIterator<Item = (&'a crate::readings::DeviceId, &'a OpcUaConfig)>,
    data_dir: &Path,
    site: &str,
    tx: &mpsc::Sender<SourceBatch>,
    cancel: &CancellationToken,
    registry: &mut DeviceRegistry,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (id, cfg) in devices {
        let status = Arc::new(DeviceStatus::default());
        registry.insert(id.clone(), status.clone());
        let source = OpcUaSource {
            device: id.to_string(),
            pki: cfg.pki_dir(data_dir),
            app_uri: format!("urn:energy-gateway:{site}"),
            cfg: cfg.clone(),
            status,
            tx: tx.clone(),
        };
        tasks.push(tokio::spawn(source.run(cancel.clone())));
    }
    tasks
}

/// One device read from one OPC UA server.
struct OpcUaSource {
    device: String,
    cfg: OpcUaConfig,
    pki: PathBuf,
    app_uri: String,
    status: Arc<DeviceStatus>,
    tx: mpsc::Sender<SourceBatch>,
}

/// Why a session ended.
enum End {
    Cancelled,
    Failed(String),
}

/// Why no subscription was made.
enum Refused {
    /// The server has none to give (or no monitored items): the session polls instead.
    Unsupported(String),
    Failed(String),
}

/// Status codes of a server that offers no subscriptions or monitored items (OPC UA Part 4,
/// 5.13.2 and 5.12.2: embedded servers answer with these when they have none, or none left).
fn no_subscriptions(code: StatusCode) -> bool {
    matches!(
        code,
        StatusCode::BadServiceUnsupported
            | StatusCode::BadNotSupported
            | StatusCode::BadNotImplemented
            | StatusCode::BadTooManySubscriptions
            | StatusCode::BadTooManyMonitoredItems
    )
}

impl OpcUaSource {
    async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::with_limits(Duration::from_secs(1), self.cfg.max_backoff);
        let mut log = LogLimiter::new(Duration::from_secs(60));
        if self.cfg.trust_server_cert {
            tracing::warn!(
                device = %self.device,
                endpoint = %self.cfg.endpoint,
                "opcua.trust_server_cert = true: whatever certificate the server presents is trusted (and kept in {}); put the server's certificate there and turn this off",
                self.pki.join("trusted").display()
            );
        }
        tracing::info!(device = %self.device, endpoint = %self.cfg.endpoint, mode = ?self.cfg.mode, "opcua source starting");
        let mut client = loop {
            let (cfg, pki, uri) = (self.cfg.clone(), self.pki.clone(), self.app_uri.clone());
            let built = tokio::task::spawn_blocking(move || client::build(&cfg, &pki, &uri))
                .await
                .unwrap_or_else(|e| Err(format!("client setup stopped: {e}")));
            match built {
                Ok(c) => break c,
                Err(e) => {
                    if !self
                        .fail(
                            &format!("opcua client setup: {e}"),
                            &mut log,
                            &mut backoff,
                            &cancel,
                        )
                        .await
                    {
                        return;
                    }
                }
            }
        };
        loop {
            let identity = match client::identity(&self.cfg) {
                Ok(i) => i,
                Err(e) => {
                    if !self.fail(&e, &mut log, &mut backoff, &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            let connected = tokio::select! {
                _ = cancel.cancelled() => return,
                c = client::connect(&mut client, &self.cfg, identity, &self.pki) => c,
            };
            let (session, event_loop) = match connected {
                Ok(s) => s,
                Err(e) => {
                    if !self.fail(&e, &mut log, &mut backoff, &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            match self
                .drive(session, event_loop, &mut log, &mut backoff, &cancel)
                .await
            {
                End::Cancelled => break,
                End::Failed(e) => {
                    if !self.fail(&e, &mut log, &mut backoff, &cancel).await {
                        return;
                    }
                }
            }
        }
        self.status.record_failure();
        tracing::debug!(device = %self.device, "opcua source stopped");
    }

    /// Records a failure, logs it (at a limited rate) and waits the backoff. False when cancelled.
    async fn fail(
        &self,
        message: &str,
        log: &mut LogLimiter,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) -> bool {
        self.status.record_failure();
        self.status.record_error(message);
        let delay = backoff.next_delay();
        if let Some(suppressed) = log.allow() {
            tracing::warn!(device = %self.device, suppressed, "opcua: {message}; retrying in {delay:?}");
        }
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Runs one session until it fails for good or the gateway stops.
    async fn drive(
        &self,
        session: Arc<Session>,
        event_loop: opcua_client::SessionEventLoop<opcua_client::transport::TcpConnector>,
        log: &mut LogLimiter,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) -> End {
        // The event loop runs in a task of its own so that requests (subscribe, read) can be
        // awaited here while it carries them; it passes on only what the source acts on.
        let (ev_tx, mut events) = mpsc::unbounded_channel();
        let ev_task = tokio::spawn(async move {
            let stream = event_loop.enter();
            futures_util::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let keep = !matches!(
                    &ev,
                    Ok(SessionPollResult::Transport(_)
                        | SessionPollResult::SessionActivity(_)
                        | SessionPollResult::Subscription(_)
                        | SessionPollResult::BeginConnect)
                );
                let last = ev.is_err();
                if keep && ev_tx.send(ev).is_err() || last {
                    break;
                }
            }
        });
        let nodes: HashMap<NodeId, NodeConfig> = self
            .cfg
            .nodes
            .iter()
            .filter_map(|n| {
                values::parse_node_id(&n.node)
                    .ok()
                    .map(|id| (id, n.clone()))
            })
            .collect();
        let (rtx, mut readings) = mpsc::unbounded_channel::<Reading>();
        let mut subscription: Option<u32> = None;
        let mut connected = false;
        // Poll mode, or the fallback when the server will not take a subscription.
        let mut poll = self.cfg.mode == OpcUaMode::Poll;
        if poll {
            self.status.set_mode(AcquisitionMode::Poll);
        }
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                _ = cancel.cancelled() => break End::Cancelled,
                ev = events.recv() => match ev {
                    None => break End::Failed("the session ended".into()),
                    Some(Err(code)) => break End::Failed(self.explain(code, "")),
                    Some(Ok(SessionPollResult::Reconnected(mode))) => {
                        connected = true;
                        backoff.reset();
                        log.reset();
                        self.status.record_success();
                        self.status.clear_error();
                        let new_session = matches!(mode, SessionConnectMode::NewSession(_));
                        tracing::info!(device = %self.device, endpoint = %self.cfg.endpoint, "opcua connected ({})", if new_session { "new session" } else { "session reactivated" });
                        // A reactivated session still has its subscription on the server; a new
                        // one (the server restarted or dropped the session) needs it again.
                        if !poll && (new_session || subscription.is_none()) {
                            if let Some(old) = subscription.take() {
                                // Forget the old one (the server no longer knows it either).
                                let _ = session.delete_subscriptions(&[old]).await;
                            }
                            match self.subscribe(&session, &nodes, rtx.clone()).await {
                                Ok(id) => {
                                    subscription = Some(id);
                                    self.status.set_mode(AcquisitionMode::Subscribe);
                                }
                                Err(Refused::Unsupported(e)) => {
                                    // Small PLCs offer few or no subscriptions: read instead.
                                    tracing::warn!(device = %self.device, endpoint = %self.cfg.endpoint, "opcua: {e}; reading every node each interval instead (polling)");
                                    poll = true;
                                    self.status.set_mode(AcquisitionMode::PollFallback);
                                }
                                Err(Refused::Failed(e)) => break End::Failed(e),
                            }
                        }
                    }
                    Some(Ok(SessionPollResult::ConnectionLost(code))) => {
                        connected = false;
                        let msg = format!("connection lost: {}", self.explain(code, ""));
                        self.status.record_failure();
                        self.status.record_error(&msg);
                        tracing::warn!(device = %self.device, "opcua: {msg}; reconnecting");
                    }
                    Some(Ok(SessionPollResult::ReconnectFailed(code))) => {
                        connected = false;
                        let msg = self.explain(code, "");
                        self.status.record_failure();
                        self.status.record_error(&msg);
                        if let Some(suppressed) = log.allow() {
                            tracing::warn!(device = %self.device, suppressed, "opcua: cannot connect: {msg}; retrying with backoff");
                        }
                    }
                    Some(Ok(_)) => {}
                },
                Some(r) = readings.recv() => {
                    let mut batch = vec![r];
                    while batch.len() < MAX_BATCH {
                        match readings.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    self.status.record_success();
                    if self.tx.send(SourceBatch::new(batch)).await.is_err() {
                        break End::Cancelled;
                    }
                }
                _ = tick.tick(), if poll && connected => {
                    match self.read_all(&session, &nodes).await {
                        Ok(batch) => {
                            self.status.record_success();
                            if self.tx.send(SourceBatch::new(batch)).await.is_err() {
                                break End::Cancelled;
                            }
                        }
                        Err(e) => {
                            self.status.record_failure();
                            self.status.record_error(&e);
                            if let Some(suppressed) = log.allow() {
                                tracing::warn!(device = %self.device, suppressed, "opcua read failed: {e}");
                            }
                        }
                    }
                }
            }
        };
        // Leave politely (closes the session on the server), but never hang on a dead server.
        let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
        ev_task.abort();
        end
    }

    fn explain(&self, code: StatusCode, detail: &str) -> String {
        client::explain(code, detail, &self.cfg, &self.pki)
    }

    /// Creates the subscription and its monitored items. A node the server refuses becomes a
    /// bad reading (and a warning) instead of stopping the others. A server that has no
    /// subscription (or monitored items) to give is [`Refused::Unsupported`].
    async fn subscribe(
        &self,
        session: &Session,
        nodes: &HashMap<NodeId, NodeConfig>,
        rtx: mpsc::UnboundedSender<Reading>,
    ) -> Result<u32, Refused> {
        let refused = |what: &str, e: opcua_types::Error| {
            let message = format!("{what}: {}", self.explain(e.status(), &e.to_string()));
            if no_subscriptions(e.status()) {
                Refused::Unsupported(message)
            } else {
                Refused::Failed(message)
            }
        };
        let device = self.device.clone();
        let map = nodes.clone();
        let callback = DataChangeCallback::new(move |dv, item| {
            if let Some(n) = map.get(&item.item_to_monitor().node_id) {
                let _ = rtx.send(values::reading(&device, n, &dv, now_ms()));
            }
        });
        let publishing = self.cfg.interval;
        // Keep-alive every 10 publishing intervals at most, lifetime 3 × that (OPC UA Part 4,
        // 5.13.2: lifetime count ≥ 3 × keep-alive count).
        let id = session
            .create_subscription(publishing, 30, 10, 0, 0, true, callback)
            .await
            .map_err(|e| refused("the server gave no subscription", e))?;
        let sampling_ms = self
            .cfg
            .sampling_interval
            .unwrap_or(self.cfg.interval)
            .as_secs_f64()
            * 1000.0;
        let items: Vec<MonitoredItemCreateRequest> = self
            .cfg
            .nodes
            .iter()
            .filter_map(|n| values::parse_node_id(&n.node).ok())
            .map(|id| {
                let mut req: MonitoredItemCreateRequest = id.into();
                req.requested_parameters.sampling_interval = sampling_ms;
                // Keep every change between two publishes (counters must not skip values).
                req.requested_parameters.queue_size = 100;
                req.requested_parameters.discard_oldest = true;
                req
            })
            .collect();
        let created = match session
            .create_monitored_items(id, TimestampsToReturn::Both, items)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = session.delete_subscriptions(&[id]).await;
                return Err(refused("the server monitors none of the nodes", e));
            }
        };
        let mut bad = Vec::new();
        for c in &created {
            let code = c.result.status_code;
            if code.is_bad() {
                let id = &c.item_to_monitor.node_id;
                if let Some(n) = nodes.get(id) {
                    bad.push(Reading::bad(
                        &self.device,
                        n.quantity,
                        now_ms(),
                        format!("opcua {}: {code}", n.node),
                    ));
                    tracing::warn!(device = %self.device, node = %n.node, "opcua: the server refused to monitor the node: {code}");
                }
            }
        }
        tracing::info!(device = %self.device, items = created.len() - bad.len(), refused = bad.len(), interval = ?self.cfg.interval, "opcua subscription created");
        if !bad.is_empty() && self.tx.send(SourceBatch::new(bad)).await.is_err() {
            return Err(Refused::Failed("shutting down".into()));
        }
        Ok(id)
    }

    /// Reads every node once (poll mode).
    async fn read_all(
        &self,
        session: &Session,
        nodes: &HashMap<NodeId, NodeConfig>,
    ) -> Result<Vec<Reading>, String> {
        read_nodes(
            session,
            &self.device,
            nodes.iter().map(|(id, n)| (id.clone(), n)),
            self.cfg.timeout,
        )
        .await
        .map_err(|(code, detail)| self.explain(code, &detail))
    }
}

/// Reads the given nodes once and turns the answers into readings.
pub async fn read_nodes<'a>(
    session: &Session,
    device: &str,
    nodes: impl Iterator<Item = (NodeId, &'a NodeConfig)>,
    timeout: Duration,
) -> Result<Vec<Reading>, (StatusCode, String)> {
    let (ids, cfgs): (Vec<NodeId>, Vec<&NodeConfig>) = nodes.unzip();
    let to_read: Vec<ReadValueId> = ids.into_iter().map(ReadValueId::from).collect();
    let answers = match tokio::time::timeout(
        timeout,
        session.read(&to_read, TimestampsToReturn::Both, 0.0),
    )
    .await
    {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return Err((e.status(), e.to_string())),
        Err(_) => {
            return Err((
                StatusCode::BadTimeout,
                format!("no answer within {timeout:?}"),
            ))
        }
    };
    let received = now_ms();
    Ok(cfgs
        .iter()
        .zip(answers.iter())
        .map(|(n, dv)| values::reading(device, n, dv, received))
        .collect())
}
