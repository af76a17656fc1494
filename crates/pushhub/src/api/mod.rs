//! The server API: what backends and operators call on the API listener.
//!
//! Handlers only parse and render; the hub does the work. The native endpoints live in
//! [`native`]; the jdserver- and push-serve-compatible ones live with their dialects
//! (`dialect/jdserver/api.rs`, `dialect/pushserve/api.rs`, `dialect/pusher/api.rs`), which
//! this router mounts.
//! Every error is an [`ApiError`](crate::http_error::ApiError).

pub mod admin;
pub mod admin_control;
pub mod auth;
pub mod batch;
pub mod conns;
pub mod cron;
mod dashboard;
pub mod front;
pub mod history;
pub mod metrics;
pub mod native;
pub mod params;
pub mod request_id;
pub mod rooms;
pub mod tasks;
pub mod timer_retry;
pub mod timers;
pub mod upgrade;
pub mod users_page;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{any, get, post, put};
use axum::Router;

use crate::dialect::jdserver::api as jdserver;
use crate::dialect::pusher::api as pusher;
use crate::dialect::pushserve::api as pushserve;
pub use crate::dialect::pushserve::api::own_port_router as pushserve_router;
use crate::http_error::ApiError;
use crate::hub::Hub;
use crate::json_depth;

/// What every API handler shares, behind one pointer: axum clones the state for every
/// request, and cloning these fields one by one (a cancellation token's lock among them)
/// was a tenth of a push's user-space CPU.
pub type ApiState = Arc<ApiContext>;

/// The services and settings the API handlers use.
pub struct ApiContext {
    /// The hub.
    pub hub: Hub,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Most pushes one `POST /v1/batch` carries.
    pub max_batch: usize,
    /// Largest `POST /v1/batch` body accepted.
    pub max_batch_body_bytes: usize,
    /// When the server started, for `uptime_secs`.
    pub started: Instant,
    /// Which key may act for which app; replaced whole by a reload, read once per request.
    pub keys: Arc<ArcSwap<auth::ApiKeys>>,
    /// push-serve compatibility, when enabled; replaced by a reload (a new password).
    pub pushserve: Arc<ArcSwapOption<crate::config::PushServe>>,
    /// Delayed HTTP callbacks.
    pub timers: crate::scheduler::Timers,
    /// Reloads the configuration (`POST /v1/admin/reload`) and knows its generation.
    pub reloader: crate::reload::Reloader,
    /// The server's shutdown token: `POST /v1/admin/stop` cancels it, as SIGTERM does.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// What `/v1/admin/status` and `/v1/admin/stop` read and act on.
    pub control: admin_control::Control,
    /// Starts a successor (`POST /v1/admin/upgrade`).
    pub upgrader: crate::upgrade::Upgrader,
}

/// The API listener's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(native::healthz))
        .route("/v1/push", post(native::push))
        .route("/v1/batch", post(batch::batch))
        .route("/v1/disconnect", post(native::disconnect))
        .route("/v1/apps/{app}/rooms/{room}", get(rooms::members))
        .route("/v1/apps/{app}/rooms/{room}/members", post(rooms::add))
        .route(
            "/v1/apps/{app}/rooms/{room}/members/{user}",
            axum::routing::delete(rooms::remove),
        )
        .route("/v1/apps/{app}/users", get(native::users))
        .route("/v1/apps/{app}/history", get(history::read))
        .route(
            "/v1/apps/{app}/conns/{conn}/close-notes",
            post(conns::close_notes),
        )
        .route("/v1/stats", get(native::stats))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/tasks", get(tasks::tasks))
        .route("/v1/admin/overview", get(admin::overview))
        .route("/v1/admin/upgrade", post(upgrade::upgrade))
        .route("/v1/timers", post(timers::create).get(timers::list))
        .route("/v1/timers/{id}", get(timers::get).delete(timers::cancel))
        .route("/v1/timers/{id}/retry", post(timer_retry::retry))
        .route("/v1/cron", get(cron::list))
        .route(
            "/v1/cron/{name}",
            put(cron::put).get(cron::get).delete(cron::delete),
        )
        .route("/v1/cron/{name}/pause", post(cron::pause))
        .route("/v1/cron/{name}/resume", post(cron::resume))
        .route("/v1/cron/{name}/run", post(cron::run))
        .route("/push", any(push))
        .merge(jdserver::routes())
        .merge(pushserve::routes())
        .merge(pusher::routes())
        .merge(dashboard::routes())
        .merge(admin_control::routes())
        .with_state(state)
}

/// `/push` is jdserver's, or push-serve's when it names `uid` and `password` (the two
/// share the path, as their users' code does).
async fn push(
    State(state): State<ApiState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if pushserve::is_pushserve(request.uri().query()) {
        pushserve::push(state, request).await
    } else {
        jdserver::push(State(state), request).await.into_response()
    }
}

/// Read a JSON body into `T`: `400 bad_json` when it is not JSON, `400 invalid_request`
/// (naming `what`) when a field is missing, mistyped or unknown.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    body: Body,
    limit: usize,
    what: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(body, limit).await?;
    parse_json(&bytes, what)
}

/// Parse a JSON request body into `T`: `400 too_deep` when it nests deeper than
/// [`json_depth::MAX_DEPTH`] (checked first, because the payload fields it carries as raw
/// JSON skip the parser's own limit), `400 bad_json` when it is not JSON, `400
/// invalid_request` (naming `what`) when a field is missing, mistyped or unknown.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
    what: &str,
) -> Result<T, ApiError> {
    json_depth::check(bytes)?;
    serde_json::from_slice(bytes).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            ApiError::bad_request("bad_json", format!("body is not valid JSON: {error}"))
        } else {
            ApiError::bad_request("invalid_request", format!("invalid {what}: {error}"))
        }
    })
}

/// How long a client may take to send a request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Read a whole request body, refusing more than `limit` bytes with a JSON 413 and a body
/// that trickles in for longer than 30 s with a 408.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await;
    match read {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is larger than {limit} bytes or could not be read"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "request body did not arrive within 30 s",
        )),
    }
}

/// The request's Content-Type, if it is readable text.
pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}
