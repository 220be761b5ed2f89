//! The HTTP server: the live page, the versioned JSON API (`/api/v1/`), Prometheus metrics
//! (`/metrics`) and health checks (`/healthz`, `/readyz`).
//!
//! The server outlives the pipeline it shows: `run` keeps it up while a configuration reload
//! stops the pipeline and starts a new one ([`daemon`]), so handlers read the gateway through a
//! [`GatewayView`] that is swapped on reload (and absent meanwhile: `/readyz` then answers 503).
//!
//! | path | auth | what |
//! | --- | --- | --- |
//! | `/`, `/app.js`, `/style.css` | no | the live page (static, embedded; it fetches the API) |
//! | `/healthz` | no | the process answers |
//! | `/readyz` | yes | sources and sinks up (within `[health]` grace), store writable, outbox not full ([`ready`]) |
//! | `/metrics` | yes | OpenMetrics text ([`metrics`]) |
//! | `/api/v1/...` | yes | JSON ([`api`]; every endpoint is in `docs/openapi.yaml`) |
//!
//! "auth" means: when a token is configured, requests need `Authorization: Bearer TOKEN`.
//! The configuration check requires a token whenever the address is not a loopback address.

pub mod api;
pub mod history;
pub mod metrics;
pub mod ready;
pub mod summary;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::acquisition::DeviceRegistry;
use crate::config::{Config, Synchronous};
use crate::outputs::influxdb::OutputStatus;
use crate::pipeline::RunningGateway;
use crate::processing::{ActiveAlerts, LatestValues, ProcessingStats};
use crate::readings::Quantity;
use crate::storage::writer::OutboxStatus;
use crate::storage::Store;

/// How long open connections may take to finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Window of the readings-per-second rate.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What the HTTP server sees of a running pipeline: shared handles, nothing it could block.
pub struct GatewayView {
    pub config: Arc<Config>,
    pub devices: DeviceRegistry,
    pub latest: Arc<Mutex<LatestValues>>,
    pub outputs: BTreeMap<String, Arc<OutputStatus>>,
    pub outbox: Arc<OutboxStatus>,
    pub processing: Arc<ProcessingStats>,
    pub active_alerts: ActiveAlerts,
    pub committed: watch::Receiver<i64>,
    pub requests_per_cycle: BTreeMap<crate::readings::DeviceId, usize>,
    /// The accounts the accounting service keeps.
    pub accounts: Arc<crate::accounting::service::Accounts>,
    /// MQTT source counters (when `[mqtt]` has subscriptions).
    pub mqtt_in: Option<Arc<crate::acquisition::mqtt::MqttStats>>,
    /// MQTT output counters (when `[mqtt.publish]` is enabled).
    pub mqtt_out: Option<Arc<crate::outputs::mqtt::MqttOutputStats>>,
    /// Readings destinations over MQTT: destination → connected.
    pub mqtt_readings: BTreeMap<String, Arc<std::sync::atomic::AtomicBool>>,
    /// Notifier counters, by notifier id.
    pub notifiers: BTreeMap<String, Arc<crate::alerting::notify::NotifierStats>>,
    /// When this pipeline was started.
    pub started: Instant,
    /// Whether the wall clock can be trusted.
    pub clock: Arc<crate::clock::Clock>,
    /// Pipeline tasks that died.
    pub tasks: Arc<crate::pipeline::TaskHealth>,
    /// The metrics the pipeline's components registered.
    pub metrics: Arc<crate::telemetry::metrics::Registry>,
}

impl GatewayView {
    pub fn of(gw: &RunningGateway) -> Arc<GatewayView> {
        Arc::new(GatewayView {
            config: gw.config.clone(),
            devices: gw.devices.clone(),
            latest: gw.latest.clone(),
            outputs: gw.outputs.clone(),
            outbox: gw.outbox.clone(),
            processing: gw.processing.clone(),
            active_alerts: gw.active_alerts.clone(),
            committed: gw.committed.clone(),
            requests_per_cycle: gw.requests_per_cycle.clone(),
            accounts: gw.accounts.clone(),
            mqtt_in: gw.mqtt_in.clone(),
            mqtt_out: gw.mqtt_out.clone(),
            mqtt_readings: gw.mqtt_readings.clone(),
            notifiers: gw.notifiers.clone(),
            started: Instant::now(),
            clock: gw.clock.clone(),
            tasks: gw.tasks.clone(),
            metrics: gw.metrics.clone(),
        })
    }

