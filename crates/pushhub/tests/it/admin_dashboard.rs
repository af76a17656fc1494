//! The admin dashboard: the page itself in headless Chromium (clients/js/test/admin.test.js,
//! which keeps screenshots of every view under target/tmp/admin-screenshots/), and the API
//! it stands on: the overview, a channel's history, a failed timer's retry, the same-origin
//! rule, and the page that replaces it when no admin key could open it.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{http, TestServer, WAIT};

const ADMIN: &str = "admin-key-0123456789abcdef";
const APP_KEY: &str = "demo-key-0123456789abcdef";

#[test]
fn admin_dashboard_in_chromium() {
    crate::browser::node_suite("the admin dashboard tests", &["test/admin.test.js"]);
}

async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = http().request(method, server.api_url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(WAIT, request.send())
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

fn keyed_server(extra: &str) -> (TestServer, tempfile::TempDir) {
    TestServer::with_config(&format!(
        "admin_keys = [\"{ADMIN}\"]\n{extra}\n[apps.demo]\nauth = \"none\"\napi_keys = [\"{APP_KEY}\"]\n"
    ))
}

#[tokio::test]
async fn the_overview_needs_the_admin_key_and_counts_every_app() {
    let (server, _dir) = keyed_server("");
    let (_client, _) = server.native("demo", "7").await;
    let get = reqwest::Method::GET;
    let (status, body) = call(&server, get.clone(), "/v1/admin/overview", None, &[]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("missing_admin_key"))
    );
    let (status, _) = call(
        &server,
        get.clone(),
        "/v1/admin/overview",
        Some(APP_KEY),
        &[],
    )
    .await;
    assert_eq!(status, 403, "an app's key is not an admin key");
    // Attaching is asynchronous to the client's welcome: wait for the count.
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let (status, body) =
            call(&server, get.clone(), "/v1/admin/overview", Some(ADMIN), &[]).await;
        assert_eq!(status, 200, "{body}");
        if body["apps"][0]["connections"] == 1 || tokio::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        body["apps"],
        json!([{"app": "demo", "users": 1, "connections": 1}])
    );
    assert_eq!(body["cluster"]["spans_nodes"], false);
    assert_eq!(body["cluster"]["nodes"], json!([body["node"]]));
    assert_eq!(body["engine"]["healthy"], true);
    assert!(
        body["memory"]["rss_bytes"].as_u64().unwrap_or(0) > 1 << 20,
        "{body}"
    );
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy() {
    let (server, _dir) = keyed_server("");
    for (path, kind) in [
        ("/admin", "text/html"),
        ("/admin/admin.js", "text/javascript"),
        ("/admin/base.css", "text/css"),
        ("/admin/admin.css", "text/css"),
    ] {
        let response = http().get(server.api_url(path)).send().await.expect("get");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("connect-src 'self'"));
    }
}

