//! Plain-HTTP client endpoints, for clients that cannot keep a WebSocket: SSE and
//! long-poll in the native dialect, and what every dialect's HTTP endpoints share (CORS,
//! the poll wait; jdserver's `getMsg` uses them).
//!
//! They answer refusals with an HTTP error (there is no close frame to carry one) and allow
//! any origin, since they carry nothing a client could not get over WebSocket.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};

use super::{native_client, GatewayState};
use crate::dialect::native;
use crate::http_error::ApiError;
use crate::transport::{poll, sse, Peer};

/// Seconds a poll waits when the client does not say (or less, when
/// `limits.max_poll_wait` is shorter).
const DEFAULT_WAIT_SECS: f64 = 25.0;
/// Most messages one native poll returns; the rest come with the next poll.
const MAX_BATCH: usize = 100;
/// The response header present when a poll asked to wait longer than
/// `limits.max_poll_wait`: it carries the seconds the poll waited at most instead.
const CAPPED_HEADER: &str = "x-pushhub-timeout-capped";

/// `response` readable from any page: a client HTTP endpoint carries nothing a client
/// could not get over WebSocket.
pub fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-pushhub-cursor, x-pushhub-recovered, x-pushhub-timeout-capped"),
    );
    response
}

/// `OPTIONS` on a client HTTP endpoint: the CORS preflight a browser sends before a
/// cross-origin POST with a JSON body.
pub async fn preflight() -> Response {
    let mut response = cors(StatusCode::NO_CONTENT.into_response());
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, last-event-id"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// How long a poll waits: what the client asked for, in seconds (fractions allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// The wait applied.
    pub duration: Duration,
    /// Set when the client asked for more than the maximum: the wait applied is the
    /// maximum, and the answer says so.
    capped: bool,
}

impl Wait {
    /// The wait `timeout` asks for (default [`DEFAULT_WAIT_SECS`]), at most `max`.
    pub fn of(timeout: Option<&str>, max: Duration) -> Result<Self, ApiError> {
        let seconds = match timeout.map(str::trim) {
            None | Some("") => DEFAULT_WAIT_SECS.min(max.as_secs_f64()),
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_param",
                        format!("timeout {text:?} is not a number of seconds"),
                    )
                })?,
        };
        let capped = seconds > max.as_secs_f64();
        Ok(Self {
            duration: if capped {
                max
            } else {
                Duration::from_secs_f64(seconds)
            },
            capped,
        })
    }

    /// The `X-Pushhub-Timeout-Capped` header, when the wait was capped.
    pub fn header(self) -> Option<(HeaderName, HeaderValue)> {
        self.capped.then(|| {
            (
                HeaderName::from_static(CAPPED_HEADER),
                HeaderValue::from(self.duration.as_secs()),
            )
        })
    }
}

/// `GET /v1/sse`: the native dialect as an event stream. `Last-Event-ID` (sent by the
/// browser when it reconnects) resumes like `since`.
pub async fn native_sse(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
    extensions: Extensions,
    headers: HeaderMap,
) -> Response {
    let peer = state
        .live
        .load()
        .trusted_proxies
        .peer_of_request(&extensions, &headers);
    if let Some(refused) = state.over_request_rate(peer.ip()) {
        return cors(refused);
    }
    if let Some(reason) = state.admission() {
        return cors(ApiError::from(&reason).into_response());
    }
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let response = match native_client(
        &state,
        &query,
        &headers,
        last_event_id,
        &state.native_sse,
        false,
    ) {
        Ok(client) => {
            let stats = state.hub.stats().clone();
            sse::respond(
                client,
                &headers,
                peer,
                state.new_outbox(),
                &state.ws.connections,
                stats,
                native::closing_frame,
            )
            .await
        }
        Err(reason) => ApiError::from(&reason).into_response(),
    };
    cors(response)
}

/// `GET /v1/poll`: wait for messages, answer `{"messages":[…],"cursor":"…","recovered":…}`.
/// When the server cut the poll short, the last message is the closing `error` frame the
/// other transports end with: `"close":1012` (an upgrade) asks the client to poll again
/// after a short random delay rather than at once, 4516 (kicked for good) not at all.
pub async fn native_poll(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
    extensions: Extensions,
    headers: HeaderMap,
) -> Response {
    let peer = state
        .live
        .load()
        .trusted_proxies
        .peer_of_request(&extensions, &headers);
    if let Some(refused) = state.over_request_rate(peer.ip()) {
        return cors(refused);
    }
    let answer = native_poll_answer(state, query, headers, peer).await;
    cors(answer.unwrap_or_else(IntoResponse::into_response))
}

async fn native_poll_answer(
    state: GatewayState,
    query: HashMap<String, String>,
    headers: HeaderMap,
    peer: Peer,
) -> Result<Response, ApiError> {
    if let Some(reason) = state.admission() {
        return Err(ApiError::from(&reason));
    }
    let wait = Wait::of(
        query.get("timeout").map(String::as_str),
        state.live.load().max_poll_wait,
    )?;
    let client = native_client(&state, &query, &headers, None, &state.native_raw, false)
        .map_err(|reason| ApiError::from(&reason))?;
    let polled = poll::poll(
        client,
        &headers,
        peer,
        state.new_outbox(),
        &state.ws.connections,
        state.hub.stats(),
        wait.duration,
        MAX_BATCH,
    )
    .await
    .map_err(|reason| ApiError::from(&reason))?;
    let mut messages = polled.messages;
    // A poll the server ended early says why last, as the stream's other transports do.
    if let Some(reason) = &polled.closed {
        messages.push(Bytes::from(native::closing_frame(reason)));
    }
    let cursor = serde_json::to_string(&polled.cursor.to_string()).unwrap_or_default();
    let size = 64 + cursor.len() + messages.iter().map(|m| m.len() + 1).sum::<usize>();
    let mut body = BytesMut::with_capacity(size);
    body.put_slice(b"{\"messages\":[");
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(message);
    }
    body.put_slice(b"],\"cursor\":");
    body.put_slice(cursor.as_bytes());
    body.put_slice(if polled.recovered {
        b",\"recovered\":true"
    } else {
        b",\"recovered\":false"
    });
    body.put_u8(b'}');
    state.hub.stats().bytes_out(body.len());
    let content_type = HeaderValue::from_static("application/json");
    let mut response = ([(header::CONTENT_TYPE, content_type)], body.freeze()).into_response();
    response.headers_mut().extend(wait.header());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_take_fractions_and_are_capped_at_the_maximum() {
        let max = Duration::from_secs(120);
        let wait = |text| Wait::of(text, max).unwrap();
        assert_eq!(wait(None).duration, Duration::from_secs(25));
        assert_eq!(wait(Some(" ")).duration, Duration::from_secs(25));
        assert_eq!(wait(Some("0.5")).duration, Duration::from_millis(500));
        assert!(!wait(Some("120")).capped);
        let capped = wait(Some("600"));
        assert_eq!((capped.duration, capped.capped), (max, true));
        let (name, value) = capped.header().unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            (CAPPED_HEADER, "120")
        );
        assert_eq!(wait(Some("5")).header(), None);
        let short = Wait::of(None, Duration::from_secs(10)).unwrap();
        assert_eq!(
            (short.duration, short.capped),
            (Duration::from_secs(10), false)
        );
        for bad in ["soon", "-1", "NaN", "inf"] {
            assert_eq!(Wait::of(Some(bad), max).unwrap_err().code, "invalid_param");
        }
    }
}
