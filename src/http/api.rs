//! The JSON API under `/api/v1/` and the health checks. Every endpoint, its parameters and
//! its answers are documented in `docs/openapi.yaml`.
//!
//! Errors are `{"error": "..."}` with a status that says whose fault it is: 400 for a request
//! that cannot be read, 404 for an unknown thing, 422 for data that was read but refused (an
//! unknown product, a negative value), 503 while no pipeline runs (reload), 500 otherwise.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::summary::{self, local_rfc3339};
use super::{ApiError, GatewayView, Shared};
use crate::accounting::calendar::Period;
use crate::accounting::import::{
    self, ImportError, ImportRow, ImportSummary, ProductionRow, Rows, ValueAddedRow,
};
use crate::accounting::AccountingContext;
use crate::readings::{Quantity, TimestampMs};

type ApiResult<T> = Result<T, ApiError>;

/// One report at a time: building one reads a whole period from the store.
static REPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

fn gateway(shared: &Shared) -> ApiResult<Arc<GatewayView>> {
    shared.gateway().ok_or_else(ApiError::unavailable)
}

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// `GET /healthz`: the process answers (no token needed, no details).
pub async fn healthz(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "phase": shared.phase(),
        "uptime_seconds": shared.uptime().as_secs(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Status, devices, readings, outputs
// ---------------------------------------------------------------------------------------------

/// `GET /api/v1/status`: what the live page shows.
pub async fn status(State(shared): State<Arc<Shared>>) -> ApiResult<Json<Value>> {
    let gw = gateway(&shared)?;
    let cfg = &gw.config;
    let ob = gw.outbox.snapshot();
    let accounts = summary::snapshot(&gw);
    Ok(Json(json!({
        "site": {
            "id": cfg.site.id,
            "name": cfg.site.name,
            "park": cfg.site.park,
            "timezone": cfg.site.timezone,
            "main_meters": cfg.site.main_meters,
            "language": cfg.site.language.as_str(),
            "contracted_kw": contracted_kw(cfg),
        },
        "version": env!("CARGO_PKG_VERSION"),
        "phase": shared.phase(),
        "time": local_rfc3339(cfg, crate::readings::now_ms()),
        "uptime_seconds": shared.uptime().as_secs(),
        "devices": { "online": gw.devices_online(), "total": gw.devices.len() },
        "site_power_kw": gw.site_power_kw(),
        "readings_per_second": shared.readings_per_second(),
        "readings_processed": gw.processing.readings.load(Ordering::Relaxed),
        "last_committed_id": gw.committed_id(),
        "alerts_firing": gw.active_alerts.lock().unwrap_or_else(|p| p.into_inner()).len(),
        "outbox": { "rows": ob.rows, "bytes": ob.bytes, "full": ob.full },
        "accounts": accounts,
        "reload": shared.reload_state(),
        "clock": clock_status(&gw.clock),
    })))
}

/// The contracted demand of the site: the largest of its demand rules' `contracted_kw`.
fn contracted_kw(cfg: &crate::config::Config) -> Option<f64> {
    cfg.alerts
        .iter()
        .filter_map(|r| match &r.condition {
            crate::config::Condition::Demand(d) => Some(d.contracted_kw),
            _ => None,
        })
        .reduce(f64::max)
}

/// The clock guard's state for `/api/v1/status`.
fn clock_status(clock: &crate::clock::Clock) -> Value {
    let trusted = clock.observe().trusted;
    json!({
        "trusted": trusted,
        "label": if trusted { "时钟可信" } else { "时钟不可信" },
        "label_en": if trusted { "clock trusted" } else { "clock not trusted" },
        "reason": (!trusted).then(|| clock.reason()),
        "steps": clock.steps(),
        "held_readings": clock.held(),
    })
}

#[derive(Debug, Serialize)]
struct LatestOut {
    device: String,
    quantity: Quantity,
    unit: &'static str,
    value: f64,
    ts_ms: TimestampMs,
    time: String,
}

fn latest_of(gw: &GatewayView, device: Option<&str>, quantity: Option<Quantity>) -> Vec<LatestOut> {
    let latest = gw.latest.lock().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<LatestOut> = latest
        .iter()
        .filter(|(d, q, _, _)| device.is_none_or(|x| x == *d) && quantity.is_none_or(|x| x == *q))
        .map(|(d, q, ts, v)| LatestOut {
            device: d.to_string(),
            quantity: q,
            unit: q.unit(),
            value: v,
            ts_ms: ts,
            time: local_rfc3339(&gw.config, ts),
        })
        .collect();
    out.sort_by(|a, b| {
        (a.device.as_str(), a.quantity.as_str()).cmp(&(b.device.as_str(), b.quantity.as_str()))
    });
    out
}

fn device_json(gw: &GatewayView, d: &crate::config::DeviceConfig) -> Value {
    let source = match &d.modbus {
        Some(m) => match (&m.address, &m.bus) {
            (Some(a), _) => json!({ "kind": "modbus_tcp", "address": a, "unit": m.unit }),
            (None, Some(b)) => json!({ "kind": "modbus_bus", "bus": b, "unit": m.unit }),
            _ => json!({ "kind": "modbus" }),
        },
        None => match (crate::acquisition::meter_bus::section(d), &d.opcua) {
            (Some((kind, m)), _) => json!({ "kind": kind, "bus": m.bus, "address": m.address }),
            (None, Some(o)) => json!({ "kind": "opcua", "endpoint": o.endpoint }),
            (None, None) => json!({ "kind": "other" }),
        },
    };
    json!({
        "id": d.id,
        "name": d.name,
        "carrier": d.carrier,
        "line": d.line,
        "model": d.model,
        "enabled": d.enabled,
        "source": source,
        "status": gw.devices.get(&d.id).map(|s| s.snapshot()),
        "requests_per_cycle": gw.requests_per_cycle.get(&d.id),
        "latest": latest_of(gw, Some(&d.id), None),
    })
}

/// `GET /api/v1/devices`: every configured device, its health and latest values.
pub async fn devices(State(shared): State<Arc<Shared>>) -> ApiResult<Json<Value>> {
    let gw = gateway(&shared)?;
    let list: Vec<Value> = gw
        .config
        .devices
        .iter()
        .map(|d| device_json(&gw, d))
        .collect();
    Ok(Json(json!({
        "online": gw.devices_online(),
        "total": gw.devices.len(),
        "devices": list,
    })))
}

/// `GET /api/v1/devices/{id}`
pub async fn device(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let gw = gateway(&shared)?;
    match gw.config.device(&id) {
        Some(d) => Ok(Json(device_json(&gw, d))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown device \"{id}\""),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatestQuery {
    device: Option<String>,
    quantity: Option<String>,
}

/// `GET /api/v1/readings/latest?device=&quantity=`: the latest good value of every series.
pub async fn latest_readings(
    State(shared): State<Arc<Shared>>,
    q: Result<Query<LatestQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let gw = gateway(&shared)?;
    if let Some(d) = &q.device {
        if gw.config.device(d).is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown device \"{d}\""),
            ));
        }
    }
    let quantity = match &q.quantity {
        None => None,
        Some(s) => Some(
            s.parse::<Quantity>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    Ok(Json(
        json!({ "readings": latest_of(&gw, q.device.as_deref(), quantity) }),
    ))
}

/// Delivery state of one destination.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub destination: String,
    /// Highest reading id the destination confirmed.
    pub cursor: i64,
    /// Committed readings not yet confirmed by the destination.
    pub depth: u64,
    /// Acquisition time of the oldest of them.
    pub oldest_undelivered_ts_ms: Option<TimestampMs>,
    /// Seconds since then (0 when nothing waits).
    pub age_seconds: f64,
}

/// The backlog of every enabled output, from the store's cursors and the live counters.
pub async fn backlogs(shared: &Arc<Shared>, gw: &GatewayView) -> anyhow::Result<Vec<Backlog>> {
    let last = gw.committed_id();
    let live: Vec<(String, i64)> = gw
        .outputs
        .iter()
        .map(|(d, s)| (d.clone(), s.cursor.load(Ordering::Relaxed)))
        .collect();
    shared
        .with_store(&gw.config, move |s| {
            let now = crate::readings::now_ms();
            let mut out = Vec::new();
            for (dest, live_cursor) in live {
                let cursor = live_cursor.max(s.cursor(&dest)?);
                let depth = (last - cursor).max(0) as u64;
                let oldest = if depth > 0 {
                    s.oldest_after(cursor)?
                } else {
                    None
                };
                out.push(Backlog {
                    destination: dest,
                    cursor,
                    depth,
                    oldest_undelivered_ts_ms: oldest,
                    age_seconds: oldest
                        .map(|t| (now - t).max(0) as f64 / 1000.0)
                        .unwrap_or(0.0),
                });
            }
            Ok(out)
        })
        .await
}

/// `GET /api/v1/outputs`: every destination's delivery state.
pub async fn outputs(State(shared): State<Arc<Shared>>) -> ApiResult<Json<Value>> {
    let gw = gateway(&shared)?;
    let backlogs = backlogs(&shared, &gw).await.map_err(ApiError::internal)?;
    let list: Vec<Value> = backlogs
        .into_iter()
        .map(|b| {
            let st = &gw.outputs[&b.destination];
            json!({
                "destination": b.destination,
                "cursor": b.cursor,
                "depth": b.depth,
                "oldest_undelivered_ts_ms": b.oldest_undelivered_ts_ms,
                "age_seconds": b.age_seconds,
                "points_sent": st.points_sent.load(Ordering::Relaxed),
                "requests": st.requests.load(Ordering::Relaxed),
                "requests_failed": st.requests_failed.load(Ordering::Relaxed),
                "quarantined": st.quarantined.load(Ordering::Relaxed),
                "refused": st.refused.load(Ordering::Relaxed),
                "last_status": st.last_status.load(Ordering::Relaxed),
                "last_error": st.last_error(),
            })
        })
        .collect();
    let ob = gw.outbox.snapshot();
    Ok(Json(json!({
        "outputs": list,
        "outbox": {
            "rows": ob.rows,
            "bytes": ob.bytes,
            "full": ob.full,
            "full_events": ob.full_events,
            "evicted": ob.evicted,
            "commit_errors": ob.commit_errors,
        },
    })))
}

// ---------------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------------

fn alert_json(cfg: &crate::config::Config, e: &crate::storage::AlertEvent) -> Value {
    json!({
        "rule": e.rule,
        "device": e.device,
        "quantity": e.quantity,
        "state": e.state,
        "severity": e.severity,
        "value": e.value,
        "message": e.message,
        "ts_ms": e.ts_ms,
        "time": local_rfc3339(cfg, e.ts_ms),
    })
}

/// `GET /api/v1/alerts/active`: rules firing now, each with the event that made it fire.
pub async fn active_alerts(State(shared): State<Arc<Shared>>) -> ApiResult<Json<Value>> {
    let gw = gateway(&shared)?;
    let active = gw
        .active_alerts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let list: Vec<Value> = active.values().map(|e| alert_json(&gw.config, e)).collect();
    Ok(Json(json!({ "alerts": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<String>,
    since: Option<String>,
    until: Option<String>,
    rule: Option<String>,
    device: Option<String>,
    state: Option<String>,
}

/// Most events one history answer holds.
pub const MAX_HISTORY: usize = 10_000;

/// `GET /api/v1/alerts/history`: alert transitions from the store, newest first.
pub async fn alert_history(
    State(shared): State<Arc<Shared>>,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match &q.limit {
        None => 100,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_HISTORY).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit \"{s}\" must be a whole number from 1 to {MAX_HISTORY}"
                )))
            }
        },
    };
    let time = |name: &str, v: &Option<String>| -> ApiResult<Option<TimestampMs>> {
        v.as_deref()
            .map(|s| {
                crate::accounting::import::parse_time(s)
                    .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
            })
            .transpose()
    };
    let since = time("since", &q.since)?;
    let until = time("until", &q.until)?;
    if let Some(s) = &q.state {
        if !matches!(s.as_str(), "pending" | "firing" | "resolved") {
            return Err(ApiError::bad_request(format!(
                "state \"{s}\" must be pending, firing or resolved"
            )));
        }
    }
    let gw = gateway(&shared)?;
    let events = shared
        .with_store(&gw.config, |s| Ok(s.alert_events()?))
        .await
        .map_err(ApiError::internal)?;
    let matching: Vec<&crate::storage::AlertEvent> = events
        .iter()
        .rev()
        .filter(|e| since.is_none_or(|t| e.ts_ms >= t))
        .filter(|e| until.is_none_or(|t| e.ts_ms < t))
        .filter(|e| q.rule.as_deref().is_none_or(|r| r == e.rule))
        .filter(|e| q.device.as_deref().is_none_or(|d| d == e.device))
        .filter(|e| q.state.as_deref().is_none_or(|s| s == e.state))
        .collect();
    let list: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|e| alert_json(&gw.config, e))
        .collect();
    Ok(Json(json!({ "total": matching.len(), "events": list })))
}

