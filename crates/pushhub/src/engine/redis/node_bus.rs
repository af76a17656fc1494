//! The node bus on Redis: one pub/sub channel, `P:nodes`, that every node subscribes to.
//!
//! A command travels as `{"from":"<node>","command":{…}}`; each node skips its own and
//! hands the others' to its hub one at a time, in the order Redis delivered them. A
//! command published while a node's subscription connection is down does not reach that
//! node (pub/sub keeps nothing): the commands are about connections, and a node that
//! cannot hear Redis gets its clients' reconnects (and so their fresh state) anyway.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{EngineError, NodeBus, NodeCommand, NodeEvents};
use crate::node::node_id;
use crate::redis::RedisConnections;

/// Wait between attempts to subscribe while Redis is unreachable.
const RETRY_SUBSCRIBE: Duration = Duration::from_secs(1);

/// What goes over the channel.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    command: NodeCommand,
}

/// Commands to other nodes over Redis pub/sub.
pub struct RedisNodeBus {
    connections: Arc<RedisConnections>,
    channel: String,
    events: OnceLock<Arc<dyn NodeEvents>>,
    /// True once the first subscription is in place.
    subscribed: tokio::sync::watch::Sender<bool>,
}

impl RedisNodeBus {
    /// A bus over `connections`, listening on its own subscriber connection (on `tracker`,
    /// until `shutdown`).
    pub fn start(
        connections: Arc<RedisConnections>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let bus = Arc::new(Self {
            channel: format!("{}:nodes", connections.prefix()),
            connections,
            events: OnceLock::new(),
            subscribed: tokio::sync::watch::Sender::new(false),
        });
        match bus.connections.shards()[0].subscriber() {
            Ok(subscriber) => {
                tracker.spawn(bus.clone().listen(subscriber, shutdown));
            }
            Err(error) => tracing::error!(%error, "node bus: no subscriber connection"),
        }
        bus
    }

    /// Subscribe (retrying while Redis is away), then hand every other node's command to
    /// the hub until `shutdown`; resubscribe after each reconnection.
    async fn listen(self: Arc<Self>, subscriber: SubscriberClient, shutdown: CancellationToken) {
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let _connection = subscriber.connect();
        loop {
            let subscribed = async {
                subscriber.wait_for_connect().await?;
                subscriber.subscribe(self.channel.as_str()).await
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = subscriber.quit().await;
                    return;
                }
                result = subscribed => match result {
                    Ok(()) => {
                        self.subscribed.send_replace(true);
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "node bus: cannot subscribe yet; retrying");
                        tokio::time::sleep(RETRY_SUBSCRIBE).await;
                    }
                }
            }
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                message = messages.recv() => match message {
                    Ok(message) => self.hand_over(message.value.as_str().as_deref()).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "node bus fell behind; commands lost");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                reconnected = reconnects.recv() => {
                    if reconnected.is_ok() {
                        if let Err(error) = subscriber.subscribe(self.channel.as_str()).await {
                            tracing::warn!(%error, "node bus: resubscribe failed");
                        }
                    }
                }
            }
        }
        let _ = subscriber.quit().await;
    }

    /// Give one received payload to the hub, unless it is this node's own or unreadable.
    async fn hand_over(&self, payload: Option<&str>) {
        let Some(envelope) = payload.and_then(|text| serde_json::from_str::<Envelope>(text).ok())
        else {
            tracing::warn!("node bus: ignored a message that is not a node command");
            return;
        };
        if envelope.from == node_id() {
            return;
        }
        if let Some(events) = self.events.get() {
            events.command(envelope.command).await;
        }
    }
}

#[async_trait]
impl NodeBus for RedisNodeBus {
    fn register_events(&self, events: Arc<dyn NodeEvents>) {
        let _ = self.events.set(events);
    }

    async fn send(&self, command: &NodeCommand) -> Result<(), EngineError> {
        let payload = serde_json::to_string(&Envelope {
            from: node_id().to_owned(),
            command: command.clone(),
        })
        .map_err(|e| EngineError::Unavailable(format!("node bus: {e}")))?;
        self.connections.shards()[0]
            .pool
            .next()
            .publish::<i64, _, _>(self.channel.as_str(), payload)
            .await
            .map(drop)
            .map_err(|e| EngineError::Unavailable(format!("node bus: {e}")))
    }

    async fn ready(&self, wait: Duration) -> bool {
        let mut subscribed = self.subscribed.subscribe();
        let ready = tokio::time::timeout(wait, subscribed.wait_for(|on| *on)).await;
        matches!(ready, Ok(Ok(_)))
    }
}
