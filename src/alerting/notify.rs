//! Notifiers: deliver alert transitions (firing, resolved) to people, from the store's alert
//! history (the durable outbox of alerts): an HTTP webhook (JSON, optional HMAC-SHA256
//! signature), the group robots Chinese park teams use (WeCom 企业微信, DingTalk 钉钉, Feishu 飞书,
//! text messages, signed where the robot supports it), or the log.
//!
//! Each notifier keeps a cursor in the store and advances it only after the receiver accepted
//! the message, so a receiver that is down gets everything once it is back (retried with
//! exponential backoff). Per rule and notifier at most `rate_max` messages go out per
//! `rate_period`; the rest are recorded as suppressed, so a flapping signal cannot flood a
//! channel. Rules route to notifiers with `notify = [...]`; `min_severity` filters.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::config::{NotifierConfig, NotifierKind, NotifyContext, Severity};
use crate::readings::now_ms;
use crate::storage::consumer::{Consumer, Feed};
use crate::storage::feeds::FeedStore as Db;

pub use crate::storage::feeds::StoredAlert;

fn severity_of(s: &str) -> Severity {
    match s {
        "critical" => Severity::Critical,
        "info" => Severity::Info,
        _ => Severity::Warning,
    }
}

/// The JSON document of an alert (webhook body; also what the MQTT output publishes).
pub fn alert_document(cfg: &NotifyContext, a: &StoredAlert) -> Value {
    let rule = cfg.alerts.iter().find(|r| r.id == a.rule);
    json!({
        "site": cfg.site.id,
        "park": cfg.site.park,
        "id": a.id,
        "rule": a.rule,
        "kind": rule.map(|r| r.kind().as_str()),
        "device": a.device,
        "quantity": a.quantity,
        "unit": a.quantity.parse::<crate::readings::Quantity>().map(|q| q.unit()).ok(),
        "state": a.state,
        "severity": a.severity,
        "value": a.value,
        "message": a.message,
        "text": super::words::describe(cfg, a).unwrap_or_else(|| a.message.clone()),
        "labels": rule.map(|r| r.labels.clone()).unwrap_or_default(),
        "ts_ms": a.ts_ms,
        "time": local_time(cfg, a.ts_ms),
    })
}

fn local_time(cfg: &NotifyContext, ts_ms: i64) -> String {
    let tz: chrono_tz::Tz = cfg
        .site
        .timezone
        .parse()
        .unwrap_or(chrono_tz::Asia::Shanghai);
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| {
            t.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_default()
}

/// The text message for the group robots, in the site's language (`[site] language`): what
/// happened in one sentence with the device's name and a rounded value
/// ([`super::words::describe`]), then site, rule and local time.
pub fn alert_text(cfg: &NotifyContext, a: &StoredAlert) -> String {
    let zh = cfg.site.language == crate::lang::Language::Zh;
    let resolved = a.state == "resolved";
    let (head, sev) = if zh {
        let sev = match a.severity.as_str() {
            "critical" => "严重",
            "info" => "提示",
            _ => "警告",
        };
        (
            if resolved {
                "【恢复】"
            } else {
                "【告警】"
            },
            sev,
        )
    } else {
        let sev = match a.severity.as_str() {
            "critical" => "critical",
            "info" => "info",
            _ => "warning",
        };
        (if resolved { "[RESOLVED] " } else { "[ALERT] " }, sev)
    };
    let what = super::words::describe(cfg, a).unwrap_or_else(|| a.message.clone());
    let site = cfg.site.name.clone().unwrap_or_else(|| cfg.site.id.clone());
    let park = cfg
        .site
        .park
        .as_ref()
        .map(|p| {
            if zh {
                format!("（{p}）")
            } else {
                format!(" ({p})")
            }
        })
        .unwrap_or_default();
    let (l_site, l_rule, l_time) = if zh {
        ("站点：", "规则：", "时间：")
    } else {
        ("Site: ", "Rule: ", "Time: ")
    };
    format!(
        "{head}{sev}\n{what}\n{l_site}{site}{park}\n{l_rule}{}\n{l_time}{}",
        a.rule,
        local_time(cfg, a.ts_ms)
    )
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, msg).as_ref().to_vec()
}