// ---------------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------------

/// How long an import waits for the accounting service to recompute the periods in progress.
const RECOMPUTE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `GET /api/v1/accounts/{period}`: the energy and carbon account of a month (`2026-10`),
/// quarter (`2026-Q3`) or year (`2026`), as `energy-gateway report --format json` prints it:
/// the accounting service's for the periods it keeps (the current month, quarter and year, the
/// last ended ones), else computed by the service's compute (not written to the store). A period
/// that has not started is refused (400).
pub async fn accounts(
    State(shared): State<Arc<Shared>>,
    UrlPath(period): UrlPath<String>,
) -> ApiResult<Response> {
    let p: Period = period
        .parse()
        .map_err(|e: String| ApiError::bad_request(e))?;
    let gw = gateway(&shared)?;
    if let Some(r) = gw.accounts.report(&p.to_string()) {
        return Ok((
            [(header::CONTENT_TYPE, "application/json")],
            crate::reporting::json::render(&r),
        )
            .into_response());
    }
    let cfg = gw.config.clone();
    let tz: chrono_tz::Tz = cfg
        .site
        .timezone
        .parse()
        .map_err(|_| ApiError::internal("site.timezone is not a time zone"))?;
    let now = crate::readings::now_ms();
    crate::reporting::period_extent(tz, p, now)
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    let _permit = REPORTS.acquire().await.map_err(ApiError::internal)?;
    let report = tokio::task::spawn_blocking(move || {
        crate::accounting::service::compute(&cfg.accounting_context(), p, false, now)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        crate::reporting::json::render(&report),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Imports
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplacementIn {
    device: String,
    quantity: String,
    time: String,
    old_final: f64,
    new_initial: f64,
    #[serde(default)]
    note: Option<String>,
}

fn is_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("text/csv"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v.starts_with("application/json") || v.is_empty()
        })
        || headers.get(header::CONTENT_TYPE).is_none()
}

/// Decodes a JSON body as `T`, naming the place of the first problem.
fn decode_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("the body is not what this endpoint takes: {inner}"))
        } else {
            ApiError::bad_request(format!("{}: {inner}", path_name(&path)))
        }
    })
}

