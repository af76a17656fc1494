//! One Pusher client (pusher-js, Laravel Echo): protocol 7 over the WebSocket on
//! `/app/{key}`.
//!
//! The connection attaches to the hub without a user and joins a room per channel it
//! subscribes to. What Pusher decides per channel type is decided here, over hub rooms
//! (DESIGN.md, "More dialects"): public channels are open, `private-` and `presence-` ones
//! need the app's signature (`auth/pusher.rs`), a presence subscription joins as a member
//! with its `user_info`, `cache-` channels replay their last event, and `client-` events
//! go to the other subscribers of a private or presence channel when the app allows them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::frames::{
    self, ChannelData, Command, FrameError, Signin, Subscribe, Unsubscribe, UserData,
};
use super::{check_channel, socket_id, USER_CHANNEL_PREFIX};
use crate::auth::pusher::PusherSecret;
use crate::backend::pusher_webhooks::PusherEvent;
use crate::disconnect::Disconnect;
use crate::hub::app::PusherPolicy;
use crate::hub::{
    AppSettings, ChannelState, ConnectRequest, Grant, Hub, HubError, MemberJoin, Render, RoomEntry,
    RoomStart, Session,
};
use crate::transport::{ClientHandler, Farewell, Link, Liveness};

/// Pusher's close codes (its protocol's table, which pusher-js acts on): 4000–4099 the
/// client must not reconnect, 4100–4199 it reconnects after a back-off, 4200–4299 at once.
pub mod code {
    /// The app key names no app.
    pub const APP_NOT_FOUND: u16 = 4001;
    /// The app is disabled.
    pub const APP_DISABLED: u16 = 4003;
    /// The app has as many connections as it may.
    pub const OVER_QUOTA: u16 = 4004;
    /// The protocol version is not one this server speaks.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// The connection is not (or no longer) authorized: a failed sign-in, or the app
    /// terminated the user's connections.
    pub const UNAUTHORIZED: u16 = 4009;
    /// The server is over capacity: reconnect later.
    pub const OVER_CAPACITY: u16 = 4100;
    /// Reconnect now (a restart, a shutdown).
    pub const RECONNECT: u16 = 4200;
    /// The client did not answer in time.
    pub const PONG_NOT_RECEIVED: u16 = 4201;
    /// Client events come faster than the app allows.
    pub const CLIENT_EVENT_RATE: u16 = 4301;
}

/// Longest event name, as Pusher allows it.
const MAX_EVENT_NAME_CHARS: usize = 200;

/// The connection count of each Pusher app on this node, for `max_connections`.
#[derive(Default)]
pub struct AppConnections {
    counts: std::sync::Mutex<HashMap<Arc<str>, Arc<AtomicUsize>>>,
}

impl AppConnections {
    /// Count one more connection of `app` unless it holds `max` already (0: no limit);
    /// the returned guard counts it down when dropped.
    pub fn admit(&self, app: &Arc<str>, max: usize) -> Option<ConnectionSlot> {
        let count = crate::sync::lock(&self.counts)
            .entry(app.clone())
            .or_default()
            .clone();
        let before = count.fetch_add(1, Ordering::AcqRel);
        if max > 0 && before >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot(count))
    }
}

/// One connection counted against its app's `max_connections`, until dropped.
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the connection subscribed to a channel as.
struct Subscription {
    /// The presence member it joined as, for client events' `user_id`.
    member: Option<Arc<str>>,
}

/// One Pusher client connection.
pub struct PusherClient {
    hub: Hub,
    app: Arc<AppSettings>,
    policy: Arc<PusherPolicy>,
    renderer: Arc<dyn Render>,
    session: Option<Session>,
    socket_id: String,
    subscriptions: HashMap<String, Subscription>,
    /// Client events allowed until the budget refills: (window start, count in it).
    client_events: (Instant, u32),
    _slot: ConnectionSlot,
}