/// `sha256=<hex>` of the body, as sent in `X-Energy-Gateway-Signature`.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), body);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// DingTalk robot signature: base64(HMAC-SHA256(secret, "<ms>\n<secret>")).
pub fn dingtalk_sign(secret: &str, ts_ms: i64) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{ts_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// Feishu robot signature: base64(HMAC-SHA256(key = "<s>\n<secret>", message = "")).
pub fn feishu_sign(secret: &str, ts_s: i64) -> String {
    let mac = hmac_sha256(format!("{ts_s}\n{secret}").as_bytes(), b"");
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// A request ready to send: URL, headers, body.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Builds the request of notifier `n` for alert `a` at time `now` (ms).
pub fn build(
    cfg: &NotifyContext,
    n: &NotifierConfig,
    secret: Option<&str>,
    a: &StoredAlert,
    now: i64,
) -> Outgoing {
    let url = n.url.clone().unwrap_or_default();
    let text = alert_text(cfg, a);
    match n.kind {
        NotifierKind::Webhook | NotifierKind::Log => {
            let body = alert_document(cfg, a).to_string();
            let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
            if let Some(s) = secret {
                headers.push((
                    "X-Energy-Gateway-Signature".into(),
                    webhook_signature(s, body.as_bytes()),
                ));
            }
            Outgoing { url, headers, body }
        }
        NotifierKind::Wecom => Outgoing {
            url,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: json!({"msgtype": "text", "text": {"content": text}}).to_string(),
        },
        NotifierKind::Dingtalk => {
            let url = match secret {
                Some(s) => {
                    let sign = dingtalk_sign(s, now);
                    let enc: String = url_encode(&sign);
                    let sep = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{sep}timestamp={now}&sign={enc}")
                }
                None => url,
            };
            Outgoing {
                url,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: json!({"msgtype": "text", "text": {"content": text}}).to_string(),
            }
        }
        NotifierKind::Feishu => {
            let mut body = json!({"msg_type": "text", "content": {"text": text}});
            if let Some(s) = secret {
                let ts = now / 1000;
                body["timestamp"] = json!(ts.to_string());
                body["sign"] = json!(feishu_sign(s, ts));
            }
            Outgoing {
                url,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.to_string(),
            }
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether a robot accepted the message: HTTP 2xx and, for the robots, error code 0 in the body.
fn accepted(kind: NotifierKind, status: u16, body: &str) -> Result<(), String> {
    if !(200..300).contains(&status) {
        return Err(format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ));
    }
    let code = |k: &str| {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get(k).and_then(Value::as_i64))
    };
    let c = match kind {
        NotifierKind::Wecom | NotifierKind::Dingtalk => code("errcode"),
        NotifierKind::Feishu => code("code").or_else(|| code("StatusCode")),
        _ => None,
    };
    match c {
        Some(0) | None => Ok(()),
        Some(c) => Err(format!(
            "robot answered error code {c}: {}",
            body.chars().take(200).collect::<String>()
        )),
    }
}

/// Counters of one notifier.
#[derive(Debug, Default)]
pub struct NotifierStats {
    pub sent: std::sync::atomic::AtomicU64,
    pub suppressed: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
}

/// One running notifier.
pub struct Notifier {
    config: Arc<NotifyContext>,
    n: NotifierConfig,
    secret: Option<String>,
    db: Arc<Db>,
    client: reqwest::Client,
    stats: Arc<NotifierStats>,
}

impl Notifier {
    pub fn new(
        config: Arc<NotifyContext>,
        n: NotifierConfig,
        store_path: &std::path::Path,
        stats: Arc<NotifierStats>,
    ) -> anyhow::Result<Self> {
        let secret = n
            .secret
            .as_ref()
            .map(|s| {
                s.resolve()
                    .map_err(|e| anyhow::anyhow!("notifiers {}: {e}", n.id))
            })
            .transpose()?;
        crate::install_crypto_provider();
        let client = reqwest::Client::builder().timeout(n.timeout).build()?;
        Ok(Notifier {
            config,
            db: Arc::new(Db::open(store_path)?),
            n,
            secret,
            client,
            stats,
        })
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> crate::storage::Result<T> + Send + 'static,
    ) -> Option<T> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || f(&db)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::error!("notifier store: {e}");
                None
            }
            Err(e) => {
                tracing::error!("notifier store task: {e}");
                None
            }
        }
    }

    fn wants(&self, a: &StoredAlert) -> bool {
        if a.state == "pending" {
            return false;
        }
        if severity_of(&a.severity) < self.n.min_severity {
            return false;
        }
        match self.config.alerts.iter().find(|r| r.id == a.rule) {
            Some(r) if !r.notify.is_empty() => r.notify.contains(&self.n.id),
            _ => true,
        }
    }

    async fn send(&self, a: &StoredAlert) -> Result<(), String> {
        if self.n.kind == NotifierKind::Log {
            // One line per notification: the robots' multi-line text joined with " | ".
            let text = alert_text(&self.config, a)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" | ");
            if a.state == "resolved" {
                tracing::info!(notifier = %self.n.id, rule = %a.rule, "{text}");
            } else {
                tracing::warn!(notifier = %self.n.id, rule = %a.rule, "{text}");
            }
            return Ok(());
        }
        let out = build(&self.config, &self.n, self.secret.as_deref(), a, now_ms());
        let mut req = self.client.post(&out.url).body(out.body);
        for (k, v) in &out.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(crate::redact::request_error)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        accepted(self.n.kind, status, &body)
    }

    /// Delivers until `stop`; undelivered alerts stay for the next start.
    pub async fn run(self, stop: CancellationToken) {
        use std::sync::atomic::Ordering;
        let id = self.n.id.clone();
        let mut backoff =
            crate::backoff::Backoff::with_limits(Duration::from_secs(1), self.n.max_backoff);
        let mut log = crate::log_limit::LogLimiter::new(Duration::from_secs(60));
        let mut alerts = Consumer::new(
            AlertFeed {
                db: self.db.clone(),
                notifier: id.as_str().into(),
            },
            50,
        );
        loop {
            let batch = match alerts.next().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("notifier store: {e}");
                    Vec::new()
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
            for a in batch {
                if stop.is_cancelled() {
                    return;
                }
                if self.wants(&a) {
                    let since = now_ms() - self.n.rate_period.as_millis() as i64;
                    let (nid, rule) = (id.clone(), a.rule.clone());
                    let recent = self
                        .db(move |d| d.notifications_sent_since(&nid, &rule, since))
                        .await
                        .unwrap_or(0);
                    if recent >= self.n.rate_max {
                        self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(notifier = %id, rule = %a.rule, "rate limit reached ({} per {:?}): {} notification suppressed", self.n.rate_max, self.n.rate_period, a.state);
                        let (nid, a2) = (id.clone(), a.clone());
                        self.db(move |d| {
                            d.record_notification(&nid, a2.id, &a2.rule, "suppressed", "rate limit")
                        })
                        .await;
                    } else {
                        // Retry until delivered (or until stop: then it is sent after restart).
                        loop {
                            match self.send(&a).await {
                                Ok(()) => {
                                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                                    backoff.reset();
                                    log.reset();
                                    let (nid, a2) = (id.clone(), a.clone());
                                    self.db(move |d| {
                                        d.record_notification(&nid, a2.id, &a2.rule, "sent", "")
                                    })
                                    .await;
                                    break;
                                }
                                Err(e) => {
                                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                                    let delay = backoff.next_delay();
                                    if let Some(suppressed) = log.allow() {
                                        tracing::warn!(notifier = %id, rule = %a.rule, suppressed, "notification failed, retrying in {delay:?}: {e}");
                                    }
                                    tokio::select! {
                                        _ = stop.cancelled() => return,
                                        _ = tokio::time::sleep(delay) => {}
                                    }
                                }
                            }
                        }
                    }
                }
                if let Err(e) = alerts.delivered(a.id).await {
                    tracing::error!("notifier store: {e}");
                }
            }
        }
    }
}

