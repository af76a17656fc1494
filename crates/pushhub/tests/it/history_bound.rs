//! History has a memory bound: big pushes to many distinct users cannot grow the server
//! past it, and a client resuming across what was evicted is told so.

use serde_json::{json, Value};

use crate::util::{encode, TestServer};

/// The bound on history bytes over all apps, for this test (the default is 256 MiB).
const BOUND_BYTES: usize = 16 * 1024 * 1024;
/// Pushes and their payload: without the bound they would hold 200 MB.
const PUSHES: usize = 200;
const PAYLOAD_BYTES: usize = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_pushes_to_distinct_users_stay_within_the_bound_and_resume_reports_the_loss() {
    let bound = BOUND_BYTES.to_string();
    let server = TestServer::start_with(&[], &[("PUSHHUB_LIMITS_MAX_HISTORY_BYTES", &bound)]);

    // The victim sees one message, goes away, and misses the next one.
    let (mut victim, welcome) = server.native("demo", "victim").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    server.push("victim", json!("seen")).await;
    let seen = victim.json().await;
    assert_eq!(seen["data"], "seen", "{seen}");
    drop(victim);
    server.wait_connections(0).await;
    server.push("victim", json!("missed")).await;

    let before = server.rss_kib();
    let payload = Value::String("x".repeat(PAYLOAD_BYTES));
    let mut peak = before;
    for user in 0..PUSHES {
        let (status, body) = server
            .post_json(
                "/v1/push",
                &json!({"app": "demo", "to": format!("big{user}"), "data": payload}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        peak = peak.max(server.rss_kib());
    }
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!("RSS before {} MiB, peak {} MiB", before / 1024, peak / 1024);
    assert!(
        grown_mib < 100,
        "{PUSHES} pushes of {PAYLOAD_BYTES} bytes grew the server by {grown_mib} MiB with a {} MiB bound",
        BOUND_BYTES >> 20
    );

    let (_, stats) = server.get("/v1/stats").await;
    let broker = &stats["broker"];
    assert!(
        broker["history_bytes"].as_u64().unwrap() <= BOUND_BYTES as u64,
        "{stats}"
    );
    let evictions = broker["history_evictions"].as_u64().unwrap();
    assert!(
        evictions as usize >= PUSHES - BOUND_BYTES / PAYLOAD_BYTES,
        "{stats}"
    );

    // Resuming from "seen": "missed" was the oldest message kept, so it went first.
    let cursor = format!(
        "{}@{}:{}",
        seen["ch"].as_str().unwrap(),
        seen["epoch"].as_str().unwrap(),
        seen["off"]
    );
    let mut back = server
        .ws(&format!(
            "/v1/ws?app=demo&user=victim&since={}",
            encode(&cursor)
        ))
        .await;
    let welcome = back.json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["recovered"], false, "{welcome}");
    let channel = &welcome["channels"][0];
    assert_eq!(
        (&channel["ch"], &channel["recovered"], &channel["epoch"]),
        (&seen["ch"], &json!(false), &seen["epoch"]),
        "same epoch, history no longer reaching back: {welcome}"
    );
    assert_eq!(channel["off"], 2, "the offsets live on: {welcome}");
}
