//! InfluxDB output: drains the store's reading outbox to one InfluxDB destination through the v1
//! (`/write`) or v2 (`/api/v2/write`) HTTP write API, one batch in flight at a time so order is
//! kept. The destination's cursor in the store advances only after a 2xx answer; every other
//! outcome leaves the readings in the store to be sent again, except a batch the server rejects
//! as malformed (400), which is recorded in the quarantine table (InfluxDB has already kept the
//! batch's valid lines) so it cannot block the queue.
//!
//! Schema: measurement `reading` (configurable), tags `site`, `park`, `device`, `quantity`,
//! `unit`, `carrier`, `line`, `model`; fields `value` (float, absent when bad), `quality`
//! (`good`/`bad`/`estimated`) and `reason`; timestamp = acquisition time in ms. A replay writes
//! the same series and timestamp again and so overwrites instead of duplicating.

pub mod line_protocol;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, InfluxApi, InfluxConfig, Synchronous};
use crate::readings::Quantity;
use crate::storage::{Store, StoredReading};

/// Live counters of one destination.
#[derive(Debug, Default)]
pub struct OutputStatus {
    pub points_sent: AtomicU64,
    pub requests_failed: AtomicU64,
    pub cursor: AtomicI64,
}

/// What an attempt to write a batch came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    Written,
    /// Retry after the given delay (or the usual backoff when `None`).
    Retry(Option<Duration>, String),
    /// Setup problem (credentials, missing database): keep the data, retry slowly.
    Setup(String),
    /// The batch is too large: send smaller batches.
    TooLarge,
    /// The server refused the batch's content for good.
    Rejected(u16, String),
}

