//! A client cannot burn a core: floods of WebSocket frames (an unfinished message followed
//! by empty continuation frames, as fast as a socket takes them), before and after the
//! client has authenticated, on raw TCP, and of SSE / long-poll requests. Each flood is
//! cut off with a reason while the server's CPU stays low and a well-behaved client's push
//! latency stays where it was.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{TestServer, WAIT};

const CONFIG: &str = r#"
[limits]
trusted_proxies = ["127.0.0.1"]

[apps.calm]
auth = "none"

[apps.locked]
auth = "token"
token_secrets = ["locked-app-secret-0123456789abcdefgh"]

[apps.unlimited]
auth = "none"
max_frames_per_second = 0
"#;

/// How long each flood runs while the server's CPU and the good client are watched.
const FLOOD: Duration = Duration::from_secs(4);
/// Most of one core the server may use while flooded. It uses a few percent once floods
/// are cut off; unlimited, a flood alone keeps a core busy.
const MAX_CPU_SHARE: f64 = 0.2;

/// A masked client frame with this first byte (FIN and opcode) and payload.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![first, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Open a WebSocket on `path` by hand, so that frames can be written as fast as the socket
/// takes them. Returns the socket and whatever arrived after the handshake's response.
async fn raw_ws(server: &TestServer, path: &str) -> (TcpStream, Vec<u8>) {
    let mut socket = TcpStream::connect(server.client).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.client
    );
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, socket.read(&mut chunk))
            .await
            .expect("handshake timed out")
            .expect("read");
        assert!(n > 0, "closed during handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (socket, buf[end..].to_vec())
}

/// The close code and reason of the first close frame in the server's frames, if any.
fn close_frame(bytes: &[u8]) -> Option<(u16, String)> {
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let (len, header) = match bytes[at + 1] & 0x7f {
            126 if at + 4 <= bytes.len() => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 if at + 10 <= bytes.len() => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&bytes[at + 2..at + 10]);
                (u64::from_be_bytes(len) as usize, 10)
            }
            126 | 127 => return None,
            len => (len as usize, 2),
        };
        let payload = bytes.get(at + header..at + header + len)?;
        if opcode == 0x8 && payload.len() >= 2 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
        }
        at += header + len;
    }
    None
}

/// What one flooding connection ended with.
#[derive(Debug)]
struct Flooded {
    /// The close code and reason, or `None` when the server never closed it.
    close: Option<(u16, String)>,
    /// Bytes written to the socket before it ended.
    bytes_sent: u64,
}