    /// Sum of the latest active power of the main meters (kW).
    pub fn site_power_kw(&self) -> Option<f64> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = None;
        for m in &self.config.site.main_meters {
            if let Some((_, v)) = latest.get(m, Quantity::ActivePower) {
                *total.get_or_insert(0.0) += v;
            }
        }
        total
    }

    pub fn devices_online(&self) -> usize {
        self.devices.values().filter(|s| s.is_online()).count()
    }

    /// Highest committed reading id.
    pub fn committed_id(&self) -> i64 {
        *self.committed.borrow()
    }
}

/// The result of the last configuration reload, for the API and metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadState {
    pub reloads: u64,
    pub failures: u64,
    /// RFC 3339 time of the last attempt.
    pub last_attempt: Option<String>,
    /// `applied`, `rejected` (invalid configuration, the old one kept) or `failed` (the new
    /// configuration could not start; the old one was started again).
    pub last_result: Option<&'static str>,
    /// The problems of a rejected configuration, as `check` prints them.
    pub last_problems: Vec<String>,
}

/// State shared by every handler.
pub struct Shared {
    gateway: RwLock<Option<Arc<GatewayView>>>,
    token: RwLock<Option<String>>,
    phase: RwLock<&'static str>,
    started: Instant,
    reload: Arc<Mutex<ReloadState>>,
    /// (when, generation, readings processed) samples for the rate.
    rate: Mutex<VecDeque<(Instant, u64, u64)>>,
    generation: AtomicU64,
    /// A read connection to the store (reopened when the store path changes).
    store: Mutex<Option<(PathBuf, Store)>>,
    /// The process's metrics (the pipeline's are in its [`GatewayView`]).
    metrics: metrics::ProcessMetrics,
}

impl Shared {
    fn new(token: Option<String>) -> Shared {
        let started = Instant::now();
        let reload = Arc::new(Mutex::new(ReloadState::default()));
        Shared {
            gateway: RwLock::new(None),
            token: RwLock::new(token),
            phase: RwLock::new("starting"),
            started,
            metrics: metrics::ProcessMetrics::new(started, &reload),
            reload,
            rate: Mutex::new(VecDeque::new()),
            generation: AtomicU64::new(0),
            store: Mutex::new(None),
        }
    }

    /// The running pipeline, if any (none while starting, reloading or stopping).
    pub fn gateway(&self) -> Option<Arc<GatewayView>> {
        self.gateway
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `starting`, `running`, `reloading` or `stopping`.
    pub fn phase(&self) -> &'static str {
        *self.phase.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reload_state(&self) -> ReloadState {
        self.reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Readings processed per second over the last ten seconds.
    pub fn readings_per_second(&self) -> Option<f64> {
        let rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        let (t1, g1, n1) = *rate.back()?;
        let (t0, _, n0) = *rate.iter().find(|(_, g, _)| *g == g1)?;
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt >= 0.5).then(|| n1.saturating_sub(n0) as f64 / dt)
    }

    fn sample_rate(&self) {
        let Some(gw) = self.gateway() else { return };
        let n = gw.processing.readings.load(Ordering::Relaxed);
        let g = self.generation.load(Ordering::Relaxed);
        let now = Instant::now();
        {
            let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
            rate.push_back((now, g, n));
            while rate
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                rate.pop_front();
            }
        }
        self.metrics
            .set_rate(self.readings_per_second().unwrap_or(0.0));
    }

