//! The hub: apps, users, connections, channels and fan-out.
//!
//! The hub never sees a wire format. Dialects attach connections through [`Hub::connect`]
//! with an [`Outbox`] and a [`Render`]; backends publish through [`Hub::publish`]. Channel
//! streams and presence sit behind the engine traits, so the hub runs unchanged on one node
//! or many: a publish goes to the broker, and every publication comes back (this node's
//! own included) through the one events handler the hub registered at start, which
//! delivers it to this node's connections.

pub mod app;
mod batch;
pub mod channel;
mod conns;
pub mod cursor;
mod inspect;
mod interest;
mod listed_members;
pub mod login;
pub mod names;
mod nodes;
pub mod outbox;
mod policy;
pub mod room_watch;
mod session;
#[cfg(test)]
mod session_tests;
use session::room_event;
pub mod registry;
pub mod render;
pub mod rooms_info;
pub mod target;

use arc_swap::ArcSwap;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio_util::task::TaskTracker;

pub use app::{AppPolicy, AppSettings, Apps, AuthMode, InvalidFrames};
pub use batch::PushSpec;
pub use cursor::Cursor;
pub use inspect::ChannelHistory;
pub use outbox::{DirectWrite, Outbox, OutboxLimits};
pub use policy::{Grant, RefreshError, RoomError, SendError};
pub use registry::{ConnDetail, ConnId, ConnSnapshot};
pub use render::{FormatId, Render};
pub use session::{MemberJoin, RoomEntry, RoomStart, Session};
pub use target::Target;

pub use crate::engine::{Message, Publication};

use crate::backend::events::Event;
use crate::close_notes::{CloseNotesChange, CloseNotesError};
use crate::disconnect::Disconnect;
use crate::engine::{
    BrokerEvents, Engine, EngineError, HistoryRequest, MemberChange, NodeCommand, StreamPosition,
};
use crate::stats::Stats;
use conns::{Addressed, LocalConns};
use interest::Interest;
use outbox::Unsent;
use registry::{Registry, Subscriber};
use render::{RenderCache, RenderStore};

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
    /// The room holds as many members as its join allows ([`MemberJoin::max_members`]).
    #[error("room {room:?} has {max} members, as many as this app allows")]
    RoomFull {
        /// The room.
        room: String,
        /// Its limit.
        max: usize,
    },
    /// The text is not a connection id as a `welcome` shows it.
    #[error("conn {0:?} is not a connection id from a welcome frame")]
    InvalidConn(String),
    /// The idempotency key is not one.
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    /// A push with the same idempotency key is still being published (the first try):
    /// retry later for its answer.
    #[error("a push with idempotency key {0:?} is still being published; retry for its answer")]
    IdempotencyBusy(String),
    /// No node holds an open connection of that id in the app: it closed, or never was.
    #[error("connection {0:?} is not open in this app (it closed, or never existed)")]
    UnknownConn(String),
    /// The connection refused a change to its close notes.
    #[error(transparent)]
    CloseNotes(#[from] CloseNotesError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What a connection asks to join the hub with.
pub struct ConnectRequest {
    /// Its app.
    pub app: Arc<AppSettings>,
    /// Its user id (already authenticated by the dialect's auth step); `None` for a
    /// connection that is nobody yet (a Pusher client before `pusher:signin`): it joins
    /// no channel at connect, and may take a user later ([`Session::sign_in`]).
    pub user: Option<String>,
    /// Groups granted by its credential, beyond those its user id implies.
    pub groups: Vec<String>,
    /// What else its credential grants, for the app's rules on its later requests.
    pub grant: Grant,
    /// Where fan-out queues its frames.
    pub outbox: Arc<Outbox>,
    /// Its wire format.
    pub renderer: Arc<dyn Render>,
    /// Where the client left off, to resume from; `None` for only new messages.
    pub since: Option<Cursor>,
    /// Most missed messages the client takes at once (a long-poll's batch); `None` for as
    /// many as fit comfortably in its send queue.
    pub max_replay: Option<usize>,
    /// The client's address, for operators (its transport and dialect are its renderer's).
    pub addr: Option<std::net::SocketAddr>,
}

/// One channel of a connection and where it stood when the connection attached (or, for
/// a room, joined it).
#[derive(Debug, Clone)]
pub struct ChannelState {
    /// The channel.
    pub channel: Arc<str>,
    /// Where the client stands before the replay that follows the greeting (or the join's
    /// answer): its own position when resumed, else the top.
    pub start: StreamPosition,
    /// The channel's top position: where the client stands once the replay has arrived.
    pub position: StreamPosition,
    /// False when the client asked to resume this channel and its history could not cover
    /// the gap (or the epoch changed): the client should refetch what it shows.
    pub recovered: bool,
    /// How many kept messages are replayed to the client right after this answer (a
    /// cache channel's last message, what a resuming client missed).
    pub replayed: usize,
    /// For a room joined as a presence member: its members, this one included.
    pub members: Option<Vec<crate::engine::Member>>,
}

/// What the hub decided about a connection, for its greeting.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Its id on this node (its name, unique across nodes, is [`conn_name`] of it).
    pub id: ConnId,
    /// The app.
    pub app: Arc<AppSettings>,
    /// The user id; `None` for a connection without a user.
    pub user: Option<Arc<str>>,
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
    /// Connections it reached. On one node (presence that does not span nodes): those
    /// it was queued to while the publish ran, each counted once. Across nodes, where
    /// other nodes deliver on their own time: the targets' online connections as presence
    /// counts them when the publish is accepted (see `nodes::reach`).
    pub delivered: u64,
    /// Each target channel and the position the message got there.
    pub positions: Vec<(Arc<str>, StreamPosition)>,
}

