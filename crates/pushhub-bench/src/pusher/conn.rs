//! The WebSocket clients of the Pusher benchmarks: a Pusher client (`/app/{key}`, the
//! frames pusher-js sends) and a native client (`/v1/ws`, a room `join`), both plain
//! tokio-tungstenite tasks so that the two sides of a comparison cost the generator the
//! same per frame.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{client_async, WebSocketStream};

/// One client's socket.
pub type Ws = WebSocketStream<TcpStream>;

/// The pushhub app both dialects use.
pub const APP: &str = "demo";
/// Its Pusher key (the client's path `/app/{KEY}`).
pub const KEY: &str = "bench-key";
/// Its Pusher secret, which signs private and presence subscriptions.
pub const SECRET: &str = "bench-secret-0123456789abcdef";

/// Source addresses the clients spread over (127.0.0.2 …), so repeated runs never run
/// out of ephemeral ports because of TIME_WAIT.
const SOURCE_ADDRS: usize = 8;

/// Opens a WebSocket to `addr` at `path` from source address number `idx % 8`, with up
/// to five attempts (a connect storm can overflow the accept queue).
pub async fn open(addr: SocketAddr, path: &str, idx: usize) -> Result<Ws> {
    let mut last = None;
    for attempt in 0..5u32 {
        match open_once(addr, path, idx).await {
            Ok(ws) => return Ok(ws),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
}

async fn open_once(addr: SocketAddr, path: &str, idx: usize) -> Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    let src = Ipv4Addr::new(127, 0, 0, 2 + (idx % SOURCE_ADDRS) as u8);
    socket.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))?;
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        client_async(format!("ws://{addr}{path}"), stream),
    )
    .await
    .context("WebSocket handshake timed out")??;
    Ok(ws)
}

/// The next text frame (`None` once the server closed), answering `pusher:ping` on the
/// way as pusher-js does; WebSocket pings are answered by tungstenite itself.
pub async fn next_text(ws: &mut Ws) -> Result<Option<Utf8Bytes>> {
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(text) if text.as_str().contains("\"pusher:ping\"") => {
                ws.send(Message::text(r#"{"event":"pusher:pong","data":"{}"}"#))
                    .await?;
            }
            Message::Text(text) => return Ok(Some(text)),
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// The next text frame, failing when the server closed.
async fn expect_text(ws: &mut Ws, waiting_for: &str) -> Result<Utf8Bytes> {
    next_text(ws)
        .await?
        .with_context(|| format!("closed while waiting for {waiting_for}"))
}

/// Connects a Pusher client (`protocol=7`) and returns it with its `socket_id`.
pub async fn pusher_connect(addr: SocketAddr, idx: usize) -> Result<(Ws, String)> {
    let path = format!("/app/{KEY}?protocol=7&client=bench&version=1");
    let mut ws = open(addr, &path, idx).await?;
    let first = expect_text(&mut ws, "pusher:connection_established").await?;
    let frame: serde_json::Value = serde_json::from_str(first.as_str())?;
    if frame["event"] != "pusher:connection_established" {
        bail!("expected pusher:connection_established, got {first}");
    }
    let data: serde_json::Value =
        serde_json::from_str(frame["data"].as_str().context("data is not a string")?)?;
    let socket_id = data["socket_id"]
        .as_str()
        .context("no socket_id")?
        .to_owned();
    Ok((ws, socket_id))
}

/// The `pusher:subscribe` frame for `channel`; for a presence channel with the member's
/// `channel_data`, signed as pusher-js's auth endpoint would.
pub fn subscribe_frame(channel: &str, presence: Option<(&str, &str)>) -> String {
    let mut data = serde_json::json!({ "channel": channel });
    if let Some((socket_id, channel_data)) = presence {
        data["auth"] = sign(socket_id, channel, channel_data).into();
        data["channel_data"] = channel_data.into();
    }
    serde_json::json!({ "event": "pusher:subscribe", "data": data }).to_string()
}

/// Sends a prepared `pusher:subscribe` and waits for its
/// `pusher_internal:subscription_succeeded`, which it returns.
pub async fn pusher_subscribe(ws: &mut Ws, frame: String) -> Result<Utf8Bytes> {
    ws.send(Message::text(frame)).await?;
    loop {
        let text = expect_text(ws, "subscription_succeeded").await?;
        let s = text.as_str();
        if s.contains("pusher_internal:subscription_succeeded") {
            return Ok(text);
        }
        if s.contains("pusher:subscription_error") || s.contains("pusher:error") {
            bail!("subscribe refused: {s}");
        }
    }
}

/// `key:hex(HMAC-SHA256(secret, "socket_id:channel:channel_data"))`.
fn sign(socket_id: &str, channel: &str, channel_data: &str) -> String {
    let message = format!("{socket_id}:{channel}:{channel_data}");
    format!("{KEY}:{}", signature(SECRET, &message))
}

/// Lower-case hex of HMAC-SHA256(`secret`, `message`).
fn signature(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Connects a native client as user `u{idx}` and joins `room`.
pub async fn native_join(addr: SocketAddr, idx: usize, room: &str) -> Result<Ws> {
    let path = format!("/v1/ws?app={APP}&user=u{idx}");
    let mut ws = open(addr, &path, idx).await?;
    let welcome = expect_text(&mut ws, "welcome").await?;
    if !welcome.as_str().contains("\"welcome\"") {
        bail!("expected welcome, got {welcome}");
    }
    let join = serde_json::json!({ "type": "join", "id": 1, "room": room }).to_string();
    ws.send(Message::text(join)).await?;
    loop {
        let text = expect_text(&mut ws, "joined").await?;
        let s = text.as_str();
        if s.contains("\"joined\"") {
            return Ok(ws);
        }
        if s.contains("\"error\"") {
            bail!("join refused: {s}");
        }
    }
}

/// The first run of digits after `key` in `text` (`"seq":12` or, inside a Pusher
/// event's string data, `\"seq\":12`), without parsing the frame.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let digits = &rest[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numbers_in_both_dialects() {
        let native = r#"{"type":"msg","ch":"demo:room:bench","off":3,"data":{"seq":12}}"#;
        let pusher = r#"{"event":"e","channel":"bench","data":"{\"seq\":7}"}"#;
        assert_eq!(number_after(native, "\"seq"), Some(12));
        assert_eq!(number_after(pusher, "seq"), Some(7));
        assert_eq!(number_after(pusher, "count"), None);
    }

    #[test]
    fn signs_like_pusher() {
        // Pusher's documented example (their secret, socket id and channel).
        assert_eq!(
            signature("7ad3773142a6692b25b8", "1234.1234:private-foobar"),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }
}
