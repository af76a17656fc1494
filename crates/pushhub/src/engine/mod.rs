//! Engines: the pluggable backends behind the hub (DESIGN.md principle 6).
//!
//! The hub talks to a [`Broker`] (channel streams: offsets, epochs, history, delivery to other
//! nodes) and a [`Presence`] (who is online where) through trait objects, and never knows
//! which implementation it holds. The in-memory engine is the zero-setup default; a Redis
//! engine implements the same contracts across nodes. [`from_config`] is the only place that
//! chooses between them.
//!
//! Engines never import the hub and never see a wire format. The seam between them:
//! - **Types below both** ([`publication`]): [`Message`], [`Publication`] and
//!   [`StreamPosition`] are plain data with a stable serialized form (what a Redis stream
//!   entry or pub/sub payload carries); nothing node-local rides in them (the hub keeps its
//!   encodings in its own render store).
//! - **Out of the hub**: `publish` (several channels in one call), `subscribe` /
//!   `unsubscribe` (the hub calls them on its first local connection in a channel and when
//!   the last one leaves), and a batched, limited `history` (one call per connecting client).
//! - **Into the hub**: one [`BrokerEvents`] handler registered at start. Every publication
//!   on a subscribed channel comes back through it, the node's own included, once and in
//!   offset order per channel. The memory engine calls it inside `publish`; a Redis engine
//!   calls it from its subscription connection. The hub delivers from there and never asks
//!   which engine it holds.
//! - **Presence** answers "who is online" ([`Presence::users`], [`Presence::connections`]),
//!   so answers that must hold across nodes ask it rather than counting local deliveries.

pub mod budget;
#[cfg(test)]
pub mod contract;
pub mod idempotency;
pub mod memory;
pub mod node_bus;
#[cfg(test)]
pub mod presence_contract;
pub mod publication;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use idempotency::Idempotency;
pub use node_bus::{LocalBus, NodeBus, NodeCommand, NodeEvents};
pub use publication::{MemberChange, Message, Publication, StreamPosition};

/// Failures every engine may report; callers act on the variant.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The backend cannot be reached now; the operation may succeed later.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

/// How much history a channel keeps; comes from the channel's app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// Most messages kept per channel; 0 keeps none.
    pub size: usize,
    /// How long a message is kept; zero keeps none. A channel with no publish for this long
    /// is forgotten entirely (its next publish starts a new epoch).
    pub ttl: Duration,
    /// Most bytes the histories of all the app's channels hold together; beyond it the
    /// app's oldest kept messages are evicted (besides the engine's bound over all apps).
    pub max_bytes: usize,
}

impl HistoryPolicy {
    /// True when nothing is kept.
    pub fn is_off(&self) -> bool {
        self.size == 0 || self.ttl.is_zero()
    }
}

/// One channel's part of a [`Broker::history`] call.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    /// The channel.
    pub channel: Arc<str>,
    /// The client's last seen position; `None` asks for the top only.
    pub since: Option<StreamPosition>,
    /// Most publications to return (the oldest after `since`); `None` for all kept.
    pub limit: Option<usize>,
}

/// What a channel's stream says about a client's last known position.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The channel's current top position. When nothing was ever published (or the
    /// stream was forgotten) this is the empty position: epoch `""`, offset 0.
    pub top: StreamPosition,
    /// Publications after the client's position, oldest first, at most the request's
    /// `limit` of them (empty unless `complete`). When the last one is below `top`, more
    /// remain: ask again from there.
    pub missed: Vec<Arc<Publication>>,
    /// True when `missed` starts exactly where the client stands: same epoch and the
    /// history still reaches back to its position (or it gave none).
    pub complete: bool,
}

/// One publish of a [`Broker::publish_batch`] call.
#[derive(Debug, Clone)]
pub struct BatchPublish {
    /// Its channels.
    pub channels: Vec<Arc<str>>,
    /// Its message.
    pub message: Arc<Message>,
    /// Its app's history policy.
    pub history: HistoryPolicy,
}

