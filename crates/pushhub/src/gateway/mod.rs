//! The client listener: which path speaks which dialect over which transport.
//!
//! - `GET /v1/ws?app=&user=[&since=]`: native dialect over WebSocket.
//! - `GET /v1/sse?app=&user=[&since=]`: native dialect over Server-Sent Events.
//! - `GET /v1/poll?app=&user=[&since=][&timeout=]`: native long-poll.
//! - `GET /demo` (and `/demo/*.js`, `/demo/*.css`): the demo page and the JavaScript SDK
//!   it runs ([`demo`]).
//! - Dialects whose endpoints live in their own folder mount them through
//!   [`ClientEndpoints`], listed once in [`dialects`]: jdserver's WebSocket on `/` (first
//!   frame `{"ac":"init",...}`) and `getMsg` long-poll (`dialect/jdserver/gateway.rs`);
//!   push-serve's `GET /ws?uid=&access_key=`
//!   (`dialect/pushserve/gateway.rs`), MSwoole's `[mswoole] paths` `?auth=`
//!   (`dialect/mswoole/gateway.rs`).
//!
//! A dialect's own port (push-serve's `[pushserve] addr`) serves its
//! [`ClientEndpoints::own_port_routes`] ([`pushserve_router`]), beside its API endpoints.
//!
//! The raw TCP listener (`tcp_listen`) has no paths: its sockets are native clients whose
//! first frame is `{"type":"connect",...}` ([`TcpGateway`]).

mod address;
mod demo;
mod http;
mod request_rate;
mod tcp;
mod websocket;

pub use address::TrustedProxies;
pub use demo::allow_demo_origin;
pub use http::{cors, preflight, Wait};
pub use tcp::TcpGateway;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::{self, CredentialSource, Presented};
use crate::config::{Config, PushServe};
use crate::dialect::native::{NativeClient, NATIVE};
use crate::dialect::Renderer;
use crate::disconnect::Disconnect;
use crate::hub::{AuthMode, Cursor, Hub, Outbox, OutboxLimits, Render};
use crate::transport::sse::SSE_FRAMER;
use crate::transport::ws::{self, WsContext, WS_FRAMER};
use crate::transport::{ClientHandler, Liveness, Peer, Refuse, RAW_FRAMER};
use request_rate::RequestRate;

/// What the client listener's handlers share.
#[derive(Clone)]
pub struct GatewayState {
    hub: Hub,
    ws: WsContext,
    outbox: OutboxLimits,
    live: Arc<ArcSwap<GatewayLive>>,
    max_connections: usize,
    max_request_bytes: usize,
    request_rate: RequestRate,
    native_ws: Arc<dyn Render>,
    native_sse: Arc<dyn Render>,
    native_raw: Arc<dyn Render>,
    dialects: Arc<[Arc<dyn ClientEndpoints>]>,
}

/// A dialect's client endpoints, as the gateway mounts them: the one surface through
/// which the gateway knows a dialect that keeps its endpoints in its own folder.
pub trait ClientEndpoints: Send + Sync + 'static {
    /// Its routes on the client listener.
    fn routes(self: Arc<Self>) -> Router<GatewayState>;

    /// Its routes on a port of its own (push-serve's `[pushserve] addr`), if it has one.
    fn own_port_routes(self: Arc<Self>) -> Option<Router<GatewayState>> {
        None
    }
}

/// The dialects that mount their own client endpoints: adding a dialect adds it here.
fn dialects(config: &Config) -> Vec<Arc<dyn ClientEndpoints>> {
    let mut dialects = vec![
        crate::dialect::jdserver::gateway::endpoints(config),
        crate::dialect::pushserve::gateway::endpoints(),
    ];
    dialects.extend(crate::dialect::mswoole::gateway::endpoints(config));
    dialects
}

/// The client listener's settings that a reload replaces: read once per connection or
/// request (one atomic load), so a connection keeps what it was admitted with.
#[derive(Debug)]
pub struct GatewayLive {
    defaults: Liveness,
    handshake_timeout: Duration,
    max_poll_wait: Duration,
    trusted_proxies: TrustedProxies,
    pushserve: Option<Arc<PushServe>>,
}

impl GatewayLive {
    /// The settings `config` gives.
    pub fn new(config: &Config) -> Self {
        Self {
            // Until a client has authenticated no app's frame limit applies: the
            // server-wide one does.
            defaults: Liveness {
                max_frames_per_second: config.limits.max_frames_per_second_before_auth,
                ..crate::dialect::liveness(&config.defaults)
            },
            handshake_timeout: config.limits.handshake_timeout,
            max_poll_wait: config.limits.max_poll_wait,
            trusted_proxies: config.trusted_proxies.clone(),
            pushserve: config.pushserve.clone().map(Arc::new),
        }
    }
}

impl GatewayState {
    /// State for a server configured by `config` whose clients attach to `hub`.
    pub fn new(hub: Hub, ws: WsContext, config: &Config) -> Self {
        Self {
            hub,
            ws,
            outbox: config.limits.outbox,
            live: Arc::new(ArcSwap::from_pointee(GatewayLive::new(config))),
            max_connections: config.limits.max_connections,
            max_request_bytes: config.limits.max_body_bytes,
            request_rate: RequestRate::new(config.limits.max_requests_per_second_per_ip),
            native_ws: Renderer::shared(&NATIVE, &WS_FRAMER),
            native_sse: Renderer::shared(&NATIVE, &SSE_FRAMER),
            native_raw: Renderer::shared(&NATIVE, &RAW_FRAMER),
            dialects: dialects(config).into(),
        }
    }

