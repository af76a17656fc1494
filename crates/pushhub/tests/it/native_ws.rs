//! The native WebSocket dialect and the native push API.

use serde_json::json;

use crate::util::TestServer;

#[tokio::test]
async fn welcome_then_messages_with_positions() {
    let server = TestServer::start();
    let (mut client, welcome) = server.native("demo", "100").await;
    assert_eq!(welcome["app"], "demo");
    assert_eq!(welcome["user"], "100");
    assert_eq!(welcome["heartbeat"], 25);
    assert_eq!(
        welcome["channels"],
        json!([{"ch": "demo:user:100", "epoch": "", "off": 0, "recovered": true},
               {"ch": "demo:all", "epoch": "", "off": 0, "recovered": true}])
    );
    assert_eq!(welcome["recovered"], true);
    assert_eq!(welcome["cursor"], "demo:all@:0,demo:user:100@:0");
    assert!(welcome["conn"].as_str().is_some_and(|c| !c.is_empty()));

    assert_eq!(server.push("100", json!({"order": 10})).await, 1);
    assert_eq!(server.push("100", json!("second")).await, 1);
    let first = client.json().await;
    let second = client.json().await;
    assert_eq!(first["type"], "msg");
    assert_eq!(first["ch"], "demo:user:100");
    assert_eq!(first["event"], "e");
    assert_eq!(first["data"], json!({"order": 10}));
    assert_eq!(second["data"], "second");
    assert_eq!(first["off"], 1);
    assert_eq!(second["off"], 2);
    assert_eq!(first["epoch"], second["epoch"]);
    assert_ne!(first["id"], second["id"]);
    assert!(first["ts"].as_u64().unwrap() > 1_600_000_000_000);
}

#[tokio::test]
async fn every_target_form() {
    let server = TestServer::start();
    let (mut u100, _) = server.native("demo", "100").await;
    let (mut u101, _) = server.native("demo", "101").await;
    let (mut g1, _) = server.native("demo", "group1/1").await;
    let (mut g1deep, _) = server.native("demo", "group1/sub/7").await;
    let (mut g2, _) = server.native("demo", "group2/1").await;

    assert_eq!(server.push("100", json!("one")).await, 1);
    assert_eq!(u100.json().await["data"], "one");

    assert_eq!(server.push("100,101", json!("list")).await, 2);
    assert_eq!(u100.json().await["data"], "list");
    assert_eq!(u101.json().await["data"], "list");

    assert_eq!(server.push("group1/*", json!("g1")).await, 2);
    assert_eq!(g1.json().await["ch"], "demo:group:group1");
    assert_eq!(g1deep.json().await["data"], "g1");

    assert_eq!(server.push("group1/sub/*", json!("deep")).await, 1);
    assert_eq!(g1deep.json().await["ch"], "demo:group:group1/sub");

    assert_eq!(server.push("*", json!("all")).await, 5);
    for client in [&mut u100, &mut u101, &mut g1, &mut g1deep, &mut g2] {
        let msg = client.json().await;
        assert_eq!(
            (msg["ch"].as_str(), msg["data"].as_str()),
            (Some("demo:all"), Some("all"))
        );
    }

    // A connection reached through two targets of one push receives it once.
    assert_eq!(server.push("group1/1,group1/*,*", json!("once")).await, 5);
    assert_eq!(g1.json().await["data"], "once");
    assert!(g1.silent_for(std::time::Duration::from_millis(300)).await);

    // Nobody of another user receives a unicast.
    assert_eq!(server.push("nobody", json!("x")).await, 0);
    assert!(g2.json().await["data"] == "once");
    assert!(g2.silent_for(std::time::Duration::from_millis(200)).await);
}

#[tokio::test]
async fn multi_device_users_and_presence() {
    let server = TestServer::start();
    let (mut phone, _) = server.native("demo", "7").await;
    let (mut laptop, _) = server.native("demo", "7").await;
    let (_other, _) = server.native("demo", "8").await;
    assert_eq!(server.push("7", json!({"n": 1})).await, 2);
    assert_eq!(phone.json().await["data"]["n"], 1);
    assert_eq!(laptop.json().await["data"]["n"], 1);

    let (status, users) = server.get("/v1/apps/demo/users").await;
    assert_eq!(status, 200);
    assert_eq!(
        users,
        json!({"app": "demo", "users": [{"user": "7", "connections": 2}, {"user": "8", "connections": 1}],
               "total_users": 2, "total_connections": 3})
    );
    drop(phone);
    server.wait_connections(2).await;
    let (_, users) = server.get("/v1/apps/demo/users").await;
    assert_eq!(users["users"][0], json!({"user": "7", "connections": 1}));

    let (_, stats) = server.get("/v1/stats").await;
    assert_eq!(stats["connections"], 2);
    assert_eq!(stats["connections_total"], 3);
    assert!(stats["deliveries"].as_u64().unwrap() >= 2);
    assert_eq!(stats["engine"]["broker"], "memory");
}

#[tokio::test]
async fn application_ping_and_health() {
    let server = TestServer::start();
    let (mut client, _) = server.native("demo", "1").await;
    client.send(r#"{"type":"ping","id":7}"#).await;
    assert_eq!(client.json().await, json!({"type": "pong", "id": 7}));
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.json().await, json!({"type": "pong"}));
    assert_eq!(server.get("/healthz").await, (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn data_bytes_pass_through_unchanged() {
    let server = TestServer::start();
    let (mut client, _) = server.native("demo", "1").await;
    let (status, _) = server
        .post_raw(
            "/v1/push",
            "application/json",
            r#"{"app":"demo","to":"1","data":{"b":1,"a":[1.50,"é"]}}"#,
        )
        .await;
    assert_eq!(status, 200);
    let text = client.text().await;
    assert!(text.contains(r#""data":{"b":1,"a":[1.50,"é"]}"#), "{text}");
    assert!(!text.contains("\"event\""), "no event given: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_arrive_in_offset_order() {
    let server = std::sync::Arc::new(TestServer::start());
    let (mut client, _) = server.native("demo", "1").await;
    let publishers: Vec<_> = (0..8)
        .map(|p| {
            let server = server.clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    server.push("1", json!([p, i])).await;
                }
            })
        })
        .collect();
    for offset in 1..=1200u64 {
        let msg = client.json().await;
        assert_eq!(msg["off"], offset, "{msg}");
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
}
