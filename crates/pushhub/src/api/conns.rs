//! One connection's endpoint: `POST /v1/apps/{app}/conns/{conn}/close-notes`, the close
//! notes a backend wants named in that connection's `disconnect` event (MSwoole's
//! `fdAddCloseKey` / `fdAddController`, seed 001).
//!
//! Pushing to one connection is `POST /v1/push` with `"conn"` instead of `"to"`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::Json;
use serde_json::{json, Value};

use super::{json_body, ApiState};
use crate::close_notes::CloseNotesChange;
use crate::http_error::ApiError;

/// `POST /v1/apps/{app}/conns/{conn}/close-notes` with a [`CloseNotesChange`]: add and
/// remove the connection's close notes on whichever node holds it.
pub async fn close_notes(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let Path((app, conn)) =
        path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let (parts, body) = request.into_parts();
    state.keys.load().check(&parts.headers, &app)?;
    let change: CloseNotesChange =
        json_body(body, state.max_body_bytes, "close-notes change").await?;
    state.hub.change_close_notes(&app, &conn, &change).await?;
    Ok(Json(json!({ "conn": conn })))
}
