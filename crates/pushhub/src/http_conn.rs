//! One accepted HTTP connection, served as HTTP/1.1 or HTTP/2 until it ends or the server
//! stops.
//!
//! Listeners that serve the API speak both: a backend can keep one HTTP/2 connection and
//! send many pushes on it at once, instead of a pool of HTTP/1.1 connections each carrying
//! one request at a time. The version is chosen before hyper sees a byte: over TLS by ALPN
//! (`h2` offered and chosen), in cleartext by the HTTP/2 connection preface at the start of
//! the stream (h2c "with prior knowledge"; the HTTP/1.1 `Upgrade: h2c` dance is not
//! supported, as curl and most clients skip it). Deciding here rather than with hyper-util's
//! auto builder keeps two things the listeners rely on: the preface is read within the same
//! deadline as a request head, and an HTTP/1.1 connection reaches hyper as the socket it
//! is, so a WebSocket upgrade gets that socket back ([`crate::transport::ws`]).
//!
//! WebSocket stays on HTTP/1.1: extended CONNECT (RFC 8441) is not enabled, so a client
//! never opens a WebSocket on an HTTP/2 connection, and a listener that serves clients
//! only keeps to HTTP/1.1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::parse_errors::{ErrorBodies, MAX_HEAD_BYTES};
use crate::repoll::Repoll;
use crate::tls::TlsStream;

/// The HTTP versions a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 only: the client listener when the API has a listener of its own (its
    /// WebSocket, SSE and long-poll clients gain nothing from HTTP/2).
    Http1,
    /// HTTP/1.1 and HTTP/2: every listener that serves the API.
    Http1And2,
}

