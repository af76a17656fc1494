//! `auth = "webhook"`: the app's backend (a real local HTTP server here) decides who a
//! client is from the credential it presents in the URL, a cookie or a first frame.
//! A backend that is down, slow or answers garbage costs its clients a retryable refusal
//! and nobody else anything.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::backend::{Answer, Backend, Recorded};
use crate::util::{Client, TestServer, WAIT};

/// The backend's rules, by credential.
fn answer(request: &Recorded) -> Answer {
    let credential = request.json()["credential"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match credential.as_str() {
        "good-100" => Answer::new(200, r#"{"user":"100","groups":["vip"]}"#),
        "numeric" => Answer::new(200, r#"{"user":7}"#),
        "bad" => Answer::new(403, r#"{"error":"logged out"}"#),
        "garbage" => Answer::new(200, "<html>welcome</html>"),
        "boom" => Answer::new(500, "{}"),
        "slow" => Answer::new(200, r#"{"user":"9"}"#).after(Duration::from_secs(5)),
        _ => Answer::new(401, "{}"),
    }
}

/// A server whose apps ask `backend`: `site` (query `ukey`, cookie `sid`, no cache),
/// `cached` (answers reused for 30 s) and `down` (a backend that is not listening).
fn server(backend: &Backend) -> (TestServer, tempfile::TempDir) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = format!(
        r#"
[apps.site]
auth = "webhook"
[apps.site.auth_webhook]
url = "{url}"
query_param = "ukey"
cookie = "sid"
timeout_ms = 500

[apps.cached]
auth = "webhook"
[apps.cached.auth_webhook]
url = "{url}"
cache_seconds = 30

[apps.down]
auth = "webhook"
[apps.down.auth_webhook]
url = "http://127.0.0.1:{closed_port}/auth"

[apps.open]
auth = "none"
"#,
        url = backend.url("/pushhub/auth")
    );
    TestServer::with_config(&config)
}

/// A WebSocket client whose upgrade request carries `cookie`.
async fn ws_with_cookie(server: &TestServer, path: &str, cookie: &str) -> Client {
    let mut request = format!("ws://{}{path}", server.client)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    Client { ws }
}

async fn push(server: &TestServer, app: &str, to: &str) -> u64 {
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": app, "to": to, "event": "e", "data": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["delivered"].as_u64().unwrap()
}

#[tokio::test]
async fn the_backend_names_the_user_from_a_query_cookie_or_frame_credential() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);

    let mut by_query = server.ws("/v1/ws?app=site&ukey=good-100&user=admin").await;
    let welcome = by_query.json().await;
    assert_eq!(
        welcome["user"], "100",
        "the backend's user, not the claimed one"
    );
    let channels = welcome["channels"].to_string();
    assert!(channels.contains("site:group:vip"), "{channels}");

    let mut by_cookie = ws_with_cookie(&server, "/v1/ws?app=site", "theme=dark; sid=numeric").await;
    assert_eq!(by_cookie.json().await["user"], "7");

    let mut by_frame = server.ws("/v1/ws?app=site").await;
    by_frame
        .send(&json!({"type": "auth", "token": "good-100"}).to_string())
        .await;
    assert_eq!(by_frame.json().await["user"], "100");

    server.wait_connections(3).await;
    assert_eq!(push(&server, "site", "vip/*").await, 2);
    for client in [&mut by_query, &mut by_frame] {
        assert_eq!(client.json().await["data"], "hi");
    }

    let questions: Vec<_> = backend.seen().iter().map(Recorded::json).collect();
    assert_eq!(
        questions,
        [
            json!({"app": "site", "credential": "good-100", "source": "query", "param": "ukey"}),
            json!({"app": "site", "credential": "numeric", "source": "cookie"}),
            json!({"app": "site", "credential": "good-100", "source": "frame"}),
        ]
    );
    let first = &backend.seen()[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path_and_query, "/pushhub/auth");
    assert_eq!(first.headers["content-type"], "application/json");
}

#[tokio::test]
async fn rejections_and_backend_failures_close_with_their_own_codes() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let refused = |credential: &'static str| {
        let server = &server;
        async move {
            let mut client = server
                .ws(&format!("/v1/ws?app=site&ukey={credential}"))
                .await;
            client.closed().await
        }
    };
    assert_eq!(
        refused("bad").await,
        (4515, "credential rejected: logged out".into())
    );
    assert_eq!(
        refused("unknown").await,
        (4515, "credential rejected by the app's auth backend".into())
    );
    let (code, reason) = refused("garbage").await;
    assert_eq!(code, 4007);
    assert!(reason.starts_with("auth backend answer is not"), "{reason}");
    assert_eq!(
        refused("boom").await,
        (4007, "auth backend answered HTTP 500".into())
    );
    let started = Instant::now();
    assert_eq!(
        refused("slow").await,
        (4007, "auth backend did not answer within 500 ms".into())
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    let mut down = server.ws("/v1/ws?app=down&token=x").await;
    assert_eq!(
        down.closed().await,
        (4007, "auth backend unreachable".into())
    );

    let mut nothing = server.ws("/v1/ws?app=site").await;
    nothing.send(r#"{"type":"ping"}"#).await;
    let (code, _) = nothing.closed().await;
    assert_eq!(code, 4502, "the first frame must be auth");
}

#[tokio::test]
async fn a_slow_backend_delays_only_its_own_clients() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let (mut bystander, _) = server.native("open", "1").await;
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let url = format!("ws://{}/v1/ws?app=site&ukey=slow", server.client);
            tokio::spawn(async move { tokio_tungstenite::connect_async(url).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (mut newcomer, _) = server.native("open", "2").await;
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "open", "to": "1,2", "data": "still here"}),
        )
        .await;
    assert_eq!((status, body["delivered"].as_u64()), (200, Some(2)));
    assert_eq!(bystander.json().await["data"], "still here");
    assert_eq!(newcomer.json().await["data"], "still here");
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "others waited {:?} for the slow backend",
        started.elapsed()
    );
    for handle in waiting {
        let (ws, _) = handle.await.unwrap().unwrap();
        let mut client = Client { ws };
        assert_eq!(client.closed().await.0, 4007);
    }
}

