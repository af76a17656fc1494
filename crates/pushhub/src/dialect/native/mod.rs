//! pushhub's native protocol: JSON text frames with a `type` (docs/protocol.md).
//!
//! A client names its app and user either in the request (WebSocket, SSE and long-poll
//! URLs: [`NativeClient::new`]) or, where there is no request, in a first `connect` frame
//! (raw TCP: [`NativeClient::awaiting_connect`]); both attach the same way and get the
//! same `welcome`. An app with `login_later` lets a client without a credential wait,
//! anonymous, until it sends a `login` frame ([`login`]).

mod encode;
mod frames;
pub mod gateway;
pub mod login;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::calls::Calls;
use crate::auth::{authenticate, Credential, CredentialSource, Presented};
use crate::disconnect::Disconnect;
use crate::hub::cursor::position;
use crate::hub::login::LoginAttempts;
use crate::hub::{AppSettings, AuthMode, Cursor, Hub, InvalidFrames, Render, Session};
use crate::transport::{ClientHandler, Link, Liveness};
pub use encode::{NativeEncoder, NATIVE};
pub use frames::{closing_frame, PING};
use frames::{
    error_frame, send_error, send_sent, AuthFrame, ClientFrame, ConnectFrame, Joined, Left, Pong,
    Refreshed, Reply, Welcome,
};

/// Who a client said it is in its request, to attach as when the connection opens.
struct FromRequest {
    app: Arc<AppSettings>,
    presented: Presented,
    since: Option<Cursor>,
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
    /// A `login_later` app whose client waits, anonymous, to log in.
    waiting: Option<login::Waiting>,
    /// The connection's login attempts, counted across logouts.
    logins: LoginAttempts,
    /// The mechanics in force: the app's once it is known.
    liveness: Liveness,
    session: Option<Session>,
    calls: Calls,
}

fn parse_since(since: Option<&str>) -> Result<Option<Cursor>, Disconnect> {
    since
        .map(Cursor::parse)
        .transpose()
        .map_err(|error| Disconnect::BAD_REQUEST.with_reason(error.to_string()))
}

