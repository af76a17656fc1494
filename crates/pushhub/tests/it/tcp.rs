//! Raw TCP: native frames on a plain socket, newline-delimited or length-prefixed.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{TestServer, WAIT};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Lines,
    Length,
}

const BOTH: [Framing; 2] = [Framing::Lines, Framing::Length];

/// A server with raw TCP on, in `framing`, and extra variables.
fn server(framing: Framing, env: &[(&str, &str)]) -> TestServer {
    let mut vars = vec![("PUSHHUB_TCP_LISTEN", "127.0.0.1:0")];
    if framing == Framing::Length {
        vars.push(("PUSHHUB_TCP_FRAMING", "length"));
    }
    vars.extend_from_slice(env);
    let server = TestServer::start_with(&[], &vars);
    assert!(server.tcp.is_some(), "no tcp= in the listening line");
    server
}

fn frame(framing: Framing, text: &str) -> Vec<u8> {
    frame_bytes(framing, text.as_bytes())
}

fn frame_bytes(framing: Framing, payload: &[u8]) -> Vec<u8> {
    let mut out = match framing {
        Framing::Lines => Vec::new(),
        Framing::Length => (payload.len() as u32).to_be_bytes().to_vec(),
    };
    out.extend_from_slice(payload);
    if framing == Framing::Lines {
        out.push(b'\n');
    }
    out
}

fn connect_frame(user: &str) -> String {
    json!({"type": "connect", "app": "demo", "user": user}).to_string()
}

/// A raw TCP client.
struct Tcp {
    stream: TcpStream,
    framing: Framing,
    buf: Vec<u8>,
}

impl Tcp {
    async fn open(server: &TestServer, framing: Framing) -> Self {
        let addr = server.tcp.expect("tcp listener");
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Self {
            stream,
            framing,
            buf: Vec::new(),
        }
    }

    /// Connected as `user` of `demo`, after the welcome.
    async fn hello(server: &TestServer, framing: Framing, user: &str) -> (Self, Value) {
        let mut client = Self::open(server, framing).await;
        client.send(&connect_frame(user)).await;
        let welcome = client.json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (client, welcome)
    }

