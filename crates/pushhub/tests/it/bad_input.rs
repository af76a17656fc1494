//! Every kind of bad input gets its specific error, and costs only its sender.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::util::TestServer;

fn config_without_dynamic_apps() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pushhub.toml");
    std::fs::write(
        &path,
        "[apps.wms]\nauth = \"none\"\nmax_frame_bytes = 1024\n",
    )
    .unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

#[tokio::test]
async fn unknown_app_is_refused_everywhere() {
    let (_dir, config) = config_without_dynamic_apps();
    let server = TestServer::start_with(&["--config", &config], &[]);
    let mut native = server.ws("/v1/ws?app=nope&user=1").await;
    let (code, reason) = native.closed().await;
    assert_eq!(code, 4501);
    assert!(reason.contains("nope"), "{reason}");
    let mut jd = server.jdserver("nope", json!("1")).await;
    assert_eq!(jd.closed().await.0, 4501);
    let (status, body) = server
        .post_json("/v1/push", &json!({"app": "nope", "to": "*"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_app"))
    );
    let (status, body) = server.get("/getUsers?app=nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_app"))
    );
    // The declared app works, and its own frame limit applies.
    let (mut ok, welcome) = server.native("wms", "1").await;
    assert_eq!(welcome["max_frame_bytes"], 1024);
    ok.send(&format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(1100)
    ))
    .await;
    assert_eq!(ok.closed().await.0, 1009);
}

