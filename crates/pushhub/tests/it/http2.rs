//! HTTP/2 on the listeners that serve the API, with real HTTP/2 clients: cleartext with
//! prior knowledge (hyper's client on one socket, reqwest, curl), many pushes at once on
//! one connection, batches, errors and the head limits over HTTP/2, HTTP/1.1 keep-alive
//! and WebSocket beside it on the same port, a stop that lets a stream in flight finish,
//! and pushes that go on through an upgrade. HTTP/2 over TLS (ALPN) is in `tls.rs`, with
//! its certificates.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::util::{TestServer, WAIT};

/// An HTTP/2 client connection (prior knowledge) on one socket: every request sent on it
/// shares that socket.
async fn h2_connection(addr: SocketAddr) -> SendRequest<Body> {
    let socket = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(socket))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    sender
}

/// A JSON POST to `path` on the connection: status, version and the body as JSON.
async fn post(sender: &mut SendRequest<Body>, path: &str, body: &Value) -> (u16, Version, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    send(sender, request).await
}

async fn send(sender: &mut SendRequest<Body>, request: Request<Body>) -> (u16, Version, Value) {
    let response = tokio::time::timeout(WAIT, async {
        sender.ready().await.expect("connection ready");
        sender.send_request(request).await
    })
    .await
    .expect("answer timed out")
    .expect("request failed");
    let (status, version) = (response.status().as_u16(), response.version());
    let body = axum::body::to_bytes(Body::new(response.into_body()), 1 << 20)
        .await
        .expect("body");
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, version, value)
}

/// A reqwest client that speaks HTTP/2 from the first byte.
fn h2c() -> reqwest::Client {
    pushhub::outbound::builder()
        .expect("client settings")
        .http2_prior_knowledge()
        .build()
        .expect("client")
}

/// A reqwest client that speaks HTTP/1.1 only, with at most one idle connection.
fn http1() -> reqwest::Client {
    pushhub::outbound::builder()
        .expect("client settings")
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client")
}

/// More pushes than the streams a connection may have open at once, all sent at once on
/// one socket: each is answered, over HTTP/2, and each reaches the connected user once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_pushes_on_one_connection_all_reach_the_client() {
    const PUSHES: u64 = 300;
    let server = TestServer::start();
    let (mut client, _) = server.native("demo", "h2").await;
    let sender = h2_connection(server.api).await;
    let pushes = (0..PUSHES).map(|n| {
        let mut sender = sender.clone();
        tokio::spawn(async move {
            let push = json!({"app": "demo", "to": "h2", "event": "e", "data": {"n": n}});
            post(&mut sender, "/v1/push", &push).await
        })
    });
    for answer in futures_util::future::join_all(pushes).await {
        let (status, version, body) = answer.expect("push task");
        assert_eq!(status, 200, "{body}");
        assert_eq!(version, Version::HTTP_2);
        assert_eq!(body["delivered"], 1, "{body}");
    }
    let mut seen = BTreeSet::new();
    while seen.len() < PUSHES as usize {
        let frame = client.json().await;
        assert_eq!(frame["type"], "msg", "{frame}");
        let n = frame["data"]["n"].as_u64().expect("n");
        assert!(seen.insert(n), "push {n} arrived twice");
    }
    assert_eq!(seen, (0..PUSHES).collect());
}

/// reqwest with prior knowledge: a batch, a bad body's JSON error and the head limits'
/// JSON 431s over HTTP/2; then HTTP/1.1 keep-alive on the same port, one connection for
/// several requests.
#[tokio::test]
async fn batches_errors_and_limits_over_http2_and_http1_beside_it() {
    let server = TestServer::start();
    let (mut alice, _) = server.native("demo", "alice").await;
    let http2 = h2c();
    let url = server.api_url("/v1/batch");
    let batch = json!({"app": "demo", "pushes": [
        {"to": "alice", "event": "e", "data": 1},
        {"to": "alice", "event": "e", "data": 2},
        {"to": "a,,b", "data": "bad target"},
    ]});
    let response = http2.post(&url).json(&batch).send().await.expect("batch");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["published"], 2, "{body}");
    assert_eq!(body["results"][2]["error"]["code"], "invalid_target");
    assert_eq!(alice.json().await["data"], 1);
    assert_eq!(alice.json().await["data"], 2);

    let response = http2
        .post(server.api_url("/v1/push"))
        .header("content-type", "application/json")
        .body("{\"app\": \"demo\", ")
        .send()
        .await
        .expect("bad push");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("a JSON error");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    // The HTTP/1.1 head limits, with the same answer: a head just over the byte limit,
    // and more headers than HTTP/1.1 takes.
    let big = "a".repeat(pushhub::parse_errors::MAX_HEAD_BYTES);
    let mut many = reqwest::header::HeaderMap::new();
    for i in 0..=pushhub::parse_errors::MAX_HEADERS {
        let name = reqwest::header::HeaderName::try_from(format!("x-header-{i}")).expect("name");
        many.insert(name, reqwest::header::HeaderValue::from_static("1"));
    }
    for request in [
        http2.get(server.api_url("/healthz")).header("x-big", big),
        http2.get(server.api_url("/healthz")).headers(many),
    ] {
        let response = request.send().await.expect("refused request");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 431);
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
    }
    // The connection is still good for more streams.
    let response = http2
        .get(server.api_url("/healthz"))
        .send()
        .await
        .expect("after the refusals");
    assert_eq!(response.status(), 200);

    let http1 = http1();
    for n in 0..3 {
        let response = http1
            .post(server.api_url("/v1/push"))
            .json(&json!({"app": "demo", "to": "alice", "event": "e", "data": 10 + n}))
            .send()
            .await
            .expect("HTTP/1.1 push");
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        assert_eq!(response.status(), 200);
        assert_eq!(alice.json().await["data"], 10 + n);
    }
}

