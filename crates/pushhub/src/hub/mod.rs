//! The hub: apps, users, connections, channels and fan-out.
//!
//! The hub never sees a wire format. Dialects attach connections through [`Hub::connect`]
//! with an [`Outbox`] and a [`Render`]; backends publish through [`Hub::publish`]. Channel
//! streams and presence sit behind the engine traits, so the hub runs unchanged on one node
//! or many.

pub mod app;
pub mod channel;
pub mod cursor;
pub mod message;
pub mod names;
pub mod outbox;
pub mod registry;
pub mod render;
pub mod target;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

pub use app::{AppSettings, Apps, AuthMode};
pub use cursor::Cursor;
pub use message::{Message, Publication};
pub use outbox::{DirectWrite, Outbox, OutboxLimits};
pub use registry::ConnId;
pub use render::{FormatId, Render};
pub use target::Target;

use crate::backend::events::Event;
use crate::disconnect::Disconnect;
use crate::engine::{Engine, EngineError, StreamPosition};
use crate::stats::Stats;
use outbox::Unsent;
use registry::{Registry, Subscriber};
use render::RenderCache;

/// Why the hub refused a request. Each variant is something the caller can tell its own
/// client about; none means the hub is broken.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No app of that name, and dynamic apps are off.
    #[error("unknown app {0:?}")]
    UnknownApp(String),
    /// The app name is not a valid name.
    #[error("invalid app name {0:?}: use 1-64 characters from A-Z a-z 0-9 _ - .")]
    InvalidApp(String),
    /// The user id is not valid.
    #[error("{0}")]
    InvalidUser(String),
    /// The target expression is not valid.
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// The room name is not valid.
    #[error("{0}")]
    InvalidRoom(String),
    /// The user holds as many connections as the app allows, and newcomers are refused.
    #[error("user {0:?} has as many connections as this app allows")]
    UserFull(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What a connection asks to join the hub with.
pub struct ConnectRequest {
    /// Its app.
    pub app: Arc<AppSettings>,
    /// Its user id (already authenticated by the dialect's auth step).
    pub user: String,
    /// Groups granted by its credential, beyond those its user id implies.
    pub groups: Vec<String>,
    /// Where fan-out queues its frames.
    pub outbox: Arc<Outbox>,
    /// Its wire format.
    pub renderer: Arc<dyn Render>,
    /// Where the client left off, to resume from; `None` for only new messages.
    pub since: Option<Cursor>,
    /// Most missed messages the client takes at once (a long-poll's batch); `None` for as
    /// many as fit comfortably in its send queue.
    pub max_replay: Option<usize>,
}

/// One channel of a connection and where it stood when the connection attached.
#[derive(Debug, Clone)]
pub struct ChannelState {
    /// The channel.
    pub channel: Arc<str>,
    /// Where the client stands before the replay that follows the greeting: its own
    /// position when resumed, else the top.
    pub start: StreamPosition,
    /// The channel's top position: where the client stands once the replay has arrived.
    pub position: StreamPosition,
    /// False when the client asked to resume this channel and its history could not cover
    /// the gap (or the epoch changed): the client should refetch what it shows.
    pub recovered: bool,
}

/// What the hub decided about a connection, for its greeting.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Its id on this node.
    pub id: ConnId,
    /// The app.
    pub app: Arc<AppSettings>,
    /// The user id.
    pub user: Arc<str>,
    /// Its channels, user channel first.
    pub channels: Vec<ChannelState>,
    /// True unless some channel the client asked to resume could not be.
    pub recovered: bool,
}

impl ConnInfo {
    /// Where the client stands at the greeting, before the replay: a client that keeps
    /// this and advances it with each message it receives can always resume exactly.
    pub fn start_cursor(&self) -> Cursor {
        let mut cursor = Cursor::default();
        for state in &self.channels {
            cursor.set(state.channel.clone(), state.start.clone());
        }
        cursor
    }
}

/// The result of one push.
#[derive(Debug, Clone)]
pub struct PublishReceipt {
    /// The message id.
    pub id: Arc<str>,
    /// Connections on this node it was queued to (each counted once).
    pub delivered: u64,
    /// Each target channel and the position the message got there.
    pub positions: Vec<(Arc<str>, StreamPosition)>,
}

