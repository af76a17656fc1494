//! Hostile clients: each kind attacks in rounds, for as long as the chaos phase lasts,
//! and every round's outcome is counted by name (`closed 1008`, `429`, `no close in
//! 10 s`, …), so the report shows how the server answered each attack.
//!
//! Rounds are paced (a short pause between them, each round bounded in time), so the
//! soak stays a bounded test of the server, not an open-ended flood.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};

use super::phase::Phase;
use crate::http::HttpConn;

/// The attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attack {
    /// Starts a text message, then sends empty continuation frames as fast as it can.
    ContinuationFlood,
    /// On jdserver's `/`, pings as fast as it can without ever sending `init`.
    PreInitPingFlood,
    /// Raw TCP: blank lines (empty frames) as fast as it can, without `connect`.
    TcpBlankLineFlood,
    /// A WebSocket frame that breaks the protocol (unmasked, reserved bits, bad UTF-8,
    /// a 2^62-byte length, an unknown opcode), one kind per round.
    BadFrames,
    /// Sends the upgrade request one byte a second.
    Slowloris,
    /// Connects, reads the welcome, closes: as many as it can in a round.
    ConnectChurn,
    /// Opens SSE streams and drops them at once: as many as it can in a round.
    SseReconnectStorm,
    /// Pushes that must be refused: too deep, too big, not JSON, a user id that is not UTF-8.
    BadPushes,
}

impl Attack {
    /// Every attack, in report order.
    pub const ALL: [Attack; 8] = [
        Attack::ContinuationFlood,
        Attack::PreInitPingFlood,
        Attack::TcpBlankLineFlood,
        Attack::BadFrames,
        Attack::Slowloris,
        Attack::ConnectChurn,
        Attack::SseReconnectStorm,
        Attack::BadPushes,
    ];

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Attack::ContinuationFlood => "continuation flood",
            Attack::PreInitPingFlood => "ping flood before init",
            Attack::TcpBlankLineFlood => "raw TCP blank-line flood",
            Attack::BadFrames => "protocol-breaking frames",
            Attack::Slowloris => "slowloris handshake",
            Attack::ConnectChurn => "connect/close churn",
            Attack::SseReconnectStorm => "SSE reconnect storm",
            Attack::BadPushes => "bad pushes",
        }
    }
}

/// Where to attack.
#[derive(Clone, Debug)]
pub struct Targets {
    /// Client listener.
    pub client: SocketAddr,
    /// API listener.
    pub api: SocketAddr,
    /// Raw TCP listener.
    pub tcp: SocketAddr,
    /// App name.
    pub app: String,
}

/// Outcomes per attack: `name → (outcome → count)`.
#[derive(Debug, Default)]
pub struct Outcomes(Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>);

impl Outcomes {
    fn add(&self, attack: Attack, outcome: impl Into<String>, n: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(attack.name())
            .or_default()
            .entry(outcome.into())
            .or_insert(0) += n;
    }

    /// A copy of every count.
    pub fn snapshot(&self) -> BTreeMap<&'static str, BTreeMap<String, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How long one flood round may last before it counts as "not closed".
const FLOOD_ROUND: Duration = Duration::from_secs(10);

/// Runs `attack` in rounds while the phase is `Chaos`.
pub async fn run(
    attack: Attack,
    targets: Targets,
    outcomes: &Outcomes,
    phase: watch::Receiver<Phase>,
) {
    let mut round = 0u64;
    while *phase.borrow() == Phase::Chaos {
        let result = match attack {
            Attack::ContinuationFlood => continuation_flood(&targets, round).await,
            Attack::PreInitPingFlood => ping_flood_before_init(&targets).await,
            Attack::TcpBlankLineFlood => tcp_blank_line_flood(&targets).await,
            Attack::BadFrames => bad_frame(&targets, round).await,
            Attack::Slowloris => slowloris(&targets).await,
            Attack::ConnectChurn => connect_churn(&targets, outcomes).await,
            Attack::SseReconnectStorm => sse_storm(&targets, outcomes).await,
            Attack::BadPushes => bad_pushes(&targets, outcomes).await,
        };
        match result {
            Ok(Some(outcome)) => outcomes.add(attack, outcome, 1),
            Ok(None) => {}
            Err(e) => outcomes.add(attack, format!("error: {}", first_line(&e)), 1),
        }
        round += 1;
        sleep(Duration::from_millis(500)).await;
    }
}

fn first_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or("").chars().take(80).collect()
}

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Opens a TCP connection and upgrades it on `path`; returns the stream and whatever
/// followed the 101 answer.
async fn upgrade(addr: SocketAddr, path: &str) -> Result<(TcpStream, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .context("no upgrade answer in 10 s")??;
        if n == 0 {
            bail!("closed before answering the upgrade");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            bail!("upgrade answer too long");
        }
    };
    let status = String::from_utf8_lossy(&buf[..buf.len().min(12)]).to_string();
    if !status.starts_with("HTTP/1.1 101") {
        bail!("upgrade refused: {}", status.trim());
    }
    Ok((stream, buf.split_off(end)))
}

