//! Pusher's HTTP API (issue 19, point 3) driven by the real npm `pusher` 5.3.4 server SDK
//! (clients/js/test/pusher-api/sdk.mjs, one SDK call per run), with native WebSocket
//! clients in the rooms the Pusher channels map to: a trigger on channel `X` reaches a
//! native client in room `X`, and the channel queries count native members. Requests the
//! SDK refuses to send (too many channels, a stale clock) are signed by the SDK and sent
//! with reqwest.
//!
//! Outside CI a missing `node` or npm package skips these tests loudly; with `CI=true` it
//! fails them.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::util::{http, Client, TestServer};

/// Two Pusher apps, the second switched off (the Python SDK's test shares them).
pub(crate) const CONFIG: &str = r#"
[apps.chat]
auth = "none"
[apps.chat.pusher]
app_id = "1001"
key = "chat-key"
secret = "chat-secret"

[apps.quiet]
[apps.quiet.pusher]
app_id = "1002"
key = "quiet-key"
secret = "quiet-secret"
enabled = false
"#;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/js")
}

/// The SDK for one app of a running server, or `None` (after a loud skip) when node or
/// the package is missing.
struct Sdk {
    env: Vec<(&'static str, String)>,
}

impl Sdk {
    fn new(server: &TestServer, app_id: &str, key: &str, secret: &str) -> Option<Self> {
        let missing = |reason: &str| {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{reason}: with CI=true a missing service fails the run");
            }
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** SKIPPED pusher_api: {reason} ***\n"
            );
            None
        };
        let node = Command::new("node").arg("--version").output();
        if !node.is_ok_and(|out| out.status.success()) {
            return missing("node is not installed");
        }
        if !js_dir().join("node_modules/pusher/package.json").exists() {
            return missing("npm package pusher is not installed (run `npm ci` in clients/js)");
        }
        Some(Self {
            env: vec![
                ("PUSHER_APP_ID", app_id.to_owned()),
                ("PUSHER_KEY", key.to_owned()),
                ("PUSHER_SECRET", secret.to_owned()),
                ("PUSHER_HOST", server.api.ip().to_string()),
                ("PUSHER_PORT", server.api.port().to_string()),
            ],
        })
    }

    /// Run SDK operation `op` with `arg`; its one line of JSON output.
    fn run(&self, op: &str, arg: Value) -> Value {
        let out = Command::new("node")
            .arg("test/pusher-api/sdk.mjs")
            .arg(op)
            .arg(arg.to_string())
            .current_dir(js_dir())
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "sdk.mjs {op} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// `{status, body}` of an SDK call.
    fn call(&self, op: &str, arg: Value) -> (u64, Value) {
        let answer = self.run(op, arg);
        (
            answer["status"].as_u64().expect("status"),
            answer["body"].clone(),
        )
    }

    /// Send `method path` with `body`, signed by the SDK (at Unix time `now` if given),
    /// straight with reqwest: `(status, JSON body)`.
    async fn raw(
        &self,
        server: &TestServer,
        (method, path): (&str, &str),
        body: Option<Value>,
        now: Option<u64>,
    ) -> (u16, Value) {
        let signed = self.run(
            "sign",
            json!({"method": method, "path": path, "body": body, "now": now}),
        );
        let query = signed["query"].as_str().expect("query");
        let url = format!("http://{}{path}?{query}", server.api);
        let request = match method {
            "GET" => http().get(url),
            _ => http()
                .post(url)
                .header("content-type", "application/json")
                .body(signed["body"].as_str().unwrap_or("").to_owned()),
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A native client of app "chat" in `rooms` (the rooms Pusher channels of the same name
/// are).
pub(crate) async fn native(server: &TestServer, user: &str, rooms: &[&str]) -> Client {
    let (mut client, _) = server.native("chat", user).await;
    for room in rooms {
        client
            .send(&json!({"type": "join", "id": room, "room": room}).to_string())
            .await;
        let reply = client.json().await;
        assert_eq!(reply["type"], "joined", "{reply}");
    }
    client
}

/// The next message frame: `(channel, event, data)`.
pub(crate) async fn message(client: &mut Client) -> (String, String, Value) {
    let frame = client.json().await;
    assert_eq!(frame["type"], "msg", "{frame}");
    (
        frame["ch"].as_str().unwrap_or_default().to_owned(),
        frame["event"].as_str().unwrap_or_default().to_owned(),
        frame["data"].clone(),
    )
}

#[tokio::test]
async fn sdk_triggers_reach_native_clients_in_the_channels_rooms() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let Some(sdk) = Sdk::new(&server, "1001", "chat-key", "chat-secret") else {
        return;
    };
    let mut ann = native(&server, "ann", &["news", "private-orders"]).await;
    let mut bob = native(&server, "bob", &["news"]).await;

    // One trigger to two channels: a client in both gets it on each, as Pusher delivers.
    let (status, body) = sdk.call(
        "trigger",
        json!({"channels": ["news", "private-orders"], "event": "order", "data": {"id": 7}}),
    );
    assert_eq!((status, body), (200, json!({})));
    let mut seen = vec![message(&mut ann).await, message(&mut ann).await];
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let data = json!("{\"id\":7}");
    assert_eq!(
        seen,
        [
            ("chat:room:news".into(), "order".into(), data.clone()),
            (
                "chat:room:private-orders".into(),
                "order".into(),
                data.clone()
            ),
        ]
    );
    assert_eq!(
        message(&mut bob).await,
        ("chat:room:news".into(), "order".into(), data)
    );

    // info asks for the channels' attributes.
    let (status, body) = sdk.call(
        "trigger",
        json!({"channels": "news", "event": "tick", "data": "plain text",
               "params": {"info": "subscription_count,user_count"}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"channels": {"news": {"subscription_count": 2}}})
    );
    for client in [&mut ann, &mut bob] {
        let (_, event, data) = message(client).await;
        assert_eq!((event.as_str(), data), ("tick", json!("plain text")));
    }

    // A batch: each event to its channel, in order.
    let (status, body) = sdk.call(
        "batch",
        json!({"batch": [
            {"channel": "private-orders", "name": "a", "data": "1"},
            {"channel": "news", "name": "b", "data": "2", "info": "subscription_count"},
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"batch": [{}, {"subscription_count": 2}]}));
    let mut seen = vec![message(&mut ann).await.1, message(&mut ann).await.1];
    seen.sort();
    assert_eq!(seen, ["a", "b"]);
    assert_eq!(message(&mut bob).await.1, "b");

    // sendToUser: the user's channel, which every connection of the user is in.
    let (status, _) = sdk.call(
        "sendToUser",
        json!({"user": "bob", "event": "hello", "data": {"to": "bob"}}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        message(&mut bob).await,
        (
            "chat:user:bob".into(),
            "hello".into(),
            json!("{\"to\":\"bob\"}")
        )
    );

    // A well-formed socket_id is taken (the SDK checks the form before sending); one
    // that is not N.M is refused.
    let (status, body) = sdk.call(
        "trigger",
        json!({"channels": "news", "event": "e", "data": "1", "params": {"socket_id": "12.3"}}),
    );
    assert_eq!((status, body), (200, json!({})));
    let (status, body) = sdk
        .raw(
            &server,
            ("POST", "/apps/1001/events"),
            Some(json!({"name": "x", "data": "1", "channel": "news", "socket_id": "12.x"})),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_socket_id");
}

#[tokio::test]
async fn sdk_channel_queries_count_every_member() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let Some(sdk) = Sdk::new(&server, "1001", "chat-key", "chat-secret") else {
        return;
    };
    let mut ann1 = native(&server, "ann", &["presence-room"]).await;
    let mut ann2 = native(&server, "ann", &["presence-room"]).await;
    let _bob = native(&server, "bob", &["presence-room"]).await;
    let _cid = native(&server, "cid", &["news"]).await;

    let get = |path: &str, params: Value| sdk.call("get", json!({"path": path, "params": params}));
    let (status, body) = get("/channels", json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"channels": {"news": {}, "presence-room": {}}}));
    let (status, body) = get(
        "/channels",
        json!({"filter_by_prefix": "presence-", "info": "user_count"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"channels": {"presence-room": {"user_count": 2}}})
    );
    let (status, body) = get("/channels", json!({"info": "user_count"}));
    assert_eq!(status, 400, "user_count needs a presence prefix: {body}");
    assert_eq!(body["error"]["code"], "invalid_info");

    let (status, body) = get(
        "/channels/presence-room",
        json!({"info": "user_count,subscription_count"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"occupied": true, "user_count": 2, "subscription_count": 3})
    );
    let (status, body) = get("/channels/nobody-here", json!({}));
    assert_eq!((status, body), (200, json!({"occupied": false})));

    // A cache channel's last event, from its history, with the seconds it is kept still.
    let (status, _) = sdk.call(
        "trigger",
        json!({"channels": ["cache-price", "news"], "event": "price", "data": "42"}),
    );
    assert_eq!(status, 200);
    let (status, body) = get("/channels/cache-price", json!({"info": "cache"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["occupied"], false, "{body}");
    assert_eq!(body["cache"]["data"], "42", "{body}");
    assert!(body["cache"]["ttl"].as_u64() > Some(0), "{body}");
    let (status, body) = get("/channels/news", json!({"info": "cache"}));
    assert_eq!((status, body), (200, json!({"occupied": true})));
    let (status, _) = get("/channels/news", json!({"info": "user_count"}));
    assert_eq!(status, 400);

    let (status, body) = get("/channels/presence-room/users", json!({}));
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<&str> = body["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["ann", "bob"]);
    let (status, body) = get("/channels/news/users", json!({}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "not_presence");

    // terminate_connections closes every connection of the user, with Pusher's code.
    let (status, body) = sdk.call("terminate", json!({"user": "ann"}));
    assert_eq!((status, body), (200, json!({})));
    for client in [&mut ann1, &mut ann2] {
        let (code, reason) = client.closed().await;
        assert_eq!(code, 4009, "{reason}");
    }
    let (status, body) = sdk.call("terminate", json!({"user": "nobody"}));
    assert_eq!((status, body), (200, json!({})));
}

#[tokio::test]
async fn bad_requests_get_pushers_statuses() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let Some(sdk) = Sdk::new(&server, "1001", "chat-key", "chat-secret") else {
        return;
    };
    let event = |channels: Vec<String>, data: &str| {
        Some(json!({"name": "e", "data": data, "channels": channels}))
    };
    let news = || vec!["news".to_owned()];
    let post = ("POST", "/apps/1001/events");

    let (status, body) = sdk.raw(&server, post, event(news(), "1"), None).await;
    assert_eq!((status, body), (200, json!({})));

    // Signed for another secret, or too long ago.
    let Some(stranger) = Sdk::new(&server, "1001", "chat-key", "not-the-secret") else {
        return;
    };
    let (status, body) = stranger.call(
        "trigger",
        json!({"channels": "news", "event": "e", "data": "1"}),
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_signature");
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let (status, body) = sdk
        .raw(&server, post, event(news(), "1"), Some(an_hour_ago))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("auth_timestamp")),
        "{body}"
    );
    // The body changed after signing.
    let signed = sdk.run(
        "sign",
        json!({"method": "POST", "path": "/apps/1001/events",
        "body": {"name": "e", "data": "1", "channels": ["news"]}}),
    );
    let url = format!(
        "http://{}/apps/1001/events?{}",
        server.api,
        signed["query"].as_str().unwrap()
    );
    let response = http()
        .post(url)
        .body(r#"{"name":"e","data":"2","channels":["news"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // An app id nobody has; a disabled app.
    let (status, body) = sdk
        .raw(
            &server,
            ("POST", "/apps/9999/events"),
            event(news(), "1"),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_app");
    let Some(quiet) = Sdk::new(&server, "1002", "quiet-key", "quiet-secret") else {
        return;
    };
    let (status, body) = quiet.call("get", json!({"path": "/channels"}));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "app_disabled");

    // Too many channels, a bad channel name, an event name too long, data too large.
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let (status, body) = sdk.raw(&server, post, event(many, "1"), None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "too_many_channels");
    for bad in ["a b", "a,b", "x*"] {
        let (status, body) = sdk
            .raw(&server, post, event(vec![bad.to_owned()], "1"), None)
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_channel", "{bad}");
    }
    let long_name = json!({"name": "e".repeat(201), "data": "1", "channel": "news"});
    let (status, body) = sdk.raw(&server, post, Some(long_name), None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = sdk
        .raw(
            &server,
            post,
            event(news(), &"x".repeat(10 * 1024 + 1)),
            None,
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "event_too_large");
    let batch: Vec<Value> = (0..11)
        .map(|i| json!({"channel": "news", "name": "e", "data": i.to_string()}))
        .collect();
    let (status, body) = sdk
        .raw(
            &server,
            ("POST", "/apps/1001/batch_events"),
            Some(json!({ "batch": batch })),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "batch_too_large");
}

#[tokio::test]
async fn a_reload_changes_the_pusher_credentials_the_api_answers_to() {
    let (server, dir) = TestServer::with_config(CONFIG);
    let Some(old) = Sdk::new(&server, "1001", "chat-key", "chat-secret") else {
        return;
    };
    let trigger = json!({"channels": "news", "event": "e", "data": "1"});
    assert_eq!(old.call("trigger", trigger.clone()).0, 200);
    let rotated = CONFIG
        .replace("app_id = \"1001\"", "app_id = \"2001\"")
        .replace("secret = \"chat-secret\"", "secret = \"new-secret\"");
    std::fs::write(dir.path().join("pushhub.toml"), rotated).expect("write");
    server.signal("HUP");
    server.wait_log("configuration reloaded", 1).await;
    let (status, body) = old.call("trigger", trigger.clone());
    assert_eq!(status, 404, "the old app id is gone: {body}");
    let Some(stale) = Sdk::new(&server, "2001", "chat-key", "chat-secret") else {
        return;
    };
    assert_eq!(stale.call("trigger", trigger.clone()).0, 401, "old secret");
    let Some(new) = Sdk::new(&server, "2001", "chat-key", "new-secret") else {
        return;
    };
    let (status, body) = new.call("trigger", trigger);
    assert_eq!((status, body), (200, json!({})));
}

/// One port for everything, as Soketi and Reverb serve: the Pusher API is signed, so it
/// needs none of the API keys the native API asks for there.
#[tokio::test]
async fn the_api_answers_on_a_single_port_without_api_keys() {
    let config = CONFIG.replace(
        "[apps.chat]\nauth = \"none\"\n",
        "[apps.chat]\nauth = \"none\"\napi_keys = [\"chat-api-key-0123456789\"]\n",
    );
    let config = config.replace(
        "[apps.quiet]\n",
        "[apps.quiet]\napi_keys = [\"quiet-api-key-0123456789\"]\n",
    );
    let (server, _dir) = TestServer::single_port(&config);
    assert_eq!(server.api, server.client);
    let Some(sdk) = Sdk::new(&server, "1001", "chat-key", "chat-secret") else {
        return;
    };
    let mut ann = native(&server, "ann", &["news"]).await;
    let (status, body) = sdk.call(
        "trigger",
        json!({"channels": "news", "event": "e", "data": "one port"}),
    );
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(message(&mut ann).await.2, json!("one port"));
}

/// The socket id of a native connection named `conn` (`k3x9q2ab-1f`) in a `welcome`: the
/// same connection, as the Pusher API names it.
fn socket_id_of(conn: &str) -> String {
    let (node, id) = conn.split_once('-').expect("NODE-ID");
    let node = u64::from_str_radix(node, 36).expect("base 36");
    let id = u64::from_str_radix(id, 16).expect("hex");
    format!("{node}.{id}")
}

#[tokio::test]
async fn a_triggers_socket_id_leaves_that_connection_out() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let Some(sdk) = Sdk::new(&server, "1001", "chat-key", "chat-secret") else {
        return;
    };
    let (mut ann, welcome) = server.native("chat", "ann").await;
    ann.send(&json!({"type": "join", "id": 1, "room": "news"}).to_string())
        .await;
    assert_eq!(ann.json().await["type"], "joined");
    let mut bob = native(&server, "bob", &["news"]).await;
    let socket_id = socket_id_of(welcome["conn"].as_str().expect("conn"));

    let (status, body) = sdk.call(
        "trigger",
        json!({"channels": "news", "event": "e", "data": "not for ann",
               "params": {"socket_id": socket_id}}),
    );
    assert_eq!((status, body), (200, json!({})));
    let (status, _) = sdk.call(
        "batch",
        json!({"batch": [{"channel": "news", "name": "e", "data": "not for ann either",
                          "socket_id": socket_id}]}),
    );
    assert_eq!(status, 200);
    let (status, _) = sdk.call(
        "trigger",
        json!({"channels": "news", "event": "e", "data": "for everyone"}),
    );
    assert_eq!(status, 200);
    for expected in ["not for ann", "not for ann either", "for everyone"] {
        assert_eq!(message(&mut bob).await.2, json!(expected));
    }
    // Ann's first message is the third: the two before it left her out.
    assert_eq!(message(&mut ann).await.2, json!("for everyone"));
}
