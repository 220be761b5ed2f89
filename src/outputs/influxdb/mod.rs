//! InfluxDB output: drains the store's reading outbox to one InfluxDB destination through the v1
//! (`/write`) or v2 (`/api/v2/write`) HTTP write API, one request in flight at a time so order is
//! kept. The destination's cursor in the store advances only after every line of a batch was
//! confirmed (2xx) or quarantined.
//!
//! What each answer leads to:
//! - 2xx: the batch is delivered, the cursor advances.
//! - 429 and 503: wait as long as `Retry-After` says (seconds or an HTTP date), else exponential
//!   backoff with jitter, then send the same lines again.
//! - other 5xx, 408, timeouts, connection errors: backoff, then send again.
//! - 413: the batch is split in halves (and later batches are smaller); a single point too
//!   large for the server is quarantined.
//! - 400/422 (parse error, partial write): the server kept the valid lines. The lines its answer
//!   names (InfluxDB 1.x quotes them, 2.x/3.x give line numbers) are sent one by one, the others
//!   in ranges; a range rejected again without a usable hint is bisected. A single line that is
//!   still rejected is quarantined in the store (kept with the server's answer, visible with
//!   `energy-gateway quarantine list`), every other line is delivered. Resending is safe because
//!   a point's series and timestamp are stable: a replay overwrites, it does not duplicate.
//! - 401, 403, 404 and other 4xx (credentials, missing database or bucket): nothing is dropped;
//!   the error is logged and counted and the same lines are tried again every
//!   `setup_retry_interval`.
//!
//! Points that cannot be encoded at all (timestamp outside InfluxDB's range, unknown series) are
//! quarantined without being sent.
//!
//! Schema: see [`schema`]. After the readings are drained (whenever less than a full batch of
//! them waits, at most every `flush_interval`), the same destination also gets the gateway's
//! other series — alerts, interval energy and energy accounts — each by a cursor of its own and
//! with the same answer handling: see [`streams`].

pub use crate::backoff::Backoff;

pub mod config;
pub mod line_protocol;
pub mod schema;
pub mod streams;

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::config::{InfluxApi, InfluxConfig};
use crate::acquisition::config::DeviceConfig;
use crate::readings::{Quality, Quantity, Reading};
use crate::settings::SiteConfig;
use crate::storage::consumer::{Consumer, ReadingFeed};
use crate::storage::{OutboxRow, Store};
use schema::TagMapping;

/// The other series are looked at every `flush_interval`, but not more often than this.
const MIN_STREAMS_INTERVAL: Duration = Duration::from_millis(200);

/// Longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Live counters of one destination.
#[derive(Debug, Default)]
pub struct OutputStatus {
    /// Points the destination confirmed (replays after a crash or during a bisection count again).
    pub points_sent: AtomicU64,
    /// Write requests sent.
    pub requests: AtomicU64,
    /// Requests that did not succeed (retried, split, bisected or refused).
    pub requests_failed: AtomicU64,
    /// Points quarantined (rejected for good) since start.
    pub quarantined: AtomicU64,
    /// Batches split because the destination found them too large (413).
    pub splits: AtomicU64,
    /// The destination's confirmed cursor (highest reading id delivered or quarantined).
    pub cursor: AtomicI64,
    /// True while the destination refuses the gateway (401/403/404...): data waits in the store.
    pub refused: AtomicBool,
    /// HTTP status of the last answer (0 for a transport error or none yet).
    pub last_status: AtomicU64,
    /// The last error, for status displays.
    pub last_error: Mutex<Option<String>>,
    /// Since when the destination has not taken writes (unreachable, 5xx, refusing): `/readyz`.
    pub down: crate::health::Liveness,
}

impl OutputStatus {
    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// The last error, if the last request failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What an attempt to write some lines came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    Written,
    /// Retry after the given delay (or the usual backoff when `None`).
    Retry(Option<Duration>, String),
    /// The destination refuses the gateway (credentials, missing database): keep the data,
    /// retry slowly.
    Setup(u16, String),
    /// The body is too large: send smaller batches.
    TooLarge(String),
    /// The server refused (some of) the lines' content for good: status, message, raw body.
    Rejected(u16, String, String),
}

/// Sorts an HTTP answer (status, `Retry-After`, body) into an [`Outcome`].
fn classify(status: u16, retry_after: Option<Duration>, body: String) -> Outcome {
    let text: String = server_message(&body).chars().take(4000).collect();
    match status {
        200..=299 => Outcome::Written,
        413 => Outcome::TooLarge(text),
        429 | 503 => Outcome::Retry(retry_after, format!("HTTP {status}: {text}")),
        408 => Outcome::Retry(retry_after, format!("HTTP {status}: {text}")),
        400 | 422 if !is_refusal(&text) => Outcome::Rejected(status, text, body),
        400..=499 => Outcome::Setup(status, text),
        _ => Outcome::Retry(retry_after, format!("HTTP {status}: {text}")),
    }
}

