//! Transports: bytes in and out of client connections, with no business rules.
//!
//! A transport frames what a dialect wants to say ([`Framer`]), delivers a client's decoded
//! text messages to the dialect's [`ClientHandler`], and enforces connection mechanics:
//! frame size, heartbeat pings, idle timeout, write timeout, slow-consumer cut-off and
//! graceful close. It never looks inside a message.

pub mod connections;
pub mod feed;
pub mod poll;
pub mod rate;
pub mod shared_tcp;
pub mod sse;
pub mod stream;
pub mod tcp;
pub mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::disconnect::Disconnect;
use crate::hub::{Cursor, Outbox};
use crate::stats::Stats;
use crate::sync::lock;

/// Leaves a payload as it is: for transports that frame a whole response themselves
/// (long-poll), where one message's bytes are a piece of a larger body.
pub struct RawFramer;

/// The one raw framer.
pub static RAW_FRAMER: RawFramer = RawFramer;

impl Framer for RawFramer {
    fn frame_text(&self, payload: &[u8]) -> Bytes {
        Bytes::copy_from_slice(payload)
    }

    fn name(&self) -> &'static str {
        "poll"
    }
}

/// Puts one text payload in this transport's framing (a WebSocket text frame, an SSE
/// event, a length prefix...).
pub trait Framer: Send + Sync + 'static {
    /// The framed bytes of `payload`.
    fn frame_text(&self, payload: &[u8]) -> Bytes;

    /// The transport's name (`websocket`, `sse`, `poll` or `tcp`), as metrics, the admin
    /// API and the dashboard show a connection's.
    fn name(&self) -> &'static str;
}

/// Who is at the other end of a connection, for per-address limits and the operator's
/// view of it (`GET /v1/apps/{app}/users?conns=true`, `pushhub users`). How it came
/// (transport and dialect) is its renderer's [`crate::hub::Render::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address: the socket's peer, or, for a client a trusted proxy forwarded,
    /// its forwarded IP with port 0 (the proxy does not tell the port).
    pub addr: Option<SocketAddr>,
}

impl Peer {
    /// A client whose socket peer is `socket` and whose address, after trusted proxies'
    /// forwarding headers, is `client`.
    pub fn new(socket: Option<SocketAddr>, client: Option<IpAddr>) -> Self {
        let addr = match (socket, client) {
            (Some(socket), Some(ip)) if socket.ip() != ip => Some(SocketAddr::new(ip, 0)),
            (Some(socket), _) => Some(socket),
            (None, ip) => ip.map(|ip| SocketAddr::new(ip, 0)),
        };
        Self { addr }
    }

    /// The client's IP address, which per-address limits count.
    pub fn ip(&self) -> Option<IpAddr> {
        self.addr.map(|addr| addr.ip())
    }
}

/// The dialect's way to talk to its client: queue text, framed for this transport.
pub struct Link {
    outbox: Arc<Outbox>,
    framer: &'static dyn Framer,
    peer: Peer,
    start: Mutex<Option<StreamStart>>,
    replay_limit: Option<usize>,
    origin: Option<String>,
    cookies: Option<String>,
}

/// Queues text to one connection from anywhere; see [`Link::sender`].
#[derive(Clone)]
pub struct LinkSender {
    outbox: Arc<Outbox>,
    framer: &'static dyn Framer,
}

impl LinkSender {
    /// Queue one text message. False when the queue overflowed or the connection closed.
    pub fn send_text(&self, payload: &[u8]) -> bool {
        self.outbox.push(self.framer.frame_text(payload))
    }
}

/// Where an attached client's stream starts, for transports whose framing carries a
/// position (SSE event ids, long-poll cursors).
#[derive(Debug, Clone)]
pub struct StreamStart {
    /// The client's positions before anything queued after the greeting.
    pub cursor: Cursor,
    /// False when the client asked to resume and some channel could not be.
    pub recovered: bool,
}

impl Link {
    /// A link to `peer` writing into `outbox` through `framer`.
    pub fn new(outbox: Arc<Outbox>, framer: &'static dyn Framer, peer: Peer) -> Self {
        Self {
            outbox,
            framer,
            peer,
            start: Mutex::new(None),
            replay_limit: None,
            origin: None,
            cookies: None,
        }
    }