struct HubInner {
    apps: Apps,
    engine: Engine,
    registry: Registry,
    stats: Arc<Stats>,
    next_conn: AtomicU64,
    next_message: AtomicU64,
    id_prefix: String,
}

/// Handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Hub {
    /// A hub over `apps`, running on `engine`, counting into `stats`.
    pub fn new(apps: Apps, engine: Engine, stats: Arc<Stats>) -> Self {
        Self {
            inner: Arc::new(HubInner {
                apps,
                engine,
                registry: Registry::new(),
                stats,
                next_conn: AtomicU64::new(1),
                next_message: AtomicU64::new(1),
                id_prefix: format!("{:x}", now_ms()),
            }),
        }
    }

    /// The app called `name` (creating a development app when allowed).
    pub fn app(&self, name: &str) -> Result<Arc<AppSettings>, HubError> {
        self.inner.apps.get(name)
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.inner.stats
    }

    /// Attach a connection: record presence, subscribe it to its user, `all` and group
    /// channels, read what it missed since `request.since`, call `greet` (so the greeting
    /// is queued first), queue the missed messages in order, then go live. A message
    /// published at any moment during this reaches the connection exactly once.
    pub async fn connect(
        &self,
        request: ConnectRequest,
        greet: impl FnOnce(&ConnInfo),
    ) -> Result<Session, HubError> {
        names::check_user(&request.user)?;
        if request.groups.len() > MAX_EXTRA_GROUPS {
            return Err(HubError::InvalidUser(format!(
                "a credential may grant at most {MAX_EXTRA_GROUPS} groups"
            )));
        }
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let app = request.app;
        self.inner
            .engine
            .presence
            .join(&app.name, &request.user, id)
            .await?;
        let user: Arc<str> = request.user.into();
        let mut channels = channel::channels_for(&app.name, &user);
        for group in &request.groups {
            names::check_user(group)?;
            let channel = channel::group(&app.name, group);
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        let home = Registry::home(&app.name, &user);
        let subscriber = Arc::new(Subscriber::new(id, request.outbox, request.renderer));
        let subscribed =
            self.inner
                .registry
                .subscribe_within(home, &channels, &subscriber, app.user_limit);
        let Ok(pushed_out) = subscribed else {
            self.inner
                .engine
                .presence
                .leave(&app.name, &user, id)
                .await?;
            return Err(HubError::UserFull(user.to_string()));
        };
        for old in pushed_out {
            old.outbox.close(Disconnect::REPLACED);
        }
        self.inner.stats.connection_opened();
        if let Some(events) = &app.events {
            events.emit(Event::Connect {
                user: user.clone(),
                conn: conn_name(id),
                ts: now_ms(),
            });
        }
        let session = Session {
            hub: self.clone(),
            id,
            app: app.clone(),
            user: user.clone(),
            channels: channels.clone(),
            home,
            subscriber: subscriber.clone(),
            connected: std::time::Instant::now(),
            attached: true,
        };

        let mut states = Vec::with_capacity(channels.len());
        let mut missed = Vec::with_capacity(channels.len());
        for channel in &channels {
            let since = request.since.as_ref().and_then(|c| c.get(channel));
            let recovery = self.inner.engine.broker.recover(channel, since).await?;
            missed.push(recovery.missed);
            let start = match since {
                Some(since) if recovery.complete => since.clone(),
                _ => recovery.top.clone(),
            };
            states.push(ChannelState {
                channel: channel.clone(),
                start,
                position: recovery.top,
                recovered: since.is_none() || recovery.complete,
            });
        }
        let mut missed = merge_by_time(missed);
        let cut = replay_budget(&missed, &subscriber, request.max_replay);
        let more_to_replay = cut < missed.len();
        missed.truncate(cut);
        let info = ConnInfo {
            id,
            app,
            user,
            recovered: states.iter().all(|s| s.recovered),
            channels: states,
        };
        greet(&info);
        for publication in &missed {
            subscriber.replay(publication);
        }
        self.inner.stats.replayed(missed.len() as u64);
        if more_to_replay {
            // The rest would overflow the queue: send this part, then have the client come
            // back from its new position for the next, rather than lose any of it.
            subscriber.outbox.close(Disconnect::REPLAY_CONTINUES);
        }
        subscriber.go_live(
            info.channels
                .iter()
                .map(|s| (s.channel.clone(), s.position.clone()))
                .collect(),
        );
        Ok(session)
    }

    /// Publish `data` (JSON text) with an optional `event` to every target of `app`.
    /// A connection reached through several targets receives the message once.
    pub async fn publish(
        &self,
        app: &str,
        targets: &[Target],
        event: Option<String>,
        data: Box<RawValue>,
    ) -> Result<PublishReceipt, HubError> {
        self.publish_from(app, targets, event, data, None).await
    }

    /// Deliver a message user `from` sends to user `to` of `app` (a client's `send`):
    /// published to `to`'s channel like any push, marked with its sender.
    pub async fn send(
        &self,
        app: &str,
        from: &str,
        to: &str,
        event: Option<String>,
        data: Box<RawValue>,
    ) -> Result<PublishReceipt, HubError> {
        names::check_user(to)?;
        let targets = [Target::User(to.to_owned())];
        self.publish_from(app, &targets, event, data, Some(from.into()))
            .await
    }

    async fn publish_from(
        &self,
        app: &str,
        targets: &[Target],
        event: Option<String>,
        data: Box<RawValue>,
        from: Option<Arc<str>>,
    ) -> Result<PublishReceipt, HubError> {
        let app = self.app(app)?;
        let serial = self.inner.next_message.fetch_add(1, Ordering::Relaxed);
        let message = Arc::new(Message {
            id: format!("{}-{serial}", self.inner.id_prefix).into(),
            app: app.name.clone(),
            event: event.map(String::into_boxed_str),
            from,
            data,
            ts_ms: now_ms(),
            serial,
        });
        let mut seen = (targets.len() > 1).then(HashSet::new);
        let mut delivered = 0;
        let mut positions = Vec::with_capacity(targets.len());
        for target in targets {
            let (channel, home) = match target {
                Target::All => (channel::all(&app.name), None),
                Target::Group(g) => (channel::group(&app.name, g), None),
                Target::Room(r) => (channel::room(&app.name, r), None),
                Target::User(u) => (
                    channel::user(&app.name, u),
                    Some(Registry::home(&app.name, u)),
                ),
            };
            let mut unsent = Unsent::default();
            let mut deliver = |publication: &Arc<Publication>| {
                delivered += self.deliver_local(publication, home, seen.as_mut(), &mut unsent);
            };
            let publication = self
                .inner
                .engine
                .broker
                .publish(&channel, &message, app.history, &mut deliver)
                .await?;
            write_unsent(unsent);
            positions.push((channel, publication.position.clone()));
        }
        Ok(PublishReceipt {
            id: message.id.clone(),
            delivered,
            positions,
        })
    }

    /// Queue `publication` to this node's members of its channel, each format rendered once;
    /// the outboxes that now need writing go into `unsent`, to be written after the
    /// broker's and the registry's locks are released.
    fn deliver_local(
        &self,
        publication: &Arc<Publication>,
        home: Option<u64>,
        mut seen: Option<&mut HashSet<ConnId>>,
        unsent: &mut Unsent,
    ) -> u64 {
        let mut cache = RenderCache::new(publication);
        let mut delivered = 0;
        self.inner
            .registry
            .for_each(&publication.channel, home, |sub| {
                if let Some(seen) = seen.as_deref_mut() {
                    if !seen.insert(sub.id) {
                        return;
                    }
                }
                if sub.offer(publication, &mut cache, unsent) {
                    delivered += 1;
                }
            });
        self.inner.stats.published(delivered);
        delivered
    }

    /// Online users of `app` with their connection counts. Asking about a development
    /// app nobody has used yet answers with nobody, without creating it.
    pub async fn users(&self, app: &str) -> Result<Vec<(String, usize)>, HubError> {
        match self.inner.apps.lookup(app)? {
            Some(app) => Ok(self.inner.engine.presence.users(&app.name).await?),
            None => Ok(Vec::new()),
        }
    }

    /// Close `user`'s connections to `app` on this node (only connection `conn` when given)
    /// with `reason`, through their send queues so frames already queued go out first.
    /// Returns how many were closed; a user who is not connected is not an error.
    pub fn disconnect(
        &self,
        app: &str,
        user: &str,
        conn: Option<ConnId>,
        reason: &Disconnect,
    ) -> Result<usize, HubError> {
        names::check_user(user)?;
        let Some(app) = self.inner.apps.lookup(app)? else {
            return Ok(0);
        };
        let mut chosen = Vec::new();
        self.inner.registry.for_each(
            &channel::user(&app.name, user),
            Some(Registry::home(&app.name, user)),
            |subscriber| {
                if conn.is_none_or(|id| id == subscriber.id) {
                    chosen.push(subscriber.outbox.clone());
                }
            },
        );
        for outbox in &chosen {
            outbox.close(reason.clone());
        }
        Ok(chosen.len())
    }

    /// Put every connection `user` of `app` has on this node in room `room` (server-side
    /// join); returns how many joined. The user's later connections do not join by
    /// themselves: the room is presence, not a standing grant.
    pub async fn add_to_room(&self, app: &str, user: &str, room: &str) -> Result<usize, HubError> {
        self.change_room(app, user, room, true).await
    }

    /// Take every connection `user` of `app` has on this node out of room `room`; returns
    /// how many left.
    pub async fn remove_from_room(
        &self,
        app: &str,
        user: &str,
        room: &str,
    ) -> Result<usize, HubError> {
        self.change_room(app, user, room, false).await
    }

    async fn change_room(
        &self,
        app: &str,
        user: &str,
        room: &str,
        join: bool,
    ) -> Result<usize, HubError> {
        names::check_user(user)?;
        names::check_room(room)?;
        let Some(app) = self.inner.apps.lookup(app)? else {
            return Ok(0);
        };
        let home = Registry::home(&app.name, user);
        let user_channel = channel::user(&app.name, user);
        let channel = channel::room(&app.name, room);
        let presence = &self.inner.engine.presence;
        let changed = if join {
            self.inner
                .registry
                .join_room_all(home, &user_channel, &channel)
        } else {
            self.inner
                .registry
                .leave_room_all(home, &user_channel, &channel)
        };
        let user: Arc<str> = user.into();
        for id in &changed {
            if join {
                presence.join(&channel, &user, *id).await?;
            } else {
                presence.leave(&channel, &user, *id).await?;
            }
            room_event(&app, &user, *id, room, join);
        }
        Ok(changed.len())
    }

    /// Members of room `room` of `app` with their connection counts in it, sorted by user.
    pub async fn room_members(
        &self,
        app: &str,
        room: &str,
    ) -> Result<Vec<(String, usize)>, HubError> {
        names::check_room(room)?;
        match self.inner.apps.lookup(app)? {
            Some(app) => Ok(self
                .inner
                .engine
                .presence
                .users(&channel::room(&app.name, room))
                .await?),
            None => Ok(Vec::new()),
        }
    }

    /// What the broker holds (streams, history), for `/v1/stats`.
    pub fn broker_stats(&self) -> crate::engine::BrokerStats {
        self.inner.engine.broker.stats()
    }

    /// Which engines the hub runs on, for logs.
    pub fn engine_kinds(&self) -> (&'static str, &'static str) {
        (
            self.inner.engine.broker.kind(),
            self.inner.engine.presence.kind(),
        )
    }
}