/// Counts a broker reports about what it holds, for `/v1/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BrokerStats {
    /// Channel streams held.
    pub streams: u64,
    /// Messages held in histories.
    pub history_messages: u64,
    /// Bytes of history held, as the engine counts them against its bounds.
    pub history_bytes: u64,
    /// Messages evicted from histories since start because a bound on history bytes (all
    /// apps', or one app's) was reached.
    pub history_evictions: u64,
}

/// Where an engine hands publications to the hub: given once, at start
/// ([`Broker::register_events`]), like centrifuge's broker event handler.
///
/// The contract a broker keeps towards it:
/// - Every publication to a channel this node is subscribed to reaches
///   [`BrokerEvents::publication`] exactly once, the node's own publications included, and
///   those of one channel arrive in offset order, one at a time (never two of one channel
///   at once). Different channels may arrive concurrently, from any task.
/// - A publication reaches it only once it is in the channel's history (and at or below
///   its top): a client that reads the history while the publication is being handed over
///   finds it there, and the hub skips the live copy (see [`Broker::history`]).
/// - The memory engine calls it inside `publish`, under the channel's turn; a Redis engine
///   calls it from the task reading its subscription connection, after filling any gap
///   from the stream, so the order rule holds whichever node published.
///
/// The handler must not block and must not call back into the broker.
pub trait BrokerEvents: Send + Sync {
    /// A publication on a subscribed channel.
    fn publication(&self, publication: &Arc<Publication>);
}

/// Channel streams: ordering, offsets, history and delivery to every node.
///
/// Contract every implementation keeps:
/// - `publish` assigns the next offset of each channel and, atomically with that, appends
///   the publication to the channel's history (as `history` allows) and sends it to every
///   node subscribed to the channel (this one included) through their [`BrokerEvents`].
///   Offsets of one channel are strictly increasing by one within an epoch.
/// - Subscriptions are counted per channel: a channel is subscribed while `subscribe` was
///   called for it more often than `unsubscribe`. The hub calls `subscribe` when its first
///   local connection joins a channel and `unsubscribe` when the last one leaves, so the
///   count is 0 or 1 except while such calls race; counting makes the race harmless.
///   A publication made while its channel is not subscribed is not handed over (it is in
///   the history all the same).
/// - `history` answers from the same state `publish` appends to, and the hub calls
///   `subscribe` before it reads the history for a new connection: a publication is either
///   in a recovery's `missed` (or at or below its `top`), or handed to the events handler
///   after the read, never neither. It may be both: a subscriber skips a live publication
///   at or below the position its recovery reached.
/// - History is bounded per channel (`HistoryPolicy::size`, `ttl`) and in bytes, per app
///   (`HistoryPolicy::max_bytes`) and over all apps (the engine's own setting). What goes
///   first is always a channel's oldest, so a recovery from before a lost message is
///   incomplete (`recovered:false` to the client), never silently short.
/// - `history` does not wait for a delivery in progress: a connecting client must not wait
///   for a broadcast to 100k connections to finish.
/// - When a stream's history is lost, its epoch changes; a channel never published to (or
///   forgotten) has the empty position.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Short name for logs and metrics ("memory", "redis").
    fn kind(&self) -> &'static str;

    /// Give the broker the hub's handler; called once, before any other call.
    fn register_events(&self, events: Arc<dyn BrokerEvents>);

    /// Start handing over publications of `channels` (counted; see the contract).
    async fn subscribe(&self, channels: &[Arc<str>]) -> Result<(), EngineError>;

    /// Undo one `subscribe` of each of `channels`.
    async fn unsubscribe(&self, channels: &[Arc<str>]) -> Result<(), EngineError>;

    /// Publish `message` to each of `channels` (one push to several users is one call) and
    /// return the position it got in each, in the order of `channels`. On an error, the
    /// channels before the failing one may have been published to.
    async fn publish(
        &self,
        channels: &[Arc<str>],
        message: &Arc<Message>,
        history: HistoryPolicy,
    ) -> Result<Vec<StreamPosition>, EngineError>;

    /// Publish many messages in one call (a batch of pushes), each as [`Broker::publish`]
    /// would, with one answer per publish in the order of `batch`; one failing publish
    /// does not fail the others. Publishes of one channel get their offsets in the order
    /// of `batch`. An engine does the batch's work together: the memory engine takes each
    /// channel's turn once for all the batch's publishes there, the Redis engine sends all
    /// the scripts in one pipeline.
    async fn publish_batch(
        &self,
        batch: &[BatchPublish],
    ) -> Vec<Result<Vec<StreamPosition>, EngineError>>;

    /// What each requested channel holds after its `since`, in one call (a connecting
    /// client asks for all its channels at once), answered in the order of `requests`.
    async fn history(&self, requests: &[HistoryRequest]) -> Result<Vec<Recovery>, EngineError>;

    /// Counts of what is held.
    fn stats(&self) -> BrokerStats;

    /// Whether the broker can reach what it needs now, or why not: `/healthz` answers
    /// 503 with the reason while it cannot. The memory engine always can.
    async fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

