//! A real `pushhub` binary on port 0, and clients that talk to it through real sockets.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server process with its own data directory; killed on drop.
pub struct TestServer {
    child: Child,
    /// Client listener.
    pub client: SocketAddr,
    /// API listener.
    pub api: SocketAddr,
    /// Raw TCP listener, when `PUSHHUB_TCP_LISTEN` turned it on.
    pub tcp: Option<SocketAddr>,
    /// push-serve's own port, when `[pushserve] addr` turned it on.
    pub pushserve: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    _data: tempfile::TempDir,
    http: reqwest::Client,
    /// Processes that took over from this one (`pushhub upgrade`): killed with it.
    successors: Mutex<Vec<u32>>,
}

impl TestServer {
    /// The embedded default.
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// With extra command-line arguments and environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), args, env)
    }

    /// With configuration file `text`; the directory holding it lives as long as the
    /// returned guard.
    pub fn with_config(text: &str) -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pushhub.toml");
        std::fs::write(&path, text).expect("write config");
        let path = path.to_str().expect("UTF-8 temp path");
        (Self::start_with(&["--config", path], &[]), dir)
    }

    /// With extra arguments and environment, on an existing data directory (a restart).
    pub fn start_in(data: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_on(("127.0.0.1:0", "127.0.0.1:0"), data, args, env)
    }

    /// In single-port mode (the client listener serves the API too) on a free port, with
    /// configuration file `text` (which must give every app API keys); the directory
    /// holding it lives as long as the returned guard.
    pub fn single_port(text: &str) -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pushhub.toml");
        std::fs::write(&path, text).expect("write config");
        let path = path.to_str().expect("UTF-8 temp path");
        let addr = format!("127.0.0.1:{}", free_port());
        let data = tempfile::tempdir().expect("temp dir");
        let server = Self::start_on((&addr, &addr), data, &["--config", path], &[]);
        (server, dir)
    }

    /// Listening on `(client, api)`, with extra arguments and environment, on `data`.
    fn start_on(
        (listen, api_listen): (&str, &str),
        data: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushhub"));
        command
            .arg("serve")
            .args(["--listen", listen, "--api-listen", api_listen])
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .env("PUSHHUB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn pushhub");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening client=").nth(1) {
                    let _ = tx.send(rest.to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let line = match rx.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", log.lock().unwrap());
            }
        };
        let mut parts = line.split_whitespace();
        let client = parts
            .next()
            .and_then(|a| a.parse().ok())
            .expect("client addr");
        let api = parts
            .next()
            .and_then(|a| a.strip_prefix("api="))
            .and_then(|a| a.parse().ok())
            .expect("api addr");
        let (mut tcp, mut pushserve) = (None, None);
        for part in parts {
            if let Some(addr) = part.strip_prefix("tcp=") {
                tcp = Some(addr.parse().expect("tcp addr"));
            } else if let Some(addr) = part.strip_prefix("pushserve=") {
                pushserve = Some(addr.parse().expect("pushserve addr"));
            }
        }
        Self {
            child,
            client,
            api,
            tcp,
            pushserve,
            log,
            _data: data,
            http: http(),
            successors: Mutex::new(Vec::new()),
        }
    }

    /// The server's resident memory, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time the server process has used so far (user + system), in seconds (Linux:
    /// `/proc/PID/stat`, in the kernel's clock ticks).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/PID/stat");
        // The command name may hold spaces: fields are counted after its closing paren.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| fields[i].parse::<u64>().expect("tick count");
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        (ticks(11) + ticks(12)) as f64 / clock_ticks_per_second()
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Send a signal by name (`HUP`, `USR1`...) without waiting for anything.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Wait until the log holds `text` `times` times or more; panics with the log after
    /// [`WAIT`].
    pub async fn wait_log(&self, text: &str, times: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.log().matches(text).count() < times {
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {text:?} {times} time(s) in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kill the process with SIGKILL (a crash: no shutdown at all; after
    /// [`TestServer::terminate`], only reap it) and hand over its data directory, for
    /// [`TestServer::start_in`].
    pub fn crash(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self._data, placeholder)
    }

    /// `POST /v1/admin/upgrade`: the server starts a successor on its listeners and data
    /// directory and, once it is ready, drains and exits. The successor (whose pid the
    /// answer names) lives as long as this value; its log joins this one.
    pub async fn upgrade(&self) -> (u16, Value) {
        let (status, answer) = self
            .post_json("/v1/admin/upgrade", &serde_json::json!({}))
            .await;
        if let Some(pid) = answer["pid"].as_u64() {
            self.adopt(pid as u32);
        }
        (status, answer)
    }

    /// Kill process `pid` (a successor started by an upgrade) when this server is dropped.
    pub fn adopt(&self, pid: u32) {
        self.successors.lock().unwrap().push(pid);
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        self.wait_exit()
    }

    /// Wait for the process this server started as to exit by itself (after a stop or
    /// an upgrade); panics with the log after [`WAIT`].
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://API` + `path`.
    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    /// POST JSON to the API.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.post(self.api_url(path)).json(body))
            .await
    }

    /// POST a raw body with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let request = self
            .http
            .post(self.api_url(path))
            .header("content-type", content_type)
            .body(body.to_owned());
        self.send(request).await
    }

    /// GET from the API.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.api_url(path))).await
    }

    /// DELETE on the API.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.api_url(path))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Push through the native API, expecting success; returns `delivered`.
    pub async fn push(&self, to: &str, data: Value) -> u64 {
        let (status, body) = self
            .post_json(
                "/v1/push",
                &serde_json::json!({"app": "demo", "to": to, "event": "e", "data": data}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["delivered"].as_u64().expect("delivered")
    }

    /// A native WebSocket client, after its welcome frame.
    pub async fn native(&self, app: &str, user: &str) -> (Client, Value) {
        let mut client = self.ws(&format!("/v1/ws?app={app}&user={user}")).await;
        let welcome = client.json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (client, welcome)
    }

    /// A native WebSocket client of app `demo` resuming from `positions`, after its
    /// welcome frame.
    pub async fn resume(&self, user: &str, positions: &Positions) -> (Client, Value) {
        let mut client = self
            .ws(&format!(
                "/v1/ws?app=demo&user={user}&since={}",
                encode(&positions.cursor())
            ))
            .await;
        let welcome = client.json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (client, welcome)
    }

    /// A jdserver client that has sent its init frame.
    pub async fn jdserver(&self, app: &str, user: Value) -> Client {
        let mut client = self.ws("/").await;
        client
            .send(&serde_json::json!({"ac": "init", "app": app, "user": user}).to_string())
            .await;
        client
    }

    /// A raw WebSocket client on the client listener.
    pub async fn ws(&self, path: &str) -> Client {
        let url = format!("ws://{}{}", self.client, path);
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Client { ws }
    }

    /// Wait until the server reports `n` connections (attachment is asynchronous to the
    /// client's view of the handshake).
    pub async fn wait_connections(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, stats) = self.get("/v1/stats").await;
            if stats["connections"] == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} connections, stats: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.successors.lock().unwrap().drain(..) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on every common Linux).
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// What a native client knows: its position (epoch and offset) in each channel.
#[derive(Default, Clone, Debug)]
pub struct Positions(BTreeMap<String, (String, u64)>);

