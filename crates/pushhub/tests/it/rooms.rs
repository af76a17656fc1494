//! Rooms: clients `join` and `leave` them (as the app's policy allows), backends push to
//! them, list their members and add or remove users; membership ends with the connection.

use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::{Answer, Backend, Recorded};
use crate::util::{Client, TestServer};

const TOKEN_SECRET: &str = "vip-app-token-secret-0123456789abcdef";

fn room_answer(request: &Recorded) -> Answer {
    match request.json()["room"].as_str().unwrap_or_default() {
        "lobby" => Answer::new(200, "{}"),
        "slow" => Answer::new(200, "{}").after(Duration::from_secs(3)),
        _ => Answer::new(403, r#"{"error":"members only"}"#),
    }
}

fn server(backend: &Backend) -> (TestServer, tempfile::TempDir) {
    let config = format!(
        r#"
[apps.chat]
auth = "none"

[apps.vip]
auth = "token"
token_secrets = ["{TOKEN_SECRET}"]

[apps.gated]
auth = "none"
join_rooms = "webhook"
backend_secret = "gated-backend-secret-0123456789abcdef"
[apps.gated.room_webhook]
url = "{url}"
timeout_ms = 500
"#,
        url = backend.url("/rooms/check")
    );
    TestServer::with_config(&config)
}

async fn join(client: &mut Client, room: &str) -> Value {
    client
        .send(&json!({"type": "join", "id": room, "room": room}).to_string())
        .await;
    client.json().await
}

async fn push_room(server: &TestServer, app: &str, room: &str, data: &str) -> (u16, Value) {
    server
        .post_json(
            "/v1/push",
            &json!({"app": app, "room": room, "event": "say", "data": data}),
        )
        .await
}

async fn members(server: &TestServer, app: &str, room: &str) -> Vec<(String, u64)> {
    let (status, body) = server.get(&format!("/v1/apps/{app}/rooms/{room}")).await;
    assert_eq!(status, 200, "{body}");
    body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap().to_owned(),
                u["connections"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn clients_join_and_leave_rooms_and_backends_push_to_them() {
    let backend = Backend::start(room_answer).await;
    let (server, _dir) = server(&backend);
    let (mut alice, _) = server.native("chat", "alice").await;
    let (mut bob, _) = server.native("chat", "bob").await;
    let (mut carol, _) = server.native("chat", "carol").await;

    let joined = join(&mut alice, "r1").await;
    assert_eq!(
        (
            joined["type"].as_str(),
            joined["id"].as_str(),
            joined["room"].as_str(),
            joined["ch"].as_str()
        ),
        (Some("joined"), Some("r1"), Some("r1"), Some("chat:room:r1"))
    );
    assert_eq!(join(&mut bob, "r1").await["type"], "joined");
    assert_eq!(
        join(&mut bob, "r1").await["type"],
        "joined",
        "joining twice is harmless"
    );
    assert_eq!(
        members(&server, "chat", "r1").await,
        [("alice".to_owned(), 1), ("bob".to_owned(), 1)]
    );

    let (status, body) = push_room(&server, "chat", "r1", "hello room").await;
    assert_eq!(
        (status, body["delivered"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    for client in [&mut alice, &mut bob] {
        let msg = client.json().await;
        assert_eq!(
            (msg["ch"].as_str(), msg["data"].as_str()),
            (Some("chat:room:r1"), Some("hello room"))
        );
    }
    assert!(carol.silent_for(Duration::from_millis(100)).await);

    bob.send(r#"{"type":"leave","id":2,"room":"r1"}"#).await;
    assert_eq!(
        bob.json().await,
        json!({"type": "left", "id": 2, "room": "r1"})
    );
    let (_, body) = push_room(&server, "chat", "r1", "bob left").await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(alice.json().await["data"], "bob left");
    assert!(bob.silent_for(Duration::from_millis(100)).await);

    // Server-side: carol is put in, then taken out.
    let (status, body) = server
        .post_json("/v1/apps/chat/rooms/r1/members", &json!({"user": "carol"}))
        .await;
    assert_eq!((status, body), (200, json!({"joined": 1})));
    let (_, body) = push_room(&server, "chat", "r1", "welcome carol").await;
    assert_eq!(body["delivered"], 2);
    assert_eq!(carol.json().await["data"], "welcome carol");
    let response = crate::util::http()
        .delete(server.api_url("/v1/apps/chat/rooms/r1/members/carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"left": 1}));

    // Membership is presence: it ends with the connection.
    alice.ws.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !members(&server, "chat", "r1").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice never left r1"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, body) = push_room(&server, "chat", "r1", "anyone?").await;
    assert_eq!(body["delivered"], 0);
}

#[tokio::test]
async fn token_apps_join_the_rooms_their_token_lists() {
    let backend = Backend::start(room_answer).await;
    let (server, _dir) = server(&backend);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "7", "exp": exp, "rooms": ["r1"]}),
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    )
    .unwrap();
    let mut client = server.ws(&format!("/v1/ws?app=vip&token={token}")).await;
    assert_eq!(client.json().await["type"], "welcome");
    assert_eq!(join(&mut client, "r1").await["type"], "joined");
    let refused = join(&mut client, "r2").await;
    assert_eq!(
        (
            refused["type"].as_str(),
            refused["id"].as_str(),
            refused["code"].as_str()
        ),
        (Some("error"), Some("r2"), Some("join_forbidden"))
    );
    assert_eq!(
        refused["message"],
        "your credential does not list room \"r2\""
    );
}

#[tokio::test]
async fn a_room_webhook_decides_joins_and_its_failures_are_errors() {
    let backend = Backend::start(room_answer).await;
    let (server, _dir) = server(&backend);
    let (mut client, welcome) = server.native("gated", "5").await;
    assert_eq!(join(&mut client, "lobby").await["type"], "joined");
    let refused = join(&mut client, "backstage").await;
    assert_eq!(
        (refused["code"].as_str(), refused["message"].as_str()),
        (Some("join_forbidden"), Some("members only"))
    );
    let slow = join(&mut client, "slow").await;
    assert_eq!(
        (slow["code"].as_str(), slow["message"].as_str()),
        (
            Some("join_unavailable"),
            Some("the backend did not answer within 500 ms")
        )
    );
    let asked = &backend.seen()[0];
    assert_eq!(
        asked.json(),
        json!({"app": "gated", "user": "5", "conn": welcome["conn"], "room": "lobby"})
    );
    assert!(asked.headers.contains_key("x-pushhub-signature"));
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(
        client.json().await["type"],
        "pong",
        "the connection stays up"
    );
}

#[tokio::test]
async fn bad_room_requests_get_clear_errors() {
    let backend = Backend::start(room_answer).await;
    let (server, _dir) = server(&backend);
    let (mut client, _) = server.native("chat", "1").await;
    let bad = join(&mut client, "a,b").await;
    assert_eq!(bad["code"], "invalid_room");
    client.send(r#"{"type":"join"}"#).await;
    assert_eq!(client.json().await["code"], "bad_frame");

    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "chat", "to": "1", "room": "r1", "data": 1}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = push_room(&server, "chat", "a*", "x").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_room"))
    );
    let (status, body) = server
        .post_json("/v1/apps/chat/rooms/r1/members", &json!({"who": "1"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
}