    /// Runs `f` on the read connection to the store of `cfg` (opened on first use), on a
    /// blocking thread.
    pub async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        cfg: &Config,
        f: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let me = self.clone();
        let path = cfg.store_path();
        tokio::task::spawn_blocking(move || {
            let mut slot = me.store.lock().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_none_or(|(p, _)| *p != path) {
                let s = Store::open(&path, Synchronous::Normal)?;
                *slot = Some((path, s));
            }
            match slot.as_ref() {
                Some((_, s)) => f(s),
                None => anyhow::bail!("the store is not open"),
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("store query task failed: {e}"))?
    }
}

/// A running HTTP server.
/// Limits on the HTTP server's connections (`[http] header_timeout`, `max_connections`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time to send a request's headers, and to keep an idle keep-alive connection.
    pub header_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        let d = crate::config::HttpConfig::default();
        ConnectionLimits::from(&d)
    }
}

impl From<&crate::config::HttpConfig> for ConnectionLimits {
    fn from(h: &crate::config::HttpConfig) -> Self {
        ConnectionLimits {
            header_timeout: h.header_timeout,
            max_connections: h.max_connections.max(1),
        }
    }
}

/// The accept loop: one task per connection, at most `max_connections` at once (further
/// clients wait in the listen queue), each closed when its headers do not arrive within
/// `header_timeout` or it stays idle that long. On `stop`, open connections finish their
/// request within [`SHUTDOWN_GRACE`].
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut accept_log = crate::log_limit::LogLimiter::new(Duration::from_secs(60));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: say so, wait, go on.
                    if let Some(suppressed) = accept_log.allow() {
                        tracing::warn!(suppressed, "HTTP: cannot accept a connection: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
}

pub struct HttpServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and starts serving with the default connection limits. `token`, when
    /// given, is required on every endpoint except `/healthz` and the page's static files.
    pub async fn start(addr: SocketAddr, token: Option<String>) -> anyhow::Result<HttpServer> {
        Self::start_with(addr, token, ConnectionLimits::default()).await
    }

    /// Like [`HttpServer::start`], with the limits of `[http]`.
    pub async fn start_with(
        addr: SocketAddr,
        token: Option<String>,
        limits: ConnectionLimits,
    ) -> anyhow::Result<HttpServer> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(token));
        let stop = CancellationToken::new();
        let app = router(shared.clone());
        let task = tokio::spawn(serve(listener, app, limits, stop.clone()));
        let sampler = {
            let shared = shared.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => shared.sample_rate(),
                    }
                }
            })
        };
        tracing::info!(%addr, "HTTP server listening");
        Ok(HttpServer {
            shared,
            addr,
            stop,
            task,
            sampler,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Shows `gw` (`None`: no pipeline, e.g. during a reload; `phase` says why).
    pub fn set_gateway(&self, gw: Option<&RunningGateway>, phase: &'static str) {
        let view = gw.map(GatewayView::of);
        *self
            .shared
            .gateway
            .write()
            .unwrap_or_else(|p| p.into_inner()) = view;
        *self.shared.phase.write().unwrap_or_else(|p| p.into_inner()) = phase;
        self.shared.generation.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.set_running(gw.is_some());
    }

    /// Replaces the bearer token (after a reload).
    pub fn set_token(&self, token: Option<String>) {
        *self.shared.token.write().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// Records the outcome of a reload attempt.
    pub fn record_reload(&self, result: &'static str, problems: Vec<String>) {
        let mut r = self.shared.reload.lock().unwrap_or_else(|p| p.into_inner());
        r.reloads += 1;
        if result != "applied" {
            r.failures += 1;
        }
        r.last_attempt =
            Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        r.last_result = Some(result);
        r.last_problems = problems;
    }

    /// Stops accepting connections and waits (at most a short grace period) for open ones.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.sampler.await;
        let _ = self.task.await;
    }
}

/// The token of an `[http]` section, resolved (the configuration check made sure it resolves).
pub fn resolve_token(cfg: &crate::config::HttpConfig) -> anyhow::Result<Option<String>> {
    match &cfg.token {
        None => Ok(None),
        Some(s) => s
            .resolve()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("http.token: {e}")),
    }
}

