//! `GET /v1/apps/{app}/history?channel=&limit=`: the newest messages a channel's history
//! keeps, read-only, for operators (the admin dashboard) and backends checking what a
//! resuming client would get. Clients read history through resume, not here.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use crate::http_error::ApiError;

/// Messages returned when the request does not say.
const DEFAULT_LIMIT: usize = 50;
/// Most messages one request returns.
const MAX_LIMIT: usize = 1000;
/// Longest channel name accepted.
const MAX_CHANNEL_BYTES: usize = 512;

/// `GET /v1/apps/{app}/history?channel=APP:KIND:NAME&limit=N`: oldest first.
pub async fn read(
    State(state): State<ApiState>,
    app: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let Path(app) = app.map_err(|e| ApiError::bad_request("invalid_app", e.body_text()))?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_param", e.body_text()))?;
    state.keys.load().check(&headers, &app)?;
    let channel = query.get("channel").ok_or_else(|| {
        ApiError::bad_request(
            "missing_param",
            format!("missing parameter \"channel\", e.g. channel={app}:user:100"),
        )
    })?;
    let belongs = channel
        .strip_prefix(app.as_str())
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| !rest.is_empty());
    if !belongs || channel.len() > MAX_CHANNEL_BYTES || channel.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_channel",
            format!("channel must be one of app {app:?}'s channels as messages name them (\"ch\"), e.g. {app}:user:100, {app}:all, {app}:room:lobby"),
        ));
    }
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_param",
                    format!("limit must be between 1 and {MAX_LIMIT}"),
                )
            })?,
    };
    let history = state.hub.recent_history(&app, channel, limit).await?;
    let messages: Vec<Value> = history
        .publications
        .iter()
        .map(|publication| {
            let message = &publication.message;
            json!({
                "off": publication.position.offset,
                "id": message.id,
                "event": message.event,
                "from": message.from,
                "data": message.data,
                "ts": message.ts_ms,
            })
        })
        .collect();
    Ok(Json(json!({
        "app": app,
        "channel": channel,
        "epoch": history.top.epoch,
        "top": history.top.offset,
        "messages": messages,
    })))
}