/// serde_path_to_error writes `[2].quantity`; say `items[2].quantity`.
fn path_name(path: &str) -> String {
    if path.starts_with('[') {
        format!("items{path}")
    } else {
        path.to_string()
    }
}

/// The rows of an import body: `text/csv` (the file `energy-gateway import` reads) or a JSON
/// array of items with the same names as the CSV columns. A body that is not of that shape is a
/// 400; rows that decode but do not check out are the import's to report (422).
fn body_rows<T>(headers: &HeaderMap, body: &[u8]) -> ApiResult<Rows<T>>
where
    T: ImportRow + serde::de::DeserializeOwned,
{
    if body.is_empty() {
        return Err(ApiError::bad_request("the body is empty"));
    }
    if is_csv(headers) {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the CSV body is not UTF-8"))?;
        return T::from_csv(text).map_err(import_error);
    }
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json or text/csv",
        ));
    }
    Ok(Rows::from_items(decode_json::<Vec<T>>(body)?))
}

/// Runs an import off the async threads and answers with what it did.
async fn run_import<T: Send + 'static>(
    gw: &GatewayView,
    rows: Rows<T>,
    import: fn(&AccountingContext, Rows<T>) -> Result<ImportSummary, ImportError>,
) -> ApiResult<Json<Value>> {
    let cfg = gw.config.accounting_context();
    let r = tokio::task::spawn_blocking(move || import(&cfg, rows))
        .await
        .map_err(ApiError::internal)?
        .map_err(import_error)?;
    Ok(Json(json!({
        "rows": r.rows,
        "written": r.written,
        "skipped": r.skipped,
    })))
}

