//! The JSON error body on the answers hyper writes by itself.
//!
//! A request hyper cannot parse (a malformed request line or header, more headers or a
//! longer head than it accepts, an over-long URI) never reaches a handler: hyper answers
//! 400, 431 or 414 with an empty body and closes the connection. Every other error carries
//! `{"error":{"code","message"}}` ([`crate::http_error`]), and clients rely on it, so the
//! socket under hyper is wrapped in [`ErrorBodies`], which recognizes those automatic
//! answers on their way out and sends them with the body.
//!
//! Hyper enforces its head limit only while a head is still arriving: a head larger than
//! the limit that comes in one read is parsed and served. [`refuse_oversized_heads`] holds
//! the limit however the bytes arrive, with the same answer.
//!
//! Recognizing is exact: hyper's automatic answer is a bare head with `content-length: 0`
//! and status 400, 414 or 431, written on its own; pushhub's own answers with those
//! statuses always carry a JSON body, so they never look like one.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http_error::ApiError;

/// The largest request head served: hyper's read buffer limit (8 KiB + 100 × 4 KiB), which
/// it enforces by itself only on heads that arrive over several reads.
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// The most headers a request may carry: hyper's HTTP/1.1 limit, held for HTTP/2 requests
/// (which hyper does not count) by [`refuse_oversized_heads`].
pub const MAX_HEADERS: usize = 100;

/// A socket served by hyper, giving hyper's own error answers a JSON body.
#[derive(Debug)]
pub struct ErrorBodies<S> {
    inner: S,
    /// An answer being written in place of hyper's; hyper believes it is already sent.
    pending: Option<Bytes>,
}

impl<S> ErrorBodies<S> {
    /// Wrap the socket hyper will serve.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
        }
    }

    /// The socket itself, for a connection that leaves hyper (a WebSocket upgrade).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The code and message of a 431: too many headers or too large a head.
const HEADERS_TOO_LARGE: (&str, &str) = (
    "headers_too_large",
    "the request head is too large: at most 100 headers and about 400 KiB",
);

/// The status codes hyper answers by itself, with the code and message of their body.
fn error_of(status: &[u8]) -> Option<(&'static str, &'static str)> {
    Some(match status {
        b"400" => (
            "malformed_request",
            "the request is not valid HTTP/1.1 (request line or a header could not be parsed)",
        ),
        b"414" => (
            "uri_too_long",
            "the request URI is longer than 65,534 bytes",
        ),
        b"431" => HEADERS_TOO_LARGE,
        _ => return None,
    })
}

/// Refuse a request whose head is larger than [`MAX_HEAD_BYTES`] or has more than
/// [`MAX_HEADERS`] headers, as hyper does when it sees one arrive in parts over HTTP/1.1:
/// 431 with the JSON body, and the connection closed after it (over HTTP/2, only the
/// stream ends).
pub async fn refuse_oversized_heads(request: Request, next: Next) -> Response {
    match oversized_head(&request) {
        Some(answer) => answer,
        None => next.run(request).await,
    }
}

/// The 431 answer [`refuse_oversized_heads`] gives `request`, if its head is too large:
/// for a middleware that does this check among others.
pub fn oversized_head(request: &Request) -> Option<Response> {
    let head_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len())
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head_bytes <= MAX_HEAD_BYTES && request.headers().len() <= MAX_HEADERS {
        return None;
    }
    let (code, message) = HEADERS_TOO_LARGE;
    let mut answer =
        ApiError::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, code, message).into_response();
    answer
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(answer)
}

