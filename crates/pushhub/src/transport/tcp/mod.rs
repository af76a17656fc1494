//! Raw TCP transport, for native apps and devices that do not want WebSocket: the native
//! dialect's JSON frames on a plain socket, newline- or delimiter-terminated or behind a
//! length header (one [`Framing`] per listener, with Swoole's settings), with the same heartbeat, limits, slow-consumer handling and
//! graceful close as WebSocket (the connection task is [`crate::transport::stream`]'s).
//!
//! With `[tls] tcp = true` each socket completes a TLS handshake (within
//! [`crate::tls::HANDSHAKE_TIMEOUT`]) before its connection starts; the frames are the same.
//!
//! Raw TCP has no URL, so which client a socket is only becomes known from its first
//! frame; this module accepts sockets and leaves that to the dialect's handler.

pub mod connection;
pub mod framing;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use framing::{Framing, TcpFramer};

use crate::disconnect::Disconnect;
use crate::hub::{Outbox, OutboxLimits};
use crate::stats::Stats;
use crate::tls::Tls;
use crate::transport::connections::Connections;
use crate::transport::shared_tcp::SharedTcp;
use crate::transport::stream::StreamSettings;
use crate::transport::{ClientHandler, Framer, Peer};

/// What the carried dialect says where WebSocket would use control frames. Supplied by
/// whoever wires the listener to a dialect, so this transport stays dialect-free.
#[derive(Clone, Copy)]
pub struct Control {
    /// The heartbeat payload sent every `heartbeat`.
    pub ping: &'static [u8],
    /// The last payload before the server shuts a connection down, naming why.
    pub goodbye: fn(&Disconnect) -> Vec<u8>,
}

/// What every raw TCP connection of a listener shares.
#[derive(Clone)]
pub struct TcpContext {
    /// This listener's framing.
    pub framing: Framing,
    /// This listener's framer (the one its dialect renders messages with).
    pub framer: &'static dyn Framer,
    /// The dialect's ping and goodbye.
    pub control: Control,
    /// Connection settings (write timeout).
    pub settings: StreamSettings,
    /// Bounds of each connection's send queue.
    pub outbox: OutboxLimits,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Every live connection, so shutdown can close them (and admission can count them).
    pub connections: Connections,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// The certificate when this listener speaks TLS; `None`: plain TCP.
    pub tls: Option<Arc<Tls>>,
}

/// The next accepted socket (with Nagle off: pushes should leave at once), or `None` once
/// `shutdown` fires. Accept errors (such as running out of file descriptors) are logged
/// and retried shortly, so a listener never stops serving by itself.
pub async fn next_socket(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<TcpStream> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let _ = socket.set_nodelay(true);
                    return Some(socket);
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.cancelled() => return None,
        }
    }
}

/// Accept connections until `shutdown`, running each with the handler `accept` gives for
/// it (a refusal, such as a full server, is a handler that closes at once with a reason),
/// or the one `refuse` gives when its address holds as many connections as allowed.
pub async fn serve<F, R, H>(
    listener: TcpListener,
    ctx: TcpContext,
    shutdown: CancellationToken,
    mut accept: F,
    mut refuse: R,
) where
    F: FnMut() -> H,
    R: FnMut(Disconnect) -> H,
    H: ClientHandler + 'static,
{
    let shared = connection::Shared {
        framing: ctx.framing,
        framer: ctx.framer,
        ping: ctx.framer.frame_text(ctx.control.ping),
        control: ctx.control,
    };
    while let Some(socket) = next_socket(&listener, &shutdown).await {
        // The handler first: admission counts the connections live before this one. Boxed,
        // so the task's future, which lives as long as the connection, does not hold it
        // once per layer it is passed through.
        let handler = Box::new(accept());
        let outbox = Arc::new(Outbox::new(ctx.outbox));
        let peer = Peer::new(socket.peer_addr().ok(), None);
        let (registration, handler) = match ctx.connections.register(&outbox, peer.ip()) {
            Ok(registration) => (registration, handler),
            Err(reason) => (
                ctx.connections.register_refused(&outbox),
                Box::new(refuse(reason)),
            ),
        };
        let (shared, settings, stats) = (shared.clone(), ctx.settings, ctx.stats.clone());
        let Some(tls) = ctx.tls.clone() else {
            ctx.tracker.spawn(async move {
                let _registration = registration;
                let socket = SharedTcp::attach(socket, &outbox, stats.clone());
                connection::run(socket, handler, outbox, peer, shared, settings, stats).await;
            });
            continue;
        };
        let shutdown = shutdown.clone();
        ctx.tracker.spawn(async move {
            let _registration = registration;
            // The handshake in the connection's own task, so a slow one delays no other
            // client; it counts as a connection meanwhile (it holds a descriptor).
            let socket = tokio::select! {
                handshake = tls.accept_raw(socket) => match handshake {
                    Ok(socket) => socket,
                    Err(error) => {
                        tracing::debug!(%error, "raw TCP TLS handshake failed");
                        return;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            connection::run(socket, handler, outbox, peer, shared, settings, stats).await;
        });
    }
}
