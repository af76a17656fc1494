//! Connection targets: `/v1/push` with `"conn"` (seed 002's `$serv->push($fd, …)`, seed
//! 001's `sendSuccessMessage($fd, …)`) reaches that one connection, rendered by its own
//! dialect, on whichever node holds it; a closed or unknown one is refused with its own
//! error. Close notes (MSwoole's `fdAddCloseKey` / `fdAddController`), registered through
//! the API or an RPC answer, arrive in the connection's `disconnect` webhook event.

use std::time::Duration;

use pushhub_testkit::RedisServer;
use serde_json::{json, Value};

use crate::backend::{Answer, Backend, Recorded};
use crate::cluster::wait_healthy;
use crate::util::{TestServer, WAIT};

const BACKEND_SECRET: &str = "live-backend-secret-0123456789abcdef";
const TOKEN_SECRET: &str = "live-token-secret-0123456789abcdefgh";

/// Push `data` with `event` to connection `conn` of `app` through `server`'s API.
async fn push_to(server: &TestServer, app: &str, conn: &str, data: Value) -> (u16, Value) {
    server
        .post_json(
            "/v1/push",
            &json!({"app": app, "conn": conn, "event": "note", "data": data}),
        )
        .await
}

/// Change the close notes of connection `conn` of app `live`.
async fn close_notes(server: &TestServer, conn: &str, change: Value) -> (u16, Value) {
    server
        .post_json(&format!("/v1/apps/live/conns/{conn}/close-notes"), &change)
        .await
}