/// Reads server frames until a close frame (its code) or the end of the stream.
async fn close_code(mut read: OwnedReadHalf, mut buf: Vec<u8>) -> Option<u16> {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some((opcode, payload, used)) = parse_server_frame(&buf) {
            if opcode == 8 {
                return Some(match payload.get(..2) {
                    Some(b) => u16::from_be_bytes([b[0], b[1]]),
                    None => 1005,
                });
            }
            buf.drain(..used);
        }
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One unmasked server frame off the front of `buf`: opcode, payload, bytes used.
fn parse_server_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, header) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let end = header + usize::try_from(len).ok()?;
    Some((b0 & 0x0f, buf.get(header..end)?, end))
}

/// Writes `chunk` over and over until the server closes or the round ends; then says
/// how the server ended it.
async fn flood(
    stream: TcpStream,
    rest: Vec<u8>,
    first: &[u8],
    chunk: &[u8],
) -> Result<Option<String>> {
    let (read, mut write) = stream.into_split();
    let closer = tokio::spawn(close_code(read, rest));
    let started = Instant::now();
    let mut sent = 0u64;
    write.write_all(first).await?;
    while started.elapsed() < FLOOD_ROUND && !closer.is_finished() {
        if write.write_all(chunk).await.is_err() {
            break;
        }
        sent += chunk.len() as u64;
    }
    drop(write);
    let code = timeout(Duration::from_secs(5), closer)
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten();
    let took = started.elapsed();
    Ok(Some(match code {
        Some(code) => format!("closed {code}"),
        None if took >= FLOOD_ROUND => format!(
            "not closed in {} s ({sent} bytes sent)",
            FLOOD_ROUND.as_secs()
        ),
        None => "dropped without a close frame".to_string(),
    }))
}

async fn continuation_flood(t: &Targets, round: u64) -> Result<Option<String>> {
    let (stream, rest) = upgrade(
        t.client,
        &format!("/v1/ws?app={}&user=h-flood{round}", t.app),
    )
    .await?;
    let first = client_frame(false, 1, b"{");
    let empty = client_frame(false, 0, b"");
    flood(stream, rest, &first, &empty.repeat(4096)).await
}

async fn ping_flood_before_init(t: &Targets) -> Result<Option<String>> {
    let (stream, rest) = upgrade(t.client, "/").await?;
    let ping = client_frame(true, 9, b"");
    flood(stream, rest, &[], &ping.repeat(4096)).await
}

