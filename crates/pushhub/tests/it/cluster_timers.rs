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

/// How long a request sent by a node just before it is killed may take to be read.
const IN_TRANSIT: Duration = Duration::from_millis(250);

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
    /// Time to create them all through the three nodes: a debug build on two cores that
    /// other builds share makes 500 to 2,500 a second.
    const CREATE_BUDGET_MS: i64 = 40_000;
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
    // Requests the killed node sent just before it died may be read by the target just
    // after `crash` returned.
    let killed_at = Instant::now() + IN_TRANSIT;

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
    let all_fired = unix_ms();
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
    // the target before the kill, and the repeat is the next attempt, made by another
    // node once the lease ran out.
    let (mut cut_off, mut duplicated) = (0, 0);
    let mut suspects = Vec::new();
    for repeats in by_timer.values().filter(|c| c.len() > 1) {
        let first = repeats[0];
        let taken_over = first.at < killed_at
            && repeats.len() == 2
            && repeats[1].attempt == first.attempt + 1
            && repeats[1].at >= first.at + Duration::from_millis(2_500);
        match taken_over {
            true => cut_off += 1,
            false => {
                duplicated += 1;
                let shown: Vec<(u32, i128)> = repeats
                    .iter()
                    .map(|c| {
                        let ms = if c.at >= killed_at {
                            (c.at - killed_at).as_millis() as i128
                        } else {
                            -((killed_at - c.at).as_millis() as i128)
                        };
                        (c.attempt, ms)
                    })
                    .collect();
                println!(
                    "repeated: timer {} (attempt, ms after the kill) {shown:?}",
                    first.timer
                );
                suspects.push(first.timer);
            }
        }
    }
    println!(
        "timers {TIMERS}: fired {}, lost {lost}, duplicated {duplicated}, made again after the kill (cut off mid-call) {cut_off}, calls {}",
        by_timer.len(),
        calls.len()
    );
    let evals: u64 = redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|line| line.starts_with("cmdstat_eval:") || line.starts_with("cmdstat_evalsha:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    println!(
        "the last timer first fired {} ms after the first due time ({SPREAD_MS} ms spread, one node killed); {evals} scripts run in Redis in all ({:.2} per timer, claims and polls included)",
        all_fired - base,
        evals as f64 / TIMERS as f64
    );
    for id in suspects {
        let (_, timer) = one.get(&format!("/v1/timers/{id}")).await;
        println!("repeated timer {id} as stored: {timer}");
    }
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
    let (_, stats) = nodes[2].get("/v1/stats").await;
    assert_eq!(
        (&stats["cron"]["jobs"], &stats["cron"]["scheduled"]),
        (&json!(1), &json!(0)),
        "the cluster's jobs, one paused: {stats}"
    );
}