/// The data is the sender's (422); the store failing is ours (500).
fn import_error(e: ImportError) -> ApiError {
    match e {
        ImportError::Data(msg) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg),
        ImportError::Store(_) => ApiError::internal(e.to_string()),
    }
}

/// `POST /api/v1/value-added`: monthly value added (JSON items or the CSV of
/// `energy-gateway import value-added`). A month already stored is replaced.
pub async fn post_value_added(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let rows = body_rows::<ValueAddedRow>(&headers, &body)?;
    let gw = gateway(&shared)?;
    let r = run_import(&gw, rows, import::import_value_added).await?;
    if gw.config.accounting.service.enabled && !gw.accounts.recompute(RECOMPUTE_WAIT).await {
        tracing::warn!("the accounting service has not recomputed the accounts yet");
    }
    Ok(r)
}

/// `POST /api/v1/production`: monthly production per product (JSON items or the CSV of
/// `energy-gateway import production`). A month and product already stored is replaced.
pub async fn post_production(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let rows = body_rows::<ProductionRow>(&headers, &body)?;
    let gw = gateway(&shared)?;
    let r = run_import(&gw, rows, import::import_production).await?;
    if gw.config.accounting.service.enabled && !gw.accounts.recompute(RECOMPUTE_WAIT).await {
        tracing::warn!("the accounting service has not recomputed the accounts yet");
    }
    Ok(r)
}