#[tokio::test]
async fn answers_are_cached_when_the_app_says_so() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = server.ws("/v1/ws?app=cached&token=good-100").await;
        assert_eq!(client.json().await["user"], "100");
        clients.push(client);
    }
    for _ in 0..2 {
        let mut client = server.ws("/v1/ws?app=cached&token=bad").await;
        assert_eq!(client.closed().await.0, 4515);
    }
    assert_eq!(backend.seen().len(), 2, "one question per credential");

    for _ in 0..2 {
        let mut client = server.ws("/v1/ws?app=site&ukey=good-100").await;
        assert_eq!(client.json().await["user"], "100");
    }
    assert_eq!(
        backend.seen().len(),
        4,
        "an app without a cache asks every time"
    );
}

#[tokio::test]
async fn sse_long_poll_and_jdserver_clients_use_the_same_check() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let http = crate::util::http();

    let response = http
        .get(format!("http://{}/v1/sse?app=site", server.client))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_token");
    assert_eq!(
        body["error"]["message"],
        "this app requires a credential: pass ukey=... or the sid cookie"
    );

    let response = http
        .get(format!("http://{}/v1/sse?app=site", server.client))
        .header("cookie", "sid=good-100")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);

    let (status, _) = {
        let response = http
            .get(format!(
                "http://{}/v1/poll?app=site&ukey=bad&timeout=1",
                server.client
            ))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(status, 403);

    let mut jd = server.ws("/").await;
    jd.send(&json!({"ac": "init", "app": "site", "token": "numeric"}).to_string())
        .await;
    server.wait_connections(1).await;
    assert_eq!(push(&server, "site", "7").await, 1);
    assert_eq!(jd.text().await, "hi");
    let sources: Vec<_> = backend
        .seen()
        .iter()
        .map(|r| r.json()["source"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sources, ["cookie", "query", "frame"]);
}