/// Connections one task writes to before the rest of a fan-out is handed to other tasks:
/// about a millisecond or two of socket writes, so a broadcast to thousands is written by
/// every worker thread at once while a small one stays on the publishing task.
const WRITES_PER_TASK: usize = 512;

/// Write a fan-out's queued frames (see [`Unsent`]): the first [`WRITES_PER_TASK`]
/// connections here, the rest in tasks of that many each, which idle worker threads take
/// over. Those tasks only ever make non-blocking writes, so each ends within milliseconds
/// and needs no shutdown signal.
fn write_unsent(mut unsent: Unsent) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        while unsent.len() > WRITES_PER_TASK {
            let share = unsent.split_last(WRITES_PER_TASK);
            runtime.spawn(async move { share.write() });
        }
    }
    unsent.write();
}

/// How many of `missed` (in order) to replay now: at most half of the subscriber's queue
/// by count and by bytes (so live messages still fit behind them), and at most `max`.
fn replay_budget(
    missed: &[Arc<Publication>],
    subscriber: &Subscriber,
    max: Option<usize>,
) -> usize {
    let limits = subscriber.outbox.limits();
    let count = (limits.max_messages / 2)
        .max(1)
        .min(max.unwrap_or(usize::MAX));
    let mut bytes = 0;
    for (taken, publication) in missed.iter().enumerate() {
        bytes += publication.rendered(subscriber.renderer.as_ref()).len();
        if taken >= count || (taken > 0 && bytes > limits.max_bytes / 2) {
            return taken;
        }
    }
    missed.len()
}

