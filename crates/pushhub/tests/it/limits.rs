//! Per-app limits: connections per user (kick the oldest, as the seeds did, or refuse the
//! newest), allowed origins, frames per second, frame size and handshake time.

use serde_json::json;

use crate::util::TestServer;

const CONFIG: &str = r#"
[apps.single]
auth = "none"
max_connections_per_user = 1

[apps.pair]
auth = "none"
max_connections_per_user = 2
on_user_limit = "refuse_newest"

[apps.site]
auth = "none"
allowed_origins = ["https://app.example.com"]

[apps.slow]
auth = "none"
max_frames_per_second = 5

[apps.small]
auth = "none"
max_frame_bytes = 200

[apps.hasty]
auth = "token"
token_secrets = ["hasty-app-secret-0123456789abcdefgh"]
handshake_timeout = 1
"#;

fn server() -> (TestServer, tempfile::TempDir) {
    TestServer::with_config(CONFIG)
}

#[tokio::test]
async fn the_newest_connection_replaces_the_oldest() {
    let (server, _dir) = server();
    let (mut old, _) = server.native("single", "1").await;
    let (mut new, _) = server.native("single", "1").await;
    let (code, reason) = old.closed().await;
    assert_eq!(code, 4512, "{reason}");
    let (_other, other_user) = server.native("single", "2").await;
    assert_eq!(other_user["user"], "2", "other users are not affected");
    server.wait_connections(2).await;
    let (_, reply) = server
        .post_json(
            "/v1/push",
            &json!({"app": "single", "to": "1", "data": "hi"}),
        )
        .await;
    assert_eq!(reply["delivered"], 1);
    assert_eq!(new.json().await["data"], "hi");
}

#[tokio::test]
async fn or_the_newest_is_refused() {
    let (server, _dir) = server();
    let (_a, _) = server.native("pair", "1").await;
    let (_b, _) = server.native("pair", "1").await;
    let mut third = server.ws("/v1/ws?app=pair&user=1").await;
    let (code, reason) = third.closed().await;
    assert_eq!(code, 4513, "{reason}");
    let (_, users) = server.get("/v1/apps/pair/users").await;
    assert_eq!(users["users"], json!([{"user": "1", "connections": 2}]));
    let response = crate::util::http()
        .get(format!(
            "http://{}/v1/poll?app=pair&user=1&timeout=0",
            server.client
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn only_allowed_origins_may_connect_from_a_page() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (server, _dir) = server();
    let connect = |origin: Option<&'static str>| {
        let url = format!("ws://{}/v1/ws?app=site&user=1", server.client);
        async move {
            let mut request = url.into_client_request().unwrap();
            if let Some(origin) = origin {
                request
                    .headers_mut()
                    .insert("origin", origin.parse().unwrap());
            }
            let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            crate::util::Client { ws }
        }
    };
    let mut allowed = connect(Some("https://app.example.com")).await;
    assert_eq!(allowed.json().await["type"], "welcome");
    let mut not_a_page = connect(None).await;
    assert_eq!(
        not_a_page.json().await["type"],
        "welcome",
        "no Origin: not a browser page"
    );
    let mut evil = connect(Some("https://evil.example.net")).await;
    let (code, reason) = evil.closed().await;
    assert_eq!(code, 4514, "{reason}");
    let response = crate::util::http()
        .get(format!(
            "http://{}/v1/poll?app=site&user=1&timeout=0",
            server.client
        ))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_client_flooding_frames_is_cut_off_alone() {
    let (server, _dir) = server();
    let (mut calm, _) = server.native("slow", "calm").await;
    let (mut flood, _) = server.native("slow", "flood").await;
    for _ in 0..30 {
        flood.send(r#"{"type":"ping"}"#).await;
    }
    let mut code = 0;
    while code == 0 {
        match flood.next().await {
            crate::util::Event::Close(c, _) => code = c,
            crate::util::Event::Text(_) => {}
            crate::util::Event::Ended => panic!("ended without a close frame"),
        }
    }
    assert_eq!(code, 1008);
    calm.send(r#"{"type":"ping","id":1}"#).await;
    assert_eq!(calm.json().await["type"], "pong");
}

#[tokio::test]
async fn each_app_sets_its_own_frame_size() {
    let (server, _dir) = server();
    let (mut small, _) = server.native("small", "1").await;
    let (mut roomy, _) = server.native("slow", "1").await;
    let frame = json!({"type": "ping", "id": "x".repeat(300)}).to_string();
    roomy.send(&frame).await;
    assert_eq!(roomy.json().await["type"], "pong");
    small.send(&frame).await;
    let (code, reason) = small.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (1009, "message too big: limit is 200 bytes")
    );
}

#[tokio::test]
async fn each_app_sets_its_own_handshake_time() {
    let (server, _dir) = server();
    let started = std::time::Instant::now();
    let mut silent = server.ws("/v1/ws?app=hasty").await;
    assert_eq!(silent.closed().await.0, 4004);
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(5),
        "closed after {waited:?}, the app allows 1 s (the server 10 s)"
    );
}

/// A server allowing two connections per client address, trusting 127.0.0.1 as a proxy.
fn per_address_server() -> (TestServer, tempfile::TempDir) {
    TestServer::with_config(
        r#"
tcp_listen = "127.0.0.1:0"
[limits]
max_connections_per_ip = 2
trusted_proxies = ["127.0.0.1"]
[apps.demo]
auth = "none"
"#,
    )
}

/// A native WebSocket client whose request says it was forwarded for `client`.
async fn forwarded_for(server: &TestServer, client: &str, user: &str) -> crate::util::Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/v1/ws?app=demo&user={user}", server.client)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    crate::util::Client { ws }
}

#[tokio::test]
async fn one_address_holds_only_so_many_connections() {
    let (server, _dir) = per_address_server();
    let (_a, _) = server.native("demo", "1").await;
    let (mut b, _) = server.native("demo", "2").await;
    let mut third = server.ws("/v1/ws?app=demo&user=3").await;
    assert_eq!(
        third.closed().await,
        (
            4008,
            "too many connections from this address (at most 2)".into()
        )
    );
    let response = crate::util::http()
        .get(format!("http://{}/v1/sse?app=demo&user=3", server.client))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "address_full");

    // Clients behind the trusted proxy count by their forwarded address.
    let mut behind = forwarded_for(&server, "203.0.113.9", "4").await;
    assert_eq!(behind.json().await["type"], "welcome");

    // Raw TCP is held to the same limit (an error frame, then close).
    let tcp = server.tcp.unwrap();
    let mut socket = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        crate::util::WAIT,
        tokio::io::AsyncReadExt::read_to_string(&mut socket, &mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(answer.contains("\"code\":\"address_full\""), "{answer}");

    // A slot comes back when a connection ends.
    b.ws.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + crate::util::WAIT;
    loop {
        let mut retry = server.ws("/v1/ws?app=demo&user=5").await;
        if let crate::util::Event::Text(_) = retry.next().await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
