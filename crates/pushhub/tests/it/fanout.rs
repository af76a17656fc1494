//! Fan-out discipline: a slow consumer is cut off, everyone else keeps receiving; racing
//! publishers reach everyone once, in order.

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
    server.wait_log("closing slow consumer", 1).await;
    drop(slow);
}

/// Publishers racing each other on one channel: every connection gets every message once,
/// in the channel's offset order, however the fan-outs' direct writes interleave with each
/// other and with the connections' own writes (heartbeat pings every second).
#[tokio::test]
async fn racing_publishers_reach_everyone_once_in_offset_order() {
    const CLIENTS: usize = 40;
    const PUBLISHERS: u64 = 8;
    const PER_PUBLISHER: u64 = 40;
    const TOTAL: usize = (PUBLISHERS * PER_PUBLISHER) as usize;
    let server = TestServer::start_with(&[], &[("PUSHHUB_HEARTBEAT", "1")]);
    let mut readers = Vec::new();
    for i in 0..CLIENTS {
        let (mut client, _) = server.native("demo", &format!("racer{i}")).await;
        readers.push(tokio::spawn(async move {
            let mut offsets = Vec::with_capacity(TOTAL);
            while offsets.len() < TOTAL {
                let msg = client.json().await;
                assert_eq!(msg["type"], "msg", "{msg}");
                offsets.push(msg["off"].as_u64().expect("an offset"));
            }
            (offsets, client)
        }));
    }
    let publishers = (0..PUBLISHERS).map(|p| {
        let server = &server;
        async move {
            for n in 0..PER_PUBLISHER {
                let delivered = server.push("*", json!({"p": p, "n": n})).await;
                assert_eq!(delivered, CLIENTS as u64);
            }
        }
    });
    futures_util::future::join_all(publishers).await;
    for reader in readers {
        let (offsets, mut client) = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("every message within 30 s")
            .expect("reader");
        let first = offsets[0];
        assert_eq!(
            offsets,
            (first..first + TOTAL as u64).collect::<Vec<_>>(),
            "each offset once, in order"
        );
        assert!(
            client.silent_for(Duration::from_millis(200)).await,
            "nothing more"
        );
    }
}
