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
use crate::auth::authenticate;
use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, AuthMode, ConnInfo, Cursor, Hub, Publication, Render, Session};
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
    /// A fresh token for the same user, before the current one expires.
    Refresh {
        #[serde(default)]
        id: Option<serde_json::Value>,
        token: String,
    },
}

#[derive(Serialize)]
struct Refreshed<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::Value>,
    expires: u64,
}

/// Raw TCP's first frame: who the client is, and where it left off.
#[derive(Debug, Deserialize)]
struct ConnectFrame {
    app: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    token: Option<String>,
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
    /// When the connection's token expires (Unix seconds): refresh before then.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
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
    fn new(info: &'a ConnInfo, expires: Option<u64>) -> Self {
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
            expires,
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
    token: Option<String>,
    since: Option<Cursor>,
}

/// The first frame of a client that authenticates in-band: `{"type":"auth","token":...}`.
#[derive(Debug, Deserialize)]
struct AuthFrame {
    token: String,
    #[serde(default)]
    since: Option<String>,
}

/// One native client: attached at open with the app, user and token from the request; or
/// on its first frame, where the request has no token for an app that needs one (`auth`)
/// or there is no request at all (`connect`, raw TCP).
pub struct NativeClient {
    hub: Hub,
    renderer: Arc<dyn Render>,
    /// What the request said, until the connection opens.
    request: Option<FromRequest>,
    /// An app whose client must still send its token in an `auth` frame.
    awaiting_auth: Option<(Arc<AppSettings>, Option<Cursor>)>,
    /// The mechanics in force: the app's once it is known.
    liveness: Liveness,
    session: Option<Session>,
}

fn parse_since(since: Option<&str>) -> Result<Option<Cursor>, Disconnect> {
    since
        .map(Cursor::parse)
        .transpose()
        .map_err(|error| Disconnect::BAD_REQUEST.with_reason(error.to_string()))
}

impl NativeClient {
    /// A client of `app` that named `user` and `token` in its request (which of them counts
    /// is the app's `auth` mode), resuming from `since` if given. `before_attach` applies
    /// until it is attached; its handshake deadline bounds the wait for an `auth` frame.
    pub fn new(
        hub: Hub,
        app: Arc<AppSettings>,
        user: Option<String>,
        token: Option<String>,
        since: Option<Cursor>,
        renderer: Arc<dyn Render>,
        before_attach: Liveness,
    ) -> Self {
        Self {
            hub,
            renderer,
            liveness: before_attach,
            request: Some(FromRequest {
                app,
                user,
                token,
                since,
            }),
            awaiting_auth: None,
            session: None,
        }
    }

    /// A client that names its app, user or token in its first frame,
    /// `{"type":"connect","app":...,"user":...,"token":...,"since":...}`: for transports
    /// without a request (raw TCP). `before_connect` applies until then; its handshake
    /// deadline is when the frame must have arrived.
    pub fn awaiting_connect(hub: Hub, renderer: Arc<dyn Render>, before_connect: Liveness) -> Self {
        Self {
            hub,
            renderer,
            request: None,
            awaiting_auth: None,
            liveness: before_connect,
            session: None,
        }
    }

    /// Authenticate, attach to the hub and queue the `welcome`; a refusal is the reason
    /// to close.
    async fn attach(
        &mut self,
        app: Arc<AppSettings>,
        user: Option<String>,
        token: Option<&str>,
        since: Option<Cursor>,
        link: &Link,
    ) -> Result<(), Disconnect> {
        let identity = authenticate(&app, user, token)?;
        let (expires, expiry) = (identity.expires, identity.expiry());
        let session = super::attach(
            &self.hub,
            link,
            &self.renderer,
            app.clone(),
            identity,
            since,
            |info| {
                let welcome = Welcome::new(info, expires);
                link.send_text(&serde_json::to_vec(&welcome).unwrap_or_default());
            },
        )
        .await?;
        self.liveness = Liveness {
            credential_expiry: expiry,
            ..super::liveness(&app)
        };
        self.session = Some(session);
        Ok(())
    }

    /// Take a fresh token for the same user: the connection then lives until its expiry.
    /// A refusal is an error frame; the connection keeps its current expiry.
    fn refresh(&mut self, token: &str, id: Option<&serde_json::Value>, link: &Link) {
        let Some(session) = &self.session else { return };
        let refused = |code: &str, message: &str| send_error(link, id, code, message);
        if session.app().auth != AuthMode::Token {
            return refused("not_a_token_app", "this app does not use tokens");
        }
        match crate::auth::verify(session.app(), token) {
            Ok(claims) if claims.sub.as_str() != &**session.user() => {
                refused("wrong_user", "the new token is for another user")
            }
            Ok(claims) => {
                self.liveness.credential_expiry = crate::auth::expiry_instant(claims.exp);
                let refreshed = Refreshed {
                    kind: "refreshed",
                    id,
                    expires: claims.exp,
                };
                link.send_text(&serde_json::to_vec(&refreshed).unwrap_or_default());
            }
            Err(reason) => refused(reason.name(), &reason.reason),
        }
    }

    /// The first frame of a client not attached yet: `auth` when its app awaits a token,
    /// `connect` when it came without a request; anything else closes it.
    async fn on_first_frame(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
        let expected = if self.awaiting_auth.is_some() {
            Disconnect::EXPECTED_CONNECT
                .with_reason("first frame must be {\"type\":\"auth\",\"token\":...}")
        } else {
            Disconnect::EXPECTED_CONNECT
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|_| expected.clone())?;
        let kind = value
            .get("type")
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        let invalid = |error: serde_json::Error| {
            Disconnect::BAD_REQUEST.with_reason(format!("invalid first frame: {error}"))
        };
        match (self.awaiting_auth.take(), kind.as_deref()) {
            (Some((app, since)), Some("auth")) => {
                let frame: AuthFrame = serde_json::from_value(value).map_err(invalid)?;
                let since = match parse_since(frame.since.as_deref())? {
                    Some(given) => Some(given),
                    None => since,
                };
                self.attach(app, None, Some(&frame.token), since, link)
                    .await
            }
            (None, Some("connect")) => {
                let frame: ConnectFrame = serde_json::from_value(value).map_err(invalid)?;
                let since = parse_since(frame.since.as_deref())?;
                let app = self.hub.app(&frame.app).map_err(|e| Disconnect::from(&e))?;
                self.attach(app, frame.user, frame.token.as_deref(), since, link)
                    .await
            }
            _ => Err(expected),
        }
    }
}

#[async_trait]
impl ClientHandler for NativeClient {
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
        let Some(request) = self.request.take() else {
            return Ok(());
        };
        if request.app.auth == AuthMode::Token && request.token.is_none() {
            self.awaiting_auth = Some((request.app, request.since));
            return Ok(());
        }
        let FromRequest {
            app,
            user,
            token,
            since,
        } = request;
        self.attach(app, user, token.as_deref(), since, link).await
    }

    async fn on_text(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
        if self.session.is_none() {
            return self.on_first_frame(text, link).await;
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
            Ok(ClientFrame::Refresh { id, token }) => self.refresh(&token, id.as_ref(), link),
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
