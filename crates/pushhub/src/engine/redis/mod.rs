//! The Redis engine: the contracts of [`crate::engine`] kept across many nodes sharing
//! Redis (or Valkey), over the connections of [`crate::redis`]. This module is the broker
//! (channel streams shared by every node); [`RedisPresence`] (who is online on any node)
//! and [`RedisNodeBus`] (commands to other nodes) sit beside it.
//!
//! - [`keys`]: where a channel lives (prefix, one hash tag per channel).
//! - [`scripts`]: the publish and read scripts, run with `EVALSHA`.
//! - [`publish`]: one script call per channel, all channels of a push pipelined.
//! - [`stream`]: history reads and the contract's recovery rules.
//! - [`subscriptions`]: counted subscriptions, batched into few `SUBSCRIBE`s per deployment.
//! - [`dispatch`]: what the subscriber connection receives, handed to the hub in offset
//!   order per channel, gaps filled from the stream first.
//! - [`health`]: probing the connections, periodic gap checks, `/healthz`.
//! - [`sentinel`]: following a Sentinel failover.
//!
//! Each configured deployment (a standalone Redis, a Sentinel-watched master, a Redis
//! Cluster) holds the channels the consistent hash gives it, and has its own subscriber
//! connection, subscription task and dispatcher (a "lane").

mod dispatch;
mod health;
mod idempotency;
mod keys;
mod node_bus;
mod presence;
mod publish;
mod scripts;
mod sentinel;
mod stream;
mod subscriptions;

pub use idempotency::RedisIdempotency;
pub use node_bus::RedisNodeBus;
pub use presence::RedisPresence;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::{ClientLike, EventInterface};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    BatchPublish, Broker, BrokerEvents, BrokerStats, EngineError, HistoryPolicy, HistoryRequest,
    Message, Recovery, StreamPosition,
};
use crate::redis::{shard_of, RedisConnections, Topology};
use keys::Keys;
use subscriptions::Lane;

/// What the broker's tasks share.
struct Inner {
    connections: Arc<RedisConnections>,
    keys: Keys,
    publish: crate::redis::Script,
    read: crate::redis::Script,
    renew: crate::redis::Script,
    events: OnceLock<Arc<dyn BrokerEvents>>,
    lanes: Vec<Lane>,
}

impl Inner {
    /// The lane (deployment) holding `channel`.
    fn lane_of(&self, channel: &str) -> usize {
        shard_of(channel, self.lanes.len())
    }

    /// A command connection of lane `index`.
    fn client(&self, index: usize) -> &Client {
        self.connections.shards()[index].pool.next()
    }

    /// Lane `index`'s URL (password redacted).
    fn url(&self, index: usize) -> &str {
        &self.connections.shards()[index].url
    }

    /// A Redis error of lane `index` as the engine reports it.
    fn unavailable(&self, index: usize, error: &fred::error::Error) -> EngineError {
        EngineError::Unavailable(format!("redis {}: {error}", self.url(index)))
    }
}

/// Channel streams in Redis: see the module documentation.
pub struct RedisBroker {
    inner: Arc<Inner>,
}