/// Merge per-channel replays into one sequence in publish-time order, keeping each
/// channel's own offset order (a later offset never goes first, even if its message was
/// stamped earlier), and sending a message reached through several channels once.
fn merge_by_time(lists: Vec<Vec<Arc<Publication>>>) -> Vec<Arc<Publication>> {
    let total = lists.iter().map(Vec::len).sum();
    let mut merged = Vec::with_capacity(total);
    let mut next = vec![0; lists.len()];
    let mut sent = HashSet::new();
    loop {
        let earliest = (0..lists.len())
            .filter(|&i| next[i] < lists[i].len())
            .min_by_key(|&i| {
                let message = &lists[i][next[i]].message;
                (message.ts_ms, message.serial)
            });
        let Some(i) = earliest else { break };
        let publication = lists[i][next[i]].clone();
        next[i] += 1;
        if sent.insert(publication.message.id.clone()) {
            merged.push(publication);
        }
    }
    merged
}

/// A connection attached to the hub. Call [`Session::close`] when it ends; dropping it
/// without that still unsubscribes it, and finishes presence in the background.
pub struct Session {
    hub: Hub,
    id: ConnId,
    app: Arc<AppSettings>,
    user: Arc<str>,
    channels: Vec<Arc<str>>,
    home: u64,
    subscriber: Arc<Subscriber>,
    connected: std::time::Instant,
    attached: bool,
}