impl NativeClient {
    /// A client of `app` that `presented` a user id and perhaps a credential with its
    /// request (which counts is the app's `auth` mode), resuming from `since` if given.
    /// `before_attach` applies until it is attached; its handshake deadline bounds the wait
    /// for an `auth` frame.
    pub fn new(
        hub: Hub,
        app: Arc<AppSettings>,
        presented: Presented,
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
                presented,
                since,
            }),
            awaiting_auth: None,
            waiting: None,
            logins: LoginAttempts::new(tokio::time::Instant::now()),
            session: None,
            calls: Calls::default(),
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
            waiting: None,
            logins: LoginAttempts::new(tokio::time::Instant::now()),
            liveness: before_connect,
            session: None,
            calls: Calls::default(),
        }
    }

    /// Authenticate, attach to the hub and queue the `welcome` (answering `reply_to`, a
    /// `login` frame's id); a refusal is the reason to close, or to stay waiting.
    async fn attach(
        &mut self,
        app: Arc<AppSettings>,
        presented: Presented,
        since: Option<Cursor>,
        reply_to: Option<&serde_json::Value>,
        link: &Link,
    ) -> Result<(), Disconnect> {
        let identity = authenticate(&app, presented).await?;
        let (expires, expiry) = (identity.expires, identity.expiry());
        let session = super::attach(
            &self.hub,
            link,
            &self.renderer,
            app.clone(),
            identity,
            since,
            |info| {
                let welcome = Welcome::new(info, expires, reply_to);
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

    /// Join `room` if the app's policy lets this client: `joined` with where the client
    /// stands in the room's stream, then what it missed since `since`, or an `error`. A
    /// policy that asks the backend holds this connection's later frames until it
    /// answers (within its timeout), so a `leave` sent right after a `join` is handled
    /// after it.
    async fn join(
        &mut self,
        room: &str,
        since: (Option<String>, Option<u64>),
        id: Option<&serde_json::Value>,
        link: &Link,
    ) {
        let Some(session) = &mut self.session else {
            return;
        };
        let since = match since {
            (None, None) => None,
            (epoch, Some(off)) => match position(epoch.as_deref().unwrap_or_default(), off) {
                Ok(position) => Some(position),
                Err(error) => return send_error(link, id, "invalid_position", &error.0),
            },
            (Some(_), None) => {
                let why = "a join's position needs \"off\" (and \"epoch\")";
                return send_error(link, id, "invalid_position", why);
            }
        };
        let joined = session.join(room, since, |state| {
            let joined = Joined {
                kind: "joined",
                id,
                room,
                ch: &state.channel,
                epoch: &state.start.epoch,
                off: state.start.offset,
                recovered: state.recovered,
            };
            link.send_text(&serde_json::to_vec(&joined).unwrap_or_default());
        });
        if let Err(error) = joined.await {
            send_error(link, id, error.code(), &error.to_string());
        }
    }

    /// Send an event to user `to`, if the app's policy lets this client: `sent` with the
    /// message's position in `to`'s channel, or an `error`.
    async fn send(
        &mut self,
        to: &str,
        event: Option<String>,
        data: Box<RawValue>,
        id: Option<&serde_json::Value>,
        link: &Link,
    ) {
        let Some(session) = &self.session else { return };
        match session.send(to, event, data).await {
            Ok(receipt) => send_sent(link, id, &receipt),
            Err(error) => send_error(link, id, error.code(), &error.to_string()),
        }
    }

    /// Send an event to every member of `room`, if the app lets this client (a member)
    /// talk there: `sent` with the message's position in the room's channel, or an
    /// `error`. The sender, a member, gets the message too.
    async fn send_to_room(
        &mut self,
        room: &str,
        event: Option<String>,
        data: Box<RawValue>,
        id: Option<&serde_json::Value>,
        link: &Link,
    ) {
        let Some(session) = &self.session else { return };
        match session.send_to_room(room, event, data).await {
            Ok(receipt) => send_sent(link, id, &receipt),
            Err(error) => send_error(link, id, error.code(), &error.to_string()),
        }
    }

    /// Answer a frame the dialect cannot use as the app wants: an error frame with
    /// `code`, or (`invalid_frames = "close"`) the end of the connection.
    fn invalid_frame(
        &self,
        link: &Link,
        id: Option<&serde_json::Value>,
        code: &str,
        message: &str,
    ) -> Result<(), Disconnect> {
        let close = self
            .session
            .as_ref()
            .is_some_and(|s| s.app().invalid_frames == InvalidFrames::Close);
        if close {
            return Err(Disconnect::BAD_REQUEST.with_reason(message.to_owned()));
        }
        send_error(link, id, code, message);
        Ok(())
    }

    /// Leave `room`; `left` either way (leaving a room one is not in changes nothing).
    async fn leave(&mut self, room: &str, id: Option<&serde_json::Value>, link: &Link) {
        let Some(session) = &self.session else { return };
        match session.leave(room).await {
            Ok(_) => {
                let left = Left {
                    kind: "left",
                    id,
                    room,
                };
                link.send_text(&serde_json::to_vec(&left).unwrap_or_default());
            }
            Err(error) => send_error(link, id, error.code(), &error.to_string()),
        }
    }

    /// Carry an `rpc` frame to the app's backend in a task of its own, so the connection
    /// keeps reading (and other calls run) while it waits; the answer comes back as a
    /// `reply` or `error` frame with the call's id.
    fn rpc(&mut self, id: serde_json::Value, method: String, data: Box<RawValue>, link: &Link) {
        let Some(session) = &self.session else { return };
        let reply_id = id.clone();
        let started =
            self.calls.start(
                session,
                method,
                data,
                link.sender(),
                move |answer| match answer {
                    Ok(data) => serde_json::to_vec(&Reply {
                        kind: "reply",
                        id: &reply_id,
                        data: &data,
                    })
                    .unwrap_or_default(),
                    Err(error) => error_frame(Some(&reply_id), error.code(), &error.to_string()),
                },
            );
        if let Err(error) = started {
            send_error(link, Some(&id), error.code(), &error.to_string());
        }
    }

    /// Take a fresh token for the same user: the connection then lives until its expiry.
    /// A refusal is an error frame; the connection keeps its current expiry.
    fn refresh(&mut self, token: &str, id: Option<&serde_json::Value>, link: &Link) {
        let Some(session) = &self.session else { return };
        match session.refresh(token) {
            Ok(expires) => {
                self.liveness.credential_expiry = crate::auth::expiry_instant(expires);
                let refreshed = Refreshed {
                    kind: "refreshed",
                    id,
                    expires,
                };
                link.send_text(&serde_json::to_vec(&refreshed).unwrap_or_default());
            }
            Err(error) => send_error(link, id, error.code(), &error.to_string()),
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
                let presented = Presented {
                    credential: Some(Credential::new(frame.token, CredentialSource::Frame)),
                    ..Presented::default()
                };
                self.attach(app, presented, since, None, link).await
            }
            (None, Some("connect")) => {
                let frame: ConnectFrame = serde_json::from_value(value).map_err(invalid)?;
                let since = parse_since(frame.since.as_deref())?;
                let app = self.hub.app(&frame.app).map_err(|e| Disconnect::from(&e))?;
                if app.login.is_some() && frame.token.is_none() {
                    self.wait(app, since, None, link);
                    return Ok(());
                }
                let presented = Presented {
                    user: frame.user,
                    credential: frame
                        .token
                        .map(|token| Credential::new(token, CredentialSource::Frame)),
                    cookies: None,
                };
                self.attach(app, presented, since, None, link).await
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
        let FromRequest {
            app,
            presented,
            since,
        } = request;
        if app.auth != AuthMode::None && presented.credential_for(&app).is_none() {
            if app.login.is_some() {
                self.wait(app, since, None, link);
                return Ok(());
            }
            self.awaiting_auth = Some((app, since));
            return Ok(());
        }
        self.attach(app, presented, since, None, link).await
    }

    async fn on_text(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
        if self.session.is_none() {
            if self.waiting.is_some() {
                return self.on_waiting_frame(text, link).await;
            }
            return self.on_first_frame(text, link).await;
        }
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                let message = format!("frame is not valid JSON: {error}");
                return self.invalid_frame(link, None, "bad_json", &message);
            }
        };
        let id = value.get("id").cloned();
        let Some(kind) = value
            .get("type")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
        else {
            let message = "frame must be a JSON object with a string \"type\"";
            return self.invalid_frame(link, id.as_ref(), "bad_frame", message);
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
            Ok(ClientFrame::Login {}) => send_error(
                link,
                id.as_ref(),
                "already_logged_in",
                "this connection is logged in; send logout first to log in as someone else",
            ),
            Ok(ClientFrame::Logout { id }) => self.logout(id.as_ref(), link).await,
            Ok(ClientFrame::Join {
                id,
                room,
                epoch,
                off,
            }) => self.join(&room, (epoch, off), id.as_ref(), link).await,
            Ok(ClientFrame::Send {
                id,
                to,
                room,
                event,
                data,
            }) => {
                let data = serde_json::value::to_raw_value(&data)
                    .unwrap_or_else(|_| RawValue::NULL.to_owned());
                match (to, room) {
                    (Some(to), None) => self.send(&to, event, data, id.as_ref(), link).await,
                    (None, Some(room)) => {
                        self.send_to_room(&room, event, data, id.as_ref(), link)
                            .await
                    }
                    _ => {
                        let message = "a send frame names either \"to\" (a user) or \"room\"";
                        return self.invalid_frame(link, id.as_ref(), "bad_frame", message);
                    }
                }
            }
            Ok(ClientFrame::Leave { id, room }) => self.leave(&room, id.as_ref(), link).await,
            Ok(ClientFrame::Rpc { id, method, data }) => {
                let data = serde_json::value::to_raw_value(&data)
                    .unwrap_or_else(|_| RawValue::NULL.to_owned());
                self.rpc(id, method, data, link);
            }
            Ok(ClientFrame::Connect {}) => {
                send_error(
                    link,
                    id.as_ref(),
                    "already_connected",
                    "this connection is already connected; connect is only a raw TCP client's first frame",
                );
            }
            Err(error) if error.to_string().starts_with("unknown variant") => {
                let message = format!("unknown frame type {kind:?}");
                return self.invalid_frame(link, id.as_ref(), "unknown_type", &message);
            }
            Err(error) => {
                let message = format!("invalid {kind:?} frame: {error}");
                return self.invalid_frame(link, id.as_ref(), "bad_frame", &message);
            }
        }
        Ok(())
    }

    fn liveness(&self) -> Liveness {
        self.liveness
    }

    async fn on_close(&mut self, reason: &Disconnect) {
        self.calls.abandon();
        if let Some(session) = self.session.take() {
            session.close(reason).await;
        }
    }
}
