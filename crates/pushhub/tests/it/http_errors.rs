//! Requests the HTTP layer itself refuses (malformed, headers too large, URI too long)
//! get the same JSON error body as every other error, on both listeners.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{TestServer, WAIT};

/// Send `request` as raw bytes and read the whole answer (the server closes after it).
async fn raw(address: std::net::SocketAddr, request: &[u8]) -> String {
    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    // The server may answer and close before it has read everything; the answer counts.
    let _ = socket.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, socket.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Status and JSON error code of a raw HTTP answer.
fn status_and_code(answer: &str) -> (u16, String) {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head: {answer:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body:?}"));
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{body}");
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn refusals_by_the_http_layer_carry_the_json_error_body() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_LOG", "debug")]);
    let many_headers: Vec<u8> = (0..200)
        .flat_map(|i| format!("x-header-{i}: 1\r\n").into_bytes())
        .collect();
    let cases: [(Vec<u8>, u16, &str); 5] = [
        (
            [
                &b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: "[..],
                &vec![b'a'; 500_000],
                b"\r\n\r\n",
            ]
            .concat(),
            431,
            "headers_too_large",
        ),
        (
            [
                &b"GET /healthz HTTP/1.1\r\nhost: x\r\n"[..],
                &many_headers,
                b"\r\n",
            ]
            .concat(),
            431,
            "headers_too_large",
        ),
        (b"GARBAGE\r\n\r\n".to_vec(), 400, "malformed_request"),
        (
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nbad header: y\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            [
                &b"GET /"[..],
                &vec![b'a'; 70_000],
                b" HTTP/1.1\r\nhost: x\r\n\r\n",
            ]
            .concat(),
            414,
            "uri_too_long",
        ),
    ];
    for address in [server.client, server.api] {
        for (request, status, code) in &cases {
            let answer = raw(address, request).await;
            assert_eq!(
                status_and_code(&answer),
                (*status, (*code).to_owned()),
                "{address}: {answer}"
            );
        }
    }
    // Answers of pushhub's own are untouched, and a WebSocket still leaves hyper as the
    // plain socket it came in on (the direct write path).
    let answer = raw(
        server.api,
        b"GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_code(&answer), (404, "not_found".to_owned()));
    let (mut client, _) = server.native("demo", "1").await;
    assert_eq!(server.push("1", serde_json::json!("hi")).await, 1);
    assert_eq!(client.json().await["data"], "hi");
    assert!(
        !server.log().contains("neither TCP nor TLS"),
        "{}",
        server.log()
    );
}
