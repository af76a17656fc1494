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
    state.open(request, || {
        native_client(&state, &query, None, &state.native_ws, true)
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

/// `GET /ws?uid=&access_key=`: the push-serve dialect. The access key must have been
/// handed out (by `/access`) for this uid and not have expired.
pub async fn pushserve(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    state.open(request, || pushserve_client(&state, &query))
}

fn pushserve_client(
    state: &GatewayState,
    query: &HashMap<String, String>,
) -> Result<PushServeClient, Disconnect> {
    let config = state.pushserve.clone().ok_or_else(|| {
        Disconnect::BAD_REQUEST.with_reason("push-serve compatibility is not enabled")
    })?;
    let (Some(uid), Some(key)) = (query.get("uid"), query.get("access_key")) else {
        return Err(Disconnect::BAD_REQUEST.with_reason("connect with ?uid=UID&access_key=KEY"));
    };
    if !access_key_valid(&config, uid, key) {
        return Err(
            Disconnect::INVALID_TOKEN.with_reason("invalid or expired access_key for this uid")
        );
    }
    let app = state
        .hub
        .app(&config.app)
        .map_err(|e| Disconnect::from(&e))?;
    Ok(PushServeClient::new(
        state.hub.clone(),
        app,
        uid.clone(),
        state.pushserve_ws.clone(),
    ))
}
