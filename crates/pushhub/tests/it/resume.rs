//! Resume: a client that reconnects with its cursor gets exactly what it missed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{Event, Positions, TestServer};

#[tokio::test]
async fn reconnecting_client_gets_what_it_missed_then_live() {
    let server = TestServer::start();
    let (mut client, welcome) = server.native("demo", "7").await;
    let mut positions = Positions::from_welcome(&welcome);
    server.push("7", json!(1)).await;
    server.push("*", json!(2)).await;
    for _ in 0..2 {
        let msg = client.json().await;
        positions.see(&msg);
    }
    drop(client);
    server.wait_connections(0).await;
    // Offline: kept in history.
    let (_, reply) = server
        .post_json("/v1/push", &json!({"app": "demo", "to": "7", "data": 3}))
        .await;
    assert_eq!(reply["delivered"], 0);
    assert_eq!(reply["off"], 2);
    server.push("*", json!(4)).await;
    server.push("7", json!(5)).await;

    let (mut client, welcome) = server.resume("7", &positions).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    let replayed: Vec<Value> = vec![
        client.json().await,
        client.json().await,
        client.json().await,
    ];
    let data: Vec<&Value> = replayed.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, [&json!(3), &json!(4), &json!(5)]);
    server.push("7", json!(6)).await;
    assert_eq!(client.json().await["data"], 6);
    assert_eq!(
        welcome["cursor"],
        positions.cursor(),
        "the welcome's cursor is where the client stood"
    );
}

#[tokio::test]
async fn a_gap_larger_than_history_says_recovered_false() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_HISTORY_SIZE", "2")]);
    let (client, welcome) = server.native("demo", "8").await;
    let positions = Positions::from_welcome(&welcome);
    drop(client);
    for n in 0..5 {
        server.push("8", json!(n)).await;
    }
    let (mut client, welcome) = server.resume("8", &positions).await;
    assert_eq!(welcome["recovered"], false);
    let user_channel = &welcome["channels"][0];
    assert_eq!(
        (
            user_channel["recovered"].as_bool(),
            user_channel["off"].as_u64()
        ),
        (Some(false), Some(5))
    );
    assert_eq!(
        welcome["channels"][1]["recovered"], true,
        "nothing was missed on demo:all"
    );
    server.push("8", json!("live")).await;
    assert_eq!(
        client.json().await["data"],
        "live",
        "no stale replay, straight to live"
    );
}

#[tokio::test]
async fn a_stale_epoch_says_recovered_false_and_a_bad_cursor_is_refused() {
    let server = TestServer::start();
    server.push("9", json!(1)).await;
    let mut positions = Positions::default();
    positions.set("demo:user:9", "zzzzzzzz", 1);
    let (_client, welcome) = server.resume("9", &positions).await;
    assert_eq!(welcome["recovered"], false);
    let mut bad = server.ws("/v1/ws?app=demo&user=9&since=nonsense").await;
    let (code, reason) = bad.closed().await;
    assert_eq!(code, 4500);
    assert!(reason.contains("cursor"), "{reason}");
}

#[tokio::test]
async fn a_user_who_never_connected_can_fetch_what_was_kept_for_them() {
    let server = TestServer::start();
    server.push("newcomer", json!("welcome aboard")).await;
    let mut positions = Positions::default();
    positions.set("demo:user:newcomer", "", 0);
    let (mut client, welcome) = server.resume("newcomer", &positions).await;
    assert_eq!(welcome["recovered"], true);
    assert_eq!(client.json().await["data"], "welcome aboard");
}

