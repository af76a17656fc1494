//! The headers of a client's upgrade request: `transport::ws::handshake::accept` (is it a
//! WebSocket handshake, and the `101` answer) and `auth::cookie_value` (a session cookie
//! for apps whose auth webhook takes one).
//!
//! Input: 1 byte choosing the method, a cookie name (first line), then one `Name: value`
//! header per line. Checks: no panic; a handshake is accepted only as a GET with
//! `Upgrade: websocket`, `Connection: upgrade`, version 13 and a 24-byte key, and is
//! answered `101` with a 28-character `Sec-WebSocket-Accept`; a cookie written into a
//! `Cookie` header is read back as written.

#![no_main]

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use pushhub::auth::cookie_value;
use pushhub::transport::ws::handshake::{accept, is_upgrade};

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::HEAD, Method::OPTIONS];

fuzz_target!(|data: &[u8]| {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let method = &METHODS[usize::from(method) % METHODS.len()];
    let mut lines = rest.split(|&b| b == b'\n');
    let name = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(key), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(key, value);
    }

    if let Ok(response) = accept(method, &headers) {
        assert_eq!(method, Method::GET);
        assert!(is_upgrade(&headers));
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(headers[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(headers[header::SEC_WEBSOCKET_KEY].len(), 24);
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_ACCEPT].len(), 28);
    }

    for cookies in headers.get_all(header::COOKIE) {
        if let Ok(text) = cookies.to_str() {
            let _ = cookie_value(text, &name);
        }
    }
    // A cookie as a browser writes it reads back as written.
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b";=\"".contains(&b))
    };
    let value: String = name.chars().rev().collect();
    if plain(&name) && plain(&value) {
        let header = format!("other=1; {name}={value}; last=\"x\"");
        let expected = if name == "other" {
            "1".to_owned()
        } else {
            value.clone()
        };
        assert_eq!(cookie_value(&header, &name), Some(expected));
    }
});
