//! Durable history (`history_store = "disk"`): channel streams survive a graceful restart
//! and a kill -9, so resuming clients get `recovered: true` and every message they missed.
//! Each scenario also runs with `history_store = "memory"`, where it must come out the
//! other way: that is what shows the test can fail.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{encode, Event, Positions, TestServer, WAIT};

/// `history_store` as the environment sets it.
fn store(disk: bool) -> [(&'static str, &'static str); 1] {
    [(
        "PUSHHUB_HISTORY_STORE",
        if disk { "disk" } else { "memory" },
    )]
}

async fn poll(server: &TestServer, user: &str, cursor: Option<&str>) -> Value {
    let since = cursor.map_or(String::new(), |c| format!("&since={}", encode(c)));
    let url = format!(
        "http://{}/v1/poll?app=demo&user={user}&timeout=0.2{since}",
        server.client
    );
    let response = tokio::time::timeout(WAIT, crate::util::http().get(url).send())
        .await
        .expect("poll timed out")
        .expect("poll failed");
    assert_eq!(response.status(), 200);
    response.json().await.expect("poll body")
}

/// Stop with SIGTERM (a clean exit) and start again on the same data directory.
fn restart(mut server: TestServer, env: &[(&str, &str)]) -> TestServer {
    assert!(server.terminate().success(), "{}", server.log());
    TestServer::start_in(server.crash(), &[], env)
}