/// `POST /api/v1/meter-replacements`: the record of a meter replacement (the old meter's final
/// reading and the new one's first), so the accounts lose no energy across it.
pub async fn post_meter_replacement(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the body is empty"));
    }
    if !is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json",
        ));
    }
    let r: ReplacementIn = decode_json(&body)?;
    for (name, v) in [("old_final", r.old_final), ("new_initial", r.new_initial)] {
        if !v.is_finite() || v < 0.0 {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{name} must be a number of zero or more, not {v}"),
            ));
        }
    }
    let gw = gateway(&shared)?;
    let cfg = gw.config.accounting_context();
    let rec = tokio::task::spawn_blocking(move || {
        crate::accounting::import::record_replacement(
            &cfg,
            &r.device,
            &r.quantity,
            &r.time,
            r.old_final,
            r.new_initial,
            r.note.as_deref(),
        )
        .map(|rep| (r, rep))
    })
    .await
    .map_err(ApiError::internal)?;
    let (r, rep) = rec.map_err(import_error)?;
    if gw.config.accounting.service.enabled && !gw.accounts.recompute(RECOMPUTE_WAIT).await {
        tracing::warn!("the accounting service has not recomputed the accounts yet");
    }
    let body = json!({
        "device": r.device,
        "quantity": r.quantity,
        "ts_ms": rep.ts_ms,
        "time": local_rfc3339(&gw.config, rep.ts_ms),
        "old_final": rep.old_final,
        "new_initial": rep.new_initial,
        "note": r.note,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