impl RedisBroker {
    /// A broker on `connections`, its subscriber connections connecting in the background
    /// (a Redis that is down is retried for ever); its tasks run on `tracker` until
    /// `shutdown` fires.
    pub fn start(
        connections: Arc<RedisConnections>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, EngineError> {
        let mut lanes = Vec::new();
        let mut receivers = Vec::new();
        for shard in connections.shards() {
            let subscriber = shard
                .subscriber()
                .map_err(|error| EngineError::Unavailable(error.to_string()))?;
            let (lane, lane_receivers) = Lane::new(subscriber, shard.topology == Topology::Cluster);
            lanes.push(lane);
            receivers.push(lane_receivers);
        }
        let inner = Arc::new(Inner {
            keys: Keys::new(connections.prefix()),
            connections,
            publish: scripts::publish(),
            read: scripts::read(),
            renew: scripts::renew(),
            events: OnceLock::new(),
            lanes,
        });
        for (index, receivers) in receivers.into_iter().enumerate() {
            // The dispatcher listens before the connection opens, so nothing it receives
            // goes by unseen.
            tracker.spawn(dispatch::run(
                inner.clone(),
                index,
                inner.lanes[index].subscriber.message_rx(),
                receivers.notes,
                shutdown.clone(),
            ));
            tracker.spawn(subscriptions::run(
                inner.clone(),
                index,
                receivers.ops,
                shutdown.clone(),
            ));
            tracker.spawn(health::watch(inner.clone(), index, shutdown.clone()));
            // fred's connection task runs (and reconnects) until the watcher's QUIT at
            // shutdown; its handle is not needed.
            drop(inner.lanes[index].subscriber.connect());
        }
        Ok(Self { inner })
    }

    /// Subscribe or unsubscribe `channels`, each in its deployment's lane.
    async fn count(&self, channels: &[Arc<str>], up: bool) -> Result<(), EngineError> {
        let inner = &self.inner;
        let syncs = inner.lanes.iter().enumerate().map(|(index, lane)| {
            let mine = channels.iter().filter(|c| inner.lane_of(c) == index);
            lane.sync(lane.count(mine, up))
        });
        futures_util::future::try_join_all(syncs).await.map(|_| ())
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn register_events(&self, events: Arc<dyn BrokerEvents>) {
        if self.inner.events.set(events).is_err() {
            tracing::error!("a second events handler was registered with the Redis broker");
        }
    }

    async fn subscribe(&self, channels: &[Arc<str>]) -> Result<(), EngineError> {
        self.count(channels, true).await
    }

    async fn unsubscribe(&self, channels: &[Arc<str>]) -> Result<(), EngineError> {
        self.count(channels, false).await
    }

    async fn publish(
        &self,
        channels: &[Arc<str>],
        message: &Arc<Message>,
        history: HistoryPolicy,
    ) -> Result<Vec<StreamPosition>, EngineError> {
        publish::publish(&self.inner, channels, message, history).await
    }

    async fn publish_batch(
        &self,
        batch: &[BatchPublish],
    ) -> Vec<Result<Vec<StreamPosition>, EngineError>> {
        // Each wave's publishes start together, so fred pipelines them on its connections;
        // connections are taken in turn, so a channel's second publish in the batch waits
        // for a later wave to keep the batch's order there. A batch to distinct channels
        // is one wave.
        let mut results: Vec<Option<Result<Vec<StreamPosition>, EngineError>>> =
            batch.iter().map(|_| None).collect();
        for wave in waves(batch) {
            let answers = futures_util::future::join_all(wave.iter().map(|&index| {
                let publish = &batch[index];
                publish::publish(
                    &self.inner,
                    &publish.channels,
                    &publish.message,
                    publish.history,
                )
            }))
            .await;
            for (index, answer) in wave.into_iter().zip(answers) {
                results[index] = Some(answer);
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(EngineError::Unavailable("publish not attempted".into()))
                })
            })
            .collect()
    }

    async fn history(&self, requests: &[HistoryRequest]) -> Result<Vec<Recovery>, EngineError> {
        let inner = &self.inner;
        futures_util::future::try_join_all(requests.iter().map(|request| async move {
            let snapshot = stream::read(
                inner,
                &request.channel,
                request.since.as_ref(),
                request.limit,
            )
            .await?;
            Ok::<_, EngineError>(stream::recovery(request.since.as_ref(), snapshot))
        }))
        .await
    }

    fn stats(&self) -> BrokerStats {
        BrokerStats::default()
    }

    async fn health(&self) -> Result<(), String> {
        health::health(&self.inner).await
    }
}

/// The indexes of `batch` in waves: a publish goes in the wave after the last one that
/// holds any of its channels, so each channel appears at most once per wave, in order.
fn waves(batch: &[BatchPublish]) -> Vec<Vec<usize>> {
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (index, publish) in batch.iter().enumerate() {
        let wave = publish
            .channels
            .iter()
            .filter_map(|channel| last.get(channel.as_ref()).map(|w| w + 1))
            .max()
            .unwrap_or(0);
        for channel in &publish.channels {
            last.insert(channel, wave);
        }
        if waves.len() <= wave {
            waves.resize_with(wave + 1, Vec::new);
        }
        waves[wave].push(index);
    }
    waves
}

#[cfg(test)]
mod tests;
