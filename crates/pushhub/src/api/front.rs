//! The one pass every request on an API-serving listener goes through, around its
//! handler: the head-size check, the demo page's CORS rule, the request id (and its
//! span, when debug logging is on) and the request metrics, in that order.
//!
//! One middleware rather than one per concern: each `axum` middleware layer clones a
//! boxed service and boxes a future per request, and four of them were a measurable part
//! of a single push's CPU (docs/benchmarks.md, "Ingest").

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::Router;
use tracing::Instrument;

use super::request_id;
use crate::gateway::demo::{self, Cors};
use crate::metrics::http::{self as metrics, Endpoint};
use crate::parse_errors;

/// What the pass does on one listener's routes.
#[derive(Debug, Clone, Default)]
pub struct Front {
    /// The demo page's origins, when the demo may call this API (see [`demo::cors`]);
    /// `None`: no CORS rule at all.
    pub origins: Option<Arc<[HeaderValue]>>,
    /// Whether requests are counted in `pushhub_api_request_duration_seconds`: on for the
    /// API's own routes, off for the fallbacks (404, 405) and, on a single port, the
    /// client transports' routes.
    pub metrics: bool,
}

impl Front {
    /// The same pass without metrics, for the routes that are not the API's own.
    pub fn without_metrics(&self) -> Self {
        Self {
            metrics: false,
            ..self.clone()
        }
    }

    /// `router`'s routes (those it has now), each through this pass.
    pub fn apply(self, router: Router) -> Router {
        router.layer(from_fn_with_state(Arc::new(self), pass))
    }
}

/// The pass itself (for [`axum::middleware::from_fn_with_state`] with a [`Front`]). A request refused here (a head too large: 431; a cross-origin
/// request that is not the demo's: 403; the demo's preflight: 204) gets no request id
/// and is not counted, as before the middlewares were merged.
pub async fn pass(State(front): State<Arc<Front>>, mut request: Request, next: Next) -> Response {
    if let Some(answer) = parse_errors::oversized_head(&request) {
        return answer;
    }
    let cors = match &front.origins {
        Some(origins) => match demo::cors(origins, &request) {
            Cors::Answer(answer) => return answer,
            cors => cors,
        },
        None => Cors::Pass,
    };
    let id = request_id::take(&mut request);
    let started = Instant::now();
    let labels = front.metrics.then(|| {
        (
            Endpoint::of(&request),
            metrics::method_label(request.method()),
        )
    });
    let span = request_id::span(&id, &request);
    let mut response = if span.is_disabled() {
        next.run(request).await
    } else {
        next.run(request).instrument(span.clone()).await
    };
    request_id::done(&span, response.status(), started);
    if let Some((endpoint, method)) = labels {
        metrics::observe(endpoint, method, response.status().as_u16(), started);
    }
    let headers = response.headers_mut();
    headers.insert(request_id::HEADER, id);
    if let Cors::Allow(origin) = cors {
        demo::allow(headers, origin);
    }
    response
}
