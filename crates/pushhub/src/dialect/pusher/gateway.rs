//! Pusher's client endpoint: the WebSocket on `/app/{key}?protocol=7&client=js&…`, what
//! pusher-js and Laravel Echo open for `new Pusher(key, { wsHost, wsPort, forceTLS })`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::client::{pusher_refusal, AppConnections, PusherClient};
use super::frames::PUSHER;
use crate::dialect::Renderer;
use crate::disconnect::Disconnect;
use crate::gateway::{request_origin, ClientEndpoints, GatewayState};
use crate::hub::Render;
use crate::transport::ws::WS_FRAMER;

/// Oldest and newest Pusher protocol versions spoken: 7 is what pusher-js has sent for
/// years; 5 and 6 differ from it in nothing this server does.
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// Pusher's endpoint: its wire format and each app's connection count on this node.
pub struct Endpoints {
    renderer: Arc<dyn Render>,
    connections: AppConnections,
}

/// Pusher's client endpoint.
pub fn endpoints() -> Arc<dyn ClientEndpoints> {
    Arc::new(Endpoints {
        renderer: Renderer::shared(&PUSHER, &WS_FRAMER),
        connections: AppConnections::default(),
    })
}

impl ClientEndpoints for Endpoints {
    fn routes(self: Arc<Self>) -> Router<GatewayState> {
        let handler = move |State(state): State<GatewayState>,
                            Path(key): Path<String>,
                            Query(query): Query<HashMap<String, String>>,
                            request: Request| {
            let endpoints = self.clone();
            async move { endpoints.connect(state, key, query, request) }
        };
        Router::new().route("/app/{key}", get(handler))
    }
}

impl Endpoints {
    fn connect(
        &self,
        state: GatewayState,
        key: String,
        query: HashMap<String, String>,
        request: Request,
    ) -> Response {
        let origin = request_origin(request.headers()).map(str::to_owned);
        let make = || self.client(&state, &key, &query, origin.as_deref());
        state.open_with(request, make, pusher_refusal)
    }

    /// The client for app key `key`, or the refusal (said in Pusher's codes by
    /// [`pusher_refusal`]).
    fn client(
        &self,
        state: &GatewayState,
        key: &str,
        query: &HashMap<String, String>,
        origin: Option<&str>,
    ) -> Result<PusherClient, Disconnect> {
        let protocol = query.get("protocol").and_then(|p| p.parse::<u32>().ok());
        if !protocol.is_some_and(|p| PROTOCOLS.contains(&p)) {
            return Err(Disconnect::UNSUPPORTED_PROTOCOL.with_reason(
                "unsupported protocol version: this server speaks Pusher protocol 5 to 7",
            ));
        }
        let Some(app) = state.hub().pusher_app_by_key(key) else {
            return Err(Disconnect::UNKNOWN_APP.with_reason(format!(
                "app key {:?} is not known to this server",
                key.chars().take(64).collect::<String>()
            )));
        };
        let Some(policy) = app.pusher.clone() else {
            return Err(Disconnect::UNKNOWN_APP);
        };
        if !policy.enabled {
            return Err(Disconnect::APP_DISABLED);
        }
        app.admit_origin(origin)?;
        let slot = self
            .connections
            .admit(&app.name, policy.max_connections)
            .ok_or(Disconnect::APP_FULL)?;
        Ok(PusherClient::new(
            state.hub().clone(),
            app,
            policy,
            self.renderer.clone(),
            slot,
        ))
    }
}
