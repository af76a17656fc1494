//! `POST /v1/timers/{id}/retry`: run a failed timer again, once the operator has fixed
//! what made it fail (the target was down, a deploy broke it).
//!
//! The retry is a new timer with the failed one's request and retry policy, due now: the
//! failed timer keeps its record (its attempts and last answer stay readable), and the new
//! one has a history of its own. Its idempotency key is `retry-of-ID`, so retrying the same
//! failed timer twice (a double click) returns the first retry instead of calling twice;
//! a retry that fails too is retried through its own id.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::timers::{view, visible_timer};
use super::ApiState;
use crate::http_error::ApiError;
use crate::scheduler::unix_ms;
use crate::store::{NewTimer, TimerState};

/// `POST /v1/timers/{id}/retry`: 201 with the new timer (200 with the one an earlier retry
/// made), 409 `timer_not_failed` unless the timer failed.
pub async fn retry(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let failed = visible_timer(&state, id, &headers).await?;
    if failed.state != TimerState::Failed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "timer_not_failed",
            format!(
                "timer {} is {}: only a failed timer can be retried",
                failed.id,
                failed.state.name()
            ),
        ));
    }
    let now = unix_ms();
    let created = state
        .timers
        .create(NewTimer {
            app: failed.app.clone(),
            request: failed.request.clone(),
            due_ms: now,
            created_ms: now,
            retry: failed.retry,
            idempotency_key: Some(format!("retry-of-{}", failed.id)),
            interval: None,
        })
        .await?;
    let status = if created.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut body = view(&created.timer, true);
    if let Some(object) = body.as_object_mut() {
        object.insert("retry_of".into(), serde_json::json!(failed.id));
    }
    Ok((
        status,
        [(header::LOCATION, format!("/v1/timers/{}", created.timer.id))],
        Json(body),
    )
        .into_response())
}
