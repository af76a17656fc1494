//! The operator's view of a running server: `GET /v1/apps/{app}/users?conns=true` and
//! the `pushhub users|kick|push|tasks` commands run as the operator runs them (the real
//! binary against a real server with real clients).

use serde_json::{json, Value};
use tokio_tungstenite::MaybeTlsStream;

use crate::util::TestServer;

/// The local address of a WebSocket client's socket: what the server sees as its peer.
fn local_addr(client: &crate::util::Client) -> String {
    match client.ws.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.local_addr().unwrap().to_string(),
        _ => unreachable!("tests connect without TLS"),
    }
}

/// An SSE response held open: a connection of `user` until dropped.
pub(crate) async fn sse(server: &TestServer, user: &str) -> reqwest::Response {
    let response = crate::util::http()
        .get(format!(
            "http://{}/v1/sse?app=demo&user={user}",
            server.client
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

#[tokio::test]
async fn users_api_shows_each_connection_in_detail_on_request_and_pages() {
    let server = TestServer::start();
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (ws, welcome) = server.native("demo", "alice").await;
    let _stream = sse(&server, "alice").await;
    let (_bob, _) = server.native("demo", "bob").await;
    server.wait_connections(3).await;

    let (status, plain) = server.get("/v1/apps/demo/users").await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["total_users"], 2);
    assert_eq!(plain["total_connections"], 3);
    assert!(plain.get("conns_of_node").is_none(), "{plain}");
    assert!(plain.get("next_cursor").is_none(), "{plain}");
    for user in plain["users"].as_array().unwrap() {
        assert!(
            user.get("conns").is_none(),
            "unchanged without conns: {plain}"
        );
    }

    let (status, detail) = server.get("/v1/apps/demo/users?conns=true").await;
    assert_eq!(status, 200, "{detail}");
    let node = detail["conns_of_node"].as_str().unwrap().to_owned();
    let alice = detail["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(alice["connections"], 2, "{detail}");
    let conns = alice["conns"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "{detail}");
    let by_transport = |name: &str| -> Value {
        conns
            .iter()
            .find(|c| c["transport"] == name)
            .unwrap_or_else(|| panic!("no {name} connection: {detail}"))
            .clone()
    };
    let on_ws = by_transport("websocket");
    assert_eq!(on_ws["conn"], welcome["conn"], "{detail}");
    assert_eq!(on_ws["node"], json!(node));
    assert_eq!(on_ws["dialect"], "native");
    assert_eq!(on_ws["addr"], json!(local_addr(&ws)));
    assert_eq!(on_ws["queue"], 0);
    let since = on_ws["since"].as_u64().unwrap();
    assert!(since >= before_ms && since < before_ms + 60_000, "{detail}");
    let on_sse = by_transport("sse");
    assert_eq!(on_sse["dialect"], "native");
    assert!(
        on_sse["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{detail}"
    );

    let (_, first) = server.get("/v1/apps/demo/users?limit=1").await;
    assert_eq!(first["users"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["users"][0]["user"], "alice");
    assert_eq!(first["next_cursor"], "alice");
    assert_eq!(first["total_users"], 2);
    let (_, second) = server.get("/v1/apps/demo/users?limit=1&cursor=alice").await;
    assert_eq!(second["users"][0]["user"], "bob", "{second}");
    assert_eq!(second["next_cursor"], Value::Null, "{second}");

    let (status, bad) = server.get("/v1/apps/demo/users?limit=0").await;
    assert_eq!(
        (status, bad["error"]["code"].clone()),
        (400, json!("invalid_param"))
    );
}

const KEY: &str = "demo-key-0123456789";
const ADMIN: &str = "admin-key-0123456789";

/// A server whose app `demo` has an API key, a lifecycle webhook to `events` and an RPC
/// backend at `rpc`; app `other` has its own key; an admin key opens both.
fn keyed_server(events: &str, rpc: &str) -> (TestServer, tempfile::TempDir) {
    TestServer::with_config(&format!(
        r#"
admin_keys = ["{ADMIN}"]

[apps.demo]
auth = "none"
api_keys = ["{KEY}"]
backend_secret = "demo-backend-secret-0123456789abcdef"
[apps.demo.events]
url = "{events}"
max_delay_ms = 20
max_attempts = 2
timeout_ms = 2000
[apps.demo.rpc]
url = "{rpc}"
timeout_ms = 2000

[apps.other]
auth = "none"
api_keys = ["other-key-0123456789"]
"#
    ))
}

/// Run `pushhub ARGS` as an operator would; its success, stdout and stderr.
pub(crate) fn pushhub(args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args(args)
        .env_remove("PUSHHUB_API_KEY")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `pushhub COMMAND ... --api URL --key KEY [--json]`.
pub(crate) fn operate(
    server: &TestServer,
    command: &[&str],
    key: &str,
    json: bool,
) -> (bool, String, String) {
    let api = format!("http://{}", server.api);
    let mut args = command.to_vec();
    args.extend(["--api", &api, "--key", key]);
    if json {
        args.push("--json");
    }
    pushhub(&args)
}

/// A URL nothing listens on.
pub(crate) fn dead_url() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/dead", closed.local_addr().unwrap());
    drop(closed);
    url
}

#[tokio::test]
async fn users_kick_and_push_commands_act_on_a_live_server() {
    let dead = dead_url();
    let (server, _dir) = keyed_server(&dead, &dead);
    let (mut alice, welcome) = server.native("demo", "alice").await;
    let (mut bob, _) = server.native("demo", "bob").await;
    let conn = welcome["conn"].as_str().unwrap().to_owned();

    let (ok, out, err) = operate(&server, &["users", "demo"], KEY, false);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.starts_with("USER   CONN"), "{out}");
    let line = out.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(line.contains(&conn), "{out}");
    assert!(
        line.contains("websocket") && line.contains("native"),
        "{out}"
    );
    assert!(line.contains(&local_addr(&alice)), "{out}");
    assert!(
        out.contains("2 user(s), 2 connection(s) online in app demo"),
        "{out}"
    );
    let (ok, out, err) = operate(&server, &["users", "demo", "--limit", "1"], KEY, true);
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["users"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["users"][0]["conns"][0]["conn"], json!(conn));
    assert_eq!(answer["next_cursor"], "alice");
    let (ok, out, _) = operate(
        &server,
        &["users", "demo", "--limit", "1", "--after", "alice"],
        KEY,
        false,
    );
    assert!(
        ok && out.starts_with("USER") && out.contains("\nbob "),
        "{out}"
    );

    let (ok, out, err) = operate(
        &server,
        &["push", "demo", "bob", r#"{"n":1}"#, "--event", "note"],
        KEY,
        false,
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with("pushed ") && out.contains(" to 1 connection(s)\n"),
        "{out}"
    );
    assert!(out.contains("demo:user:bob offset 1"), "{out}");
    let got = bob.json().await;
    assert_eq!(
        (got["event"].clone(), got["data"].clone()),
        (json!("note"), json!({"n": 1}))
    );
    let (ok, out, err) = operate(&server, &["push", "demo", "*", "plain text"], KEY, true);
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["delivered"], 2, "{answer}");
    assert_eq!(bob.json().await["data"], "plain text");
    assert_eq!(alice.json().await["data"], "plain text");
    let (ok, _, err) = operate(
        &server,
        &["push", "demo", &format!("conn:{conn}"), "42", "--string"],
        KEY,
        false,
    );
    assert!(ok, "{err}");
    assert_eq!(alice.json().await["data"], "42");

    let (ok, out, err) = operate(
        &server,
        &["kick", "demo", "alice", "--reason", "maintenance"],
        KEY,
        false,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("closed 1 connection(s) of user \"alice\" in app \"demo\""),
        "{out}"
    );
    assert_eq!(alice.closed().await, (4009, "maintenance".to_owned()));
    let (ok, out, err) = operate(
        &server,
        &["kick", "demo", "bob", "--no-reconnect"],
        KEY,
        true,
    );
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["disconnected"],
        1
    );
    assert_eq!(bob.closed().await.0, 4516);

    let (ok, out, err) = operate(&server, &["kick", "demo", "alice"], KEY, false);
    assert!(!ok && out.is_empty(), "{out}");
    assert_eq!(
        err,
        "pushhub: user \"alice\" is not connected to app \"demo\"; nothing to close\n"
    );
    let (ok, out, err) = operate(&server, &["users", "demo"], ADMIN, true);
    assert!(ok, "an admin key opens every app: {err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["total_users"],
        0
    );
    let (ok, _, err) = operate(&server, &["push", "other", "*", "1"], ADMIN, false);
    assert!(ok, "{err}");
    let (ok, _, err) = operate(&server, &["users", "nope"], KEY, false);
    assert!(!ok);
    assert_eq!(
        err,
        "pushhub: forbidden: this API key is not a key of app \"nope\" (HTTP 403)\n"
    );
}

#[tokio::test]
async fn commands_fail_clearly_when_the_server_is_away_or_refuses_the_key() {
    let dead = dead_url();
    let (server, _dir) = keyed_server(&dead, &dead);
    for command in [
        &["users", "demo"][..],
        &["kick", "demo", "alice"],
        &["push", "demo", "*", "1"],
        &["tasks"],
    ] {
        let (ok, out, err) = operate(&server, command, "wrong-key-0123456789", false);
        assert!(!ok && out.is_empty(), "{command:?}: {out}");
        assert_eq!(
            err, "pushhub: invalid_api_key: unknown API key (HTTP 401)\n",
            "{command:?}"
        );
    }
    let (ok, _, err) = operate(&server, &["users", "demo"], "other-key-0123456789", false);
    assert!(!ok);
    assert_eq!(
        err,
        "pushhub: forbidden: this API key is not a key of app \"demo\" (HTTP 403)\n"
    );
    let (ok, _, err) = pushhub(&["users", "demo", "--api", &format!("http://{}", server.api)]);
    assert!(!ok);
    assert!(err.starts_with("pushhub: missing_api_key: "), "{err}");

    let away = dead.trim_end_matches("/dead").to_owned();
    for command in [
        &["users", "demo"][..],
        &["tasks"],
        &["push", "demo", "*", "1"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--api", &away]);
        let (ok, out, err) = pushhub(&args);
        assert!(!ok && out.is_empty(), "{command:?}: {out}");
        assert!(
            err.starts_with(&format!("pushhub: cannot reach the API at {away}/")),
            "{command:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[tokio::test]
async fn tasks_reports_failing_webhooks_rpc_calls_and_timers() {
    let dead = dead_url();
    let (server, _dir) = keyed_server(&dead, &dead);
    let (mut client, _) = server.native("demo", "alice").await;
    client
        .send(&json!({"type": "rpc", "id": 1, "method": "shop.buy", "data": {}}).to_string())
        .await;
    assert_eq!(client.json().await["code"], "rpc_unavailable");
    for timer in [
        json!({"app": "demo", "url": dead, "retry": {"max_attempts": 1}}),
        json!({"app": "demo", "url": dead, "delay_ms": 3_600_000}),
    ] {
        let response = crate::util::http()
            .post(server.api_url("/v1/timers"))
            .bearer_auth(KEY)
            .json(&timer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    // The connect event's batch fails twice (one retry), the timer's one call fails.
    let deadline = tokio::time::Instant::now() + crate::util::WAIT;
    let answer = loop {
        let (ok, out, err) = operate(&server, &["tasks"], KEY, true);
        assert!(ok, "{err}");
        let answer: Value = serde_json::from_str(&out).unwrap();
        let webhook = &answer["apps"][0]["webhook"];
        if webhook["failed"] == 1 && answer["timers"]["failed"] == 1 {
            break answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        answer["apps"].as_array().unwrap().len(),
        1,
        "a key sees its app: {answer}"
    );
    let webhook = &answer["apps"][0]["webhook"];
    assert_eq!(webhook["retries"], 1, "{answer}");
    assert_eq!(webhook["sent"], 0, "{answer}");
    assert_eq!(webhook["latency"]["count"], 2, "{answer}");
    let rpc = &answer["apps"][0]["rpc"];
    assert_eq!(
        (rpc["failed"].clone(), rpc["in_flight"].clone()),
        (json!(1), json!(0)),
        "{answer}"
    );
    assert_eq!(answer["timers"]["pending"], 1, "{answer}");
    assert!(
        answer["timers"]["next_due_ms"].as_u64().unwrap() > 0,
        "{answer}"
    );
    assert_eq!(answer["timers"]["latency"]["count"], 1, "{answer}");

    let (ok, out, err) = operate(&server, &["tasks"], ADMIN, true);
    assert!(ok, "{err}");
    let apps: Value = serde_json::from_str::<Value>(&out).unwrap()["apps"].clone();
    assert_eq!(
        apps.as_array().unwrap().len(),
        2,
        "an admin sees every app: {apps}"
    );
    let (ok, out, err) = operate(&server, &["tasks"], KEY, false);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(
            "timers: 1 pending, 0 running, 1 failed, 0 retries, 0 succeeded; next due 20"
        ),
        "{out}"
    );
    let hook = out.lines().find(|l| l.contains("webhook")).unwrap();
    assert!(
        hook.starts_with("demo  webhook") && hook.contains("1 (0 dropped)"),
        "{out}"
    );
    let rpc = out.lines().find(|l| l.contains(" rpc ")).unwrap();
    assert!(rpc.contains("1 (0 timeouts)"), "{out}");
}