/// One InfluxDB destination.
pub struct InfluxOutput {
    name: String,
    cfg: InfluxConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    auth: Auth,
    store: Arc<Mutex<Store>>,
    series: HashMap<(String, Quantity), String>,
    device_tags: HashMap<String, Vec<(&'static str, String)>>,
    status: Arc<OutputStatus>,
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic(String, String),
    Token(String),
}

impl InfluxOutput {
    /// Prepares the output `name` of `config` (which must have passed the configuration check).
    pub fn new(
        name: &str,
        config: &Config,
        store_path: PathBuf,
        status: Arc<OutputStatus>,
    ) -> anyhow::Result<Self> {
        let cfg = config
            .outputs
            .influxdb
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no output named {name}"))?
            .clone();
        let mut url = reqwest::Url::parse(&cfg.url)?;
        {
            let mut path = url.path().trim_end_matches('/').to_string();
            path.push_str(match cfg.api {
                InfluxApi::V1 => "/write",
                InfluxApi::V2 => "/api/v2/write",
            });
            url.set_path(&path);
            let mut q = url.query_pairs_mut();
            match cfg.api {
                InfluxApi::V1 => {
                    q.append_pair("db", cfg.database.as_deref().unwrap_or_default());
                    if let Some(rp) = &cfg.retention_policy {
                        q.append_pair("rp", rp);
                    }
                }
                InfluxApi::V2 => {
                    q.append_pair("org", cfg.org.as_deref().unwrap_or_default());
                    q.append_pair("bucket", cfg.bucket.as_deref().unwrap_or_default());
                }
            }
            q.append_pair("precision", "ms");
        }
        let secret = |s: &Option<crate::config::Secret>| -> anyhow::Result<Option<String>> {
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
        let store = Store::open(&store_path, Synchronous::Normal)?;
        let mut device_tags = HashMap::new();
        for d in &config.devices {
            let mut tags: Vec<(&'static str, String)> =
                vec![("site", config.site.id.clone()), ("device", d.id.clone())];
            for (k, v) in [
                ("park", &config.site.park),
                ("carrier", &d.carrier),
                ("line", &d.line),
                ("model", &d.model),
            ] {
                if let Some(v) = v {
                    tags.push((k, v.clone()));
                }
            }
            device_tags.insert(d.id.clone(), tags);
        }
        Ok(InfluxOutput {
            name: name.to_string(),
            cfg,
            client,
            url,
            auth,
            store: Arc::new(Mutex::new(store)),
            series: HashMap::new(),
            device_tags,
            status,
        })
    }

    /// Cursor name of this destination in the store.
    pub fn destination(name: &str) -> String {
        format!("influxdb.{name}")
    }

    fn series_for(&mut self, device: &str, quantity: Quantity) -> &str {
        let key = (device.to_string(), quantity);
        if !self.series.contains_key(&key) {
            let mut tags: Vec<(&str, &str)> = self
                .device_tags
                .get(device)
                .map(|t| t.iter().map(|(k, v)| (*k, v.as_str())).collect())
                .unwrap_or_else(|| vec![("device", device)]);
            tags.push(("quantity", quantity.as_str()));
            tags.push(("unit", quantity.unit()));
            let s = line_protocol::series_key(&self.cfg.measurement, &tags);
            self.series.insert(key.clone(), s);
        }
        &self.series[&key]
    }

    async fn load(&self, after: i64, limit: usize) -> anyhow::Result<Vec<StoredReading>> {
        self.store_op(move |s| s.readings_after(after, limit)).await
    }

    async fn store_op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, crate::storage::StoreError> + Send + 'static,
    ) -> anyhow::Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let s = store
                .lock()
                .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
            Ok::<_, anyhow::Error>(f(&s)?)
        })
        .await?
    }

    async fn send(&self, body: String) -> Outcome {
        let mut req = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
        req = match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Token(t) => req.header("Authorization", format!("Token {t}")),
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(None, format!("request failed: {e}")),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(500).collect();
        match status {
            200..=299 => Outcome::Written,
            413 => Outcome::TooLarge,
            429 | 503 => Outcome::Retry(retry_after, format!("HTTP {status}: {text}")),
            401 | 403 | 404 => Outcome::Setup(format!("HTTP {status}: {text}")),
            400..=499 => Outcome::Rejected(status, text),
            _ => Outcome::Retry(retry_after, format!("HTTP {status}: {text}")),
        }
    }

    /// Delivers readings until `stop` is cancelled; then keeps sending for at most
    /// `drain_deadline` while there is something left and the destination accepts it.
    pub async fn run(
        mut self,
        mut committed: watch::Receiver<i64>,
        stop: CancellationToken,
        drain_deadline: Duration,
    ) {
        let dest = Self::destination(&self.name);
        let mut backoff = Backoff::new();
        let mut batch_size = self.cfg.batch_size.max(1);
        let mut log = crate::acquisition::LogLimiter::new(Duration::from_secs(60));
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut partial_since: Option<tokio::time::Instant> = None;
        tracing::info!(output = %dest, url = %redact(&self.url), "influxdb output started");
        loop {
            if drain_until.is_none() && stop.is_cancelled() {
                drain_until = Some(tokio::time::Instant::now() + drain_deadline);
            }
            if drain_until.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
            let cursor = match self
                .store_op({
                    let d = dest.clone();
                    move |s| s.cursor(&d)
                })
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(output = %dest, "cannot read cursor: {e}");
                    if sleep_or(backoff.next_delay(), &stop, drain_until).await {
                        break;
                    }
                    continue;
                }
            };
            self.status.cursor.store(cursor, Ordering::Relaxed);
            let rows = match self.load(cursor, batch_size).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(output = %dest, "cannot read outbox: {e}");
                    if sleep_or(backoff.next_delay(), &stop, drain_until).await {
                        break;
                    }
                    continue;
                }
            };
            if rows.is_empty() {
                if drain_until.is_some() {
                    break; // everything delivered
                }
                // Wait for the next commit.
                tokio::select! {
                    _ = stop.cancelled() => {}
                    r = committed.changed() => { if r.is_err() { stop.cancelled().await; } }
                }
                continue;
            }
            if rows.len() < batch_size && drain_until.is_none() {
                // A partial batch waits until it fills or until flush_interval has passed since
                // it was first seen.
                let since = *partial_since.get_or_insert_with(tokio::time::Instant::now);
                let due = since + self.cfg.flush_interval;
                if tokio::time::Instant::now() < due {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                    continue;
                }
            }
            partial_since = None;
            let first = rows.first().map(|r| r.id).unwrap_or(0);
            let last = rows.last().map(|r| r.id).unwrap_or(0);
            let mut body = String::with_capacity(rows.len() * 120);
            for r in &rows {
                let series = self
                    .series_for(&r.reading.device, r.reading.quantity)
                    .to_string();
                line_protocol::push_reading(&mut body, &series, &r.reading);
            }
            match self.send(body).await {
                Outcome::Written => {
                    let d = dest.clone();
                    if let Err(e) = self.store_op(move |s| s.advance_cursor(&d, last)).await {
                        tracing::error!(output = %dest, "cannot advance cursor: {e}");
                    }
                    self.status
                        .points_sent
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    self.status.cursor.store(last, Ordering::Relaxed);
                    backoff.reset();
                    log.reset();
                    batch_size = self.cfg.batch_size.max(1);
                }
                Outcome::TooLarge => {
                    batch_size = (rows.len() / 2).max(1);
                    tracing::warn!(output = %dest, batch_size, "destination says the batch is too large; sending smaller batches");
                }
                Outcome::Rejected(status, text) => {
                    tracing::error!(output = %dest, first_id = first, last_id = last, "destination rejected the batch (HTTP {status}); quarantined: {text}");
                    let d = dest.clone();
                    let t = text.clone();
                    if let Err(e) = self
                        .store_op(move |s| {
                            s.quarantine(&d, first, last, Some(status), &t)?;
                            s.advance_cursor(&d, last)
                        })
                        .await
                    {
                        tracing::error!(output = %dest, "cannot quarantine: {e}");
                    }
                }
                Outcome::Retry(after, why) => {
                    self.status.requests_failed.fetch_add(1, Ordering::Relaxed);
                    let delay = after.unwrap_or_else(|| backoff.next_delay());
                    if let Some(suppressed) = log.allow() {
                        tracing::warn!(output = %dest, suppressed, "write failed, retrying in {delay:?}: {why}");
                    }
                    if sleep_or(delay, &stop, drain_until).await {
                        break;
                    }
                }
                Outcome::Setup(why) => {
                    self.status.requests_failed.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay().max(Duration::from_secs(30));
                    if let Some(suppressed) = log.allow() {
                        tracing::error!(output = %dest, suppressed, "destination refuses writes (check credentials and that the database/bucket exists); data is kept, retrying in {delay:?}: {why}");
                    }
                    if sleep_or(delay, &stop, drain_until).await {
                        break;
                    }
                }
            }
        }
        tracing::info!(output = %dest, "influxdb output stopped");
    }
}

/// Sleeps for `d`; returns true when the output should stop now (draining and past its deadline,
/// or told to stop while waiting to retry: undelivered data stays in the store).
async fn sleep_or(
    d: Duration,
    stop: &CancellationToken,
    drain_until: Option<tokio::time::Instant>,
) -> bool {
    if drain_until.is_some() {
        return true; // no retries while shutting down: the data waits in the store
    }
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => false,
    }
}

fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

/// Exponential backoff from 1 s to 60 s with ±20 % jitter.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff {
            next: Duration::from_secs(1),
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(60));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = 0.8 + 0.4 * (f64::from(nanos % 1000) / 1000.0);
        base.mul_f64(jitter)
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_secs(1);
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
        for _ in 0..10 {
            b.next_delay();
        }
        let capped = b.next_delay();
        assert!(capped <= Duration::from_secs(72) && capped >= Duration::from_secs(48));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
    }
}