impl PusherClient {
    /// A client of `app` (its Pusher face `policy`), counted by `slot`.
    pub fn new(
        hub: Hub,
        app: Arc<AppSettings>,
        policy: Arc<PusherPolicy>,
        renderer: Arc<dyn Render>,
        slot: ConnectionSlot,
    ) -> Self {
        Self {
            hub,
            app,
            policy,
            renderer,
            session: None,
            socket_id: String::new(),
            subscriptions: HashMap::new(),
            client_events: (Instant::now(), 0),
            _slot: slot,
        }
    }

    fn secret(&self) -> PusherSecret<'_> {
        PusherSecret {
            key: &self.policy.key,
            secret: &self.policy.secret,
        }
    }

    /// How long pusher-js may hear nothing before it pings: Pusher's 120 s, or less when
    /// the app closes quiet connections sooner.
    fn activity_timeout(&self) -> u64 {
        let idle = self.app.idle_timeout.as_secs();
        if idle > 240 {
            120
        } else {
            (idle / 2).max(1)
        }
    }

    async fn subscribe(&mut self, data: Subscribe, link: &Link) -> Result<(), Disconnect> {
        let channel = data.channel;
        if self.subscriptions.contains_key(&channel) {
            // Subscribed already: the answer again, with the members a presence channel's
            // subscriber expects in it.
            let data = match ChannelKind::of(&channel) {
                ChannelKind::Presence => match self.session()?.members(&channel).await {
                    Ok(members) => frames::presence_data(&members),
                    Err(error) => {
                        link.send_text(&frames::subscription_error(
                            &channel,
                            "ServerError",
                            &error.to_string(),
                            503,
                        ));
                        return Ok(());
                    }
                },
                _ => "{}".to_owned(),
            };
            link.send_text(&frames::subscription_succeeded(&channel, &data));
            return Ok(());
        }
        if let Some(user) = channel.strip_prefix(USER_CHANNEL_PREFIX) {
            let session = self.session()?;
            if session.user().map(|u| &**u) == Some(user) {
                self.subscriptions
                    .insert(channel.clone(), Subscription { member: None });
                link.send_text(&frames::subscription_succeeded(&channel, "{}"));
            } else {
                link.send_text(&frames::subscription_error(
                    &channel,
                    "AuthError",
                    "sign in as this user before subscribing to its channel",
                    403,
                ));
            }
            return Ok(());
        }
        if let Err(error) = check_channel(&channel) {
            link.send_text(&frames::subscription_error(
                &channel,
                "InvalidChannel",
                &error.to_string(),
                400,
            ));
            return Ok(());
        }
        let kind = ChannelKind::of(&channel);
        if kind != ChannelKind::Public {
            let auth = data.auth.as_deref().unwrap_or_default();
            let signed = self.secret().verify_channel(
                &self.socket_id,
                &channel,
                data.channel_data
                    .as_deref()
                    .filter(|_| kind == ChannelKind::Presence),
                auth,
            );
            if let Err(error) = signed {
                tracing::debug!(%error, channel, "pusher subscription refused");
                link.send_text(&frames::subscription_error(
                    &channel,
                    "AuthError",
                    "the connection is unauthorized: invalid signature",
                    401,
                ));
                return Ok(());
            }
        }
        let member = match kind {
            ChannelKind::Presence => match self.member_of(data.channel_data.as_deref()) {
                Ok(member) => Some(member),
                Err((kind, message, status)) => {
                    link.send_text(&frames::subscription_error(
                        &channel, kind, &message, status,
                    ));
                    return Ok(());
                }
            },
            _ => None,
        };
        let cache = is_cache(&channel);
        let entry = RoomEntry {
            start: if cache {
                RoomStart::Last(1)
            } else {
                RoomStart::Top
            },
            member: member.clone(),
        };
        let answer = |state: &ChannelState| {
            let data = match &state.members {
                Some(members) => frames::presence_data(members),
                None => "{}".to_owned(),
            };
            link.send_text(&frames::subscription_succeeded(&channel, &data));
        };
        let session = self.session_mut()?;
        match session.join_authorized(&channel, entry, answer).await {
            Ok(state) => {
                if cache && state.replayed == 0 {
                    link.send_text(&frames::cache_miss(&channel));
                    self.webhook(PusherEvent::CacheMiss {
                        channel: channel.clone(),
                    });
                }
                self.subscriptions.insert(
                    channel,
                    Subscription {
                        member: member.map(|m| m.user),
                    },
                );
            }
            Err(error) => {
                let (kind, status) = match &error {
                    HubError::Engine(_) => ("ServerError", 503),
                    HubError::InvalidRoom(_) => ("InvalidChannel", 400),
                    HubError::RoomFull { .. } => ("LimitReached", 403),
                    _ => ("ServerError", 500),
                };
                link.send_text(&frames::subscription_error(
                    &channel,
                    kind,
                    &error.to_string(),
                    status,
                ));
            }
        }
        Ok(())
    }

    /// The member a presence subscription joins as, from its signed `channel_data`, or
    /// why it may not join: (type, message, status) for its `subscription_error`. The
    /// room's capacity is the hub's to check, against the list the join reads anyway.
    fn member_of(
        &self,
        channel_data: Option<&str>,
    ) -> Result<MemberJoin, (&'static str, String, u16)> {
        let bad = |message: &str| ("InvalidChannelData", message.to_owned(), 400);
        let text = channel_data.ok_or_else(|| bad("a presence channel needs channel_data"))?;
        let data: ChannelData = serde_json::from_str(text)
            .map_err(|_| bad("channel_data is not {\"user_id\":…,\"user_info\":…}"))?;
        let user = data
            .user_id()
            .ok_or_else(|| bad("channel_data's user_id must be a non-empty string"))?;
        crate::hub::names::check_user(&user).map_err(|error| bad(&error.to_string()))?;
        let info = data
            .user_info
            .map_or_else(|| "null".to_owned(), |info| info.get().to_owned());
        if info.len() > self.policy.max_member_info_bytes {
            return Err((
                "LimitReached",
                format!(
                    "user_info is {} bytes; this app allows {}",
                    info.len(),
                    self.policy.max_member_info_bytes
                ),
                413,
            ));
        }
        Ok(MemberJoin {
            user: user.into(),
            info: info.into(),
            max_members: Some(self.policy.max_presence_members),
        })
    }

    async fn unsubscribe(&mut self, data: Unsubscribe) -> Result<(), Disconnect> {
        if self.subscriptions.remove(&data.channel).is_none()
            || data.channel.starts_with(USER_CHANNEL_PREFIX)
        {
            return Ok(());
        }
        if let Err(error) = self.session()?.leave(&data.channel).await {
            tracing::debug!(%error, channel = data.channel, "pusher unsubscribe failed");
        }
        Ok(())
    }

    /// `pusher:signin`: the app's signature over the user's data makes the connection
    /// that user's; a bad one closes it (4009), as Pusher does.
    async fn signin(&mut self, data: Signin, link: &Link) -> Result<(), Disconnect> {
        let refused = self.try_signin(&data).await;
        match refused {
            Ok(()) => {
                link.send_text(&frames::signin_success(&data.user_data));
                Ok(())
            }
            Err(why) => {
                Err(Disconnect::CREDENTIAL_REJECTED.with_reason(format!("sign-in refused: {why}")))
            }
        }
    }

    /// The checks and the hub's sign-in of [`Self::signin`]; why it failed.
    async fn try_signin(&mut self, data: &Signin) -> Result<(), String> {
        let unauthorized = |why: &str| why.to_owned();
        self.secret()
            .verify_user(&self.socket_id, &data.user_data, &data.auth)
            .map_err(|_| unauthorized("invalid signature"))?;
        let user: UserData = serde_json::from_str(&data.user_data)
            .map_err(|_| unauthorized("user_data is not {\"id\":…}"))?;
        let Some(id) = user.id.as_str().filter(|id| !id.is_empty()) else {
            return Err(unauthorized("user_data's id must be a non-empty string"));
        };
        let id = id.to_owned();
        self.session_mut()
            .map_err(|reason| reason.reason.to_string())?
            .sign_in(&id)
            .await
            .map_err(|error| error.to_string())
    }

    /// A `client-` event: to the channel's other subscribers, when the app allows client
    /// events and the channel is a private or presence one this connection is in.
    async fn client_event(
        &mut self,
        event: &str,
        channel: Option<&str>,
        data: Option<&RawValue>,
        link: &Link,
    ) -> Result<(), Disconnect> {
        let refuse = |code: Option<u16>, message: &str| {
            link.send_text(&frames::error(code, message));
            Ok(())
        };
        if !self.policy.client_events {
            return refuse(None, "client events are not enabled for this app");
        }
        let Some(channel) = channel else {
            return refuse(None, "a client event needs a channel");
        };
        let Some(from) = self.subscriptions.get(channel).map(|s| s.member.clone()) else {
            return refuse(
                None,
                "subscribe to the channel before sending client events on it",
            );
        };
        if !matches!(
            ChannelKind::of(channel),
            ChannelKind::Private | ChannelKind::Presence
        ) {
            return refuse(
                None,
                "client events are allowed on private and presence channels only",
            );
        }
        if event.chars().count() > MAX_EVENT_NAME_CHARS {
            return refuse(None, "the event name is longer than 200 characters");
        }
        let data = data.map_or_else(|| RawValue::NULL.to_owned(), ToOwned::to_owned);
        if data.get().len() > self.policy.max_event_bytes {
            return refuse(
                None,
                &format!(
                    "the event's data is larger than {} bytes",
                    self.policy.max_event_bytes
                ),
            );
        }
        if !self.take_client_event() {
            return refuse(
                Some(code::CLIENT_EVENT_RATE),
                &format!(
                    "client event rejected: more than {} per second",
                    self.policy.client_events_per_second
                ),
            );
        }
        let text = frames::data_text(&data).into_owned();
        let published = self
            .session()?
            .publish_to_room(channel, event.to_owned(), data, from.clone())
            .await;
        if let Err(error) = published {
            return refuse(None, &error.to_string());
        }
        self.webhook(PusherEvent::ClientEvent {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data: text,
            socket_id: self.socket_id.clone(),
            user_id: from.map(|user| user.to_string()),
        });
        Ok(())
    }

    /// Tell the app's Pusher webhooks, if it has any.
    fn webhook(&self, event: PusherEvent) {
        if let Some(hooks) = &self.app.pusher_webhooks {
            hooks.emit(event);
        }
    }

    /// Count one client event against the app's per-second budget
    /// (`client_events_per_second`, bursts included); false when over it.
    fn take_client_event(&mut self) -> bool {
        let now = Instant::now();
        let (start, count) = &mut self.client_events;
        if now.duration_since(*start).as_secs() >= 1 {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count as usize <= self.policy.client_events_per_second
    }

    fn session(&self) -> Result<&Session, Disconnect> {
        self.session.as_ref().ok_or(Disconnect::SHUTDOWN)
    }

    fn session_mut(&mut self) -> Result<&mut Session, Disconnect> {
        self.session.as_mut().ok_or(Disconnect::SHUTDOWN)
    }
}

