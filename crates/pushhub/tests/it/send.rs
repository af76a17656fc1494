//! `send` frames: a client sends an event to another user of its app (seed 002's
//! `alertTip`), when the app allows it, optionally vetted by the backend.

use serde_json::{json, Value};

use crate::backend::{Answer, Backend, Recorded};
use crate::util::{Client, TestServer};

fn vet(request: &Recorded) -> Answer {
    match request.json()["event"].as_str() {
        Some("spam") => Answer::new(403, r#"{"error":"no spam"}"#),
        _ => Answer::new(204, ""),
    }
}

fn server(backend: &Backend) -> (TestServer, tempfile::TempDir) {
    let config = format!(
        r#"
[apps.chat]
auth = "none"
client_send = "open"

[apps.plain]
auth = "none"

[apps.vetted]
auth = "none"
client_send = "webhook"
backend_secret = "vetted-backend-secret-0123456789abcdef"
[apps.vetted.send_webhook]
url = "{url}"
"#,
        url = backend.url("/vet")
    );
    TestServer::with_config(&config)
}

async fn send(client: &mut Client, to: &str, event: &str, data: Value) -> Value {
    client
        .send(&json!({"type": "send", "id": 1, "to": to, "event": event, "data": data}).to_string())
        .await;
    client.json().await
}

#[tokio::test]
async fn a_client_sends_an_event_to_every_connection_of_another_user() {
    let backend = Backend::start(vet).await;
    let (server, _dir) = server(&backend);
    let (mut alice, _) = server.native("chat", "alice").await;
    let (mut bob_phone, _) = server.native("chat", "bob").await;
    let (mut bob_laptop, _) = server.native("chat", "bob").await;

    let sent = send(&mut alice, "bob", "alertTip", json!({"msg": "new reply"})).await;
    assert_eq!(
        (
            sent["type"].as_str(),
            sent["id"].as_u64(),
            sent["ch"].as_str(),
            sent["off"].as_u64()
        ),
        (Some("sent"), Some(1), Some("chat:user:bob"), Some(1))
    );
    for bob in [&mut bob_phone, &mut bob_laptop] {
        let msg = bob.json().await;
        assert_eq!(
            (
                msg["event"].as_str(),
                msg["from"].as_str(),
                msg["data"].clone()
            ),
            (Some("alertTip"), Some("alice"), json!({"msg": "new reply"}))
        );
    }

    let offline = send(&mut alice, "carol", "alertTip", json!(1)).await;
    assert_eq!(offline["type"], "sent", "kept for carol to resume");
    let bad = send(&mut alice, "a,b", "x", json!(1)).await;
    assert_eq!(
        (bad["type"].as_str(), bad["code"].as_str()),
        (Some("error"), Some("invalid_user"))
    );

    let (mut plain, _) = server.native("plain", "1").await;
    let refused = send(&mut plain, "2", "x", json!(1)).await;
    assert_eq!(refused["code"], "send_not_allowed");
}

#[tokio::test]
async fn the_backend_may_vet_each_message() {
    let backend = Backend::start(vet).await;
    let (server, _dir) = server(&backend);
    let (mut sender, welcome) = server.native("vetted", "1").await;
    let (mut receiver, _) = server.native("vetted", "2").await;
    let refused = send(&mut sender, "2", "spam", json!("buy now")).await;
    assert_eq!(
        (refused["code"].as_str(), refused["message"].as_str()),
        (Some("send_forbidden"), Some("no spam"))
    );
    assert_eq!(
        send(&mut sender, "2", "hello", json!("hi")).await["type"],
        "sent"
    );
    assert_eq!(
        receiver.json().await["data"],
        "hi",
        "only the vetted message arrives"
    );
    assert_eq!(
        backend.seen()[1].json(),
        json!({"app": "vetted", "from": "1", "conn": welcome["conn"], "to": "2", "event": "hello", "data": "hi"})
    );
}
