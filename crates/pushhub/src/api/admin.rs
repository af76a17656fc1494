//! `GET /v1/admin/overview`: what the admin dashboard shows at a glance and `/v1/stats`
//! does not hold, in one answer for an admin key: each app's users and connections, this
//! process's memory, the engine's and the timer store's health, and the cluster's nodes.
//! The dashboard polls it (every few seconds), so it stays a handful of engine reads.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use crate::http_error::ApiError;

/// Most apps listed; a server with dynamic apps may know thousands.
const MAX_APPS: usize = 200;

/// `GET /v1/admin/overview` (admin key).
pub async fn overview(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.keys.load().check_admin(&headers)?;
    let hub = &state.hub;
    let names = hub.app_names();
    let mut apps = Vec::new();
    for name in names.iter().take(MAX_APPS) {
        let users = hub.users(name).await?;
        let connections: usize = users.iter().map(|(_, count)| count).sum();
        apps.push(json!({"app": name, "users": users.len(), "connections": connections}));
    }
    Ok(Json(json!({
        "node": crate::node::node_id(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "memory": memory(),
        "engine": engine(hub).await,
        "store": timer_store(&state.timers),
        "cluster": {"spans_nodes": hub.spans_nodes(), "nodes": hub.nodes().await?},
        "apps": apps,
        "apps_total": names.len(),
    })))
}

/// The engine's kinds and whether it reaches what it needs (`/healthz`'s check), as the
/// dashboard and `pushhub status` show them.
pub(super) async fn engine(hub: &crate::hub::Hub) -> Value {
    let (broker, presence) = hub.engine_kinds();
    let problem = hub.engine_health().await.err();
    json!({
        "broker": broker,
        "presence": presence,
        "healthy": problem.is_none(),
        "problem": problem,
    })
}

/// The timer store's kind and health.
pub(super) fn timer_store(timers: &crate::scheduler::Timers) -> Value {
    let snapshot = timers.snapshot();
    json!({"kind": snapshot.store, "healthy": !snapshot.store_damaged})
}

/// This process's resident memory, as `/metrics` reads it (`null` where `/proc` is not).
pub(super) fn memory() -> Value {
    let resident = crate::metrics::process::resident_bytes();
    json!({"rss_bytes": (resident > 0).then_some(resident)})
}