/// The Pusher channel types, by name prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelKind {
    Public,
    /// `private-` (not encrypted).
    Private,
    /// `private-encrypted-`: signed like a private channel; the payload is end-to-end
    /// encrypted by the clients and the backend, passed through untouched.
    Encrypted,
    /// `presence-`.
    Presence,
}

impl ChannelKind {
    fn of(channel: &str) -> Self {
        if channel.starts_with("private-encrypted-") {
            Self::Encrypted
        } else if channel.starts_with("private-") {
            Self::Private
        } else if channel.starts_with("presence-") {
            Self::Presence
        } else {
            Self::Public
        }
    }
}

/// Whether `channel` is a cache channel (`cache-`, `private-cache-`,
/// `private-encrypted-cache-`, `presence-cache-`): it replays its last event on
/// subscribe, or says `pusher:cache_miss`.
fn is_cache(channel: &str) -> bool {
    [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|prefix| channel.starts_with(prefix))
}

#[async_trait]
impl ClientHandler for PusherClient {
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
        let request = ConnectRequest {
            app: self.app.clone(),
            user: None,
            groups: Vec::new(),
            grant: Grant::default(),
            outbox: link.outbox().clone(),
            renderer: self.renderer.clone(),
            since: None,
            max_replay: None,
            addr: link.peer().addr,
        };
        let activity_timeout = self.activity_timeout();
        let mut socket = String::new();
        let session = self
            .hub
            .connect(request, |info| {
                socket = socket_id(crate::node::node_id(), info.id);
                link.send_text(&frames::connection_established(&socket, activity_timeout));
            })
            .await
            .map_err(|error| Disconnect::from(&error))?;
        self.socket_id = socket;
        self.session = Some(session);
        Ok(())
    }

    async fn on_text(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
        let command = frames::read(text);
        let command = command.as_ref().map_err(|e| *e).and_then(frames::command);
        match command {
            Ok(Command::Ping) => {
                link.send_text(&frames::pong());
            }
            Ok(Command::Subscribe(subscribe)) => self.subscribe(subscribe, link).await?,
            Ok(Command::Unsubscribe(unsubscribe)) => self.unsubscribe(unsubscribe).await?,
            Ok(Command::Signin(signin)) => self.signin(signin, link).await?,
            Ok(Command::ClientEvent {
                event,
                channel,
                data,
            }) => self.client_event(event, channel, data, link).await?,
            Ok(Command::Ignored) => {}
            Err(FrameError::Signin) => {
                return Err(
                    Disconnect::CREDENTIAL_REJECTED.with_reason(FrameError::Signin.to_string())
                )
            }
            Err(error) => {
                link.send_text(&frames::error(None, &error.to_string()));
            }
        }
        Ok(())
    }

    fn liveness(&self) -> Liveness {
        crate::dialect::liveness(&self.app)
    }

    async fn on_close(&mut self, reason: &Disconnect) {
        if let Some(session) = self.session.take() {
            session.close(reason).await;
        }
    }

    fn farewell(&self, reason: &Disconnect, link: &Link) -> Farewell {
        pusher_farewell(reason, link)
    }
}

