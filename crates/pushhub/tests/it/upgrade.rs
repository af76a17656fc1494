//! Zero-downtime upgrade (`POST /v1/admin/upgrade`): the server starts the same binary as
//! its successor on its listening sockets, closes its clients with 1012, drains and exits.
//! Clients of every resuming dialect, counted while a publisher keeps publishing through
//! the upgrade: lost and duplicated are printed and must be zero, with the default
//! in-memory history (handed over as a snapshot) and with the durable log. A successor
//! that cannot start leaves the server serving; timers due around the hand-over fire once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::{Answer, Backend};
use crate::counting::clients::Dialect;
use crate::counting::harness::{Cluster, Publisher};
use crate::util::{Event, TestServer, WAIT};

/// Time between two publishes of the background publisher.
const EVERY: Duration = Duration::from_millis(10);

/// Clients of each resuming dialect.
const PER_DIALECT: usize = 3;

/// Upgrade a server under continuous publishing with resuming clients of every dialect
/// on it; `store` is `history_store`.
async fn upgrade_under_publishing(store: &str) {
    let mut env = Cluster::ENV.to_vec();
    env.push(("PUSHHUB_HISTORY_STORE", store));
    let mut cluster = Cluster::of(vec![TestServer::start_with(&[], &env)]);
    cluster.spawn_clients(&Dialect::RESUMING, &[0], PER_DIALECT);
    cluster.wait_ready().await;
    let publisher = Publisher::start(&cluster.endpoints, &[0], 0, EVERY);
    publisher.wait_more(30, 3 * WAIT).await;
    let (status, answer) = cluster.node(0).upgrade().await;
    assert_eq!(status, 200, "{answer}\n{}", cluster.logs());
    // Publishing goes on through the hand-over and then to the new process.
    publisher.wait_more(60, 3 * WAIT).await;
    let expected = publisher.stop().await;
    assert!(
        expected.other.is_empty() && expected.refused.is_empty(),
        "every publish is answered 200 through an upgrade: {:?}",
        expected.other
    );
    let node = cluster.node(0);
    node.wait_log("upgrade: accepting again", 1).await;
    let log = node.log();
    assert!(
        log.contains("closing every client connection connections="),
        "{log}"
    );
    let gap = log
        .lines()
        .find(|line| line.contains("upgrade: accepting again"))
        .unwrap_or_default()
        .to_owned();
    let tally = cluster
        .finish(&format!("upgrade, history_store = {store:?}"), &expected)
        .await;
    eprintln!("{gap}");
    tally.assert_clean(true);
    for dialect in [Dialect::NativeWs, Dialect::Sse, Dialect::Tcp] {
        assert!(
            tally.row(dialect).reconnects >= PER_DIALECT,
            "{dialect:?} clients were moved to the new process"
        );
    }
}

#[tokio::test]
async fn an_upgrade_under_publishing_loses_and_duplicates_nothing_with_memory_history() {
    upgrade_under_publishing("memory").await;
}

#[tokio::test]
async fn an_upgrade_under_publishing_loses_and_duplicates_nothing_with_the_durable_log() {
    upgrade_under_publishing("disk").await;
}

#[tokio::test]
async fn clients_are_told_1012_in_every_transport() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_TCP_LISTEN", "127.0.0.1:0")]);
    let (mut ws, _) = server.native("demo", "7").await;
    let sse = crate::util::http()
        .get(format!("http://{}/v1/sse?app=demo&user=8", server.client))
        .send()
        .await
        .expect("sse");
    let poll = crate::util::http()
        .get(format!(
            "http://{}/v1/poll?app=demo&user=9&timeout=30&since=demo:user:9@:0",
            server.client
        ))
        .send();
    let poll = tokio::spawn(poll);
    let tcp = tokio::net::TcpStream::connect(server.tcp.expect("tcp listener"))
        .await
        .expect("tcp");
    let (read, mut write) = tcp.into_split();
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    write
        .write_all(b"{\"type\":\"connect\",\"app\":\"demo\",\"user\":\"10\"}\n")
        .await
        .expect("connect frame");
    let mut lines = tokio::io::BufReader::new(read).lines();
    let welcome = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("welcome");
    assert!(welcome.expect("read").expect("line").contains("welcome"));
    server.wait_connections(4).await;

    let (status, answer) = server.upgrade().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        ws.next().await,
        Event::Close(1012, "service restart: reconnect now".into())
    );
    let text = tokio::time::timeout(WAIT, sse.text())
        .await
        .expect("sse end")
        .expect("body");
    let last = text.trim_end().lines().last().unwrap_or_default();
    let goodbye: Value = serde_json::from_str(last.trim_start_matches("data: ")).expect(last);
    assert_eq!(
        (goodbye["code"].as_str(), goodbye["close"].as_u64()),
        (Some("restart"), Some(1012)),
        "{text}"
    );
    let polled: Value = tokio::time::timeout(WAIT, poll)
        .await
        .expect("poll answer")
        .expect("poll task")
        .expect("poll")
        .json()
        .await
        .expect("poll body");
    // The poll's last message is the closing frame, as the stream's last event is.
    let last = polled["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned();
    assert_eq!(
        last.as_ref().map(|frame| (&frame["code"], &frame["close"])),
        Some((&json!("restart"), &json!(1012))),
        "{polled}"
    );
    let mut said = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(WAIT, lines.next_line()).await {
        said.push(line);
    }
    let goodbye: Value = serde_json::from_str(said.last().expect("a goodbye")).expect("JSON");
    assert_eq!(goodbye["close"], 1012, "{said:?}");
    // The successor serves on the same addresses.
    let (_, welcome) = server.native("demo", "7").await;
    assert_eq!(welcome["type"], "welcome");
}

