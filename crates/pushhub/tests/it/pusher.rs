//! Issue 19's Pusher dialect proven with the real libraries: the suites of
//! clients/js/test/pusher (npm `pusher-js` in Node and in headless Chromium, `laravel-echo`
//! with pusher-js as its connector, the npm `pusher` server SDK) run with `node --test`
//! against a real server holding two Pusher apps, then against three nodes on one real
//! Redis with the clients spread over the nodes.
//!
//! The suites learn where the server is from the environment: `PUSHHUB_PUSHER_WS` and
//! `PUSHHUB_PUSHER_API` (each node's client and API listener, comma-separated, in the same
//! order) and `PUSHHUB_PUSHER_APPS` (the apps' ids, keys and secrets as JSON). Skipped
//! loudly without node, the npm packages or Chromium outside CI; failing with `CI=true`.

use pushhub_testkit::RedisServer;
use serde_json::{json, Map, Value};

use crate::browser::node_suite_with;
use crate::util::TestServer;

/// One file per area; `signatures` needs no server (the test backend against
/// auth/pusher.rs's vectors).
const FILES: &[&str] = &[
    "test/pusher/signatures.test.js",
    "test/pusher/public_private.test.js",
    "test/pusher/presence.test.js",
    "test/pusher/client_events.test.js",
    "test/pusher/cache.test.js",
    "test/pusher/users.test.js",
    "test/pusher/api.test.js",
    "test/pusher/echo.test.js",
    "test/pusher/native.test.js",
    "test/pusher/browser.test.js",
    "test/pusher/webhooks.test.js",
];

/// The npm packages the suites import.
const PACKAGES: &[&str] = &["pusher-js", "pusher", "laravel-echo", "playwright-core"];

/// A Pusher app of the test configuration.
struct App {
    /// The pushhub app it is.
    name: &'static str,
    app_id: &'static str,
    key: &'static str,
    secret: &'static str,
    /// Whether clients may send `client-` events.
    client_events: bool,
    /// Most client events per second and connection.
    client_events_per_second: u32,
    /// Most members of one presence channel.
    max_presence_members: u32,
    /// Signs the tokens of the app's native clients (the suites check that they share
    /// rooms and users with Pusher clients).
    token_secret: &'static str,
    /// Whether its Pusher webhook is the suites' receiver (webhooks.test.js).
    webhooks: bool,
}

/// Two apps, so the suites can check that one app's channels, users and credentials are
/// not the other's; only "chat" takes client events. A third, "hooked", has a webhook,
/// so only webhooks.test.js's channels reach its receiver.
const APPS: [App; 3] = [
    App {
        name: "chat",
        app_id: "1001",
        key: "chat-key",
        secret: "chat-secret",
        client_events: true,
        client_events_per_second: 5,
        max_presence_members: 100,
        token_secret: "chat-native-token-secret-0123456789abcdef",
        webhooks: false,
    },
    App {
        name: "quiet",
        app_id: "1002",
        key: "quiet-key",
        secret: "quiet-secret",
        client_events: false,
        client_events_per_second: 10,
        max_presence_members: 3,
        token_secret: "quiet-native-token-secret-0123456789abcdef",
        webhooks: false,
    },
    App {
        name: "hooked",
        app_id: "1003",
        key: "hooked-key",
        secret: "hooked-secret",
        client_events: true,
        client_events_per_second: 10,
        max_presence_members: 100,
        token_secret: "hooked-native-token-secret-0123456789abcdef",
        webhooks: true,
    },
];

/// The apps' configuration, as docs/pusher.md shows it; webhooks go to 127.0.0.1 on
/// `webhook_port`, where webhooks.test.js listens.
fn apps_toml(webhook_port: u16) -> String {
    APPS.iter()
        .map(|app| {
            let webhook = if app.webhooks {
                format!(
                    "\n[[apps.{}.pusher.webhooks]]\nurl = \"http://127.0.0.1:{webhook_port}/pusher\"\nmax_delay_ms = 50\n",
                    app.name
                )
            } else {
                String::new()
            };
            let app_toml = format!(
                r#"
[apps.{name}]
auth = "token"
token_secrets = ["{token_secret}"]

[apps.{name}.pusher]
app_id = "{app_id}"
key = "{key}"
secret = "{secret}"
client_events = {client_events}
client_events_per_second = {client_events_per_second}
max_presence_members = {max_presence_members}
"#,
                name = app.name,
                app_id = app.app_id,
                key = app.key,
                secret = app.secret,
                client_events = app.client_events,
                client_events_per_second = app.client_events_per_second,
                max_presence_members = app.max_presence_members,
                token_secret = app.token_secret,
            );
            app_toml + &webhook
        })
        .collect()
}

/// A port free now on 127.0.0.1, for the suites' webhook receiver (the server's
/// configuration must name it before the receiver starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

/// `PUSHHUB_PUSHER_APPS`:
/// `{"chat": {"app_id", "key", "secret", "client_events", "token_secret"}, …}`.
fn apps_json() -> String {
    let apps: Map<String, Value> = APPS
        .iter()
        .map(|app| {
            (
                app.name.to_owned(),
                json!({
                    "app_id": app.app_id,
                    "key": app.key,
                    "secret": app.secret,
                    "client_events": app.client_events,
                    "token_secret": app.token_secret,
                }),
            )
        })
        .collect();
    Value::Object(apps).to_string()
}

/// Run every suite against `nodes`; a failure's message ends with each node's log, then
/// the failed subtests.
fn run_suites(what: &str, nodes: &[&TestServer], webhook_port: u16) {
    let listeners = |pick: fn(&TestServer) -> std::net::SocketAddr| {
        nodes
            .iter()
            .map(|node| pick(node).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let env = [
        ("PUSHHUB_PUSHER_WS", listeners(|node| node.client)),
        ("PUSHHUB_PUSHER_API", listeners(|node| node.api)),
        ("PUSHHUB_PUSHER_APPS", apps_json()),
        ("PUSHHUB_PUSHER_WEBHOOK_PORT", webhook_port.to_string()),
    ];
    let logs = || {
        nodes
            .iter()
            .enumerate()
            .map(|(i, node)| format!("--- node {i}'s log:\n{}", node.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    node_suite_with(what, FILES, PACKAGES, &env, &logs);
}

#[test]
fn pusher_js_laravel_echo_and_the_pusher_sdk_against_one_node() {
    let port = free_port();
    let (server, _config) = TestServer::with_config(&apps_toml(port));
    run_suites("the Pusher suites, one node", &[&server], port);
}

#[test]
fn pusher_js_laravel_echo_and_the_pusher_sdk_against_three_nodes_on_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let port = free_port();
    let config = format!(
        r#"
engine = "redis"

[redis]
urls = ["{url}"]
prefix = "pusher-it"
{apps}"#,
        url = redis.url(),
        apps = apps_toml(port)
    );
    let nodes: Vec<_> = (0..3).map(|_| TestServer::with_config(&config)).collect();
    let nodes: Vec<&TestServer> = nodes.iter().map(|(node, _config)| node).collect();
    run_suites("the Pusher suites, three nodes on Redis", &nodes, port);
}