    async fn send(&mut self, text: &str) {
        let bytes = frame(self.framing, text);
        self.raw(&bytes).await;
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next frame's text; `None` when the server closed the connection.
    async fn next_text(&mut self) -> Option<String> {
        loop {
            let complete = match self.framing {
                Framing::Lines => self
                    .buf
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|at| (0, at, at + 1)),
                Framing::Length if self.buf.len() >= 4 => {
                    let len =
                        u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                            as usize;
                    (self.buf.len() >= 4 + len).then_some((4, 4 + len, 4 + len))
                }
                Framing::Length => None,
            };
            if let Some((start, end, consumed)) = complete {
                let text =
                    String::from_utf8(self.buf[start..end].to_vec()).expect("server sent UTF-8");
                self.buf.drain(..consumed);
                return Some(text);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("nothing from the server within the wait");
            match read {
                Ok(0) | Err(_) => {
                    assert!(
                        self.buf.is_empty(),
                        "partial frame at close: {:?}",
                        self.buf
                    );
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame as JSON, which must exist.
    async fn next(&mut self) -> Option<Value> {
        let text = self.next_text().await?;
        Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
    }

    /// The next frame that is not a heartbeat ping.
    async fn json(&mut self) -> Value {
        loop {
            let value = self.next().await.expect("connection closed");
            if value["type"] != "ping" {
                return value;
            }
        }
    }

    /// The close code of the closing error frame, after any number of heartbeats and
    /// non-closing error frames; then the end of the stream.
    async fn closed_after_errors(&mut self) -> u64 {
        loop {
            let frame = self.json().await;
            assert_eq!(frame["type"], "error", "{frame}");
            if let Some(close) = frame["close"].as_u64() {
                assert_eq!(
                    self.next().await,
                    None,
                    "the connection must end after {frame}"
                );
                return close;
            }
        }
    }

    /// The closing error frame (after any heartbeats), then the end of the stream; returns
    /// the frame's `code`, `close` and `message`.
    async fn closed(&mut self) -> (String, u64, String) {
        let last = self.json().await;
        assert_eq!(last["type"], "error", "{last}");
        let close = last["close"]
            .as_u64()
            .unwrap_or_else(|| panic!("no close code: {last}"));
        assert_eq!(
            self.next().await,
            None,
            "the connection must end after {last}"
        );
        (
            last["code"].as_str().unwrap_or_default().to_owned(),
            close,
            last["message"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

#[tokio::test]
async fn connect_welcome_push_and_ping_in_both_framings() {
    for framing in BOTH {
        let server = server(framing, &[]);
        let (mut tcp, welcome) = Tcp::hello(&server, framing, "100").await;
        assert_eq!(welcome["app"], "demo");
        assert_eq!(welcome["user"], "100");
        assert_eq!(welcome["heartbeat"], 25);
        assert_eq!(welcome["channels"][0]["ch"], "demo:user:100");
        // A WebSocket client of the same user gets the same push in its own framing.
        let (mut ws, _) = server.native("demo", "100").await;
        assert_eq!(server.push("100", json!({"order": 10})).await, 2);
        let msg = tcp.json().await;
        assert_eq!(msg["type"], "msg");
        assert_eq!(msg["ch"], "demo:user:100");
        assert_eq!(msg["data"], json!({"order": 10}));
        assert_eq!(ws.json().await, msg);
        tcp.send(r#"{"type":"ping","id":7}"#).await;
        assert_eq!(tcp.json().await, json!({"type": "pong", "id": 7}));
        // Data pushed pretty-printed keeps its newlines, which must not split the frame.
        let (status, _) = server
            .post_raw(
                "/v1/push",
                "application/json",
                "{\"app\":\"demo\",\"to\":\"100\",\"data\":{\n  \"text\": \"a\\nb\",\n  \"n\": [1,\n 2]\n}}",
            )
            .await;
        assert_eq!(status, 200);
        let msg = tcp.json().await;
        assert_eq!(
            msg["data"],
            json!({"text": "a\nb", "n": [1, 2]}),
            "{framing:?}"
        );
        drop(tcp);
        drop(ws);
        server.wait_connections(0).await;
    }
}

#[tokio::test]
async fn frames_split_into_tiny_writes_and_joined_in_one_write() {
    for framing in BOTH {
        let server = server(framing, &[]);
        let mut tcp = Tcp::open(&server, framing).await;
        let mut bytes = frame(framing, &connect_frame("split"));
        bytes.extend(frame(framing, r#"{"type":"ping","id":1}"#));
        for byte in bytes {
            tcp.raw(&[byte]).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(tcp.json().await["type"], "welcome");
        assert_eq!(tcp.json().await, json!({"type": "pong", "id": 1}));

        let mut joined = Tcp::open(&server, framing).await;
        let mut bytes = frame(framing, &connect_frame("joined"));
        for id in 1..=3 {
            bytes.extend(frame(
                framing,
                &json!({"type": "ping", "id": id}).to_string(),
            ));
        }
        // An empty frame is a keepalive and gets no answer.
        bytes.extend(frame(framing, ""));
        joined.raw(&bytes).await;
        assert_eq!(joined.json().await["type"], "welcome");
        for id in 1..=3 {
            assert_eq!(joined.json().await, json!({"type": "pong", "id": id}));
        }
        assert_eq!(server.push("joined", json!("after")).await, 1);
        assert_eq!(joined.json().await["data"], "after", "{framing:?}");
    }
}

#[tokio::test]
async fn lines_accept_crlf() {
    let server = server(Framing::Lines, &[]);
    let mut tcp = Tcp::open(&server, Framing::Lines).await;
    tcp.raw(format!("{}\r\n{{\"type\":\"ping\"}}\r\n", connect_frame("crlf")).as_bytes())
        .await;
    assert_eq!(tcp.json().await["type"], "welcome");
    assert_eq!(tcp.json().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn resume_with_since_gets_what_was_missed() {
    for framing in BOTH {
        let server = server(framing, &[]);
        let (mut tcp, _) = Tcp::hello(&server, framing, "r").await;
        server.push("r", json!(1)).await;
        let first = tcp.json().await;
        let cursor = format!(
            "demo:user:r@{}:{}",
            first["epoch"].as_str().unwrap(),
            first["off"]
        );
        drop(tcp);
        server.wait_connections(0).await;
        server.push("r", json!(2)).await;
        server.push("r", json!(3)).await;

        let mut back = Tcp::open(&server, framing).await;
        back.send(
            &json!({"type": "connect", "app": "demo", "user": "r", "since": cursor}).to_string(),
        )
        .await;
        let welcome = back.json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["recovered"], true);
        for expected in [2, 3] {
            let msg = back.json().await;
            assert_eq!(
                (msg["data"].clone(), msg["off"].clone()),
                (json!(expected), json!(expected))
            );
        }
        server.push("r", json!(4)).await;
        assert_eq!(back.json().await["data"], 4);

        let mut bad = Tcp::open(&server, framing).await;
        bad.send(r#"{"type":"connect","app":"demo","user":"r","since":"nonsense"}"#)
            .await;
        let (code, close, message) = bad.closed().await;
        assert_eq!((code.as_str(), close), ("bad_request", 4500));
        assert!(message.contains("cursor"), "{message}");
    }
}

#[tokio::test]
async fn oversize_length_prefix_is_refused_at_once() {
    let server = server(Framing::Length, &[]);
    // Before and after connect; the payload the prefix announces is never sent, so an
    // answer proves the server did not wait to buffer it.
    let mut early = Tcp::open(&server, Framing::Length).await;
    early.raw(&[0x7f, 0xff, 0xff, 0xff]).await;
    let (code, close, message) = early.closed().await;
    assert_eq!((code.as_str(), close), ("too_big", 1009));
    assert!(message.contains("2147483647"), "{message}");

    let (mut late, _) = Tcp::hello(&server, Framing::Length, "big").await;
    late.raw(&[0x00, 0x01, 0x00, 0x01]).await;
    let (code, close, message) = late.closed().await;
    assert_eq!((code.as_str(), close), ("too_big", 1009));
    assert!(message.contains("limit is 65536"), "{message}");
    let (mut fine, _) = Tcp::hello(&server, Framing::Length, "fine").await;
    fine.send(r#"{"type":"ping"}"#).await;
    assert_eq!(fine.json().await["type"], "pong");
}

#[tokio::test]
async fn over_long_line_is_refused_without_its_newline() {
    let server = server(
        Framing::Lines,
        &[("PUSHHUB_LIMITS_MAX_FRAME_BYTES", "1000")],
    );
    let (mut tcp, welcome) = Tcp::hello(&server, Framing::Lines, "long").await;
    assert_eq!(welcome["max_frame_bytes"], 1000);
    let line = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(900));
    tcp.send(&line).await;
    assert_eq!(tcp.json().await["type"], "pong");
    tcp.raw("x".repeat(1500).as_bytes()).await;
    let (code, close, message) = tcp.closed().await;
    assert_eq!((code.as_str(), close), ("too_big", 1009));
    assert!(message.contains("line too long"), "{message}");
}

#[tokio::test]
async fn garbage_gets_error_frames_or_a_close() {
    for framing in BOTH {
        let server = server(framing, &[]);
        // After connect, frames the dialect cannot use are answered and the link stays.
        let (mut tcp, _) = Tcp::hello(&server, framing, "g").await;
        tcp.send("not json").await;
        assert_eq!(tcp.json().await["code"], "bad_json");
        tcp.send(r#"{"type":"teleport","id":"x"}"#).await;
        let error = tcp.json().await;
        assert_eq!(
            (error["code"].as_str(), error["id"].as_str()),
            (Some("unknown_type"), Some("x"))
        );
        tcp.send(&connect_frame("other")).await;
        assert_eq!(tcp.json().await["code"], "already_connected");
        tcp.send(r#"{"type":"pong"}"#).await;
        tcp.send(r#"{"type":"ping"}"#).await;
        assert_eq!(
            tcp.json().await,
            json!({"type": "pong"}),
            "a pong gets no answer"
        );
        // Bytes that are not UTF-8 close the connection.
        tcp.raw(&frame_bytes(
            framing,
            b"{\"type\":\"ping\",\"x\":\"\xff\xfe\"}",
        ))
        .await;
        let (code, close, _) = tcp.closed().await;
        assert_eq!((code.as_str(), close), ("invalid_utf8", 1007));

        // Before connect, anything but a valid connect frame closes.
        let refusals: [(&str, &str, u64, &str); 5] = [
            ("hello", "expected_handshake", 4502, "connect"),
            (r#"{"type":"ping"}"#, "expected_handshake", 4502, "connect"),
            (
                r#"{"type":"connect","app":"demo"}"#,
                "bad_request",
                4500,
                "user",
            ),
            (
                r#"{"type":"connect","app":"a b","user":"1"}"#,
                "bad_request",
                4500,
                "app name",
            ),
            (
                r#"{"type":"connect","app":"demo","user":"a,b"}"#,
                "bad_request",
                4500,
                "user id",
            ),
        ];
        for (first, want_code, want_close, hint) in refusals {
            let mut client = Tcp::open(&server, framing).await;
            client.send(first).await;
            let (code, close, message) = client.closed().await;
            assert_eq!(
                (code.as_str(), close),
                (want_code, want_close),
                "{first}: {message}"
            );
            assert!(message.contains(hint), "{first}: {message}");
        }

        // Binary noise: whatever the server makes of it, it answers in well-formed frames,
        // ends with a closing error frame, and keeps serving everyone else.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..8 {
            let noise: Vec<u8> = (0..2048)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            let mut client = Tcp::open(&server, framing).await;
            if round % 2 == 1 {
                client.send(&connect_frame("noisy")).await;
                assert_eq!(client.json().await["type"], "welcome");
            }
            client.raw(&noise).await;
            let close = client.closed_after_errors().await;
            assert!(
                [1007, 1009, 4502].contains(&close),
                "round {round}: {close}"
            );
        }
        let (mut witness, _) = Tcp::hello(&server, framing, "witness").await;
        assert_eq!(server.push("witness", json!("fine")).await, 1);
        assert_eq!(witness.json().await["data"], "fine");
        assert!(!server.log().contains("panicked"));
    }
}

#[tokio::test]
async fn no_connect_frame_within_the_handshake_timeout_closes() {
    let server = server(
        Framing::Lines,
        &[
            ("PUSHHUB_LIMITS_HANDSHAKE_TIMEOUT", "1"),
            ("PUSHHUB_HEARTBEAT", "1"),
            ("PUSHHUB_IDLE_TIMEOUT", "30"),
        ],
    );
    let mut tcp = Tcp::open(&server, Framing::Lines).await;
    let started = std::time::Instant::now();
    // Lively but anonymous: keepalives do not stand in for the connect frame.
    tcp.raw(b"\n").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    tcp.raw(b"\n").await;
    let (code, close, message) = tcp.closed().await;
    assert_eq!(
        (code.as_str(), close),
        ("handshake_timeout", 4004),
        "{message}"
    );
    assert!(message.contains("connect"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn heartbeat_pings_and_idle_timeout() {
    let server = server(
        Framing::Length,
        &[("PUSHHUB_HEARTBEAT", "1"), ("PUSHHUB_IDLE_TIMEOUT", "3")],
    );
    let (mut lively, welcome) = Tcp::hello(&server, Framing::Length, "lively").await;
    assert_eq!(
        (
            welcome["heartbeat"].as_u64(),
            welcome["idle_timeout"].as_u64()
        ),
        (Some(1), Some(3))
    );
    let (mut silent, _) = Tcp::hello(&server, Framing::Length, "silent").await;
    let started = std::time::Instant::now();
    let silent_task = tokio::spawn(async move {
        // Reads (and so sees the pings) but never writes a byte.
        let mut pings = 0;
        loop {
            match silent.next().await {
                Some(frame) if frame["type"] == "ping" => pings += 1,
                Some(frame) => {
                    assert_eq!(silent.next().await, None, "{frame}");
                    return (pings, frame, started.elapsed());
                }
                None => panic!("closed without an error frame"),
            }
        }
    });
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(4500) {
        let frame = lively.next().await.expect("lively client was closed");
        assert_eq!(frame, json!({"type": "ping"}));
        pings += 1;
        lively.send(r#"{"type":"pong"}"#).await;
    }
    assert!(pings >= 3, "pings: {pings}");
    assert_eq!(server.push("lively", json!("alive")).await, 1);
    assert_eq!(lively.json().await["data"], "alive");

    let (silent_pings, last, after) = silent_task.await.unwrap();
    assert!(silent_pings >= 2, "pings: {silent_pings}");
    assert_eq!(
        (last["code"].as_str(), last["close"].as_u64()),
        (Some("idle_timeout"), Some(4000)),
        "{last}"
    );
    assert!(
        after >= Duration::from_millis(2900) && after < Duration::from_secs(5),
        "{after:?}"
    );
}

#[tokio::test]
async fn connection_limit_counts_tcp_and_websocket_together() {
    let server = server(Framing::Lines, &[("PUSHHUB_LIMITS_MAX_CONNECTIONS", "1")]);
    let (_held, _) = Tcp::hello(&server, Framing::Lines, "first").await;
    let mut ws = server.ws("/v1/ws?app=demo&user=2").await;
    assert_eq!(ws.closed().await.0, 4002);
    let mut refused = Tcp::open(&server, Framing::Lines).await;
    let (code, close, _) = refused.closed().await;
    assert_eq!((code.as_str(), close), ("server_full", 4002));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_tcp_clients_with_1001_and_exits_zero() {
    let mut server = server(Framing::Lines, &[]);
    let (mut tcp, _) = Tcp::hello(&server, Framing::Lines, "bye").await;
    server.wait_connections(1).await;
    // Read concurrently, so the client closes its side as soon as the server is done.
    let reader = tokio::spawn(async move { tcp.closed().await });
    let started = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let (code, close, message) = reader.await.unwrap();
    assert_eq!((code.as_str(), close), ("shutdown", 1001));
    assert!(message.contains("shutting down"), "{message}");
}

#[tokio::test]
async fn a_token_app_takes_its_user_from_the_connect_frame_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    let secret = "tcp-token-secret-0123456789abcdefgh";
    std::fs::write(&path, format!("tcp_listen = \"127.0.0.1:0\"\n[apps.secure]\nauth = \"token\"\ntoken_secrets = [\"{secret}\"]\n")).unwrap();
    let server = TestServer::start_with(&["--config", path.to_str().unwrap()], &[]);
    let token = pushhub::auth::token::mint(secret, "secure", "device-9", &[], 600).unwrap();
    let mut tcp = Tcp::open(&server, Framing::Lines).await;
    tcp.send(&json!({"type": "connect", "app": "secure", "token": token}).to_string())
        .await;
    let welcome: Value = serde_json::from_str(&tcp.next_text().await.unwrap()).unwrap();
    assert_eq!(
        (welcome["type"].as_str(), welcome["user"].as_str()),
        (Some("welcome"), Some("device-9"))
    );

    let mut refused = Tcp::open(&server, Framing::Lines).await;
    refused
        .send(&json!({"type": "connect", "app": "secure", "user": "x"}).to_string())
        .await;
    let error: Value = serde_json::from_str(&refused.next_text().await.unwrap()).unwrap();
    assert_eq!(
        (error["code"].as_str(), error["close"].as_u64()),
        (Some("missing_token"), Some(4510))
    );
}
