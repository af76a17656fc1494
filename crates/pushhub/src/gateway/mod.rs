//! The client listener: admission (connection limits, request rates, the page's origin),
//! the upgrade, and the routes each dialect mounts.
//!
//! Every dialect keeps its endpoints in its own folder and mounts them through
//! [`ClientEndpoints`], listed once in [`dialects`]:
//! - native: `GET /v1/ws`, `/v1/sse`, `/v1/poll` (`dialect/native/gateway.rs`);
//! - jdserver: the WebSocket on `/` (first frame `{"ac":"init",...}`) and the `getMsg`
//!   long-poll (`dialect/jdserver/gateway.rs`);
//! - push-serve: `GET /ws?uid=&access_key=` (`dialect/pushserve/gateway.rs`);
//! - MSwoole: `[mswoole] paths` `?auth=` (`dialect/mswoole/gateway.rs`).
//!
//! `GET /demo` (and `/demo/*.js`, `/demo/*.css`) serves the demo page and the JavaScript
//! SDK it runs ([`demo`]).
//!
//! A dialect's own port (push-serve's `[pushserve] addr`) serves its
//! [`ClientEndpoints::own_port_routes`] ([`pushserve_router`]), beside its API endpoints.
//!
//! The raw TCP listener (`tcp_listen`) has no paths: its sockets are native clients whose
//! first frame is `{"type":"connect",...}` ([`TcpGateway`]).

mod address;
pub mod demo;
mod http;
mod request_rate;
mod tcp;

pub use address::TrustedProxies;
pub use http::{cors, preflight, Wait};
pub use tcp::TcpGateway;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::config::{Config, PushServe};
use crate::disconnect::Disconnect;
use crate::hub::{Hub, Outbox, OutboxLimits};
use crate::transport::ws::{self, WsContext};
use crate::transport::{ClientHandler, Farewell, Link, Liveness, Peer, Refuse};
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
        crate::dialect::native::gateway::endpoints(),
        crate::dialect::jdserver::gateway::endpoints(config),
        crate::dialect::pushserve::gateway::endpoints(),
        crate::dialect::pusher::gateway::endpoints(),
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

    fn refuse(&self, reason: Disconnect, say: fn(&Disconnect, &Link) -> Farewell) -> Refuse {
        Refuse {
            reason,
            say,
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
        self.open_with(request, make, Farewell::plain)
    }

    /// [`GatewayState::open`] for a dialect whose clients read close codes by a table of
    /// their own: every refusal (the gateway's own, such as a full server, and `make`'s)
    /// is said to the client through `say` (see [`ClientHandler::farewell`]).
    pub fn open_with<H: ClientHandler + 'static>(
        &self,
        request: Request,
        make: impl FnOnce() -> Result<H, Disconnect>,
        say: fn(&Disconnect, &Link) -> Farewell,
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
                ws::upgrade(
                    request,
                    self.refuse(reason, say),
                    outbox,
                    registration,
                    peer,
                    ws,
                )
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
    router.merge(demo::routes()).with_state(state)
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
