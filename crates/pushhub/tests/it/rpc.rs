//! `rpc` frames: carried to the app's backend (a real local HTTP server here), signed,
//! answered with `reply` or `error` by id; nothing a backend does closes the connection.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::backend::{Answer, Backend, Recorded};
use crate::util::{Client, TestServer};

const SECRET: &str = "live-backend-secret-0123456789abcdef";

fn answer(request: &Recorded) -> Answer {
    let call = request.json();
    let data = &call["data"];
    match call["method"].as_str().unwrap_or_default() {
        "live.user.like" => Answer::new(
            200,
            json!({"likes": data["n"].as_i64().unwrap_or(0) + 1}).to_string(),
        ),
        "live.wait" => {
            let ms = data["ms"].as_u64().unwrap_or(0);
            Answer::new(200, json!({"waited": ms}).to_string()).after(Duration::from_millis(ms))
        }
        "live.fail" => Answer::new(422, r#"{"error":"not enough coins"}"#),
        "live.garbage" => Answer::new(200, "<html>"),
        "admin.ban" => Answer::new(200, r#""banned""#),
        _ => Answer::new(404, "{}"),
    }
}

fn server(backend: &Backend) -> (TestServer, tempfile::TempDir) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/rpc", closed.local_addr().unwrap());
    drop(closed);
    let config = format!(
        r#"
[apps.live]
auth = "none"
backend_secret = "{SECRET}"
[apps.live.rpc]
routes = {{ "live." = "{live}", "admin." = "{admin}" }}
timeout_ms = 500
max_in_flight_per_connection = 2

[apps.dead]
auth = "none"
backend_secret = "{SECRET}"
[apps.dead.rpc]
url = "{dead}"

[apps.plain]
auth = "none"
"#,
        live = backend.url("/rpc/live"),
        admin = backend.url("/rpc/admin"),
    );
    TestServer::with_config(&config)
}

async fn call(client: &mut Client, id: Value, method: &str, data: Value) -> Value {
    client
        .send(&json!({"type": "rpc", "id": id, "method": method, "data": data}).to_string())
        .await;
    client.json().await
}

#[tokio::test]
async fn a_call_reaches_the_backend_signed_and_its_answer_comes_back() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let (mut client, welcome) = server.native("live", "100").await;

    let reply = call(&mut client, json!(7), "live.user.like", json!({"n": 3})).await;
    assert_eq!(
        reply,
        json!({"type": "reply", "id": 7, "data": {"likes": 4}})
    );
    let reply = call(&mut client, json!("b"), "admin.ban", json!({"user": "9"})).await;
    assert_eq!(reply, json!({"type": "reply", "id": "b", "data": "banned"}));

    let seen = backend.seen();
    assert_eq!(seen[0].path_and_query, "/rpc/live");
    assert_eq!(seen[1].path_and_query, "/rpc/admin");
    assert_eq!(
        seen[0].json(),
        json!({"app": "live", "user": "100", "conn": welcome["conn"], "method": "live.user.like", "data": {"n": 3}})
    );
    let signature = seen[0].headers["x-pushhub-signature"].to_str().unwrap();
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .expect("t=UNIX,v1=HEX");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&seen[0].body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "the backend can verify who is calling");
}

#[tokio::test]
async fn calls_run_concurrently_are_matched_by_id_and_bounded_per_connection() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let (mut client, _) = server.native("live", "1").await;
    for (id, ms) in [("slow", 300), ("fast", 50)] {
        client
            .send(
                &json!({"type": "rpc", "id": id, "method": "live.wait", "data": {"ms": ms}})
                    .to_string(),
            )
            .await;
    }
    let busy = call(&mut client, json!("third"), "live.user.like", json!({})).await;
    assert_eq!(
        (
            busy["type"].as_str(),
            busy["id"].as_str(),
            busy["code"].as_str()
        ),
        (Some("error"), Some("third"), Some("rpc_busy"))
    );
    assert_eq!(client.json().await["id"], "fast");
    assert_eq!(client.json().await["id"], "slow");
    let after = call(&mut client, json!(1), "live.user.like", json!({"n": 0})).await;
    assert_eq!(
        after["data"],
        json!({"likes": 1}),
        "slots free up with replies"
    );
}

#[tokio::test]
async fn every_failure_is_an_error_frame_and_the_connection_stays_up() {
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let (mut client, _) = server.native("live", "1").await;
    for (method, code, message) in [
        ("live.fail", "rpc_failed", "not enough coins"),
        (
            "live.nothing",
            "rpc_failed",
            "the backend answered HTTP 404",
        ),
        ("live.garbage", "rpc_bad_answer", ""),
        (
            "shop.buy",
            "unknown_method",
            "no backend takes method \"shop.buy\"",
        ),
        ("bad method", "unknown_method", ""),
    ] {
        let error = call(&mut client, json!(method), method, json!({})).await;
        assert_eq!(
            (
                error["type"].as_str(),
                error["id"].as_str(),
                error["code"].as_str()
            ),
            (Some("error"), Some(method), Some(code)),
            "{error}"
        );
        if !message.is_empty() {
            assert_eq!(error["message"], message);
        }
    }
    let started = std::time::Instant::now();
    let timeout = call(&mut client, json!(9), "live.wait", json!({"ms": 3000})).await;
    assert_eq!(timeout["code"], "rpc_timeout");
    assert_eq!(
        timeout["message"],
        "the backend did not answer within 500 ms"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    client.send(r#"{"type":"ping","id":"still"}"#).await;
    assert_eq!(client.json().await, json!({"type": "pong", "id": "still"}));

    let (mut dead, _) = server.native("dead", "1").await;
    assert_eq!(
        call(&mut dead, json!(1), "x.y", json!({})).await["code"],
        "rpc_unavailable"
    );
    let (mut plain, _) = server.native("plain", "1").await;
    assert_eq!(
        call(&mut plain, json!(1), "x.y", json!({})).await["code"],
        "rpc_not_enabled"
    );
    let missing_id = json!({"type": "rpc", "method": "live.user.like"}).to_string();
    plain.send(&missing_id).await;
    assert_eq!(plain.json().await["code"], "bad_frame");
}
