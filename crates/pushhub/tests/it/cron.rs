//! Cron jobs against the real binary and a real recording backend: schedules with
//! seconds, pause/resume/run now, overlap, time zones, kill -9 and the missed-run policy,
//! the `pushhub cron` and `pushhub timers` commands, bad input, and the SSRF guard (for
//! timers too).

use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{Datelike, NaiveDate, TimeZone};
use serde_json::{json, Value};

use crate::backend::{Answer, Backend, Recorded};
use crate::util::TestServer;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `PUT` `body` as JSON to the API path.
async fn put(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    send(crate::util::http().put(server.api_url(path)).json(body)).await
}

/// `POST` with no body to the API path.
async fn post(server: &TestServer, path: &str) -> (u16, Value) {
    send(crate::util::http().post(server.api_url(path))).await
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = tokio::time::timeout(Duration::from_secs(10), request.send())
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Create or update the job `name`, expecting `status`; returns the job.
async fn put_job(server: &TestServer, name: &str, body: Value, status: u16) -> Value {
    let (got, job) = put(server, &format!("/v1/cron/{name}"), &body).await;
    assert_eq!(got, status, "{job}");
    job
}

/// The backend's requests for `path`.
fn seen_at(backend: &Backend, path: &str) -> Vec<Recorded> {
    backend
        .seen()
        .into_iter()
        .filter(|r| r.path_and_query == path)
        .collect()
}

/// Wait until the backend has seen `n` requests for `path`; returns them.
async fn wait_seen(backend: &Backend, path: &str, n: usize, within: Duration) -> Vec<Recorded> {
    let deadline = Instant::now() + within;
    loop {
        let seen = seen_at(backend, path);
        if seen.len() >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the backend saw {} of {n} requests for {path}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until the job `name` satisfies `check`; returns it.
async fn wait_job(server: &TestServer, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, job) = server.get(&format!("/v1/cron/{name}")).await;
        assert_eq!(status, 200, "{job}");
        if check(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {name} never got there: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header<'a>(request: &'a Recorded, name: &str) -> &'a str {
    request.headers[name].to_str().unwrap()
}

#[tokio::test]
async fn a_job_every_second_fires_and_pauses_resumes_and_runs_on_demand() {
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let created = put_job(
        &server,
        "tick",
        json!({"schedule": "* * * * * *", "url": backend.url("/tick"), "json": {"n": 1},
               "headers": {"X-Trace": "abc"}}),
        201,
    )
    .await;
    assert_eq!(
        (&created["app"], &created["time_zone"], &created["overlap"]),
        (&json!("demo"), &json!("UTC"), &json!("skip")),
        "the only app, UTC and skip by default"
    );
    let next = created["next_run_ms"].as_u64().unwrap();
    let now = unix_ms();
    assert!(
        next > now - 1000 && next <= now + 1000 && next % 1000 == 0,
        "{next}"
    );

    let seen = wait_seen(&backend, "/tick", 3, Duration::from_secs(6)).await;
    let runs: Vec<&str> = seen.iter().map(|r| header(r, "x-pushhub-run")).collect();
    assert_eq!(runs[..3], ["1", "2", "3"]);
    for request in &seen {
        assert_eq!(request.method.as_str(), "POST");
        assert_eq!(header(request, "x-pushhub-job"), "tick");
        assert_eq!(header(request, "x-pushhub-trigger"), "schedule");
        assert_eq!(header(request, "x-trace"), "abc");
        assert_eq!(header(request, "content-type"), "application/json");
        assert_eq!(request.json(), json!({"n": 1}));
    }
    let job = wait_job(&server, "tick", |job| job["runs"].as_u64() >= Some(3)).await;
    assert_eq!(job["last_run"]["outcome"], "succeeded");
    assert_eq!(job["last_run"]["status"], 200);
    assert_eq!(job["last_run"]["response"], "ok");

    // Pause: nothing more fires.
    let (status, paused) = post(&server, "/v1/cron/tick/pause").await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    assert_eq!(paused["next_run_ms"], Value::Null);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = seen_at(&backend, "/tick").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        seen_at(&backend, "/tick").len(),
        before,
        "a paused job fired"
    );
    let (_, listed) = server.get("/v1/cron").await;
    assert_eq!(listed["jobs"][0]["paused"], true);

    // Run now works on a paused job.
    let (status, ran) = post(&server, "/v1/cron/tick/run").await;
    assert_eq!(status, 202, "{ran}");
    let seen = wait_seen(&backend, "/tick", before + 1, Duration::from_secs(2)).await;
    assert_eq!(header(&seen[before], "x-pushhub-trigger"), "manual");
    assert_eq!(
        header(&seen[before], "x-pushhub-run"),
        ran["runs"].to_string()
    );

    // Resume: it fires again on schedule.
    let (status, resumed) = post(&server, "/v1/cron/tick/resume").await;
    assert_eq!((status, &resumed["paused"]), (200, &json!(false)));
    assert!(resumed["next_run_ms"].as_u64().unwrap() > unix_ms() - 1000);
    let seen = wait_seen(&backend, "/tick", before + 3, Duration::from_secs(4)).await;
    assert_eq!(header(&seen[before + 2], "x-pushhub-trigger"), "schedule");

    // Update: the new request, the same history.
    let updated = put_job(
        &server,
        "tick",
        json!({"schedule": "* * * * * *", "url": backend.url("/tock"), "method": "GET"}),
        200,
    )
    .await;
    assert!(updated["runs"].as_u64().unwrap() >= (before + 3) as u64);
    assert_eq!(updated["paused"], false, "an update keeps the job running");
    let tock = wait_seen(&backend, "/tock", 1, Duration::from_secs(3)).await;
    assert_eq!(tock[0].method.as_str(), "GET");

    // Delete: gone, and silent.
    let (status, _) = server.delete("/v1/cron/tick").await;
    assert_eq!(status, 200);
    let (status, gone) = server.get("/v1/cron/tick").await;
    assert_eq!(
        (status, &gone["error"]["code"]),
        (404, &json!("job_not_found"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = backend.seen().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(backend.seen().len(), after, "a deleted job fired");
    let (_, stats) = server.get("/v1/stats").await;
    assert_eq!(stats["cron"]["jobs"], 0);
    assert!(stats["cron"]["succeeded"].as_u64().unwrap() >= 5, "{stats}");
}

#[tokio::test]
async fn overlapping_runs_are_skipped_and_counted_unless_allowed() {
    let server = TestServer::start();
    let backend = Backend::start(|request| {
        if request.path_and_query.starts_with("/slow") {
            Answer::new(200, "late").after(Duration::from_secs(5))
        } else {
            Answer::new(200, "ok")
        }
    })
    .await;
    put_job(
        &server,
        "slow",
        json!({"schedule": "* * * * * *", "url": backend.url("/slow")}),
        201,
    )
    .await;
    // One run in flight for 5 s: the fire times meanwhile are skipped.
    let job = wait_job(&server, "slow", |job| job["skipped"].as_u64() >= Some(2)).await;
    assert_eq!(job["running"], 1, "{job}");
    assert!(job["last_skipped_ms"].as_u64().is_some());
    assert_eq!(
        seen_at(&backend, "/slow").len(),
        1,
        "the skipped runs made no call"
    );
    let (status, refused) = post(&server, "/v1/cron/slow/run").await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (409, &json!("job_running")),
        "run now respects the overlap policy"
    );
    let (_, stats) = server.get("/v1/stats").await;
    assert!(stats["cron"]["skipped"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(stats["cron"]["running"], 1);
    server.delete("/v1/cron/slow").await;

    // allow: every fire time starts a call, in flight side by side.
    put_job(
        &server,
        "overlapping",
        json!({"schedule": "* * * * * *", "url": backend.url("/slow-too"), "overlap": "allow"}),
        201,
    )
    .await;
    wait_seen(&backend, "/slow-too", 3, Duration::from_secs(5)).await;
    let job = wait_job(&server, "overlapping", |job| {
        job["running"].as_u64() >= Some(3)
    })
    .await;
    assert_eq!(job["skipped"], 0);
    let (status, _) = post(&server, "/v1/cron/overlapping/run").await;
    assert_eq!(status, 202, "allow: a manual run joins those in flight");
}

/// The first 09:00 in `zone` strictly after `after_ms`, worked out by hand.
fn nine_o_clock_after(zone: &str, after_ms: u64) -> u64 {
    let zone = chrono_tz::Tz::from_str(zone).unwrap();
    let now = zone.timestamp_millis_opt(after_ms as i64).unwrap();
    let mut day: NaiveDate = now.date_naive();
    loop {
        let nine = zone
            .from_local_datetime(&day.and_hms_opt(9, 0, 0).unwrap())
            .single()
            .unwrap();
        if nine.timestamp_millis() as u64 > after_ms {
            return nine.timestamp_millis() as u64;
        }
        day = day.succ_opt().unwrap();
    }
}

#[tokio::test]
async fn each_job_reads_its_schedule_in_its_own_time_zone() {
    let server = TestServer::start();
    let url = "http://127.0.0.1:9/never";
    let mut nexts = Vec::new();
    for (name, zone, offsets) in [
        ("new-york", Some("America/New_York"), ["-05:00", "-04:00"]),
        ("kolkata", Some("Asia/Kolkata"), ["+05:30", "+05:30"]),
        ("utc", None, ["Z", "Z"]),
    ] {
        let mut body = json!({"schedule": "0 0 9 * * *", "url": url});
        if let Some(zone) = zone {
            body["time_zone"] = json!(zone);
        }
        let job = put_job(&server, name, body, 201).await;
        let created = job["created_ms"].as_u64().unwrap();
        let expected = nine_o_clock_after(zone.unwrap_or("UTC"), created);
        assert_eq!(job["next_run_ms"], expected, "{name}: {job}");
        let shown = job["next_run"].as_str().unwrap();
        assert!(shown.contains("T09:00:00"), "{shown}");
        assert!(offsets.iter().any(|o| shown.ends_with(o)), "{shown}");
        nexts.push(expected);
    }
    assert!(nexts[0] != nexts[1] && nexts[1] != nexts[2], "{nexts:?}");
    // Five fields: minutes; the time zone can change the day too.
    let job = put_job(
        &server,
        "monday",
        json!({"schedule": "30 8 * * MON", "time_zone": "Pacific/Auckland", "url": url}),
        201,
    )
    .await;
    let next = chrono_tz::Pacific::Auckland
        .timestamp_millis_opt(job["next_run_ms"].as_i64().unwrap())
        .unwrap();
    assert_eq!(
        (next.weekday(), next.format("%H:%M:%S").to_string()),
        (chrono::Weekday::Mon, "08:30:00".to_owned())
    );
}

#[tokio::test]
async fn jobs_survive_kill_9_and_a_missed_schedule_runs_once() {
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    put_job(
        &server,
        "every",
        json!({"schedule": "* * * * * *", "url": backend.url("/every")}),
        201,
    )
    .await;
    // "once": a single fire time, 3-4 seconds ahead (and the same time next year).
    let at =
        chrono::DateTime::from_timestamp_millis((unix_ms() / 1000 * 1000 + 4000) as i64).unwrap();
    let once = at.format("%-S %-M %-H %-d %-m *").to_string();
    put_job(
        &server,
        "once",
        json!({"schedule": once, "url": backend.url("/once")}),
        201,
    )
    .await;
    put_job(
        &server,
        "paused",
        json!({"schedule": "* * * * * *", "url": backend.url("/paused"), "paused": true}),
        201,
    )
    .await;
    wait_seen(&backend, "/every", 2, Duration::from_secs(4)).await;

    // kill -9 before "once" comes due; stay down through it and several "every" times.
    let data = server.crash();
    let down = backend.seen().len();
    let due = at.timestamp_millis() as u64;
    tokio::time::sleep(Duration::from_millis(
        due + 2000 - unix_ms().min(due + 2000),
    ))
    .await;
    assert_eq!(
        backend.seen().len(),
        down,
        "nothing runs while the server is down"
    );
    let restarted = Instant::now();
    let server = TestServer::start_in(data, &[], &[]);
    let up = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let after: Vec<Recorded> = backend.seen().split_off(down);
    let triggers = |path: &str| -> Vec<String> {
        after
            .iter()
            .filter(|r| r.path_and_query == path)
            .map(|r| header(r, "x-pushhub-trigger").to_owned())
            .collect()
    };
    assert_eq!(triggers("/once"), ["catch_up"], "the missed run, once");
    let every = triggers("/every");
    assert_eq!(every[0], "catch_up", "{every:?}");
    assert_eq!(
        every.iter().filter(|t| *t == "catch_up").count(),
        1,
        "{every:?}"
    );
    assert!(
        every.len() <= 4,
        "several missed fire times, one catch-up run, then the schedule: {every:?}"
    );
    assert!(every[1..].iter().all(|t| t == "schedule"), "{every:?}");
    assert!(triggers("/paused").is_empty(), "a paused job stays paused");

    let (_, listed) = server.get("/v1/cron").await;
    let names: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["every", "once", "paused"]);
    let once = wait_job(&server, "once", |job| !job["last_run"].is_null()).await;
    assert_eq!(once["last_run"]["trigger"], "catch_up");
    assert_eq!(
        once["last_run"]["scheduled_ms"], due,
        "it stands for the missed time"
    );
    assert_eq!(once["runs"], 1);
    assert!(
        once["next_run_ms"].as_u64().unwrap() > unix_ms() + 300 * 86_400_000,
        "then on schedule: next year: {once}"
    );
    let paused = &listed["jobs"][2];
    assert_eq!(
        (&paused["paused"], &paused["runs"]),
        (&json!(true), &json!(0))
    );
    assert!(up < Duration::from_secs(5));
}

/// Run the `pushhub` binary with `args` (and `PUSHHUB_API_KEY` = `key`, when given);
/// returns the exit code, stdout and stderr.
async fn pushhub(args: &[&str], key: Option<&str>) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushhub"));
    command.args(args).env_remove("PUSHHUB_API_KEY");
    if let Some(key) = key {
        command.env("PUSHHUB_API_KEY", key);
    }
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("the command did not end")
        .expect("run pushhub");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cron_and_timers_commands_work_against_the_server() {
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let api = format!("http://{}", server.api);
    let cli = |args: &[&str]| {
        let mut all = vec![args[0], args[1], "--api", api.as_str()];
        all.extend_from_slice(&args[2..]);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pushhub(&args, None).await
    };
    put_job(
        &server,
        "report",
        json!({"schedule": "0 0 9 * * *", "time_zone": "Europe/Paris", "url": backend.url("/report")}),
        201,
    )
    .await;

    let (code, out, err) = run(cli(&["cron", "list"])).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME    SCHEDULE     TIME ZONE     STATE   NEXT RUN"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("report  0 0 9 * * *  Europe/Paris  active  "),
        "{out}"
    );
    assert!(lines[1].contains(" 09:00:00+0"), "{out}");

    let (code, out, _) = run(cli(&["cron", "show", "report"])).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("request:   GET {}", backend.url("/report"))),
        "{out}"
    );

    let (code, out, _) = run(cli(&["cron", "pause", "report"])).await;
    assert_eq!((code, out.as_str()), (0, "paused report (app demo)\n"));
    let (_, job) = server.get("/v1/cron/report").await;
    assert_eq!(job["paused"], true);
    let (code, out, _) = run(cli(&["cron", "list"])).await;
    assert_eq!(code, 0);
    assert!(out.lines().nth(1).unwrap().contains("  paused  "), "{out}");

    let (code, out, _) = run(cli(&["cron", "resume", "report"])).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("resumed report (app demo); next run 20"),
        "{out}"
    );

    let (code, out, _) = run(cli(&["cron", "run", "report"])).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "started run #1 of report (app demo)\n")
    );
    let seen = wait_seen(&backend, "/report", 1, Duration::from_secs(3)).await;
    assert_eq!(header(&seen[0], "x-pushhub-trigger"), "manual");

    let (code, out, _) = run(cli(&["cron", "list", "--json"])).await;
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(listed["jobs"][0]["name"], "report");
    let (code, out, _) = run(cli(&["cron", "show", "report", "--app", "demo"])).await;
    assert_eq!(code, 0);
    assert!(out.contains("last run:  #1 (manual) at "), "{out}");

    let (code, out, _) = run(cli(&["cron", "delete", "report"])).await;
    assert_eq!((code, out.as_str()), (0, "deleted report (app demo)\n"));
    let (code, out, err) = run(cli(&["cron", "show", "report"])).await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with(
            "pushhub: job_not_found: no cron job \"report\" in app \"demo\" (HTTP 404)"
        ),
        "{err}"
    );
    let (code, out, _) = run(cli(&["cron", "list"])).await;
    assert_eq!((code, out.as_str()), (0, "no cron jobs in app demo\n"));

    // Timers.
    let (_, timer) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/later"), "delay_ms": 3_600_000}),
        )
        .await;
    let id = timer["id"].to_string();
    let (code, out, _) = run(cli(&["timers", "list", "--state", "pending"])).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("ID  STATE    DUE (UTC)"), "{out}");
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("{id}   pending  ")),
        "{out}"
    );
    let (code, out, _) = run(cli(&["timers", "show", &id])).await;
    assert_eq!(code, 0);
    assert!(out.contains("state:    pending"), "{out}");
    assert!(out.contains("attempts: 0 of 5"), "{out}");
    let (code, out, _) = run(cli(&["timers", "cancel", &id])).await;
    assert_eq!((code, out), (0, format!("cancelled timer {id}\n")));
    let (code, _, err) = run(cli(&["timers", "cancel", &id])).await;
    assert_eq!(code, 1);
    assert!(err.contains("timer_finished"), "{err}");
    let (code, _, err) = run(cli(&["timers", "list", "--state", "sleeping"])).await;
    assert_eq!(code, 1);
    assert!(err.contains("invalid_param"), "{err}");

    // Nobody there; not pushhub's API; a usage error.
    let (code, _, err) = pushhub(&["cron", "list", "--api", "http://127.0.0.1:1"], None).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("pushhub: cannot reach the API at http://127.0.0.1:1/v1/cron"),
        "{err}"
    );
    let client = format!("http://{}", server.client);
    let (code, _, err) = pushhub(&["cron", "list", "--api", &client], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("is --api the API listener?"), "{err}");
    let (code, _, _) = pushhub(&["cron", "show"], None).await;
    assert_eq!(code, 2, "clap: a missing argument");
}

