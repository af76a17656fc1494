//! WebSocket endpoints: native and jdserver.

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::response::Response;

use super::{native_client, GatewayState};
use crate::dialect::jdserver::JdClient;
use crate::dialect::pushserve::{access_key_valid, PushServeClient};
use crate::disconnect::Disconnect;

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

/// `GET /ws?uid=&access_key=`: the push-serve dialect. The access key must have been
/// handed out (by `/access`) for this uid and not have expired.
pub async fn pushserve(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Some(reason) = state.admission() {
        return state.upgrade(request, state.refuse(reason));
    }
    let Some(config) = state.pushserve.clone() else {
        let reason = Disconnect::BAD_REQUEST.with_reason("push-serve compatibility is not enabled");
        return state.upgrade(request, state.refuse(reason));
    };
    let (Some(uid), Some(key)) = (query.get("uid"), query.get("access_key")) else {
        let reason = Disconnect::BAD_REQUEST.with_reason("connect with ?uid=UID&access_key=KEY");
        return state.upgrade(request, state.refuse(reason));
    };
    if !access_key_valid(&config, uid, key) {
        let reason =
            Disconnect::INVALID_TOKEN.with_reason("invalid or expired access_key for this uid");
        return state.upgrade(request, state.refuse(reason));
    }
    match state.hub.app(&config.app) {
        Ok(app) => {
            let client = PushServeClient::new(
                state.hub.clone(),
                app,
                uid.clone(),
                state.pushserve_ws.clone(),
            );
            state.upgrade(request, client)
        }
        Err(error) => state.upgrade(request, state.refuse(Disconnect::from(&error))),
    }
}
