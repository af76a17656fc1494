//! push-serve's client endpoint, `GET /ws?uid=&access_key=`: on the client listener, and
//! alone on push-serve's own port (`[pushserve] addr`) beside its API endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::{PushServeClient, PUSHSERVE};
use crate::auth::access_key::access_key_valid;
use crate::dialect::Renderer;
use crate::disconnect::Disconnect;
use crate::gateway::{request_origin, ClientEndpoints, GatewayState};
use crate::hub::Render;
use crate::transport::ws::WS_FRAMER;

/// push-serve's endpoint: its one wire format. Its settings are the gateway's live ones,
/// since a reload may change the password.
pub struct Endpoints {
    renderer: Arc<dyn Render>,
}

/// push-serve's endpoint. It is mounted without `[pushserve]` too, and then answers that
/// push-serve compatibility is not enabled.
pub fn endpoints() -> Arc<dyn ClientEndpoints> {
    Arc::new(Endpoints {
        renderer: Renderer::shared(&PUSHSERVE, &WS_FRAMER),
    })
}

impl ClientEndpoints for Endpoints {
    fn routes(self: Arc<Self>) -> Router<GatewayState> {
        let handler = move |State(state): State<GatewayState>,
                            Query(query): Query<HashMap<String, String>>,
                            request: Request| {
            let endpoints = self.clone();
            async move { endpoints.connect(state, query, request) }
        };
        Router::new().route("/ws", get(handler))
    }

    fn own_port_routes(self: Arc<Self>) -> Option<Router<GatewayState>> {
        Some(self.routes())
    }
}

impl Endpoints {
    /// `GET /ws?uid=&access_key=`: the push-serve dialect. The access key must have been
    /// handed out (by `/access`) for this uid and not have expired.
    fn connect(
        &self,
        state: GatewayState,
        query: HashMap<String, String>,
        request: Request,
    ) -> Response {
        let origin = request_origin(request.headers()).map(str::to_owned);
        state.open(request, || self.client(&state, &query, origin.as_deref()))
    }

    fn client(
        &self,
        state: &GatewayState,
        query: &HashMap<String, String>,
        origin: Option<&str>,
    ) -> Result<PushServeClient, Disconnect> {
        let config = state.pushserve().ok_or_else(|| {
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
            .hub()
            .app(&config.app)
            .map_err(|e| Disconnect::from(&e))?;
        app.admit_origin(origin)?;
        Ok(PushServeClient::new(
            state.hub().clone(),
            app,
            uid.clone(),
            self.renderer.clone(),
        ))
    }
}
