//! Fan-out discipline: a slow consumer is cut off, everyone else keeps receiving.

use std::time::Duration;

use serde_json::json;

use crate::util::TestServer;

#[tokio::test]
async fn slow_consumer_is_cut_off_and_others_get_everything() {
    let server = TestServer::start_with(
        &[],
        &[
            ("PUSHHUB_LIMITS_MAX_QUEUE_BYTES", "262144"),
            ("PUSHHUB_LIMITS_MAX_BODY_BYTES", "131072"),
            ("PUSHHUB_LIMITS_MAX_QUEUE_MESSAGES", "64"),
        ],
    );
    let (mut fast, _) = server.native("demo", "fast").await;
    let (slow, _) = server.native("demo", "slow").await;
    let payload = "x".repeat(60_000);
    let total = 300;
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < total {
            let msg = fast.json().await;
            seen.push(msg["data"]["n"].as_u64().unwrap());
        }
        (seen, fast)
    });
    for n in 0..total {
        let delivered = server.push("*", json!({"n": n, "pad": payload})).await;
        assert!(delivered >= 1);
    }
    let (seen, _fast) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, (0..total as u64).collect::<Vec<_>>());
    server.wait_connections(1).await;
    let (_, stats) = server.get("/v1/stats").await;
    assert_eq!(stats["slow_consumers"], 1, "{stats} {}", server.log());
    assert!(
        server.log().contains("closing slow consumer"),
        "{}",
        server.log()
    );
    drop(slow);
}
