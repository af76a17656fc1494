//! Engines: the pluggable backends behind the hub (DESIGN.md principle 6).
//!
//! The hub talks to a [`Broker`] (channel streams: offsets, epochs, history, delivery to other
//! nodes) and a [`Presence`] (who is online where) through trait objects, and never knows
//! which implementation it holds. The in-memory engine is the zero-setup default; a Redis
//! engine implements the same contracts across nodes. [`from_config`] is the only place that
//! chooses between them.
//!
//! Engines never import the hub and never see a wire format.

pub mod budget;
pub mod memory;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::hub::message::{Message, Publication};

/// Where a message sits in a channel's stream.
///
/// The empty position (epoch `""`, offset 0) stands for "before anything was published":
/// a client holding it has seen nothing, whatever epoch the stream later gets.
///
/// `offset` grows by one per message published to the channel. `epoch` names one unbroken
/// life of the stream: when history is lost (a restart of a memory engine, eviction of an
/// idle channel, a Redis flush) the epoch changes, so a client holding an old position can
/// tell that offsets no longer mean what they meant and that recovery is impossible. Losing
/// the oldest messages of a stream that lives on (size, TTL, a bound on history bytes)
/// keeps the epoch: the gap shows as a history that no longer reaches back far enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    /// Opaque name of the current life of the stream.
    pub epoch: Arc<str>,
    /// Offset of the last message in the stream (0 when nothing was ever published).
    pub offset: u64,
}

impl StreamPosition {
    /// The position before anything was published.
    pub fn empty() -> Self {
        Self {
            epoch: "".into(),
            offset: 0,
        }
    }
}

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

/// What a channel's stream says about a client's last known position.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The channel's current top position. When nothing was ever published (or the
    /// stream was forgotten) this is the empty position: epoch `""`, offset 0.
    pub top: StreamPosition,
    /// Messages after the client's position, oldest first (empty unless `complete`).
    pub missed: Vec<Arc<Publication>>,
    /// True when `missed` is exactly what the client lacks: same epoch and the history
    /// still reaches back to its position (or it gave none).
    pub complete: bool,
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

/// Called by [`Broker::publish`] with the publication it made, while no later publish to
/// the same channel can be made: the publishing node delivers locally from here, so local
/// subscribers see a channel's messages in offset order.
pub type DeliverLocal<'a> = &'a mut (dyn FnMut(&Arc<Publication>) + Send);

/// Channel streams: ordering, offsets, history and delivery across nodes.
///
/// Contract every implementation keeps:
/// - `publish` assigns the next offset of `channel` and, atomically with that, appends the
///   publication to the channel's history (as `history` allows) and hands it to the other
///   nodes. Offsets of one channel are strictly increasing by one within an epoch.
/// - `publish` calls `deliver` exactly once, before any later publish to the same channel
///   calls its own: local delivery follows offset order. The callback must not block or
///   call back into the broker.
/// - The broker never delivers a node's own publications back to it.
/// - History is bounded per channel (`HistoryPolicy::size`, `ttl`) and in bytes, per app
///   (`HistoryPolicy::max_bytes`) and over all apps (the engine's own setting). What goes
///   first is always a channel's oldest, so a recovery from before a lost message is
///   incomplete (`recovered:false` to the client), never silently short.
/// - `recover` answers from the same state `publish` appends to: a publication is either
///   in a recovery's `missed` (or at or below its `top`), or delivered by a later `publish`,
///   never neither.
/// - `recover` does not wait for a local delivery in progress: a connecting client must
///   not wait for a broadcast to 100k connections to finish.
/// - When a stream's history is lost, its epoch changes; a channel never published to (or
///   forgotten) has the empty position.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Short name for logs and metrics ("memory", "redis").
    fn kind(&self) -> &'static str;

    /// Publish `message` to `channel`, deliver it locally through `deliver`, and return the
    /// publication it became.
    async fn publish(
        &self,
        channel: &Arc<str>,
        message: &Arc<Message>,
        history: HistoryPolicy,
        deliver: DeliverLocal<'_>,
    ) -> Result<Arc<Publication>, EngineError>;

    /// What `channel` holds after `since` (the client's last seen position, if any).
    async fn recover(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> Result<Recovery, EngineError>;

    /// Counts of what is held.
    fn stats(&self) -> BrokerStats;
}

/// Who is online: users of an app and how many connections each holds.
///
/// Contract: `join` and `leave` are called once each per connection, in that order; a user
/// is online while at least one of its connections has joined and not left. Implementations
/// across nodes count connections of every node.
#[async_trait]
pub trait Presence: Send + Sync {
    /// Short name for logs and metrics.
    fn kind(&self) -> &'static str;

    /// Record that connection `conn` of `user` in `app` is online.
    async fn join(&self, app: &str, user: &str, conn: u64) -> Result<(), EngineError>;

    /// Record that connection `conn` of `user` in `app` went away.
    async fn leave(&self, app: &str, user: &str, conn: u64) -> Result<(), EngineError>;

    /// Online users of `app` with their connection counts, sorted by user id.
    async fn users(&self, app: &str) -> Result<Vec<(String, usize)>, EngineError>;
}

/// The pair of engines a hub runs on.
#[derive(Clone)]
pub struct Engine {
    /// Channel streams.
    pub broker: Arc<dyn Broker>,
    /// Online users.
    pub presence: Arc<dyn Presence>,
}

/// Which engine to run; the only place that matches on engine kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Single node, nothing to install.
    #[default]
    Memory,
}

/// Build the engines the configuration asks for, their histories holding at most
/// `max_history_bytes` over all apps; their background upkeep runs on `tracker` until
/// `shutdown` fires.
pub fn from_config(
    kind: EngineKind,
    max_history_bytes: usize,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) -> Engine {
    match kind {
        EngineKind::Memory => {
            let broker = Arc::new(memory::MemoryBroker::new(max_history_bytes));
            tracker.spawn(memory::sweep_periodically(broker.clone(), shutdown));
            Engine {
                broker,
                presence: Arc::new(memory::MemoryPresence::default()),
            }
        }
    }
}
