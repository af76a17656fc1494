//! pushhub's native protocol: JSON text frames with a `type` (docs/protocol.md).
//!
//! A client names its app and user either in the request (WebSocket, SSE and long-poll
//! URLs: [`NativeClient::new`]) or, where there is no request, in a first `connect` frame
//! (raw TCP: [`NativeClient::awaiting_connect`]); both attach the same way and get the
//! same `welcome`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Encode;
use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, ConnInfo, Cursor, Hub, Publication, Render, Session};
use crate::transport::{ClientHandler, Link, Liveness};

/// Encodes publications as native `msg` frames.
pub struct NativeEncoder;

/// The native encoder; stateless.
pub static NATIVE: NativeEncoder = NativeEncoder;

#[derive(Serialize)]
struct MsgFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ch: &'a str,
    epoch: &'a str,
    off: u64,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    data: &'a RawValue,
    ts: u64,
}

impl Encode for NativeEncoder {
    fn encode(&self, p: &Publication) -> Vec<u8> {
        let frame = MsgFrame {
            kind: "msg",
            ch: &p.channel,
            epoch: &p.position.epoch,
            off: p.position.offset,
            id: &p.message.id,
            event: p.message.event.as_deref(),
            data: &p.message.data,
            ts: p.message.ts_ms,
        };
        serde_json::to_vec(&frame).unwrap_or_default()
    }
}

/// A frame a native client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    /// Application-level ping; answered with `pong` (WebSocket pings work too).
    Ping {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    /// The answer to the server's `ping` frame (raw TCP heartbeat); nothing to do.
    Pong {},
    /// Raw TCP's first frame; anywhere else it is answered with an error.
    Connect {},
}

/// Raw TCP's first frame: who the client is, and where it left off.
#[derive(Debug, Deserialize)]
struct ConnectFrame {
    app: String,
    user: String,
    /// A cursor, as the WebSocket `since` query parameter.
    #[serde(default)]
    since: Option<String>,
}

#[derive(Serialize)]
struct Welcome<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    conn: String,
    app: &'a str,
    user: &'a str,
    heartbeat: u64,
    idle_timeout: u64,
    max_frame_bytes: usize,
    recovered: bool,
    cursor: String,
    channels: Vec<ChannelFrame<'a>>,
}

#[derive(Serialize)]
struct ChannelFrame<'a> {
    ch: &'a str,
    epoch: &'a str,
    off: u64,
    recovered: bool,
}

