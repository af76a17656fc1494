//! Clients of every dialect that count what they receive and, when their connection
//! ends, reconnect to another node and resume from their last position.
//!
//! Each message a test publishes carries `{"seq": N}`; a client records every `seq` it
//! receives, duplicates included, so the tally can tell lost from duplicated.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::util::{encode, Positions};

/// The app every cluster client joins.
pub const APP: &str = "demo";

/// The push-serve password the nodes are started with.
pub const PUSHSERVE_PASSWORD: &str = "cluster-secret";

/// How long one connection attempt or one request may take.
const STEP: Duration = Duration::from_secs(5);

/// Seconds a long-poll request waits for a message.
const POLL_SECONDS: u64 = 2;

/// The ways a client can talk to pushhub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dialect {
    /// Native WebSocket (`/v1/ws`, `since`).
    NativeWs,
    /// Server-Sent Events (`/v1/sse`, `Last-Event-ID`).
    Sse,
    /// Native long-poll (`/v1/poll`, `since`).
    Poll,
    /// Raw TCP, newline framing (`connect` frame with `since`).
    Tcp,
    /// jdserver long-poll (`/getMsg`, `cursor`).
    GetMsg,
    /// jdserver WebSocket: live only, it has no positions.
    JdserverWs,
    /// push-serve WebSocket: live only, it has no positions.
    PushServe,
}

impl Dialect {
    /// The dialects whose clients resume from a position.
    pub const RESUMING: [Dialect; 5] = [
        Dialect::NativeWs,
        Dialect::Sse,
        Dialect::Poll,
        Dialect::Tcp,
        Dialect::GetMsg,
    ];

    /// Every dialect, the live-only ones included.
    pub const ALL: [Dialect; 7] = [
        Dialect::NativeWs,
        Dialect::Sse,
        Dialect::Poll,
        Dialect::Tcp,
        Dialect::GetMsg,
        Dialect::JdserverWs,
        Dialect::PushServe,
    ];

    /// True when the client holds one connection open (counted by the node the whole
    /// time), false for request-per-message dialects.
    pub fn holds_connection(self) -> bool {
        !matches!(self, Dialect::Poll | Dialect::GetMsg)
    }

    fn tag(self) -> &'static str {
        match self {
            Dialect::NativeWs => "ws",
            Dialect::Sse => "sse",
            Dialect::Poll => "poll",
            Dialect::Tcp => "tcp",
            Dialect::GetMsg => "getmsg",
            Dialect::JdserverWs => "jdws",
            Dialect::PushServe => "pushserve",
        }
    }
}

/// Where one node listens.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// Client listener.
    pub client: SocketAddr,
    /// API listener.
    pub api: SocketAddr,
    /// Raw TCP listener.
    pub tcp: SocketAddr,
}

/// What a client has seen, shared with the test.
#[derive(Default)]
pub struct Seen {
    /// Every `seq` received, in arrival order, duplicates included.
    pub seqs: Mutex<Vec<u64>>,
    /// Connections (or, for long-poll, request chains) that ended and were resumed.
    pub reconnects: AtomicUsize,
    /// Resumes the server answered with `recovered: false`.
    pub not_recovered: AtomicUsize,
    /// Frames that carried no `seq` where one was due.
    pub malformed: AtomicUsize,
    /// The client has its first position (or, live only, its connection is open).
    pub ready: AtomicBool,
    /// The index of the node it is on now.
    pub node: AtomicUsize,
    /// Why its last connection ended.
    pub last_error: Mutex<String>,
}

