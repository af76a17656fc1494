//! Plain-HTTP client endpoints, for clients that cannot keep a WebSocket: SSE and
//! long-poll in the native dialect, and jdserver's `getMsg` long-poll.
//!
//! They answer refusals with an HTTP error (there is no close frame to carry one) and allow
//! any origin, since they carry nothing a client could not get over WebSocket.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};

use super::{native_client, GatewayState};
use crate::api::jdserver::{request_params, text_param};
use crate::dialect::jdserver::JdClient;
use crate::http_error::ApiError;
use crate::hub::Cursor;
use crate::transport::{poll, sse};

/// Seconds a poll waits when the client does not say.
const DEFAULT_WAIT_SECS: u64 = 25;
/// Longest wait a client may ask for, in seconds.
const MAX_WAIT_SECS: u64 = 120;
/// Most messages one native poll returns; the rest come with the next poll.
const MAX_BATCH: usize = 100;
/// The response header carrying the cursor for the next `getMsg`.
const CURSOR_HEADER: &str = "x-pushhub-cursor";

fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(CURSOR_HEADER),
    );
    response
}

fn wait(timeout: Option<&str>) -> Result<Duration, ApiError> {
    let seconds = match timeout {
        None | Some("") => DEFAULT_WAIT_SECS,
        Some(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_param",
                    format!("timeout {text:?} is not a number of seconds"),
                )
            })? as u64,
    };
    Ok(Duration::from_secs(seconds.min(MAX_WAIT_SECS)))
}

/// `GET /v1/sse`: the native dialect as an event stream. `Last-Event-ID` (sent by the
/// browser when it reconnects) resumes like `since`.
pub async fn native_sse(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(reason) = state.admission() {
        return cors(ApiError::from(&reason).into_response());
    }
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let response = match native_client(&state, &query, last_event_id, &state.native_sse) {
        Ok(client) => {
            sse::respond(
                client,
                state.new_outbox(),
                &state.ws.connections,
                state.hub.stats().clone(),
            )
            .await
        }
        Err(reason) => ApiError::from(&reason).into_response(),
    };
    cors(response)
}

/// `GET /v1/poll`: wait for messages, answer `{"messages":[…],"cursor":"…","recovered":…}`.
pub async fn native_poll(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    cors(
        native_poll_inner(state, query)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

async fn native_poll_inner(
    state: GatewayState,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    if let Some(reason) = state.admission() {
        return Err(ApiError::from(&reason));
    }
    let wait = wait(query.get("timeout").map(String::as_str))?;
    let client =
        native_client(&state, &query, None, &state.native_raw).map_err(|r| ApiError::from(&r))?;
    let polled = poll::poll(
        client,
        state.new_outbox(),
        &state.ws.connections,
        wait,
        MAX_BATCH,
    )
    .await
    .map_err(|r| ApiError::from(&r))?;
    let cursor = serde_json::to_string(&polled.cursor.to_string()).unwrap_or_default();
    let mut body =
        BytesMut::with_capacity(64 + polled.messages.iter().map(|m| m.len() + 1).sum::<usize>());
    body.put_slice(b"{\"messages\":[");
    for (i, message) in polled.messages.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(message);
    }
    body.put_slice(
        format!("],\"cursor\":{cursor},\"recovered\":{}}}", polled.recovered).as_bytes(),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.freeze(),
    )
        .into_response())
}

/// `/getMsg?app=&user=&timeout=`: jdserver's long-poll. Waits up to `timeout` seconds for
/// a push to the user and answers it exactly as a jdserver WebSocket client receives it
/// (an empty body when none came). The `X-Pushhub-Cursor` header carries where the client
/// now stands; passing it back as `cursor=` makes consecutive polls lose nothing.
pub async fn jdserver_get_msg(State(state): State<GatewayState>, request: Request) -> Response {
    cors(
        get_msg(state, request)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

async fn get_msg(state: GatewayState, request: Request) -> Result<Response, ApiError> {
    if let Some(reason) = state.admission() {
        return Err(ApiError::from(&reason));
    }
    let params = request_params(state.max_request_bytes, request).await?;
    let app = text_param(&params, "app")?;
    let user = text_param(&params, "user")?;
    let wait = wait(
        params
            .get("timeout")
            .and_then(|t| match t {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .as_deref(),
    )?;
    let since = match params.get("cursor") {
        Some(serde_json::Value::String(text)) if !text.is_empty() => Some(
            Cursor::parse(text)
                .map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))?,
        ),
        _ => None,
    };
    let client = JdClient::given(
        state.hub.clone(),
        state.jdserver_raw.clone(),
        state.defaults,
        app,
        user,
        since,
    );
    let polled = poll::poll(client, state.new_outbox(), &state.ws.connections, wait, 1)
        .await
        .map_err(|r| ApiError::from(&r))?;
    let cursor = HeaderValue::from_str(&polled.cursor.to_string()).map_err(|_| {
        ApiError::bad_request("invalid_cursor", "cursor is not a valid header value")
    })?;
    let body = polled.messages.into_iter().next().unwrap_or_default();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (HeaderName::from_static(CURSOR_HEADER), cursor),
        ],
        body,
    )
        .into_response())
}
