//! SSE and long-poll clients (native and jdserver getMsg): same messages, same no-loss
//! guarantee, over plain HTTP.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{encode, TestServer, WAIT};

/// One SSE event as the browser would see it.
#[derive(Debug, Default, Clone)]
struct SseEvent {
    id: Option<String>,
    data: String,
    comment: bool,
}

/// Reads a `text/event-stream` response event by event.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
    last_id: Option<String>,
}

impl EventStream {
    async fn open(server: &TestServer, query: &str, last_event_id: Option<&str>) -> Self {
        let mut request =
            crate::util::http().get(format!("http://{}/v1/sse?{query}", server.client));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buffer: String::new(),
            last_id: None,
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.to_owned());
                        self.last_id = Some(id.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data.push_str(data);
                    } else if line.starts_with(':') {
                        event.comment = true;
                    }
                }
                return event;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("sse chunk timed out")
                .unwrap();
            let chunk = chunk.expect("stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event that carries data, as JSON.
    async fn json(&mut self) -> Value {
        loop {
            let event = self.next().await;
            if !event.data.is_empty() {
                return serde_json::from_str(&event.data).unwrap();
            }
        }
    }
}

async fn client_get(server: &TestServer, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = tokio::time::timeout(
        WAIT,
        crate::util::http()
            .get(format!("http://{}{path}", server.client))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn sse_streams_messages_and_resumes_with_last_event_id() {
    let server = TestServer::start();
    let mut stream = EventStream::open(&server, "app=demo&user=5", None).await;
    let preamble = stream.next().await;
    assert!(
        preamble.id.is_some() && preamble.data.is_empty(),
        "{preamble:?}"
    );
    let welcome = stream.json().await;
    assert_eq!(welcome["type"], "welcome");
    server.wait_connections(1).await;
    server.push("5", json!("one")).await;
    let msg = stream.json().await;
    assert_eq!(
        (msg["type"].as_str(), msg["data"].as_str()),
        (Some("msg"), Some("one"))
    );
    let last_id = stream.last_id.clone().unwrap();
    assert!(last_id.contains("demo:user:5@"), "{last_id}");
    drop(stream);
    server.wait_connections(0).await;

    server.push("5", json!("two")).await;
    server.push("*", json!("three")).await;
    let mut stream = EventStream::open(&server, "app=demo&user=5", Some(&last_id)).await;
    assert_eq!(stream.json().await["recovered"], true);
    assert_eq!(stream.json().await["data"], "two");
    assert_eq!(stream.json().await["data"], "three");
    server.push("5", json!("four")).await;
    assert_eq!(stream.json().await["data"], "four");
}

/// A push to the SSE connection itself (`/v1/push` with `conn`) is live-only: sent
/// without an `id:` line, and the next event's id (the cursor) does not name it.
#[tokio::test]
async fn sse_takes_a_push_to_its_connection_without_moving_its_event_id() {
    let server = TestServer::start();
    let mut stream = EventStream::open(&server, "app=demo&user=5", None).await;
    let welcome = stream.json().await;
    let conn = welcome["conn"].as_str().unwrap().to_owned();
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "demo", "conn": conn, "data": "just you"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let event = stream.next().await;
    assert_eq!(event.id, None, "{event:?}");
    let msg: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        (&msg["ch"], &msg["off"], &msg["data"]),
        (
            &json!(format!("demo:conn:{conn}")),
            &json!(0),
            &json!("just you")
        )
    );
    server.push("5", json!("to the user")).await;
    let event = stream.next().await;
    let id = event.id.expect("a stream message has an id");
    assert!(
        id.contains("demo:user:5@") && !id.contains(":conn:"),
        "{id}"
    );
}

#[tokio::test]
async fn sse_heartbeats_are_comments_and_refusals_are_http_errors() {
    let server = TestServer::start_with(
        &[],
        &[("PUSHHUB_HEARTBEAT", "1"), ("PUSHHUB_IDLE_TIMEOUT", "5")],
    );
    let mut stream = EventStream::open(&server, "app=demo&user=6", None).await;
    let mut comments = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until && comments == 0 {
        if stream.next().await.comment {
            comments += 1;
        }
    }
    assert!(comments >= 1);
    let (status, _, body) = client_get(&server, "/v1/sse?app=demo&user=a,b").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = client_get(&server, "/v1/sse?app=demo&user=1&since=garbage").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn native_poll_waits_returns_batches_and_cursors_lose_nothing() {
    let server = TestServer::start();
    let (status, _, body) = client_get(&server, "/v1/poll?app=demo&user=7&timeout=0.2").await;
    assert_eq!(status, 200);
    let first: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(first["messages"], json!([]));
    let cursor = first["cursor"].as_str().unwrap().to_owned();

    server.push("7", json!("a")).await;
    server.push("*", json!("b")).await;
    let (_, _, body) = client_get(
        &server,
        &format!(
            "/v1/poll?app=demo&user=7&timeout=5&since={}",
            encode(&cursor)
        ),
    )
    .await;
    let batch: Value = serde_json::from_str(&body).unwrap();
    let data: Vec<&Value> = batch["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["data"])
        .collect();
    assert_eq!(data, [&json!("a"), &json!("b")]);
    assert_eq!(batch["recovered"], true);
    let cursor = batch["cursor"].as_str().unwrap().to_owned();

    // A waiting poll is a connection: it is online, and a push wakes it.
    let waiting = {
        let url = format!(
            "http://{}/v1/poll?app=demo&user=7&timeout=10&since={}",
            server.client,
            encode(&cursor)
        );
        tokio::spawn(async move {
            crate::util::http()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    server.wait_connections(1).await;
    assert_eq!(
        server.get("/v1/apps/demo/users").await.1["users"][0]["user"],
        "7"
    );
    let started = std::time::Instant::now();
    server.push("7", json!("c")).await;
    let woken = waiting.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(woken["messages"][0]["data"], "c");
    server.wait_connections(0).await;
}

#[tokio::test]
async fn jdserver_get_msg_returns_one_raw_message_and_a_cursor() {
    let server = TestServer::start();
    let waiting = {
        let url = format!(
            "http://{}/getMsg?app=wms&user=100&timeout=10",
            server.client
        );
        tokio::spawn(async move {
            let response = crate::util::http().get(url).send().await.unwrap();
            let cursor = response.headers()["x-pushhub-cursor"]
                .to_str()
                .unwrap()
                .to_owned();
            (cursor, response.text().await.unwrap())
        })
    };
    server.wait_connections(1).await;
    let (status, _) = server
        .get("/push?app=wms&user=100&msg[id]=1&msg[text]=hi")
        .await;
    assert_eq!(status, 200);
    let (cursor, body) = waiting.await.unwrap();
    assert_eq!(body, r#"{"id":"1","text":"hi"}"#);

    // Between polls nothing is lost when the cursor is passed back.
    server.get("/push?app=wms&user=100&msg=second").await;
    server.get("/push?app=wms&user=*&msg=third").await;
    let get_msg = |cursor: String| {
        let server = &server;
        async move {
            let path = format!(
                "/getMsg?app=wms&user=100&timeout=5&cursor={}",
                encode(&cursor)
            );
            client_get(server, &path).await
        }
    };
    let (_, headers, body) = get_msg(cursor).await;
    assert_eq!(body, "second");
    let cursor = headers["x-pushhub-cursor"].to_str().unwrap().to_owned();
    let (_, headers, body) = get_msg(cursor).await;
    assert_eq!(body, "third");
    assert!(headers.contains_key("access-control-allow-origin"));

    // Without a cursor, only new messages: nothing comes within the timeout.
    let (status, _, body) = client_get(&server, "/getMsg?app=wms&user=100&timeout=0.3").await;
    assert_eq!((status, body.as_str()), (200, ""));

    let (status, _, body) = client_get(&server, "/getMsg?app=wms&timeout=1").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = client_get(&server, "/getMsg?app=wms&user=1&timeout=soon").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = client_get(&server, "/getMsg?app=wms&user=1&cursor=bad").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_long_poll_backlog_comes_in_batches() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_HISTORY_SIZE", "500")]);
    let (_, _, body) = client_get(&server, "/v1/poll?app=demo&user=9&timeout=0").await;
    let mut cursor = serde_json::from_str::<Value>(&body).unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 0..150 {
        server.push("9", json!(n)).await;
    }
    let mut seen = Vec::new();
    for expected in [100, 50] {
        let (_, _, body) = client_get(
            &server,
            &format!(
                "/v1/poll?app=demo&user=9&timeout=1&since={}",
                encode(&cursor)
            ),
        )
        .await;
        let batch: Value = serde_json::from_str(&body).unwrap();
        let messages = batch["messages"].as_array().unwrap();
        assert_eq!(messages.len(), expected);
        seen.extend(messages.iter().map(|m| m["data"].as_u64().unwrap()));
        cursor = batch["cursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, (0..150).collect::<Vec<u64>>());
}

#[tokio::test]
async fn get_msg_answers_preflights_and_carries_non_ascii_cursors() {
    let server = TestServer::start();
    let response = crate::util::http()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/getMsg?app=wms&user=1", server.client),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));

    let user = encode("张三");
    let (_, headers, body) =
        client_get(&server, &format!("/getMsg?app=wms&user={user}&timeout=0")).await;
    assert_eq!(body, "");
    let cursor = headers["x-pushhub-cursor"].to_str().unwrap().to_owned();
    assert!(cursor.is_ascii() && cursor.contains("%E5"), "{cursor}");
    server
        .get(&format!("/push?app=wms&user={user}&msg=hello"))
        .await;
    let (_, headers, body) = client_get(
        &server,
        &format!("/getMsg?app=wms&user={user}&timeout=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(body, "hello");
    assert_eq!(headers["x-pushhub-recovered"], "true");
}

/// An SSE client that stops reading is cut off as a slow consumer once its queue
/// overflows, and that is logged and counted like a WebSocket client's cut-off.
#[tokio::test]
async fn an_sse_slow_consumer_is_logged_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, _dir) = TestServer::with_config(
        "[limits]\nmax_queue_messages = 8\n\n[apps.demo]\nauth = \"none\"\n",
    );
    // A small receive window, so the server's writes stall soon after the client stops
    // reading.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = tokio::time::timeout(WAIT, socket.connect(server.client))
        .await
        .unwrap()
        .unwrap();
    stream
        .write_all(b"GET /v1/sse?app=demo&user=slow HTTP/1.1\r\nHost: pushhub\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !String::from_utf8_lossy(&head).contains("retry:") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stream ended early");
        head.extend_from_slice(&chunk[..n]);
    }
    server.wait_connections(1).await;

    let big = "x".repeat(60 * 1024);
    for _ in 0..200 {
        server.push("slow", json!(big)).await;
        let (_, stats) = server.get("/v1/stats").await;
        if stats["connections"] == 0 {
            break;
        }
    }
    // Reading again lets the server reach the end of the stream it cut off.
    let drain = tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await {
            if n == 0 {
                break;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, stats) = server.get("/v1/stats").await;
        if stats["slow_consumers"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slow consumer counted: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.wait_log("closing slow consumer", 1).await;
    drain.abort();
}

/// A poll asking to wait longer than `limits.max_poll_wait` waits that long and says so;
/// fractions of a second are waits too, and a timeout that is no number is refused.
#[tokio::test]
async fn long_waits_are_capped_at_the_configured_maximum_and_say_so() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_LIMITS_MAX_POLL_WAIT", "1")]);
    for path in [
        "/getMsg?app=wms&user=1&timeout=600",
        "/v1/poll?app=demo&user=1&timeout=600",
    ] {
        let started = std::time::Instant::now();
        let (status, headers, _) = client_get(&server, path).await;
        let waited = started.elapsed();
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["x-pushhub-timeout-capped"], "1", "{path}");
        assert!(
            waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
            "{path}: answered after {waited:?}"
        );
    }
    let started = std::time::Instant::now();
    let (status, headers, body) = client_get(&server, "/getMsg?app=wms&user=1&timeout=0.3").await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(headers.get("x-pushhub-timeout-capped").is_none());
    assert!(started.elapsed() >= Duration::from_millis(250));
    let (status, _, body) = client_get(&server, "/getMsg?app=wms&user=1&timeout=soon").await;
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, &error["error"]["code"]),
        (400, &serde_json::json!("invalid_param"))
    );
}