#[tokio::test]
async fn a_successor_that_cannot_start_leaves_the_server_serving() {
    let (mut server, dir) = TestServer::with_config("[apps.demo]\nauth = \"none\"\n");
    let (mut client, _) = server.native("demo", "7").await;
    std::fs::write(
        dir.path().join("pushhub.toml"),
        "[apps.demo]\nauth = \"sometimes\"\n",
    )
    .expect("break the config");
    let (status, answer) = server.upgrade().await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "upgrade_failed", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot serve")
            && message.contains("auth")
            && message.contains("keeps serving"),
        "{message}"
    );
    // Nothing changed for anyone: the client is still connected and gets its messages.
    server.push("7", json!("still here")).await;
    assert_eq!(client.json().await["data"], "still here");
    assert!(client.silent_for(Duration::from_millis(300)).await);

    std::fs::write(
        dir.path().join("pushhub.toml"),
        "[apps.demo]\nauth = \"none\"\n",
    )
    .expect("mend the config");
    let (status, answer) = server.upgrade().await;
    assert_eq!(status, 200, "{answer}");
    assert!(server.wait_exit().success(), "{}", server.log());
    assert_eq!(
        client.next().await,
        Event::Close(1012, "service restart: reconnect now".into())
    );
    assert_eq!(server.push("7", json!("new process")).await, 0);
}

/// Timers due before, during and after the hand-over (one every 10 ms across it).
const TIMERS: u64 = 60;

