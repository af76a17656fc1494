//! Several real `pushhub serve --engine redis` nodes on one Redis started by the test:
//! what one node accepts reaches clients of every node.

use std::time::Duration;

use pushhub_testkit::RedisServer;
use serde_json::json;

use crate::util::{TestServer, WAIT};

/// `n` nodes on the Redis at `url`, each serving.
pub fn start_nodes(n: usize, url: &str) -> Vec<TestServer> {
    (0..n)
        .map(|_| TestServer::start_with(&["--engine", "redis", "--redis-url", url], &[]))
        .collect()
}

/// Wait until `node` reports healthy (it serves before its subscriber connection is up).
pub async fn wait_healthy(node: &TestServer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = node.get("/healthz").await;
        if status == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not healthy: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A push through node 1 reaches a native WebSocket client on node 2, payload intact.
#[tokio::test]
async fn a_push_through_one_node_reaches_a_client_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = start_nodes(2, &redis.url());
    for node in &nodes {
        wait_healthy(node).await;
    }
    let (mut client, welcome) = nodes[1].native("demo", "42").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    nodes[0].push("42", json!({"n": 1, "text": "ü"})).await;
    nodes[0].push("*", json!([2.50])).await;
    let first = client.json().await;
    assert_eq!(first["type"], "msg", "{first}");
    assert_eq!(first["ch"], "demo:user:42");
    assert_eq!(first["data"], json!({"n": 1, "text": "ü"}));
    assert_eq!(first["off"], 1);
    let second = client.json().await;
    assert_eq!(second["ch"], "demo:all", "{second}");
    assert_eq!(second["data"], json!([2.50]));
}

/// Redis gone: `/healthz` says so (503 with the reason) and a push is refused with
/// `engine_unavailable`, never accepted and lost.
#[tokio::test]
async fn without_redis_a_node_is_unhealthy_and_refuses_pushes() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let nodes = start_nodes(1, &redis.url());
    wait_healthy(&nodes[0]).await;
    redis.kill();
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let (status, body) = nodes[0].get("/healthz").await;
        if status == 503 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still healthy: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["error"]["code"], "engine_unavailable", "{body}");
    let (status, body) = nodes[0]
        .post_json(
            "/v1/push",
            &json!({"app": "demo", "to": "1", "event": "e", "data": 1}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "engine_unavailable", "{body}");
}

/// A client's cursor from node 2 resumes on node 1: it gets exactly what it missed.
#[tokio::test]
async fn a_cursor_from_one_node_resumes_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = start_nodes(2, &redis.url());
    for node in &nodes {
        wait_healthy(node).await;
    }
    let (mut client, welcome) = nodes[1].native("demo", "9").await;
    let mut stood = std::collections::BTreeMap::new();
    for channel in welcome["channels"].as_array().expect("channels") {
        stood.insert(
            channel["ch"].as_str().unwrap_or_default().to_owned(),
            (channel["epoch"].clone(), channel["off"].clone()),
        );
    }
    nodes[0].push("9", json!(1)).await;
    let first = client.json().await;
    assert_eq!(first["data"], 1, "{first}");
    stood.insert(
        first["ch"].as_str().unwrap_or_default().to_owned(),
        (first["epoch"].clone(), first["off"].clone()),
    );
    drop(client);
    nodes[1].wait_connections(0).await;
    nodes[1].push("9", json!(2)).await;
    nodes[0].push("*", json!(3)).await;
    let cursor: Vec<String> = stood
        .iter()
        .map(|(ch, (epoch, off))| format!("{ch}@{}:{off}", epoch.as_str().unwrap_or_default()))
        .collect();
    let mut resumed = nodes[0]
        .ws(&format!(
            "/v1/ws?app=demo&user=9&since={}",
            crate::util::encode(&cursor.join(","))
        ))
        .await;
    let welcome = resumed.json().await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    let replayed = [resumed.json().await, resumed.json().await];
    let data: Vec<&serde_json::Value> = replayed.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, [&json!(2), &json!(3)]);
    nodes[1].push("9", json!(4)).await;
    assert_eq!(
        resumed.json().await["data"],
        4,
        "live again, through the other node"
    );
}