const KEYED: &str = r#"
[apps.shop]
auth = "none"
api_keys = ["shop-key-0123456789"]

[apps.blog]
auth = "none"
"#;

#[tokio::test]
async fn the_commands_use_the_api_key_and_its_app() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, KEYED).unwrap();
    // The CLI's variable in the server's environment is not a configuration error.
    let server = TestServer::start_with(
        &["--config", path.to_str().unwrap()],
        &[("PUSHHUB_API_KEY", "shop-key-0123456789")],
    );
    let api = format!("http://{}", server.api);
    let (code, _, err) = pushhub(&["cron", "list", "--api", &api, "--app", "shop"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("missing_api_key"), "{err}");
    let (code, out, err) = pushhub(
        &["cron", "list", "--api", &api],
        Some("shop-key-0123456789"),
    )
    .await;
    assert_eq!(
        (code, out.as_str()),
        (0, "no cron jobs in app shop\n"),
        "{err}"
    );
    let (code, out, _) = pushhub(
        &[
            "cron",
            "--api",
            &api,
            "--key",
            "shop-key-0123456789",
            "list",
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["app"], "shop");
    let (code, _, err) = pushhub(&["cron", "list", "--api", &api], None).await;
    assert_eq!(code, 1, "two apps, no key: which one?");
    assert!(err.contains("missing_param"), "{err}");
    let (status, answer) = server.get("/v1/timers").await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!("missing_param"))
    );
    let (code, _, err) = pushhub(
        &["timers", "list", "--api", &api, "--app", "blog"],
        Some("shop-key-0123456789"),
    )
    .await;
    assert_eq!(code, 1, "the shop's key is not the blog's");
    assert!(err.contains("forbidden"), "{err}");
    let (code, out, _) = pushhub(&["timers", "list", "--api", &api, "--app", "blog"], None).await;
    assert_eq!((code, out.as_str()), (0, "no timers\n"));
}