#[tokio::test]
async fn timers_due_around_the_upgrade_fire_once_each() {
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let mut ids = Vec::new();
    for n in 0..TIMERS {
        let (status, timer) = server
            .post_json(
                "/v1/timers",
                &json!({"app": "demo", "url": backend.url("/due"), "delay_ms": 200 + n * 10}),
            )
            .await;
        assert_eq!(status, 201, "{timer}");
        ids.push(timer["id"].as_u64().expect("id"));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, answer) = server.upgrade().await;
    assert_eq!(status, 200, "{answer}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while backend.seen().len() < TIMERS as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {TIMERS} timers fired:\n{}",
            backend.seen().len(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Late repeats would come within the retry delay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut calls: BTreeMap<u64, usize> = BTreeMap::new();
    for request in backend.seen() {
        let id = request.headers["x-pushhub-timer-id"]
            .to_str()
            .ok()
            .and_then(|id| id.parse().ok())
            .expect("timer id header");
        *calls.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = calls.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = ids.iter().filter(|id| !calls.contains_key(id)).collect();
    eprintln!(
        "\ntimers around an upgrade: {TIMERS} due, fired {}, missing {}, fired twice {}",
        calls.len(),
        missing.len(),
        twice.len()
    );
    assert!(
        twice.is_empty() && missing.is_empty(),
        "twice {twice:?}, missing {missing:?}"
    );
    let log = server.log();
    let (_, new) = log
        .split_once("upgrade: ready;")
        .expect("the successor's part of the log");
    // Some were still pending at the hand-over: the new process fired those.
    let handed_over: u64 = new
        .split("timer store open; ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the new process's timer store line");
    eprintln!("timers handed over to the new process: {handed_over}");
    assert!(handed_over > 0 && handed_over < TIMERS, "{new}");
}

/// The datagrams a server sent to `$NOTIFY_SOCKET` (systemd's `Type=notify`), one string each.
fn notifications(socket: &std::os::unix::net::UnixDatagram, wanted: usize) -> Vec<String> {
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buffer = [0u8; 512];
    (0..wanted)
        .map(|_| {
            let n = socket
                .recv(&mut buffer)
                .expect("a notification within the wait");
            String::from_utf8_lossy(&buffer[..n]).into_owned()
        })
        .collect()
}

#[tokio::test]
async fn systemd_is_told_ready_and_follows_the_new_main_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    let path = path.to_str().expect("UTF-8 path");
    let mut server = TestServer::start_with(&[], &[("NOTIFY_SOCKET", path)]);
    assert_eq!(notifications(&socket, 1), ["READY=1\nSTATUS=serving"]);
    let (status, answer) = server.upgrade().await;
    assert_eq!(status, 200, "{answer}");
    let pid = answer["pid"].as_u64().expect("pid");
    // The old main process names the new one before it exits; the new one, once it
    // serves, says so.
    let said = notifications(&socket, 2);
    assert_eq!(
        said,
        [
            format!("MAINPID={pid}\nSTATUS=handing over to pid {pid}"),
            "READY=1\nSTATUS=serving".to_owned()
        ]
    );
    assert!(server.wait_exit().success());
}

/// With the Redis engine, history is in Redis: only the listeners, the connections and the
/// node's presence change hands. Two nodes, clients on both, publishes through both while
/// node 0 is upgraded; its clients come back (on node 1, where these clients go next) and
/// miss nothing, and the new node 0 serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_of_one_redis_node_loses_and_duplicates_nothing() {
    let Some(redis) = pushhub_testkit::RedisServer::start() else {
        return;
    };
    let mut cluster = Cluster::start(&redis.url(), 2);
    cluster.spawn_clients(&Dialect::RESUMING, &[0, 1], 1);
    cluster.wait_ready().await;
    let publisher = Publisher::start(&cluster.endpoints, &[0, 1], 0, EVERY);
    publisher.wait_more(30, 3 * WAIT).await;
    let (status, answer) = cluster.node(0).upgrade().await;
    assert_eq!(status, 200, "{answer}\n{}", cluster.logs());
    publisher.wait_more(60, 3 * WAIT).await;
    let expected = publisher.stop().await;
    assert!(
        expected.other.is_empty() && expected.refused.is_empty(),
        "every publish is answered 200 through an upgrade: {:?}",
        expected.other
    );
    cluster
        .node(0)
        .wait_log("upgrade: accepting again", 1)
        .await;
    let (status, health) = cluster.node(0).get("/healthz").await;
    assert_eq!(status, 200, "the new node 0 serves: {health}");
    cluster
        .finish("upgrade of a Redis node", &expected)
        .await
        .assert_clean(true);
}

/// `pushhub ARGS`, run off the runtime: (success, stdout, stderr).
async fn pushhub(args: Vec<String>) -> (bool, String, String) {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pushhub"))
            .args(&args)
            .env_remove("PUSHHUB_API_KEY")
            .output()
            .expect("run pushhub")
    })
    .await
    .expect("the command's thread");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn pushhub_upgrade_on_the_command_line_and_again_on_the_new_process() {
    let server = TestServer::start();
    let api = format!("http://{}", server.api);
    let args = |json: bool| {
        let mut args = vec!["upgrade".to_owned(), "--api".to_owned(), api.clone()];
        if json {
            args.push("--json".into());
        }
        args
    };
    let (ok, out, err) = pushhub(args(true)).await;
    assert!(ok, "{out}{err}");
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    let first = answer["pid"].as_u64().expect("pid") as u32;
    server.adopt(first);
    assert_eq!(answer["upgraded"], true);
    server.wait_log("upgrade: accepting again", 1).await;
    // The new process was started the same way, so it can be upgraded in turn.
    let (ok, out, err) = pushhub(args(false)).await;
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("upgraded: pid "), "{out}");
    let second: u32 = out["upgraded: pid ".len()..]
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("the new pid");
    server.adopt(second);
    assert_ne!(first, second);
    server.wait_log("upgrade: accepting again", 2).await;
    assert_eq!(server.push("1", json!("third process")).await, 0);

    let (ok, _, err) = pushhub(vec![
        "upgrade".into(),
        "--api".into(),
        "http://127.0.0.1:9".into(),
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("cannot reach the API"), "{err}");
}