/// Continuous publishing while clients drop and reconnect at random points: every client
/// ends with every message meant for it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_loss_and_no_duplicates_under_random_reconnects() {
    const USERS: usize = 4;
    const PUSHES: usize = 1200;
    let server = Arc::new(TestServer::start_with(
        &[],
        &[("PUSHHUB_HISTORY_SIZE", "5000")],
    ));
    let expected: Vec<HashSet<u64>> = (0..USERS)
        .map(|u| {
            (0..PUSHES as u64)
                .filter(|i| i % 3 == 0 || (i % USERS as u64) == u as u64)
                .collect()
        })
        .collect();
    let connected = Arc::new(tokio::sync::Barrier::new(USERS + 1));
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let clients: Vec<_> = (0..USERS)
        .map(|u| {
            let server = server.clone();
            let expected = expected[u].clone();
            let finished = finished.clone();
            let connected = connected.clone();
            tokio::spawn(async move {
                let user = format!("r{u}");
                let (mut client, welcome) = server.native("demo", &user).await;
                connected.wait().await;
                let mut positions = Positions::from_welcome(&welcome);
                let mut seen: Vec<u64> = Vec::new();
                let mut reconnects = 0;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    let budget = fastrand::usize(1..40);
                    let mut got = 0;
                    while got < budget {
                        let wait =
                            tokio::time::timeout(Duration::from_millis(300), client.next()).await;
                        match wait {
                            Ok(Event::Text(text)) => {
                                let msg: Value = serde_json::from_str(&text).unwrap();
                                positions.see(&msg);
                                seen.push(msg["data"]["seq"].as_u64().unwrap());
                                got += 1;
                            }
                            Ok(other) => panic!("{user}: unexpected {other:?}"),
                            Err(_) => break,
                        }
                    }
                    let complete = seen.len() >= expected.len();
                    if complete && finished.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{user}: saw {} of {}",
                        seen.len(),
                        expected.len()
                    );
                    drop(client);
                    reconnects += 1;
                    let (next, welcome) = server.resume(&user, &positions).await;
                    assert_eq!(welcome["recovered"], true, "{user}: {welcome}");
                    client = next;
                }
                let unique: HashSet<u64> = seen.iter().copied().collect();
                assert_eq!(unique.len(), seen.len(), "{user}: duplicates");
                assert_eq!(unique, expected, "{user}: lost or unexpected messages");
                reconnects
            })
        })
        .collect();

    connected.wait().await;
    for i in 0..PUSHES {
        let to = if i % 3 == 0 {
            "*".to_owned()
        } else {
            format!("r{}", i % USERS)
        };
        server.push(&to, json!({"seq": i})).await;
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total_reconnects = 0;
    for client in clients {
        total_reconnects += client.await.unwrap();
    }
    assert!(
        total_reconnects >= USERS * 5,
        "too few reconnects to mean anything: {total_reconnects}"
    );
}

/// A gap larger than a connection's queue is replayed in parts: each connection gets what
/// fits and a 4005 close, and the client comes back from its new position for the rest.
#[tokio::test]
async fn a_large_gap_is_replayed_in_parts_without_loss() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_LIMITS_MAX_QUEUE_MESSAGES", "20")]);
    let (client, welcome) = server.native("demo", "big").await;
    let mut positions = Positions::from_welcome(&welcome);
    drop(client);
    server.wait_connections(0).await;
    for n in 0..35 {
        server.push("big", json!(n)).await;
    }
    let mut received = Vec::new();
    let mut parts = 0;
    loop {
        let (mut client, welcome) = server.resume("big", &positions).await;
        assert_eq!(welcome["recovered"], true);
        parts += 1;
        loop {
            match client.next().await {
                Event::Text(text) => {
                    let msg: Value = serde_json::from_str(&text).unwrap();
                    positions.see(&msg);
                    received.push(msg["data"].as_u64().unwrap());
                }
                Event::Close(code, _) => {
                    assert_eq!(code, 4005);
                    break;
                }
                Event::Ended => panic!("connection ended without a close frame"),
            }
            if received.len() == 35 {
                break;
            }
        }
        if received.len() == 35 {
            break;
        }
        assert!(parts < 10, "no progress: {received:?}");
    }
    assert_eq!(received, (0..35).collect::<Vec<u64>>());
    assert!(parts >= 4, "35 messages at 10 per part: {parts} parts");
}
