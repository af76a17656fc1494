//! WebSocket endpoints: native and jdserver.

use std::collections::HashMap;

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{native_client, GatewayState};
use crate::auth::access_key::access_key_valid;
use crate::auth::{authenticate, Credential, CredentialSource, Identity, Presented};
use crate::dialect::jdserver::JdClient;
use crate::dialect::mswoole::{self, MSwooleClient};
use crate::dialect::pushserve::PushServeClient;
use crate::disconnect::Disconnect;
use crate::hub::AppSettings;

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

/// `GET {one of mswoole.paths}?auth=CREDENTIAL`: the MSwoole dialect. The credential is checked
/// before the upgrade: a missing or bad one is refused with 403 and an MSwoole frame as
/// the body, as MSwoole did.
pub async fn mswoole(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let identity = match mswoole_identity(&state, &query, request.headers()).await {
        Ok((app, identity)) => (app, identity),
        Err((app, reason)) => {
            let body = mswoole::Frame {
                status: 403,
                info: &reason.reason,
                param: &serde_json::value::RawValue::NULL.to_owned(),
                event: "",
            }
            .to_vec();
            tracing::debug!(app, %reason, "MSwoole handshake refused");
            return (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
    };
    let origin = super::origin(request.headers()).map(str::to_owned);
    state.open(request, || {
        let (app, identity) = identity;
        app.admit_origin(origin.as_deref())?;
        let default_method = state
            .mswoole
            .as_ref()
            .and_then(|m| m.default_method.clone());
        Ok(MSwooleClient::new(
            state.hub.clone(),
            app,
            identity,
            state.mswoole_ws.clone(),
            default_method,
        ))
    })
}

/// Who an MSwoole client is, from its `auth` parameter (or the app's cookie, for a webhook
/// app), or the app's name and why it may not connect.
async fn mswoole_identity(
    state: &GatewayState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(Arc<AppSettings>, Identity), (String, Disconnect)> {
    let Some(config) = &state.mswoole else {
        return Err((String::new(), Disconnect::UNKNOWN_APP));
    };
    let app = state
        .hub
        .app(&config.app)
        .map_err(|e| (config.app.to_string(), Disconnect::from(&e)))?;
    let presented = Presented {
        user: None,
        credential: query
            .get("auth")
            .map(|auth| Credential::new(auth.as_str(), CredentialSource::Query)),
        cookies: headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    if presented.credential_for(&app).is_none() {
        let reason = Disconnect::MISSING_TOKEN
            .with_reason("permission denied: connect with ?auth=CREDENTIAL");
        crate::auth::count_failure(&reason);
        return Err((config.app.to_string(), reason));
    }
    let identity = authenticate(&app, presented)
        .await
        .map_err(|reason| (config.app.to_string(), reason))?;
    Ok((app, identity))
}

/// `GET /ws?uid=&access_key=`: the push-serve dialect. The access key must have been
/// handed out (by `/access`) for this uid and not have expired.
pub async fn pushserve(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let origin = super::origin(request.headers()).map(str::to_owned);
    state.open(request, || {
        pushserve_client(&state, &query, origin.as_deref())
    })
}

fn pushserve_client(
    state: &GatewayState,
    query: &HashMap<String, String>,
    origin: Option<&str>,
) -> Result<PushServeClient, Disconnect> {
    let config = state.live.load().pushserve.clone().ok_or_else(|| {
        Disconnect::BAD_REQUEST.with_reason("push-serve compatibility is not enabled")
    })?;
    let (Some(uid), Some(key)) = (query.get("uid"), query.get("access_key")) else {
        return Err(Disconnect::BAD_REQUEST.with_reason("connect with ?uid=UID&access_key=KEY"));
    };
    // Before the key: a uid that can never connect is a bad request, not a bad key.
    crate::hub::names::check_user(uid).map_err(|e| Disconnect::from(&e))?;
    if !access_key_valid(&config, uid, key) {
        let reason =
            Disconnect::INVALID_TOKEN.with_reason("invalid or expired access_key for this uid");
        crate::auth::count_failure(&reason);
        return Err(reason);
    }
    let app = state
        .hub
        .app(&config.app)
        .map_err(|e| Disconnect::from(&e))?;
    app.admit_origin(origin)?;
    Ok(PushServeClient::new(
        state.hub.clone(),
        app,
        uid.clone(),
        state.pushserve_ws.clone(),
    ))
}