/// Publish while a WebSocket client and a long-poller are away, restart gracefully, and
/// resume both: what each gets back, as `(recovered, data)`.
async fn missed_across_a_graceful_restart(disk: bool) -> [(Value, Vec<Value>); 2] {
    let env = store(disk);
    let server = TestServer::start_with(&[], &env);
    // Every channel has an epoch before the clients take their positions (the empty
    // position recovers whatever the stream holds, in any epoch).
    for to in ["*", "7", "8"] {
        server.push(to, json!(0)).await;
    }
    let (client, welcome) = server.native("demo", "7").await;
    let positions = Positions::from_welcome(&welcome);
    drop(client);
    let cursor = poll(&server, "8", None).await["cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    server.wait_connections(0).await;
    server.push("7", json!(1)).await;
    server.push("*", json!(2)).await;
    server.push("8", json!(3)).await;
    server.push("7", json!(4)).await;
    let server = restart(server, &env);

    let (mut client, welcome) = server.resume("7", &positions).await;
    let mut ws = Vec::new();
    if welcome["recovered"] == true {
        for _ in 0..3 {
            ws.push(client.json().await["data"].clone());
        }
    }
    let batch = poll(&server, "8", Some(&cursor)).await;
    let polled = batch["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    [
        (welcome["recovered"].clone(), ws),
        (batch["recovered"].clone(), polled),
    ]
}

#[tokio::test]
async fn a_graceful_restart_keeps_history_for_websocket_and_long_poll() {
    let [ws, polled] = missed_across_a_graceful_restart(true).await;
    assert_eq!(ws, (json!(true), vec![json!(1), json!(2), json!(4)]));
    assert_eq!(polled, (json!(true), vec![json!(2), json!(3)]));
}

#[tokio::test]
async fn without_durable_history_a_restart_loses_it() {
    let [ws, polled] = missed_across_a_graceful_restart(false).await;
    assert_eq!(ws.0, json!(false));
    assert_eq!(polled.0, json!(false));
}

/// Push to user 7 as fast as the API answers while its client reads, kill -9 the server,
/// restart, resume: returns (acknowledged pushes, lost, duplicated, recovered).
async fn pushes_across_a_kill(disk: bool) -> (usize, usize, usize, Value) {
    let env = store(disk);
    let server = TestServer::start_with(&[], &env);
    let (mut client, welcome) = server.native("demo", "7").await;
    let mut positions = Positions::from_welcome(&welcome);
    let api = server.api_url("/v1/push");
    let publisher = tokio::spawn(async move {
        let http = crate::util::http();
        let mut acknowledged = Vec::new();
        for n in 0u64.. {
            let sent = http
                .post(&api)
                .json(&json!({"app": "demo", "to": "7", "data": n}))
                .timeout(WAIT)
                .send()
                .await;
            match sent {
                Ok(response) if response.status() == 200 => acknowledged.push(n),
                _ => break,
            }
        }
        acknowledged
    });
    let mut seen: Vec<u64> = Vec::new();
    while seen.len() < 300 {
        let msg = client.json().await;
        positions.see(&msg);
        seen.push(msg["data"].as_u64().expect("data"));
    }
    let data = server.crash();
    let acknowledged = publisher.await.expect("publisher");
    // What reached the client before the kill and is still in its socket counts as seen.
    while let Ok(Event::Text(text)) =
        tokio::time::timeout(Duration::from_millis(500), client.next()).await
    {
        let msg: Value = serde_json::from_str(&text).expect("JSON frame");
        if msg["type"] == "msg" {
            positions.see(&msg);
            seen.push(msg["data"].as_u64().expect("data"));
        }
    }
    let server = TestServer::start_in(data, &[], &env);
    let (mut client, welcome) = server.resume("7", &positions).await;
    if welcome["recovered"] == true {
        let top = welcome["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .find(|c| c["ch"] == "demo:user:7")
            .expect("user channel")["off"]
            .as_u64()
            .expect("off");
        let mut at = positions.offset("demo:user:7");
        while at < top {
            let msg = client.json().await;
            assert_eq!(msg["off"].as_u64(), Some(at + 1), "in order, no gap: {msg}");
            at += 1;
            seen.push(msg["data"].as_u64().expect("data"));
        }
    }
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    let duplicated = seen.len() - unique.len();
    let lost = acknowledged.iter().filter(|n| !unique.contains(n)).count();
    println!(
        "kill -9 under publishing ({}): {} acknowledged, {} received, lost {lost}, duplicated {duplicated}",
        if disk { "disk" } else { "memory" },
        acknowledged.len(),
        seen.len()
    );
    (
        acknowledged.len(),
        lost,
        duplicated,
        welcome["recovered"].clone(),
    )
}

#[tokio::test]
async fn a_kill_under_continuous_publishing_loses_and_duplicates_nothing() {
    let (acknowledged, lost, duplicated, recovered) = pushes_across_a_kill(true).await;
    assert!(acknowledged >= 250, "{acknowledged} acknowledged");
    assert_eq!(recovered, json!(true));
    assert_eq!((lost, duplicated), (0, 0));
}

#[tokio::test]
async fn without_durable_history_a_kill_cannot_be_recovered() {
    let (_, _, _, recovered) = pushes_across_a_kill(false).await;
    assert_eq!(recovered, json!(false));
}

/// The newest segment file of `data`'s history log.
fn newest_segment(data: &std::path::Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(data.join("history"))
        .expect("history dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .filter(|path| std::fs::metadata(path).expect("metadata").len() > 8)
        .collect();
    segments.sort();
    segments.pop().expect("a segment with records")
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_damage_refuses_to_start() {
    let mut server = TestServer::start_with(&[], &store(true));
    let (client, welcome) = server.native("demo", "7").await;
    let positions = Positions::from_welcome(&welcome);
    drop(client);
    server.push("7", json!("kept")).await;
    assert!(server.terminate().success());
    let data = server.crash();
    let segment = newest_segment(data.path());
    let mut bytes = std::fs::read(&segment).expect("segment");
    let whole = bytes.clone();
    // Half a record: the length says 100 bytes follow, 10 do.
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(&[7; 14]);
    std::fs::write(&segment, &bytes).expect("write");
    let mut server = TestServer::start_in(data, &[], &store(true));
    server.wait_log("torn last record", 1).await;
    let (mut client, welcome) = server.resume("7", &positions).await;
    assert_eq!(welcome["recovered"], true, "{welcome}");
    assert_eq!(client.json().await["data"], "kept");
    assert!(server.terminate().success());
    let data = server.crash();
    // A flipped bit inside the first record, whole records after it: damage.
    let mut bytes = whole;
    bytes[20] ^= 0x40;
    std::fs::write(&segment, &bytes).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("PUSHHUB_HISTORY_STORE", "disk")
        .output()
        .expect("run pushhub");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("history log damaged"), "{stderr}");
}

#[tokio::test]
async fn history_size_and_ttl_still_hold_after_a_restart() {
    let env = [
        ("PUSHHUB_HISTORY_SIZE", "2"),
        ("PUSHHUB_HISTORY_TTL", "5"),
        store(true)[0],
    ];
    let mut server = TestServer::start_with(&[], &env);
    let (client, welcome) = server.native("demo", "7").await;
    let positions = Positions::from_welcome(&welcome);
    drop(client);
    for n in 1..=3 {
        server.push("7", json!(n)).await;
    }
    let mut at_two = positions.clone();
    assert!(server.terminate().success());
    let server = TestServer::start_in(server.crash(), &[], &env);
    let (_, welcome) = server.resume("7", &positions).await;
    assert_eq!(
        welcome["recovered"], false,
        "offset 1 fell out of the 2 kept"
    );
    let user = welcome["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["ch"] == "demo:user:7")
        .expect("user channel")
        .clone();
    assert_eq!(user["off"], 3, "the stream kept its offsets");
    at_two.see(&json!({"ch": "demo:user:7", "epoch": user["epoch"], "off": 1}));
    let (mut client, welcome) = server.resume("7", &at_two).await;
    assert_eq!(welcome["recovered"], true);
    assert_eq!(client.json().await["data"], 2);
    assert_eq!(client.json().await["data"], 3);
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let (_, welcome) = server.resume("7", &at_two).await;
    assert_eq!(
        welcome["recovered"], false,
        "the TTL counts across the restart"
    );
}

async fn push_room(server: &TestServer, room: &str, data: Value) -> (String, u64) {
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "demo", "room": room, "event": "say", "data": data}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let channel = &body["channels"][0];
    (
        channel["epoch"].as_str().expect("epoch").to_owned(),
        channel["off"].as_u64().expect("off"),
    )
}

#[tokio::test]
async fn rooms_resume_across_a_restart() {
    let server = TestServer::start_with(&[], &store(true));
    let (epoch, off) = push_room(&server, "r1", json!("seen")).await;
    push_room(&server, "r1", json!("missed")).await;
    let server = restart(server, &store(true));
    let (mut client, _) = server.native("demo", "7").await;
    client
        .send(
            &json!({"type": "join", "id": 1, "room": "r1", "epoch": epoch, "off": off}).to_string(),
        )
        .await;
    let joined = client.json().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["recovered"], true, "{joined}");
    let msg = client.json().await;
    assert_eq!(
        (msg["data"].clone(), msg["off"].clone()),
        (json!("missed"), json!(off + 1))
    );
}
