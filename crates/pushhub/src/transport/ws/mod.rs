//! WebSocket transport (RFC 6455), server side.
//!
//! Writes follow DESIGN.md principle 4: server frames are unmasked, so one text frame is
//! built once per message and its bytes are shared by every recipient ([`WS_FRAMER`]).
//! Reads parse client frames with tungstenite's header parser into a read buffer that is
//! released whenever it empties, so an idle connection holds almost no memory.

pub mod codec;
pub mod connection;
pub mod handshake;

use bytes::Bytes;

use super::Framer;

/// WebSocket text framing.
pub struct WsFramer;

/// The one WebSocket framer; its frames are plain bytes any connection may write.
pub static WS_FRAMER: WsFramer = WsFramer;

impl Framer for WsFramer {
    fn frame_text(&self, payload: &[u8]) -> Bytes {
        codec::text_frame(payload)
    }

    fn name(&self) -> &'static str {
        "websocket"
    }
}

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;

use crate::hub::Outbox;
use crate::parse_errors::ErrorBodies;
use crate::stats::Stats;
use crate::tls::TlsStream;
use crate::transport::connections::{Connections, Registration};
use crate::transport::shared_tcp::SharedTcp;
use crate::transport::{ClientHandler, Link, Peer};

/// What every WebSocket connection of a server shares.
#[derive(Clone)]
pub struct WsContext {
    /// Connection settings.
    pub settings: connection::WsSettings,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Every live connection, so shutdown can close them.
    pub connections: Connections,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// Answer an upgrade request and run the connection with `handler` in a tracked task,
/// counted in the server's connections by `registration` (taken by the caller, which
/// decides about per-address limits) until it ends. A request that is not a valid
/// handshake gets a 4xx JSON error instead.
pub fn upgrade<H>(
    mut request: Request,
    handler: H,
    outbox: Arc<Outbox>,
    registration: Registration,
    peer: Peer,
    ctx: WsContext,
) -> Response
where
    H: ClientHandler + 'static,
{
    let response = match handshake::accept(request.method(), request.headers()) {
        Ok(response) => response,
        Err(error) => {
            let status = match error {
                handshake::HandshakeError::BadVersion => axum::http::StatusCode::UPGRADE_REQUIRED,
                _ => axum::http::StatusCode::BAD_REQUEST,
            };
            let mut response =
                crate::http_error::ApiError::new(status, "not_websocket", error.to_string())
                    .into_response();
            response.headers_mut().insert(
                axum::http::header::SEC_WEBSOCKET_VERSION,
                axum::http::HeaderValue::from_static("13"),
            );
            return response;
        }
    };
    let link = Link::new(outbox.clone(), &WS_FRAMER, peer).with_request_headers(request.headers());
    let on_upgrade = hyper::upgrade::on(&mut request);
    let task = after_upgrade(
        on_upgrade,
        registration,
        Box::new(handler),
        link,
        ctx.clone(),
    );
    ctx.tracker.spawn(task);
    response
}

/// A WebSocket connection's task: wait for hyper to hand the socket over, then serve it.
///
/// Everything here and in [`connection_task`] keeps this future small, because a task's
/// future is as large as the largest state of everything it awaits, for its whole life: the
/// handler comes boxed, and the connection itself runs in a box of its own size (see
/// there). Its size is checked by a test.
async fn after_upgrade<H>(
    on_upgrade: hyper::upgrade::OnUpgrade,
    registration: Registration,
    handler: Box<H>,
    link: Link,
    ctx: WsContext,
) where
    H: ClientHandler + 'static,
{
    let _registration = registration;
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "websocket upgrade failed");
            return;
        }
    };
    let WsContext {
        settings, stats, ..
    } = ctx;
    connection_task(upgraded, handler, link, settings, stats).await;
}

/// The connection task for the socket the listener gave hyper (inside [`ErrorBodies`]),
/// back in our hands: plain
/// TCP (the common case, tried first; shared with fan-outs, see [`SharedTcp`]), TLS, or
/// whatever else hyper holds. Each kind is its own instance of the connection (no dispatch
/// per write), and each is boxed, so a plain connection does not carry room for a TLS
/// session's state.
fn connection_task<H>(
    upgraded: hyper::upgrade::Upgraded,
    handler: Box<H>,
    link: Link,
    settings: connection::WsSettings,
    stats: Arc<Stats>,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    H: ClientHandler + 'static,
{
    let upgraded = match upgraded.downcast::<TokioIo<ErrorBodies<TcpStream>>>() {
        Ok(parts) => {
            let socket = parts.io.into_inner().into_inner();
            let socket = SharedTcp::attach(socket, link.outbox(), stats.clone());
            return Box::pin(connection::run(
                socket,
                parts.read_buf,
                handler,
                link,
                settings,
                stats,
            ));
        }
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<ErrorBodies<TlsStream>>>() {
        Ok(parts) => Box::pin(connection::run(
            parts.io.into_inner().into_inner(),
            parts.read_buf,
            handler,
            link,
            settings,
            stats,
        )),
        Err(upgraded) => {
            tracing::debug!("upgraded stream is neither TCP nor TLS; writing through hyper");
            let stream = TokioIo::new(upgraded);
            Box::pin(connection::run(
                stream,
                Bytes::new(),
                handler,
                link,
                settings,
                stats,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::disconnect::Disconnect;
    use crate::hub::OutboxLimits;
    use crate::transport::{Farewell, Liveness, Refuse};

    /// Bytes of task state a connection may carry: the memory target is 8 KiB per idle
    /// connection in all (docs/benchmarks.md), and the task once grew to 5 KiB unnoticed.
    const MAX_TASK_BYTES: usize = 1024;
    const MAX_CONNECTION_BYTES: usize = 2048;

    fn handler() -> Box<Refuse> {
        let liveness = Liveness {
            heartbeat: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            max_message_bytes: 65536,
            handshake_deadline: None,
            max_frames_per_second: 0,
            credential_expiry: None,
        };
        Box::new(Refuse {
            reason: Disconnect::SHUTDOWN,
            say: Farewell::plain,
            liveness,
        })
    }

    fn link() -> Link {
        let limits = OutboxLimits {
            max_messages: 16,
            max_bytes: 1 << 16,
        };
        let peer = Peer::new(None, None);
        Link::new(Arc::new(Outbox::new(limits)), &WS_FRAMER, peer)
    }

    #[tokio::test]
    async fn an_idle_connection_costs_little_task_state() {
        let settings = connection::WsSettings {
            write_timeout: Duration::from_secs(10),
        };
        let ctx = WsContext {
            settings,
            stats: Arc::default(),
            connections: Connections::default(),
            tracker: TaskTracker::new(),
        };
        let waiting = link();
        let registration = ctx.connections.register_refused(waiting.outbox());
        let mut request = Request::new(axum::body::Body::empty());
        let on_upgrade = hyper::upgrade::on(&mut request);
        let task = after_upgrade(on_upgrade, registration, handler(), waiting, ctx.clone());
        let task_bytes = std::mem::size_of_val(&task);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let connection = connection::run(
            client,
            Bytes::new(),
            handler(),
            link(),
            settings,
            ctx.stats.clone(),
        );
        let connection_bytes = std::mem::size_of_val(&connection);
        assert!(
            task_bytes <= MAX_TASK_BYTES && connection_bytes <= MAX_CONNECTION_BYTES,
            "task future {task_bytes} bytes, connection future {connection_bytes} bytes"
        );
    }
}
