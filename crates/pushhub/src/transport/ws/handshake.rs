//! The HTTP side of a WebSocket connection: checking the upgrade request and answering it.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why an HTTP request could not become a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a GET request.
    #[error("a WebSocket handshake must be a GET request")]
    NotGet,
    /// Missing `Upgrade: websocket` / `Connection: upgrade`.
    #[error(
        "this endpoint only speaks WebSocket: send Upgrade: websocket and Connection: Upgrade"
    )]
    NotUpgrade,
    /// Not protocol version 13.
    #[error("unsupported Sec-WebSocket-Version: only 13 is supported")]
    BadVersion,
    /// Missing or malformed `Sec-WebSocket-Key`.
    #[error("missing or invalid Sec-WebSocket-Key")]
    BadKey,
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// True when the request asks for a WebSocket upgrade at all.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    header_has_token(headers, header::UPGRADE, "websocket")
}

/// Check an upgrade request and build the `101 Switching Protocols` answer.
pub fn accept(method: &Method, headers: &HeaderMap) -> Result<Response, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::NotGet);
    }
    if !is_upgrade(headers) || !header_has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(HandshakeError::BadVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes())
        .filter(|k| k.len() == 24)
        .ok_or(HandshakeError::BadKey)?;
    let accept = tungstenite::handshake::derive_accept_key(key);
    let accept = HeaderValue::from_str(&accept).map_err(|_| HandshakeError::BadKey)?;
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::CONNECTION, HeaderValue::from_static("Upgrade")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn accepts_rfc_example() {
        let h = headers(&[
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        let response = accept(&Method::GET, &h).unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            response.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refuses_what_is_not_a_handshake() {
        let ok = [
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(
            accept(&Method::POST, &headers(&ok)).unwrap_err(),
            HandshakeError::NotGet
        );
        assert_eq!(
            accept(&Method::GET, &headers(&ok[1..])).unwrap_err(),
            HandshakeError::NotUpgrade
        );
        let mut v8 = ok;
        v8[2].1 = "8";
        assert_eq!(
            accept(&Method::GET, &headers(&v8)).unwrap_err(),
            HandshakeError::BadVersion
        );
        assert_eq!(
            accept(&Method::GET, &headers(&ok[..3])).unwrap_err(),
            HandshakeError::BadKey
        );
    }
}
