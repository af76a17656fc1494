//! `GET /metrics`: real traffic on every transport and dialect, then a scrape read with a
//! real exposition-format parser, checking values (not only names), label cardinality,
//! access, and that the Grafana dashboard only uses metrics the server exposes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use prometheus_parse::{LineInfo, Scrape, Value as Sampled};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::backend::{Answer, Backend};
use crate::util::{encode, TestServer, WAIT};

const CONFIG: &str = r#"
tcp_listen = "127.0.0.1:0"

[apps.demo]
auth = "none"

[apps.secure]
auth = "token"
token_secrets = ["secure-app-secret-0123456789abcdef"]
"#;

/// One scrape: the text, parsed, every line checked to be a comment or a sample.
struct Metrics {
    scrape: Scrape,
    names: HashSet<String>,
}

impl Metrics {
    async fn scrape(server: &TestServer) -> Self {
        let response = crate::util::http()
            .get(server.api_url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        Self::parse(&response.text().await.unwrap())
    }

    fn parse(text: &str) -> Self {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                matches!(LineInfo::parse(line), LineInfo::Sample { .. }),
                "not a sample line: {line:?}"
            );
        }
        for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
            let help = line.split_whitespace().nth(3);
            assert!(help.is_some(), "HELP without text: {line}");
        }
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let mut names = HashSet::new();
        for sample in &scrape.samples {
            assert!(
                sample.metric.starts_with("pushhub_"),
                "{} lacks the prefix",
                sample.metric
            );
            if let Sampled::Histogram(_) = sample.value {
                names.insert(format!("{}_bucket", sample.metric));
            }
            names.insert(sample.metric.clone());
        }
        Self { scrape, names }
    }

    /// The value of `name` with exactly these labels (histograms: their count).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: HashMap<&str, &str> = labels.iter().copied().collect();
        let found = self.scrape.samples.iter().find(|s| {
            s.metric == name
                && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                && s.labels.len() == want.len()
        });
        match found.map(|s| &s.value) {
            Some(Sampled::Counter(v) | Sampled::Gauge(v) | Sampled::Untyped(v)) => *v,
            Some(Sampled::Histogram(buckets)) => buckets.last().map_or(0.0, |b| b.count),
            Some(other) => panic!("{name}: unexpected {other:?}"),
            None => panic!("no {name} {labels:?} in {:?}", self.names),
        }
    }

    /// Every value any label takes.
    fn label_values(&self) -> HashSet<String> {
        self.scrape
            .samples
            .iter()
            .flat_map(|s| s.labels.values().cloned())
            .collect()
    }
}

