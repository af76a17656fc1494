//! Running a server: the hub, its listeners, and graceful shutdown.

use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::disconnect::Disconnect;
use crate::engine;
use crate::gateway::{self, GatewayState, TcpGateway};
use crate::http_error::ApiError;
use crate::hub::{Apps, Hub};
use crate::stats::Stats;
use crate::transport::connections::Connections;
use crate::transport::tcp::{self, TcpContext};
use crate::transport::ws::connection::WsSettings;
use crate::transport::ws::WsContext;

/// Already-bound listeners; binding happens in the caller so tests can use port 0.
pub struct Listeners {
    /// Client listener.
    pub client: TcpListener,
    /// API listener; `None` serves the API on the client listener (single-port mode).
    pub api: Option<TcpListener>,
    /// Raw TCP listener (native dialect); `None` when `tcp_listen` is unset.
    pub tcp: Option<TcpListener>,
}

/// Serve until `shutdown` fires; then stop accepting, close every client with 1001 (going
/// away), and give clients and in-flight API requests up to `shutdown_grace` in all.
/// Accept errors (such as running out of file descriptors) are logged and retried, so
/// serving itself never fails.
pub async fn serve(config: Config, listeners: Listeners, shutdown: CancellationToken) {
    let stats = Arc::new(Stats::default());
    let tracker = TaskTracker::new();
    let engine = engine::from_config(config.engine, &tracker, shutdown.clone());
    let hub = Hub::new(
        Apps::new(config.apps.clone(), config.dynamic_apps.clone()),
        engine,
        stats.clone(),
    );
    let connections = Connections::default();
    let ws = WsContext {
        settings: WsSettings {
            write_timeout: config.limits.write_timeout,
        },
        stats: stats.clone(),
        connections: connections.clone(),
        tracker: tracker.clone(),
    };
    let gateway_state = GatewayState::new(hub.clone(), ws.clone(), &config);
    let tcp_gateway = TcpGateway::new(gateway_state.clone(), config.tcp_framing);
    let gateway = gateway::router(gateway_state);
    let api = api::router(ApiState {
        hub: hub.clone(),
        max_body_bytes: config.limits.max_body_bytes,
        started: Instant::now(),
        keys: Arc::new(crate::api::auth::ApiKeys::new(&config.apps)),
        pushserve: config.pushserve.clone().map(Arc::new),
    });
    let routers = match listeners.api {
        Some(api_listener) => vec![
            (listeners.client, with_fallbacks(gateway)),
            (api_listener, with_fallbacks(api)),
        ],
        None => vec![(listeners.client, with_fallbacks(gateway.merge(api)))],
    };
    let mut accepting: Vec<_> = routers
        .into_iter()
        .map(|(listener, router)| tokio::spawn(run_listener(listener, router, shutdown.clone())))
        .collect();
    if let Some(listener) = listeners.tcp {
        let ctx = TcpContext {
            framing: config.tcp_framing,
            control: TcpGateway::control(),
            settings: ws.settings,
            outbox: config.limits.outbox,
            stats,
            connections: connections.clone(),
            tracker: tracker.clone(),
        };
        let accept = move || tcp_gateway.client();
        accepting.push(tokio::spawn(tcp::serve(
            listener,
            ctx,
            shutdown.clone(),
            accept,
        )));
    }

    shutdown.cancelled().await;
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    tracing::info!(
        connections = connections.len(),
        "closing every client connection"
    );
    connections.close_all(Disconnect::SHUTDOWN);
    tracker.close();
    let drained = tokio::time::timeout_at(deadline, async {
        for listener in &mut accepting {
            let _ = listener.await;
        }
        tracker.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tracker.len(),
            "shutdown grace period ended with connections or requests still open"
        );
        accepting.iter().for_each(|listener| listener.abort());
    }
}

fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see docs/api.md",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see docs/api.md",
            )
        })
}

/// How long a client may take to send a request's headers (slowloris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept HTTP/1.1 connections (with upgrades) until `shutdown`, then wait for requests in
/// flight. Upgraded connections leave hyper at the upgrade and are not waited for here.
///
/// Served with hyper directly rather than `axum::serve` so an upgraded connection is the
/// plain `TcpStream` it started as, and so header reads have a deadline.
async fn run_listener(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let requests = TaskTracker::new();
    while let Some(stream) = tcp::next_socket(&listener, &shutdown).await {
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            )
            .with_upgrades();
        let shutdown = shutdown.clone();
        requests.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    requests.close();
    requests.wait().await;
}
