//! `GET /api/v1/history`: a series' readings or aggregates for a time range, from whichever
//! tier of the store holds them (`storage::tiers`). JSON, or CSV with `Accept: text/csv` or
//! `format=csv`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, Shared};
use crate::storage::history::HistoryQuery;

#[derive(Debug, Deserialize)]
pub struct Params {
    device: Option<String>,
    quantity: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    format: Option<String>,
}

/// `GET /api/v1/history?device=&quantity=&from=&to=&step=`.
pub async fn history(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    q: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let need = |name: &str, v: &Option<String>| -> Result<String, ApiError> {
        v.clone()
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
    };
    let query = HistoryQuery::parse(
        &need("device", &p.device)?,
        &need("quantity", &p.quantity)?,
        &need("from", &p.from)?,
        p.to.as_deref(),
        p.step.as_deref(),
    )
    .map_err(ApiError::bad_request)?;
    let csv = match p.format.as_deref() {
        Some("csv") => true,
        Some("json") | None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv")),
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "format \"{f}\" must be json or csv"
            )))
        }
    };
    let gw = shared.gateway().ok_or_else(ApiError::unavailable)?;
    if !gw.config.devices.iter().any(|d| d.id == query.device) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no device \"{}\"", query.device),
        ));
    }
    let q2 = query.clone();
    let h = shared
        .with_store(&gw.config, move |s| Ok(q2.run(s)?))
        .await
        .map_err(ApiError::internal)?;
    if csv {
        let mut out = Vec::new();
        query.write_csv(&h, &mut out).map_err(ApiError::internal)?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    Ok(Json(query.json(&h)).into_response())
}