/// The `disconnect` events the backend received at `/events` so far.
fn disconnects(backend: &Backend) -> Vec<Value> {
    backend
        .seen()
        .iter()
        .filter(|r| r.path_and_query == "/events")
        .flat_map(|batch| {
            batch.json()["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|event| event["type"] == "disconnect")
        .collect()
}

/// Wait for the `disconnect` event of connection `conn`.
async fn disconnect_of(backend: &Backend, conn: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(event) = disconnects(backend).into_iter().find(|e| e["conn"] == conn) {
            return event;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no disconnect event for {conn}: {:?}",
            backend.seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_push_to_one_connection_reaches_it_alone_and_live_only() {
    let server = TestServer::start();
    let (mut first, welcome) = server.native("demo", "7").await;
    let (mut second, _) = server.native("demo", "7").await;
    let conn = welcome["conn"].as_str().unwrap();

    let (status, body) = push_to(&server, "demo", conn, json!({"fd": "only you"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivered"], 1, "{body}");
    assert_eq!(body["channels"], json!([]), "{body}");
    assert!(body.get("off").is_none(), "{body}");
    let frame = first.json().await;
    assert_eq!(
        (
            &frame["type"],
            &frame["ch"],
            &frame["epoch"],
            &frame["off"],
            &frame["event"],
            &frame["data"],
            &frame["id"],
        ),
        (
            &json!("msg"),
            &json!(format!("demo:conn:{conn}")),
            &json!(""),
            &json!(0),
            &json!("note"),
            &json!({"fd": "only you"}),
            &body["id"],
        ),
        "{frame}"
    );

    // The user's other connection did not get it: its next frame is the next push.
    server.push("7", json!("to the user")).await;
    let next = second.json().await;
    assert_eq!(
        (&next["ch"], &next["data"]),
        (&json!("demo:user:7"), &json!("to the user"))
    );
    let next = first.json().await;
    assert_eq!(next["data"], "to the user", "{next}");
}

#[tokio::test]
async fn a_closed_unknown_or_malformed_connection_gets_its_own_error() {
    let server = TestServer::start();
    let (mut client, welcome) = server.native("demo", "7").await;
    let conn = welcome["conn"].as_str().unwrap().to_owned();
    client.ws.close(None).await.unwrap();
    server.wait_connections(0).await;

    let (status, body) = push_to(&server, "demo", &conn, json!(1)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_conn")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&conn),
        "{body}"
    );
    // A well-formed name of a node that does not exist, and a connection of another app.
    let (mut other, welcome) = server.native("other", "1").await;
    let foreign = welcome["conn"].as_str().unwrap();
    for (app, name) in [("demo", "abcdefgh-1"), ("demo", foreign)] {
        let (status, body) = push_to(&server, app, name, json!(1)).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("unknown_conn")),
            "{body}"
        );
    }
    for bad in ["", "nope", "abcdefgh-", "abcdefgh-xyz", "ABCDEFGH-1"] {
        let (status, body) = push_to(&server, "demo", bad, json!(1)).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_conn")),
            "{bad:?}: {body}"
        );
    }
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "demo", "to": "7", "conn": foreign, "data": 1}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    let (status, body) = server
        .post_json(
            &format!("/v1/apps/demo/conns/{conn}/close-notes"),
            &json!({"add_close_keys": ["k"]}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_conn")),
        "{body}"
    );
    // The other app's connection is untouched by all this, and still takes its pushes.
    let (status, _) = push_to(&server, "other", foreign, json!("still here")).await;
    assert_eq!(status, 200);
    assert_eq!(other.json().await["data"], "still here");
}

#[tokio::test]
async fn close_notes_from_the_api_are_named_in_the_disconnect_event() {
    let backend = Backend::start(|_| Answer::new(200, "{}")).await;
    let config = format!(
        r#"
[apps.live]
auth = "none"
backend_secret = "{BACKEND_SECRET}"
[apps.live.events]
url = "{url}"
max_delay_ms = 50
"#,
        url = backend.url("/events")
    );
    let (server, _dir) = TestServer::with_config(&config);
    let (mut client, welcome) = server.native("live", "7").await;
    let conn = welcome["conn"].as_str().unwrap().to_owned();

    let (status, body) = close_notes(
        &server,
        &conn,
        json!({"add_controllers": ["Live.User"], "add_close_keys": ["room:42", "user:7"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        close_notes(&server, &conn, json!({"remove_close_keys": ["user:7"]})).await;
    assert_eq!(status, 200, "{body}");

    // Bad changes are refused whole, each with its own error.
    let many: Vec<String> = (0..32).map(|i| format!("k{i}")).collect();
    let (status, body) = close_notes(&server, &conn, json!({"add_close_keys": many})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("close_notes_full")),
        "{body}"
    );
    for bad in [
        json!({"add_close_keys": [""]}),
        json!({"add_close_keys": ["a\u{0}b"]}),
        json!({"add_controllers": ["x".repeat(257)]}),
    ] {
        let (status, body) = close_notes(&server, &conn, bad.clone()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_close_notes")),
            "{bad}: {body}"
        );
    }
    let (status, body) = close_notes(&server, &conn, json!({"add_keys": ["k"]})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_request")),
        "{body}"
    );

    client.ws.close(None).await.unwrap();
    let event = disconnect_of(&backend, &conn).await;
    assert_eq!(event["controllers"], json!(["Live.User"]), "{event}");
    assert_eq!(event["close_keys"], json!(["room:42"]), "{event}");
}

fn token(user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The MSwoole habit end to end: a controller (the backend's RPC handler) registers close
/// notes in its answer and the server later pushes to the caller's `fd` (its `conn`).
fn mswoole_backend(request: &Recorded) -> Answer {
    if request.path_and_query != "/rpc" {
        return Answer::new(200, "{}");
    }
    match request.json()["method"].as_str().unwrap_or_default() {
        "live.user.enter" => Answer::new(
            200,
            r#"{"entered":true,"_pushhub":{"close_notes":{"add_controllers":["Live.User"],"add_close_keys":["room:42"]}}}"#,
        ),
        "live.user.bad" => Answer::new(
            200,
            r#"{"entered":true,"_pushhub":{"close_notes":{"add_close_keys":[""]}}}"#,
        ),
        _ => Answer::new(404, "{}"),
    }
}

#[tokio::test]
async fn an_mswoole_controller_registers_close_notes_in_its_answer_and_pushes_to_its_fd() {
    let backend = Backend::start(mswoole_backend).await;
    let config = format!(
        r#"
[mswoole]
app = "live"
path = "/live"

[apps.live]
auth = "token"
token_secrets = ["{TOKEN_SECRET}"]
backend_secret = "{BACKEND_SECRET}"
[apps.live.rpc]
url = "{rpc}"
[apps.live.events]
url = "{events}"
max_delay_ms = 50
"#,
        rpc = backend.url("/rpc"),
        events = backend.url("/events"),
    );
    let (server, _dir) = TestServer::with_config(&config);
    let mut client = server.ws(&format!("/live?auth={}", token("42"))).await;
    server.wait_connections(1).await;

    client.send(r#"{"method":"live.user.enter"}"#).await;
    assert_eq!(
        client.json().await,
        json!({"status": 200, "info": "success", "param": {"entered": true}, "event": "live.user.enter"}),
        "the directive is taken out of the reply"
    );
    client.send(r#"{"method":"live.user.bad"}"#).await;
    let refused = client.json().await;
    assert_eq!(refused["event"], "live.user.bad", "{refused}");
    assert!(
        refused["info"]
            .as_str()
            .unwrap()
            .contains("_pushhub.close_notes"),
        "a malformed directive is the backend's error: {refused}"
    );
    let call = backend
        .seen()
        .into_iter()
        .find(|r| r.path_and_query == "/rpc")
        .unwrap()
        .json();
    let fd = call["conn"].as_str().unwrap().to_owned();

    // `sendSuccessMessage($fd, …)`: the connection's own dialect renders the push.
    let (status, body) = push_to(&server, "live", &fd, json!("执行完成")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        client.json().await,
        json!({"status": 200, "info": "", "param": "执行完成", "event": "note"})
    );

    client.ws.close(None).await.unwrap();
    let event = disconnect_of(&backend, &fd).await;
    assert_eq!(
        (&event["controllers"], &event["close_keys"]),
        (&json!(["Live.User"]), &json!(["room:42"])),
        "{event}"
    );
}

/// Across nodes: a push and a close note through one node reach a connection on another;
/// once it closed, the first node refuses a push to it (not just because it is not local).
#[tokio::test]
async fn a_connection_target_crosses_nodes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let backend = Backend::start(|_| Answer::new(200, "{}")).await;
    let config = format!(
        r#"
engine = "redis"
[redis]
urls = ["{redis}"]
[apps.live]
auth = "none"
backend_secret = "{BACKEND_SECRET}"
[apps.live.events]
url = "{url}"
max_delay_ms = 50
"#,
        redis = redis.url(),
        url = backend.url("/events")
    );
    let started: Vec<_> = (0..2).map(|_| TestServer::with_config(&config)).collect();
    let nodes: Vec<&TestServer> = started.iter().map(|(node, _)| node).collect();
    for node in &nodes {
        wait_healthy(node).await;
    }
    let (mut client, welcome) = nodes[1].native("live", "7").await;
    let conn = welcome["conn"].as_str().unwrap().to_owned();

    let (status, body) = push_to(nodes[0], "live", &conn, json!({"hop": 1})).await;
    assert_eq!((status, &body["delivered"]), (200, &json!(1)), "{body}");
    let frame = client.json().await;
    assert_eq!(
        (&frame["ch"], &frame["off"], &frame["data"]),
        (
            &json!(format!("live:conn:{conn}")),
            &json!(0),
            &json!({"hop": 1})
        ),
        "{frame}"
    );
    let (status, body) = close_notes(nodes[0], &conn, json!({"add_close_keys": ["room:9"]})).await;
    assert_eq!(status, 200, "{body}");
    // A push after the note, through the same bus, arrives after the note was applied.
    push_to(nodes[0], "live", &conn, json!({"hop": 2})).await;
    assert_eq!(client.json().await["data"], json!({"hop": 2}));

    client.ws.close(None).await.unwrap();
    let event = disconnect_of(&backend, &conn).await;
    assert_eq!(event["close_keys"], json!(["room:9"]), "{event}");
    // Presence forgets the connection just after its disconnect event: wait for that.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = push_to(nodes[0], "live", &conn, json!("late")).await;
        if status == 404 {
            assert_eq!(body["error"]["code"], "unknown_conn", "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepted: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
