//! The relay's HTTP API: `POST /v1/push` and `GET /healthz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::relay::hub::{Hub, PushRequest};

/// Routes of the API listener.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/v1/push", post(push))
        .route("/healthz", get(healthz))
        .with_state(hub)
}

/// Readiness probe used by the suite.
async fn healthz() -> &'static str {
    "ok"
}

/// Publishes one message; answers `{"id":"<n>","delivered":N}`.
async fn push(State(hub): State<Arc<Hub>>, Json(req): Json<PushRequest>) -> Response {
    if req.app.is_empty() || req.to.is_empty() {
        return (StatusCode::BAD_REQUEST, "app and to are required").into_response();
    }
    match hub.publish(&req) {
        Ok(out) => Json(serde_json::json!({
            "id": out.id.to_string(),
            "delivered": out.delivered,
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