struct HubInner {
    /// Swapped whole by a reload; read once per connect or API call, never per delivery.
    apps: ArcSwap<Apps>,
    engine: Engine,
    registry: Registry,
    conns: LocalConns,
    interest: Interest,
    renders: RenderStore,
    stats: Arc<Stats>,
    next_conn: AtomicU64,
    next_message: AtomicU64,
    /// Cleanups of sessions dropped without [`Session::close`] (presence, broker
    /// subscriptions): tracked, so shutdown waits for them ([`Hub::settle`]).
    cleanups: TaskTracker,
}

/// Connections reached on this node, per message (its `seq`) and channel.
type Reached = HashMap<(u64, Arc<str>), u64>;

/// What one publish call did on this node, gathered while the broker hands its
/// publications to [`HubEvents`] inside the call (the memory engine does; an engine
/// delivering from its own task finds no scope and writes at once).
#[derive(Default)]
struct PublishScope {
    delivered: Cell<u64>,
    /// For a batch: connections reached per message (its `seq`) and channel, so each
    /// push of the batch, and each target of a broadcast, gets its own count.
    per_publication: RefCell<Option<Reached>>,
    unsent: RefCell<Unsent>,
}

impl Drop for PublishScope {
    /// The queued frames are written when the publish call ends, after the broker's
    /// locks are released, and also when its caller stops waiting halfway: an outbox
    /// left unwritten would stall its connection.
    fn drop(&mut self) {
        write_unsent(self.unsent.take());
    }
}

tokio::task_local! {
    static PUBLISHING: PublishScope;
}

/// The hub's side of the engine seam: the one handler every publication reaches the hub
/// through. Holds the hub weakly, since the hub holds the broker that holds this.
struct HubEvents {
    hub: Weak<HubInner>,
}

impl BrokerEvents for HubEvents {
    fn publication(&self, publication: &Arc<Publication>) {
        let Some(inner) = self.hub.upgrade() else {
            return;
        };
        let home =
            channel::user_of(&publication.channel).map(|(app, user)| Registry::home(app, user));
        let in_scope = PUBLISHING.try_with(|scope| {
            let delivered = inner.deliver_local(publication, home, &mut scope.unsent.borrow_mut());
            scope.delivered.set(scope.delivered.get() + delivered);
            if let Some(counts) = scope.per_publication.borrow_mut().as_mut() {
                let key = (publication.message.seq, publication.channel.clone());
                *counts.entry(key).or_default() += delivered;
            }
        });
        if in_scope.is_err() {
            let mut unsent = Unsent::default();
            inner.deliver_local(publication, home, &mut unsent);
            write_unsent(unsent);
        }
    }
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
    /// A hub over `apps`, running on `engine`, counting into `stats`; registers itself as
    /// the engine's events handler.
    pub fn new(apps: Apps, engine: Engine, stats: Arc<Stats>) -> Self {
        let inner = Arc::new(HubInner {
            apps: ArcSwap::from_pointee(apps),
            engine,
            registry: Registry::new(),
            conns: LocalConns::new(),
            interest: Interest::new(),
            renders: RenderStore::new(),
            stats,
            next_conn: AtomicU64::new(1),
            next_message: AtomicU64::new(1),
            cleanups: TaskTracker::new(),
        });
        let events = HubEvents {
            hub: Arc::downgrade(&inner),
        };
        inner.engine.broker.register_events(Arc::new(events));
        inner
            .engine
            .nodes
            .register_events(Arc::new(nodes::HubNodes::new(Arc::downgrade(&inner))));
        inner
            .engine
            .presence
            .register_events(Arc::new(nodes::HubPresence::new(Arc::downgrade(&inner))));
        Self { inner }
    }

    /// Wait for the cleanups of dropped sessions to finish; call at shutdown, once no
    /// more connections end.
    pub async fn settle(&self) {
        self.inner.cleanups.close();
        self.inner.cleanups.wait().await;
    }

    /// True when `user` of `app` holds a connection, asked of presence (so an engine
    /// across nodes answers for every node, not only this one).
    pub async fn online(&self, app: &str, user: &str) -> Result<bool, HubError> {
        match self.inner.apps.load_full().lookup(app)? {
            Some(app) => Ok(self
                .inner
                .engine
                .presence
                .connections(&app.name, user)
                .await?
                > 0),
            None => Ok(false),
        }
    }

    /// The app called `name` (creating a development app when allowed).
    pub fn app(&self, name: &str) -> Result<Arc<AppSettings>, HubError> {
        self.inner.apps.load().get(name)
    }

    /// Serve `apps` from now on (a reload): new connections and API calls see them at
    /// once; a connection already attached keeps the settings it was admitted with.
    pub fn replace_apps(&self, apps: Apps) {
        self.inner.apps.store(Arc::new(apps));
    }

    /// Close every connection of `app` attached to this node with `reason` (its app was
    /// removed from the configuration); returns how many.
    pub fn close_app(&self, app: &str, reason: &Disconnect) -> usize {
        let mut chosen = Vec::new();
        self.inner
            .registry
            .for_each(&channel::all(app), None, |subscriber| {
                chosen.push(subscriber.outbox.clone());
            });
        for outbox in &chosen {
            outbox.close(reason.clone());
        }
        chosen.len()
    }

