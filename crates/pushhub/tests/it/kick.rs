//! `POST /v1/disconnect`: a backend closes a user's connections (or one of them) with a
//! reason the client sees, and says whether it may come back.

use serde_json::json;

use crate::util::TestServer;

#[tokio::test]
async fn a_backend_disconnects_a_user_or_one_connection_with_a_reason() {
    let server = TestServer::start();
    let (mut phone, _) = server.native("demo", "1").await;
    let (mut laptop, welcome) = server.native("demo", "1").await;
    let (mut other, _) = server.native("demo", "2").await;
    server.wait_connections(3).await;

    let laptop_conn = welcome["conn"].as_str().unwrap();
    let (status, body) = server
        .post_json(
            "/v1/disconnect",
            &json!({"app": "demo", "user": "1", "conn": laptop_conn, "reconnect": false}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"disconnected": 1})));
    assert_eq!(
        laptop.closed().await,
        (4516, "disconnected by the server: do not reconnect".into())
    );

    server.push("1,2", json!("before")).await;
    let (status, body) = server
        .post_json(
            "/v1/disconnect",
            &json!({"app": "demo", "user": "1", "reason": "logged out elsewhere"}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"disconnected": 1})));
    assert_eq!(
        phone.json().await["data"],
        "before",
        "what was queued goes out first"
    );
    assert_eq!(phone.closed().await, (4009, "logged out elsewhere".into()));

    assert_eq!(other.json().await["data"], "before");
    server.push("2", json!("after")).await;
    assert_eq!(
        other.json().await["data"],
        "after",
        "other users are untouched"
    );

    let (status, body) = server
        .post_json("/v1/disconnect", &json!({"app": "demo", "user": "nobody"}))
        .await;
    assert_eq!((status, body), (200, json!({"disconnected": 0})));
}

#[tokio::test]
async fn bad_disconnect_requests_get_clear_errors() {
    let server = TestServer::start();
    for (body, code) in [
        (
            json!({"app": "demo", "user": "1", "conn": "zz"}),
            "invalid_conn",
        ),
        (
            json!({"app": "demo", "user": "1", "reason": "x".repeat(200)}),
            "invalid_reason",
        ),
        (
            json!({"app": "demo", "user": "1", "reason": "a\nb"}),
            "invalid_reason",
        ),
        (json!({"app": "demo"}), "invalid_request"),
        (json!({"app": "demo", "user": "a,b"}), "invalid_user"),
    ] {
        let (status, answer) = server.post_json("/v1/disconnect", &body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
}

/// Connection ids carry the node's name, so ids from two nodes never collide: a conn of
/// another node (or of this one before a restart) closes nothing here, and the bare
/// counters every node once started from are not connection ids any more.
#[tokio::test]
async fn connection_ids_name_their_node() {
    let server = TestServer::start();
    let (mut client, welcome) = server.native("demo", "1").await;
    let conn = welcome["conn"].as_str().unwrap().to_owned();
    let (node, id) = conn.split_once('-').expect("node-id");
    assert_eq!(node.len(), 8, "{conn}");
    assert!(node
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert!(u64::from_str_radix(id, 16).is_ok(), "{conn}");
    let other_node = if node == "aaaaaaaa" {
        "bbbbbbbb"
    } else {
        "aaaaaaaa"
    };
    let (status, body) = server
        .post_json(
            "/v1/disconnect",
            &json!({"app": "demo", "user": "1", "conn": format!("{other_node}-{id}")}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"disconnected": 0})));
    let (status, body) = server
        .post_json(
            "/v1/disconnect",
            &json!({"app": "demo", "user": "1", "conn": id}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_conn"))
    );
    server.push("1", json!("still here")).await;
    let message = client.json().await;
    assert_eq!(message["data"], "still here");
    let message_id = message["id"].as_str().unwrap();
    assert!(
        message_id.starts_with(&format!("{node}-")),
        "message ids carry the node too: {message_id}"
    );
}

/// Read an SSE response until it ends; its `data:` payloads as JSON, in order.
pub(crate) async fn sse_events_to_the_end(response: reqwest::Response) -> Vec<serde_json::Value> {
    let body = tokio::time::timeout(crate::util::WAIT, response.text())
        .await
        .expect("the stream ends")
        .expect("the stream reads");
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_kick_ends_sse_streams_and_waiting_polls_with_its_code_and_reason() {
    let server = TestServer::start();
    let again = crate::operator::sse(&server, "sse-1").await;
    let gone = crate::operator::sse(&server, "sse-2").await;
    let poll = {
        let url = format!(
            "http://{}/v1/poll?app=demo&user=poll-1&timeout=10",
            server.client
        );
        tokio::spawn(async move { crate::util::http().get(url).send().await.unwrap() })
    };
    server.wait_connections(3).await;
    server.push("sse-1", json!("before")).await;

    for (user, reconnect) in [("sse-1", true), ("sse-2", false), ("poll-1", false)] {
        let (status, body) = server
            .post_json(
                "/v1/disconnect",
                &json!({"app": "demo", "user": user, "reconnect": reconnect, "reason": "maintenance"}),
            )
            .await;
        assert_eq!((status, body), (200, json!({"disconnected": 1})));
    }
    let events = sse_events_to_the_end(again).await;
    let kinds: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(kinds, ["welcome", "msg", "error"], "{events:?}");
    assert_eq!(
        events[2],
        json!({"type": "error", "code": "kicked", "close": 4009, "message": "maintenance"})
    );
    let events = sse_events_to_the_end(gone).await;
    assert_eq!(
        events.last().unwrap(),
        &json!({"type": "error", "code": "kicked_for_good", "close": 4516, "message": "maintenance"})
    );
    let answer = tokio::time::timeout(crate::util::WAIT, poll)
        .await
        .expect("the kick answers the waiting poll at once")
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        body["messages"],
        json!([{"type": "error", "code": "kicked_for_good", "close": 4516, "message": "maintenance"}]),
        "{body}"
    );
    assert!(body["cursor"].is_string(), "{body}");

    // A poll that simply waits out its time ends with no closing frame.
    let answer = crate::util::http()
        .get(format!(
            "http://{}/v1/poll?app=demo&user=poll-2&timeout=0.1",
            server.client
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["messages"], json!([]), "{body}");
}