/// Every endpoint (method, path) the server answers; `docs/openapi.yaml` documents each one
/// (checked by a test).
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/app.js"),
    ("get", "/style.css"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/status"),
    ("get", "/api/v1/devices"),
    ("get", "/api/v1/devices/{id}"),
    ("get", "/api/v1/readings/latest"),
    ("get", "/api/v1/outputs"),
    ("get", "/api/v1/alerts/active"),
    ("get", "/api/v1/alerts/history"),
    ("get", "/api/v1/accounts/{period}"),
    ("get", "/api/v1/history"),
    ("post", "/api/v1/value-added"),
    ("post", "/api/v1/production"),
    ("post", "/api/v1/meter-replacements"),
];

/// Endpoints answered without a token.
pub const PUBLIC_ENDPOINTS: &[&str] = &["/", "/app.js", "/style.css", "/healthz"];

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

fn router(shared: Arc<Shared>) -> Router {
    let protected = Router::new()
        .route("/readyz", get(ready::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/devices", get(api::devices))
        .route("/api/v1/devices/{id}", get(api::device))
        .route("/api/v1/readings/latest", get(api::latest_readings))
        .route("/api/v1/outputs", get(api::outputs))
        .route("/api/v1/alerts/active", get(api::active_alerts))
        .route("/api/v1/alerts/history", get(api::alert_history))
        .route("/api/v1/accounts/{period}", get(api::accounts))
        .route("/api/v1/history", get(history::history))
        .route("/api/v1/value-added", post(api::post_value_added))
        .route("/api/v1/production", post(api::post_production))
        .route(
            "/api/v1/meter-replacements",
            post(api::post_meter_replacement),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route(
            "/",
            get(|| async { static_file(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { static_file(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { static_file(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/healthz", get(api::healthz))
        .merge(protected)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint; see docs/openapi.yaml",
            )
        })
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(shared)
}

fn static_file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    res
}

/// Compares in time independent of where the first difference is and of the lengths: both
/// sides are hashed (SHA-256) and the fixed-length digests compared byte by byte, so neither
/// the position of a difference nor the token's length shows in the answer time.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a);
    let db = ring::digest::digest(&ring::digest::SHA256, b);
    da.as_ref()
        .iter()
        .zip(db.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let expected = shared
        .token
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(expected) = expected {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()));
        if !ok {
            let msg = if given.is_some() {
                "invalid bearer token"
            } else {
                "this endpoint needs `Authorization: Bearer TOKEN` (the token of [http] token)"
            };
            let mut res = ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"energy-gateway\""),
            );
            return res;
        }
    }
    next.run(req).await
}

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is not running (starting, reloading its configuration or stopping); try again shortly",
        )
    }
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The (method, path) pairs documented in docs/openapi.yaml.
    fn documented() -> Vec<(String, String)> {
        let spec = include_str!("../../docs/openapi.yaml");
        let mut out = Vec::new();
        let mut in_paths = false;
        let mut path = None;
        for line in spec.lines() {
            if line == "paths:" {
                in_paths = true;
                continue;
            }
            if in_paths && !line.starts_with(' ') && !line.is_empty() {
                break;
            }
            if let Some(p) = line.strip_prefix("  /") {
                path = Some(format!("/{}", p.trim_end_matches(':')));
            } else if let (Some(p), Some(m)) = (&path, line.strip_prefix("    ")) {
                let m = m.trim_end_matches(':');
                if ["get", "post", "put", "delete", "patch"].contains(&m) {
                    out.push((m.to_string(), p.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_endpoint_is_documented_and_nothing_else() {
        let mut doc = documented();
        let mut ours: Vec<(String, String)> = ENDPOINTS
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        doc.sort();
        ours.sort();
        assert_eq!(doc, ours, "docs/openapi.yaml and ENDPOINTS differ");
    }

    #[test]
    fn public_endpoints_are_marked_public_in_the_spec() {
        let spec = include_str!("../../docs/openapi.yaml");
        for p in PUBLIC_ENDPOINTS {
            let at = spec
                .find(&format!("\n  {p}:\n"))
                .unwrap_or_else(|| panic!("{p} not in the spec"));
            let block = &spec[at..at + 400.min(spec.len() - at)];
            assert!(
                block.contains("security: []"),
                "{p} should say security: []"
            );
        }
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
