//! Timers and cron on three real nodes sharing one real Redis (`serve --engine redis`):
//! each timer fires once while any node lives, a node killed -9 mid-call hands its
//! timers over after the lease, and each cron fire time runs on one node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::backend::{Answer, Backend};
use crate::util::TestServer;

/// The lease the nodes run with: the shortest allowed, so a takeover comes quickly.
const LEASE: &str = "3";

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A node on `redis` with the short lease.
fn node(redis: &str) -> TestServer {
    TestServer::start_with(
        &["--engine", "redis", "--redis-url", redis],
        &[
            ("PUSHHUB_REDIS_LEASE", LEASE),
            ("PUSHHUB_TIMERS_CONCURRENCY", "64"),
        ],
    )
}

/// One call as the target received it.
#[derive(Clone, Copy)]
struct Call {
    timer: u64,
    attempt: u32,
    at: Instant,
}

#[tokio::test]
async fn ten_thousand_timers_on_three_racing_nodes_one_killed_fire_once() {
    const TIMERS: usize = 10_000;
    /// Time to create them all through the three nodes (debug build, two shared cores).
    const CREATE_BUDGET_MS: i64 = 20_000;
    /// The due times spread over this much.
    const SPREAD_MS: i64 = 4_000;
    let Some(redis) = pushhub_testkit::RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis.url()), node(&redis.url()), node(&redis.url())];
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let log = calls.clone();
    // Each call takes 100 ms, so calls are in flight on every node when one is killed.
    let backend = Backend::start(move |request| {
        let header = |name: &str| {
            request.headers[name]
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        log.lock().unwrap().push(Call {
            timer: header("x-pushhub-timer-id"),
            attempt: header("x-pushhub-attempt") as u32,
            at: Instant::now(),
        });
        Answer::new(200, "ok").after(Duration::from_millis(100))
    })
    .await;
    let url = backend.url("/due");
    let base = unix_ms() + CREATE_BUDGET_MS;
    let client = crate::util::http();
    let apis: Vec<String> = nodes.iter().map(|n| n.api_url("/v1/timers")).collect();
    let started = Instant::now();
    let created: Vec<u64> = futures_util::stream::iter(0..TIMERS)
        .map(|i| {
            let request = client
                .post(&apis[i % 3])
                .json(
                    &json!({"app": "demo", "url": url, "at": base + (i as i64 * 7919) % SPREAD_MS}),
                )
                .send();
            async move {
                let response = request.await.expect("create");
                assert_eq!(response.status(), 201);
                let timer: Value = response.json().await.expect("json");
                timer["id"].as_u64().unwrap()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    println!(
        "created {TIMERS} timers through 3 nodes in {:?}",
        started.elapsed()
    );
    assert!(
        unix_ms() < base,
        "creating {TIMERS} timers took too long for this test's schedule"
    );
    let mut unique = created.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), TIMERS, "ids are unique across nodes");

    // Kill node 2 when about a third has fired.
    let [one, two, three] = nodes;
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls.lock().unwrap().len() < TIMERS / 3 {
        assert!(Instant::now() < deadline, "timers do not fire");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = two.crash();
    let killed_at = Instant::now();

    // Every timer fires; the killed node's cut-off calls come again after the lease.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fired: std::collections::HashSet<u64> =
            calls.lock().unwrap().iter().map(|c| c.timer).collect();
        if fired.len() >= TIMERS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {TIMERS} timers fired",
            fired.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Late repeats would show within another lease.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = calls.lock().unwrap().clone();
    let mut by_timer: HashMap<u64, Vec<Call>> = HashMap::new();
    for call in &calls {
        by_timer.entry(call.timer).or_default().push(*call);
    }
    let lost = unique
        .iter()
        .filter(|id| !by_timer.contains_key(id))
        .count();
    // A repeat is expected only for a call the kill cut off: its first attempt reached
    // the target before the kill, and the repeat is a later attempt, after the lease.
    let (mut cut_off, mut duplicated) = (0, 0);
    for repeats in by_timer.values().filter(|c| c.len() > 1) {
        let first = repeats[0];
        let taken_over = first.at < killed_at
            && repeats.len() == 2
            && repeats[1].attempt == first.attempt + 1
            && repeats[1].at >= killed_at;
        match taken_over {
            true => cut_off += 1,
            false => duplicated += 1,
        }
    }
    println!(
        "timers {TIMERS}: fired {}, lost {lost}, duplicated {duplicated}, made again after the kill (cut off mid-call) {cut_off}, calls {}",
        by_timer.len(),
        calls.len()
    );
    assert_eq!(lost, 0, "lost timers");
    assert_eq!(
        duplicated, 0,
        "timers fired twice that were not cut off by the kill"
    );
    assert!(
        cut_off <= 64,
        "more repeats than calls in flight on the killed node"
    );
    assert!(by_timer.keys().all(|id| unique.binary_search(id).is_ok()));
    // The survivors agree on the outcome.
    for node in [&one, &three] {
        let (_, page) = node.get("/v1/timers?app=demo&state=pending&limit=10").await;
        assert_eq!(page["timers"], json!([]), "{page}");
    }
    let (status, timer) = three.get(&format!("/v1/timers/{}", unique[0])).await;
    assert_eq!(
        (status, &timer["state"]),
        (200, &json!("succeeded")),
        "{timer}"
    );
}

#[tokio::test]
async fn a_cron_job_on_three_nodes_runs_once_per_fire_time() {
    let Some(redis) = pushhub_testkit::RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis.url()), node(&redis.url()), node(&redis.url())];
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let client = crate::util::http();
    let response = client
        .put(nodes[0].api_url("/v1/cron/tick"))
        .json(&json!({"schedule": "* * * * * *", "url": backend.url("/tick")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let started = unix_ms();
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    // Pause through another node: every node sees the job.
    let response = client
        .post(nodes[1].api_url("/v1/cron/tick/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let paused_at = unix_ms();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let seen = backend.seen();
    let mut runs: Vec<u64> = seen
        .iter()
        .map(|r| {
            r.headers["x-pushhub-run"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    runs.sort_unstable();
    let expected = ((paused_at - started) / 1000) as usize;
    println!(
        "cron on 3 nodes: {} calls in {} ms (fire times: about {expected}), runs {runs:?}",
        seen.len(),
        paused_at - started
    );
    assert!(
        runs.windows(2).all(|w| w[0] != w[1]),
        "a run number was called twice"
    );
    assert!(
        (expected.saturating_sub(1)..=expected + 1).contains(&seen.len()),
        "{} calls for about {expected} fire times",
        seen.len()
    );
    let (status, job) = nodes[2].get("/v1/cron/tick?app=demo").await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["runs"].as_u64(), Some(seen.len() as u64), "{job}");
    assert_eq!(job["skipped"], 0, "{job}");
    assert_eq!(job["paused"], true, "{job}");
}
