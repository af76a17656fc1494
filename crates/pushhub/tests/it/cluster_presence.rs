//! Presence across nodes: several real `pushhub` nodes on one real Redis (started by the
//! test on a free port) list every node's users, forget a node killed with SIGKILL within
//! `presence_ttl`, and kick, limit and put in rooms a user's connections on whatever node
//! they are.

use std::time::{Duration, Instant};

use pushhub_testkit::RedisServer;
use serde_json::{json, Value};

use crate::util::{TestServer, WAIT};

/// The shortest presence TTL the configuration allows, so a dead node goes quickly.
const PRESENCE_TTL_SECS: u64 = 3;

/// The push-serve password the nodes share.
const PUSHSERVE_PASSWORD: &str = "abc12345";

/// `n` nodes on `redis`, each with its own configuration directory.
fn nodes(redis: &RedisServer, n: usize) -> Vec<(TestServer, tempfile::TempDir)> {
    let config = format!(
        r#"
engine = "redis"

[redis]
urls = ["{url}"]
prefix = "it"
presence_ttl = {PRESENCE_TTL_SECS}

[apps.wms]
auth = "none"

[apps.demo]
auth = "none"

[pushserve]
app = "demo"
password = "{PUSHSERVE_PASSWORD}"

[apps.single]
auth = "none"
max_connections_per_user = 1

[apps.strict]
auth = "none"
max_connections_per_user = 1
on_user_limit = "refuse_newest"
"#,
        url = redis.url()
    );
    (0..n).map(|_| TestServer::with_config(&config)).collect()
}

/// Poll `node`'s `path` until `accept` holds; panics with the last answer after [`WAIT`].
async fn eventually(node: &TestServer, path: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = node.get(path).await;
        if status == 200 && accept(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} answered {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Users on three different nodes (native and jdserver clients) are listed by every node,
/// through the native API and jdserver's `/getUsers`, and a push counts the target's
/// connection on another node as delivered.
#[tokio::test]
async fn every_node_lists_the_users_of_every_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 3);
    let (_one, _) = nodes[0].0.native("wms", "1").await;
    let (_two, _) = nodes[1].0.native("wms", "2").await;
    let _three = nodes[2].0.jdserver("wms", json!("3")).await;
    let expected = json!([
        {"user": "1", "connections": 1},
        {"user": "2", "connections": 1},
        {"user": "3", "connections": 1},
    ]);
    for (node, _) in &nodes {
        let users = eventually(node, "/v1/apps/wms/users", |body| body["users"] == expected).await;
        assert_eq!(users["total_connections"], 3);
        assert_eq!(
            node.get("/getUsers?app=wms").await,
            (200, json!(["1", "2", "3"]))
        );
    }
    let (status, reply) = nodes[0]
        .0
        .post_json("/v1/push", &json!({"app": "wms", "to": "2", "data": "x"}))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["delivered"], 1, "user 2's connection is on node 2");
    let (_, reply) = nodes[0]
        .0
        .post_json("/v1/push", &json!({"app": "wms", "to": "*", "data": "x"}))
        .await;
    assert_eq!(reply["delivered"], 3);
}

