//! The native dialect's WebSocket endpoint.

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::response::Response;

use super::{native_client, GatewayState};

/// `GET /v1/ws`: the native dialect. Refusals become a close code after the handshake,
/// the only way a browser learns why.
pub async fn native(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    state.open(request, || {
        native_client(&state, &query, &headers, None, &state.native_ws, true)
    })
}