/// One connection another node holds, as presence knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConn {
    /// Its name across nodes (the node's name, a dash, the id in hex: what a `welcome`
    /// shows), which also says which node holds it.
    pub name: String,
    /// When it connected, in milliseconds since the Unix epoch: the per-user limit's
    /// kick-oldest goes by this.
    pub since_ms: u64,
}

/// One user present in a scope, as a presence channel lists its members: once however
/// many connections the user holds there, on however many nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user id.
    pub user: String,
    /// Its connections in the scope.
    pub conns: usize,
    /// What the member shows of itself (JSON text, e.g. Pusher's `user_info`): the info
    /// its first connection in the scope joined with, kept until its last one leaves.
    pub info: Option<Arc<str>>,
}

/// What a room entry ([`Presence::enter`]) changed, decided atomically with it across
/// nodes: of two entries racing on two nodes, exactly one is told it was first, so the
/// hub announces a member (or a room occupied, Pusher's `channel_occupied` webhook) once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entered {
    /// The user's first connection in the scope: a member was added (only meaningful for
    /// an entry with info; the hub announces no member for a plain one).
    pub first_of_user: bool,
    /// The scope's first connection: the room became occupied.
    pub first_in_scope: bool,
}

/// What a room exit ([`Presence::exit`]) changed, decided atomically with it across
/// nodes: exactly one leaver is told it was last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Left {
    /// The user's last connection in the scope went: a member was removed.
    pub last_of_user: bool,
    /// The scope's last connection went: the room became vacant (Pusher's
    /// `channel_vacated` webhook).
    pub last_in_scope: bool,
}

/// Where presence tells the hub of what left without a leave: a node died, and whichever
/// node purged its entries reports the users whose last connection in a scope went with
/// it, so every node's members of that scope hear of it, and the scopes it emptied.
pub trait PresenceEvents: Send + Sync {
    /// `users` no longer hold any connection in `scope`.
    fn members_gone(&self, scope: &str, users: &[String]);

    /// `scopes` hold no connection any more: the purge took the last one of each, and
    /// exactly one purging node reports each. A hub that announces no vacated rooms has
    /// nothing to do.
    fn scopes_vacated(&self, scopes: &[String]);
}

/// Who is online: users of a scope (an app, or a room channel) and how many connections
/// each holds.
///
/// Contract: `join` and `leave` (or `enter` and `exit`, for a room scope) are called once
/// each per connection and scope, in that order; a user is online while at least one of
/// its connections has joined and not left. Connection ids are this node's
/// ([`crate::node::conn_name`] names them across nodes). Implementations across nodes
/// answer for every node, and forget a node that stopped without leaving within a bound
/// they document.
#[async_trait]
pub trait Presence: Send + Sync {
    /// Short name for logs and metrics.
    fn kind(&self) -> &'static str;

    /// True when other nodes' connections are counted too: then this node's own
    /// deliveries are not the whole answer to "how many connections took a push".
    fn spans_nodes(&self) -> bool;

