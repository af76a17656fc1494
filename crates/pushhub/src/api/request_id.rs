//! A request id on every API call: taken from the caller's `X-Request-Id` when it is a
//! sane token, else made here; returned in the response's `X-Request-Id` and, with debug
//! logging on, carried by a tracing span, so every log line the request causes can be
//! found with it (and a backend can log the same id on its side). The API's middleware
//! ([`super::front`]) uses these pieces.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use tracing::Span;

/// The header, in and out.
pub const HEADER: &str = "x-request-id";

/// Longest incoming id kept; a longer one is replaced, so a caller cannot make every log
/// line of its request arbitrarily long.
pub const MAX_LEN: usize = 128;

/// The request's id: the caller's, when it is [`acceptable`], else a fresh one, which
/// the request then carries in its own header too (for handlers that pass it on).
pub fn take(request: &mut Request) -> HeaderValue {
    if let Some(given) = request
        .headers()
        .get(HEADER)
        .filter(|value| value.to_str().is_ok_and(acceptable))
    {
        return given.clone();
    }
    let value = generate();
    request.headers_mut().insert(HEADER, value.clone());
    value
}

/// The `request` span (`request_id`, method and path; never the query, where some
/// dialects carry passwords), at debug level: made only where this module logs at debug
/// (`pushhub::api::request_id=debug`, or `debug` for more), so a server at the default
/// `info` level neither creates nor formats one per request ([`Span::none`] instead).
pub fn span(id: &HeaderValue, request: &Request) -> Span {
    tracing::debug_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = request.method().as_str(),
        path = request.uri().path(),
    )
}

/// Log the end of a request in its `span` (nothing when the span is off).
pub fn done(span: &Span, status: StatusCode, started: Instant) {
    if span.is_disabled() {
        return;
    }
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "api request done"
        );
    });
}

/// 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 - _ . : /` (UUIDs, ULIDs, hex, trace ids).
fn acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// A fresh id: 128 random bits in hex (unique enough to grep for; not a secret), written
/// straight into the header value.
fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = fastrand::u128(..);
    let mut text = [0u8; 32];
    for (at, digit) in text.iter_mut().enumerate() {
        *digit = HEX[(bits >> (124 - 4 * at) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_tokens_are_kept() {
        assert!(acceptable("3f2a-9b:trace/1.2_x"));
        assert!(acceptable(&"a".repeat(MAX_LEN)));
        for bad in [
            "",
            "has space",
            "new\nline",
            "quote\"",
            "é",
            &"a".repeat(MAX_LEN + 1),
        ] {
            assert!(!acceptable(bad), "{bad:?}");
        }
        assert_eq!(generate().len(), 32);
        assert!(acceptable(generate().to_str().unwrap()));
    }
}