async fn tcp_blank_line_flood(t: &Targets) -> Result<Option<String>> {
    let stream = TcpStream::connect(t.tcp).await?;
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut sink = vec![0u8; 16 * 1024];
        let mut text = Vec::new();
        while let Ok(n) = read.read(&mut sink).await {
            if n == 0 {
                break;
            }
            if text.len() < 4096 {
                text.extend_from_slice(&sink[..n]);
            }
        }
        text
    });
    let lines = vec![b'\n'; 64 * 1024];
    let started = Instant::now();
    while started.elapsed() < FLOOD_ROUND && !reader.is_finished() {
        if write.write_all(&lines).await.is_err() {
            break;
        }
    }
    drop(write);
    let said = timeout(Duration::from_secs(5), reader)
        .await
        .ok()
        .and_then(|r| r.ok());
    Ok(Some(match said {
        Some(text) if started.elapsed() < FLOOD_ROUND => {
            let text = String::from_utf8_lossy(&text);
            match text
                .split("\"code\":\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
            {
                Some(code) => format!("closed with error {code}"),
                None => "closed without an error frame".to_string(),
            }
        }
        _ => format!("not closed in {} s", FLOOD_ROUND.as_secs()),
    }))
}

async fn bad_frame(t: &Targets, round: u64) -> Result<Option<String>> {
    let (stream, rest) =
        upgrade(t.client, &format!("/v1/ws?app={}&user=h-bad{round}", t.app)).await?;
    let (kind, frame) = match round % 5 {
        0 => ("unmasked", vec![0x81, 0x02, b'h', b'i']),
        1 => ("reserved bits", {
            let mut f = client_frame(true, 1, b"{}");
            f[0] |= 0x40;
            f
        }),
        2 => ("invalid UTF-8", client_frame(true, 1, &[0xff, 0xfe, 0xfd])),
        3 => ("2^62-byte length", {
            let mut f = vec![0x81, 0x80 | 127];
            f.extend_from_slice(&(1u64 << 62).to_be_bytes());
            f.extend_from_slice(&[1, 2, 3, 4]);
            f
        }),
        _ => ("opcode 3", client_frame(true, 3, b"x")),
    };
    let (read, mut write) = stream.into_split();
    write.write_all(&frame).await?;
    let code = timeout(Duration::from_secs(10), close_code(read, rest)).await;
    Ok(Some(match code {
        Ok(Some(code)) => format!("{kind}: closed {code}"),
        Ok(None) => format!("{kind}: dropped without a close frame"),
        Err(_) => format!("{kind}: not closed in 10 s"),
    }))
}

async fn slowloris(t: &Targets) -> Result<Option<String>> {
    let mut stream = TcpStream::connect(t.client).await?;
    let request = format!(
        "GET /v1/ws?app={}&user=h-slow HTTP/1.1\r\nHost: x\r\nX-Padding: ",
        t.app
    );
    let started = Instant::now();
    for byte in request.bytes().chain(std::iter::repeat(b'a')) {
        if stream.write_all(&[byte]).await.is_err() || started.elapsed() > Duration::from_secs(120)
        {
            break;
        }
        let mut probe = [0u8; 1024];
        match timeout(Duration::from_secs(1), stream.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {
                let status = String::from_utf8_lossy(&probe[..12.min(probe.len())]).to_string();
                return Ok(Some(format!(
                    "answered {} after {} s",
                    status.trim(),
                    started.elapsed().as_secs()
                )));
            }
            Err(_) => {}
        }
    }
    let secs = started.elapsed().as_secs();
    Ok(Some(if secs >= 120 {
        "not closed in 120 s".to_string()
    } else {
        format!("closed within {} s", bucket(secs))
    }))
}

/// Rounds seconds up to 5, 10, 20, 30, 60 or 120 so outcomes group.
fn bucket(secs: u64) -> u64 {
    [5, 10, 20, 30, 60, 120]
        .into_iter()
        .find(|&b| secs <= b)
        .unwrap_or(secs)
}

async fn connect_churn(t: &Targets, outcomes: &Outcomes) -> Result<Option<String>> {
    let started = Instant::now();
    let url = format!("ws://{}/v1/ws?app={}&user=h-churn", t.client, t.app);
    while started.elapsed() < Duration::from_secs(5) {
        let outcome = match timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(&url),
        )
        .await
        {
            Ok(Ok((mut ws, _))) => {
                use futures_util::StreamExt;
                let welcome = timeout(Duration::from_secs(5), ws.next()).await;
                drop(ws);
                match welcome {
                    Ok(Some(Ok(_))) => "welcomed and dropped".to_string(),
                    _ => "no welcome".to_string(),
                }
            }
            Ok(Err(e)) => format!(
                "refused: {}",
                e.to_string().chars().take(60).collect::<String>()
            ),
            Err(_) => "connect timed out".to_string(),
        };
        outcomes.add(Attack::ConnectChurn, outcome, 1);
    }
    Ok(None)
}