/// A 400 that is about the request's credentials or target rather than its lines: it names no
/// line-protocol problem and speaks of authorization, tokens, permissions or a missing
/// organization, bucket or database.
fn is_refusal(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    let about_lines = [
        "parse",
        "partial write",
        "line protocol",
        "field type conflict",
        "dropped=",
        "timestamp",
        "time outside range",
    ]
    .iter()
    .any(|m| t.contains(m));
    !about_lines
        && [
            "authoriz",
            "unauthor",
            "token",
            "permission",
            "organization not found",
            "bucket not found",
            "database not found",
        ]
        .iter()
        .any(|m| t.contains(m))
}

/// The human part of an error body: the `error` (1.x) or `message` (2.x/3.x) of a JSON body,
/// else the body itself, trimmed.
fn server_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for k in ["error", "message"] {
            if let Some(s) = v.get(k).and_then(|s| s.as_str()) {
                return s.trim().to_string();
            }
        }
    }
    body.trim().to_string()
}

/// `Retry-After`: delay-seconds or an HTTP date (IMF-fixdate, RFC 850 or asctime).
pub fn parse_retry_after(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s).min(MAX_RETRY_AFTER));
    }
    let date = chrono::DateTime::parse_from_rfc2822(v)
        .map(|d| d.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(v, "%A, %d-%b-%y %H:%M:%S GMT")
                .map(|d| d.and_utc())
        })
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(v, "%a %b %e %H:%M:%S %Y").map(|d| d.and_utc())
        })
        .ok()?;
    let wait = (date - now).to_std().unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Indices (0-based, within `lines`) of the lines an error answer names: by 1-based line number