/// A node killed without any cleanup keeps its users listed while its last heartbeat
/// lasts, and they are gone from every other node's answer within the presence TTL.
#[tokio::test]
async fn a_killed_nodes_users_leave_presence_within_the_ttl() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut nodes = nodes(&redis, 2);
    let (doomed, _doomed_dir) = nodes.pop().unwrap();
    let (survivor, _) = &nodes[0];
    let (_stays, _) = survivor.native("wms", "here").await;
    let (_goes, _) = doomed.native("wms", "there").await;
    let both = json!([
        {"user": "here", "connections": 1},
        {"user": "there", "connections": 1},
    ]);
    eventually(survivor, "/v1/apps/wms/users", |body| body["users"] == both).await;

    let _data = doomed.crash();
    let killed = Instant::now();
    let (_, right_after) = survivor.get("/v1/apps/wms/users").await;
    assert_eq!(
        right_after["users"], both,
        "a node's users stay until its heartbeat runs out"
    );
    let only_here = json!([{"user": "here", "connections": 1}]);
    eventually(survivor, "/v1/apps/wms/users", |body| {
        body["users"] == only_here
    })
    .await;
    let gone_after = killed.elapsed();
    println!(
        "killed node's users gone from presence after {gone_after:?} (ttl {PRESENCE_TTL_SECS} s)"
    );
    assert!(
        gone_after <= Duration::from_millis(PRESENCE_TTL_SECS * 1000 + 500),
        "took {gone_after:?}"
    );
    assert!(
        gone_after >= Duration::from_millis(PRESENCE_TTL_SECS * 1000 / 3),
        "gone before its last heartbeat ran out: {gone_after:?}"
    );
    assert_eq!(
        survivor.get("/getUsers?app=wms").await,
        (200, json!(["here"]))
    );
}

/// `POST /v1/disconnect` on node 1 closes the user's connection on node 3, whether it
/// names the user or one connection.
#[tokio::test]
async fn disconnect_on_one_node_closes_connections_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 3);
    let (api, far) = (&nodes[0].0, &nodes[2].0);
    let (mut phone, _) = far.native("wms", "7").await;
    let (mut laptop, welcome) = far.native("wms", "8").await;

    let (status, body) = api
        .post_json(
            "/v1/disconnect",
            &json!({"app": "wms", "user": "7", "reason": "logged out"}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"disconnected": 1})));
    assert_eq!(phone.closed().await, (4009, "logged out".into()));

    let conn = welcome["conn"].as_str().unwrap();
    let (status, body) = api
        .post_json(
            "/v1/disconnect",
            &json!({"app": "wms", "user": "8", "conn": conn, "reconnect": false}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"disconnected": 1})));
    assert_eq!(laptop.closed().await.0, 4516);
    eventually(api, "/v1/apps/wms/users", |body| body["users"] == json!([])).await;
}

/// One connection per user across nodes: the newcomer on node 2 replaces the connection
/// on node 1 (kick-oldest, the seeds' one-fd-per-uid), or is refused when the app says so.
#[tokio::test]
async fn the_per_user_limit_holds_across_nodes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 2);
    let (first, second) = (&nodes[0].0, &nodes[1].0);

    let (mut old, _) = first.native("single", "1").await;
    let (mut new, _) = second.native("single", "1").await;
    let (code, reason) = old.closed().await;
    assert_eq!(code, 4512, "{reason}");
    eventually(first, "/v1/apps/single/users", |body| {
        body["users"] == json!([{"user": "1", "connections": 1}])
    })
    .await;
    assert!(
        new.silent_for(Duration::from_millis(300)).await,
        "the newcomer stays"
    );

    let (_kept, _) = first.native("strict", "1").await;
    let mut refused = second.ws("/v1/ws?app=strict&user=1").await;
    let (code, reason) = refused.closed().await;
    assert_eq!(code, 4513, "{reason}");
    let (_, users) = second.get("/v1/apps/strict/users").await;
    assert_eq!(users["users"], json!([{"user": "1", "connections": 1}]));
}

