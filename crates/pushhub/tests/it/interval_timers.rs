//! Interval timers (seed 002's Swoole `tick`): `POST /v1/timers` with `interval_ms` and
//! `times`, on the grid, listed and cancelled, one catch-up call after downtime, their
//! calls in `timers.log` with the answer, and each bad value refused by name.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backend::{Answer, Backend};
use crate::util::TestServer;

/// A backend that notes when each call arrived, answering `status` with a short body.
async fn clocked_backend(status: u16) -> (Backend, Arc<Mutex<Vec<Instant>>>) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let noted = arrivals.clone();
    let backend = Backend::start(move |_| {
        noted.lock().unwrap().push(Instant::now());
        Answer::new(status, "tick seen")
    })
    .await;
    (backend, arrivals)
}

/// Wait until `arrivals` holds `n` calls; returns them.
async fn wait_arrivals(arrivals: &Mutex<Vec<Instant>>, n: usize) -> Vec<Instant> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = arrivals.lock().unwrap().clone();
        if seen.len() >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} calls arrived",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until timer `id` satisfies `done`; returns it.
async fn wait_timer(server: &TestServer, id: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, timer) = server.get(&format!("/v1/timers/{id}")).await;
        assert_eq!(status, 200, "{timer}");
        if done(&timer) {
            return timer;
        }
        assert!(
            Instant::now() < deadline,
            "timer {id} never got there: {timer}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until `timers.log` holds `n` lines; returns them.
async fn wait_log_lines(server: &TestServer, n: usize) -> Vec<Value> {
    let path = server.data_dir().join("timers.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "timers.log: {text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_timer_ticks_every_interval_times_times_then_succeeds() {
    let server = TestServer::start();
    let (backend, arrivals) = clocked_backend(200).await;
    let before = Instant::now();
    let (status, created) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/tick"), "interval_ms": 200, "times": 3}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (&created["interval_ms"], &created["times"]),
        (&json!(200), &json!(3))
    );
    assert_eq!(created["retry"]["max_attempts"], 1, "a tick is not retried");
    let first_due = created["due_ms"].as_u64().unwrap();
    assert_eq!(first_due - created["created_ms"].as_u64().unwrap(), 200);
    let id = created["id"].as_u64().unwrap();
    let done = wait_timer(&server, id, |t| t["state"] == "succeeded").await;
    assert_eq!(done["attempts"], 3, "{done}");
    let seen = wait_arrivals(&arrivals, 3).await;
    for (tick, at) in seen.iter().enumerate() {
        // Each tick on its grid time: never before it (a millisecond of clock rounding).
        let grid = Duration::from_millis(200 * (tick as u64 + 1) - 1);
        assert!(at.duration_since(before) >= grid, "tick {tick} came early");
    }
    assert_eq!(
        (done["due_ms"].as_u64().unwrap() - first_due) % 200,
        0,
        "the last tick was due on the grid"
    );
    let calls = backend.seen();
    let attempts: Vec<&str> = calls
        .iter()
        .map(|r| r.headers["x-pushhub-attempt"].to_str().unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);

    // The result log: a line per tick, with the answer as jdserver's trace.log had it.
    let lines = wait_log_lines(&server, 3).await;
    let ticks: Vec<&Value> = lines.iter().map(|l| &l["tick"]).collect();
    assert_eq!(ticks, [&json!(1), &json!(2), &json!(3)]);
    assert_eq!(lines[2]["next"], "succeeded");
    assert_eq!(lines[0]["next"], "retry");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["body"], "tick seen");
    assert_eq!(lines[0]["headers"]["content-type"], "application/json");
    assert_eq!(lines[0]["headers"]["content-length"], "9");
    assert!(lines[0].get("attempt").is_none(), "{}", lines[0]);
}

#[tokio::test]
async fn failing_ticks_go_on_and_an_endless_timer_is_listed_and_cancelled() {
    let server = TestServer::start();
    let (backend, arrivals) = clocked_backend(503).await;
    let (status, created) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/tick"), "interval_ms": 100, "delay_ms": 0}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["times"], Value::Null);
    let id = created["id"].as_u64().unwrap();
    wait_arrivals(&arrivals, 3).await;
    let (_, listed) = server.get("/v1/timers?app=demo").await;
    let listed = &listed["timers"][0];
    assert_eq!(
        (&listed["id"], &listed["interval_ms"]),
        (&json!(id), &json!(100))
    );
    assert!(
        listed["state"] == "pending" || listed["state"] == "running",
        "503s do not stop the ticking: {listed}"
    );
    let (status, cancelled) = server.delete(&format!("/v1/timers/{id}")).await;
    assert_eq!((status, &cancelled["state"]), (200, &json!("cancelled")));
    let at_cancel = arrivals.lock().unwrap().len();
    // A one-shot timer due three ticks later: once it has fired, a live ticker would
    // have been called again.
    let marker = Backend::start(|_| Answer::new(200, "ok")).await;
    let (status, _) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": marker.url("/after"), "delay_ms": 300}),
        )
        .await;
    assert_eq!(status, 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    while marker.seen().is_empty() {
        assert!(Instant::now() < deadline, "the marker timer never fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = arrivals.lock().unwrap().len();
    assert!(
        after <= at_cancel + 1,
        "only a call already in flight may land after the cancel ({at_cancel} then {after})"
    );
    let (status, again) = server.delete(&format!("/v1/timers/{id}")).await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("timer_finished"))
    );
}

#[tokio::test]
async fn missed_ticks_collapse_into_one_catch_up_call_after_downtime() {
    let server = TestServer::start();
    let (backend, arrivals) = clocked_backend(200).await;
    let (_, created) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/tick"), "interval_ms": 1000}),
        )
        .await;
    let id = created["id"].as_u64().unwrap();
    let first_due = created["due_ms"].as_u64().unwrap();
    wait_timer(&server, id, |t| {
        t["attempts"] == 1 && t["state"] == "pending"
    })
    .await;
    let data = server.crash();
    // Down for more than three ticks.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let server = TestServer::start_in(data, &[], &[]);
    let caught_up = wait_timer(&server, id, |t| {
        t["attempts"].as_u64() >= Some(2) && t["state"] == "pending"
    })
    .await;
    let started = caught_up["last_attempt"]["started_ms"].as_u64().unwrap();
    let next_due = caught_up["due_ms"].as_u64().unwrap();
    assert!(
        next_due > started && next_due - started <= 1000,
        "after the catch-up call the next tick is the next grid time ahead: {caught_up}"
    );
    assert_eq!((next_due - first_due) % 1000, 0, "on the grid: {caught_up}");
    assert!(
        caught_up["attempts"].as_u64() <= Some(3),
        "one call for the three missed ticks, not one each: {caught_up}"
    );
    wait_arrivals(&arrivals, 2).await;
}

#[tokio::test]
async fn bad_interval_input_gets_specific_codes_and_the_floor_is_configurable() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_TIMERS_MAX_DELAY", "60")]);
    let url = "http://127.0.0.1:9/x";
    for (body, code, says) in [
        (
            json!({"interval_ms": 99}),
            "invalid_interval",
            "below the minimum of 100 ms",
        ),
        (
            json!({"interval_ms": 0}),
            "invalid_interval",
            "timers.min_interval_ms",
        ),
        (
            json!({"interval_ms": 60_001}),
            "invalid_interval",
            "timers.max_delay",
        ),
        (
            json!({"interval_ms": 1000, "times": 0}),
            "invalid_interval",
            "at least 1",
        ),
        (json!({"times": 3}), "invalid_interval", "give interval_ms"),
        (
            json!({"interval_ms": 1000, "retry": {"max_attempts": 3}}),
            "invalid_retry",
            "does not retry",
        ),
    ] {
        let mut request = json!({"app": "demo", "url": url});
        for (key, value) in body.as_object().unwrap() {
            request[key] = value.clone();
        }
        let (status, reply) = server.post_json("/v1/timers", &request).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some(code)),
            "{request}: {reply}"
        );
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{request}: {message}");
    }
    for bad in [json!("1000"), json!(-5), json!(1.5)] {
        let (status, reply) = server
            .post_json(
                "/v1/timers",
                &json!({"app": "demo", "url": url, "interval_ms": bad}),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {reply}");
    }
    drop(server);

    let server = TestServer::start_with(&[], &[("PUSHHUB_TIMERS_MIN_INTERVAL_MS", "10")]);
    let (status, reply) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": url, "interval_ms": 10, "times": 1, "delay_ms": 3_600_000}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
}