#[tokio::test]
async fn bad_cron_input_gets_specific_codes() {
    let server = TestServer::start();
    let url = "http://127.0.0.1:9/x";
    let good = json!({"schedule": "* * * * *", "url": url});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let cases = [
        (with("schedule", json!("every day")), "invalid_cron"),
        (with("schedule", json!("61 * * * *")), "invalid_cron"),
        (with("schedule", json!("* * *")), "invalid_cron"),
        (with("schedule", json!("0 0 30 2 *")), "invalid_cron"),
        (with("schedule", json!(5)), "invalid_request"),
        (
            with("time_zone", json!("Mars/Olympus")),
            "invalid_time_zone",
        ),
        (
            with("time_zone", json!("europe/paris")),
            "invalid_time_zone",
        ),
        (with("overlap", json!("sometimes")), "invalid_overlap"),
        (with("url", json!("ftp://example.com/x")), "invalid_scheme"),
        (with("url", json!("not a url")), "invalid_url"),
        (with("method", json!("BREW")), "invalid_method"),
        (with("headers", json!({"Bad Name": "x"})), "invalid_header"),
        (
            with("headers", json!({"X-Pushhub-Run": "1"})),
            "invalid_header",
        ),
        (with("timeout_ms", json!(0)), "invalid_timeout"),
        (with("app", json!("bad app")), "invalid_app"),
        (with("extra", json!(1)), "invalid_request"),
        (json!({"url": url}), "invalid_request"),
    ];
    for (body, code) in cases {
        let (status, answer) = put(&server, "/v1/cron/job", &body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}: {answer}"
        );
    }
    let long = "x".repeat(65);
    for name in ["bad%20name", "a%2Fb", long.as_str()] {
        let (status, answer) = put(&server, &format!("/v1/cron/{name}"), &good).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid_job_name")),
            "{name}: {answer}"
        );
    }
    let raw = crate::util::http()
        .put(server.api_url("/v1/cron/job"))
        .header("content-type", "application/json")
        .body("{");
    let (status, answer) = send(raw).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("bad_json"))
    );
    for (method, path) in [
        ("GET", "/v1/cron/missing"),
        ("DELETE", "/v1/cron/missing"),
        ("POST", "/v1/cron/missing/pause"),
        ("POST", "/v1/cron/missing/resume"),
        ("POST", "/v1/cron/missing/run"),
    ] {
        let request = crate::util::http().request(method.parse().unwrap(), server.api_url(path));
        let (status, answer) = send(request).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (404, Some("job_not_found")),
            "{method} {path}: {answer}"
        );
    }
    let (status, _) = put(&server, "/v1/cron/job", &good).await;
    assert_eq!(status, 201, "the good one passes");
    let (status, answer) = server.get("/v1/cron/job?app=other").await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (404, &json!("job_not_found")),
        "per app"
    );
}