    /// Every app there is now, by name.
    pub fn apps(&self) -> Vec<Arc<AppSettings>> {
        self.inner.apps.load().all()
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
        if let Some(user) = &request.user {
            names::check_user(user)?;
        } else if !request.groups.is_empty() {
            return Err(HubError::InvalidUser(
                "a connection without a user is in no group".into(),
            ));
        }
        if request.groups.len() > MAX_EXTRA_GROUPS {
            return Err(HubError::InvalidUser(format!(
                "a credential may grant at most {MAX_EXTRA_GROUPS} groups"
            )));
        }
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let (transport, dialect) = request.renderer.kind();
        let detail = ConnDetail {
            transport,
            dialect,
            addr: request.addr,
        };
        let resuming = request.since.is_some();
        let app = request.app;
        let since_ms = now_ms();
        let presence = &self.inner.engine.presence;
        let user: Option<Arc<str>> = request.user.map(Arc::from);
        let mut elsewhere = Vec::new();
        if let Some(user) = &user {
            presence.join(&app.name, user, id, since_ms).await?;
            if app.user_limit.is_some() {
                match presence.elsewhere(&app.name, user).await {
                    Ok(conns) => elsewhere = nodes::older_than(conns, id, since_ms),
                    Err(error) => {
                        presence.leave(&app.name, user, id).await?;
                        return Err(error.into());
                    }
                }
            }
        }
        let mut channels = match &user {
            Some(user) => channel::channels_for(&app.name, user),
            None => Vec::new(),
        };
        for group in &request.groups {
            names::check_user(group)?;
            let channel = channel::group(&app.name, group);
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        // A connection without a user is sharded by its own name: its rooms live there.
        let home = match &user {
            Some(user) => Registry::home(&app.name, user),
            None => Registry::home(&app.name, &conn_name(id)),
        };
        let subscriber = Arc::new(
            Subscriber::new(id, request.outbox, request.renderer)
                .connected_at(since_ms)
                .described(detail)
                .homed_by_user(user.is_some()),
        );
        let subscribed = self.inner.registry.subscribe_within(
            home,
            &channels,
            &subscriber,
            app.user_limit.filter(|_| user.is_some()),
            &elsewhere,
        );
        let Ok(pushed_out) = subscribed else {
            // Only a connection with a user is held to a limit.
            let user = user.unwrap_or_default();
            presence.leave(&app.name, &user, id).await?;
            return Err(HubError::UserFull(user.to_string()));
        };
        self.inner
            .conns
            .insert(app.name.clone(), subscriber.clone());
        for old in pushed_out.here {
            old.outbox.close(Disconnect::REPLACED);
        }
        for name in pushed_out.elsewhere {
            let user = user.as_deref().unwrap_or_default();
            self.inner
                .tell_nodes(nodes::kick(
                    &app.name,
                    user,
                    Some(name),
                    &Disconnect::REPLACED,
                ))
                .await;
        }
        self.inner.stats.connection_opened();
        let gauge = crate::metrics::global().connection_gauge(crate::metrics::ConnLabels {
            app: self.inner.apps.load().metric_label(&app.name),
            transport,
            dialect,
        });
        gauge.inc();
        if let (Some(events), Some(user)) = (&app.events, &user) {
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
            signed_in: None,
            room_presence: Default::default(),
            announcing: Default::default(),
            subscriber: subscriber.clone(),
            connected: std::time::Instant::now(),
            attached: true,
            gauge,
            grant: request.grant,
        };
        // Subscribed before the history is read: whatever is published from here on is
        // either in the history read below or handed over live (held until go_live).
        self.inner.take_interest(&channels).await?;

        let limit = replay_limit(&subscriber, request.max_replay);
        let requests: Vec<HistoryRequest> = channels
            .iter()
            .map(|channel| HistoryRequest {
                channel: channel.clone(),
                since: request.since.as_ref().and_then(|c| c.get(channel)).cloned(),
                limit: Some(limit),
            })
            .collect();
        let recoveries = self.inner.engine.broker.history(&requests).await?;
        let mut states = Vec::with_capacity(channels.len());
        let mut missed = Vec::with_capacity(channels.len());
        let mut more_to_replay = false;
        for (request, recovery) in requests.into_iter().zip(recoveries) {
            more_to_replay |= recovery
                .missed
                .last()
                .is_some_and(|last| last.position.offset < recovery.top.offset);
            let replayed = recovery.missed.len();
            missed.push(recovery.missed);
            let recovered = request.since.is_none() || recovery.complete;
            let start = match request.since {
                Some(since) if recovery.complete => since,
                _ => recovery.top.clone(),
            };
            states.push(ChannelState {
                channel: request.channel,
                start,
                position: recovery.top,
                recovered,
                replayed,
                members: None,
            });
        }
        let mut missed = merge_by_time(missed);
        let encoded = self.replay_bytes(&missed, &subscriber, limit);
        more_to_replay |= encoded.len() < missed.len();
        missed.truncate(encoded.len());
        let info = ConnInfo {
            id,
            app,
            user,
            recovered: states.iter().all(|s| s.recovered),
            channels: states,
        };
        greet(&info);
        if resuming {
            self.inner.stats.resumed(info.recovered);
        }
        for (publication, bytes) in missed.iter().zip(encoded) {
            subscriber.replay(publication, bytes);
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
            &self.inner.renders,
        );
        Ok(session)
    }

    /// The encodings of the first of `missed` (in order) to replay now: at most `count`,
    /// and at most half of the subscriber's queue by bytes (so live messages still fit
    /// behind them).
    fn replay_bytes(
        &self,
        missed: &[Arc<Publication>],
        subscriber: &Subscriber,
        count: usize,
    ) -> Vec<Bytes> {
        let max_bytes = subscriber.outbox.limits().max_bytes / 2;
        let mut encoded = Vec::with_capacity(missed.len().min(count));
        let mut bytes = 0;
        for publication in missed.iter().take(count) {
            let frame = self
                .inner
                .renders
                .get(publication, subscriber.renderer.as_ref());
            bytes += frame.len();
            if !encoded.is_empty() && bytes > max_bytes {
                break;
            }
            encoded.push(frame);
        }
        encoded
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
        self.publish_from(app, targets, event, data, Origin::default())
            .await
    }

    /// [`Hub::publish`], except to connection `exclude` (its name, as a `welcome` or
    /// Pusher's `socket_id` shows it): the client whose action the backend is echoing to
    /// everyone else (Pusher's `socket_id` on a trigger). It is skipped on whichever node
    /// holds it; a name of no open connection excludes nobody.
    pub async fn publish_excluding(
        &self,
        app: &str,
        targets: &[Target],
        event: Option<String>,
        data: Box<RawValue>,
        exclude: Option<&str>,
    ) -> Result<PublishReceipt, HubError> {
        let origin = Origin {
            from: None,
            exclude: exclude.map(excluded_conn).transpose()?,
        };
        self.publish_from(app, targets, event, data, origin).await
    }

    /// Deliver a message user `from` sends to user `to` of `app` (a client's `send`):
    /// published to `to`'s channel like any push, marked with its sender. Clients reach it
    /// through [`Session::send`], which asks the app's send policy first.
    async fn send(
        &self,
        app: &str,
        from: &str,
        to: &str,
        event: Option<String>,
        data: Box<RawValue>,
    ) -> Result<PublishReceipt, HubError> {
        names::check_user(to)?;
        let targets = [Target::User(to.to_owned())];
        let origin = Origin {
            from: Some(from.into()),
            exclude: None,
        };
        self.publish_from(app, &targets, event, data, origin).await
    }

    /// Push `data` with an optional `event` to the one connection named `conn` (as its
    /// `welcome` showed it) of `app`, on whichever node holds it: seed 002's
    /// `$serv->push($fd, …)`. A connection is not a channel: the push is live-only (no
    /// history, nothing to resume; its position is the empty one) and the connection's own
    /// dialect renders it. Refused with [`HubError::UnknownConn`] when no node holds that
    /// connection open in `app`.
    pub async fn push_to_conn(
        &self,
        app: &str,
        conn: &str,
        event: Option<String>,
        data: Box<RawValue>,
    ) -> Result<PublishReceipt, HubError> {
        let app = self.app(app)?;
        let here = parse_conn_name(conn).map_err(|_| HubError::InvalidConn(conn.to_owned()))?;
        let message = self
            .inner
            .new_message(&app.name, event, data, Origin::default(), false);
        let delivered = match here {
            Some(id) => self.inner.push_local(&app.name, conn, id, message.clone()),
            None => {
                let presence = &self.inner.engine.presence;
                if presence.online_elsewhere(&app.name, conn).await? {
                    let command = crate::engine::NodeCommand::push(&app.name, conn, &message)?;
                    self.inner.engine.nodes.send(&command).await?;
                    true
                } else {
                    false
                }
            }
        };
        if !delivered {
            return Err(HubError::UnknownConn(conn.to_owned()));
        }
        Ok(PublishReceipt {
            id: message.id.clone(),
            delivered: 1,
            positions: Vec::new(),
        })
    }

    /// Change the close notes of connection `conn` of `app` (MSwoole's `fdAddCloseKey`,
    /// `fdAddController` and their removals), on whichever node holds it: its
    /// `disconnect` event names what it holds when it ends. A change that would overfill
    /// the notes is refused whole: here with [`HubError::CloseNotes`], on another node
    /// (which answers nothing back) with a warning in that node's log.
    pub async fn change_close_notes(
        &self,
        app: &str,
        conn: &str,
        change: &CloseNotesChange,
    ) -> Result<(), HubError> {
        change.check()?;
        let here = parse_conn_name(conn).map_err(|_| HubError::InvalidConn(conn.to_owned()))?;
        // Not `lookup`: a development app another node created is not known here yet.
        let app = self.app(app)?;
        match here {
            Some(id) => match self.inner.conns.change_notes(&app.name, id, change) {
                Addressed::Done => Ok(()),
                Addressed::Gone => Err(HubError::UnknownConn(conn.to_owned())),
                Addressed::Refused(error) => Err(error.into()),
            },
            None => {
                if !self
                    .inner
                    .engine
                    .presence
                    .online_elsewhere(&app.name, conn)
                    .await?
                {
                    return Err(HubError::UnknownConn(conn.to_owned()));
                }
                let command = crate::engine::NodeCommand::CloseNotes {
                    app: app.name.to_string(),
                    conn: conn.to_owned(),
                    change: change.clone(),
                };
                Ok(self.inner.engine.nodes.send(&command).await?)
            }
        }
    }

    /// Publish a client's message to room `room` of `app`, from user `from`: every
    /// member gets it. Clients reach it through [`Session::send_to_room`], which asks the
    /// app's `room_send` policy first.
    async fn send_to_room(
        &self,
        app: &str,
        origin: Origin,
        room: &str,
        event: Option<String>,
        data: Box<RawValue>,
    ) -> Result<PublishReceipt, HubError> {
        names::check_room(room)?;
        let targets = [Target::Room(room.to_owned())];
        self.publish_from(app, &targets, event, data, origin).await
    }

    async fn publish_from(
        &self,
        app: &str,
        targets: &[Target],
        event: Option<String>,
        data: Box<RawValue>,
        origin: Origin,
    ) -> Result<PublishReceipt, HubError> {
        let app = self.app(app)?;
        let channels = channels_of(&app.name, targets);
        let message = self
            .inner
            .new_message(&app.name, event, data, origin, channels.len() > 1);
        let broker = &self.inner.engine.broker;
        let (published, delivered) = PUBLISHING
            .scope(PublishScope::default(), async {
                let published = broker.publish(&channels, &message, app.history).await;
                (published, PUBLISHING.with(|s| s.delivered.get()))
            })
            .await;
        let positions = published?;
        self.inner.stats.accepted(positions.len() as u64);
        let delivered = self.reached(&app.name, targets, delivered, None).await;
        Ok(PublishReceipt {
            id: message.id.clone(),
            delivered,
            positions: channels.into_iter().zip(positions).collect(),
        })
    }

    /// How many connections a push to `targets` of `app` reached: `here`, what this
    /// node's deliveries counted, on one node; across nodes, what presence counts (or
    /// `here`, with a warning, when presence cannot answer).
    /// `users`: the users' counts when the caller read them for many pushes at once
    /// ([`Hub::user_counts`]); without, they are read here.
    async fn reached(
        &self,
        app: &str,
        targets: &[Target],
        here: u64,
        users: Option<&nodes::UserCounts>,
    ) -> u64 {
        let presence = self.inner.engine.presence.as_ref();
        if !presence.spans_nodes() {
            return here;
        }
        let counted = async {
            let read;
            let users = match users {
                Some(users) => users,
                None => {
                    read = nodes::user_counts(presence, app, targets).await?;
                    &read
                }
            };
            nodes::reach(presence, app, targets, users).await
        };
        counted.await.unwrap_or_else(|error| {
            tracing::warn!(%error, "presence cannot count a push's recipients");
            here
        })
    }

    /// The connections of every user `targets` name, in one presence read, for the
    /// answers of many pushes: `None` when presence does not span nodes (each node counts
    /// its own deliveries) or cannot answer (each push then asks for itself).
    async fn user_counts<'a>(
        &self,
        app: &str,
        targets: impl IntoIterator<Item = &'a Target>,
    ) -> Option<nodes::UserCounts> {
        let presence = self.inner.engine.presence.as_ref();
        if !presence.spans_nodes() {
            return None;
        }
        nodes::user_counts(presence, app, targets)
            .await
            .inspect_err(|error| {
                tracing::warn!(%error, "presence cannot count a batch's recipients");
            })
            .ok()
    }

