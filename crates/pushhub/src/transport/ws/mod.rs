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
use crate::stats::Stats;
use crate::tls::TlsStream;
use crate::transport::connections::{Connections, Registration};
use crate::transport::{ClientHandler, Link};

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
    let link = Link::new(outbox.clone(), &WS_FRAMER).with_request_headers(request.headers());
    let on_upgrade = hyper::upgrade::on(&mut request);
    ctx.tracker.clone().spawn(async move {
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
    });
    response
}

/// The connection task for the socket the listener gave hyper, back in our hands: plain
/// TCP (the common case, tried first), TLS, or whatever else hyper holds.
///
/// Boxed, and the handler too, because a task's future is as large as the largest state
/// of everything it awaits, for its whole life: awaited inline, each kind of stream, and
/// the handler once per layer it is passed through, would cost every idle connection
/// several kilobytes.
fn connection_task<H>(
    upgraded: hyper::upgrade::Upgraded,
    handler: H,
    link: Link,
    settings: connection::WsSettings,
    stats: Arc<Stats>,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    H: ClientHandler + 'static,
{
    let handler = Box::new(handler);
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            return Box::pin(connection::run(
                parts.io.into_inner(),
                parts.read_buf,
                handler,
                link,
                settings,
                stats,
            ));
        }
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<TlsStream>>() {
        Ok(parts) => Box::pin(connection::run(
            parts.io.into_inner(),
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