#[tokio::test]
async fn callbacks_to_metadata_and_link_local_targets_are_refused() {
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ] {
        let (status, answer) = server
            .post_json("/v1/timers", &json!({"app": "demo", "url": url}))
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("target_not_allowed")),
            "{url}: {answer}"
        );
        let (status, answer) = put(
            &server,
            "/v1/cron/probe",
            &json!({"schedule": "* * * * *", "url": url}),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("target_not_allowed")),
            "cron {url}: {answer}"
        );
    }
    let (status, answer) = server
        .get("/setTimeout?url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F")
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("target_not_allowed"))
    );
    // Loopback stays allowed, by address and by name (resolved through the guard).
    let by_name = format!("http://localhost:{}/by-name", backend.addr.port());
    let (status, timer) = server
        .post_json("/v1/timers", &json!({"app": "demo", "url": by_name}))
        .await;
    assert_eq!(status, 201, "{timer}");
    wait_seen(&backend, "/by-name", 1, Duration::from_secs(5)).await;
}

/// Wait until timer `id` has finished; returns it.
async fn wait_finished(server: &TestServer, id: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, timer) = server.get(&format!("/v1/timers/{id}")).await;
        if matches!(timer["state"].as_str(), Some("succeeded" | "failed")) {
            return timer;
        }
        assert!(
            Instant::now() < deadline,
            "timer {id} never finished: {timer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_allow_list_is_enforced_after_dns_and_at_call_time() {
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let port = backend.addr.port();
    // Before the list is set: a timer to a loopback address, due in a moment.
    let server = TestServer::start();
    let (status, early) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/early"), "delay_ms": 1500}),
        )
        .await;
    assert_eq!(status, 201);
    let early = early["id"].as_u64().unwrap();
    let data = server.crash();

    // Only 10.0.0.0/8 now: loopback is refused, by address at once, by name after DNS.
    let only = [("PUSHHUB_TIMERS_ALLOW_HOSTS", "10.0.0.0/8")];
    let server = TestServer::start_in(data, &[], &only);
    let (status, answer) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/x")}),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("target_not_allowed"))
    );
    let (status, by_name) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": format!("http://localhost:{port}/by-name"),
                    "retry": {"max_attempts": 5, "base_ms": 10, "max_ms": 20}}),
        )
        .await;
    assert_eq!(
        status, 201,
        "a name may resolve into the list: checked at call time"
    );
    let refused = wait_finished(&server, by_name["id"].as_u64().unwrap()).await;
    assert_eq!(refused["state"], "failed");
    assert_eq!(refused["attempts"], 1, "a refusal is final: {refused}");
    let error = refused["last_attempt"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("target not allowed: localhost resolves to ")
            && error.ends_with(", which is not in timers.allow_hosts"),
        "{error}"
    );
    // The timer created under the old policy is checked against the new one.
    let early = wait_finished(&server, early).await;
    assert_eq!(early["state"], "failed");
    assert_eq!(
        early["last_attempt"]["error"],
        "target not allowed: 127.0.0.1 is not in timers.allow_hosts"
    );
    // Cron too.
    put_job(
        &server,
        "probe",
        json!({"schedule": "0 0 1 1 *", "url": format!("http://localhost:{port}/cron")}),
        201,
    )
    .await;
    let (status, _) = post(&server, "/v1/cron/probe/run").await;
    assert_eq!(status, 202);
    let job = wait_job(&server, "probe", |job| !job["last_run"].is_null()).await;
    assert_eq!(job["last_run"]["outcome"], "failed");
    assert!(
        job["last_run"]["error"]
            .as_str()
            .unwrap()
            .starts_with("target not allowed: localhost resolves to "),
        "{job}"
    );
    assert!(backend.seen().is_empty(), "nothing reached the backend");
}