impl<'a> Welcome<'a> {
    fn new(info: &'a ConnInfo) -> Self {
        Welcome {
            kind: "welcome",
            conn: format!("{:x}", info.id),
            app: &info.app.name,
            user: &info.user,
            heartbeat: info.app.heartbeat.as_secs(),
            idle_timeout: info.app.idle_timeout.as_secs(),
            max_frame_bytes: info.app.max_frame_bytes,
            recovered: info.recovered,
            cursor: info.start_cursor().to_string(),
            channels: info
                .channels
                .iter()
                .map(|c| ChannelFrame {
                    ch: &c.channel,
                    epoch: &c.position.epoch,
                    off: c.position.offset,
                    recovered: c.recovered,
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::Value>,
    code: &'a str,
    /// The close code, on the frame a transport without close frames ends with.
    #[serde(skip_serializing_if = "Option::is_none")]
    close: Option<u16>,
    message: &'a str,
}

#[derive(Serialize)]
struct Pong<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::Value>,
}

/// Queue an `error` frame; the connection stays open.
fn send_error(link: &Link, id: Option<&serde_json::Value>, code: &str, message: &str) {
    let frame = ErrorFrame {
        kind: "error",
        id,
        code,
        close: None,
        message,
    };
    link.send_text(&serde_json::to_vec(&frame).unwrap_or_default());
}

/// The server's heartbeat on transports without a ping of their own (raw TCP).
pub const PING: &[u8] = br#"{"type":"ping"}"#;

/// The last frame on transports without a close frame of their own (raw TCP): an `error`
/// frame naming the reason, with its close code, e.g.
/// `{"type":"error","code":"too_big","close":1009,"message":"..."}`.
pub fn closing_frame(reason: &Disconnect) -> Vec<u8> {
    let frame = ErrorFrame {
        kind: "error",
        id: None,
        code: reason.name(),
        close: Some(reason.code),
        message: &reason.reason,
    };
    serde_json::to_vec(&frame).unwrap_or_default()
}

/// Who a client said it is in its request, to attach as when the connection opens.
struct FromRequest {
    app: Arc<AppSettings>,
    user: Option<String>,
    since: Option<Cursor>,
}

/// One native client: attached at open with the app and user from the request, or on its
/// `connect` frame where there is no request.
pub struct NativeClient {
    hub: Hub,
    renderer: Arc<dyn Render>,
    /// `None` for a client that names itself in a `connect` frame.
    request: Option<FromRequest>,
    /// The mechanics in force: the app's once it is known.
    liveness: Liveness,
    session: Option<Session>,
}

/// The mechanics an app asks for.
fn app_liveness(app: &AppSettings) -> Liveness {
    Liveness {
        heartbeat: app.heartbeat,
        idle_timeout: app.idle_timeout,
        max_message_bytes: app.max_frame_bytes,
        handshake_deadline: None,
    }
}

impl NativeClient {
    /// A client of `app` claiming to be `user` (trusted only for `auth = "none"` apps),
    /// resuming from `since` if given.
    pub fn new(
        hub: Hub,
        app: Arc<AppSettings>,
        user: Option<String>,
        since: Option<Cursor>,
        renderer: Arc<dyn Render>,
    ) -> Self {
        Self {
            hub,
            renderer,
            liveness: app_liveness(&app),
            request: Some(FromRequest { app, user, since }),
            session: None,
        }
    }

    /// A client that names its app and user in its first frame,
    /// `{"type":"connect","app":...,"user":...,"since":...}`: for transports without a
    /// request (raw TCP). `before_connect` applies until then; its handshake deadline is
    /// when the frame must have arrived.
    pub fn awaiting_connect(hub: Hub, renderer: Arc<dyn Render>, before_connect: Liveness) -> Self {
        Self {
            hub,
            renderer,
            request: None,
            liveness: before_connect,
            session: None,
        }
    }

    /// Attach to the hub and queue the `welcome`; a refusal is the reason to close.
    async fn attach(
        &mut self,
        app: Arc<AppSettings>,
        user: String,
        since: Option<Cursor>,
        link: &Link,
    ) -> Result<(), Disconnect> {
        let session = super::attach(
            &self.hub,
            link,
            &self.renderer,
            app.clone(),
            user,
            since,
            |info| {
                link.send_text(&serde_json::to_vec(&Welcome::new(info)).unwrap_or_default());
            },
        )
        .await?;
        self.liveness = app_liveness(&app);
        self.session = Some(session);
        Ok(())
    }

    /// The first frame of a client awaiting `connect`: anything else closes it.
    async fn on_connect_frame(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| Disconnect::EXPECTED_CONNECT)?;
        if value.get("type").and_then(|t| t.as_str()) != Some("connect") {
            return Err(Disconnect::EXPECTED_CONNECT);
        }
        let frame: ConnectFrame = serde_json::from_value(value).map_err(|error| {
            Disconnect::BAD_REQUEST.with_reason(format!("invalid connect frame: {error}"))
        })?;
        let since = frame
            .since
            .as_deref()
            .map(Cursor::parse)
            .transpose()
            .map_err(|error| Disconnect::BAD_REQUEST.with_reason(error.to_string()))?;
        let app = self.hub.app(&frame.app).map_err(|e| Disconnect::from(&e))?;
        self.attach(app, frame.user, since, link).await
    }
}

#[async_trait]
impl ClientHandler for NativeClient {
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
        let Some(FromRequest { app, user, since }) = self.request.take() else {
            return Ok(());
        };
        let user = user.ok_or_else(|| {
            Disconnect::BAD_REQUEST.with_reason("missing user: connect with ?app=APP&user=USER")
        })?;
        self.attach(app, user, since, link).await
    }

    async fn on_text(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
        if self.session.is_none() {
            return self.on_connect_frame(text, link).await;
        }
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                send_error(
                    link,
                    None,
                    "bad_json",
                    &format!("frame is not valid JSON: {error}"),
                );
                return Ok(());
            }
        };
        let id = value.get("id").cloned();
        let Some(kind) = value
            .get("type")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
        else {
            send_error(
                link,
                id.as_ref(),
                "bad_frame",
                "frame must be a JSON object with a string \"type\"",
            );
            return Ok(());
        };
        match serde_json::from_value::<ClientFrame>(value) {
            Ok(ClientFrame::Ping { id }) => {
                let pong = Pong {
                    kind: "pong",
                    id: id.as_ref(),
                };
                link.send_text(&serde_json::to_vec(&pong).unwrap_or_default());
            }
            Ok(ClientFrame::Pong {}) => {}
            Ok(ClientFrame::Connect {}) => {
                send_error(
                    link,
                    id.as_ref(),
                    "already_connected",
                    "this connection is already connected; connect is only a raw TCP client's first frame",
                );
            }
            Err(error) if error.to_string().starts_with("unknown variant") => {
                send_error(
                    link,
                    id.as_ref(),
                    "unknown_type",
                    &format!("unknown frame type {kind:?}"),
                );
            }
            Err(error) => {
                send_error(
                    link,
                    id.as_ref(),
                    "bad_frame",
                    &format!("invalid {kind:?} frame: {error}"),
                );
            }
        }
        Ok(())
    }

    fn liveness(&self) -> Liveness {
        self.liveness
    }

    async fn on_close(&mut self, _reason: &Disconnect) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_frame_names_the_reason_and_its_code() {
        assert_eq!(
            String::from_utf8(closing_frame(&Disconnect::SHUTDOWN)).unwrap(),
            r#"{"type":"error","code":"shutdown","close":1001,"message":"server shutting down"}"#
        );
        let frame: serde_json::Value =
            serde_json::from_slice(&closing_frame(&Disconnect::TOO_BIG.with_reason("a\nb")))
                .unwrap();
        assert_eq!(frame["code"], "too_big");
        assert_eq!(frame["message"], "a\nb");
    }
}