    /// The same link for a client whose request came with these headers: browsers send
    /// `Origin` (held to the app's allowed origins) and cookies (a web session an auth
    /// webhook may check). Only those two are kept.
    pub fn with_request_headers(mut self, headers: &axum::http::HeaderMap) -> Self {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        self.origin = text(axum::http::header::ORIGIN);
        self.cookies = text(axum::http::header::COOKIE);
        self
    }

    /// Who the client is and how it came.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// The `Origin` the client's request came with, if any.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The `Cookie` header the client's request came with, if any.
    pub fn cookies(&self) -> Option<&str> {
        self.cookies.as_deref()
    }

    /// The same link for a client that takes at most `limit` missed messages at once (a
    /// long-poll batch); the rest wait for its next request.
    pub fn with_replay_limit(mut self, limit: usize) -> Self {
        self.replay_limit = Some(limit);
        self
    }

    /// Most missed messages the client takes at once, if the transport limits it.
    pub fn replay_limit(&self) -> Option<usize> {
        self.replay_limit
    }

    /// The dialect attached the client to the hub: record where its stream starts.
    pub fn attached(&self, start: StreamStart) {
        *lock(&self.start) = Some(start);
    }

    /// Where the client's stream starts, once the dialect has attached it.
    pub fn stream_start(&self) -> Option<StreamStart> {
        lock(&self.start).clone()
    }

    /// `payload` as one text message in this link's framing, for a frame sent outside
    /// the queue ([`Farewell::last_frame`]).
    pub fn frame_text(&self, payload: &[u8]) -> Bytes {
        self.framer.frame_text(payload)
    }

    /// Queue one text message. False when the queue overflowed (the connection is closing).
    pub fn send_text(&self, payload: &[u8]) -> bool {
        self.outbox.push(self.framer.frame_text(payload))
    }

    /// A handle that queues text later, from another task (an RPC reply that arrives
    /// after the frame that asked for it has been handled).
    pub fn sender(&self) -> LinkSender {
        LinkSender {
            outbox: self.outbox.clone(),
            framer: self.framer,
        }
    }

    /// The connection's send queue, for attaching to the hub.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }
}

/// Connection mechanics a transport enforces; a dialect may change them once it knows the
/// connection's app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Ping the client after this long without sending it anything.
    pub heartbeat: Duration,
    /// Close the connection after this long without hearing from the client.
    pub idle_timeout: Duration,
    /// Largest message accepted from the client.
    pub max_message_bytes: usize,
    /// When a client that has not finished its dialect's handshake (jdserver's `init`) is
    /// closed with [`Disconnect::HANDSHAKE_TIMEOUT`], however lively its socket.
    pub handshake_deadline: Option<tokio::time::Instant>,
    /// Most frames a client may send per second (sustained; bursts up to twice that);
    /// 0: no limit. Every frame counts, whatever it carries (a WebSocket fragment or
    /// control frame, an empty TCP frame). Beyond it the connection is closed with
    /// [`Disconnect::RATE_LIMITED`].
    pub max_frames_per_second: u32,
    /// When the client's credential expires: the connection is closed then with
    /// [`Disconnect::TOKEN_EXPIRED`] unless the dialect has moved it (a token refresh).
    pub credential_expiry: Option<tokio::time::Instant>,
}

/// A dialect's side of one client connection.
#[async_trait]
pub trait ClientHandler: Send {
    /// The connection is open. Send a greeting or attach to the hub; an error closes it.
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect>;

    /// One complete text message arrived. An error closes the connection with that reason.
    async fn on_text(&mut self, text: &str, link: &Link) -> Result<(), Disconnect>;

    /// One complete binary message arrived (WebSocket only). No dialect speaks binary, so
    /// by default it closes the connection with [`Disconnect::BINARY_NOT_SUPPORTED`]; the
    /// transport parses binary messages anyway, so a handler that echoes them (the
    /// WebSocket conformance suite's, `tests/it/autobahn.rs`) runs on the same codec.
    async fn on_binary(&mut self, _data: &[u8], _link: &Link) -> Result<(), Disconnect> {
        Err(Disconnect::BINARY_NOT_SUPPORTED)
    }

    /// The mechanics to enforce now; asked again after every call above.
    fn liveness(&self) -> Liveness;

    /// The connection ended for `reason`; release what it held.
    async fn on_close(&mut self, reason: &Disconnect);

