//! The native dialect's client endpoints on the client listener:
//! `GET /v1/ws?app=&user=[&since=]` (WebSocket), `GET /v1/sse` (Server-Sent Events) and
//! `GET /v1/poll` (long-poll). The raw TCP listener's native clients come through
//! [`crate::gateway::TcpGateway`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::{BufMut, Bytes, BytesMut};

use super::{closing_frame, NativeClient, NATIVE};
use crate::auth::{self, CredentialSource, Presented};
use crate::dialect::Renderer;
use crate::disconnect::Disconnect;
use crate::gateway::{cors, preflight, request_origin, ClientEndpoints, GatewayState, Wait};
use crate::http_error::ApiError;
use crate::hub::{AuthMode, Cursor, Render};
use crate::transport::sse::SSE_FRAMER;
use crate::transport::ws::WS_FRAMER;
use crate::transport::{poll, sse, Liveness, Peer, RAW_FRAMER};

/// Most messages one native poll returns; the rest come with the next poll.
const MAX_BATCH: usize = 100;

/// The native endpoints: the dialect's wire format over each of their transports.
pub struct Endpoints {
    ws: Arc<dyn Render>,
    sse: Arc<dyn Render>,
    raw: Arc<dyn Render>,
}

/// The native endpoints.
pub fn endpoints() -> Arc<dyn ClientEndpoints> {
    Arc::new(Endpoints {
        ws: Renderer::shared(&NATIVE, &WS_FRAMER),
        sse: Renderer::shared(&NATIVE, &SSE_FRAMER),
        raw: Renderer::shared(&NATIVE, &RAW_FRAMER),
    })
}

impl ClientEndpoints for Endpoints {
    fn routes(self: Arc<Self>) -> Router<GatewayState> {
        let (ws, sse, poll) = (self.clone(), self.clone(), self);
        let ws = move |State(state): State<GatewayState>,
                       Query(query): Query<HashMap<String, String>>,
                       request: Request| {
            let endpoints = ws.clone();
            async move { endpoints.websocket(state, query, request) }
        };
        let sse = move |State(state): State<GatewayState>,
                        Query(query): Query<HashMap<String, String>>,
                        request: Request| {
            let endpoints = sse.clone();
            async move { endpoints.sse(state, query, request).await }
        };
        let poll = move |State(state): State<GatewayState>,
                         Query(query): Query<HashMap<String, String>>,
                         request: Request| {
            let endpoints = poll.clone();
            async move { endpoints.poll(state, query, request).await }
        };
        Router::new()
            .route("/v1/ws", get(ws))
            .route("/v1/sse", get(sse).options(preflight))
            .route("/v1/poll", get(poll).options(preflight))
    }
}

impl Endpoints {
    /// `GET /v1/ws`: the native dialect. Refusals become a close code after the
    /// handshake, the only way a browser learns why.
    fn websocket(
        &self,
        state: GatewayState,
        query: HashMap<String, String>,
        request: Request,
    ) -> Response {
        let headers = request.headers().clone();
        state.open(request, || {
            self.client(&state, &query, &headers, None, &self.ws, true)
        })
    }

    /// `GET /v1/sse`: the native dialect as an event stream. `Last-Event-ID` (sent by the
    /// browser when it reconnects) resumes like `since`.
    async fn sse(
        &self,
        state: GatewayState,
        query: HashMap<String, String>,
        request: Request,
    ) -> Response {
        let peer = state.peer(&request);
        let headers = request.headers();
        if let Some(refused) = state.over_request_rate(peer.ip()) {
            return cors(refused);
        }
        if let Some(reason) = state.admission() {
            return cors(ApiError::from(&reason).into_response());
        }
        let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
        let response = match self.client(&state, &query, headers, last_event_id, &self.sse, false) {
            Ok(client) => {
                let stats = state.hub().stats().clone();
                sse::respond(
                    client,
                    headers,
                    peer,
                    state.new_outbox(),
                    state.connections(),
                    stats,
                    closing_frame,
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
    async fn poll(
        &self,
        state: GatewayState,
        query: HashMap<String, String>,
        request: Request,
    ) -> Response {
        let peer = state.peer(&request);
        if let Some(refused) = state.over_request_rate(peer.ip()) {
            return cors(refused);
        }
        let headers = request.headers().clone();
        let answer = self.poll_answer(state, query, headers, peer).await;
        cors(answer.unwrap_or_else(IntoResponse::into_response))
    }

    async fn poll_answer(
        &self,
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
            state.max_poll_wait(),
        )?;
        let client = self
            .client(&state, &query, &headers, None, &self.raw, false)
            .map_err(|reason| ApiError::from(&reason))?;
        let polled = poll::poll(
            client,
            &headers,
            peer,
            state.new_outbox(),
            state.connections(),
            state.hub().stats(),
            wait.duration,
            MAX_BATCH,
        )
        .await
        .map_err(|reason| ApiError::from(&reason))?;
        let mut messages = polled.messages;
        // A poll the server ended early says why last, as the stream's other transports do.
        if let Some(reason) = &polled.closed {
            messages.push(Bytes::from(closing_frame(reason)));
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
        state.hub().stats().bytes_out(body.len());
        let content_type = HeaderValue::from_static("application/json");
        let mut response = ([(header::CONTENT_TYPE, content_type)], body.freeze()).into_response();
        response.headers_mut().extend(wait.header());
        Ok(response)
    }

    /// A native client from the request's `app`, `user`, credential (`token`, or the app's
    /// webhook parameter or cookie) and `since` (a `Last-Event-ID`, when the transport has one,
    /// stands in for `since`). A client that can send frames may bring its credential in a
    /// first `auth` frame instead; one that cannot (SSE, long-poll) is refused at once without.
    fn client(
        &self,
        state: &GatewayState,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        last_event_id: Option<&str>,
        renderer: &Arc<dyn Render>,
        can_send_frames: bool,
    ) -> Result<NativeClient, Disconnect> {
        let app = query.get("app").ok_or_else(|| {
            Disconnect::BAD_REQUEST.with_reason("missing app: connect with ?app=APP&user=USER")
        })?;
        let since = last_event_id
            .or(query.get("since").map(String::as_str))
            .map(Cursor::parse)
            .transpose()
            .map_err(|error| Disconnect::BAD_REQUEST.with_reason(error.to_string()))?;
        let app = state
            .hub()
            .app(app)
            .map_err(|error| Disconnect::from(&error))?;
        let presented = Presented {
            user: query.get("user").cloned(),
            credential: auth::credential_in(&app, CredentialSource::Query, |name| {
                query.get(name).map(String::as_str)
            }),
            cookies: headers
                .get(header::COOKIE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        if app.auth != AuthMode::None
            && presented.credential_for(&app).is_none()
            && !can_send_frames
        {
            return Err(auth::missing_credential(&app, false));
        }
        app.admit_origin(request_origin(headers))?;
        let before_attach = Liveness {
            handshake_deadline: Some(tokio::time::Instant::now() + app.handshake_timeout),
            ..state.defaults()
        };
        Ok(NativeClient::new(
            state.hub().clone(),
            app,
            presented,
            since,
            renderer.clone(),
            before_attach,
        ))
    }
}