#[tokio::test]
async fn history_reads_the_newest_kept_messages_oldest_first() {
    let (server, _dir) = TestServer::with_config(
        "[apps.demo]\nauth = \"none\"\nhistory_size = 10\n[apps.small]\nauth = \"none\"\nhistory_max_bytes = 2048\n",
    );
    for i in 1..=25 {
        server.push("*", json!({ "i": i })).await;
    }
    let (status, body) = server
        .get("/v1/apps/demo/history?channel=demo:all&limit=4")
        .await;
    assert_eq!(status, 200, "{body}");
    let offsets = |body: &Value| -> Vec<u64> {
        body["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["off"].as_u64().expect("off"))
            .collect()
    };
    assert_eq!(offsets(&body), [22, 23, 24, 25]);
    assert_eq!(body["messages"][3]["data"], json!({"i": 25}));
    assert_eq!(body["top"], 25);
    let (_, body) = server
        .get("/v1/apps/demo/history?channel=demo:all&limit=1000")
        .await;
    assert_eq!(
        offsets(&body),
        (16..=25).collect::<Vec<_>>(),
        "history_size keeps 10"
    );
    // A bound on bytes trims the oldest: the read narrows until it reaches what is kept.
    for i in 0..40 {
        let (status, body) = server
            .post_json(
                "/v1/push",
                &json!({"app": "small", "to": "*", "data": {"i": i, "pad": "x".repeat(100)}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, body) = server
        .get("/v1/apps/small/history?channel=small:all&limit=100")
        .await;
    let kept = offsets(&body);
    assert!(!kept.is_empty() && kept.len() < 40, "{kept:?}");
    assert_eq!(kept.last(), Some(&40));
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
    let (_, stats) = server.get("/v1/stats").await;
    let held = stats["broker"]["history_messages"].as_u64().expect("held");
    assert_eq!(
        kept.len() as u64 + 10,
        held,
        "every kept message, not fewer"
    );
    let (status, body) = server.get("/v1/apps/demo/history?channel=nope:all").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_channel"))
    );
    let (status, _) = server
        .get("/v1/apps/demo/history?channel=demo:all&limit=0")
        .await;
    assert_eq!(status, 400);
    let (status, body) = server.get("/v1/apps/demo/history").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("missing_param"))
    );
    let (_, body) = server
        .get("/v1/apps/demo/history?channel=demo:user:nobody")
        .await;
    assert_eq!((&body["top"], &body["messages"]), (&json!(0), &json!([])));
}

#[tokio::test]
async fn only_a_failed_timer_is_retried() {
    let (server, _dir) = TestServer::with_config("[apps.demo]\nauth = \"none\"\n");
    let (status, timer) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": "http://example.com/later", "delay_ms": 3_600_000}),
        )
        .await;
    assert_eq!(status, 201, "{timer}");
    let id = timer["id"].to_string();
    let (status, body) = server
        .post_json(&format!("/v1/timers/{id}/retry"), &json!({}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("timer_not_failed"))
    );
    let (status, _) = server
        .post_json("/v1/timers/999999/retry", &json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_api_takes_its_own_pages_requests_and_no_other_sites() {
    let (server, _dir) = TestServer::with_config("[apps.demo]\nauth = \"none\"\n");
    let body = json!({"app": "demo", "user": "7"}).to_string();
    let send = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = http()
            .post(server.api_url("/v1/disconnect"))
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let other = send(&[
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ])
    .await
    .expect("post");
    assert_eq!(other.status(), 403);
    let own = send(&[
        ("origin", "http://127.0.0.1:1"),
        ("sec-fetch-site", "same-origin"),
    ])
    .await
    .expect("post");
    assert_eq!(own.status(), 200);
}

/// Single-port mode (the API shares the client listener, so it is exposed) without an
/// admin key: the page says how to configure one, and check-config warns.
#[tokio::test]
async fn without_an_admin_key_an_exposed_api_shows_how_to_configure_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("pushhub.toml");
    std::fs::write(
        &config,
        format!("[apps.demo]\nauth = \"none\"\napi_keys = [\"{APP_KEY}\"]\n"),
    )
    .expect("write config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args([
            "serve",
            "--listen",
            &addr,
            "--api-listen",
            &addr,
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pushhub");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let url = format!("http://{addr}/admin");
    let deadline = tokio::time::Instant::now() + WAIT;
    let response = loop {
        match http().get(&url).send().await {
            Ok(response) => break response,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("server did not answer: {error}"),
        }
    };
    assert_eq!(response.status(), 403);
    let page = response.text().await.expect("page");
    assert!(
        page.contains("no admin key is configured") && page.contains("admin_keys = ["),
        "{page}"
    );

    let exposed = dir.path().join("exposed.toml");
    std::fs::write(
        &exposed,
        format!("api_listen = \"0.0.0.0:8082\"\n[apps.demo]\nauth = \"none\"\napi_keys = [\"{APP_KEY}\"]\n"),
    )
    .expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args(["check-config"])
        .arg(&exposed)
        .output()
        .expect("check-config");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("warning:") && text.contains("admin_keys"),
        "{text}"
    );
}
