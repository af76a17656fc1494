//! `POST /v1/admin/upgrade` (admin key): start the binary at the path this server was
//! started from as its successor, and answer once it is ready (this server then drains
//! and hands over) or with why it is not (this server serves on). See [`crate::upgrade`].

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use crate::http_error::ApiError;
use crate::upgrade::UpgradeError;

/// `POST /v1/admin/upgrade`: `{"upgraded": true, "pid": …, "program": …, "ready_ms": …}`.
pub async fn upgrade(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.keys.load().check_admin(&headers)?;
    let started = state.upgrader.upgrade().await.map_err(refusal)?;
    Ok(Json(json!({
        "upgraded": true,
        "pid": started.pid,
        "program": started.program,
        "ready_ms": started.ready_ms,
    })))
}

/// The answer for an upgrade that did not happen.
fn refusal(error: UpgradeError) -> ApiError {
    let (status, code) = match &error {
        UpgradeError::Busy => (StatusCode::CONFLICT, "upgrade_in_progress"),
        UpgradeError::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
        UpgradeError::Unavailable => (StatusCode::NOT_IMPLEMENTED, "upgrade_unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "upgrade_failed"),
    };
    ApiError::new(
        status,
        code,
        format!("{error}; the running server keeps serving"),
    )
}