async fn sse_storm(t: &Targets, outcomes: &Outcomes) -> Result<Option<String>> {
    let started = Instant::now();
    let authority = t.client.to_string();
    while started.elapsed() < Duration::from_secs(5) {
        let path = format!("/v1/sse?app={}&user=h-sse", t.app);
        let outcome = match timeout(
            Duration::from_secs(5),
            sse_status(t.client, &authority, &path),
        )
        .await
        {
            Ok(Ok(status)) => format!("HTTP {status}"),
            Ok(Err(e)) => format!("error: {}", first_line(&e)),
            Err(_) => "no answer in 5 s".to_string(),
        };
        outcomes.add(Attack::SseReconnectStorm, outcome, 1);
    }
    Ok(None)
}

/// Opens an SSE stream and returns its status without reading the stream.
async fn sse_status(addr: SocketAddr, authority: &str, path: &str) -> Result<u16> {
    let mut stream = TcpStream::connect(addr).await?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    let text = String::from_utf8_lossy(&head);
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .context("not an HTTP status line")
}

async fn bad_pushes(t: &Targets, outcomes: &Outcomes) -> Result<Option<String>> {
    let authority = t.api.to_string();
    let deep = format!(
        "{{\"app\":\"{}\",\"to\":\"h-deep\",\"data\":{}1{}}}",
        t.app,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let big = format!(
        "{{\"app\":\"{}\",\"to\":\"h-big\",\"data\":\"{}\"}}",
        t.app,
        "x".repeat(4 << 20)
    );
    let mut not_utf8 = format!("{{\"app\":\"{}\",\"to\":\"h-", t.app).into_bytes();
    not_utf8.extend_from_slice(&[0xff, 0xfe]);
    not_utf8.extend_from_slice(b"\",\"data\":1}");
    let bodies: [(&str, Bytes); 4] = [
        ("nested 100,000 deep", Bytes::from(deep)),
        ("4 MiB body", Bytes::from(big)),
        ("not JSON", Bytes::from_static(b"{\"app\":")),
        ("user id not UTF-8", Bytes::from(not_utf8)),
    ];
    for (what, body) in bodies {
        let mut conn = HttpConn::connect(t.api, &authority).await?;
        let outcome = match conn
            .request(Method::POST, "/v1/push", Some(body), None)
            .await
        {
            Ok((status, _)) => format!("{what}: HTTP {}", status.as_u16()),
            Err(e) if format!("{e:#}").contains("Broken pipe") => {
                format!("{what}: answered and closed before the body was sent")
            }
            Err(e) => format!("{what}: {}", first_line(&e)),
        };
        outcomes.add(Attack::BadPushes, outcome, 1);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_are_masked_and_sized() {
        let f = client_frame(true, 1, b"hi");
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x82);
        assert_eq!(f.len(), 2 + 4 + 2);
        assert_eq!(client_frame(false, 0, b"")[..2], [0x00, 0x80]);
        let long = client_frame(true, 2, &[0; 300]);
        assert_eq!(long[1], 0x80 | 126);
        assert_eq!(u16::from_be_bytes([long[2], long[3]]), 300);
    }

    #[test]
    fn server_frames_parse_or_wait_for_more() {
        let close = [0x88, 0x02, 0x03, 0xf0];
        let (op, payload, used) = parse_server_frame(&close).unwrap();
        assert_eq!((op, payload, used), (8, &[0x03, 0xf0][..], 4));
        assert!(parse_server_frame(&close[..3]).is_none());
        assert!(parse_server_frame(&[0x81, 126, 0x01]).is_none());
    }

    #[test]
    fn outcomes_group_by_bucket() {
        assert_eq!(bucket(0), 5);
        assert_eq!(bucket(11), 20);
        assert_eq!(bucket(500), 500);
    }
}
