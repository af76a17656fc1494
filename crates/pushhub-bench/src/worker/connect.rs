//! Opening one client connection: source address, retries, welcome frame.
//!
//! Tens of thousands of connections to one server port from one source IP
//! would exhaust ephemeral ports across runs (TIME_WAIT), so every client
//! binds one of 127.0.0.2..=127.0.0.(1+K) first. Connection storms make some
//! attempts fail transiently (backlog overflow, resets), hence the retries.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::target::WsTarget;

/// A connected client WebSocket.
pub type WsStream = WebSocketStream<TcpStream>;

/// Retry and timeout policy for one client.
#[derive(Clone, Copy, Debug)]
pub struct ConnectPolicy {
    /// Attempts before giving up (at least 1).
    pub attempts: u32,
    /// Limit for one attempt: TCP connect + handshake + welcome frame.
    pub attempt_timeout: Duration,
}

impl Default for ConnectPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            attempt_timeout: Duration::from_secs(15),
        }
    }
}

/// Source address for client `index` when spreading over `count` loopback addresses.
///
/// `count == 0` means "let the kernel choose" (no explicit bind).
pub fn source_addr(index: u64, count: u8) -> Option<Ipv4Addr> {
    if count == 0 {
        return None;
    }
    let offset = u8::try_from(index % u64::from(count)).unwrap_or(0);
    Some(Ipv4Addr::new(127, 0, 0, 2 + offset))
}

/// A connected client and how many attempts it took.
pub struct Connected {
    /// The WebSocket, welcome frame already consumed.
    pub ws: WsStream,
    /// Attempts used (1 = no retry).
    pub attempts: u32,
    /// What the welcome frame said about resuming.
    pub welcome: WelcomeInfo,
}

/// The resume-related fields of a welcome frame (absent on servers without history,
/// such as the relay).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WelcomeInfo {
    /// Where the client stands at the greeting (`CHANNEL@EPOCH:OFFSET,...`).
    pub cursor: Option<String>,
    /// False when a resume was asked for and the history could not cover the gap.
    pub recovered: Option<bool>,
}

/// Connects `url` through `target`, retrying transient failures.
pub async fn connect_client(
    target: &WsTarget,
    url: &str,
    src: Option<Ipv4Addr>,
    policy: ConnectPolicy,
) -> Result<Connected> {
    let mut backoff = Duration::from_millis(50);
    let mut last = anyhow!("no attempt made");
    for attempt in 1..=policy.attempts.max(1) {
        match tokio::time::timeout(policy.attempt_timeout, connect_once(target, url, src)).await {
            Ok(Ok((ws, welcome))) => {
                return Ok(Connected {
                    ws,
                    attempts: attempt,
                    welcome,
                })
            }
            Ok(Err(e)) if !is_transient(&e) => return Err(e),
            Ok(Err(e)) => last = e,
            Err(_) => last = anyhow!("attempt {attempt} timed out"),
        }
        let jitter = Duration::from_millis(fastrand_ms(backoff.as_millis()));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    Err(last.context(format!("giving up after {} attempts", policy.attempts)))
}

/// One attempt: bind, connect, upgrade, read the welcome frame.
async fn connect_once(
    target: &WsTarget,
    url: &str,
    src: Option<Ipv4Addr>,
) -> Result<(WsStream, WelcomeInfo)> {
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let (Some(ip), true) = (src, target.addr.is_ipv4()) {
        defer_port_choice(&socket)?;
        socket
            .bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .with_context(|| format!("binding {ip}:0"))?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    // Frames are small; the 128 KiB default buffer would only cost generator memory.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _response) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    let welcome = wait_welcome(&mut ws).await?;
    Ok((ws, welcome))
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: `bind(ip:0)` then only fixes the address and
/// the kernel picks the port at `connect()`, where it only needs the 4-tuple to
/// be unique (and may reuse loopback TIME_WAIT entries), instead of reserving a
/// port that no other socket on that address may use.
fn defer_port_choice(socket: &TcpSocket) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the fd is owned by `socket` and open; optval points to a live
    // c_int whose size is passed as optlen.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The part of the welcome frame the generator checks.
#[derive(Deserialize)]
struct Welcome<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    recovered: Option<bool>,
}

/// Reads frames until the first text frame, which must be `{"type":"welcome",...}`.
async fn wait_welcome(ws: &mut WsStream) -> Result<WelcomeInfo> {
    loop {
        let msg = ws
            .next()
            .await
            .ok_or(tungstenite::Error::ConnectionClosed)??;
        match msg {
            Message::Text(text) => {
                let w: Welcome = serde_json::from_str(text.as_str())
                    .map_err(|e| WelcomeError(format!("first frame is not JSON: {e}")))?;
                if w.kind != "welcome" {
                    bail!(WelcomeError(format!("first frame has type {:?}", w.kind)));
                }
                return Ok(WelcomeInfo {
                    cursor: w.cursor,
                    recovered: w.recovered,
                });
            }
            Message::Close(_) => return Err(tungstenite::Error::ConnectionClosed.into()),
            _ => {}
        }
    }
}

/// The server answered, but not with a welcome frame: retrying will not help.
#[derive(Debug)]
struct WelcomeError(String);

impl std::fmt::Display for WelcomeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WelcomeError {}

/// Whether another attempt might succeed.
fn is_transient(e: &anyhow::Error) -> bool {
    if e.downcast_ref::<WelcomeError>().is_some() {
        return false;
    }
    match e.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Http(resp)) => resp.status().is_server_error(),
        Some(tungstenite::Error::Url(_)) => false,
        _ => true,
    }
}

/// A cheap pseudo-random number of milliseconds below `max_ms`, to spread retries.
fn fastrand_ms(max_ms: u128) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) % u64::try_from(max_ms.max(1)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_round_robin() {
        assert_eq!(source_addr(0, 0), None);
        assert_eq!(source_addr(0, 8), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_addr(7, 8), Some(Ipv4Addr::new(127, 0, 0, 9)));
        assert_eq!(source_addr(8, 8), Some(Ipv4Addr::new(127, 0, 0, 2)));
    }

    #[test]
    fn welcome_fields_are_optional() {
        let w: Welcome = serde_json::from_str(
            r#"{"type":"welcome","conn":"4","recovered":true,"cursor":"demo:all@k0:3,demo:user:u1@:0","channels":[{"ch":"demo:all","epoch":"k0","off":3,"recovered":true}]}"#,
        )
        .unwrap();
        assert_eq!(w.cursor.as_deref(), Some("demo:all@k0:3,demo:user:u1@:0"));
        assert_eq!(w.recovered, Some(true));
        let relay: Welcome =
            serde_json::from_str(r#"{"type":"welcome","conn":"1","app":"demo","user":"u1"}"#)
                .unwrap();
        assert_eq!((relay.cursor, relay.recovered), (None, None));
    }

    #[test]
    fn classifies_errors() {
        assert!(is_transient(&anyhow::Error::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!is_transient(&anyhow::Error::new(WelcomeError("x".into()))));
        assert!(is_transient(&anyhow::Error::new(
            tungstenite::Error::ConnectionClosed
        )));
    }
}
