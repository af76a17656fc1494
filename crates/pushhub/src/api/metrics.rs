//! `GET /metrics`: the server's metrics in Prometheus's text format (see
//! [`crate::metrics`] and docs/operations.md, "Monitoring").

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::http_error::ApiError;
use crate::metrics::{http, process, scrape::Snapshot};

/// `GET /metrics`: server-wide numbers, so an admin key once any is configured, else
/// guarded like `/v1/stats` (any app's API key when keys are configured).
pub async fn metrics(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.keys.load().check_monitoring(&headers)?;
    let hub = &state.hub;
    let users = hub.users_online().await?;
    let snapshot = Snapshot {
        stats: hub.stats().snapshot(),
        broker: hub.broker_stats(),
        engine: hub.engine_kinds(),
        engine_up: hub.engine_health().await.is_ok(),
        timers: state.timers.snapshot(),
        cron: state.timers.cron_snapshot(),
        users,
        calls: crate::work_counters::histograms(),
        process: process::sample(),
        uptime_secs: state.started.elapsed().as_secs_f64(),
    };
    let text = http::render(snapshot).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the metrics could not be written",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, http::CONTENT_TYPE)], text).into_response())
}
