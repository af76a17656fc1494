//! MSwoole's client endpoint: a WebSocket on each of `[mswoole] paths` (default
//! `/mswoole`; `/` when jdserver's WebSocket is off) with `?auth=CREDENTIAL`, checked
//! before the upgrade as MSwoole did.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{Frame, MSwooleClient, MSWOOLE};
use crate::auth::{authenticate, Credential, CredentialSource, Identity, Presented};
use crate::config::{Config, MSwoole};
use crate::dialect::Renderer;
use crate::disconnect::Disconnect;
use crate::gateway::{request_origin, ClientEndpoints, GatewayState};
use crate::hub::{AppSettings, Render};
use crate::transport::ws::WS_FRAMER;

/// MSwoole's endpoint: its settings and its one wire format.
pub struct Endpoints {
    config: Arc<MSwoole>,
    renderer: Arc<dyn Render>,
}

/// MSwoole's endpoint, when `[mswoole]` is configured.
pub fn endpoints(config: &Config) -> Option<Arc<dyn ClientEndpoints>> {
    let mswoole = config.mswoole.clone()?;
    Some(Arc::new(Endpoints {
        config: Arc::new(mswoole),
        renderer: Renderer::shared(&MSWOOLE, &WS_FRAMER),
    }))
}

impl ClientEndpoints for Endpoints {
    fn routes(self: Arc<Self>) -> Router<GatewayState> {
        let mut router = Router::new();
        for path in &self.config.paths {
            let endpoints = self.clone();
            let handler = move |State(state): State<GatewayState>,
                                Query(query): Query<HashMap<String, String>>,
                                request: Request| {
                let endpoints = endpoints.clone();
                async move { endpoints.connect(state, query, request).await }
            };
            router = router.route(path, get(handler));
        }
        router
    }
}

impl Endpoints {
    /// `GET {one of mswoole.paths}?auth=CREDENTIAL`: the MSwoole dialect. The credential
    /// is checked before the upgrade: a missing or bad one is refused with 403 and an
    /// MSwoole frame as the body, as MSwoole did.
    async fn connect(
        &self,
        state: GatewayState,
        query: HashMap<String, String>,
        request: Request,
    ) -> Response {
        let identity = match self.identity(&state, &query, request.headers()).await {
            Ok((app, identity)) => (app, identity),
            Err((app, reason)) => {
                let body = Frame {
                    status: 403,
                    info: &reason.reason,
                    param: &serde_json::value::RawValue::NULL.to_owned(),
                    event: "",
                }
                .to_vec();
                tracing::debug!(app, %reason, "MSwoole handshake refused");
                return (
                    StatusCode::FORBIDDEN,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response();
            }
        };
        let origin = request_origin(request.headers()).map(str::to_owned);
        state.open(request, || {
            let (app, identity) = identity;
            app.admit_origin(origin.as_deref())?;
            Ok(MSwooleClient::new(
                state.hub().clone(),
                app,
                identity,
                self.renderer.clone(),
                self.config.default_method.clone(),
            ))
        })
    }

    /// Who an MSwoole client is, from its `auth` parameter (or the app's cookie, for a
    /// webhook app), or the app's name and why it may not connect.
    async fn identity(
        &self,
        state: &GatewayState,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> Result<(Arc<AppSettings>, Identity), (String, Disconnect)> {
        let config = &self.config;
        let app = state
            .hub()
            .app(&config.app)
            .map_err(|e| (config.app.to_string(), Disconnect::from(&e)))?;
        let presented = Presented {
            user: None,
            credential: query
                .get("auth")
                .map(|auth| Credential::new(auth.as_str(), CredentialSource::Query)),
            cookies: headers
                .get(header::COOKIE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        if presented.credential_for(&app).is_none() {
            let reason = Disconnect::MISSING_TOKEN
                .with_reason("permission denied: connect with ?auth=CREDENTIAL");
            crate::auth::count_failure(&reason);
            return Err((config.app.to_string(), reason));
        }
        let identity = authenticate(&app, presented)
            .await
            .map_err(|reason| (config.app.to_string(), reason))?;
        Ok((app, identity))
    }
}