impl Session {
    /// The app this connection belongs to.
    pub fn app(&self) -> &Arc<AppSettings> {
        &self.app
    }

    /// The user this connection belongs to.
    pub fn user(&self) -> &Arc<str> {
        &self.user
    }

    /// The connection's id on this node.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The connection's name, as a `welcome` and the API show it.
    pub fn conn(&self) -> String {
        conn_name(self.id)
    }

    /// Join room `room`, answering where its stream stands. Whether the user may is the
    /// caller's decision (the app's room policy); joining twice is harmless.
    pub async fn join_room(&self, room: &str) -> Result<ChannelState, HubError> {
        names::check_room(room)?;
        let channel = channel::room(&self.app.name, room);
        let inner = &self.hub.inner;
        if inner
            .registry
            .join_room(self.home, &channel, &self.subscriber)
        {
            inner
                .engine
                .presence
                .join(&channel, &self.user, self.id)
                .await?;
            room_event(&self.app, &self.user, self.id, room, true);
        }
        let top = inner.engine.broker.recover(&channel, None).await?.top;
        Ok(ChannelState {
            channel,
            start: top.clone(),
            position: top,
            recovered: true,
        })
    }

    /// Leave room `room`. False when the connection was not in it.
    pub async fn leave_room(&self, room: &str) -> Result<bool, HubError> {
        names::check_room(room)?;
        let channel = channel::room(&self.app.name, room);
        let inner = &self.hub.inner;
        if !inner
            .registry
            .leave_room(self.home, &channel, &self.subscriber)
        {
            return Ok(false);
        }
        inner
            .engine
            .presence
            .leave(&channel, &self.user, self.id)
            .await?;
        room_event(&self.app, &self.user, self.id, room, false);
        Ok(true)
    }

