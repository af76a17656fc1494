//! Server-Sent Events: a one-way stream over a plain HTTP response, for clients (and
//! proxies) where WebSocket does not get through.
//!
//! Every message is an event whose `id` is the client's cursor after it, so the browser's
//! automatic reconnect sends it back as `Last-Event-ID` and resumes exactly. The payload
//! part of each event is framed once per message and shared by every SSE client; only the
//! short `id:` line is written per client. Heartbeats are SSE comments.
//!
//! An event stream has no close code: when the server ends a stream for a reason (a kick,
//! shutdown, a slow consumer, the credential's expiry), its last event is the dialect's goodbye frame naming the
//! reason and its code, so a client can tell "reconnect" from "stop" as a WebSocket
//! client does from the close frame.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use super::connections::{Connections, Registration};
use super::feed::{Carries, Feed, Next};
use super::{ClientHandler, Framer, Link, Peer};
use crate::disconnect::Disconnect;
use crate::http_error::ApiError;
use crate::hub::Outbox;
use crate::stats::Stats;

/// How long a browser waits before reconnecting, in milliseconds (sent once per stream).
const RETRY_MS: u32 = 1000;

/// SSE `data:` framing (one `data:` line per line of payload, then the blank line that
/// ends the event).
pub struct SseFramer;

/// The one SSE framer.
pub static SSE_FRAMER: SseFramer = SseFramer;

impl Framer for SseFramer {
    fn frame_text(&self, payload: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(payload.len() + 16);
        for line in payload.split(|b| *b == b'\n') {
            out.put_slice(b"data: ");
            out.put_slice(line);
            out.put_u8(b'\n');
        }
        out.put_u8(b'\n');
        out.freeze()
    }

    fn name(&self) -> &'static str {
        "sse"
    }
}

struct Stream<H> {
    handler: H,
    feed: Feed,
    heartbeat: std::time::Duration,
    next_ping: Instant,
    /// When the client's credential expires; the stream ends then.
    expiry: Option<Instant>,
    preamble: Option<Bytes>,
    /// The dialect's last frame, naming why the server ended the stream.
    goodbye: Goodbye,
    /// The stream has said goodbye: the next read ends it.
    ended: bool,
    stats: Arc<Stats>,
    _registration: Registration,
}

/// The last frame of a stream the server ends, in the dialect's words, e.g. the native
/// `{"type":"error","code":"kicked","close":4009,"message":"..."}`.
pub type Goodbye = fn(&Disconnect) -> Vec<u8>;

/// Open `handler`'s client and answer with its event stream, or with an HTTP error if the
/// dialect refuses it. When the server ends the stream (a kick, a slow consumer, an
/// upgrade's 1012, shutdown), its last event is `goodbye`'s frame naming the reason: a
/// stream that merely stops cannot tell a client whether or when to come back.
#[allow(clippy::too_many_arguments)]
pub async fn respond<H>(
    mut handler: H,
    headers: &axum::http::HeaderMap,
    peer: Peer,
    outbox: Arc<Outbox>,
    connections: &Connections,
    stats: Arc<Stats>,
    goodbye: Goodbye,
) -> Response
where
    H: ClientHandler + 'static,
{
    let registration = match connections.register(&outbox, peer.ip()) {
        Ok(registration) => registration,
        Err(reason) => return ApiError::from(&reason).into_response(),
    };
    let link = Link::new(outbox.clone(), &SSE_FRAMER, peer).with_request_headers(headers);
    if let Err(reason) = handler.on_open(&link).await {
        handler.on_close(&reason).await;
        return ApiError::from(&reason).into_response();
    }
    let Some(start) = link.stream_start() else {
        handler.on_close(&Disconnect::BAD_REQUEST).await;
        return ApiError::from(&Disconnect::BAD_REQUEST.with_reason("the client was not attached"))
            .into_response();
    };
    let liveness = handler.liveness();
    let heartbeat = liveness.heartbeat;
    let preamble = Bytes::from(format!("retry: {RETRY_MS}\nid: {}\n\n", start.cursor));
    let stream = Stream {
        feed: Feed::new(outbox, start.cursor),
        handler,
        heartbeat,
        next_ping: Instant::now() + heartbeat,
        expiry: liveness.credential_expiry,
        preamble: Some(preamble),
        goodbye,
        ended: false,
        stats,
        _registration: registration,
    };
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next_chunk().await?;
        stream.stats.bytes_out(chunk.len());
        Some((Ok::<_, std::convert::Infallible>(chunk), stream))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

impl<H: ClientHandler> Stream<H> {
    /// The next bytes of the response; `None` ends it.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if let Some(preamble) = self.preamble.take() {
            return Some(preamble);
        }
        if self.ended {
            return None;
        }
        let deadline = self
            .expiry
            .map_or(self.next_ping, |e| e.min(self.next_ping));
        match self.feed.next(deadline).await {
            Next::Frame {
                bytes,
                carries: Carries::Stream,
            } => {
                let id = format!("id: {}\n", self.feed.cursor());
                let mut chunk = BytesMut::with_capacity(id.len() + bytes.len());
                chunk.put_slice(id.as_bytes());
                chunk.put_slice(&bytes);
                Some(chunk.freeze())
            }
            Next::Frame {
                bytes,
                carries: Carries::Live | Carries::Control,
            } => Some(bytes),
            Next::Timeout if self.expiry.is_some_and(|e| Instant::now() >= e) => {
                self.handler.on_close(&Disconnect::TOKEN_EXPIRED).await;
                self.ended = true;
                Some(SSE_FRAMER.frame_text(&(self.goodbye)(&Disconnect::TOKEN_EXPIRED)))
            }
            Next::Timeout => {
                self.next_ping = Instant::now() + self.heartbeat;
                Some(Bytes::from_static(b": ping\n\n"))
            }
            Next::Closed(reason) => {
                super::record_end(&self.stats, &reason);
                self.handler.on_close(&reason).await;
                self.ended = true;
                Some(SSE_FRAMER.frame_text(&(self.goodbye)(&reason)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_line_is_a_data_line() {
        assert_eq!(
            &SSE_FRAMER.frame_text(b"{\"a\":1}")[..],
            b"data: {\"a\":1}\n\n"
        );
        assert_eq!(
            &SSE_FRAMER.frame_text(b"two\nlines")[..],
            b"data: two\ndata: lines\n\n"
        );
    }
}
