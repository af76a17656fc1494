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
    let (broker, presence) = hub.engine_kinds();
    let problem = hub.engine_health().await.err();
    let timers = state.timers.snapshot();
    Ok(Json(json!({
        "node": crate::node::node_id(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "memory": {"rss_bytes": resident_bytes()},
        "engine": {
            "broker": broker,
            "presence": presence,
            "healthy": problem.is_none(),
            "problem": problem,
        },
        "store": {"kind": timers.store, "healthy": !timers.store_damaged},
        "cluster": {"spans_nodes": hub.spans_nodes(), "nodes": hub.nodes().await?},
        "apps": apps,
        "apps_total": names.len(),
    })))
}

/// This process's resident memory, from `/proc/self/status` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = super::resident_bytes().expect("VmRSS in /proc/self/status");
            assert!(rss > 1024 * 1024, "{rss}");
        }
    }
}