    /// Online users of `app` with their connection counts. Asking about a development
    /// app nobody has used yet answers with nobody, without creating it.
    pub async fn users(&self, app: &str) -> Result<Vec<(String, usize)>, HubError> {
        match self.inner.apps.load_full().lookup(app)? {
            Some(app) => Ok(self.inner.engine.presence.users(&app.name).await?),
            None => Ok(Vec::new()),
        }
    }

    /// `user`'s connections to `app` on this node, oldest first, as an operator sees them
    /// (how they came, since when, their send queues). Other nodes' connections are not
    /// here: presence counts them, but their detail stays on their node.
    pub fn user_conns(&self, app: &str, user: &str) -> Vec<ConnSnapshot> {
        let mut conns = Vec::new();
        self.inner.registry.for_each(
            &channel::user(app, user),
            Some(Registry::home(app, user)),
            |subscriber| conns.push(subscriber.snapshot()),
        );
        conns.sort_by_key(|conn| conn.id);
        conns
    }

    /// Close `user`'s connections to `app` on every node (only the one named `conn`, as a
    /// `welcome` showed it, when given) with `reason`, through their send queues so frames
    /// already queued go out first. Returns how many were closed here plus how many other
    /// nodes were told to close (as presence knows them); a user who is not connected is
    /// not an error.
    pub async fn disconnect(
        &self,
        app: &str,
        user: &str,
        conn: Option<&str>,
        reason: &Disconnect,
    ) -> Result<usize, HubError> {
        names::check_user(user)?;
        let Some(app) = self.inner.apps.load_full().lookup(app)? else {
            return Ok(0);
        };
        let here = match conn.map(parse_conn_name) {
            None => self.inner.disconnect_local(&app.name, user, None, reason),
            Some(Ok(Some(id))) => {
                return Ok(self
                    .inner
                    .disconnect_local(&app.name, user, Some(id), reason));
            }
            Some(Ok(None) | Err(_)) => 0,
        };
        let elsewhere = self
            .inner
            .engine
            .presence
            .elsewhere(&app.name, user)
            .await?
            .into_iter()
            .filter(|remote| conn.is_none_or(|name| name == remote.name))
            .count();
        if elsewhere > 0 {
            let command = nodes::kick(&app.name, user, conn.map(str::to_owned), reason);
            self.inner.engine.nodes.send(&command).await?;
        }
        Ok(here + elsewhere)
    }