/// Closes in Pusher's words: a `pusher:error` with the code, then the close, so pusher-js
/// reconnects (or not) as Pusher's table says.
pub fn pusher_farewell(reason: &Disconnect, link: &Link) -> Farewell {
    let close = pusher_close(reason);
    let last_frame = (close.code >= 4000)
        .then(|| link.frame_text(&frames::error(Some(close.code), &close.reason)));
    Farewell { last_frame, close }
}

/// How the gateway refuses a Pusher client before its connection is established (an
/// unknown key, a disabled app, a full server): the close code alone, as protocol 6 and
/// later say it. pusher-js reads a `pusher:error` during its handshake as a quiet refusal
/// and would not tell the page why; the close code it reports as an error.
pub fn pusher_refusal(reason: &Disconnect, _link: &Link) -> Farewell {
    Farewell {
        last_frame: None,
        close: pusher_close(reason),
    }
}

/// `reason` as Pusher's close codes say it (see [`code`]).
pub fn pusher_close(reason: &Disconnect) -> Disconnect {
    let code = match reason.code {
        1000 | 1006 => return reason.clone(),
        c if c == Disconnect::SHUTDOWN.code || c == Disconnect::RESTART.code => code::RECONNECT,
        c if c == Disconnect::REPLAY_CONTINUES.code => code::RECONNECT,
        c if c == Disconnect::IDLE_TIMEOUT.code => code::PONG_NOT_RECEIVED,
        c if [
            Disconnect::KICKED.code,
            Disconnect::KICKED_FOR_GOOD.code,
            Disconnect::CREDENTIAL_REJECTED.code,
            Disconnect::ORIGIN_NOT_ALLOWED.code,
        ]
        .contains(&c) =>
        {
            code::UNAUTHORIZED
        }
        c if c == Disconnect::UNKNOWN_APP.code => code::APP_NOT_FOUND,
        c if c == Disconnect::APP_DISABLED.code => code::APP_DISABLED,
        c if c == Disconnect::APP_FULL.code => code::OVER_QUOTA,
        c if c == Disconnect::UNSUPPORTED_PROTOCOL.code => code::UNSUPPORTED_PROTOCOL,
        c if c == Disconnect::TOO_BIG.code => return reason.clone(),
        // Slow consumers, a full server or address, an engine or backend away, flooding:
        // come back later.
        _ => code::OVER_CAPACITY,
    };
    Disconnect::new(code, reason.reason.to_string())
}
