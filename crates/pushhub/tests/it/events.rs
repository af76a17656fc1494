//! Lifecycle webhooks: connects, disconnects (reason, duration, rooms) and room joins and
//! leaves reach the app's backend (a real local HTTP server) in signed batches, retried
//! when it fails, and never hold anything up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::{Answer, Backend};
use crate::util::TestServer;

fn server(backend: &Backend) -> (TestServer, tempfile::TempDir) {
    let config = format!(
        r#"
[apps.live]
auth = "none"
backend_secret = "live-backend-secret-0123456789abcdef"
[apps.live.events]
url = "{url}"
max_batch = 3
max_delay_ms = 100
"#,
        url = backend.url("/events")
    );
    TestServer::with_config(&config)
}

/// Every event the backend accepted so far (answered 2xx), in order.
fn accepted(backend: &Backend, ok_from: usize) -> Vec<Value> {
    backend
        .seen()
        .iter()
        .skip(ok_from)
        .flat_map(|batch| {
            let batch = batch.json();
            assert_eq!(batch["app"], "live");
            batch["events"].as_array().unwrap().clone()
        })
        .collect()
}

/// Wait until the backend accepted `n` events.
async fn wait_for(backend: &Backend, ok_from: usize, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let events = accepted(backend, ok_from);
        if events.len() >= n {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} events: {events:?}",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connects_rooms_and_disconnects_arrive_in_signed_batches() {
    let backend = Backend::start(|_| Answer::new(200, "{}")).await;
    let (server, _dir) = server(&backend);
    let (mut alice, welcome) = server.native("live", "alice").await;
    let conn = welcome["conn"].as_str().unwrap().to_owned();
    alice.send(r#"{"type":"join","room":"r1"}"#).await;
    assert_eq!(alice.json().await["type"], "joined");
    alice.send(r#"{"type":"leave","room":"r1"}"#).await;
    assert_eq!(alice.json().await["type"], "left");
    let (status, _) = server
        .post_json("/v1/apps/live/rooms/r2/members", &json!({"user": "alice"}))
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    alice.ws.close(None).await.unwrap();

    let events = wait_for(&backend, 0, 5).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["connect", "join", "leave", "join", "disconnect"]);
    assert!(events
        .iter()
        .all(|e| e["user"] == "alice" && e["conn"] == conn.as_str()));
    assert_eq!(
        (events[1]["room"].as_str(), events[3]["room"].as_str()),
        (Some("r1"), Some("r2"))
    );
    let disconnect = &events[4];
    assert_eq!(disconnect["code"], 1000);
    assert_eq!(disconnect["rooms"], json!(["r2"]));
    assert!(disconnect["duration_ms"].as_u64().unwrap() >= 50);
    assert!(backend.seen().iter().all(|batch| {
        batch.json()["events"].as_array().unwrap().len() <= 3
            && batch.headers.contains_key("x-pushhub-signature")
    }));
}

#[tokio::test]
async fn a_failing_backend_gets_retries_and_delays_nothing_else() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let backend = Backend::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            Answer::new(503, "{}").after(Duration::from_millis(100))
        } else {
            Answer::new(204, "")
        }
    })
    .await;
    let (server, _dir) = server(&backend);
    let (mut client, _) = server.native("live", "1").await;
    let started = std::time::Instant::now();
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "live", "to": "1", "data": "now"}),
        )
        .await;
    assert_eq!((status, body["delivered"].as_u64()), (200, Some(1)));
    assert_eq!(client.json().await["data"], "now");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the push waited for the webhook"
    );

    let (status, _) = server
        .post_json(
            "/v1/disconnect",
            &json!({"app": "live", "user": "1", "reason": "bye"}),
        )
        .await;
    assert_eq!(status, 200);
    let events = wait_for(&backend, 2, 2).await;
    assert_eq!(events[0]["type"], "connect");
    assert_eq!(
        (
            events[1]["type"].as_str(),
            events[1]["code"].as_u64(),
            events[1]["reason"].as_str()
        ),
        (Some("disconnect"), Some(4009), Some("bye"))
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "failed batches were retried"
    );
}

// Two workers: the backend lives in this test process and must answer while the test
// waits for the server to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_the_disconnects_it_causes() {
    let backend = Backend::start(|_| Answer::new(200, "{}")).await;
    let (mut server, _dir) = server(&backend);
    let (_a, _) = server.native("live", "a").await;
    let (_b, _) = server.native("live", "b").await;
    wait_for(&backend, 0, 2).await;
    assert!(server.terminate().success());
    let events = accepted(&backend, 0);
    let closed: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "disconnect")
        .map(|e| e["code"].as_u64().unwrap())
        .collect();
    assert_eq!(closed, [1001, 1001], "{events:?}");
}

/// The number of lifecycle webhook senders `GET /v1/admin/status` reports, once it is `n`.
async fn wait_senders(server: &TestServer, n: u64) {
    let deadline = tokio::time::Instant::now() + crate::util::WAIT;
    loop {
        let (status, body) = server.get("/v1/admin/status").await;
        assert_eq!(status, 200, "{body}");
        if body["webhook_senders"] == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} webhook senders: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Two workers: the backends live in this test process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_do_not_pile_up_senders_and_a_replaced_one_flushes_then_stops() {
    let first = Backend::start(|_| Answer::new(200, "{}")).await;
    let second = Backend::start(|_| Answer::new(200, "{}")).await;
    let (server, dir) = server(&first);
    let path = dir.path().join("pushhub.toml");
    wait_senders(&server, 1).await;
    let (old, _) = server.native("live", "old").await;
    wait_for(&first, 0, 1).await;

    // Ten reloads, each a new sink for the app: the one the open connection was
    // admitted with keeps sending for it, every other replaced one ends at once.
    const RELOADS: u64 = 10;
    for reload in 1..=RELOADS {
        let url = if reload == RELOADS {
            second.url("/events")
        } else {
            first.url("/events")
        };
        let text = format!(
            "heartbeat = {}\n[apps.live]\nauth = \"none\"\nbackend_secret = \"live-backend-secret-0123456789abcdef\"\n[apps.live.events]\nurl = \"{url}\"\nmax_batch = 3\nmax_delay_ms = 100\n",
            10 + reload
        );
        std::fs::write(&path, text).unwrap();
        let (status, body) = server.post_json("/v1/admin/reload", &json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["generation"], reload + 1, "{body}");
    }
    wait_senders(&server, 2).await;

    // The old connection's disconnect still goes where it was admitted to send it;
    // then its sender ends, and new connections report to the new URL.
    drop(old);
    wait_senders(&server, 1).await;
    let events = accepted(&first, 0);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["connect", "disconnect"], "{events:?}");
    let (_new, _) = server.native("live", "new").await;
    let events = wait_for(&second, 0, 1).await;
    assert_eq!(
        (events[0]["type"].as_str(), events[0]["user"].as_str()),
        (Some("connect"), Some("new"))
    );
    assert_eq!(accepted(&first, 0).len(), 2, "the old sender posts no more");
    println!("webhook senders after {RELOADS} reloads: 2 while the old connection lived, then 1");
}