    /// Put every connection `user` of `app` has, on every node, in room `room`
    /// (server-side join); returns how many joined here plus how many the user holds on
    /// other nodes (told to join). The user's later connections do not join by
    /// themselves: the room is presence, not a standing grant.
    pub async fn add_to_room(&self, app: &str, user: &str, room: &str) -> Result<usize, HubError> {
        self.change_room(app, user, room, true).await
    }

    /// Take every connection `user` of `app` has, on every node, out of room `room`;
    /// returns how many left here plus how many the user holds on other nodes.
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
        let Some(app) = self.inner.apps.load_full().lookup(app)? else {
            return Ok(0);
        };
        let here = self.inner.change_room_local(&app, user, room, join).await?;
        let elsewhere = self
            .inner
            .engine
            .presence
            .elsewhere(&app.name, user)
            .await?
            .len();
        if elsewhere > 0 {
            let command = crate::engine::NodeCommand::Room {
                app: app.name.to_string(),
                user: user.to_owned(),
                room: room.to_owned(),
                join,
            };
            self.inner.engine.nodes.send(&command).await?;
        }
        Ok(here + elsewhere)
    }

    /// Members of room `room` of `app` with their connection counts in it, sorted by user.
    pub async fn room_members(
        &self,
        app: &str,
        room: &str,
    ) -> Result<Vec<(String, usize)>, HubError> {
        names::check_room(room)?;
        match self.inner.apps.load_full().lookup(app)? {
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

    /// Whether the engine reaches what it needs, or why not (for `/healthz`).
    pub async fn engine_health(&self) -> Result<(), String> {
        self.inner.engine.broker.health().await
    }

    /// Online users per app, as metrics label them: each configured app under its name,
    /// apps created on first use together under [`crate::metrics::DYNAMIC_APP`].
    pub async fn users_online(&self) -> Result<Vec<(String, u64)>, HubError> {
        let presence = &self.inner.engine.presence;
        let apps = self.inner.apps.load_full();
        let mut online = Vec::new();
        let mut created = None;
        for app in apps.all() {
            let count = presence.user_count(&app.name).await? as u64;
            match apps.is_declared(&app.name) {
                true => online.push((app.name.to_string(), count)),
                false => *created.get_or_insert(0) += count,
            }
        }
        if let Some(count) = created {
            online.push((crate::metrics::DYNAMIC_APP.to_owned(), count));
        }
        Ok(online)
    }

    /// Which engines the hub runs on, for logs.
    pub fn engine_kinds(&self) -> (&'static str, &'static str) {
        (
            self.inner.engine.broker.kind(),
            self.inner.engine.presence.kind(),
        )
    }
}

impl HubInner {
    /// A new message of `app`, with the next id of this node.
    fn new_message(
        &self,
        app: &Arc<str>,
        event: Option<String>,
        data: Box<RawValue>,
        origin: Origin,
        shared: bool,
    ) -> Arc<Message> {
        let serial = self.next_message.fetch_add(1, Ordering::Relaxed);
        Arc::new(Message {
            id: message_id(serial),
            app: app.clone(),
            event: event.map(String::into_boxed_str),
            from: origin.from,
            data,
            ts_ms: now_ms(),
            seq: serial,
            shared,
            exclude: origin.exclude,
            member: None,
        })
    }

    /// Put (or take) `user`'s connections on this node in room `room` of `app`; returns
    /// how many changed.
    async fn change_room_local(
        &self,
        app: &AppSettings,
        user: &str,
        room: &str,
        join: bool,
    ) -> Result<usize, HubError> {
        let home = Registry::home(&app.name, user);
        let user_channel = channel::user(&app.name, user);
        let channel = channel::room(&app.name, room);
        let presence = &self.engine.presence;
        let changed = if join {
            self.registry.join_room_all(home, &user_channel, &channel)
        } else {
            self.registry.leave_room_all(home, &user_channel, &channel)
        };
        let user: Arc<str> = user.into();
        let watch = app.room_watch.as_deref();
        for id in &changed {
            if join {
                self.take_interest(std::slice::from_ref(&channel)).await?;
                let entered = presence.enter(&channel, &user, *id, now_ms(), None).await?;
                if let (true, Some(watch)) = (entered.first_in_scope, watch) {
                    watch.occupied(room);
                }
            } else {
                self.drop_interest(std::slice::from_ref(&channel)).await;
                let left = presence.exit(&channel, &user, *id).await?;
                if let (true, Some(watch)) = (left.last_in_scope, watch) {
                    watch.vacated(room);
                }
            }
            room_event(app, &user, *id, room, join);
        }
        Ok(changed.len())
    }

    /// Close `user`'s connections to `app` on this node (only connection `conn` when
    /// given) with `reason`; returns how many were closed.
    fn disconnect_local(
        &self,
        app: &str,
        user: &str,
        conn: Option<ConnId>,
        reason: &Disconnect,
    ) -> usize {
        let mut chosen = Vec::new();
        self.registry.for_each(
            &channel::user(app, user),
            Some(Registry::home(app, user)),
            |subscriber| {
                if conn.is_none_or(|id| id == subscriber.id) {
                    chosen.push(subscriber.outbox.clone());
                }
            },
        );
        for outbox in &chosen {
            outbox.close(reason.clone());
        }
        chosen.len()
    }

    /// Queue `message` to connection `id` (named `conn`) of `app` on this node, live-only;
    /// false when no such connection is attached here.
    fn push_local(&self, app: &str, conn: &str, id: ConnId, message: Arc<Message>) -> bool {
        let publication = Arc::new(Publication::new(
            channel::conn(app, conn),
            crate::engine::StreamPosition::empty(),
            message,
        ));
        let mut unsent = Unsent::default();
        let mut cache = RenderCache::new(&publication, &self.renders);
        let addressed = self
            .conns
            .offer(app, id, &publication, &mut cache, &mut unsent);
        write_unsent(unsent);
        let done = addressed == Addressed::Done;
        self.stats.published(u64::from(done));
        done
    }

    /// Tell the connections in room channel `channel` of `app`, on every node, that a
    /// member joined (with `info`, JSON text) or left, skipping connection `exclude` (the
    /// member itself). Live-only: a member change is never kept in history, and only
    /// formats that show members get it.
    async fn member_change(
        &self,
        app: &Arc<str>,
        channel: &Arc<str>,
        change: MemberChange,
        info: Option<&str>,
        exclude: Option<Arc<str>>,
    ) {
        let data = info
            .and_then(|info| RawValue::from_string(info.to_owned()).ok())
            .unwrap_or_else(|| RawValue::NULL.to_owned());
        let serial = self.next_message.fetch_add(1, Ordering::Relaxed);
        let message = Arc::new(Message {
            id: message_id(serial),
            app: app.clone(),
            event: None,
            from: None,
            data,
            ts_ms: now_ms(),
            seq: serial,
            shared: false,
            exclude,
            member: Some(change),
        });
        self.deliver_member_change(channel, message.clone());
        if self.engine.presence.spans_nodes() {
            match NodeCommand::member(channel, &message) {
                Ok(command) => self.tell_nodes(command).await,
                Err(error) => tracing::warn!(%error, "a member change could not be sent"),
            }
        }
    }

    /// Queue a member change (`message`) to this node's connections in room channel
    /// `channel`.
    fn deliver_member_change(&self, channel: &Arc<str>, message: Arc<Message>) {
        let publication = Arc::new(Publication::new(
            channel.clone(),
            StreamPosition::empty(),
            message,
        ));
        let mut unsent = Unsent::default();
        let mut cache = RenderCache::new(&publication, &self.renders);
        self.registry.for_each(channel, None, |sub| {
            sub.offer(&publication, &mut cache, &mut unsent);
        });
        write_unsent(unsent);
    }

    /// Send `command` to the other nodes; a failure is logged (the connections it
    /// concerns close when their node loses Redis anyway).
    async fn tell_nodes(&self, command: crate::engine::NodeCommand) {
        if let Err(error) = self.engine.nodes.send(&command).await {
            tracing::warn!(%error, "could not tell the other nodes");
        }
    }

    /// Queue `publication` to this node's members of its channel (with `home`, only that
    /// user's shard is visited), each format rendered once; the outboxes that now need
    /// writing go into `unsent`, to be written after the broker's and the registry's locks
    /// are released. Returns how many connections took it.
    fn deliver_local(
        &self,
        publication: &Arc<Publication>,
        home: Option<u64>,
        unsent: &mut Unsent,
    ) -> u64 {
        let mut cache = RenderCache::new(publication, &self.renders);
        let mut delivered = 0;
        self.registry.for_each(&publication.channel, home, |sub| {
            if sub.offer(publication, &mut cache, unsent) {
                delivered += 1;
            }
        });
        self.stats.published(delivered);
        delivered
    }

    /// Count `channels` as joined by one more local connection, subscribing the broker
    /// to those that had none.
    async fn take_interest(&self, channels: &[Arc<str>]) -> Result<(), EngineError> {
        let first = self.interest.join(channels);
        if first.is_empty() {
            return Ok(());
        }
        self.engine.broker.subscribe(&first).await
    }

    /// Count `channels` as left by one local connection, unsubscribing the broker from
    /// those that now have none.
    async fn drop_interest(&self, channels: &[Arc<str>]) {
        let last = self.interest.leave(channels);
        if last.is_empty() {
            return;
        }
        if let Err(error) = self.engine.broker.unsubscribe(&last).await {
            tracing::warn!(%error, "broker unsubscribe failed");
        }
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

/// Most missed messages to replay at once: half of the subscriber's queue (so live
/// messages still fit behind them), and at most `max`.
fn replay_limit(subscriber: &Subscriber, max: Option<usize>) -> usize {
    (subscriber.outbox.limits().max_messages / 2)
        .max(1)
        .min(max.unwrap_or(usize::MAX))
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
                (message.ts_ms, message.seq)
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

/// Most groups a credential (a token's `groups`, an auth webhook's answer) may grant
/// beyond those of the user id: each is a channel the connection's cursor names.
pub const MAX_EXTRA_GROUPS: usize = 16;

/// The name of connection `id`, as clients and backends see it: this node's name, a dash,
/// and the id in hex (`k3x9q2ab-1f`), so names from different nodes never collide.
pub fn conn_name(id: ConnId) -> String {
    crate::node::conn_name(id)
}

/// A connection name that [`conn_name`] cannot have made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a connection id from a welcome frame")]
pub struct NotAConnName;

/// The connection id a name from [`conn_name`] stands for: `Ok(Some)` for a connection of
/// this node, `Ok(None)` for a well-formed name of another node (or an earlier life of
/// this one).
pub fn parse_conn_name(name: &str) -> Result<Option<ConnId>, NotAConnName> {
    let (node, id) = name.split_once('-').ok_or(NotAConnName)?;
    let node_ok = node.len() == crate::node::NODE_ID_LEN
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let id = ConnId::from_str_radix(id, 16).map_err(|_| NotAConnName)?;
    if !node_ok {
        return Err(NotAConnName);
    }
    Ok((node == crate::node::node_id()).then_some(id))
}

/// Who a message comes from (a client's `send`) and which connection it must skip.
#[derive(Debug, Default)]
pub(crate) struct Origin {
    /// The sending user, when a client sent it.
    from: Option<Arc<str>>,
    /// The connection (its name across nodes) the message must not reach.
    exclude: Option<Arc<str>>,
}

/// `name` as a connection to exclude from a publish: it must be a connection name (of
/// any node); whether it is open does not matter.
pub(crate) fn excluded_conn(name: &str) -> Result<Arc<str>, HubError> {
    parse_conn_name(name).map_err(|_| HubError::InvalidConn(name.to_owned()))?;
    Ok(name.into())
}

/// The channels `targets` of `app` publish to, each once, in the order of `targets`.
fn channels_of(app: &str, targets: &[Target]) -> Vec<Arc<str>> {
    let mut channels: Vec<Arc<str>> = Vec::with_capacity(targets.len());
    let mut named = HashSet::with_capacity(if targets.len() > 1 { targets.len() } else { 0 });
    for target in targets {
        let channel = match target {
            Target::All => channel::all(app),
            Target::Group(g) => channel::group(app, g),
            Target::Room(r) => channel::room(app, r),
            Target::User(u) => channel::user(app, u),
        };
        if targets.len() == 1 || named.insert(channel.clone()) {
            channels.push(channel);
        }
    }
    channels
}

/// The id of this node's `serial`-th message: unique across nodes and restarts.
fn message_id(serial: u64) -> Arc<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = serial;
    loop {
        at -= 1;
        digits[at] = HEX[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    let hex = std::str::from_utf8(&digits[at..]).unwrap_or("0");
    channel::joined(&[crate::node::node_id(), "-", hex])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::{MemoryBroker, MemoryPresence};
    use crate::engine::StreamPosition;

    #[test]
    fn message_ids_are_the_node_and_the_serial_in_hex() {
        let node = crate::node::node_id();
        for serial in [0, 9, 10, 0xabc, u64::MAX] {
            assert_eq!(*message_id(serial), *format!("{node}-{serial:x}"));
        }
    }

    struct Plain(FormatId);

    impl Render for Plain {
        fn format(&self) -> FormatId {
            self.0
        }
        fn kind(&self) -> (&'static str, &'static str) {
            ("test", "test")
        }
        fn render(&self, publication: &Publication) -> Bytes {
            Bytes::from(publication.message.id.to_string())
        }
    }

    /// A hub with the built-in default configuration (dynamic apps) on the memory engine.
    pub(super) fn hub() -> Hub {
        let config =
            crate::config::Config::load(None, [], &crate::config::Overrides::default()).unwrap();
        let engine = Engine {
            broker: Arc::new(MemoryBroker::new(usize::MAX)),
            presence: Arc::new(MemoryPresence::default()),
            nodes: Arc::new(crate::engine::LocalBus),
            idempotency: Arc::new(crate::engine::idempotency::MemoryIdempotency::default()),
        };
        let services = crate::services::assemble(&config).unwrap();
        Hub::new(
            Apps::new(services.apps, services.dynamic_apps),
            engine,
            Arc::new(Stats::default()),
        )
    }

    async fn connect(hub: &Hub, user: &str) -> (Session, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(OutboxLimits {
            max_messages: 100,
            max_bytes: 100_000,
        }));
        let request = ConnectRequest {
            app: hub.app("demo").unwrap(),
            user: Some(user.to_owned()),
            groups: Vec::new(),
            grant: Grant::default(),
            outbox: outbox.clone(),
            renderer: Arc::new(Plain(FormatId::unique())),
            since: None,
            max_replay: None,
            addr: None,
        };
        (hub.connect(request, |_| {}).await.unwrap(), outbox)
    }

    /// A connection dropped without `close` (its task aborted) still leaves presence, in a
    /// cleanup that shutdown can wait for rather than one nobody tracks.
    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_session_leaves_presence_before_settle_returns() {
        let hub = hub();
        let (session, _outbox) = connect(&hub, "1").await;
        assert_eq!(hub.users("demo").await.unwrap(), [("1".to_owned(), 1)]);
        assert!(hub.online("demo", "1").await.unwrap());
        drop(session);
        hub.settle().await;
        assert!(hub.users("demo").await.unwrap().is_empty());
        assert!(!hub.online("demo", "1").await.unwrap());
    }

    /// A push to several targets reaches each connection once through the events
    /// handler, counted once, with an id that names this node.
    #[tokio::test(flavor = "current_thread")]
    async fn a_push_to_several_targets_is_one_publish_delivered_once_per_connection() {
        let hub = hub();
        let (_one, one) = connect(&hub, "1").await;
        let (_two, two) = connect(&hub, "2").await;
        let targets = [
            Target::User("1".into()),
            Target::User("2".into()),
            Target::All,
            Target::User("1".into()),
        ];
        let data = RawValue::from_string("1".into()).unwrap();
        let receipt = hub.publish("demo", &targets, None, data).await.unwrap();
        assert_eq!(receipt.delivered, 2);
        assert_eq!(
            receipt.positions.len(),
            3,
            "a repeated target is one channel"
        );
        assert!(receipt
            .id
            .starts_with(&format!("{}-", crate::node::node_id())));
        for outbox in [one, two] {
            let mut frames = Vec::new();
            outbox.drain(&mut frames);
            let ids: Vec<&[u8]> = frames.iter().map(|f| &f.bytes[..]).collect();
            assert_eq!(ids, [receipt.id.as_bytes()]);
        }
    }

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

    /// Pushes accepted in the same millisecond replay in the order they were accepted,
    /// whichever channels they sit in.
    #[test]
    fn replay_keeps_acceptance_order_within_a_millisecond() {
        let at = |channel: &str, offset, seq| {
            Arc::new(Publication::new(
                Arc::from(channel),
                StreamPosition {
                    epoch: "e".into(),
                    offset,
                },
                Arc::new(Message {
                    id: format!("n-{seq}").into(),
                    ts_ms: 50,
                    seq,
                    ..Message::for_test("x")
                }),
            ))
        };
        let user = vec![at("u", 2, 3), at("u", 3, 5)];
        let all = vec![at("all", 2, 4)];
        let order: Vec<u64> = merge_by_time(vec![user, all])
            .iter()
            .map(|p| p.message.seq)
            .collect();
        assert_eq!(order, [3, 4, 5]);
    }
}