#[tokio::test]
async fn native_frame_errors_keep_the_connection() {
    let server = TestServer::start();
    let (mut client, _) = server.native("demo", "1").await;
    client.send("{not json").await;
    assert_eq!(client.json().await["code"], "bad_json");
    client.send("[1,2]").await;
    assert_eq!(client.json().await["code"], "bad_frame");
    client.send(r#"{"type":5,"id":3}"#).await;
    let error = client.json().await;
    assert_eq!(
        (error["code"].as_str(), error["id"].as_i64()),
        (Some("bad_frame"), Some(3))
    );
    client.send(r#"{"type":"teleport","id":"x"}"#).await;
    let error = client.json().await;
    assert_eq!(
        error,
        json!({"type": "error", "id": "x", "code": "unknown_type", "message": "unknown frame type \"teleport\""})
    );
    client.send(r#"{"type":"ping","id":{"nested":true}}"#).await;
    assert_eq!(client.json().await["type"], "pong");
    assert_eq!(server.push("1", json!("still alive")).await, 1);
    assert_eq!(client.json().await["data"], "still alive");
}

#[tokio::test]
async fn connection_level_violations_close_with_codes() {
    let server = TestServer::start();
    let (mut witness, _) = server.native("demo", "witness").await;

    let (mut big, _) = server.native("demo", "big").await;
    big.send(&"x".repeat(64 * 1024 + 1)).await;
    let (code, reason) = big.closed().await;
    assert_eq!(code, 1009);
    assert!(reason.contains("65536"), "{reason}");

    let (mut binary, _) = server.native("demo", "bin").await;
    binary
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(binary.closed().await.0, 1003);

    let mut no_user = server.ws("/v1/ws?app=demo").await;
    assert_eq!(no_user.closed().await.0, 4500);
    let mut no_app = server.ws("/v1/ws?user=1").await;
    assert_eq!(no_app.closed().await.0, 4500);
    let mut bad_user = server.ws("/v1/ws?app=demo&user=a,b").await;
    assert_eq!(bad_user.closed().await.0, 4500);
    let mut bad_app = server.ws("/v1/ws?app=a%20b&user=1").await;
    assert_eq!(bad_app.closed().await.0, 4500);

    let mut missing_init = server.ws("/").await;
    missing_init.send(r#"{"ac":"hello"}"#).await;
    assert_eq!(missing_init.closed().await.0, 4502);
    let mut garbage_first = server.ws("/").await;
    garbage_first.send("garbage").await;
    assert_eq!(garbage_first.closed().await.0, 4502);
    let mut twice = server.jdserver("demo", json!("2")).await;
    twice.send(r#"{"ac":"init","app":"demo","user":"2"}"#).await;
    assert_eq!(twice.closed().await.0, 4503);
    let mut bad_init = server.ws("/").await;
    bad_init
        .send(r#"{"ac":"init","app":"demo","user":[1]}"#)
        .await;
    let (code, reason) = bad_init.closed().await;
    assert_eq!(code, 4500);
    assert!(reason.contains("user"), "{reason}");

    // None of that cost the witness anything.
    assert_eq!(server.push("witness", json!("fine")).await, 1);
    assert_eq!(witness.json().await["data"], "fine");
}

#[tokio::test]
async fn api_errors_are_specific() {
    let server = TestServer::start();
    let code = |(status, body): (u16, serde_json::Value)| {
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };
    let post = |body: &'static str| server.post_raw("/v1/push", "application/json", body);
    assert_eq!(code(post("{").await), (400, "bad_json".into()));
    assert_eq!(
        code(post(r#"{"app":"demo"}"#).await),
        (400, "invalid_request".into())
    );
    assert_eq!(
        code(post(r#"{"app":"demo","to":5}"#).await),
        (400, "invalid_request".into())
    );
    assert_eq!(
        code(post(r#"{"app":"demo","to":"*","extra":1}"#).await),
        (400, "invalid_request".into())
    );
    assert_eq!(
        code(post(r#"{"app":"demo","to":""}"#).await),
        (400, "invalid_target".into())
    );
    assert_eq!(
        code(post(r#"{"app":"demo","to":"a,,b"}"#).await),
        (400, "invalid_target".into())
    );
    assert_eq!(
        code(post(r#"{"app":"demo","to":"g*"}"#).await),
        (400, "invalid_target".into())
    );
    assert_eq!(
        code(post(r#"{"app":"bad app","to":"*"}"#).await),
        (400, "invalid_app".into())
    );
    assert_eq!(
        code(server.get("/push?app=demo&msg=x").await),
        (400, "missing_param".into())
    );
    assert_eq!(
        code(server.get("/push?app=demo&user=1").await),
        (400, "missing_param".into())
    );
    assert_eq!(
        code(
            server
                .post_json("/push", &json!({"app": ["x"], "user": "1", "msg": 1}))
                .await
        ),
        (400, "invalid_param".into())
    );
    assert_eq!(
        code(
            server
                .post_raw("/push", "multipart/form-data; boundary=x", "--x")
                .await
        ),
        (415, "unsupported_media_type".into())
    );
    assert_eq!(
        code(server.get("/nowhere").await),
        (404, "not_found".into())
    );
    assert_eq!(
        code(server.get("/v1/push").await),
        (405, "method_not_allowed".into())
    );
    let huge = format!(
        r#"{{"app":"demo","to":"*","data":"{}"}}"#,
        "x".repeat(1024 * 1024 + 1)
    );
    assert_eq!(
        code(server.post_raw("/v1/push", "application/json", &huge).await),
        (413, "body_too_large".into())
    );
    // A plain GET to a WebSocket endpoint says what it expects.
    let response = crate::util::http()
        .get(format!("http://{}/v1/ws?app=demo&user=1", server.client))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_websocket");
    assert!(!server.log().contains("panicked"));
}

#[tokio::test]
async fn jdserver_client_without_init_is_closed_at_the_handshake_deadline() {
    let server = TestServer::start_with(
        &[],
        &[
            ("PUSHHUB_LIMITS_HANDSHAKE_TIMEOUT", "1"),
            ("PUSHHUB_HEARTBEAT", "1"),
            ("PUSHHUB_IDLE_TIMEOUT", "30"),
        ],
    );
    let mut lingering = server.ws("/").await;
    let started = std::time::Instant::now();
    // `next` keeps reading, so pings are answered: the socket is lively, but no init came.
    let (code, reason) = lingering.closed().await;
    assert_eq!(code, 4004, "{reason}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn connection_limit_counts_connections_still_in_their_handshake() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_LIMITS_MAX_CONNECTIONS", "2")]);
    let _a = server.ws("/").await;
    let _b = server.ws("/").await;
    let mut third = server.ws("/v1/ws?app=demo&user=3").await;
    let (code, _) = third.closed().await;
    assert_eq!(code, 4002);
}

#[tokio::test]
async fn invalid_path_segment_gets_a_json_error() {
    let server = TestServer::start();
    let (status, body) = server.get("/v1/apps/%FF/users").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_app"))
    );
    let (status, body) = server.get("/v1/apps/never-used/users").await;
    assert_eq!(status, 200);
    assert_eq!(body["users"], json!([]));
}