/// A server-side room join on node 1 puts the user's connection on node 2 in the room:
/// every node's room members show it, and a leave on node 1 takes it out again.
#[tokio::test]
async fn a_room_join_on_one_node_reaches_the_users_connection_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 2);
    let (api, far) = (&nodes[0].0, &nodes[1].0);
    let (mut client, _) = far.native("wms", "5").await;

    let (status, body) = api
        .post_json("/v1/apps/wms/rooms/r1/members", &json!({"user": "5"}))
        .await;
    assert_eq!((status, body), (200, json!({"joined": 1})));
    let member = json!([{"user": "5", "connections": 1}]);
    for node in [api, far] {
        eventually(node, "/v1/apps/wms/rooms/r1", |body| {
            body["users"] == member
        })
        .await;
    }
    let (status, reply) = far
        .post_json(
            "/v1/push",
            &json!({"app": "wms", "room": "r1", "data": "in"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(client.json().await["data"], "in");

    let (status, body) = api.delete("/v1/apps/wms/rooms/r1/members/5").await;
    assert_eq!((status, body), (200, json!({"left": 1})));
    eventually(far, "/v1/apps/wms/rooms/r1", |body| {
        body["users"] == json!([])
    })
    .await;
}

/// push-serve's push answers "not online" only when the user is online on no node.
#[tokio::test]
async fn push_serve_finds_a_user_online_on_another_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 2);
    let (api, far) = (&nodes[0].0, &nodes[1].0);
    let (_, key) = far
        .get(&format!("/access?uid=7&password={PUSHSERVE_PASSWORD}"))
        .await;
    let key = key["contents"].as_str().expect("access key").to_owned();
    let _client = far
        .ws(&format!(
            "/ws?uid=7&access_key={}",
            crate::util::encode(&key)
        ))
        .await;
    eventually(api, "/v1/apps/demo/users", |body| body["total_users"] == 1).await;
    let push = |uid: &str| {
        crate::util::http()
            .post(api.api_url(&format!("/push?uid={uid}&password={PUSHSERVE_PASSWORD}")))
            .body(r#"{"topic":"t","contents":1}"#)
            .send()
    };
    let online = push("7").await.unwrap().text().await.unwrap();
    assert_eq!(
        online,
        r#"{"topic":"success","number":1,"contents":"推送成功"}"#
    );
    let offline = push("8").await.unwrap().text().await.unwrap();
    assert_eq!(offline, r#"{"topic":"error","contents":"此用户不在线"}"#);
}

/// Redis restarted without its data: each node writes its presence again, and the node
/// bus listens again, so kicks across nodes work once more.
#[tokio::test]
async fn presence_and_the_node_bus_come_back_after_redis_restarts() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 2);
    let (api, far) = (&nodes[0].0, &nodes[1].0);
    let (mut client, _) = far.native("wms", "9").await;
    let listed = json!([{"user": "9", "connections": 1}]);
    eventually(api, "/v1/apps/wms/users", |body| body["users"] == listed).await;

    redis.restart();
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "0", "restarted empty");
    eventually(api, "/v1/apps/wms/users", |body| body["users"] == listed).await;

    // A command published before the far node listens again is lost (pub/sub keeps
    // nothing), so the kick is repeated until it lands.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = api
            .post_json("/v1/disconnect", &json!({"app": "wms", "user": "9"}))
            .await;
        assert_eq!((status, body), (200, json!({"disconnected": 1})));
        let closed = tokio::time::timeout(Duration::from_millis(500), client.closed()).await;
        if let Ok((code, _)) = closed {
            assert_eq!(code, 4009);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the far node never heard the kick"
        );
    }
}

/// A node stopped cleanly (SIGTERM) takes its users out of presence as it exits, without
/// waiting for its heartbeat to run out.
#[tokio::test]
async fn a_node_stopped_cleanly_leaves_presence_at_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut nodes = nodes(&redis, 2);
    let (mut leaving, _leaving_dir) = nodes.pop().unwrap();
    let (_client, _) = leaving.native("wms", "bye").await;
    let (stays, _) = &nodes[0];
    let listed = json!([{"user": "bye", "connections": 1}]);
    eventually(stays, "/v1/apps/wms/users", |body| body["users"] == listed).await;
    let status = leaving.terminate();
    assert!(status.success(), "{status}");
    let (_, users) = stays.get("/v1/apps/wms/users").await;
    assert_eq!(
        users["users"],
        json!([]),
        "gone as soon as the node has exited"
    );
    assert_eq!(
        redis.cli(&["ZCARD", "it:presence:nodes"]).trim(),
        "1",
        "the stopped node removed itself"
    );
}