impl Positions {
    /// The positions a cursor the server gave spells (`CH@EPOCH:OFF,...`); entries it
    /// cannot read are left out.
    pub fn parse(cursor: &str) -> Self {
        let mut positions = Self::default();
        for entry in cursor.split(',') {
            let Some((ch, position)) = entry.rsplit_once('@') else {
                continue;
            };
            let Some((epoch, off)) = position.split_once(':') else {
                continue;
            };
            if let Ok(off) = off.parse() {
                positions.set(ch, epoch, off);
            }
        }
        positions
    }

    /// The positions a welcome frame gives.
    pub fn from_welcome(welcome: &Value) -> Self {
        let mut positions = Self::default();
        for channel in welcome["channels"].as_array().expect("channels") {
            positions.see(channel);
        }
        positions
    }

    /// Move to the position of `frame` (a message, or a welcome's channel).
    pub fn see(&mut self, frame: &Value) {
        let ch = frame["ch"].as_str().expect("ch");
        let epoch = frame["epoch"].as_str().expect("epoch");
        self.set(ch, epoch, frame["off"].as_u64().expect("off"));
    }

    /// Claim to be at `off` of `epoch` in `channel`.
    pub fn set(&mut self, channel: &str, epoch: &str, off: u64) {
        self.0.insert(channel.to_owned(), (epoch.to_owned(), off));
    }

    /// Whether it knows no channel yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The offset it has reached in `channel`.
    pub fn offset(&self, channel: &str) -> u64 {
        self.0.get(channel).expect("a known channel").1
    }

    /// The cursor a client resumes with: `CH@EPOCH:OFF,...`.
    pub fn cursor(&self) -> String {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|(ch, (e, o))| format!("{ch}@{e}:{o}"))
            .collect();
        entries.join(",")
    }
}

/// Percent-encode `text` for a query string (cursors hold `:`, `@`, `,` and `/`).
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A WebSocket client under test.
pub struct Client {
    /// The underlying socket, for tests that need raw access.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a client saw next.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A text frame.
    Text(String),
    /// A close frame with code and reason.
    Close(u16, String),
    /// The connection ended without a close frame.
    Ended,
}

impl Client {
    /// Send a text frame.
    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next text frame or close, skipping pings and pongs.
    pub async fn next(&mut self) -> Event {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame within the wait");
            match message {
                Some(Ok(Message::Text(text))) => return Event::Text(text.to_string()),
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(f) => Event::Close(u16::from(f.code), f.reason.to_string()),
                        None => Event::Close(u16::from(CloseCode::Status), String::new()),
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Event::Ended,
            }
        }
    }

    /// The next text frame, which must exist.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Event::Text(text) => text,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame as JSON.
    pub async fn json(&mut self) -> Value {
        let text = self.text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The close code and reason the server sends next (after any text frames, which fail).
    pub async fn closed(&mut self) -> (u16, String) {
        match self.next().await {
            Event::Close(code, reason) => (code, reason),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// True if nothing arrives within `wait`.
    pub async fn silent_for(&mut self, wait: Duration) -> bool {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// An HTTP client made the way the server makes its own (ring through rustls, no
/// redirects followed), since no other TLS provider is compiled in for reqwest to fall
/// back on.
pub fn http() -> reqwest::Client {
    pushhub::outbound::client().expect("an HTTP client")
}

/// The status and JSON body of a WebSocket handshake to `path_and_query` on the client
/// listener that the server refuses (a test of refusals fails if it is accepted).
pub async fn refused_handshake(server: &TestServer, path_and_query: &str) -> (u16, Value) {
    let url = format!("ws://{}{path_and_query}", server.client);
    let result = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("the handshake is answered in time");
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(&body).expect("a refusal with a JSON body"),
            )
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}