/// The API key of the single-port server.
const KEY: &str = "h2-single-port-key";

/// Single-port mode (the client listener serves the API too): HTTP/2 pushes, a WebSocket
/// client over HTTP/1.1 and HTTP/1.1 requests, all on the one port.
#[tokio::test]
async fn one_port_serves_http2_http1_and_websocket() {
    let (server, _dir) = TestServer::single_port(&format!(
        "dynamic_apps = false\n[apps.demo]\nauth = \"none\"\napi_keys = [\"{KEY}\"]\n"
    ));
    assert_eq!(server.client, server.api, "single-port mode");
    let (mut client, _) = server.native("demo", "one-port").await;
    let http2 = h2c();
    let http1 = http1();
    for (n, http) in [(1, &http2), (2, &http1), (3, &http2)] {
        let response = http
            .post(server.api_url("/v1/push"))
            .bearer_auth(KEY)
            .json(&json!({"app": "demo", "to": "one-port", "event": "e", "data": n}))
            .send()
            .await
            .expect("push");
        let version = if n == 2 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        assert_eq!(client.json().await["data"], n);
    }
    // A second WebSocket client connects after HTTP/2 was spoken on the port, and an SSE
    // stream is read over HTTP/2.
    let (mut second, _) = server.native("demo", "one-port").await;
    let mut sse = http2
        .get(format!(
            "http://{}/v1/sse?app=demo&user=one-port",
            server.client
        ))
        .send()
        .await
        .expect("SSE over HTTP/2");
    assert_eq!(sse.version(), reqwest::Version::HTTP_2);
    assert_eq!(sse.status(), 200);
    let mut events = String::new();
    read_until(&mut sse, &mut events, "welcome").await;
    let response = http2
        .post(server.api_url("/v1/push"))
        .bearer_auth(KEY)
        .json(&json!({"app": "demo", "to": "one-port", "event": "e", "data": "both"}))
        .send()
        .await
        .expect("push");
    assert_eq!(response.status(), 200);
    assert_eq!(client.json().await["data"], "both");
    assert_eq!(second.json().await["data"], "both");
    read_until(&mut sse, &mut events, "\"both\"").await;
}

