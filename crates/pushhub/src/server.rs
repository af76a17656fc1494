//! Running a server: the hub, both listeners, and graceful shutdown.

use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use axum::serve::ListenerExt;
use axum::Router;
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

async fn run_listener(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