impl Protocols {
    /// The ALPN names a TLS listener offers, most preferred first.
    pub fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Self::Http1 => vec![b"http/1.1".to_vec()],
            Self::Http1And2 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// A request as hyper hands it to the service.
pub type IncomingRequest = hyper::Request<hyper::body::Incoming>;

/// How long a client may take to send a request's headers, or the HTTP/2 preface
/// (slowloris protection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle keep-alive connection is still read once the server stops, before it
/// is closed. Closing at once would drop a request already on its way (a backend reusing
/// its pooled connection just then sees the connection reset and cannot tell whether its
/// push was taken); read a moment longer, it is answered (with `Connection: close`). Only
/// idle connections wait it out, and they are the ones that make a stop wait for it.
/// HTTP/2 needs no such wait: its GOAWAY tells the client which requests were taken.
const KEEP_ALIVE_LINGER: Duration = Duration::from_millis(200);

/// Requests (streams) one HTTP/2 connection may have open at once: plenty for a backend
/// pushing in parallel, and a bound on what one connection can ask of the server.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// The largest header list an HTTP/2 request may carry, as HTTP/2 counts it (32 bytes
/// more per header than the header's text). Above the HTTP/1.1 head limit by that
/// overhead, for 128 headers: a head that HTTP/1.1 serves fits, and one between the two
/// limits gets the same JSON 431 as over HTTP/1.1
/// ([`crate::parse_errors::refuse_oversized_heads`]). Past this one, HTTP/2 itself answers
/// 431 without a body.
pub const H2_MAX_HEADER_LIST_BYTES: u32 = (MAX_HEAD_BYTES + 32 * 128) as u32;

/// The HTTP/2 flow-control windows: what a client may send before the server has read it.
/// The connection's window bounds the unread request bodies one connection can make the
/// server hold, whatever its number of streams; a stream may use all of it.
const H2_WINDOW_BYTES: u32 = 1024 * 1024;

/// How often an HTTP/2 connection is pinged, and how long the answer may take: a peer
/// that vanished (no FIN, no RST) is found within the sum, not when the kernel gives up.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// An HTTP/2 connection that starts no request for this long is closed with a GOAWAY, so
/// idle connections do not pile up (HTTP/1.1 closes an idle one after
/// [`HEADER_READ_TIMEOUT`]). Long enough for a backend pushing every few seconds to keep
/// its connection; one that went quiet reconnects on its next push.
pub const H2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP/2 connection preface, the first bytes a client speaking HTTP/2 sends.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often the start of a plain connection is looked at again while it is a part of the
/// HTTP/2 preface and no more: the rest is almost always in the same packet.
const PREFACE_RECHECK: Duration = Duration::from_millis(5);

/// Serve a plain TCP connection: HTTP/2 when it opens with the preface and `protocols`
/// allows it, else HTTP/1.1. A connection that sends neither a byte nor the whole preface
/// within [`HEADER_READ_TIMEOUT`] is closed.
pub async fn serve_plain<R>(
    stream: TcpStream,
    router: R,
    protocols: Protocols,
    shutdown: CancellationToken,
) where
    R: HttpService,
{
    if protocols == Protocols::Http1 {
        return serve_http1(stream, router, shutdown).await;
    }
    match sniff(&stream, &shutdown).await {
        Some(Ok(Ok(true))) => serve_http2(stream, router, shutdown).await,
        Some(Ok(Ok(false))) => serve_http1(stream, router, shutdown).await,
        Some(Ok(Err(error))) => tracing::debug!(%error, "http connection ended before a request"),
        Some(Err(_)) => tracing::debug!("http connection sent no request in time"),
        None => {}
    }
}

/// [`opens_with_preface`] within [`HEADER_READ_TIMEOUT`]; `None` when the server stops
/// and nothing arrives within [`KEEP_ALIVE_LINGER`] (a request on its way as the server
/// stops is still read, as on a kept-alive connection).
async fn sniff(
    stream: &TcpStream,
    shutdown: &CancellationToken,
) -> Option<Result<std::io::Result<bool>, tokio::time::error::Elapsed>> {
    let sniffing = tokio::time::timeout(HEADER_READ_TIMEOUT, opens_with_preface(stream));
    let mut sniffing = std::pin::pin!(sniffing);
    tokio::select! {
        sniffed = sniffing.as_mut() => Some(sniffed),
        _ = shutdown.cancelled() => tokio::time::timeout(KEEP_ALIVE_LINGER, sniffing).await.ok(),
    }
}

/// Serve a TLS connection whose handshake is done: HTTP/2 when ALPN chose `h2` (offered
/// only by listeners that serve it), else HTTP/1.1.
pub async fn serve_tls<R>(stream: TlsStream, router: R, shutdown: CancellationToken)
where
    R: HttpService,
{
    if stream.get_ref().1.alpn_protocol() == Some(&b"h2"[..]) {
        serve_http2(stream, router, shutdown).await
    } else {
        serve_http1(stream, router, shutdown).await
    }
}

/// The service a connection is served with: the listener's router, as a tower service.
pub trait HttpService:
    tower::Service<
        IncomingRequest,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<R> HttpService for R where
    R: tower::Service<
            IncomingRequest,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Whether the stream starts with the HTTP/2 preface, looked at without consuming it. An
/// HTTP/1.1 request line differs from it within its first two bytes.
async fn opens_with_preface(stream: &TcpStream) -> std::io::Result<bool> {
    let mut start = [0; H2_PREFACE.len()];
    loop {
        let seen = stream.peek(&mut start).await?;
        if seen == 0 || start[..seen] != H2_PREFACE[..seen] {
            return Ok(false);
        }
        if seen == H2_PREFACE.len() {
            return Ok(true);
        }
        // The bytes peeked stay readable: wait a moment rather than spin on them.
        tokio::time::sleep(PREFACE_RECHECK).await;
    }
}

/// Serve HTTP/1.1 requests (and upgrades) on one connection until it ends, or, once
/// `shutdown` fires, answer what arrives within [`KEEP_ALIVE_LINGER`], finish the request
/// in flight and stop.
async fn serve_http1<S, R>(stream: S, router: R, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: HttpService,
{
    let stopping = shutdown.clone();
    let router = router.map_response(move |response| last_once_stopping(response, &stopping));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            TokioIo::new(ErrorBodies::new(stream)),
            TowerToHyperService::new(router),
        )
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    // Hyper wakes this task on every request with a body: served here, not by the runtime.
    let result = tokio::select! {
        result = Repoll::new(connection.as_mut()) => result,
        _ = shutdown.cancelled() => {
            match tokio::time::timeout(KEEP_ALIVE_LINGER, Repoll::new(connection.as_mut())).await {
                Ok(result) => result,
                Err(_) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "http connection ended with an error");
    }
}

/// Once the server stops, every HTTP/1.1 answer says `Connection: close` (a WebSocket
/// upgrade's excepted): the client's next request opens a new connection, which the kernel
/// queues for the successor of an upgrade, instead of reusing this one as it closes.
fn last_once_stopping(
    mut response: axum::response::Response,
    shutdown: &CancellationToken,
) -> axum::response::Response {
    if shutdown.is_cancelled() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Serve HTTP/2 streams on one connection until it ends, it stays idle for
/// [`H2_IDLE_TIMEOUT`], or `shutdown` fires. Closing is graceful either way: a GOAWAY
/// tells the client which streams were taken, those finish, and the client sends the rest
/// on a new connection (to the successor, in an upgrade).
///
/// Hyper's own answers here (a malformed request, a header list past
/// [`H2_MAX_HEADER_LIST_BYTES`]) are stream resets and bare statuses: HTTP/2 has no
/// HTTP/1.1 head to rewrite, so the socket is not wrapped in [`ErrorBodies`].
async fn serve_http2<S, R>(stream: S, router: R, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: HttpService,
{
    let opened = Instant::now();
    let last_request = Arc::new(AtomicU64::new(0));
    let router = {
        let last_request = last_request.clone();
        router.map_request(move |request: IncomingRequest| {
            let at = opened.elapsed().as_millis() as u64;
            last_request.store(at, Ordering::Relaxed);
            request
        })
    };
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_BYTES)
        .initial_stream_window_size(H2_WINDOW_BYTES)
        .initial_connection_window_size(H2_WINDOW_BYTES)
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    let result = loop {
        let idle_until =
            opened + Duration::from_millis(last_request.load(Ordering::Relaxed)) + H2_IDLE_TIMEOUT;
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = tokio::time::sleep_until(idle_until) => {
                let last = Duration::from_millis(last_request.load(Ordering::Relaxed));
                if opened + last + H2_IDLE_TIMEOUT <= Instant::now() {
                    connection.as_mut().graceful_shutdown();
                    break connection.await;
                }
            }
            _ = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                break connection.await;
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "http/2 connection ended with an error");
    }
}