/// Send `first` on one connection, then `repeat` over and over (nothing more when it is
/// empty), like an attacker that does not care what the server says: until the server
/// drops the socket or `until` passes. Returns the server's close frame, if one came.
async fn flood_one(
    mut socket: TcpStream,
    mut received: Vec<u8>,
    first: Vec<u8>,
    repeat: Vec<u8>,
    until: Instant,
) -> Flooded {
    let batch = repeat.repeat((64 * 1024 / repeat.len().max(1)).max(1));
    let (mut reader, mut writer) = socket.split();
    let mut bytes_sent = 0u64;
    let mut close = None;
    let flood = async {
        if writer.write_all(&first).await.is_err() || batch.is_empty() {
            return;
        }
        while writer.write_all(&batch).await.is_ok() {
            bytes_sent += batch.len() as u64;
        }
    };
    let watch = async {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            close = close_frame(&received);
            if close.is_some() {
                return;
            }
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let deadline = tokio::time::Instant::from_std(until);
    let _ = tokio::time::timeout_at(deadline, async { tokio::join!(flood, watch) }).await;
    Flooded { close, bytes_sent }
}

/// Push-to-receive latencies of a well-behaved native client, one push at a time, every
/// 20 ms until `until`.
async fn latencies(server: &TestServer, user: &str, until: Instant) -> Vec<Duration> {
    let (mut client, _) = server.native("calm", user).await;
    let mut measured = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until || measured.len() < 5 {
        n += 1;
        let sent = Instant::now();
        let (status, body) = server
            .post_json(
                "/v1/push",
                &json!({"app": "calm", "to": user, "event": "tick", "data": n}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        loop {
            let message = client.json().await;
            if message["data"] == n {
                break;
            }
        }
        measured.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    measured
}

fn p50_and_max(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

/// What a flood did: every connection's end, the server's CPU share, the good client's
/// latency before and during.
struct Outcome {
    floods: Vec<Flooded>,
    cpu_share: f64,
    before: (Duration, Duration),
    during: (Duration, Duration),
}

/// Measure a good client's latency, then flood from connections `open` makes (one at a
/// time, reconnecting 50 ms after each is closed, as a client library would) while
/// measuring again and watching the server's CPU. Connections are opened for [`FLOOD`];
/// each has [`WAIT`] to be cut off however late in that it came (one opened just before
/// the end is still owed its close).
async fn flood_while_measuring<F, Fut>(server: &TestServer, open: F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (TcpStream, Vec<u8>, Vec<u8>, Vec<u8>)>,
{
    let before =
        p50_and_max(latencies(server, "good", Instant::now() + Duration::from_millis(500)).await);
    let until = Instant::now() + FLOOD;
    let cpu_start = server.cpu_seconds();
    let started = Instant::now();
    let attack = async {
        let mut floods = Vec::new();
        while Instant::now() < until {
            let (socket, received, first, repeat) = open().await;
            let cut_off_by = Instant::now() + WAIT;
            floods.push(flood_one(socket, received, first, repeat, cut_off_by).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        floods
    };
    let (floods, during) = tokio::join!(attack, latencies(server, "good2", until));
    let cpu_share = (server.cpu_seconds() - cpu_start) / started.elapsed().as_secs_f64();
    Outcome {
        floods,
        cpu_share,
        before,
        during: p50_and_max(during),
    }
}

/// Every flooding connection was closed with 1008 and `reason`, the server stayed cool and
/// the good client's latency did not move.
fn assert_contained(outcome: &Outcome, reason: &str) {
    let Outcome {
        floods,
        cpu_share,
        before,
        during,
    } = outcome;
    let sent: u64 = floods.iter().map(|f| f.bytes_sent).sum();
    eprintln!(
        "{} flooding connections, {sent} bytes written; server CPU {:.1}% of a core; \
         good client p50/max {before:?} before, {during:?} during",
        floods.len(),
        cpu_share * 100.0
    );
    assert!(!floods.is_empty());
    for flooded in floods {
        let (code, text) = flooded
            .close
            .as_ref()
            .unwrap_or_else(|| panic!("a flooding connection was never closed ({flooded:?})"));
        assert_eq!(*code, 1008, "{text}");
        assert!(text.contains(reason), "{text}");
    }
    assert!(
        *cpu_share < MAX_CPU_SHARE,
        "server used {:.0}% of a core under the flood",
        cpu_share * 100.0
    );
    assert!(
        during.0 <= before.0 * 3 + Duration::from_millis(25),
        "p50 latency moved from {:?} to {:?}",
        before.0,
        during.0
    );
    assert!(
        during.1 <= Duration::from_millis(500),
        "max latency {:?}",
        during.1
    );
}

/// An unfinished text message, then empty continuation frames without end.
fn fragments_flood() -> (Vec<u8>, Vec<u8>) {
    (client_frame(0x01, b"{\"type\":"), client_frame(0x00, b""))
}

#[tokio::test]
async fn a_continuation_flood_after_connecting_is_cut_off() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let outcome = flood_while_measuring(&server, || async {
        let (socket, received) = raw_ws(&server, "/v1/ws?app=calm&user=flooder").await;
        let (first, repeat) = fragments_flood();
        (socket, received, first, repeat)
    })
    .await;
    assert_contained(&outcome, "rate limit");
    let (_, stats) = server.get("/v1/stats").await;
    assert!(
        stats["rate_limited_connections"].as_u64() >= Some(1),
        "{stats}"
    );
}

#[tokio::test]
async fn a_continuation_flood_before_init_is_cut_off() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let outcome = flood_while_measuring(&server, || async {
        let (socket, received) = raw_ws(&server, "/").await;
        let (first, repeat) = fragments_flood();
        (socket, received, first, repeat)
    })
    .await;
    assert_contained(&outcome, "rate limit");
}

#[tokio::test]
async fn a_continuation_flood_before_the_auth_frame_is_cut_off() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let outcome = flood_while_measuring(&server, || async {
        let (socket, received) = raw_ws(&server, "/v1/ws?app=locked&user=flooder").await;
        let (first, repeat) = fragments_flood();
        (socket, received, first, repeat)
    })
    .await;
    assert_contained(&outcome, "rate limit");
}

#[tokio::test]
async fn a_ping_flood_is_cut_off_like_any_other_frames() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let (mut socket, _) = raw_ws(&server, "/v1/ws?app=calm&user=pinger").await;
    let pings: Vec<u8> = (0..500).flat_map(|_| client_frame(0x89, b"")).collect();
    socket.write_all(&pings).await.expect("write");
    let flooded = flood_one(
        socket,
        Vec::new(),
        Vec::new(),
        client_frame(0x89, b""),
        Instant::now() + WAIT,
    )
    .await;
    let (code, reason) = flooded.close.expect("closed");
    assert_eq!(code, 1008, "{reason}");
}

#[tokio::test]
async fn a_message_may_not_have_unbounded_fragments_even_without_a_rate_limit() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let ping_in = |fragments: usize| {
        let mut bytes = client_frame(0x01, b"{\"type\":\"ping\"}");
        for _ in 2..fragments {
            bytes.extend(client_frame(0x00, b""));
        }
        bytes.extend(client_frame(0x80, b""));
        bytes
    };
    let (mut socket, mut received) = raw_ws(&server, "/v1/ws?app=unlimited&user=1").await;
    socket.write_all(&ping_in(1024)).await.expect("write");
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("\"pong\"") {
        let n = tokio::time::timeout(WAIT, socket.read(&mut chunk))
            .await
            .expect("no pong")
            .expect("read");
        assert!(n > 0, "closed: {:?}", close_frame(&received));
        received.extend_from_slice(&chunk[..n]);
    }
    socket.write_all(&ping_in(1025)).await.expect("write");
    let flooded = flood_one(
        socket,
        received,
        Vec::new(),
        Vec::new(),
        Instant::now() + WAIT,
    );
    let (code, reason) = flooded.await.close.expect("closed");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("1024 fragments"), "{reason}");
}

/// A raw TCP server (newline framing) with the `calm` app.
fn tcp_server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pushhub.toml");
    std::fs::write(&path, CONFIG).expect("write config");
    let server = TestServer::start_with(
        &["--config", path.to_str().expect("UTF-8 path")],
        &[("PUSHHUB_TCP_LISTEN", "127.0.0.1:0")],
    );
    (server, dir)
}

/// Flood a raw TCP socket with `first` and then empty lines until the server's closing
/// `error` frame arrives; returns it.
async fn tcp_flood(server: &TestServer, first: &[u8]) -> Value {
    let mut socket = TcpStream::connect(server.tcp.expect("tcp listener"))
        .await
        .expect("connect");
    socket.write_all(first).await.expect("write");
    let (mut reader, mut writer) = socket.split();
    let empty_lines = vec![b'\n'; 64 * 1024];
    let flood = async {
        while writer.write_all(&empty_lines).await.is_ok() {}
        std::future::pending::<()>().await
    };
    let closing = async {
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = reader.read(&mut chunk).await.unwrap_or(0);
            received.extend_from_slice(&chunk[..n]);
            let closing = String::from_utf8_lossy(&received)
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|frame| frame["type"] == "error" && frame["close"].is_number());
            if let Some(frame) = closing {
                return frame;
            }
            assert!(n > 0, "closed without an error frame");
        }
    };
    tokio::time::timeout(WAIT, async {
        tokio::select! {
            frame = closing => frame,
            _ = flood => unreachable!(),
        }
    })
    .await
    .expect("the flood was never cut off")
}