/// Scrape until `name{labels}` reaches `want` (counters that the server bumps after the
/// client has seen the effect).
async fn wait_value(
    server: &TestServer,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
) -> Metrics {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = Metrics::scrape(server).await;
        let present = metrics.scrape.samples.iter().any(|s| s.metric == name);
        if present && metrics.value(name, labels) >= want {
            return metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} {labels:?} never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cursor(welcome: &Value) -> String {
    welcome["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}@{}:{}",
                c["ch"].as_str().unwrap(),
                c["epoch"].as_str().unwrap(),
                c["off"]
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn metrics_count_real_traffic_on_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let server = TestServer::start_with(
        &["--config", path.to_str().unwrap()],
        &[
            ("PUSHHUB_LIMITS_MAX_QUEUE_BYTES", "262144"),
            ("PUSHHUB_LIMITS_MAX_BODY_BYTES", "131072"),
            ("PUSHHUB_LIMITS_MAX_QUEUE_MESSAGES", "64"),
        ],
    );

    // One client per transport and dialect.
    let (mut native, _) = server.native("demo", "alice").await;
    let mut jd = server.jdserver("demo", json!(5)).await;
    let sse = crate::util::http()
        .get(format!("http://{}/v1/sse?app=demo&user=bob", server.client))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut tcp = tokio::net::TcpStream::connect(server.tcp.unwrap())
        .await
        .unwrap();
    let hello = json!({"type": "connect", "app": "demo", "user": "carol"}).to_string();
    tcp.write_all(format!("{hello}\n").as_bytes())
        .await
        .unwrap();
    server.wait_connections(4).await;
    let metrics = Metrics::scrape(&server).await;
    for (transport, dialect) in [
        ("websocket", "native"),
        ("websocket", "jdserver"),
        ("sse", "native"),
        ("tcp", "native"),
    ] {
        let labels = [
            ("app", "demo"),
            ("transport", transport),
            ("dialect", dialect),
        ];
        assert_eq!(
            metrics.value("pushhub_connections", &labels),
            1.0,
            "{labels:?}"
        );
    }
    assert_eq!(
        metrics.value("pushhub_users_online", &[("app", "demo")]),
        4.0
    );
    assert_eq!(
        metrics.value("pushhub_users_online", &[("app", "secure")]),
        0.0
    );

    // Three broadcasts reach all four; the two WebSocket clients read theirs.
    for n in 0..3 {
        assert_eq!(server.push("*", json!(n)).await, 4);
    }
    for _ in 0..3 {
        assert_eq!(native.json().await["type"], "msg");
        jd.text().await;
    }
    let metrics = Metrics::scrape(&server).await;
    assert_eq!(metrics.value("pushhub_messages_published_total", &[]), 3.0);
    assert_eq!(metrics.value("pushhub_messages_delivered_total", &[]), 12.0);
    assert!(metrics.value("pushhub_sent_bytes_total", &[]) > 0.0);
    assert!(metrics.value("pushhub_received_bytes_total", &[]) > 0.0);
    let pushed = [
        ("endpoint", "/v1/push"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(
        metrics.value("pushhub_api_request_duration_seconds", &pushed),
        3.0
    );
    let publish = [("part", "broker"), ("engine", "memory"), ("op", "publish")];
    assert_eq!(
        metrics.value("pushhub_engine_duration_seconds", &publish),
        3.0
    );

    // An API error and a bad client token.
    let (status, _) = server
        .post_raw("/v1/push", "application/json", "{nope")
        .await;
    assert_eq!(status, 400);
    let mut refused = server.ws("/v1/ws?app=secure&token=not-a-token").await;
    refused.closed().await;

    // A resume that recovers (one missed message) and one whose epoch is gone.
    let (gone, welcome) = server.native("demo", "dave").await;
    drop(gone);
    server.wait_connections(4).await;
    server.push("dave", json!("missed")).await;
    let query = format!(
        "/v1/ws?app=demo&user=dave&since={}",
        encode(&cursor(&welcome))
    );
    let mut back = server.ws(&query).await;
    assert_eq!(back.json().await["recovered"], true);
    let lost = format!(
        "/v1/ws?app=demo&user=erin&since={}",
        encode("demo:user:erin@old:7")
    );
    let mut lost = server.ws(&lost).await;
    assert_eq!(lost.json().await["recovered"], false);

    // A slow consumer: a client that never reads, pushed to until it is cut off.
    let (slow, _) = server.native("demo", "slow").await;
    let pad = "x".repeat(60_000);
    let mut pushes = 0;
    loop {
        let metrics = Metrics::scrape(&server).await;
        if metrics.value("pushhub_slow_consumer_disconnects_total", &[]) == 1.0 {
            break;
        }
        assert!(pushes < 600, "never cut off");
        server.push("slow", json!({"pad": pad})).await;
        pushes += 1;
    }
    drop(slow);

    // A timer whose callback succeeds.
    let backend = Backend::start(|_| Answer::new(200, "{}")).await;
    let (status, body) = server
        .post_json(
            "/v1/timers",
            &json!({"app": "demo", "url": backend.url("/t"), "delay_ms": 0}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let timer = [("kind", "timer"), ("outcome", "ok")];
    wait_value(
        &server,
        "pushhub_outgoing_call_duration_seconds",
        &timer,
        1.0,
    )
    .await;
    let metrics = wait_value(&server, "pushhub_timers_succeeded_total", &[], 1.0).await;

    assert_eq!(metrics.value("pushhub_timer_attempts_total", &[]), 1.0);
    assert_eq!(metrics.value("pushhub_timers_pending", &[]), 0.0);
    let bad = [
        ("endpoint", "/v1/push"),
        ("method", "POST"),
        ("status", "400"),
    ];
    assert_eq!(
        metrics.value("pushhub_api_request_duration_seconds", &bad),
        1.0
    );
    let token = [("source", "client"), ("reason", "invalid_credential")];
    assert_eq!(metrics.value("pushhub_auth_failures_total", &token), 1.0);
    assert_eq!(
        metrics.value("pushhub_resumes_total", &[("recovered", "true")]),
        1.0
    );
    assert_eq!(
        metrics.value("pushhub_resumes_total", &[("recovered", "false")]),
        1.0
    );
    assert_eq!(metrics.value("pushhub_replayed_messages_total", &[]), 1.0);
    assert!(
        metrics.value(
            "pushhub_messages_dropped_total",
            &[("reason", "slow_consumer")]
        ) > 0.0
    );
    assert!(metrics.value("pushhub_outbox_high_water_bytes", &[]) > 100_000.0);
    assert!(metrics.value("pushhub_process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(metrics.value("pushhub_process_cpu_seconds_total", &[]) > 0.0);
    assert_eq!(metrics.value("pushhub_engine_up", &[]), 1.0);

    // Bounded labels: no user, connection, channel or raw path ever becomes one.
    let values = metrics.label_values();
    for private in [
        "alice", "bob", "carol", "dave", "erin", "slow", "5", "demo:all", "/t",
    ] {
        assert!(
            !values.contains(private),
            "{private} is a label value: {values:?}"
        );
    }
    assert!(values.iter().all(|v| !v.contains("demo:")), "{values:?}");

    // The dashboard uses only what the server exposes.
    dashboard_uses_only(&metrics.names);
    drop((back, lost, sse, tcp));
}

/// Every `pushhub_*` name in any panel's query of the Grafana dashboard is one the
/// scrape holds, so the dashboard cannot quietly rot.
fn dashboard_uses_only(exposed: &HashSet<String>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana/pushhub-dashboard.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "only {} queries", exprs.len());
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("pushhub_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                exposed.contains(&name),
                "the dashboard queries {name}, which /metrics does not expose ({expr})"
            );
            rest = &rest[at + name.len()..];
        }
    }
}

fn collect_exprs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("expr" | "query", Value::String(expr)) => into.push(expr.clone()),
                    _ => collect_exprs(item, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, into)),
        _ => {}
    }
}

#[tokio::test]
async fn metrics_need_an_api_key_when_keys_are_configured() {
    let (server, _dir) = TestServer::with_config(
        "[apps.wms]\nauth = \"none\"\napi_keys = [\"wms-key-0123456789\"]\n",
    );
    let url = server.api_url("/metrics");
    let http = crate::util::http();
    let bare = http.get(&url).send().await.unwrap();
    assert_eq!(bare.status(), 401);
    let body: Value = bare.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_api_key");
    let wrong = http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let keyed = http
        .get(&url)
        .bearer_auth("wms-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
    let metrics = Metrics::parse(&keyed.text().await.unwrap());
    let api = [("source", "api"), ("reason", "missing_api_key")];
    assert_eq!(metrics.value("pushhub_auth_failures_total", &api), 1.0);
    assert_eq!(
        metrics.value("pushhub_users_online", &[("app", "wms")]),
        0.0
    );
}

#[tokio::test]
async fn metrics_need_the_admin_key_once_admin_keys_are_configured() {
    let (server, _dir) = TestServer::with_config(
        "admin_keys = [\"admin-key-0123456789\"]\n[apps.wms]\nauth = \"none\"\napi_keys = [\"wms-key-0123456789\"]\n",
    );
    let url = server.api_url("/metrics");
    let http = crate::util::http();
    let app_key = http
        .get(&url)
        .bearer_auth("wms-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(app_key.status(), 403);
    let bare = http.get(&url).send().await.unwrap();
    assert_eq!(bare.status(), 401);
    let admin = http
        .get(&url)
        .bearer_auth("admin-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    let metrics = Metrics::parse(&admin.text().await.unwrap());
    let refused = [("source", "api"), ("reason", "missing_admin_key")];
    assert_eq!(metrics.value("pushhub_auth_failures_total", &refused), 1.0);
}

/// Apps created on first use take their names from clients: they share one label, so
/// inventing app names cannot create series.
#[tokio::test]
async fn apps_created_on_first_use_share_one_label() {
    let server = TestServer::start();
    let (_first, _) = server.native("invented-one", "u1").await;
    let (_second, _) = server.native("invented-two", "u2").await;
    server.wait_connections(2).await;
    let metrics = Metrics::scrape(&server).await;
    let dynamic = [
        ("app", "_dynamic"),
        ("transport", "websocket"),
        ("dialect", "native"),
    ];
    assert_eq!(metrics.value("pushhub_connections", &dynamic), 2.0);
    assert_eq!(
        metrics.value("pushhub_users_online", &[("app", "_dynamic")]),
        2.0
    );
    let values = metrics.label_values();
    assert!(
        !values.iter().any(|v| v.starts_with("invented")),
        "{values:?}"
    );
}
