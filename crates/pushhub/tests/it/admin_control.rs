//! `pushhub status`, `pushhub reload` and `pushhub stop [--force]` run as an operator runs
//! them (the real binary against a real server with real clients), and the admin
//! endpoints behind them: `GET /v1/admin/status`, `POST /v1/admin/reload`,
//! `POST /v1/admin/stop`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::operator::{dead_url, operate, pushhub, sse};
use crate::util::{http, TestServer};

const ADMIN: &str = "admin-key-0123456789abcdef";
const OLD_KEY: &str = "demo-old-key-0123456789";
const NEW_KEY: &str = "demo-new-key-0123456789";

fn config(app_key: &str, extra: &str) -> String {
    format!(
        "admin_keys = [\"{ADMIN}\"]\ndynamic_apps = false\n{extra}\n[apps.demo]\nauth = \"none\"\napi_keys = [\"{app_key}\"]\n"
    )
}

/// `pushhub COMMAND --json` as JSON, which must succeed.
fn json_of(server: &TestServer, command: &[&str]) -> Value {
    let (ok, out, err) = operate(server, command, ADMIN, true);
    assert!(ok, "{command:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `GET /v1/admin/status` with the admin key, until `done` holds for it.
async fn admin_status_until(server: &TestServer, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + crate::util::WAIT;
    loop {
        let status: Value = http()
            .get(server.api_url("/v1/admin/status"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_the_server_and_reload_applies_or_refuses_with_every_error() {
    let (server, dir) = TestServer::with_config(&config(OLD_KEY, ""));
    let path = dir.path().join("pushhub.toml");
    let (mut ws, welcome) = server.native("demo", "alice").await;
    let _stream = sse(&server, "bob").await;
    admin_status_until(&server, |status| status["connections"]["total"] == 2).await;
    for n in 0..5 {
        let response = http()
            .post(server.api_url("/v1/push"))
            .bearer_auth(OLD_KEY)
            .json(&json!({"app": "demo", "to": "alice", "data": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(ws.json().await["data"], n);
    }
    // The rates need a copy of the counters at least half a second old.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let status = json_of(&server, &["status"]);
    let node = welcome["conn"].as_str().unwrap().split('-').next().unwrap();
    assert_eq!(status["node"], node, "{status}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["connections"]["total"], 2, "{status}");
    let mut kinds = status["connections"]["by_kind"].as_array().unwrap().clone();
    kinds.sort_by_key(|k| k["transport"].as_str().unwrap().to_owned());
    assert_eq!(
        kinds,
        [
            json!({"transport": "sse", "dialect": "native", "connections": 1}),
            json!({"transport": "websocket", "dialect": "native", "connections": 1}),
        ],
        "{status}"
    );
    assert_eq!(status["users"]["total"], 2, "{status}");
    assert_eq!(
        status["users"]["by_app"],
        json!([{"app": "demo", "users": 2}])
    );
    let recent = &status["rates"]["last_10s"];
    assert!(
        recent["published_per_sec"].as_f64().unwrap() > 0.0
            && recent["delivered_per_sec"].as_f64().unwrap() > 0.0,
        "{status}"
    );
    assert!(status["memory"]["rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(status["engine"]["healthy"], true, "{status}");
    assert_eq!(status["stores"]["timers"]["healthy"], true, "{status}");
    assert_eq!(status["stores"]["history"]["kind"], "memory", "{status}");
    assert_eq!(
        status["reload"],
        json!({"generation": 1, "last": null}),
        "{status}"
    );
    let (ok, out, err) = operate(&server, &["status"], ADMIN, false);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!(
            "pushhub:     {} on node {node}, up ",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
    for line in [
        "connections: 2 (sse/native 1, websocket/native 1)\n",
        "users:       2 (demo 2)\n",
        "engine:      broker memory, presence memory: healthy\n",
        "config:      generation 1; no reload since start\n",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }

    // A reload that rotates the app's key and changes a limit.
    std::fs::write(&path, config(NEW_KEY, "heartbeat = 20")).unwrap();
    let (ok, out, err) = operate(&server, &["reload"], ADMIN, false);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "reloaded: generation 2\nchanged: heartbeat, apps.demo.api_keys\n"
    );
    let refused = http()
        .post(server.api_url("/v1/push"))
        .bearer_auth(OLD_KEY)
        .json(&json!({"app": "demo", "to": "alice", "data": "old"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the old key is refused now");
    let (ok, _, err) = operate(&server, &["push", "demo", "alice", "new"], NEW_KEY, false);
    assert!(ok, "{err}");
    assert_eq!(
        ws.json().await["data"],
        "new",
        "the connection stayed up through the reload"
    );

    // An invalid file: refused with every error, the running configuration stays.
    std::fs::write(&path, config("short", "heartbeat = 0")).unwrap();
    let (ok, out, err) = operate(&server, &["reload"], ADMIN, false);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.starts_with("pushhub: reload_refused: the new configuration was refused ("),
        "{err}"
    );
    assert!(err.contains("(HTTP 422)\n  "), "{err}");
    for key in ["heartbeat", "apps.demo.api_keys"] {
        assert!(err.contains(&format!(": {key}: ")), "{key} in {err}");
    }
    let answer = http()
        .post(server.api_url("/v1/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "reload_refused", "{body}");
    let errors = body["error"]["errors"].as_array().unwrap();
    assert!(errors.len() >= 2, "{body}");
    assert!(
        errors
            .iter()
            .all(|e| e["location"].is_string() && e["key"].is_string() && e["message"].is_string()),
        "{body}"
    );
    let (ok, _, err) = operate(&server, &["push", "demo", "alice", "still"], NEW_KEY, false);
    assert!(ok, "the running configuration stays: {err}");
    assert_eq!(ws.json().await["data"], "still");
    let status = json_of(&server, &["status"]);
    assert_eq!(status["reload"]["generation"], 2, "{status}");
    let last = &status["reload"]["last"];
    assert_eq!(
        (last["ok"].clone(), last["trigger"].clone()),
        (json!(false), json!("api")),
        "{status}"
    );
    assert!(last["errors"].as_array().unwrap().len() >= 2, "{status}");
    let (_, out, _) = operate(&server, &["status"], ADMIN, false);
    assert!(
        out.contains("config:      generation 2; last at ") && out.contains("(api): REFUSED, "),
        "{out}"
    );
    assert!(!server.log().contains(NEW_KEY), "a key was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_need_an_admin_key_and_a_reachable_server() {
    let (server, _dir) = TestServer::with_config(&config(OLD_KEY, ""));
    for command in [&["status"][..], &["reload"], &["stop"]] {
        let (ok, out, err) = operate(&server, command, OLD_KEY, false);
        assert!(!ok && out.is_empty(), "{command:?}: {out}");
        assert_eq!(
            err,
            "pushhub: forbidden: this is an app's API key: server-wide operations need an admin key (HTTP 403)\n",
            "{command:?}"
        );
        let (ok, _, err) = operate(&server, command, "wrong-key-0123456789", false);
        assert!(!ok);
        assert_eq!(
            err, "pushhub: invalid_api_key: unknown API key (HTTP 401)\n",
            "{command:?}"
        );
        let (ok, _, err) = pushhub(&[command[0], "--api", &format!("http://{}", server.api)]);
        assert!(!ok);
        assert!(err.starts_with("pushhub: missing_admin_key: "), "{err}");
        let away = dead_url().trim_end_matches("/dead").to_owned();
        let (ok, out, err) = pushhub(&[command[0], "--api", &away, "--key", ADMIN]);
        assert!(!ok && out.is_empty(), "{out}");
        assert!(
            err.starts_with(&format!("pushhub: cannot reach the API at {away}/")),
            "{err}"
        );
    }
    // Still serving after all that.
    assert_eq!(json_of(&server, &["status"])["reload"]["generation"], 1);
    let (status, body) = server
        .post_raw("/v1/admin/stop", "application/json", "{\"forse\":true}")
        .await;
    assert_eq!(status, 401, "{body}");
    let answer = http()
        .post(server.api_url("/v1/admin/stop"))
        .bearer_auth(ADMIN)
        .json(&json!({"forse": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    assert_eq!(
        json_of(&server, &["status"])["version"],
        env!("CARGO_PKG_VERSION")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_clients_with_1001_and_waits_for_the_exit() {
    let (mut server, _dir) = TestServer::with_config(&config(OLD_KEY, ""));
    let (mut client, welcome) = server.native("demo", "alice").await;
    let node = welcome["conn"]
        .as_str()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    let (ok, out, err) = tokio::task::block_in_place(|| operate(&server, &["stop"], ADMIN, false));
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!(
            "node {node} is stopping: it stopped accepting after "
        )) && out.ends_with(" and exits once its connections and calls finish, within 10 s\n"),
        "{out}"
    );
    assert_eq!(client.closed().await.0, 1001);
    let status = tokio::task::block_in_place(|| server.wait_exit());
    assert!(status.success(), "{status:?}\n{}", server.log());
    let log = server.log();
    assert!(log.contains("stop requested through the API"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_force_does_not_wait_out_the_grace_for_a_trickling_request() {
    use tokio::io::AsyncWriteExt;
    let (mut server, _dir) = TestServer::with_config(&config(OLD_KEY, "shutdown_grace = 30"));
    // A request whose body never completes: a graceful stop would wait 30 s for it.
    let mut slow = tokio::net::TcpStream::connect(server.api).await.unwrap();
    slow.write_all(b"POST /v1/push HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"app\"")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (ok, out, err) =
        tokio::task::block_in_place(|| operate(&server, &["stop", "--force"], ADMIN, true));
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            answer["stopping"].clone(),
            answer["force"].clone(),
            answer["grace_secs"].clone()
        ),
        (json!(true), json!(true), json!(0.0)),
        "{answer}"
    );
    let status = tokio::task::block_in_place(|| server.wait_exit());
    assert!(status.success(), "{status:?}\n{}", server.log());
    println!(
        "forced stop with a 30 s grace and a request trickling in: process gone after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a forced stop took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_durable_history_log_and_its_health() {
    let (server, _dir) = TestServer::with_config(&config(OLD_KEY, "history_store = \"disk\""));
    let (ok, _, err) = operate(&server, &["push", "demo", "alice", "kept"], OLD_KEY, false);
    assert!(ok, "{err}");
    let status = json_of(&server, &["status"]);
    let history = &status["stores"]["history"];
    assert_eq!(
        (
            history["kind"].clone(),
            history["healthy"].clone(),
            history["fsync"].clone()
        ),
        (json!("disk"), json!(true), json!("every_second")),
        "{status}"
    );
    assert!(history["bytes"].as_u64().unwrap() > 0, "{status}");
    let (_, out, _) = operate(&server, &["status"], ADMIN, false);
    assert!(
        out.contains("history:     on disk (fsync every_second), ")
            && out.contains(" in the log: healthy\n"),
        "{out}"
    );
}
