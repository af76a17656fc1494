//! `POST /v1/batch` and idempotent pushes against a real server: answers in order, one bad
//! entry failing alone, the broadcast form, the limits, and a retried push published once
//! (on one node, and across two nodes on Redis).

use std::time::Duration;

use pushhub_testkit::RedisServer;
use serde_json::{json, Value};

use crate::cluster::{start_nodes, wait_healthy};
use crate::util::{Client, TestServer};

/// The next `n` messages a client receives: (channel, offset, data).
async fn messages(client: &mut Client, n: usize) -> Vec<(String, u64, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = client.json().await;
        if frame["type"] == "msg" {
            out.push((
                frame["ch"].as_str().unwrap_or_default().to_owned(),
                frame["off"].as_u64().unwrap_or_default(),
                frame["data"].clone(),
            ));
        }
    }
    out
}

/// Mixed good and bad entries: each answered in order, the bad ones with their own error,
/// the good ones published with their positions, delivered counts and order kept.
#[tokio::test]
async fn each_push_is_answered_in_order_and_a_bad_entry_fails_alone() {
    let server = TestServer::start();
    let (mut alice, _) = server.native("demo", "alice").await;
    let (mut bob, _) = server.native("demo", "bob").await;
    let (status, body) = server
        .post_json(
            "/v1/batch",
            &json!({"app": "demo", "pushes": [
                {"to": "alice", "event": "order", "data": {"n": 1}},
                {"to": "bob", "event": "order", "data": {"n": 2}},
                {"to": "alice", "room": "lobby", "data": {"n": "both targets"}},
                {"to": "alice", "colour": "red"},
                {"to": "a,,b", "data": {"n": "bad target"}},
                {"to": "alice", "event": "order", "data": {"n": 3}},
                {"room": "empty", "data": {"n": 4}},
                "not an object",
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["published"], 4, "{body}");
    assert_eq!(body["failed"], 4, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 8);
    assert_eq!(results[0]["delivered"], 1, "{body}");
    assert_eq!(results[0]["off"], 1);
    assert_eq!(results[0]["channels"][0]["ch"], "demo:user:alice");
    assert_eq!(results[1]["delivered"], 1);
    assert_eq!(results[1]["channels"][0]["ch"], "demo:user:bob");
    assert_eq!(results[2]["error"]["code"], "invalid_request", "{body}");
    assert_eq!(results[3]["error"]["code"], "invalid_request");
    assert!(
        results[3]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "{body}"
    );
    assert_eq!(results[4]["error"]["code"], "invalid_target", "{body}");
    assert_eq!(results[5]["delivered"], 1);
    assert_eq!(
        results[5]["off"], 2,
        "alice's second push is her offset 2: {body}"
    );
    assert_eq!(
        results[5]["channels"][0]["epoch"],
        results[0]["channels"][0]["epoch"]
    );
    assert_eq!(results[6]["delivered"], 0);
    assert_eq!(results[6]["channels"][0]["ch"], "demo:room:empty");
    assert_eq!(results[7]["error"]["code"], "invalid_request");
    let ids: Vec<&Value> = [0, 1, 5, 6].iter().map(|&i| &results[i]["id"]).collect();
    for (i, id) in ids.iter().enumerate() {
        assert!(id.is_string(), "{body}");
        assert!(!ids[i + 1..].contains(id), "ids are distinct: {body}");
    }

    let got = messages(&mut alice, 2).await;
    assert_eq!(
        got,
        vec![
            ("demo:user:alice".into(), 1, json!({"n": 1})),
            ("demo:user:alice".into(), 2, json!({"n": 3})),
        ]
    );
    assert_eq!(
        messages(&mut bob, 1).await,
        vec![("demo:user:bob".into(), 1, json!({"n": 2}))]
    );
    assert!(alice.silent_for(Duration::from_millis(200)).await);
    assert!(bob.silent_for(Duration::from_millis(50)).await);
}

/// The broadcast form: one message (one id) to independent targets, each answered with
/// its own positions and count; a bad target fails alone; a client in two targets gets
/// the message once.
#[tokio::test]
async fn broadcast_sends_one_message_to_each_target() {
    let server = TestServer::start();
    let (mut alice, _) = server.native("demo", "alice").await;
    let (mut bob, _) = server.native("demo", "team/bob").await;
    let (status, body) = server
        .post_json(
            "/v1/batch",
            &json!({"app": "demo", "event": "news", "data": {"text": "hello"}, "broadcast": [
                {"to": "alice"},
                {"to": ""},
                {"to": "team/*"},
                {"to": "team/bob"},
                {"room": "lobby"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["published"].as_u64(), body["failed"].as_u64()),
        (Some(4), Some(1))
    );
    let results = body["results"].as_array().expect("results");
    let id = &results[0]["id"];
    assert!(id.is_string(), "{body}");
    for i in [0, 2, 3, 4] {
        assert_eq!(&results[i]["id"], id, "one message: {body}");
    }
    assert_eq!(results[0]["channels"][0]["ch"], "demo:user:alice");
    assert_eq!(results[0]["delivered"], 1);
    assert_eq!(results[1]["error"]["code"], "invalid_target", "{body}");
    assert_eq!(results[2]["channels"][0]["ch"], "demo:group:team");
    assert_eq!(
        results[2]["delivered"].as_u64().unwrap_or(9)
            + results[3]["delivered"].as_u64().unwrap_or(9),
        1,
        "bob is counted once, for the first target that reached him: {body}"
    );
    assert_eq!(results[4]["delivered"], 0);
    assert_eq!(results[4]["channels"][0]["ch"], "demo:room:lobby");

    let frame = alice.json().await;
    assert_eq!(
        (&frame["event"], &frame["data"]),
        (&json!("news"), &json!({"text": "hello"}))
    );
    let frame = bob.json().await;
    assert_eq!(frame["data"], json!({"text": "hello"}), "{frame}");
    assert!(
        bob.silent_for(Duration::from_millis(200)).await,
        "bob got it twice"
    );
}

/// Whole-request errors: JSON answers with 400 or 413, nothing published.
#[tokio::test]
async fn the_whole_request_fails_only_when_it_cannot_be_read() {
    let (server, _dir) = TestServer::with_config(
        "[limits]\nmax_batch = 3\nmax_body_bytes = 1024\nmax_batch_body_bytes = 2048\n[apps.demo]\nauth = \"none\"\n",
    );
    let (mut alice, _) = server.native("demo", "alice").await;
    let four: Vec<Value> = (0..4).map(|n| json!({"to": "alice", "data": n})).collect();
    let cases = [
        (
            json!({"app": "demo", "pushes": four}),
            400,
            "too_many_pushes",
        ),
        (json!({"app": "demo"}), 400, "invalid_request"),
        (
            json!({"app": "demo", "pushes": [], "broadcast": []}),
            400,
            "invalid_request",
        ),
        (
            json!({"app": "demo", "pushes": [], "data": 1}),
            400,
            "invalid_request",
        ),
        (
            json!({"app": "demo", "pushes": {"to": "alice"}}),
            400,
            "invalid_request",
        ),
        (
            json!({"app": "demo", "pushes": [{"to": "alice", "data": "x".repeat(3000)}]}),
            413,
            "body_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = server.post_json("/v1/batch", &body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
    }
    let (status, answer) = server
        .post_raw("/v1/batch", "application/json", "{\"app\":")
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("bad_json"))
    );
    let three: Vec<Value> = (0..3).map(|n| json!({"to": "alice", "data": n})).collect();
    let (status, answer) = server
        .post_json("/v1/batch", &json!({"app": "demo", "pushes": three}))
        .await;
    assert_eq!((status, &answer["published"]), (200, &json!(3)), "{answer}");
    let got: Vec<Value> = messages(&mut alice, 3)
        .await
        .into_iter()
        .map(|m| m.2)
        .collect();
    assert_eq!(
        got,
        vec![json!(0), json!(1), json!(2)],
        "only the accepted batch arrived"
    );
}

/// Lost and duplicated messages among `expected` (data values) in what a client got.
fn lost_and_duplicated(expected: &[Value], got: &[Value]) -> (usize, usize) {
    let lost = expected.iter().filter(|e| !got.contains(e)).count();
    let duplicated = got.len() - expected.iter().filter(|e| got.contains(e)).count();
    (lost, duplicated)
}

/// A push retried with its idempotency key (through `/v1/push` or a batch entry) is
/// published once and every retry gets the first answer; the client sees one message.
#[tokio::test]
async fn a_retried_push_with_its_key_is_published_once() {
    let server = TestServer::start();
    let (mut alice, _) = server.native("demo", "alice").await;
    let push =
        json!({"app": "demo", "to": "alice", "data": {"order": 10}, "idempotency_key": "order-10"});
    let (status, first) = server.post_json("/v1/push", &push).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((&first["delivered"], &first["off"]), (&json!(1), &json!(1)));
    for _ in 0..3 {
        let (status, again) = server.post_json("/v1/push", &push).await;
        assert_eq!(
            (status, &again),
            (200, &first),
            "a retry gets the first answer"
        );
    }
    let (status, body) = server
        .post_json(
            "/v1/batch",
            &json!({"app": "demo", "pushes": [
                {"to": "alice", "data": {"order": 10}, "idempotency_key": "order-10"},
                {"to": "alice", "data": {"order": 11}, "idempotency_key": "order-11"},
                {"to": "alice", "data": {"order": 11}, "idempotency_key": "order-11"},
                {"to": "alice", "data": {"order": 12}, "idempotency_key": ""},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = &body["results"];
    assert_eq!(results[0], first, "{body}");
    assert_eq!(results[1]["off"], 2, "{body}");
    assert_eq!(
        results[2], results[1],
        "a repeat within one batch is the same push: {body}"
    );
    assert_eq!(
        results[3]["error"]["code"], "invalid_idempotency_key",
        "{body}"
    );
    let (status, other_app) = server
        .post_json(
            "/v1/push",
            &json!({"app": "other", "to": "alice", "data": 1, "idempotency_key": "order-10"}),
        )
        .await;
    assert_eq!(status, 200, "{other_app}");
    assert_ne!(other_app["id"], first["id"], "keys are per app");
    let conn = json!({"app": "demo", "conn": "x-1", "data": 1, "idempotency_key": "k"});
    let (status, refused) = server.post_json("/v1/push", &conn).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (400, &json!("invalid_request"))
    );

    let got: Vec<Value> = messages(&mut alice, 2)
        .await
        .into_iter()
        .map(|m| m.2)
        .collect();
    let silent = alice.silent_for(Duration::from_millis(300)).await;
    let expected = [json!({"order": 10}), json!({"order": 11})];
    let (lost, duplicated) = lost_and_duplicated(&expected, &got);
    println!(
        "idempotent retries: lost {lost}, duplicated {}",
        duplicated + usize::from(!silent)
    );
    assert_eq!((lost, duplicated, silent), (0, 0, true), "{got:?}");
}

/// With the Redis engine the key holds across nodes: a retry through another node gets
/// the first answer, and a client on either node sees the message once.
#[tokio::test]
async fn a_retry_through_another_node_is_published_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = start_nodes(2, &redis.url());
    for node in &nodes {
        wait_healthy(node).await;
    }
    let (mut alice, _) = nodes[1].native("demo", "alice").await;
    let push =
        json!({"app": "demo", "to": "alice", "data": {"order": 7}, "idempotency_key": "order-7"});
    let (status, first) = nodes[0].post_json("/v1/push", &push).await;
    assert_eq!(status, 200, "{first}");
    let (status, body) = nodes[1]
        .post_json(
            "/v1/batch",
            &json!({"app": "demo", "pushes": [
                {"to": "alice", "data": {"order": 7}, "idempotency_key": "order-7"},
                {"to": "alice", "data": {"order": 8}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0], first,
        "the other node answers with the first answer"
    );
    assert_eq!(body["results"][1]["off"], 2, "{body}");
    let got: Vec<Value> = messages(&mut alice, 2)
        .await
        .into_iter()
        .map(|m| m.2)
        .collect();
    let silent = alice.silent_for(Duration::from_millis(300)).await;
    let (lost, duplicated) = lost_and_duplicated(&[json!({"order": 7}), json!({"order": 8})], &got);
    println!(
        "idempotent retry across nodes: lost {lost}, duplicated {}",
        duplicated + usize::from(!silent)
    );
    assert_eq!((lost, duplicated, silent), (0, 0, true), "{got:?}");
}
