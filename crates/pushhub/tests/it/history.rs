//! History memory stays bounded: by count and age per channel, and idle channels cost
//! nothing.

use std::time::Duration;

use serde_json::json;

use crate::util::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_offline_users_fit_and_expire() {
    let server = TestServer::start_with(
        &[],
        &[("PUSHHUB_HISTORY_TTL", "90"), ("PUSHHUB_HISTORY_SIZE", "5")],
    );
    let before = server.rss_kib();
    // 100k distinct user channels, 10k targets per push, one message each (debug builds
    // publish slowly, on a loaded machine over 30 s: all of it must happen within the TTL).
    for round in 0..1 {
        for batch in 0..10 {
            let users: Vec<String> = (batch * 10_000..(batch + 1) * 10_000)
                .map(|u| format!("u{u}"))
                .collect();
            let (status, body) = server
                .post_json(
                    "/v1/push",
                    &json!({"app": "demo", "to": users.join(","), "data": {"round": round}}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let (_, stats) = server.get("/v1/stats").await;
    assert_eq!(stats["broker"]["streams"], 100_000, "{stats}");
    assert_eq!(stats["broker"]["history_messages"], 100_000, "{stats}");
    let grown = server.rss_kib().saturating_sub(before);
    assert!(
        grown < 150 * 1024,
        "100k channels with a message each took {grown} KiB"
    );

    // Past the TTL, every history and every idle stream is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let (_, stats) = server.get("/v1/stats").await;
        if stats["broker"]["streams"] == 0 && stats["broker"]["history_messages"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still held after the TTL: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn history_is_capped_per_channel_and_connected_idle_users_hold_no_stream() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_HISTORY_SIZE", "3")]);
    let mut clients = Vec::new();
    for u in 0..20 {
        clients.push(server.native("demo", &format!("idle{u}")).await);
    }
    let (_, stats) = server.get("/v1/stats").await;
    assert_eq!(
        stats["broker"]["streams"], 0,
        "connecting alone creates no channel state: {stats}"
    );
    for n in 0..10 {
        server.push("busy", json!(n)).await;
    }
    let (_, stats) = server.get("/v1/stats").await;
    assert_eq!(stats["broker"]["history_messages"], 3, "{stats}");
}