/// Read `stream` into `text` until it holds `wanted`.
async fn read_until(stream: &mut reqwest::Response, text: &mut String, wanted: &str) {
    while !text.contains(wanted) {
        let chunk = tokio::time::timeout(WAIT, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {wanted} in time: {text}"))
            .expect("stream")
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// The per-address request rate counts each HTTP/2 stream: long-polls sent at once on one
/// connection are refused past the budget as they would be on as many connections.
#[tokio::test]
async fn the_request_rate_counts_each_stream() {
    const POLLS: usize = 20;
    let (server, _dir) = TestServer::single_port(&format!(
        "dynamic_apps = false\n[limits]\nmax_requests_per_second_per_ip = 1\n\
         [apps.demo]\nauth = \"none\"\napi_keys = [\"{KEY}\"]\n"
    ));
    let sender = h2_connection(server.client).await;
    let polls = (0..POLLS).map(|_| {
        let mut sender = sender.clone();
        tokio::spawn(async move {
            let poll = Request::get("/v1/poll?app=demo&user=rate&timeout=0")
                .body(Body::empty())
                .expect("request");
            send(&mut sender, poll).await
        })
    });
    let mut refused = 0;
    for answer in futures_util::future::join_all(polls).await {
        let (status, version, body) = answer.expect("poll task");
        assert_eq!(version, Version::HTTP_2);
        match status {
            200 => {}
            429 => {
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    // 1 a second with bursts of 2: a few at most are served in the time the burst takes.
    assert!(refused >= POLLS - 5, "{refused} of {POLLS} refused");
}

/// The machine's curl, when it speaks HTTP/2: `--http2-prior-knowledge` as docs/api.md
/// shows it. Without curl, or a curl without HTTP/2, the test says so and skips (it fails
/// under CI=true).
#[tokio::test]
async fn curl_pushes_with_prior_knowledge() {
    let version = std::process::Command::new("curl").arg("-V").output();
    let has_http2 = version
        .as_ref()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("HTTP2"));
    if !has_http2 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl with HTTP/2 is needed under CI"
        );
        eprintln!("SKIPPED: no curl with HTTP/2 on this machine ({version:?})");
        return;
    }
    let server = TestServer::start();
    let (mut client, _) = server.native("demo", "curl").await;
    let url = server.api_url("/v1/push");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--http2-prior-knowledge"])
            .args(["-w", "\n%{http_version} %{http_code}", &url])
            .args(["-H", "content-type: application/json"])
            .args([
                "-d",
                r#"{"app":"demo","to":"curl","event":"e","data":"by curl"}"#,
            ])
            .output()
            .expect("curl")
    })
    .await
    .expect("curl task");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, trailer) = text.rsplit_once('\n').expect("body and trailer");
    assert_eq!(
        trailer,
        "2 200",
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_str(body).expect("JSON answer");
    assert_eq!(body["delivered"], 1, "{body}");
    assert_eq!(client.json().await["data"], "by curl");
}

/// A stop while a stream is in flight: the server says GOAWAY, the stream's request
/// (its body still arriving) is answered, a new stream on that connection is refused,
/// and the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_the_stream_in_flight_finish() {
    let mut server = TestServer::start();
    let mut sender = h2_connection(server.api).await;
    let (chunks, rest) = tokio::sync::mpsc::channel::<Bytes>(2);
    let stream = futures_util::stream::unfold(rest, |mut rest| async move {
        let chunk = rest.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), rest))
    });
    let request = Request::post("/v1/push")
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("request");
    let in_flight = {
        let mut sender = sender.clone();
        tokio::spawn(async move { send(&mut sender, request).await })
    };
    chunks
        .send(Bytes::from_static(br#"{"app": "demo", "to": "late", "#))
        .await
        .expect("first half");
    // Frames are read in order: once a later stream is answered, the server holds the
    // first one's headers and first half.
    let health = Request::get("/healthz")
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send(&mut sender, health).await;
    assert_eq!(status, 200);

    server.signal("TERM");
    server.wait_log("closing every client connection", 1).await;
    // The stop is under way; give the GOAWAY time to arrive before the next stream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    chunks
        .send(Bytes::from_static(br#""event": "e", "data": "finished"}"#))
        .await
        .expect("second half");
    drop(chunks);
    let (status, version, body) = in_flight.await.expect("in-flight task");
    assert_eq!((status, version), (200, Version::HTTP_2), "{body}");
    assert_eq!(body["delivered"], 0, "{body}");

    let refused = tokio::time::timeout(WAIT, async {
        sender.ready().await?;
        sender
            .send_request(
                Request::get("/healthz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
    })
    .await
    .expect("refused in time");
    assert!(refused.is_err(), "a new stream after GOAWAY: {refused:?}");
    let exit = tokio::task::block_in_place(|| server.wait_exit());
    assert!(exit.success(), "exit status {exit:?}\n{}", server.log());
}

/// An upgrade under HTTP/2 pushes from one client, several at once: the old process sends
/// GOAWAY and answers the pushes it took, the client sends the rest on a new connection to
/// the new process, and every push is answered 200, by one process or the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_over_http2_go_on_through_an_upgrade() {
    const AT_ONCE: usize = 8;
    let server = TestServer::start();
    let http2 = h2c();
    let stop = tokio_util::sync::CancellationToken::new();
    let pushers: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (http2, stop) = (http2.clone(), stop.clone());
            let url = server.api_url("/v1/push");
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.is_cancelled() {
                    let push = json!({"app": "demo", "to": "nobody", "event": "e", "data": 1});
                    let response = http2.post(&url).json(&push).send().await;
                    let answer = match response {
                        Ok(response) => {
                            let (status, version) = (response.status(), response.version());
                            let body: Value = response.json().await.unwrap_or_default();
                            Ok((status.as_u16(), version, body))
                        }
                        Err(error) => Err(error.to_string()),
                    };
                    answers.push(answer);
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, answer) = server.upgrade().await;
    assert_eq!(status, 200, "{answer}");
    server.wait_log("upgrade: accepting again", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let mut nodes = BTreeSet::new();
    let mut pushes = 0;
    for pusher in pushers {
        for answer in pusher.await.expect("pusher") {
            let (status, version, body) = answer.expect("every push is answered");
            assert_eq!((status, version), (200, Version::HTTP_2), "{body}");
            let id = body["id"].as_str().expect("message id");
            nodes.insert(id.split('-').next().expect("node").to_owned());
            pushes += 1;
        }
    }
    assert_eq!(nodes.len(), 2, "both processes answered pushes: {nodes:?}");
    eprintln!("{pushes} pushes over HTTP/2 through the upgrade, all answered");
}