    /// Record that connection `conn` of `user`, connected at `since_ms` (milliseconds
    /// since the Unix epoch), is online in `scope`.
    async fn join(
        &self,
        scope: &str,
        user: &str,
        conn: u64,
        since_ms: u64,
    ) -> Result<(), EngineError>;

    /// Record that connection `conn` of `user` went away from `scope`.
    async fn leave(&self, scope: &str, user: &str, conn: u64) -> Result<(), EngineError>;

    /// Online users of `scope` with their connection counts, sorted by user id.
    async fn users(&self, scope: &str) -> Result<Vec<(String, usize)>, EngineError>;

    /// How many users of `scope` are online (a metrics gauge asks every scrape, so an
    /// engine that can count without listing should). The default lists them.
    async fn user_count(&self, scope: &str) -> Result<usize, EngineError> {
        Ok(self.users(scope).await?.len())
    }

    /// How many connections `user` holds in `scope`: the question "is this user online?"
    /// (push-serve's answer to a push) asks here rather than counting one node's
    /// deliveries, so an engine across nodes answers for all of them.
    async fn connections(&self, scope: &str, user: &str) -> Result<usize, EngineError>;

    /// How many connections each of `users` holds in `scope`, in their order: one read
    /// for many users, so a batch of pushes counts all of its recipients at once. The
    /// default asks [`connections`](Self::connections) for each in turn.
    async fn connections_each(
        &self,
        scope: &str,
        users: &[&str],
    ) -> Result<Vec<usize>, EngineError> {
        let mut counts = Vec::with_capacity(users.len());
        for user in users {
            counts.push(self.connections(scope, user).await?);
        }
        Ok(counts)
    }

    /// How many connections `scope` holds in all.
    async fn total(&self, scope: &str) -> Result<usize, EngineError>;

    /// The connections `user` holds in `scope` on other nodes, oldest first (the per-user
    /// limit and kicks across nodes need them). An engine of one node has none, and
    /// answers without doing any work.
    async fn elsewhere(&self, scope: &str, user: &str) -> Result<Vec<RemoteConn>, EngineError>;

    /// True when connection `conn` (its name across nodes) of another node is online in
    /// `scope`: a push to one connection asks this before it sends the push to that node,
    /// so one to a closed connection is refused rather than lost. An engine of one node
    /// holds no other node's connections, and answers false without doing any work.
    async fn online_elsewhere(&self, scope: &str, conn: &str) -> Result<bool, EngineError>;

    /// The names of the live nodes ([`crate::node::node_id`]), sorted, this one included:
    /// what an operator sees as the cluster. An engine of one node answers with its own
    /// name alone.
    async fn nodes(&self) -> Result<Vec<String>, EngineError>;

    /// Record connection `conn` of `user`, connected at `since_ms`, in room scope `scope`:
    /// as a member showing `info` (JSON text) when given, else plainly (listed by
    /// [`Presence::members`] without info). The answer says whether this was the user's
    /// first connection in the scope and the scope's first, on any node: of two entries
    /// racing on two nodes, exactly one is told each. An app's scope uses
    /// [`Presence::join`], which decides nothing (the cost of a connect).
    async fn enter(
        &self,
        scope: &str,
        user: &str,
        conn: u64,
        since_ms: u64,
        info: Option<&str>,
    ) -> Result<Entered, EngineError>;

    /// Undo [`Presence::enter`]. The answer says whether that was the user's last
    /// connection in the scope (its info goes with it) and the scope's last, on any node,
    /// each told to exactly one leaver. A dead node's entries count until purged.
    async fn exit(&self, scope: &str, user: &str, conn: u64) -> Result<Left, EngineError>;

    /// The members of `scope`, sorted by user id, each with its connection count and info
    /// (users who entered without info have none).
    async fn members(&self, scope: &str) -> Result<Vec<Member>, EngineError>;

