//! Timers: jdserver's `/setTimeout` byte for byte, the native `/v1/timers` API, retries,
//! isolation from slow and dead targets, and durability across kill -9.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::backend::{Answer, Backend, Recorded};
use crate::util::TestServer;

/// Headers every call carries whatever the timer says: the HTTP client's own and pushhub's.
const TRANSPORT_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "accept",
    "user-agent",
    "x-pushhub-timer-id",
    "x-pushhub-attempt",
];

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The headers of `request` that the timer chose, lower-cased name → value.
fn chosen_headers(request: &Recorded) -> HashMap<String, String> {
    request
        .headers
        .iter()
        .filter(|(name, _)| !TRANSPORT_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn timer_id(request: &Recorded) -> u64 {
    request.headers["x-pushhub-timer-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Wait until the backend has seen `n` requests; returns them.
async fn wait_seen(backend: &Backend, n: usize, within: Duration) -> Vec<Recorded> {
    let deadline = Instant::now() + within;
    loop {
        let seen = backend.seen();
        if seen.len() >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the backend saw {} of {n} requests",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until timer `id` is in `state`; returns it.
async fn wait_state(server: &TestServer, id: u64, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, timer) = server.get(&format!("/v1/timers/{id}")).await;
        assert_eq!(status, 200, "{timer}");
        if timer["state"] == state {
            return timer;
        }
        assert!(
            Instant::now() < deadline,
            "timer {id} never reached {state}: {timer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `GET /v1/stats` shows `timers.{field}` = `value` (counters move just after
/// the state a test waits for is stored).
async fn wait_stat(server: &TestServer, field: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = server.get("/v1/stats").await;
        if stats["timers"][field] == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timers.{field} never reached {value}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until the listing `query` holds `n` timers; returns them.
async fn wait_listed(server: &TestServer, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = server.get(&format!("/v1/timers?{query}")).await;
        let timers = page["timers"].as_array().cloned().unwrap_or_default();
        if timers.len() == n {
            return timers;
        }
        assert!(
            Instant::now() < deadline,
            "{query} never listed {n} timers: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn seed_000_set_timeout_examples_arrive_exactly() {
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let echo = backend.url("/echo.php");
    // PHP's httpCall posts its parameters as a form; the third example also as JSON,
    // where numbers stay numbers.
    let examples: [(&str, String); 4] = [
        (
            "application/x-www-form-urlencoded",
            format!("url={}", crate::util::encode(&format!("{echo}?a=1&b=2"))),
        ),
        (
            "application/x-www-form-urlencoded",
            format!(
                "url={}&data%5Bc%5D=3&data%5Bd%5D=4",
                crate::util::encode(&format!("{echo}?a=1&b=2"))
            ),
        ),
        (
            "application/x-www-form-urlencoded",
            format!(
                "url={}&data%5Bc%5D=3&data%5Bd%5D=4&headers%5B%5D={}&headers%5B%5D={}",
                crate::util::encode(&format!("{echo}?a=1&b=2")),
                crate::util::encode("Content-Type: application/json"),
                crate::util::encode("Authorization: Basic dGVzdDp0ZXN0MTIz"),
            ),
        ),
        (
            "application/json",
            json!({
                "url": format!("{echo}?a=1&b=2"),
                "data": {"c": 3, "d": 4},
                "headers": ["Content-Type: application/json", "Authorization: Basic dGVzdDp0ZXN0MTIz"],
            })
            .to_string(),
        ),
    ];
    let mut ids = Vec::new();
    for (content_type, body) in &examples {
        let (status, id) = server.post_raw("/setTimeout", content_type, body).await;
        assert_eq!(status, 200, "{id}");
        ids.push(id.as_u64().expect("the answer is the bare timer id"));
    }
    let mut seen = wait_seen(&backend, 4, Duration::from_secs(10)).await;
    seen.sort_by_key(timer_id);
    let form = HashMap::from([(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )]);
    let json_headers = HashMap::from([
        ("content-type".to_owned(), "application/json".to_owned()),
        (
            "authorization".to_owned(),
            "Basic dGVzdDp0ZXN0MTIz".to_owned(),
        ),
    ]);
    let expected = [
        ("GET", HashMap::new(), ""),
        ("POST", form, "c=3&d=4"),
        ("POST", json_headers.clone(), r#"{"c":"3","d":"4"}"#),
        ("POST", json_headers, r#"{"c":3,"d":4}"#),
    ];
    for ((request, id), (method, headers, body)) in seen.iter().zip(&ids).zip(expected) {
        assert_eq!(timer_id(request), *id);
        assert_eq!(request.method.as_str(), method);
        assert_eq!(request.path_and_query, "/echo.php?a=1&b=2");
        assert_eq!(chosen_headers(request), headers, "timer {id}");
        assert_eq!(std::str::from_utf8(&request.body).unwrap(), body);
        assert_eq!(request.headers["x-pushhub-attempt"], "1");
    }
    assert_eq!(seen.len(), 4, "one attempt each");
    for id in &ids {
        let timer = wait_state(&server, *id, "succeeded").await;
        assert_eq!(timer["app"], "demo", "the embedded default's only app");
    }
    wait_stat(&server, "succeeded", 4).await;
}

#[tokio::test]
async fn set_timeout_waits_its_timeout_and_refuses_bad_input() {
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let started = Instant::now();
    let (status, _) = server
        .get(&format!(
            "/setTimeout?timeout=700&url={}",
            crate::util::encode(&backend.url("/later"))
        ))
        .await;
    assert_eq!(status, 200);
    wait_seen(&backend, 1, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(700));
    let url = crate::util::encode(&backend.url("/x"));
    for (query, code) in [
        ("timeout=5".to_owned(), "missing_param"),
        (
            "url=ftp%3A%2F%2Fexample.com%2Fa".to_owned(),
            "invalid_scheme",
        ),
        ("url=not%20a%20url".to_owned(), "invalid_url"),
        (format!("url={url}&timeout=-1"), "invalid_delay"),
        (format!("url={url}&timeout=soon"), "invalid_param"),
        (format!("url={url}&headers[]=nocolon"), "invalid_header"),
        (format!("url={url}&app=bad%20app"), "invalid_app"),
    ] {
        let (status, body) = server.get(&format!("/setTimeout?{query}")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn native_timers_are_created_listed_fetched_and_cancelled() {
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, r#"{"done":true}"#)).await;
    let (status, created) = server
        .post_json(
            "/v1/timers",
            &json!({
                "app": "demo", "url": backend.url("/hook?x=1"), "json": {"order": 10},
                "headers": {"X-Trace": "abc"}, "delay_ms": 300, "idempotency_key": "order-10",
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_u64().unwrap();
    assert_eq!(created["state"], "pending");
    assert_eq!(created["method"], "POST");
    assert_eq!(created["retry"]["max_attempts"], 5);
    let (status, again) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/other"), "idempotency_key": "order-10"}),
        )
        .await;
    assert_eq!(
        (status, &again["id"]),
        (200, &created["id"]),
        "an idempotent repeat"
    );

    // A second timer, far off, to cancel; and a listing in pages.
    let (_, later) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/never"), "delay_ms": 3_600_000}),
        )
        .await;
    let later_id = later["id"].as_u64().unwrap();
    let (_, page) = server.get("/v1/timers?app=demo&limit=1").await;
    assert_eq!(page["timers"][0]["id"], id);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, page) = server
        .get(&format!("/v1/timers?app=demo&limit=1&cursor={cursor}"))
        .await;
    assert_eq!(page["timers"][0]["id"], later_id);
    let (_, pending) = server.get("/v1/timers?app=demo&state=pending").await;
    assert_eq!(pending["timers"].as_array().unwrap().len(), 2);

    let (status, cancelled) = server.delete(&format!("/v1/timers/{later_id}")).await;
    assert_eq!((status, &cancelled["state"]), (200, &json!("cancelled")));
    let (status, refused) = server.delete(&format!("/v1/timers/{later_id}")).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (409, &json!("timer_finished"))
    );

    let done = wait_state(&server, id, "succeeded").await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["last_attempt"]["status"], 200);
    assert_eq!(done["last_attempt"]["response"], r#"{"done":true}"#);
    let seen = backend.seen();
    assert_eq!(seen.len(), 1, "the cancelled timer never fired");
    assert_eq!(seen[0].path_and_query, "/hook?x=1");
    assert_eq!(seen[0].json(), json!({"order": 10}));
    assert_eq!(seen[0].headers["x-trace"], "abc");
    assert_eq!(seen[0].headers["content-type"], "application/json");
    let (_, succeeded) = server.get("/v1/timers?app=demo&state=succeeded").await;
    assert_eq!(succeeded["timers"].as_array().unwrap().len(), 1);

    for (path, status, code) in [
        ("/v1/timers/999999", 404, "timer_not_found"),
        ("/v1/timers/abc", 400, "invalid_timer_id"),
        ("/v1/timers?app=demo&state=sleeping", 400, "invalid_param"),
        ("/v1/timers?app=demo&limit=0", 400, "invalid_param"),
        ("/v1/timers?app=demo&cursor=x", 400, "invalid_param"),
    ] {
        let (got, body) = server.get(path).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    let (status, body) = server.delete("/v1/timers/999999").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("timer_not_found"))
    );
}

#[tokio::test]
async fn native_timers_refuse_bad_input_with_specific_codes() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_TIMERS_MAX_DELAY", "60")]);
    let url = "http://127.0.0.1:9/x";
    let cases = [
        (
            json!({"app": "demo", "url": "ftp://example.com/x"}),
            "invalid_scheme",
        ),
        (
            json!({"app": "demo", "url": "file:///etc/passwd"}),
            "invalid_scheme",
        ),
        (
            json!({"app": "demo", "url": "http//missing-colon"}),
            "invalid_url",
        ),
        (
            json!({"app": "demo", "url": url, "delay_ms": -1}),
            "invalid_delay",
        ),
        (
            json!({"app": "demo", "url": url, "delay_ms": 61_000}),
            "invalid_delay",
        ),
        (
            json!({"app": "demo", "url": url, "at": unix_ms() + 3_600_000}),
            "invalid_delay",
        ),
        (
            json!({"app": "demo", "url": url, "delay_ms": 1, "at": 1}),
            "invalid_delay",
        ),
        (
            json!({"app": "demo", "url": url, "headers": {"Bad Name": "x"}}),
            "invalid_header",
        ),
        (
            json!({"app": "demo", "url": url, "headers": {"X-A": "a\nb"}}),
            "invalid_header",
        ),
        (
            json!({"app": "demo", "url": url, "headers": {"Host": "evil"}}),
            "invalid_header",
        ),
        (
            json!({"app": "demo", "url": url, "headers": {"X-A": 1}}),
            "invalid_header",
        ),
        (
            json!({"app": "demo", "url": url, "method": "BREW"}),
            "invalid_method",
        ),
        (
            json!({"app": "demo", "url": url, "body": "a", "json": 1}),
            "invalid_body",
        ),
        (
            json!({"app": "demo", "url": url, "form": {"a": [1]}}),
            "invalid_body",
        ),
        (
            json!({"app": "demo", "url": url, "retry": {"max_attempts": 0}}),
            "invalid_retry",
        ),
        (
            json!({"app": "demo", "url": url, "timeout_ms": 0}),
            "invalid_timeout",
        ),
        (
            json!({"app": "demo", "url": url, "idempotency_key": ""}),
            "invalid_idempotency_key",
        ),
        (json!({"app": "bad app", "url": url}), "invalid_app"),
        (
            json!({"app": "demo", "url": url, "extra": 1}),
            "invalid_request",
        ),
        (json!({"app": "demo"}), "invalid_request"),
    ];
    for (body, code) in cases {
        let (status, answer) = server.post_json("/v1/timers", &body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}: {answer}"
        );
    }
    let (status, answer) = server.post_raw("/v1/timers", "application/json", "{").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("bad_json"))
    );
    // Just over the limit: a body far larger would still be in flight when the server
    // answers and closes, and the client would see a reset instead of the answer.
    let huge = json!({"app": "demo", "url": url, "body": "x".repeat(1024 * 1024)});
    let (status, answer) = server.post_json("/v1/timers", &huge).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    let (status, _) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": url, "delay_ms": 60_000}),
        )
        .await;
    assert_eq!(status, 201, "exactly the maximum is fine");
}

#[tokio::test]
async fn failures_retry_with_backoff_and_4xx_is_final() {
    let server = TestServer::start();
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let calls = flaky_calls.clone();
    let backend = Backend::start(move |request| match request.path_and_query.as_str() {
        "/flaky" if calls.fetch_add(1, Ordering::SeqCst) < 2 => Answer::new(503, "busy"),
        "/flaky" => Answer::new(200, "ok"),
        _ => Answer::new(404, "no such page"),
    })
    .await;
    let retry = json!({"base_ms": 50, "max_ms": 200});
    let (_, flaky) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/flaky"), "retry": retry}),
        )
        .await;
    let (_, missing) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/missing"), "retry": retry}),
        )
        .await;
    let flaky = wait_state(&server, flaky["id"].as_u64().unwrap(), "succeeded").await;
    assert_eq!(flaky["attempts"], 3);
    assert_eq!(flaky["last_attempt"]["status"], 200);
    let missing = wait_state(&server, missing["id"].as_u64().unwrap(), "failed").await;
    assert_eq!(missing["attempts"], 1, "404 is final");
    assert_eq!(missing["last_attempt"]["status"], 404);
    assert_eq!(missing["last_attempt"]["error"], "HTTP 404");
    assert_eq!(missing["last_attempt"]["response"], "no such page");
    let attempts: Vec<String> = backend
        .seen()
        .iter()
        .filter(|r| r.path_and_query == "/flaky")
        .map(|r| r.headers["x-pushhub-attempt"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    wait_stat(&server, "retries", 2).await;
    wait_stat(&server, "failed", 1).await;
}

#[tokio::test]
async fn slow_and_dead_targets_do_not_delay_other_timers() {
    let server = TestServer::start();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let log = arrivals.clone();
    let backend = Backend::start(move |request| {
        log.lock()
            .unwrap()
            .push((request.path_and_query.clone(), Instant::now()));
        if request.path_and_query == "/slow" {
            Answer::new(200, "late").after(Duration::from_secs(20))
        } else {
            Answer::new(200, "ok")
        }
    })
    .await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone", listener.local_addr().unwrap())
    };
    let start = Instant::now();
    for _ in 0..5 {
        let (status, _) = server
            .post_json(
                "/v1/timers",
                &json!({"app": "demo", "url": backend.url("/slow")}),
            )
            .await;
        assert_eq!(status, 201);
        let (status, _) = server
            .post_json(
                "/v1/timers",
                &json!({"app": "demo", "url": dead, "retry": {"base_ms": 10, "max_ms": 20}}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let mut fast = Vec::new();
    for _ in 0..20 {
        let (_, timer) = server
            .post_json(
                "/v1/timers",
                &json!({"app": "demo", "url": backend.url("/fast"), "delay_ms": 500}),
            )
            .await;
        fast.push(timer["id"].as_u64().unwrap());
    }
    for id in &fast {
        wait_state(&server, *id, "succeeded").await;
    }
    let fast_arrivals: Vec<Duration> = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, _)| path == "/fast")
        .map(|(_, at)| at.duration_since(start))
        .collect();
    assert_eq!(fast_arrivals.len(), 20);
    let latest = fast_arrivals.iter().max().unwrap();
    assert!(
        *latest < Duration::from_secs(5),
        "the fast timers waited for the slow ones: last one after {latest:?}"
    );
    // The slow calls are still in flight; the dead target's timers used up their attempts.
    wait_listed(&server, "app=demo&state=running", 5).await;
    let failed = wait_listed(&server, "app=demo&state=failed", 5).await;
    assert_eq!(failed[0]["attempts"], 5);
    let error = failed[0]["last_attempt"]["error"].as_str().unwrap();
    assert!(error.starts_with("connection failed"), "{error}");
}

#[tokio::test]
async fn ten_thousand_timers_survive_kill_9_and_fire_once_in_due_order() {
    const TIMERS: usize = 10_000;
    /// Time to create them all: a debug build on two shared cores makes about 2,500 a
    /// second, so this leaves room for a busy machine.
    const CREATE_BUDGET_MS: i64 = 15_000;
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let url = backend.url("/due");
    // Due within one second, running backwards against creation (ids), so firing in id
    // order instead of due order would show.
    let base = unix_ms() + CREATE_BUDGET_MS;
    let due = |i: usize| base - (i / 10) as i64;
    let client = crate::util::http();
    let api = server.api_url("/v1/timers");
    let created: Vec<(u64, i64)> = futures_util::stream::iter(0..TIMERS)
        .map(|i| {
            let request = client
                .post(&api)
                .json(&json!({"app": "demo", "url": url, "at": due(i)}))
                .send();
            async move {
                let response = request.await.expect("create");
                assert_eq!(response.status(), 201);
                let timer: Value = response.json().await.expect("json");
                (timer["id"].as_u64().unwrap(), due(i))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let created_in = unix_ms() - (base - CREATE_BUDGET_MS);
    assert!(
        unix_ms() < base - 1500,
        "creating {TIMERS} timers took {created_in} ms: too slow for this test's schedule"
    );
    assert!(backend.seen().is_empty());
    let due_of: HashMap<u64, i64> = created.into_iter().collect();
    assert_eq!(due_of.len(), TIMERS);

    // kill -9 with every timer pending; restart once all are overdue.
    let data = server.crash();
    tokio::time::sleep(Duration::from_millis(
        (base - unix_ms()).max(0) as u64 + 100,
    ))
    .await;
    assert!(
        backend.seen().is_empty(),
        "nothing fires while the server is down"
    );
    let restarted_at = Instant::now();
    let server = TestServer::start_in(data, &[], &[("PUSHHUB_TIMERS_CONCURRENCY", "64")]);
    let seen = wait_seen(&backend, TIMERS, Duration::from_secs(60)).await;
    let fired_in = restarted_at.elapsed();

    // Every timer once.
    let mut count: HashMap<u64, usize> = HashMap::new();
    for request in &seen {
        *count.entry(timer_id(request)).or_default() += 1;
    }
    assert_eq!(count.len(), TIMERS, "every timer fired");
    assert!(count.values().all(|n| *n == 1), "a timer fired twice");
    assert!(count.keys().all(|id| due_of.contains_key(id)));
    // In due order, give or take the calls in flight at once (64).
    let mut by_due: Vec<(i64, u64)> = due_of.iter().map(|(id, due)| (*due, *id)).collect();
    by_due.sort_unstable();
    let rank: HashMap<u64, usize> = by_due
        .iter()
        .enumerate()
        .map(|(r, (_, id))| (*id, r))
        .collect();
    let worst = seen
        .iter()
        .enumerate()
        .map(|(position, request)| rank[&timer_id(request)].abs_diff(position))
        .max()
        .unwrap();
    assert!(
        worst <= 128,
        "a timer fired {worst} places away from its due order"
    );
    // Promptly: nothing waits for anything but its turn.
    assert!(fired_in < Duration::from_secs(30), "{fired_in:?}");
    wait_stat(&server, "succeeded", TIMERS as u64).await;
    assert_eq!(backend.seen().len(), TIMERS, "no late repeats");
}

#[tokio::test]
async fn a_call_cut_off_by_shutdown_is_made_again_after_restart() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_SHUTDOWN_GRACE", "1")]);
    let backend = Backend::start(
        |request| match request.headers["x-pushhub-attempt"].to_str() {
            Ok("1") => Answer::new(200, "too late").after(Duration::from_secs(5)),
            _ => Answer::new(200, "ok"),
        },
    )
    .await;
    let (_, timer) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/slow")}),
        )
        .await;
    let id = timer["id"].as_u64().unwrap();
    wait_seen(&backend, 1, Duration::from_secs(5)).await;
    let mut server = server;
    assert!(server.terminate().success());
    let server = TestServer::start_in(server.crash(), &[], &[]);
    let done = wait_state(&server, id, "succeeded").await;
    assert_eq!(done["attempts"], 2, "{done}");
    let seen = wait_seen(&backend, 2, Duration::from_secs(5)).await;
    assert!(seen.iter().all(|r| timer_id(r) == id));
}