/// Ids of the rules whose latest recorded transition is `firing` (to restore the engine).
pub fn firing_rules(store_path: &std::path::Path) -> crate::storage::Result<Vec<String>> {
    Db::open(store_path)?.firing_rules()
}

/// The alert history as a notifier's feed for the store's delivery consumer.
#[derive(Clone)]
struct AlertFeed {
    db: Arc<Db>,
    notifier: Arc<str>,
}

impl Feed for AlertFeed {
    type Item = StoredAlert;
    type Pos = i64;

    fn load_cursor(&self) -> anyhow::Result<i64> {
        Ok(self.db.notifier_cursor(&self.notifier)?)
    }

    fn read_after(&self, after: i64, limit: usize) -> anyhow::Result<Vec<StoredAlert>> {
        Ok(self.db.alerts_after(after, limit, true)?)
    }

    fn store_cursor(&self, to: i64) -> anyhow::Result<()> {
        Ok(self.db.advance_notifier(&self.notifier, to)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_documented_algorithms() {
        // HMAC-SHA256 test vector (RFC 4231 case 2): key "Jefe", "what do ya want for nothing?"
        assert_eq!(
            webhook_signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // DingTalk: base64(HMAC-SHA256(secret, ts\nsecret)), 44 characters of base64
        let s = dingtalk_sign("SECxyz", 1_700_000_000_000);
        assert_eq!(s.len(), 44);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&s)
                .unwrap(),
            hmac_sha256(b"SECxyz", b"1700000000000\nSECxyz")
        );
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(feishu_sign("k", 1_700_000_000))
                .unwrap(),
            hmac_sha256(b"1700000000\nk", b"")
        );
        assert_eq!(url_encode("a+b/c="), "a%2Bb%2Fc%3D");
    }

    #[test]
    fn robots_report_errors_in_the_body() {
        assert!(accepted(NotifierKind::Wecom, 200, r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert!(accepted(
            NotifierKind::Wecom,
            200,
            r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#
        )
        .is_err());
        assert!(accepted(
            NotifierKind::Feishu,
            200,
            r#"{"code":19021,"msg":"sign match fail"}"#
        )
        .is_err());
        assert!(accepted(NotifierKind::Webhook, 503, "").is_err());
        assert!(accepted(NotifierKind::Webhook, 204, "").is_ok());
    }
}
