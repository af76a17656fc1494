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
    if let Some(reason) = state.admission() {
        return state.upgrade(request, state.refuse(reason));
    }
    match native_client(&state, &query, None, &state.native_ws, true) {
        Ok(client) => state.upgrade(request, client),
        Err(reason) => state.upgrade(request, state.refuse(reason)),
    }
}

/// `GET /` with an upgrade: the jdserver dialect, which names its app and user in an
/// `init` frame that must arrive before the handshake deadline.
pub async fn jdserver(State(state): State<GatewayState>, request: Request) -> Response {
    if let Some(reason) = state.admission() {
        return state.upgrade(request, state.refuse(reason));
    }
    let client = JdClient::new(
        state.hub.clone(),
        state.jdserver_ws.clone(),
        state.before_handshake(),
    );
    state.upgrade(request, client)
}
