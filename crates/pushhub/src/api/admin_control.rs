//! The operator's control of a running server, for an admin key: `GET /v1/admin/status`
//! (what `pushhub status` prints), `POST /v1/admin/reload` (a reload, as SIGHUP does) and
//! `POST /v1/admin/stop` (a graceful stop, as SIGTERM does; `{"force":true}` skips the
//! grace wait).
//!
//! Every number in the status comes from where the rest of the server reads it: the
//! connection gauges of `/metrics`, presence for users, the [`Stats`](crate::stats::Stats)
//! counters for rates, and the dashboard's engine, store and memory readings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::task::TaskTracker;

use super::{admin, ApiState};
use crate::engine::EngineKind;
use crate::http_error::ApiError;
use crate::rates::Rates;
use crate::reload::ReloadError;
use crate::store::history::{FsyncPolicy, HistoryLog, HistoryStore};

/// What the operator endpoints read or act on beyond what every handler shares.
#[derive(Clone)]
pub struct Control {
    /// Recent message rates.
    pub rates: Rates,
    /// Where channel histories live.
    pub history: HistorySetup,
    /// Where lifecycle webhook senders run: one per app with `events`, plus those of
    /// replaced apps still sending what their connections emitted.
    pub webhook_senders: TaskTracker,
    /// The stop's grace, configured.
    pub shutdown_grace: Duration,
    forced: Arc<AtomicBool>,
}

/// Where channel histories live, for the status.
#[derive(Clone)]
pub struct HistorySetup {
    /// The engine: Redis keeps histories itself.
    pub engine: EngineKind,
    /// The memory engine's choice.
    pub store: HistoryStore,
    /// Its fsync policy, on disk.
    pub fsync: FsyncPolicy,
    /// The open log, on disk.
    pub log: Option<Arc<HistoryLog>>,
}

impl Control {
    /// The control state of a server whose stop waits `shutdown_grace` unless forced.
    pub fn new(
        rates: Rates,
        history: HistorySetup,
        webhook_senders: TaskTracker,
        shutdown_grace: Duration,
    ) -> Self {
        Self {
            rates,
            history,
            webhook_senders,
            shutdown_grace,
            forced: Arc::default(),
        }
    }

    /// Whether the stop was forced (`{"force":true}`): nothing in flight is waited for,
    /// the last lifecycle webhooks included.
    pub fn forced(&self) -> bool {
        self.forced.load(Ordering::Relaxed)
    }

    /// How long the shutdown under way may wait for connections and calls to finish:
    /// nothing after a forced stop, else the configured grace.
    pub fn grace(&self) -> Duration {
        if self.forced() {
            Duration::ZERO
        } else {
            self.shutdown_grace
        }
    }
}

/// The routes, for the API router.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/admin/stop", post(stop))
}

/// `GET /v1/admin/status`.
async fn status(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.keys.load().check_admin(&headers)?;
    let hub = &state.hub;
    let by_kind: Vec<Value> = crate::metrics::global()
        .connections_by_kind()
        .into_iter()
        .map(|(transport, dialect, connections)| {
            json!({"transport": transport, "dialect": dialect, "connections": connections})
        })
        .collect();
    let users = hub.users_online().await?;
    let timers = state.timers.snapshot();
    let mut timer_store = admin::timer_store(&state.timers);
    timer_store["pending"] = json!(timers.pending);
    timer_store["running"] = json!(timers.running);
    let rate = |secs| state.control.rates.over(Duration::from_secs(secs));
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node": crate::node::node_id(),
        "uptime_secs": state.started.elapsed().as_secs(),
        "connections": {
            "total": hub.stats().connections(),
            "by_kind": by_kind,
        },
        "users": {
            "total": users.iter().map(|(_, count)| count).sum::<u64>(),
            "by_app": users
                .iter()
                .map(|(app, count)| json!({"app": app, "users": count}))
                .collect::<Vec<_>>(),
        },
        "rates": {"last_10s": rate(10), "last_60s": rate(60)},
        "memory": admin::memory(),
        "engine": admin::engine(hub).await,
        "stores": {
            "timers": timer_store,
            "history": history(&state.control.history),
        },
        "reload": state.reloader.status(),
        "webhook_senders": state.control.webhook_senders.len(),
    })))
}

/// Where channel histories live, and how much the log holds.
fn history(setup: &HistorySetup) -> Value {
    match (setup.engine, setup.store, &setup.log) {
        (EngineKind::Redis, _, _) => json!({"kind": "redis"}),
        (_, HistoryStore::Disk, Some(log)) => {
            let problem = log.problem();
            json!({
                "kind": "disk",
                "fsync": setup.fsync,
                "bytes": log.bytes(),
                "healthy": problem.is_none(),
                "problem": problem,
            })
        }
        _ => json!({"kind": "memory"}),
    }
}

/// `POST /v1/admin/reload`: the outcome, or 422 with every error (409 while another
/// reload runs); either way the server keeps serving.
async fn reload(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.keys.load().check_admin(&headers)?;
    match state.reloader.reload("api").await {
        Ok(applied) => Ok(Json(applied).into_response()),
        Err(ReloadError::Busy) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "reload_busy",
            "a reload is already running; try again when it is done",
        )),
        Err(error) => {
            let errors: Vec<Value> = error
                .errors()
                .iter()
                .map(|e| json!({"location": e.location, "key": e.key, "message": e.message}))
                .collect();
            let message = format!(
                "the new configuration was refused ({} error(s)); the running one stays",
                errors.len()
            );
            let body = json!({"error": {
                "code": "reload_refused",
                "message": message,
                "errors": errors,
            }});
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response())
        }
    }
}

/// The body of `POST /v1/admin/stop`; none at all means `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopRequest {
    /// Skip the grace wait: connections are closed, and the process exits without
    /// waiting for requests, webhooks and timer calls in flight.
    #[serde(default)]
    force: bool,
}

/// `POST /v1/admin/stop`: 202, then the shutdown, once the answer is on its way.
async fn stop(
    State(state): State<ApiState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    state.keys.load().check_admin(request.headers())?;
    let bytes = super::read_body(request.into_body(), state.max_body_bytes).await?;
    let stop: StopRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        StopRequest::default()
    } else {
        super::parse_json(&bytes, "stop request")?
    };
    if stop.force {
        state.control.forced.store(true, Ordering::Relaxed);
    }
    let grace = state.control.grace();
    tracing::info!(
        force = stop.force,
        grace_secs = grace.as_secs_f64(),
        "stop requested through the API: shutting down"
    );
    let answer = json!({
        "stopping": true,
        "force": stop.force,
        "grace_secs": grace.as_secs_f64(),
        "node": crate::node::node_id(),
    })
    .to_string();
    // The token fires when the body has been handed over, so the answer is sent before
    // the listeners stop (and, forced, before the process exits).
    let shutdown = state.shutdown.clone();
    let body = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(answer)]).chain(
        futures_util::stream::once(async move {
            shutdown.cancel();
            None::<Result<String, std::convert::Infallible>>
        })
        .filter_map(std::future::ready),
    );
    let mut response = (StatusCode::ACCEPTED, Body::from_stream(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
