//! pushhub's native protocol: JSON text frames with a `type` (docs/protocol.md).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Encode;
use crate::disconnect::Disconnect;
use crate::hub::{
    AppSettings, ConnInfo, ConnectRequest, Cursor, Hub, HubError, Publication, Render, Session,
};
use crate::transport::{ClientHandler, Link, Liveness, StreamStart};

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
        message,
    };
    link.send_text(&serde_json::to_vec(&frame).unwrap_or_default());
}

/// The close a hub refusal turns into.
pub fn refusal(error: &HubError) -> Disconnect {
    match error {
        HubError::UnknownApp(_) => Disconnect::UNKNOWN_APP.with_reason(error.to_string()),
        HubError::Engine(_) => Disconnect::ENGINE_UNAVAILABLE,
        _ => Disconnect::BAD_REQUEST.with_reason(error.to_string()),
    }
}

/// One native client: attached at open with the app and user from the request.
pub struct NativeClient {
    hub: Hub,
    app: Arc<AppSettings>,
    user: Option<String>,
    since: Option<Cursor>,
    renderer: Arc<dyn Render>,
    session: Option<Session>,
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
            app,
            user,
            since,
            renderer,
            session: None,
        }
    }
}

#[async_trait]
impl ClientHandler for NativeClient {
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
        let user = self.user.take().ok_or_else(|| {
            Disconnect::BAD_REQUEST.with_reason("missing user: connect with ?app=APP&user=USER")
        })?;
        let request = ConnectRequest {
            app: self.app.clone(),
            user,
            outbox: link.outbox().clone(),
            renderer: self.renderer.clone(),
            since: self.since.take(),
        };
        let session = self
            .hub
            .connect(request, |info| {
                link.send_text(&serde_json::to_vec(&Welcome::new(info)).unwrap_or_default());
                link.attached(StreamStart {
                    cursor: info.start_cursor(),
                    recovered: info.recovered,
                });
            })
            .await
            .map_err(|e| refusal(&e))?;
        self.session = Some(session);
        Ok(())
    }

    async fn on_text(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
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
        Liveness {
            heartbeat: self.app.heartbeat,
            idle_timeout: self.app.idle_timeout,
            max_message_bytes: self.app.max_frame_bytes,
            handshake_deadline: None,
        }
    }

    async fn on_close(&mut self, _reason: &Disconnect) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }
}
