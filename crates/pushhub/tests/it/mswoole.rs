//! The MSwoole dialect (seed 001): `?auth=` checked at the handshake (403 otherwise),
//! `{"method":...}` frames carried to the backend, every server frame
//! `{"status","info","param","event"}`, and the token's room joined at connect.

use serde_json::{json, Value};

use crate::backend::{Answer, Backend, Recorded};
use crate::util::{refused_handshake, Client, TestServer};

const SECRET: &str = "live-token-secret-0123456789abcdefgh";

fn answer(request: &Recorded) -> Answer {
    match request.json()["method"].as_str().unwrap_or_default() {
        "live.user.like" => Answer::new(200, r#"{"likes":4}"#),
        "index.index.index" => Answer::new(
            200,
            r#"{"status":1,"info":"执行完成","param":null,"event":"index"}"#,
        ),
        _ => Answer::new(422, r#"{"error":"not enough coins"}"#),
    }
}

fn server(backend: &Backend) -> (TestServer, tempfile::TempDir) {
    let config = format!(
        r#"
[mswoole]
app = "live"
path = "/live"

[apps.live]
auth = "token"
token_secrets = ["{SECRET}"]
backend_secret = "live-backend-secret-0123456789abcdef"
[apps.live.rpc]
url = "{url}"
"#,
        url = backend.url("/rpc")
    );
    TestServer::with_config(&config)
}

fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn exp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

#[tokio::test]
async fn without_a_valid_auth_the_handshake_is_refused_with_403() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let (status, body) = refused_handshake(&server, "/live").await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"status": 403, "info": "permission denied: connect with ?auth=CREDENTIAL", "param": null, "event": ""})
    );
    let (status, body) = refused_handshake(&server, "/live?auth=garbage").await;
    assert_eq!(status, 403);
    assert!(
        body["info"].as_str().unwrap().starts_with("invalid token"),
        "{body}"
    );
}

#[tokio::test]
async fn method_frames_reach_the_backend_and_every_frame_is_mswoole_shaped() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let auth = token(
        json!({"sub": "42", "exp": exp(), "rooms": ["room-7"], "info": {"type": "wechatUser", "nickname": "Ann"}}),
    );
    let mut client = server.ws(&format!("/live?auth={auth}")).await;
    server.wait_connections(1).await;

    client
        .send(&json!({"method": "live.user.like", "video": 9}).to_string())
        .await;
    assert_eq!(
        client.json().await,
        json!({"status": 200, "info": "success", "param": {"likes": 4}, "event": "live.user.like"})
    );
    let call = backend.seen()[0].json();
    assert_eq!(
        (
            call["user"].clone(),
            call["method"].clone(),
            call["data"].clone(),
            call["info"]["nickname"].clone()
        ),
        (
            json!("42"),
            json!("live.user.like"),
            json!({"video": 9}),
            json!("Ann")
        )
    );

    client
        .send(r#"{"method":"index.index.index","name":"hello"}"#)
        .await;
    assert_eq!(
        client.json().await,
        json!({"status": 1, "info": "执行完成", "param": null, "event": "index"}),
        "an answer already in MSwoole's shape is passed on as it is"
    );
    client.send(r#"{"method":"live.gift.send"}"#).await;
    assert_eq!(
        client.json().await,
        json!({"status": 422, "info": "not enough coins", "param": null, "event": "live.gift.send"})
    );
    client.send(r#"{"method":7}"#).await;
    assert_eq!(client.json().await["status"], 400);

    let (status, _) = server
        .post_json(
            "/v1/push",
            &json!({"app": "live", "to": "42", "event": "order", "data": {"id": 10}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        client.json().await,
        json!({"status": 200, "info": "", "param": {"id": 10}, "event": "order"})
    );
    let (_, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "live", "room": "room-7", "event": "gift", "data": "rose"}),
        )
        .await;
    assert_eq!(
        body["delivered"], 1,
        "the token's room was joined at connect"
    );
    assert_eq!(client.json().await["param"], "rose");
}

#[tokio::test]
async fn a_connection_closes_like_any_other() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let auth = token(json!({"sub": "1", "exp": exp()}));
    let client: Client = server.ws(&format!("/live?auth={auth}")).await;
    server.wait_connections(1).await;
    drop(client);
    server.wait_connections(0).await;
}
