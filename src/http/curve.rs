//! `GET /api/v1/curve`: stored history of one quantity of some devices, averaged over fixed
//! steps, for the live page's load curves (today, seven days, per device) and its 15-minute
//! demand.
//!
//! A thin layer over the store's history ([`crate::storage::Store::step_means`], the tiers
//! behind `/api/v1/history`): each device's bucket is the mean of its usable readings in
//! `[t, t + step)`, from the raw readings or, for older periods, the minute aggregates; a
//! bucket without a usable reading is absent (never 0). `sum` adds the devices' means only where every device
//! has one, so a meter that was offline leaves a gap instead of a dip.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, Shared};
use crate::readings::{Quantity, TimestampMs};

/// Most buckets one answer holds (per device).
pub const MAX_BUCKETS: i64 = 2_000;
/// Most devices one answer holds.
pub const MAX_DEVICES: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurveQuery {
    /// Device ids, comma-separated.
    devices: String,
    /// Default `active_power`.
    quantity: Option<String>,
    /// RFC 3339 with an offset.
    since: String,
    /// RFC 3339 with an offset; default now.
    until: Option<String>,
    /// Seconds per bucket; default 900.
    step: Option<String>,
}

type ApiResult<T> = Result<T, ApiError>;

fn bad(msg: String) -> ApiError {
    ApiError::bad_request(msg)
}

/// `GET /api/v1/curve?devices=a,b&quantity=active_power&since=&until=&step=900`.
pub async fn curve(
    State(shared): State<Arc<Shared>>,
    q: Result<Query<CurveQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| bad(e.body_text()))?;
    let quantity: Quantity = q
        .quantity
        .as_deref()
        .unwrap_or("active_power")
        .parse()
        .map_err(|e: crate::readings::UnknownQuantity| bad(e.to_string()))?;
    let time = |name: &str, s: &str| {
        crate::accounting::import::parse_time(s).map_err(|e| bad(format!("{name}: {e}")))
    };
    let since = time("since", &q.since)?;
    let until = match &q.until {
        Some(s) => time("until", s)?,
        None => crate::readings::now_ms(),
    };
    let step_s: i64 = match &q.step {
        None => 900,
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) if (1..=86_400).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "step \"{s}\" must be a whole number of seconds from 1 to 86400"
                )))
            }
        },
    };
    if until <= since {
        return Err(bad("until must be after since".into()));
    }
    let step = step_s * 1000;
    let first = since - since.rem_euclid(step);
    if (until - first) / step >= MAX_BUCKETS {
        return Err(bad(format!(
            "{} buckets of {step_s} s asked for; at most {MAX_BUCKETS}: use a longer step",
            (until - first) / step + 1
        )));
    }
    let gw = shared.gateway().ok_or_else(ApiError::unavailable)?;
    let ids: Vec<String> = q
        .devices
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() || ids.len() > MAX_DEVICES {
        return Err(bad(format!("devices: name 1 to {MAX_DEVICES} device ids")));
    }
    for id in &ids {
        if gw.config.device(id).is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown device \"{id}\""),
            ));
        }
    }
    let wanted = ids.clone();
    let means: Vec<BTreeMap<TimestampMs, f64>> = shared
        .with_store(&gw.config, move |s| {
            let mut out = Vec::new();
            for id in &wanted {
                let m = s.step_means(id, quantity, since, until, step)?;
                out.push(m.into_iter().collect());
            }
            Ok(out)
        })
        .await
        .map_err(ApiError::internal)?;
    let mut sum: Vec<(TimestampMs, f64)> = Vec::new();
    if let Some(first_dev) = means.first() {
        for (t, v) in first_dev {
            let mut total = *v;
            let mut all = true;
            for m in &means[1..] {
                match m.get(t) {
                    Some(x) => total += x,
                    None => all = false,
                }
            }
            if all {
                sum.push((*t, total));
            }
        }
    }
    let series: Vec<Value> = ids
        .iter()
        .zip(&means)
        .map(|(id, m)| {
            let name = gw.config.device(id).and_then(|d| d.name.clone());
            let points: Vec<(TimestampMs, f64)> = m.iter().map(|(t, v)| (*t, *v)).collect();
            json!({ "device": id, "name": name, "points": points })
        })
        .collect();
    Ok(Json(json!({
        "quantity": quantity,
        "unit": quantity.unit(),
        "since_ms": since,
        "until_ms": until,
        "step_seconds": step_s,
        "series": series,
        "sum": sum,
    })))
}
