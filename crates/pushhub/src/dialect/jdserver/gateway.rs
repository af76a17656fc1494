//! jdserver's client endpoints: the WebSocket on `/` whose first frame is
//! `{"ac":"init",...}` (unless `[jdserver] websocket = false`), and the `getMsg`
//! long-poll.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::api::{request_params, text_param};
use super::{JdClient, JDSERVER};
use crate::auth;
use crate::config::Config;
use crate::dialect::Renderer;
use crate::gateway::{cors, preflight, request_origin, ClientEndpoints, GatewayState, Wait};
use crate::http_error::ApiError;
use crate::hub::{AuthMode, Cursor, Render};
use crate::transport::ws::WS_FRAMER;
use crate::transport::{poll, RAW_FRAMER};

/// The response header carrying the cursor for the next `getMsg`.
const CURSOR_HEADER: &str = "x-pushhub-cursor";
/// The response header saying whether a `getMsg` resume covered the gap.
const RECOVERED_HEADER: &str = "x-pushhub-recovered";

/// jdserver's endpoints: its wire formats (WebSocket frames, `getMsg` bodies) and whether
/// its WebSocket is on.
pub struct Endpoints {
    ws: Arc<dyn Render>,
    raw: Arc<dyn Render>,
    websocket: bool,
}

/// jdserver's endpoints as `config` sets them.
pub fn endpoints(config: &Config) -> Arc<dyn ClientEndpoints> {
    Arc::new(Endpoints {
        ws: Renderer::shared(&JDSERVER, &WS_FRAMER),
        raw: Renderer::shared(&JDSERVER, &RAW_FRAMER),
        websocket: config.jdserver_websocket,
    })
}

impl ClientEndpoints for Endpoints {
    fn routes(self: Arc<Self>) -> Router<GatewayState> {
        let mut router = Router::new();
        if self.websocket {
            let endpoints = self.clone();
            let websocket = move |State(state): State<GatewayState>, request: Request| {
                let endpoints = endpoints.clone();
                async move { endpoints.websocket(state, request) }
            };
            router = router.route("/", get(websocket));
        }
        let get_msg = move |State(state): State<GatewayState>, request: Request| {
            let endpoints = self.clone();
            async move {
                let answer = endpoints.get_msg(state, request).await;
                cors(answer.unwrap_or_else(IntoResponse::into_response))
            }
        };
        router.route(
            "/getMsg",
            get(get_msg.clone()).post(get_msg).options(preflight),
        )
    }
}

impl Endpoints {
    /// `GET /` with an upgrade: the jdserver dialect, which names its app and user in an
    /// `init` frame that must arrive before the handshake deadline.
    fn websocket(&self, state: GatewayState, request: Request) -> Response {
        state.open(request, || {
            Ok(JdClient::new(
                state.hub().clone(),
                self.ws.clone(),
                state.before_handshake(),
            ))
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

/// A parameter given as text or a number, as its text.
fn text_or_number(params: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Endpoints {
    /// `/getMsg?app=&user=&timeout=`: jdserver's long-poll (`user` only for `auth = "none"`
    /// apps; the others take it from `token`). Waits up to `timeout` seconds for
    /// a push to the user and answers it exactly as a jdserver WebSocket client receives it
    /// (an empty body when none came). The `X-Pushhub-Cursor` header carries where the client
    /// now stands; passing it back as `cursor=` makes consecutive polls lose nothing, and
    /// `X-Pushhub-Recovered: false` says a resume could not cover the gap.
    async fn get_msg(&self, state: GatewayState, request: Request) -> Result<Response, ApiError> {
        let headers = request.headers().clone();
        let peer = state.peer(&request);
        if let Some(refused) = state.over_request_rate(peer.ip()) {
            return Ok(refused);
        }
        if let Some(reason) = state.admission() {
            return Err(ApiError::from(&reason));
        }
        let params = request_params(state.max_request_bytes(), request).await?;
        let app = text_param(&params, "app")?;
        let settings = state.hub().app(&app).ok();
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
            state.max_poll_wait(),
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
                .admit_origin(request_origin(&headers))
                .map_err(|reason| ApiError::from(&reason))?;
        }
        let client = JdClient::given(
            state.hub().clone(),
            self.raw.clone(),
            state.defaults(),
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
            state.connections(),
            state.hub().stats(),
            wait.duration,
            1,
        )
        .await
        .map_err(|reason| ApiError::from(&reason))?;
        let body = polled.messages.into_iter().next().unwrap_or_default();
        state.hub().stats().bytes_out(body.len());
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
