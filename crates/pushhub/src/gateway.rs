//! The client listener: which path speaks which dialect over which transport.
//!
//! - `GET /v1/ws?app=&user=`: native dialect over WebSocket.
//! - `GET /` with a WebSocket upgrade: jdserver dialect (first frame `{"ac":"init",...}`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::config::Config;
use crate::dialect::jdserver::{JdClient, JDSERVER};
use crate::dialect::native::{refusal, NativeClient, NATIVE};
use crate::dialect::Renderer;
use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, Cursor, Hub, Outbox, OutboxLimits, Render};
use crate::transport::ws::{self, WsContext, WS_FRAMER};
use crate::transport::{ClientHandler, Liveness, Refuse};

/// What the client listener's handlers share.
#[derive(Clone)]
pub struct GatewayState {
    hub: Hub,
    ws: WsContext,
    outbox: OutboxLimits,
    defaults: Liveness,
    handshake_timeout: Duration,
    max_connections: usize,
    native_ws: Arc<dyn Render>,
    jdserver_ws: Arc<dyn Render>,
}

impl GatewayState {
    /// State for a server configured by `config` whose clients attach to `hub`.
    pub fn new(hub: Hub, ws: WsContext, config: &Config) -> Self {
        Self {
            hub,
            ws,
            outbox: config.limits.outbox,
            defaults: liveness(&config.defaults),
            handshake_timeout: config.limits.handshake_timeout,
            max_connections: config.limits.max_connections,
            native_ws: Renderer::shared(&NATIVE, &WS_FRAMER),
            jdserver_ws: Renderer::shared(&JDSERVER, &WS_FRAMER),
        }
    }

    fn new_outbox(&self) -> Arc<Outbox> {
        Arc::new(Outbox::new(self.outbox))
    }

    /// Why a new connection must be refused before any dialect sees it, if it must.
    /// Every live connection counts, attached to the hub or still in its handshake.
    fn admission(&self) -> Option<Disconnect> {
        (self.max_connections > 0 && self.ws.connections.len() >= self.max_connections)
            .then_some(Disconnect::SERVER_FULL)
    }

    fn refuse(&self, reason: Disconnect) -> Refuse {
        Refuse {
            reason,
            liveness: self.defaults,
        }
    }

    fn upgrade(&self, request: Request, handler: impl ClientHandler + 'static) -> Response {
        ws::upgrade(request, handler, self.new_outbox(), self.ws.clone())
    }
}

/// The transport mechanics an app asks for.
pub fn liveness(app: &AppSettings) -> Liveness {
    Liveness {
        heartbeat: app.heartbeat,
        idle_timeout: app.idle_timeout,
        max_message_bytes: app.max_frame_bytes,
        handshake_deadline: None,
    }
}

/// The client listener's routes.
pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/v1/ws", get(native_ws))
        .route("/", get(jdserver_ws))
        .with_state(state)
}

async fn native_ws(
    State(state): State<GatewayState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Some(reason) = state.admission() {
        return state.upgrade(request, state.refuse(reason));
    }
    let Some(app_name) = query.get("app") else {
        let reason =
            Disconnect::BAD_REQUEST.with_reason("missing app: connect with ?app=APP&user=USER");
        return state.upgrade(request, state.refuse(reason));
    };
    let since = match query
        .get("since")
        .map(|text| Cursor::parse(text))
        .transpose()
    {
        Ok(since) => since,
        Err(error) => {
            let reason = Disconnect::BAD_REQUEST.with_reason(error.to_string());
            return state.upgrade(request, state.refuse(reason));
        }
    };
    match state.hub.app(app_name) {
        Ok(app) => {
            let client = NativeClient::new(
                state.hub.clone(),
                app,
                query.get("user").cloned(),
                since,
                state.native_ws.clone(),
            );
            state.upgrade(request, client)
        }
        Err(error) => state.upgrade(request, state.refuse(refusal(&error))),
    }
}

async fn jdserver_ws(State(state): State<GatewayState>, request: Request) -> Response {
    if let Some(reason) = state.admission() {
        return state.upgrade(request, state.refuse(reason));
    }
    let before_init = Liveness {
        handshake_deadline: Some(tokio::time::Instant::now() + state.handshake_timeout),
        ..state.defaults
    };
    let client = JdClient::new(state.hub.clone(), state.jdserver_ws.clone(), before_init);
    state.upgrade(request, client)
}