impl Seen {
    fn record(&self, data: &Value) {
        match data["seq"].as_u64() {
            Some(seq) => self.seqs.lock().unwrap().push(seq),
            None => {
                self.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A running client: its task and what it has seen.
pub struct ClusterClient {
    /// Its dialect.
    pub dialect: Dialect,
    /// Its user id.
    pub user: String,
    /// The node it connected to first.
    pub home: usize,
    /// What it has seen so far.
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl ClusterClient {
    /// Start a client of `dialect` as user `user` on node `home` of `nodes`; it runs until
    /// `stop` fires, moving to the next node (in index order) whenever its connection ends.
    pub fn spawn(
        dialect: Dialect,
        index: usize,
        home: usize,
        nodes: Arc<Vec<Endpoint>>,
        stop: CancellationToken,
    ) -> Self {
        let user = format!("{}-{index}", dialect.tag());
        let seen = Arc::new(Seen::default());
        seen.node.store(home, Ordering::Relaxed);
        let task = tokio::spawn(run(dialect, user.clone(), nodes, seen.clone(), stop));
        Self {
            dialect,
            user,
            home,
            seen,
            task,
        }
    }

    /// Wait for its task to end (after `stop`), within a bound.
    pub async fn join(self) {
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap_or_else(|_| panic!("client {} did not stop", self.user))
            .unwrap_or_else(|e| panic!("client {} failed: {e}", self.user));
    }
}

async fn run(
    dialect: Dialect,
    user: String,
    nodes: Arc<Vec<Endpoint>>,
    seen: Arc<Seen>,
    stop: CancellationToken,
) {
    let http = crate::util::http();
    let mut cursor = Positions::default();
    while !stop.is_cancelled() {
        let node = seen.node.load(Ordering::Relaxed);
        let endpoint = nodes[node];
        let session = Session {
            user: &user,
            endpoint,
            http: &http,
            seen: &seen,
            stop: &stop,
        };
        let ended = match dialect {
            Dialect::NativeWs => session.native_ws(&mut cursor).await,
            Dialect::Sse => session.sse(&mut cursor).await,
            Dialect::Poll => session.poll(&mut cursor).await,
            Dialect::Tcp => session.tcp(&mut cursor).await,
            Dialect::GetMsg => session.get_msg(&mut cursor).await,
            Dialect::JdserverWs => session.jdserver_ws().await,
            Dialect::PushServe => session.push_serve().await,
        };
        if stop.is_cancelled() {
            break;
        }
        if let Err(reason) = ended {
            *seen.last_error.lock().unwrap() = format!("node {node}: {reason}");
        }
        seen.reconnects.fetch_add(1, Ordering::Relaxed);
        seen.node.store((node + 1) % nodes.len(), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One connection (or chain of requests) to one node.
struct Session<'a> {
    user: &'a str,
    endpoint: Endpoint,
    http: &'a reqwest::Client,
    seen: &'a Seen,
    stop: &'a CancellationToken,
}

type Ended = Result<(), String>;

/// Run `step` unless `stop` fires first (then `Ok(None)`), or it takes longer than
/// `limit` (an error).
async fn bounded<T>(
    stop: &CancellationToken,
    limit: Duration,
    step: impl std::future::Future<Output = T>,
) -> Result<Option<T>, String> {
    tokio::select! {
        _ = stop.cancelled() => Ok(None),
        out = tokio::time::timeout(limit, step) => out.map(Some).map_err(|_| "timed out".to_owned()),
    }
}

impl Session<'_> {
    fn recovered(&self, flag: bool) {
        if !flag {
            self.seen.not_recovered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Native frames (WebSocket or TCP): a welcome, then `msg` frames.
    fn native_frame(&self, cursor: &mut Positions, frame: &Value) -> Ended {
        match frame["type"].as_str() {
            Some("welcome") => {
                self.recovered(frame["recovered"] == true);
                *cursor = Positions::parse(frame["cursor"].as_str().unwrap_or_default());
                self.seen.ready.store(true, Ordering::Relaxed);
                Ok(())
            }
            Some("msg") => {
                cursor.see(frame);
                self.seen.record(&frame["data"]);
                Ok(())
            }
            Some("error") if frame.get("close").is_some() => Err(format!("closed: {frame}")),
            _ => Ok(()),
        }
    }

    async fn native_ws(&self, cursor: &mut Positions) -> Ended {
        let url = format!(
            "ws://{}/v1/ws?app={APP}&user={}&since={}",
            self.endpoint.client,
            self.user,
            encode(&cursor.cursor())
        );
        let Some(connected) =
            bounded(self.stop, STEP, tokio_tungstenite::connect_async(url)).await?
        else {
            return Ok(());
        };
        let (mut ws, _) = connected.map_err(|e| format!("connect: {e}"))?;
        loop {
            let Some(next) = bounded(self.stop, Duration::from_secs(3600), ws.next()).await? else {
                return Ok(());
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text)
                        .map_err(|e| format!("not JSON ({e}): {text}"))?;
                    self.native_frame(cursor, &frame)?;
                }
                Some(Ok(Message::Close(frame))) => return Err(format!("close {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("ended".into()),
            }
        }
    }

    async fn tcp(&self, cursor: &mut Positions) -> Ended {
        let Some(connected) =
            bounded(self.stop, STEP, TcpStream::connect(self.endpoint.tcp)).await?
        else {
            return Ok(());
        };
        let stream = connected.map_err(|e| format!("connect: {e}"))?;
        let (read, mut write) = stream.into_split();
        let hello =
            json!({"type": "connect", "app": APP, "user": self.user, "since": cursor.cursor()});
        write
            .write_all(format!("{hello}\n").as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut lines = BufReader::new(read).lines();
        loop {
            let Some(line) =
                bounded(self.stop, Duration::from_secs(3600), lines.next_line()).await?
            else {
                return Ok(());
            };
            let line = line.map_err(|e| format!("read: {e}"))?.ok_or("ended")?;
            let frame: Value =
                serde_json::from_str(&line).map_err(|e| format!("not JSON ({e}): {line}"))?;
            if frame["type"] == "ping" {
                write
                    .write_all(b"{\"type\":\"pong\"}\n")
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            self.native_frame(cursor, &frame)?;
        }
    }

    async fn sse(&self, cursor: &mut Positions) -> Ended {
        let mut request = self.http.get(format!(
            "http://{}/v1/sse?app={APP}&user={}",
            self.endpoint.client, self.user
        ));
        if !cursor.is_empty() {
            request = request.header("last-event-id", cursor.cursor());
        }
        let Some(response) = bounded(self.stop, STEP, request.send()).await? else {
            return Ok(());
        };
        let mut response = response.map_err(|e| format!("connect: {e}"))?;
        if response.status() != 200 {
            return Err(format!("status {}", response.status()));
        }
        let mut buffer = String::new();
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        *cursor = Positions::parse(id);
                    } else if let Some(part) = line.strip_prefix("data: ") {
                        data.push_str(part);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let frame: Value =
                    serde_json::from_str(&data).map_err(|e| format!("not JSON ({e}): {data}"))?;
                match frame["type"].as_str() {
                    Some("welcome") => {
                        self.recovered(frame["recovered"] == true);
                        self.seen.ready.store(true, Ordering::Relaxed);
                    }
                    Some("msg") => self.seen.record(&frame["data"]),
                    _ => {}
                }
            }
            let Some(chunk) =
                bounded(self.stop, Duration::from_secs(3600), response.chunk()).await?
            else {
                return Ok(());
            };
            let chunk = chunk.map_err(|e| format!("read: {e}"))?.ok_or("ended")?;
            buffer.push_str(std::str::from_utf8(&chunk).map_err(|e| e.to_string())?);
        }
    }

    /// Native long-poll: chained requests, each from the cursor the previous one returned
    /// (the first, without a cursor, only learns the current position).
    async fn poll(&self, cursor: &mut Positions) -> Ended {
        loop {
            let wait = if cursor.is_empty() { 0 } else { POLL_SECONDS };
            let url = format!(
                "http://{}/v1/poll?app={APP}&user={}&timeout={wait}&since={}",
                self.endpoint.client,
                self.user,
                encode(&cursor.cursor())
            );
            let Some(answer) = bounded(self.stop, STEP + STEP, self.get_json(&url)).await? else {
                return Ok(());
            };
            let body = answer?;
            self.recovered(body["recovered"] == true);
            // A poll the node ended early (its shutdown) closes with an `error` frame.
            let messages = body["messages"].as_array().into_iter().flatten();
            for msg in messages.filter(|m| m["type"] == "msg") {
                self.seen.record(&msg["data"]);
            }
            *cursor = Positions::parse(body["cursor"].as_str().ok_or("no cursor")?);
            self.seen.ready.store(true, Ordering::Relaxed);
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("body: {e}"))?;
        if status != 200 {
            return Err(format!("status {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))
    }

    /// jdserver getMsg: one message per request, the cursor in a header.
    async fn get_msg(&self, cursor: &mut Positions) -> Ended {
        loop {
            let mut url = format!(
                "http://{}/getMsg?app={APP}&user={}",
                self.endpoint.client, self.user
            );
            if cursor.is_empty() {
                url.push_str("&timeout=0");
            } else {
                url.push_str(&format!(
                    "&timeout={POLL_SECONDS}&cursor={}",
                    encode(&cursor.cursor())
                ));
            }
            let Some(answer) = bounded(self.stop, STEP + STEP, async {
                let response = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("request: {e}"))?;
                let status = response.status();
                let headers = response.headers().clone();
                let text = response.text().await.map_err(|e| format!("body: {e}"))?;
                Ok::<_, String>((status, headers, text))
            })
            .await?
            else {
                return Ok(());
            };
            let (status, headers, text) = answer?;
            if status != 200 {
                return Err(format!("status {status}: {text}"));
            }
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            self.recovered(header("x-pushhub-recovered") != "false");
            if !text.is_empty() {
                let data: Value =
                    serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))?;
                self.seen.record(&data);
            }
            let next = header("x-pushhub-cursor");
            if next.is_empty() {
                return Err("no X-Pushhub-Cursor".into());
            }
            *cursor = Positions::parse(&next);
            self.seen.ready.store(true, Ordering::Relaxed);
        }
    }

    /// A live-only WebSocket: every text frame is one message, read by `data`.
    async fn live_ws(&self, path: &str, first: Option<String>, data: fn(Value) -> Value) -> Ended {
        let url = format!("ws://{}{path}", self.endpoint.client);
        let Some(connected) =
            bounded(self.stop, STEP, tokio_tungstenite::connect_async(url)).await?
        else {
            return Ok(());
        };
        let (mut ws, _) = connected.map_err(|e| format!("connect: {e}"))?;
        if let Some(first) = first {
            ws.send(Message::text(first))
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
        self.seen.ready.store(true, Ordering::Relaxed);
        loop {
            let Some(next) = bounded(self.stop, Duration::from_secs(3600), ws.next()).await? else {
                return Ok(());
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text)
                        .map_err(|e| format!("not JSON ({e}): {text}"))?;
                    self.seen.record(&data(frame));
                }
                Some(Ok(Message::Close(frame))) => return Err(format!("close {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("ended".into()),
            }
        }
    }

    async fn jdserver_ws(&self) -> Ended {
        let init = json!({"ac": "init", "app": APP, "user": self.user}).to_string();
        self.live_ws("/", Some(init), |frame| frame).await
    }

    async fn push_serve(&self) -> Ended {
        let url = format!(
            "http://{}/access?uid={}&password={PUSHSERVE_PASSWORD}",
            self.endpoint.api, self.user
        );
        let Some(answer) = bounded(self.stop, STEP, self.get_json(&url)).await? else {
            return Ok(());
        };
        let body = answer?;
        let key = body["contents"]
            .as_str()
            .ok_or_else(|| format!("no access key: {body}"))?;
        let path = format!("/ws?uid={}&access_key={}", self.user, encode(key));
        self.live_ws(&path, None, |mut frame| frame["contents"].take())
            .await
    }
}