#[tokio::test]
async fn raw_tcp_floods_are_cut_off_before_and_after_connect() {
    let (server, _dir) = tcp_server();
    let before = tcp_flood(&server, b"").await;
    assert_eq!(before["code"], "rate_limited", "{before}");
    assert_eq!(before["close"], 1008, "{before}");
    let connect = format!(
        "{}\n",
        json!({"type": "connect", "app": "calm", "user": "flooder"})
    );
    let after = tcp_flood(&server, connect.as_bytes()).await;
    assert_eq!(after["code"], "rate_limited", "{after}");
}

/// GET `path` on the client listener as a client at `address` (through the trusted proxy
/// on 127.0.0.1).
async fn get_as(
    http: &reqwest::Client,
    server: &TestServer,
    address: &str,
    path: &str,
) -> reqwest::Response {
    tokio::time::timeout(
        WAIT,
        http.get(format!("http://{}{path}", server.client))
            .header("x-forwarded-for", address)
            .send(),
    )
    .await
    .expect("request timed out")
    .expect("request failed")
}

#[tokio::test]
async fn hammering_poll_and_sse_gets_429_per_client_address() {
    // One request a second (bursts of two): the refusals below stay refused on a machine
    // slow enough to take 20 ms per request, which the default 50 a second would refill.
    let (server, _dir) = TestServer::with_config(&CONFIG.replace(
        "[limits]\n",
        "[limits]\nmax_requests_per_second_per_ip = 1\n",
    ));
    let http = crate::util::http();
    let poll = "/v1/poll?app=calm&user=hammer&timeout=0";
    let mut refused = None;
    for sent in 1..=2_000 {
        let response = get_as(&http, &server, "10.6.6.6", poll).await;
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
            refused = Some((sent, response.json::<Value>().await.expect("JSON body")));
            break;
        }
        assert_eq!(response.status(), 200);
    }
    let (sent, body) = refused.expect("2,000 polls in a row were never refused");
    eprintln!("refused after {sent} requests: {body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    for path in [
        "/v1/sse?app=calm&user=hammer",
        "/getMsg?app=calm&user=hammer&timeout=0",
    ] {
        let response = get_as(&http, &server, "10.6.6.6", path).await;
        assert_eq!(response.status(), 429, "{path}");
    }
    let other = get_as(&http, &server, "10.1.1.1", poll).await;
    assert_eq!(other.status(), 200, "another address is not limited");
    let (_, stats) = server.get("/v1/stats").await;
    assert!(
        stats["rate_limited_requests"].as_u64() >= Some(1),
        "{stats}"
    );
}

