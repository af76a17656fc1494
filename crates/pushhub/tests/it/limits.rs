//! Per-user connection limits: kick the oldest (as the seeds did) or refuse the newest.

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
"#;

fn server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.toml");
    std::fs::write(&path, CONFIG).unwrap();
    (
        TestServer::start_with(&["--config", path.to_str().unwrap()], &[]),
        dir,
    )
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
    let response = reqwest::get(format!(
        "http://{}/v1/poll?app=pair&user=1&timeout=0",
        server.client
    ))
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
    let response = reqwest::Client::new()
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