/// (`line 3`, `"line": 3`, `"line_number": 3`) or by content (`unable to parse '<line>'`).
fn hinted_lines(text: &str, lines: &[&str]) -> Vec<usize> {
    let mut by_number: Vec<usize> = Vec::new();
    let mut by_content: Vec<String> = Vec::new();
    // A JSON body: look at the message and the structured fields.
    let mut texts = vec![text.to_string()];
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        for k in ["message", "error"] {
            if let Some(s) = v.get(k).and_then(|s| s.as_str()) {
                texts.push(s.to_string());
            }
        }
        if let Some(n) = v.get("line").and_then(|n| n.as_u64()) {
            by_number.push(n as usize);
        }
        if let Some(items) = v.get("data").and_then(|d| d.as_array()) {
            for it in items {
                if let Some(n) = it.get("line_number").and_then(|n| n.as_u64()) {
                    by_number.push(n as usize);
                }
                if let Some(l) = it.get("original_line").and_then(|l| l.as_str()) {
                    by_content.push(l.to_string());
                }
            }
        }
    }
    for t in &texts {
        // "line 12" (followed by anything but more digits)
        let lower = t.to_ascii_lowercase();
        let mut rest = lower.as_str();
        while let Some(i) = rest.find("line ") {
            rest = &rest[i + 5..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(n) = digits.parse::<usize>() {
                by_number.push(n);
            }
        }
        // unable to parse '<line>': ...
        let mut rest = t.as_str();
        while let Some(i) = rest.find("unable to parse '") {
            rest = &rest[i + 17..];
            if let Some(end) = rest.find("': ") {
                by_content.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    let mut out = Vec::new();
    for n in by_number {
        if n >= 1 && n <= lines.len() {
            out.push(n - 1);
        }
    }
    if !by_content.is_empty() {
        for (i, l) in lines.iter().enumerate() {
            let l = l.trim_end_matches('\n');
            if by_content.iter().any(|c| c == l) {
                out.push(i);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// One encoded line of a batch.
#[derive(Debug, Clone, Copy)]
struct Line {
    id: i64,
    start: usize,
    end: usize,
}

/// A batch ready to send: the body and where each reading's line is in it.
#[derive(Debug, Default)]
struct Batch {
    body: String,
    lines: Vec<Line>,
    /// Highest outbox id the batch covers (also when its last rows could not be encoded).
    last_id: i64,
    /// The stream of a batch of other series (`None`: readings); its lines' ids are row ids.
    stream: Option<streams::Stream>,
}

impl Batch {
    fn text(&self, a: usize, b: usize) -> &str {
        &self.body[self.lines[a].start..self.lines[b - 1].end]
    }
}

/// How a delivery attempt ended.
enum Delivery {
    Done,
    /// Told to stop (shutdown while waiting to retry): the batch stays in the store.
    Stopped,
}

/// One InfluxDB destination.
pub struct InfluxOutput {
    name: String,
    dest: String,
    cfg: InfluxConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    auth: Auth,
    /// The readings, by this destination's cursor (own connection).
    readings: Consumer<ReadingFeed>,
    /// The other series, each by a cursor of its own (one more connection).
    streams: Vec<Consumer<streams::StreamFeed>>,
    /// series id → series key (None: the series cannot be written)
    series: foldhash::HashMap<i64, Option<Arc<str>>>,
    mapping: TagMapping,
    site_tags: Vec<(&'static str, String)>,
    device_tags: HashMap<String, Vec<(&'static str, String)>>,
    status: Arc<OutputStatus>,
    batch_size: usize,
    backoff: Backoff,
    quarantine_log: crate::log_limit::LogLimiter,
    retry_log: crate::log_limit::LogLimiter,
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic(String, String),
    Token(String),
}

impl InfluxOutput {
    /// Prepares the output `[outputs.influxdb.NAME]` (settings that passed the configuration
    /// check), tagging points with the site and the devices' carrier, line and model.
    pub fn new(
        name: &str,
        cfg: InfluxConfig,
        site: &SiteConfig,
        devices: &[DeviceConfig],
        store_path: PathBuf,
        status: Arc<OutputStatus>,
    ) -> anyhow::Result<Self> {
        let url = write_url(&cfg)?;
        let secret = |s: &Option<crate::secret::Secret>| -> anyhow::Result<Option<String>> {
            s.as_ref()
                .map(|s| {
                    s.resolve()
                        .map_err(|e| anyhow::anyhow!("outputs.influxdb.{name}: {e}"))
                })
                .transpose()
        };
        let auth = match (secret(&cfg.token)?, &cfg.username, secret(&cfg.password)?) {
            (Some(t), _, _) => Auth::Token(t),
            (None, Some(u), p) => Auth::Basic(u.clone(), p.unwrap_or_default()),
            _ => Auth::None,
        };
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .build()?;
        let dest = Self::destination(name);
        let batch_size = cfg.batch_size.max(1);
        let readings = Consumer::new(ReadingFeed::open(&store_path, &dest)?, batch_size);
        let streams = streams::StreamFeed::open_all(&store_path, &dest)?
            .into_iter()
            .map(|f| Consumer::new(f, batch_size))
            .collect();
        let mut site_tags: Vec<(&'static str, String)> = vec![("site", site.id.clone())];
        if let Some(p) = &site.park {
            site_tags.push(("park", p.clone()));
        }
        let mut device_tags = HashMap::new();
        for d in devices {
            let mut tags = site_tags.clone();
            tags.push(("device", d.id.to_string()));
            if let Some(c) = d.carrier {
                tags.push(("carrier", c.to_string()));
            }
            for (k, v) in [("line", &d.line), ("model", &d.model)] {
                if let Some(v) = v {
                    tags.push((k, v.clone()));
                }
            }
            device_tags.insert(d.id.to_string(), tags);
        }
        let backoff = Backoff::with_limits(cfg.backoff_initial, cfg.backoff_max);
        Ok(InfluxOutput {
            name: name.to_string(),
            dest,
            mapping: TagMapping::new(&cfg),
            batch_size,
            cfg,
            client,
            url,
            auth,
            readings,
            streams,
            series: Default::default(),
            site_tags,
            device_tags,
            status,
            backoff,
            quarantine_log: crate::log_limit::LogLimiter::new(Duration::from_secs(10)),
            retry_log: crate::log_limit::LogLimiter::new(Duration::from_secs(60)),
        })
    }

    /// Cursor name of this destination in the store.
    pub fn destination(name: &str) -> String {
        format!("influxdb.{name}")
    }

    /// The write URL (with the query string; the password is never part of it).
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    async fn store_op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, crate::storage::StoreError> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.readings.op(move |feed| feed.with(f)).await
    }

    /// Sends one batch of each other stream (alerts, intervals, accounts) that has rows after
    /// its cursor, with the usual answer handling, and advances each cursor once its batch is
    /// confirmed or quarantined. `Some(true)`: a stream has more waiting; `None`: stopped while
    /// waiting to retry (the batch stays in the store).
    async fn deliver_streams(
        &mut self,
        stop: &CancellationToken,
        draining: bool,
    ) -> anyhow::Result<Option<bool>> {
        let mut consumers = std::mem::take(&mut self.streams);
        let r = self
            .deliver_streams_by(&mut consumers, stop, draining)
            .await;
        self.streams = consumers;
        r
    }

    async fn deliver_streams_by(
        &mut self,
        consumers: &mut [Consumer<streams::StreamFeed>],
        stop: &CancellationToken,
        draining: bool,
    ) -> anyhow::Result<Option<bool>> {
        let mut more = false;
        let site_tags = self.site_tags.clone();
        let site: Vec<(&str, &str)> = site_tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for consumer in consumers.iter_mut() {
            let stream = consumer.feed().stream();
            let limit = self.batch_size;
            let rows = consumer.next_up_to(limit).await?;
            let Some(last) = rows.last().map(streams::Row::position) else {
                continue;
            };
            more |= rows.len() >= limit;
            let mut batch = Batch {
                body: String::with_capacity(rows.len() * 160),
                lines: Vec::with_capacity(rows.len()),
                last_id: last.id,
                stream: Some(stream),
            };
            for row in &rows {
                let start = batch.body.len();
                let id = row.position().id;
                match streams::push_row(
                    &mut batch.body,
                    row,
                    &site,
                    &self.mapping,
                    self.cfg.precision,
                ) {
                    Ok(()) => batch.lines.push(Line {
                        id,
                        start,
                        end: batch.body.len(),
                    }),
                    Err(e) => {
                        batch.body.truncate(start);
                        self.quarantine(Some(stream), id, None, &e.to_string(), &row.describe())
                            .await?;
                    }
                }
            }
            if !batch.lines.is_empty() {
                if let Delivery::Stopped = self.deliver(&batch, stop, draining).await? {
                    return Ok(None);
                }
            }
            if let Err(e) = consumer.delivered(last).await {
                consumer.reload();
                return Err(e);
            }
            tracing::debug!(output = %self.dest, stream = stream.measurement(), points = batch.lines.len(), "delivered");
        }
        Ok(Some(more))
    }

    /// Series key of a series id, looked up once and cached.
    async fn series_key(&mut self, series_id: i64) -> anyhow::Result<Option<Arc<str>>> {
        if let Some(k) = self.series.get(&series_id) {
            return Ok(k.clone());
        }
        let names = self.store_op(move |s| s.series(series_id)).await?;
        let key = names.and_then(|(device, quantity)| {
            let q = quantity.parse::<Quantity>().ok()?;
            let mut tags: Vec<(&str, &str)> = match self.device_tags.get(&device) {
                Some(t) => t.iter().map(|(k, v)| (*k, v.as_str())).collect(),
                None => {
                    let mut t: Vec<(&str, &str)> = self
                        .site_tags
                        .iter()
                        .map(|(k, v)| (*k, v.as_str()))
                        .collect();
                    t.push(("device", device.as_str()));
                    t
                }
            };
            tags.push(("quantity", q.as_str()));
            tags.push(("unit", q.unit()));
            self.mapping.series_key(&tags).ok().map(Arc::from)
        });
        self.series.insert(series_id, key.clone());
        Ok(key)
    }

    /// Encodes rows into a batch; rows that cannot be encoded are quarantined.
    async fn encode(&mut self, rows: Vec<OutboxRow>) -> anyhow::Result<Batch> {
        let mut batch = Batch {
            body: String::with_capacity(rows.len() * 160),
            lines: Vec::with_capacity(rows.len()),
            last_id: rows.last().map(|r| r.id).unwrap_or(0),
            stream: None,
        };
        let precision = self.cfg.precision;
        let mut reading = Reading {
            device: String::new(),
            quantity: Quantity::ActivePower,
            value: None,
            ts_ms: 0,
            quality: Quality::Good,
        };
        for row in rows {
            let Some(series) = self.series_key(row.series_id).await? else {
                let why = format!(
                    "series {} cannot be written (unknown device or quantity)",
                    row.series_id
                );
                self.quarantine(
                    None,
                    row.id,
                    None,
                    &why,
                    &format!("series_id={} ts_ms={}", row.series_id, row.ts_ms),
                )
                .await?;
                continue;
            };
            reading.value = row.value;
            reading.ts_ms = row.ts_ms;
            reading.quality = row.quality;
            let start = batch.body.len();
            match line_protocol::push_reading(&mut batch.body, &series, &reading, precision) {
                Ok(()) => batch.lines.push(Line {
                    id: row.id,
                    start,
                    end: batch.body.len(),
                }),
                Err(e) => {
                    batch.body.truncate(start);
                    let desc = format!("{series} ts_ms={} value={:?}", row.ts_ms, row.value);
                    self.quarantine(None, row.id, None, &e.to_string(), &desc)
                        .await?;
                }
            }
        }
        Ok(batch)
    }

    /// Keeps a point rejected for good: a reading under the destination's name, a row of
    /// another stream under `<destination>.<measurement>` with the row id.
    async fn quarantine(
        &mut self,
        stream: Option<streams::Stream>,
        reading_id: i64,
        status: Option<u16>,
        error: &str,
        line: &str,
    ) -> anyhow::Result<()> {
        let d = match stream {
            None => self.dest.clone(),
            Some(s) => format!("{}.{}", self.dest, s.measurement()),
        };
        let (e, l) = (error.to_string(), line.to_string());
        self.store_op(move |s| s.quarantine_line(&d, reading_id, status, &e, &l))
            .await?;
        let total = self.status.quarantined.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(suppressed) = self.quarantine_log.allow() {
            tracing::error!(
                output = %self.dest,
                reading_id,
                status = status.unwrap_or(0),
                quarantined_total = total,
                suppressed,
                "point rejected for good and quarantined (see `energy-gateway quarantine list`): {error}"
            );
        }
        Ok(())
    }

    async fn send(&self, body: &str) -> Outcome {
        self.status.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "text/plain; charset=utf-8");
        req = if self.cfg.gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            let gz = enc.write_all(body.as_bytes()).and_then(|_| enc.finish());
            match gz {
                Ok(bytes) => req.header("Content-Encoding", "gzip").body(bytes),
                Err(e) => return Outcome::Retry(None, format!("gzip failed: {e}")),
            }
        } else {
            req.body(body.to_string())
        };
        req = match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Token(t) => req.header("Authorization", format!("Token {t}")),
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.status.last_status.store(0, Ordering::Relaxed);
                return Outcome::Retry(None, crate::redact::request_error(e));
            }
        };
        let status = resp.status().as_u16();
        self.status
            .last_status
            .store(u64::from(status), Ordering::Relaxed);
        let retry_after = resp
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) if (200..300).contains(&status) => {
                tracing::debug!(output = %self.dest, "cannot read the body of a {status} answer: {e}");
                String::new()
            }
            Err(e) => return Outcome::Retry(None, format!("HTTP {status}, body unreadable: {e}")),
        };
        if (200..300).contains(&status) && !text.trim().is_empty() && status != 200 {
            tracing::warn!(output = %self.dest, "destination accepted the write (HTTP {status}) but said: {}", server_message(&text));
        }
        classify(status, retry_after, text)
    }

    /// Sleeps for `d`; returns true when the output must stop now (draining: undelivered data
    /// stays in the store for the next start).
    async fn pause(&self, d: Duration, stop: &CancellationToken, draining: bool) -> bool {
        if draining {
            return true;
        }
        tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    /// Delivers every line of `batch`: confirmed by the destination or quarantined.
    async fn deliver(
        &mut self,
        batch: &Batch,
        stop: &CancellationToken,
        draining: bool,
    ) -> anyhow::Result<Delivery> {
        let mut todo: VecDeque<(usize, usize)> = VecDeque::new();
        todo.push_back((0, batch.lines.len()));
        let mut bisecting = false;
        while let Some((a, b)) = todo.pop_front() {
            if a >= b {
                continue;
            }
            let outcome = self.send(batch.text(a, b)).await;
            if outcome != Outcome::Written {
                self.status.requests_failed.fetch_add(1, Ordering::Relaxed);
            }
            match outcome {
                Outcome::Retry(..) | Outcome::Setup(..) => self.status.down.mark_down(),
                _ => self.status.down.mark_up(),
            }
            match outcome {
                Outcome::Written => {
                    self.status
                        .points_sent
                        .fetch_add((b - a) as u64, Ordering::Relaxed);
                    self.status.refused.store(false, Ordering::Relaxed);
                    self.status.set_error(None);
                    self.backoff.reset();
                    self.retry_log.reset();
                }
                Outcome::TooLarge(text) => {
                    self.status.set_error(Some(format!("HTTP 413: {text}")));
                    if b - a == 1 {
                        let l = batch.lines[a];
                        self.quarantine(
                            batch.stream,
                            l.id,
                            Some(413),
                            &format!("the point is larger than the destination accepts: {text}"),
                            batch.text(a, b).trim_end(),
                        )
                        .await?;
                    } else {
                        let mid = a + (b - a) / 2;
                        if a == 0 && b == batch.lines.len() {
                            // The whole batch was too large: later batches are half as large.
                            // (A split part being too large says more about its points.)
                            self.batch_size = self.batch_size.min(((b - a) / 2).max(1));
                        }
                        self.status.splits.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(output = %self.dest, lines = b - a, batch_size = self.batch_size, "destination says the request is too large (HTTP 413); splitting it and sending smaller batches");
                        todo.push_front((mid, b));
                        todo.push_front((a, mid));
                    }
                }
                Outcome::Rejected(status, text, body) => {
                    self.status
                        .set_error(Some(format!("HTTP {status}: {text}")));
                    if b - a == 1 {
                        let l = batch.lines[a];
                        self.quarantine(
                            batch.stream,
                            l.id,
                            Some(status),
                            &text,
                            batch.text(a, b).trim_end(),
                        )
                        .await?;
                        continue;
                    }
                    if !bisecting {
                        bisecting = true;
                        tracing::warn!(output = %self.dest, lines = b - a, "destination rejected part of a batch (HTTP {status}); it kept the valid lines, finding the rejected ones: {text}");
                    }
                    let texts: Vec<&str> = (a..b).map(|i| batch.text(i, i + 1)).collect();
                    let hints: Vec<usize> = hinted_lines(&body, &texts)
                        .into_iter()
                        .map(|i| a + i)
                        .collect();
                    if !hints.is_empty() && hints.len() < b - a {
                        // The named lines one by one, the ranges between them as they are.
                        let mut parts = Vec::new();
                        let mut from = a;
                        for h in hints {
                            parts.push((from, h));
                            parts.push((h, h + 1));
                            from = h + 1;
                        }
                        parts.push((from, b));
                        for p in parts.into_iter().rev() {
                            if p.0 < p.1 {
                                todo.push_front(p);
                            }
                        }
                    } else {
                        let mid = a + (b - a) / 2;
                        todo.push_front((mid, b));
                        todo.push_front((a, mid));
                    }
                }
                Outcome::Retry(after, why) => {
                    self.status.set_error(Some(why.clone()));
                    let delay = after.unwrap_or_else(|| self.backoff.next_delay());
                    if let Some(suppressed) = self.retry_log.allow() {
                        tracing::warn!(output = %self.dest, suppressed, "write failed, data kept, retrying in {delay:?}: {why}");
                    }
                    todo.push_front((a, b));
                    if self.pause(delay, stop, draining).await {
                        return Ok(Delivery::Stopped);
                    }
                }
                Outcome::Setup(status, why) => {
                    self.status.refused.store(true, Ordering::Relaxed);
                    self.status.set_error(Some(format!("HTTP {status}: {why}")));
                    let delay = self.cfg.setup_retry_interval.mul_f64(self.backoff.jitter());
                    if let Some(suppressed) = self.retry_log.allow() {
                        tracing::error!(output = %self.dest, status, suppressed, "destination refuses writes (check credentials and that the database/bucket exists); data is kept, retrying in {delay:?}: {why}");
                    }
                    todo.push_front((a, b));
                    if self.pause(delay, stop, draining).await {
                        return Ok(Delivery::Stopped);
                    }
                }
            }
        }
        if bisecting {
            tracing::info!(output = %self.dest, "partially rejected batch settled: valid lines delivered, rejected ones quarantined");
        }
        Ok(Delivery::Done)
    }

    /// Delivers readings until `stop` is cancelled; then keeps sending for at most
    /// `drain_deadline` while there is something left and the destination accepts it.
    pub async fn run(
        mut self,
        mut committed: watch::Receiver<i64>,
        stop: CancellationToken,
        drain_deadline: Duration,
    ) {
        let dest = self.dest.clone();
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut partial_since: Option<tokio::time::Instant> = None;
        // The newest committed id when the partial batch was read.
        let mut partial_seen_at = 0i64;
        let mut successes_since_split = 0u32;
        // When the other series are next looked at.
        let mut streams_due = tokio::time::Instant::now();
        tracing::info!(output = %dest, url = %crate::redact::url(&self.url), "influxdb output started");
        loop {
            if drain_until.is_none() && stop.is_cancelled() {
                drain_until = Some(tokio::time::Instant::now() + drain_deadline);
            }
            let draining = drain_until.is_some();
            if drain_until.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
            let limit = self.batch_size;
            // A partial batch was seen: read again only once a full batch has been committed
            // (reading ids are dense) or the flush is due, so the rows are read and decoded once.
            if let (false, Some(since), Some(after)) =
                (draining, partial_since, self.readings.next_after())
            {
                let newest = *committed.borrow();
                let full =
                    newest != partial_seen_at && newest.saturating_sub(after) >= limit as i64;
                let due = since + self.cfg.flush_interval;
                if !full && tokio::time::Instant::now() < due {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        r = committed.changed() => {
                            if r.is_err() {
                                // No writer tells of commits any more: the flush still comes.
                                tokio::select! {
                                    _ = stop.cancelled() => {}
                                    _ = tokio::time::sleep_until(due) => {}
                                }
                            }
                        }
                        _ = tokio::time::sleep_until(due) => {}
                    }
                    continue;
                }
            }
            let seen_at = *committed.borrow_and_update();
            let rows = match self.readings.next_up_to(limit).await {
                Ok(r) => {
                    if let Some(c) = self.readings.cursor() {
                        self.status.cursor.store(c, Ordering::Relaxed);
                    }
                    r
                }
                Err(e) => {
                    tracing::error!(output = %dest, "cannot read outbox: {e}");
                    let delay = self.backoff.next_delay();
                    if self.pause(delay, &stop, draining).await && draining {
                        break;
                    }
                    continue;
                }
            };
            if draining && rows.is_empty() {
                // Every reading delivered: the other series, then stop.
                while drain_until.is_some_and(|d| tokio::time::Instant::now() < d) {
                    match self.deliver_streams(&stop, true).await {
                        Ok(Some(true)) => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::error!(output = %dest, "cannot deliver alerts or accounts, they stay in the store: {e}");
                            break;
                        }
                    }
                }
                break;
            }
            if !draining && rows.len() < limit && tokio::time::Instant::now() >= streams_due {
                // No full batch of readings waits: the other series get their turn.
                streams_due =
                    tokio::time::Instant::now() + self.cfg.flush_interval.max(MIN_STREAMS_INTERVAL);
                match self.deliver_streams(&stop, false).await {
                    Ok(Some(true)) => streams_due = tokio::time::Instant::now(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(output = %dest, "cannot deliver alerts or accounts, will try again: {e}");
                        let delay = self.backoff.next_delay();
                        self.pause(delay, &stop, false).await;
                    }
                }
                continue;
            }
            if rows.is_empty() {
                // Wait for the next commit (or the next look at the other series).
                tokio::select! {
                    _ = stop.cancelled() => {}
                    r = committed.changed() => { if r.is_err() { stop.cancelled().await; } }
                    _ = tokio::time::sleep_until(streams_due) => {}
                }
                continue;
            }
            if rows.len() < limit && !draining {
                // A partial batch waits until it fills or until flush_interval has passed since
                // it was first seen.
                let since = *partial_since.get_or_insert_with(tokio::time::Instant::now);
                if tokio::time::Instant::now() < since + self.cfg.flush_interval {
                    // Waits above for a full batch or the flush.
                    partial_seen_at = seen_at;
                    continue;
                }
            }
            partial_since = None;
            let batch = match self.encode(rows).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(output = %dest, "cannot prepare a batch: {e}");
                    let delay = self.backoff.next_delay();
                    if self.pause(delay, &stop, draining).await && draining {
                        break;
                    }
                    continue;
                }
            };
            let split_before = self.status.splits.load(Ordering::Relaxed);
            let delivered = if batch.lines.is_empty() {
                Ok(Delivery::Done)
            } else {
                self.deliver(&batch, &stop, draining).await
            };
            match delivered {
                Ok(Delivery::Done) => {
                    match self.readings.delivered(batch.last_id).await {
                        Ok(c) => {
                            if let Some(c) = c {
                                self.status.cursor.store(c, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            // The batch will be sent again (an idempotent replay).
                            tracing::error!(output = %dest, "cannot advance cursor: {e}");
                            self.readings.reload();
                        }
                    }
                    // After a split, grow back towards the configured size.
                    if self.status.splits.load(Ordering::Relaxed) == split_before
                        && self.batch_size < self.cfg.batch_size
                    {
                        successes_since_split += 1;
                        if successes_since_split >= 10 {
                            successes_since_split = 0;
                            self.batch_size = (self.batch_size * 2).min(self.cfg.batch_size);
                        }
                    }
                }
                Ok(Delivery::Stopped) => {
                    if draining {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(output = %dest, "delivery interrupted, the batch will be sent again: {e}");
                    let delay = self.backoff.next_delay();
                    if self.pause(delay, &stop, draining).await && draining {
                        break;
                    }
                }
            }
        }
        tracing::info!(output = %dest, name = %self.name, "influxdb output stopped");
    }
}

/// The write URL of a destination: `/write?db=&rp=&precision=` (v1) or
/// `/api/v2/write?org=&bucket=&precision=` (v2), below the configured base path.
pub fn write_url(cfg: &InfluxConfig) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(&cfg.url)?;
    let mut path = url.path().trim_end_matches('/').to_string();
    path.push_str(match cfg.api {
        InfluxApi::V1 => "/write",
        InfluxApi::V2 => "/api/v2/write",
    });
    url.set_path(&path);
    {
        let mut q = url.query_pairs_mut();
        match cfg.api {
            InfluxApi::V1 => {
                q.append_pair("db", cfg.database.as_deref().unwrap_or_default());
                if let Some(rp) = &cfg.retention_policy {
                    q.append_pair("rp", rp);
                }
                q.append_pair("precision", line_protocol::precision_v1(cfg.precision));
            }
            InfluxApi::V2 => {
                q.append_pair("org", cfg.org.as_deref().unwrap_or_default());
                q.append_pair("bucket", cfg.bucket.as_deref().unwrap_or_default());
                q.append_pair("precision", line_protocol::precision_v2(cfg.precision));
            }
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:05 2015", now),
            Some(Duration::from_secs(5))
        );
        // In the past: retry now. Absurdly far: capped.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn status_codes_map_to_outcomes() {
        assert_eq!(classify(204, None, String::new()), Outcome::Written);
        assert!(matches!(
            classify(413, None, String::new()),
            Outcome::TooLarge(_)
        ));
        assert!(matches!(
            classify(429, Some(Duration::from_secs(3)), String::new()),
            Outcome::Retry(Some(d), _) if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(503, None, String::new()),
            Outcome::Retry(None, _)
        ));
        assert!(matches!(
            classify(500, None, String::new()),
            Outcome::Retry(None, _)
        ));
        assert!(matches!(
            classify(401, None, String::new()),
            Outcome::Setup(401, _)
        ));
        assert!(matches!(
            classify(404, None, String::new()),
            Outcome::Setup(404, _)
        ));
        assert!(matches!(
            classify(400, None, "{\"error\":\"unable to parse 'x': bad\"}".into()),
            Outcome::Rejected(400, _, _)
        ));
        assert!(matches!(
            classify(
                400,
                None,
                "{\"code\":\"unauthorized\",\"message\":\"bad token\"}".into()
            ),
            Outcome::Setup(400, _)
        ));
        // A parse error that happens to mention a token is still about the lines.
        assert!(matches!(
            classify(
                400,
                None,
                "{\"error\":\"unable to parse 'x y': unexpected token\"}".into()
            ),
            Outcome::Rejected(400, _, _)
        ));
    }

    #[test]
    fn hints_by_line_number_and_by_content() {
        let lines = ["a v=1 1\n", "b v=2 2\n", "c v= 3\n", "d v=4 4\n"];
        // InfluxDB 1.x quotes the lines it could not parse.
        let v1 =
            r#"{"error":"partial write: unable to parse 'c v= 3': missing field value dropped=0"}"#;
        assert_eq!(hinted_lines(v1, &lines), vec![2]);
        // 2.x/3.x-style line numbers (1-based).
        let v2 = r#"{"code":"invalid","line":2,"message":"failed to parse line protocol: errors encountered on line(s):\nerror parsing line 2 (1-based): Invalid\nerror parsing line 4 (1-based): bad"}"#;
        assert_eq!(hinted_lines(v2, &lines), vec![1, 3]);
        // A type conflict names no line.
        let conflict = r#"{"error":"partial write: field type conflict: input field \"v\" on measurement \"x\" is type string, already exists as type float dropped=1"}"#;
        assert_eq!(hinted_lines(conflict, &lines), Vec::<usize>::new());
        // InfluxDB 3 `data` array.
        let v3 = r#"{"error":"partial write of line protocol occurred","data":[{"original_line":"d v=4 4","line_number":4,"error_message":"bad"}]}"#;
        assert_eq!(hinted_lines(v3, &lines), vec![3]);
        // Out-of-range numbers are ignored.
        assert_eq!(hinted_lines("line 9: nope", &lines), Vec::<usize>::new());
    }

    #[test]
    fn urls_for_both_apis() {
        let cfg = |extra: &str| {
            let toml = format!(
                "[site]\nid = \"s\"\n[outputs.influxdb.o]\nurl = \"http://127.0.0.1:8086/base/\"\n{extra}"
            );
            crate::config::load_str(&toml).unwrap().outputs.influxdb["o"].clone()
        };
        let v1 = write_url(&cfg(
            "database = \"energy\"\nretention_policy = \"one year\"\nprecision = \"us\"\n",
        ))
        .unwrap();
        assert_eq!(
            v1.as_str(),
            "http://127.0.0.1:8086/base/write?db=energy&rp=one+year&precision=u"
        );
        let v2 = write_url(&cfg(
            "api = \"v2\"\norg = \"park\"\nbucket = \"e\"\ntoken = \"t\"\nprecision = \"us\"\n",
        ))
        .unwrap();
        assert_eq!(
            v2.as_str(),
            "http://127.0.0.1:8086/base/api/v2/write?org=park&bucket=e&precision=us"
        );
    }
}