/// What one push through the API costs in Redis: (`EVALSHA` round trips, commands run),
/// the least of ten pushes: each node's periodic stream-top checks and presence heartbeats
/// may land in some, more often with two nodes and on a loaded machine (three tries
/// were all hit once in CI).
async fn push_cost(redis: &RedisServer, node: &TestServer, to: &str) -> (u64, u64) {
    let mut least = (u64::MAX, u64::MAX);
    for _ in 0..10 {
        let before = redis.command_calls();
        node.push(to, json!({"x": 1})).await;
        let after = redis.command_calls();
        let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
        least = least.min((delta("evalsha"), after.keys().map(|name| delta(name)).sum()));
    }
    least
}

/// Redis commands per push through the real binary are the same with one node and with
/// two holding the recipients, and grow only with the channels pushed to; printed.
#[tokio::test]
async fn commands_per_push_do_not_grow_with_nodes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = start_nodes(2, &redis.url());
    for node in &nodes {
        wait_healthy(node).await;
    }
    let mut clients = Vec::new();
    for user in ["1", "2", "3"] {
        clients.push(nodes[0].native("demo", user).await.0);
    }
    nodes[0].push("1,2,3", json!("warm")).await;
    for client in &mut clients {
        client.json().await;
    }
    let one_node = (
        push_cost(&redis, &nodes[0], "1").await,
        push_cost(&redis, &nodes[0], "1,2,3").await,
    );
    for user in ["1", "2", "3"] {
        clients.push(nodes[1].native("demo", user).await.0);
    }
    let two_nodes = (
        push_cost(&redis, &nodes[0], "1").await,
        push_cost(&redis, &nodes[0], "1,2,3").await,
    );
    println!(
        "Redis per push (EVALSHA round trips, commands run): 1 node: to 1 {:?}, to 1,2,3 {:?}; \
         2 nodes: to 1 {:?}, to 1,2,3 {:?}",
        one_node.0, one_node.1, two_nodes.0, two_nodes.1
    );
    assert_eq!(one_node, two_nodes);
    assert_eq!(one_node.0 .0, 1);
    assert_eq!(one_node.1 .0, 3);
    let last = clients.last_mut().expect("a client on node 2");
    assert_eq!(last.json().await["data"], json!({"x": 1}), "node 2 got it");
}

/// A batch reads presence once for all of its pushes' users, not once per push: twenty
/// pushes to the same two users (one online on each node) ask Redis for each user's
/// connections once, and every push is still answered with what it reached across nodes.
#[tokio::test]
async fn a_batch_reads_presence_once_for_all_its_users() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = start_nodes(2, &redis.url());
    for node in &nodes {
        wait_healthy(node).await;
    }
    let (_a, _) = nodes[0].native("demo", "a").await;
    let (_b, _) = nodes[1].native("demo", "b").await;
    let pushes: Vec<serde_json::Value> = (0..20)
        .map(|n| json!({"to": if n % 2 == 0 { "a" } else { "b" }, "data": n}))
        .collect();
    let batch = json!({"app": "demo", "pushes": pushes});
    let mut least = u64::MAX;
    for _ in 0..5 {
        let before = redis.command_calls();
        let (status, body) = nodes[0].post_json("/v1/batch", &batch).await;
        let after = redis.command_calls();
        assert_eq!(status, 200, "{body}");
        let results = body["results"].as_array().expect("results");
        assert_eq!(results.len(), 20, "{body}");
        for result in results {
            assert_eq!(result["delivered"], 1, "{body}");
        }
        let reads = after.get("hkeys").unwrap_or(&0) - before.get("hkeys").unwrap_or(&0);
        least = least.min(reads);
    }
    assert_eq!(least, 2, "one read of each user's connections per batch");
}
