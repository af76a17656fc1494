//! Engines: the pluggable backends behind the hub (DESIGN.md principle 6).
//!
//! The hub talks to a [`Broker`] (channel streams: offsets, epochs, history, delivery to other
//! nodes) and a [`Presence`] (who is online where) through trait objects, and never knows
//! which implementation it holds. The in-memory engine is the zero-setup default; a Redis
//! engine implements the same contracts across nodes. [`from_config`] is the only place that
//! chooses between them.
//!
//! Engines never import the hub and never see a wire format.

pub mod memory;

use std::sync::Arc;

use async_trait::async_trait;

use crate::hub::message::Message;

/// Where a message sits in a channel's stream.
///
/// `offset` grows by one per message published to the channel. `epoch` names one unbroken
/// life of the stream: when history is lost (a restart of a memory engine, eviction of an
/// idle channel, a Redis flush) the epoch changes, so a client holding an old position can
/// tell that offsets no longer mean what they meant and that recovery is impossible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    /// Opaque name of the current life of the stream.
    pub epoch: Arc<str>,
    /// Offset of the last message in the stream (0 when nothing was ever published).
    pub offset: u64,
}

/// Failures every engine may report; callers act on the variant.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The backend cannot be reached now; the operation may succeed later.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

/// Called by [`Broker::publish`] with the position it assigned, while no later publish to
/// the same channel can be assigned one: the publishing node delivers locally from here,
/// so local subscribers see a channel's messages in offset order.
pub type DeliverLocal<'a> = &'a mut (dyn FnMut(&StreamPosition) + Send);

/// Channel streams: ordering, offsets and delivery across nodes.
///
/// Contract every implementation keeps:
/// - `publish` assigns the next offset of `channel` and, atomically with that, appends the
///   message to the channel's history (when the engine keeps history) and hands it to the
///   other nodes. Offsets of one channel are strictly increasing by one within an epoch.
/// - `publish` calls `deliver` exactly once with the assigned position, before any later
///   publish to the same channel calls its own: local delivery follows offset order. The
///   callback must not block or call back into the broker.
/// - The broker never delivers a node's own publications back to it.
/// - A channel that was never published to has offset 0 and an epoch that stays stable
///   until its state is lost.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Short name for logs and metrics ("memory", "redis").
    fn kind(&self) -> &'static str;

    /// Publish `message` to `channel`, deliver it locally through `deliver`, and return the
    /// position it was given.
    async fn publish(
        &self,
        channel: &str,
        message: &Message,
        deliver: DeliverLocal<'_>,
    ) -> Result<StreamPosition, EngineError>;

    /// The current top position of `channel`, without publishing.
    async fn position(&self, channel: &str) -> Result<StreamPosition, EngineError>;
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

/// Build the engines the configuration asks for.
pub fn from_config(kind: EngineKind) -> Engine {
    match kind {
        EngineKind::Memory => Engine {
            broker: Arc::new(memory::MemoryBroker::new()),
            presence: Arc::new(memory::MemoryPresence::default()),
        },
    }
}