    /// Scopes whose name starts with `prefix` that hold at least one connection, with
    /// their connection counts, sorted by name: which channels are occupied (Pusher's
    /// `GET /channels`).
    async fn scopes(&self, prefix: &str) -> Result<Vec<(String, usize)>, EngineError>;

    /// Give presence the hub's handler for members and rooms a dead node took with it;
    /// called once at start. An engine of one node has no other node to lose, and ignores it.
    fn register_events(&self, _events: Arc<dyn PresenceEvents>) {}
}

/// The engines a hub runs on.
#[derive(Clone)]
pub struct Engine {
    /// Channel streams.
    pub broker: Arc<dyn Broker>,
    /// Online users.
    pub presence: Arc<dyn Presence>,
    /// Commands to the other nodes.
    pub nodes: Arc<dyn NodeBus>,
    /// Idempotency keys of pushes, shared by the nodes the broker spans.
    pub idempotency: Arc<dyn Idempotency>,
}

/// Which engine to run; the only place that matches on engine kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Single node, nothing to install.
    #[default]
    Memory,
    /// Many nodes sharing Redis (or Valkey): see `[redis]` in the configuration.
    Redis,
}

/// Build the engines the configuration asks for, their histories holding at most
/// `max_history_bytes` over all apps; their background upkeep runs on `tracker` until
/// `shutdown` fires. `redis` is the connections to Redis, built once by the server when
/// the engine is Redis (the timer store shares them). `log` is the durable history log
/// and what it held, when the memory engine keeps its histories on disk; else `snapshot`
/// is what an upgrade left of the histories, if anything.
///
/// Also returns the memory broker when histories live in memory only: an upgrade writes
/// its snapshot from it.
pub fn from_config(
    kind: EngineKind,
    redis: Option<Arc<crate::redis::RedisConnections>>,
    max_history_bytes: usize,
    log: Option<(
        Arc<crate::store::history::HistoryLog>,
        crate::store::history::Restored,
    )>,
    snapshot: Option<crate::store::history::Restored>,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(Engine, Option<Arc<memory::MemoryBroker>>), EngineError> {
    match (kind, redis) {
        (EngineKind::Memory, _) => {
            let durable = log.is_some();
            let (broker, report) = match (log, snapshot) {
                (Some((log, restored)), _) => {
                    let (broker, report) =
                        memory::MemoryBroker::durable(max_history_bytes, log, restored);
                    (broker, Some(("the log", report)))
                }
                (None, Some(restored)) => {
                    let (broker, report) =
                        memory::MemoryBroker::from_snapshot(max_history_bytes, restored);
                    (broker, Some(("the upgrade's snapshot", report)))
                }
                (None, None) => (memory::MemoryBroker::new(max_history_bytes), None),
            };
            if let Some((source, report)) = report {
                tracing::info!(
                    streams = report.streams,
                    messages = report.messages,
                    expired = report.expired,
                    "history restored from {source}: {} channel(s), {} message(s)",
                    report.streams,
                    report.messages
                );
            }
            let broker = Arc::new(broker);
            tracker.spawn(memory::sweep_periodically(broker.clone(), shutdown));
            let engine = Engine {
                broker: broker.clone(),
                presence: Arc::new(memory::MemoryPresence::default()),
                nodes: Arc::new(LocalBus),
                idempotency: Arc::new(idempotency::MemoryIdempotency::default()),
            };
            Ok((engine, (!durable).then_some(broker)))
        }
        (EngineKind::Redis, Some(redis)) => Ok((
            Engine {
                broker: Arc::new(redis::RedisBroker::start(
                    redis.clone(),
                    tracker,
                    shutdown.clone(),
                )?),
                presence: redis::RedisPresence::start(redis.clone(), tracker, shutdown.clone()),
                idempotency: Arc::new(redis::RedisIdempotency::new(redis.clone())),
                nodes: redis::RedisNodeBus::start(redis, tracker, shutdown),
            },
            None,
        )),
        (EngineKind::Redis, None) => Err(EngineError::Unavailable(
            "engine = \"redis\" needs Redis URLs ([redis] urls or --redis-url)".into(),
        )),
    }
}