#[tokio::test]
async fn a_normal_long_poll_client_is_never_limited() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let http = crate::util::http();
    let first = get_as(
        &http,
        &server,
        "10.2.2.2",
        "/getMsg?app=calm&user=poller&timeout=0",
    )
    .await;
    assert_eq!(first.status(), 200);
    let mut cursor = first.headers()["x-pushhub-cursor"]
        .to_str()
        .expect("ASCII cursor")
        .to_owned();
    let pushes = 60;
    let pusher = async {
        for n in 0..pushes {
            let (status, _) = server
                .post_json(
                    "/v1/push",
                    &json!({"app": "calm", "to": "poller", "data": n}),
                )
                .await;
            assert_eq!(status, 200);
        }
    };
    let poller = async {
        let mut seen = 0;
        while seen < pushes {
            let path = format!(
                "/getMsg?app=calm&user=poller&timeout=5&cursor={}",
                crate::util::encode(&cursor)
            );
            let response = get_as(&http, &server, "10.2.2.2", &path).await;
            assert_eq!(response.status(), 200, "a re-poll after each message");
            if let Some(next) = response.headers().get("x-pushhub-cursor") {
                cursor = next.to_str().expect("ASCII cursor").to_owned();
            }
            if !response.text().await.expect("body").is_empty() {
                seen += 1;
            }
        }
    };
    tokio::join!(pusher, poller);
}
