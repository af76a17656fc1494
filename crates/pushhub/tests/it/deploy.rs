//! The files under deploy/: the systemd unit passes `systemd-analyze verify`, and a real
//! nginx with deploy/nginx.conf carries WebSocket, SSE and long-poll clients to a real
//! pushhub, which sees each client's own address through `trusted_proxies`.
//! Both need a program (systemd-analyze, nginx): missing, they skip loudly, and fail
//! under CI=true (.ci/run installs them).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpSocket;

use crate::util::{Client, Event, TestServer, WAIT};

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Report a missing program: a failure under CI=true, else a skip that is seen.
fn missing(what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what}: with CI=true a missing program fails the run (.ci/run installs it)");
    }
    let _ = writeln!(std::io::stderr().lock(), "\n*** SKIPPED: {what} ***\n");
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn the_systemd_unit_verifies() {
    if !runs("systemd-analyze") {
        return missing("systemd-analyze is not installed (Debian: systemd)");
    }
    // verify checks that ExecStart's program exists: point it at the binary just built.
    let unit = repo_file("deploy/pushhub.service")
        .replace("/usr/local/bin/pushhub", env!("CARGO_BIN_EXE_pushhub"));
    for required in [
        "LimitNOFILE=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "TimeoutStopSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/pushhub",
        "User=pushhub",
    ] {
        assert!(unit.contains(required), "the unit lacks {required}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pushhub.service");
    std::fs::write(&path, unit).expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "systemd-analyze verify: {said}");
    // Warnings about the unit itself (unknown keys, bad values) also fail it.
    assert!(
        !said.contains("pushhub.service"),
        "systemd-analyze verify: {said}"
    );
}

/// nginx in the foreground with deploy/nginx.conf, everything under its own directory;
/// stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstream: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let site = repo_file("deploy/nginx.conf");
        for marked in ["server 127.0.0.1:8081;", "listen 80;"] {
            assert!(site.contains(marked), "deploy/nginx.conf lost {marked:?}");
        }
        let site = site
            .replace("server 127.0.0.1:8081;", &format!("server {upstream};"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        let prefix = dir.path().display().to_string();
        std::fs::write(dir.path().join("pushhub.conf"), site).expect("write site");
        // One process (no master and worker): killing it when the test ends leaves no
        // worker behind, orphaned, holding its port.
        let main = format!(
            "daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\n\
             error_log {prefix}/error.log info;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log {prefix}/access.log;\n\
             client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
             fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n\
             scgi_temp_path {prefix}/scgi;\n  include {prefix}/pushhub.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let nginx = Self { child, port, dir };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start:\n{}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket through nginx from source address `from`, or the refusal's status or
/// close code.
async fn ws_from(from: IpAddr, port: u16, path: &str) -> Result<Client, u16> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind source");
    let stream = tokio::time::timeout(WAIT, socket.connect(([127, 0, 0, 1], port).into()))
        .await
        .expect("connect timed out")
        .expect("connect to nginx");
    let url = format!("ws://127.0.0.1:{port}{path}");
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("handshake timed out")
    {
        Ok((ws, _)) => Ok(Client { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("WebSocket through nginx: {error}"),
    }
}

fn http_from(from: IpAddr) -> reqwest::Client {
    pushhub::outbound::builder()
        .expect("HTTP client settings")
        .local_address(from)
        .build()
        .expect("HTTP client")
}

#[tokio::test]
async fn nginx_carries_websocket_sse_and_long_poll_with_the_clients_address() {
    if !runs("nginx") {
        return missing("nginx is not installed (Debian: nginx)");
    }
    // One connection per client address: clients from three addresses all get in only
    // if pushhub sees their own addresses rather than nginx's.
    let server = TestServer::start_with(
        &[],
        &[
            ("PUSHHUB_LIMITS_TRUSTED_PROXIES", "127.0.0.1"),
            ("PUSHHUB_LIMITS_MAX_CONNECTIONS_PER_IP", "1"),
        ],
    );
    let nginx = Nginx::start(server.client);
    let port = nginx.port;
    let (a, b, c) = (
        IpAddr::from([127, 0, 0, 2]),
        IpAddr::from([127, 0, 0, 3]),
        IpAddr::from([127, 0, 0, 4]),
    );

    let mut ws = ws_from(a, port, "/v1/ws?app=demo&user=ws-user")
        .await
        .unwrap_or_else(|status| panic!("WebSocket refused: {status}\n{}", nginx.error_log()));
    assert_eq!(ws.json().await["type"], "welcome");

    let sse = http_from(b)
        .get(format!(
            "http://127.0.0.1:{port}/v1/sse?app=demo&user=sse-user"
        ))
        .send()
        .await
        .expect("SSE through nginx");
    assert_eq!(sse.status(), 200, "SSE refused: {:?}", sse.text().await);
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    assert_eq!(sse.headers()["x-accel-buffering"], "no");
    let mut sse = sse;

    let poll = tokio::spawn(
        http_from(c)
            .get(format!(
                "http://127.0.0.1:{port}/v1/poll?app=demo&user=poll-user&timeout=30"
            ))
            .send(),
    );
    server.wait_connections(3).await;

    // A second connection from the WebSocket's address is over its limit.
    match ws_from(a, port, "/v1/ws?app=demo&user=other").await {
        Err(status) => assert_eq!(status, 429),
        Ok(mut refused) => match refused.next().await {
            Event::Close(code, _) => assert_eq!(code, 4008),
            other => panic!("a second connection from {a} was not refused: {other:?}"),
        },
    }

    for user in ["ws-user", "sse-user", "poll-user"] {
        assert_eq!(server.push(user, Value::from(user)).await, 1, "{user}");
    }
    assert_eq!(ws.json().await["data"], "ws-user");

    // The event arrives while the stream is still open: nginx did not buffer it.
    let mut seen = String::new();
    while !seen.contains("sse-user") {
        let chunk = tokio::time::timeout(WAIT, sse.chunk())
            .await
            .expect("SSE event did not arrive through nginx (buffered?)")
            .expect("SSE chunk")
            .expect("SSE stream ended");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let poll = tokio::time::timeout(WAIT, poll)
        .await
        .expect("long-poll did not answer")
        .expect("poll task")
        .expect("long-poll through nginx");
    assert_eq!(poll.status(), 200);
    let answer: Value = poll.json().await.expect("poll JSON");
    assert_eq!(answer["messages"][0]["data"], "poll-user", "{answer}");
}