    /// Where a reload stores the listener's new settings.
    pub fn live(&self) -> Arc<ArcSwap<GatewayLive>> {
        self.live.clone()
    }

    /// The hub clients attach to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// push-serve compatibility as configured now (a reload may change its password).
    pub fn pushserve(&self) -> Option<Arc<PushServe>> {
        self.live.load().pushserve.clone()
    }

    /// The server-wide liveness for a client whose app is not known yet.
    pub fn defaults(&self) -> Liveness {
        self.live.load().defaults
    }

    /// The longest a long-poll may wait.
    pub fn max_poll_wait(&self) -> Duration {
        self.live.load().max_poll_wait
    }

    /// The largest request body a client endpoint reads.
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// Every live client connection, for the limits a poll counts against.
    pub fn connections(&self) -> &crate::transport::connections::Connections {
        &self.ws.connections
    }

    /// A send queue for a new client, with the server's limits.
    pub fn new_outbox(&self) -> Arc<Outbox> {
        Arc::new(Outbox::new(self.outbox))
    }

    /// Why a new connection must be refused before any dialect sees it, if it must.
    /// Every live connection counts, attached to the hub or still in its handshake.
    pub fn admission(&self) -> Option<Disconnect> {
        (self.max_connections > 0 && self.ws.connections.len() >= self.max_connections)
            .then_some(Disconnect::SERVER_FULL)
    }

    fn refuse(&self, reason: Disconnect) -> Refuse {
        Refuse {
            reason,
            liveness: self.live.load().defaults,
        }
    }

    /// The mechanics for a client that has yet to name its app in a first frame (jdserver's
    /// `init`, raw TCP's `connect`): server defaults with the frame limit for clients not
    /// yet authenticated, and a deadline for that frame.
    pub fn before_handshake(&self) -> Liveness {
        let live = self.live.load();
        Liveness {
            handshake_deadline: Some(tokio::time::Instant::now() + live.handshake_timeout),
            ..live.defaults
        }
    }

    /// Count one SSE or long-poll request from `address` against its budget: the answer
    /// (429, retry in a second) when the address has spent it.
    pub fn over_request_rate(&self, address: Option<IpAddr>) -> Option<Response> {
        let reason = self.request_rate.admit(address).err()?;
        self.hub.stats().rate_limited_request();
        let mut response = crate::http_error::ApiError::from(&reason).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        Some(response)
    }

    /// Who a request's client is (its address: see [`TrustedProxies`]).
    pub fn peer(&self, request: &Request) -> Peer {
        self.live
            .load()
            .trusted_proxies
            .peer_of_request(request.extensions(), request.headers())
    }

    /// Answer a WebSocket request: with the client `make` builds, or, when the server is
    /// full, the client's address holds its limit, or `make` refuses, with a connection
    /// that closes at once with the reason.
    pub fn open<H: ClientHandler + 'static>(
        &self,
        request: Request,
        make: impl FnOnce() -> Result<H, Disconnect>,
    ) -> Response {
        let outbox = self.new_outbox();
        let peer = self.peer(&request);
        let address = peer.ip();
        let admitted = self.admission().map_or_else(make, Err).and_then(|client| {
            let registration = self.ws.connections.register(&outbox, address)?;
            Ok((client, registration))
        });
        let ws = self.ws.clone();
        match admitted {
            Ok((client, registration)) => {
                ws::upgrade(request, client, outbox, registration, peer, ws)
            }
            Err(reason) => {
                let registration = self.ws.connections.register_refused(&outbox);
                ws::upgrade(request, self.refuse(reason), outbox, registration, peer, ws)
            }
        }
    }
}

/// The client listener's routes.
pub fn router(state: GatewayState) -> Router {
    let mut router = Router::new();
    for dialect in state.dialects.iter() {
        router = router.merge(dialect.clone().routes());
    }
    router
        .route("/v1/ws", get(websocket::native))
        .route("/v1/sse", get(http::native_sse).options(http::preflight))
        .route("/v1/poll", get(http::native_poll).options(http::preflight))
        .merge(demo::routes())
        .with_state(state)
}

/// push-serve's own port: its client endpoint `/ws` only (the own-port routes of every
/// dialect that has them).
pub fn pushserve_router(state: GatewayState) -> Router {
    let mut router = Router::new();
    for dialect in state.dialects.iter() {
        router = router.merge(dialect.clone().own_port_routes().unwrap_or_default());
    }
    router.with_state(state)
}

/// The `Origin` a browser page's request carries; `None` from anything but a page.
pub fn request_origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// A native client from the request's `app`, `user`, credential (`token`, or the app's
/// webhook parameter or cookie) and `since` (a `Last-Event-ID`, when the transport has one,
/// stands in for `since`). A client that can send frames may bring its credential in a
/// first `auth` frame instead; one that cannot (SSE, long-poll) is refused at once without.
fn native_client(
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
        .hub
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
    if app.auth != AuthMode::None && presented.credential_for(&app).is_none() && !can_send_frames {
        return Err(auth::missing_credential(&app, false));
    }
    app.admit_origin(request_origin(headers))?;
    let before_attach = Liveness {
        handshake_deadline: Some(tokio::time::Instant::now() + app.handshake_timeout),
        ..state.live.load().defaults
    };
    Ok(NativeClient::new(
        state.hub.clone(),
        app,
        presented,
        since,
        renderer.clone(),
        before_attach,
    ))
}