/// Redis away: creating a timer is refused with a clear 503 (not a hang, not a 201 for a
/// timer that is not stored); Redis back (its append-only file kept what was accepted):
/// accepted timers fire and new ones are taken again.
#[tokio::test]
async fn a_redis_outage_refuses_timers_clearly_and_loses_none_accepted() {
    let Some(mut redis) = pushhub_testkit::RedisServer::start_with(pushhub_testkit::RedisOptions {
        aof: true,
        ..Default::default()
    }) else {
        return;
    };
    let server = TestServer::start_with(
        &["--engine", "redis", "--redis-url", &redis.url()],
        &[
            ("PUSHHUB_REDIS_LEASE", LEASE),
            ("PUSHHUB_REDIS_COMMAND_TIMEOUT_MS", "1000"),
        ],
    );
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let url = backend.url("/due");
    let (status, before) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": url, "delay_ms": 3000}),
        )
        .await;
    assert_eq!(status, 201, "{before}");
    redis.kill();
    let asked = Instant::now();
    let (status, refused) = server
        .post_json("/v1/timers", &json!({"app": "demo", "url": url}))
        .await;
    println!(
        "with Redis down: {status} {refused} after {:?}",
        asked.elapsed()
    );
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "store_unavailable");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}",
        asked.elapsed()
    );
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let (status, timer) = server
            .post_json("/v1/timers", &json!({"app": "demo", "url": url}))
            .await;
        if status == 201 {
            break timer;
        }
        assert!(
            Instant::now() < deadline,
            "Redis is back but timers are refused: {timer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ids = [
        before["id"].as_u64().unwrap(),
        after["id"].as_u64().unwrap(),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fired: Vec<u64> = backend
            .seen()
            .iter()
            .map(|r| {
                r.headers["x-pushhub-timer-id"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        if ids.iter().all(|id| fired.contains(id)) {
            assert_eq!(fired.len(), 2, "{fired:?}");
            break;
        }
        assert!(Instant::now() < deadline, "fired {fired:?} of {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node killed while its cron run is in flight: the other nodes skip the fire times
/// that come while the run's lease lasts (overlap = skip holds across nodes), then make
/// the cut-off run up once (`catch_up`), and go on once per fire time.
#[tokio::test]
async fn a_cron_run_cut_off_by_a_killed_node_is_made_up_once_by_another() {
    let Some(redis) = pushhub_testkit::RedisServer::start() else {
        return;
    };
    let first = node(&redis.url());
    // The first run hangs (its node is killed during it); the others answer at once.
    let backend = Backend::start(|request| match request.headers["x-pushhub-run"].to_str() {
        Ok("1") => Answer::new(200, "late").after(Duration::from_secs(60)),
        _ => Answer::new(200, "ok"),
    })
    .await;
    let client = crate::util::http();
    let response = client
        .put(first.api_url("/v1/cron/tick"))
        .json(&json!({"schedule": "* * * * * *", "url": backend.url("/tick")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.seen().is_empty() {
        assert!(Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let others = [node(&redis.url()), node(&redis.url())];
    let _ = first.crash();
    let killed = Instant::now();
    // The lease (3 s) runs out, the run is made up, then a few regular fire times.
    let deadline = Instant::now() + Duration::from_secs(20);
    while backend.seen().len() < 5 {
        assert!(Instant::now() < deadline, "runs stopped after the kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = backend.seen();
    let header = |i: usize, name: &str| seen[i].headers[name].to_str().unwrap().to_owned();
    let triggers: Vec<String> = (0..seen.len())
        .map(|i| header(i, "x-pushhub-trigger"))
        .collect();
    let runs: Vec<u64> = (0..seen.len())
        .map(|i| header(i, "x-pushhub-run").parse().unwrap())
        .collect();
    println!(
        "cron after a kill mid-run: runs {runs:?}, triggers {triggers:?}, 5 calls {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(triggers[0], "schedule");
    assert_eq!(triggers[1], "catch_up", "the cut-off run is made up first");
    assert!(
        triggers[2..].iter().all(|t| t == "schedule"),
        "{triggers:?}"
    );
    assert!(runs.windows(2).all(|w| w[0] < w[1]), "{runs:?}");
    let (status, job) = others[0].get("/v1/cron/tick?app=demo").await;
    assert_eq!(status, 200, "{job}");
    assert!(
        job["skipped"].as_u64() >= Some(2),
        "fire times during the lease were skipped: {job}"
    );
}

/// An interval timer on three nodes: each tick is claimed by one node, so the target
/// gets each tick once, in order, and the timer ends after its `times`.
#[tokio::test]
async fn an_interval_timer_on_three_nodes_ticks_once_per_tick() {
    let Some(redis) = pushhub_testkit::RedisServer::start() else {
        return;
    };
    let nodes = [node(&redis.url()), node(&redis.url()), node(&redis.url())];
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let (status, created) = nodes[0]
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/tick"), "interval_ms": 200, "times": 5}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let done = loop {
        let (_, timer) = nodes[2].get(&format!("/v1/timers/{id}")).await;
        if timer["state"] == "succeeded" {
            break timer;
        }
        assert!(Instant::now() < deadline, "the ticks never ended: {timer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["attempts"], 5, "{done}");
    let ticks: Vec<String> = backend
        .seen()
        .iter()
        .map(|r| r.headers["x-pushhub-attempt"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ticks, ["1", "2", "3", "4", "5"], "each tick once, in order");
}
