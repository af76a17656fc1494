//! Running a server: the hub, both listeners, and graceful shutdown.

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
use crate::gateway::{self, GatewayState};
use crate::http_error::ApiError;
use crate::hub::{Apps, Hub};
use crate::stats::Stats;
use crate::transport::connections::Connections;
use crate::transport::ws::connection::WsSettings;
use crate::transport::ws::WsContext;

/// Already-bound listeners; binding happens in the caller so tests can use port 0.
pub struct Listeners {
    /// Client listener.
    pub client: TcpListener,
    /// API listener; `None` serves the API on the client listener (single-port mode).
    pub api: Option<TcpListener>,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener failed.
    #[error("listener failed: {0}")]
    Listener(#[from] std::io::Error),
}

/// Serve until `shutdown` fires, then close every client with 1001 (going away) and wait up
/// to the configured grace period for them.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let stats = Arc::new(Stats::default());
    let engine = engine::from_config(config.engine);
    let hub = Hub::new(
        Apps::new(config.apps.clone(), config.dynamic_apps.clone()),
        engine,
        stats.clone(),
    );
    let tracker = TaskTracker::new();
    let connections = Connections::default();
    tracker.spawn({
        let (connections, shutdown) = (connections.clone(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            tracing::info!(
                connections = connections.len(),
                "closing every client connection"
            );
            connections.close_all(Disconnect::SHUTDOWN);
        }
    });
    let ws = WsContext {
        settings: WsSettings {
            write_timeout: config.limits.write_timeout,
        },
        stats,
        connections: connections.clone(),
        tracker: tracker.clone(),
    };
    let gateway = gateway::router(GatewayState::new(
        hub.clone(),
        ws,
        config.limits.outbox,
        &config.defaults,
        config.limits.max_connections,
    ));
    let api = api::router(ApiState {
        hub: hub.clone(),
        max_body_bytes: config.limits.max_body_bytes,
        started: Instant::now(),
    });
    let result = match listeners.api {
        Some(api_listener) => {
            let client = run_listener(listeners.client, with_fallbacks(gateway), shutdown.clone());
            let api = run_listener(api_listener, with_fallbacks(api), shutdown.clone());
            tokio::try_join!(client, api).map(|_| ())
        }
        None => {
            run_listener(
                listeners.client,
                with_fallbacks(gateway.merge(api)),
                shutdown.clone(),
            )
            .await
        }
    };
    tracker.close();
    if tokio::time::timeout(config.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tracker.len(),
            "shutdown grace period ended with connections still closing"
        );
    }
    result.map_err(ServeError::from)
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
async fn run_listener(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let requests = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
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
    Ok(())
}