    /// Leave every channel locally and tell the app's lifecycle webhook why; the scopes
    /// (app, rooms) whose presence must be left follow, or `None` when this already
    /// happened.
    fn detach_local(&mut self, reason: &Disconnect) -> Option<Vec<Arc<str>>> {
        if !std::mem::take(&mut self.attached) {
            return None;
        }
        let inner = &self.hub.inner;
        let rooms = inner
            .registry
            .unsubscribe(self.home, &self.channels, &self.subscriber);
        inner.stats.connection_closed();
        if let Some(events) = &self.app.events {
            let prefix = channel::room(&self.app.name, "");
            events.emit(Event::Disconnect {
                user: self.user.clone(),
                conn: conn_name(self.id),
                ts: now_ms(),
                code: reason.code,
                reason: reason.reason.to_string(),
                duration_ms: self.connected.elapsed().as_millis() as u64,
                rooms: rooms
                    .iter()
                    .filter_map(|r| r.strip_prefix(&*prefix).map(str::to_owned))
                    .collect(),
            });
        }
        let mut scopes = vec![self.app.name.clone()];
        scopes.extend(rooms);
        Some(scopes)
    }

    /// Leave every channel, room and presence; the connection ended for `reason`.
    pub async fn close(mut self, reason: &Disconnect) {
        if let Some(scopes) = self.detach_local(reason) {
            leave_presence(&self.hub, &scopes, &self.user, self.id).await;
        }
    }
}

/// Most groups a credential (a token's `groups`, an auth webhook's answer) may grant
/// beyond those of the user id: each is a channel the connection's cursor names.
pub const MAX_EXTRA_GROUPS: usize = 16;

/// The name of connection `id`, as clients and backends see it.
pub fn conn_name(id: ConnId) -> String {
    format!("{id:x}")
}

/// Tell `app`'s lifecycle webhook, if it has one, that connection `id` of `user` joined
/// or left `room`.
fn room_event(app: &AppSettings, user: &Arc<str>, id: ConnId, room: &str, joined: bool) {
    let Some(events) = &app.events else { return };
    let (user, conn, ts, room) = (user.clone(), conn_name(id), now_ms(), room.to_owned());
    events.emit(if joined {
        Event::Join {
            user,
            conn,
            ts,
            room,
        }
    } else {
        Event::Leave {
            user,
            conn,
            ts,
            room,
        }
    });
}

/// Leave presence in each of `scopes` (the app, then its rooms) for connection `id`.
async fn leave_presence(hub: &Hub, scopes: &[Arc<str>], user: &str, id: ConnId) {
    for scope in scopes {
        if let Err(error) = hub.inner.engine.presence.leave(scope, user, id).await {
            tracing::warn!(%error, conn = id, scope = &**scope, "presence leave failed");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(scopes) = self.detach_local(&Disconnect::ABNORMAL) {
            let hub = self.hub.clone();
            let (user, id) = (self.user.clone(), self.id);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    leave_presence(&hub, &scopes, &user, id).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StreamPosition;

    fn publication(channel: &str, offset: u64, ts_ms: u64, id: &str) -> Arc<Publication> {
        Arc::new(Publication::new(
            channel.into(),
            StreamPosition {
                epoch: "e".into(),
                offset,
            },
            Arc::new(Message {
                id: id.into(),
                ts_ms,
                ..Message::for_test("x")
            }),
        ))
    }

    #[test]
    fn replay_merges_by_time_but_never_reorders_a_channel() {
        let a = vec![publication("a", 5, 20, "a5"), publication("a", 6, 10, "a6")];
        let b = vec![
            publication("b", 1, 15, "b1"),
            publication("b", 2, 30, "shared"),
        ];
        let c = vec![publication("c", 9, 25, "shared")];
        let order: Vec<String> = merge_by_time(vec![a, b, c])
            .iter()
            .map(|p| format!("{}{}", p.channel, p.position.offset))
            .collect();
        assert_eq!(order, ["b1", "a5", "a6", "c9"]);
    }
}
