//! WebSocket endpoints: native and jdserver.

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::response::Response;

use super::{native_client, GatewayState};
use crate::dialect::jdserver::JdClient;

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

/// `GET /` with an upgrade: the jdserver dialect, which names its app and user in an
/// `init` frame that must arrive before the handshake deadline.
pub async fn jdserver(State(state): State<GatewayState>, request: Request) -> Response {
    state.open(request, || {
        let renderer = state.jdserver_ws.clone();
        Ok(JdClient::new(
            state.hub.clone(),
            renderer,
            state.before_handshake(),
        ))
    })
}
