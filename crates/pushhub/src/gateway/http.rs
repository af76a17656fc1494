//! Plain-HTTP client endpoints, for clients that cannot keep a WebSocket: SSE and
//! long-poll in the native dialect, and jdserver's `getMsg` long-poll.
//!
//! They answer refusals with an HTTP error (there is no close frame to carry one) and allow
//! any origin, since they carry nothing a client could not get over WebSocket.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use super::{native_client, GatewayState};
use crate::auth;
use crate::dialect::jdserver::api::{request_params, text_param};
use crate::dialect::jdserver::JdClient;
use crate::dialect::native;
use crate::http_error::ApiError;
use crate::hub::{AuthMode, Cursor};
use crate::transport::{poll, sse, Peer};

/// Seconds a poll waits when the client does not say (or less, when
/// `limits.max_poll_wait` is shorter).
const DEFAULT_WAIT_SECS: f64 = 25.0;
/// Most messages one native poll returns; the rest come with the next poll.
const MAX_BATCH: usize = 100;
/// The response header carrying the cursor for the next `getMsg`.
const CURSOR_HEADER: &str = "x-pushhub-cursor";
/// The response header saying whether a `getMsg` resume covered the gap.
const RECOVERED_HEADER: &str = "x-pushhub-recovered";
/// The response header present when a poll asked to wait longer than
/// `limits.max_poll_wait`: it carries the seconds the poll waited at most instead.
const CAPPED_HEADER: &str = "x-pushhub-timeout-capped";

fn cors(mut response: Response) -> Response {
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
struct Wait {
    /// The wait applied.
    duration: Duration,
    /// Set when the client asked for more than the maximum: the wait applied is the
    /// maximum, and the answer says so.
    capped: bool,
}

impl Wait {
    /// The wait `timeout` asks for (default [`DEFAULT_WAIT_SECS`]), at most `max`.
    fn of(timeout: Option<&str>, max: Duration) -> Result<Self, ApiError> {
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
    fn header(self) -> Option<(HeaderName, HeaderValue)> {
        self.capped.then(|| {
            (
                HeaderName::from_static(CAPPED_HEADER),
                HeaderValue::from(self.duration.as_secs()),
            )
        })
    }
}

/// A cursor as a header value: percent-encoded outside printable ASCII (user ids may be
/// any text), so a client can put it in a URL as it is.
fn cursor_header(cursor: &Cursor) -> HeaderValue {
    let text: String = cursor
        .to_string()
        .bytes()
        .map(|b| match b {
            b'%' => "%25".to_owned(),
            0x21..=0x7e => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The cursor as [`cursor_header`] wrote it, whether the client passed the header's value
/// as it is or URL-encoded it once more.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
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

/// `/getMsg?app=&user=&timeout=`: jdserver's long-poll (`user` only for `auth = "none"`
/// apps; the others take it from `token`). Waits up to `timeout` seconds for
/// a push to the user and answers it exactly as a jdserver WebSocket client receives it
/// (an empty body when none came). The `X-Pushhub-Cursor` header carries where the client
/// now stands; passing it back as `cursor=` makes consecutive polls lose nothing, and
/// `X-Pushhub-Recovered: false` says a resume could not cover the gap.
pub async fn jdserver_get_msg(State(state): State<GatewayState>, request: Request) -> Response {
    let answer = get_msg(state, request).await;
    cors(answer.unwrap_or_else(IntoResponse::into_response))
}

/// A parameter given as text or a number, as its text.
fn text_or_number(params: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn get_msg(state: GatewayState, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let peer = state
        .live
        .load()
        .trusted_proxies
        .peer_of_request(request.extensions(), &headers);
    if let Some(refused) = state.over_request_rate(peer.ip()) {
        return Ok(refused);
    }
    if let Some(reason) = state.admission() {
        return Err(ApiError::from(&reason));
    }
    let params = request_params(state.max_request_bytes, request).await?;
    let app = text_param(&params, "app")?;
    let settings = state.hub.app(&app).ok();
    // Token and webhook apps take the user from the credential: a `user` they would
    // ignore is not asked for.
    let names_its_user = settings
        .as_ref()
        .is_none_or(|settings| settings.auth == AuthMode::None);
    let user = match params.get("user") {
        None if !names_its_user => None,
        _ => Some(text_param(&params, "user")?),
    };
    let wait = Wait::of(
        text_or_number(&params, "timeout").as_deref(),
        state.live.load().max_poll_wait,
    )?;
    let credential_params = match &settings {
        Some(settings) => auth::query_params(settings),
        None => vec!["token"],
    };
    let since = match text_or_number(&params, "cursor").filter(|c| !c.is_empty()) {
        Some(text) => Some(
            Cursor::parse(&percent_decoded(&text))
                .map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))?,
        ),
        None => None,
    };
    if let Some(settings) = &settings {
        settings
            .admit_origin(super::request_origin(&headers))
            .map_err(|reason| ApiError::from(&reason))?;
    }
    let client = JdClient::given(
        state.hub.clone(),
        state.jdserver_raw.clone(),
        state.live.load().defaults,
        app,
        user,
        credential_params
            .iter()
            .find_map(|name| text_or_number(&params, name)),
        since,
    );
    let polled = poll::poll(
        client,
        &headers,
        peer,
        state.new_outbox(),
        &state.ws.connections,
        state.hub.stats(),
        wait.duration,
        1,
    )
    .await
    .map_err(|reason| ApiError::from(&reason))?;
    let body = polled.messages.into_iter().next().unwrap_or_default();
    state.hub.stats().bytes_out(body.len());
    let recovered = HeaderValue::from_static(if polled.recovered { "true" } else { "false" });
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
        (
            HeaderName::from_static(CURSOR_HEADER),
            cursor_header(&polled.cursor),
        ),
        (HeaderName::from_static(RECOVERED_HEADER), recovered),
    ];
    let mut response = (headers, body).into_response();
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

    #[test]
    fn cursor_headers_are_ascii_and_decode_back() {
        let cursor = Cursor::parse("wms:user:张三@ab12:3,wms:user:50%@:0").unwrap();
        let header = cursor_header(&cursor);
        let text = header.to_str().unwrap();
        assert!(text.is_ascii());
        assert_eq!(Cursor::parse(&percent_decoded(text)).unwrap(), cursor);
        assert_eq!(percent_decoded("a%2"), "a%2");
        assert_eq!(
            percent_decoded("%ff%fe"),
            "%ff%fe",
            "not UTF-8: left as given"
        );
    }
}