    /// How the close for `reason` reaches the client (asked after [`Self::on_close`],
    /// on stream transports): by default as the reason itself. A dialect whose clients
    /// read close codes by a table of their own (Pusher's: 4000–4099 never reconnect,
    /// 4100–4199 back off, 4200–4299 reconnect now) says it in those codes, with a last
    /// frame before the close if its clients expect one.
    fn farewell(&self, reason: &Disconnect, link: &Link) -> Farewell {
        Farewell::plain(reason, link)
    }
}

/// The end of a connection as the client sees it: see [`ClientHandler::farewell`].
pub struct Farewell {
    /// A frame sent right before the close (framed by the link's transport).
    pub last_frame: Option<Bytes>,
    /// The close code and reason sent.
    pub close: Disconnect,
}

impl Farewell {
    /// The close as `reason` says it, with no last frame: how most dialects end.
    pub fn plain(reason: &Disconnect, _link: &Link) -> Self {
        Self {
            last_frame: None,
            close: reason.clone(),
        }
    }
}

/// Log why a client connection ended and count it when it was cut off as a slow consumer:
/// one rule for every transport (WebSocket, raw TCP, SSE, long-poll), so the
/// `slow_consumers` counter and the `closing slow consumer` line cover them all.
pub fn record_end(stats: &Stats, reason: &Disconnect) {
    if reason.code == Disconnect::SLOW_CONSUMER.code {
        stats.slow_consumer();
        tracing::info!(code = reason.code, %reason, "closing slow consumer");
    } else if reason.code == Disconnect::RATE_LIMITED.code {
        // Debug, like other closes: a client that floods and reconnects must not flood
        // the log as well; the counter shows it.
        stats.rate_limited_connection();
        tracing::debug!(code = reason.code, %reason, "closing rate-limited client");
    } else {
        tracing::debug!(code = reason.code, %reason, "closing connection");
    }
}

/// A handler that closes the connection right after the handshake with a reason: how
/// refusals reach browser clients, which cannot read an HTTP error on a failed upgrade but
/// do see a close code and reason.
pub struct Refuse {
    /// Why.
    pub reason: Disconnect,
    /// How the client is told ([`ClientHandler::farewell`]): by default the reason
    /// itself; a dialect whose clients read close codes by their own table says it there.
    pub say: fn(&Disconnect, &Link) -> Farewell,
    /// Mechanics while closing.
    pub liveness: Liveness,
}

#[async_trait]
impl ClientHandler for Refuse {
    async fn on_open(&mut self, _link: &Link) -> Result<(), Disconnect> {
        Err(self.reason.clone())
    }

    async fn on_text(&mut self, _text: &str, _link: &Link) -> Result<(), Disconnect> {
        Err(self.reason.clone())
    }

    fn liveness(&self) -> Liveness {
        self.liveness
    }

    async fn on_close(&mut self, _reason: &Disconnect) {}

    fn farewell(&self, reason: &Disconnect, link: &Link) -> Farewell {
        (self.say)(reason, link)
    }
}

/// A handler chosen at run time (a refusal or a client, say), for transports whose
/// accept path decides per connection.
#[async_trait]
impl<H: ClientHandler + ?Sized> ClientHandler for Box<H> {
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
        (**self).on_open(link).await
    }

    async fn on_text(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
        (**self).on_text(text, link).await
    }

    async fn on_binary(&mut self, data: &[u8], link: &Link) -> Result<(), Disconnect> {
        (**self).on_binary(data, link).await
    }

    fn liveness(&self) -> Liveness {
        (**self).liveness()
    }

    async fn on_close(&mut self, reason: &Disconnect) {
        (**self).on_close(reason).await
    }

    fn farewell(&self, reason: &Disconnect, link: &Link) -> Farewell {
        (**self).farewell(reason, link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_its_socket_unless_a_proxy_forwarded_another_address() {
        let socket: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let direct = Peer::new(Some(socket), Some(socket.ip()));
        assert_eq!(direct.addr, Some(socket));
        let forwarded = Peer::new(Some(socket), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(forwarded.addr, Some("1.2.3.4:0".parse().unwrap()));
        assert_eq!(forwarded.ip(), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(Peer::new(Some(socket), None).addr, Some(socket));
        assert_eq!(Peer::new(None, None).ip(), None);
    }
}