/// The answer to send instead of `head`, when `head` is one of hyper's automatic ones.
fn with_body(head: &[u8]) -> Option<Bytes> {
    const EMPTY: &[u8] = b"\r\ncontent-length: 0\r\n";
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let (code, message) = error_of(status)?;
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let at = head.windows(EMPTY.len()).position(|w| w == EMPTY)?;
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut answer = Vec::with_capacity(head.len() + body.len() + 48);
    answer.extend_from_slice(&head[..at]);
    answer.extend_from_slice(b"\r\ncontent-type: application/json");
    answer.extend_from_slice(format!("\r\ncontent-length: {}\r\n", body.len()).as_bytes());
    answer.extend_from_slice(&head[at + EMPTY.len()..]);
    answer.extend_from_slice(body.as_bytes());
    Some(answer.into())
}

impl<S: AsyncWrite + Unpin> ErrorBodies<S> {
    /// Write what is left of a replaced answer before anything else.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(pending) = &mut self.pending {
            if pending.is_empty() {
                self.pending = None;
                break;
            }
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            pending.advance(written);
        }
        Poll::Ready(Ok(()))
    }

    /// Take `head` as written and send the answer with a body in its place.
    fn replace(
        &mut self,
        cx: &mut Context<'_>,
        head_len: usize,
        answer: Bytes,
    ) -> Poll<io::Result<usize>> {
        self.pending = Some(answer);
        // What cannot be written now is written on hyper's next write, flush or shutdown.
        if let Poll::Ready(Err(error)) = self.poll_pending(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(head_len))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ErrorBodies<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        match with_body(buf) {
            Some(answer) => this.replace(cx, buf.len(), answer),
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let mut written = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (written.next(), written.next()) {
            if let Some(answer) = with_body(only) {
                return this.replace(cx, only.len(), answer);
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 00:40:14 GMT\r\n\r\n";

    #[test]
    fn hypers_automatic_answers_get_a_json_body() {
        let answer = with_body(HYPER_431).expect("recognized");
        let text = std::str::from_utf8(&answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "headers_too_large");
    }

    #[test]
    fn other_writes_pass_untouched() {
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 76\r\n\r\n";
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let partial = &HYPER_431[..40];
        for write in [&ours[..], ok, partial, b"data: x\n\n"] {
            assert!(
                with_body(write).is_none(),
                "{}",
                String::from_utf8_lossy(write)
            );
        }
    }

    #[tokio::test]
    async fn a_replaced_answer_reaches_the_peer_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(16);
        let mut wrapped = ErrorBodies::new(near);
        let writer = tokio::spawn(async move {
            wrapped.write_all(HYPER_431).await.unwrap();
            wrapped.shutdown().await.unwrap();
        });
        let mut seen = Vec::new();
        far.read_to_end(&mut seen).await.unwrap();
        writer.await.unwrap();
        assert_eq!(seen, with_body(HYPER_431).unwrap());
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_refused_however_it_arrived() {
        use tower::ServiceExt;
        let router = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(refuse_oversized_heads));
        let request = |value_bytes: usize| {
            axum::http::Request::get("/healthz")
                .header("x-big", "a".repeat(value_bytes))
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let served = router.clone().oneshot(request(400_000)).await.unwrap();
        assert_eq!(served.status(), StatusCode::OK);
        // HTTP/2 requests reach it with any number of headers; HTTP/1.1 ones with 100 at most.
        let many = |count: usize| {
            let mut request = request(0);
            for i in 0..count {
                let name = header::HeaderName::try_from(format!("x-h-{i}")).unwrap();
                request
                    .headers_mut()
                    .insert(name, HeaderValue::from_static("1"));
            }
            request
        };
        let served = router.clone().oneshot(many(MAX_HEADERS - 1)).await.unwrap();
        assert_eq!(served.status(), StatusCode::OK);
        for refused in [request(MAX_HEAD_BYTES), many(MAX_HEADERS)] {
            let refused = router.clone().oneshot(refused).await.unwrap();
            assert_eq!(
                refused.status(),
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            );
            assert_eq!(refused.headers()[header::CONNECTION], "close");
            let body = axum::body::to_bytes(refused.into_body(), 4096)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], "headers_too_large");
        }
    }
}
