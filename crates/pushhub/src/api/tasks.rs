//! `GET /v1/tasks`: the server's outgoing work, seed 003's `task status`: timers
//! (pending, running, failed, next due, callback latency), cron jobs, and each app's RPC
//! calls and lifecycle webhook queue (queued, in flight, failed, retries, latency).
//!
//! Protected like `/v1/stats`; a key of one app sees that app's queues only.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use crate::http_error::ApiError;

/// `GET /v1/tasks`.
pub async fn tasks(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.keys.load().check_any(&headers)?;
    let only = state.keys.load().app_of(&headers)?;
    let timers = state.timers.snapshot();
    let apps: Vec<Value> = state
        .hub
        .apps()
        .iter()
        .filter(|app| only.as_ref().is_none_or(|name| *name == app.name))
        .map(|app| {
            json!({
                "app": app.name,
                "rpc": app.rpc.as_ref().map(|rpc| rpc.queue()),
                "webhook": app.events.as_ref().map(|events| events.queue()),
            })
        })
        .collect();
    Ok(Json(json!({
        "timers": {
            "pending": timers.pending,
            "running": timers.running,
            "succeeded": timers.succeeded,
            "failed": timers.failed,
            "retries": timers.retries,
            "cancelled": timers.cancelled,
            "next_due_ms": state.timers.next_due_ms(),
            "latency": state.timers.latency(),
            "store_damaged": timers.store_damaged,
        },
        "cron": state.timers.cron_snapshot(),
        "apps": apps,
    })))
}
