//! The connections built from [`RedisSettings`]: one pool per configured deployment.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Pool, SubscriberClient};
use fred::prelude::{Builder, ClientLike};
use fred::types::config::{Config, ReconnectPolicy, UnresponsiveConfig};

use super::replicas::Replicas;
use super::settings::{redact, RedisSettings, Topology};
use super::shards::shard_of;

/// Longest wait between reconnection attempts: a returning Redis is found within this.
const MAX_RECONNECT_DELAY_MS: u32 = 1_000;

/// A connection that has not answered for this long is closed and reopened (fred's
/// unresponsive check): a wedged connection is a known way to lose messages silently.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(5);

/// Messages a subscriber connection holds for its reader (fred's default is 32): a
/// reader that falls further behind loses messages and must read them back from the
/// streams, so a burst must fit.
const SUBSCRIBER_BUFFER: usize = 8_192;

/// Why the connections could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// A URL fred cannot use (configuration validation catches these first).
    #[error("redis URL {url}: {reason}")]
    BadUrl {
        /// The URL, password redacted.
        url: String,
        /// What fred said.
        reason: String,
    },
}

/// One independent Redis deployment: its pool for commands, and what builds more clients
/// (a subscriber connection) with the same settings.
pub struct Shard {
    /// The URL, password redacted, for logs and health reports.
    pub url: String,
    /// What kind of deployment it is.
    pub topology: Topology,
    /// Connections for commands; concurrent commands are pipelined on them.
    pub pool: Pool,
    /// How many replicas must hold a publish before it is answered, and how many the
    /// master has.
    pub replicas: Arc<Replicas>,
    builder: Builder,
}

impl Shard {
    /// A new subscriber client for this deployment (not connected yet): fred keeps its
    /// subscriptions across reconnects, and routes sharded subscriptions to the cluster
    /// node owning each channel's slot.
    pub fn subscriber(&self) -> Result<SubscriberClient, RedisSetupError> {
        let mut builder = self.builder.clone();
        builder.with_performance_config(|performance| {
            performance.broadcast_channel_capacity = SUBSCRIBER_BUFFER;
        });
        builder
            .build_subscriber_client()
            .map_err(|error| RedisSetupError::BadUrl {
                url: self.url.clone(),
                reason: error.details().to_owned(),
            })
    }
}

/// Every configured deployment, and the key prefix they are used with.
pub struct RedisConnections {
    shards: Vec<Shard>,
    prefix: String,
    presence_ttl: Duration,
}

impl RedisConnections {
    /// Build a pool per URL of `settings` (nothing connects until [`connect`](Self::connect)).
    pub fn build(settings: &RedisSettings) -> Result<Self, RedisSetupError> {
        let mut shards = Vec::with_capacity(settings.urls.len());
        for url in &settings.urls {
            let shown = redact(url);
            let bad = |reason: String| RedisSetupError::BadUrl {
                url: shown.clone(),
                reason,
            };
            let topology = RedisSettings::topology(url).map_err(bad)?;
            let mut config = Config::from_url(url).map_err(|e| bad(e.details().to_owned()))?;
            // A Redis that is down when a connection is first made is retried like one that
            // went away later (fred gives up on a failed first connection by default).
            config.fail_fast = false;
            let mut builder = Builder::from_config(config);
            builder
                .with_connection_config(|connection| {
                    connection.connection_timeout = settings.command_timeout;
                    connection.internal_command_timeout = settings.command_timeout;
                    connection.unresponsive = UnresponsiveConfig {
                        max_timeout: Some(UNRESPONSIVE_AFTER),
                        interval: Duration::from_secs(1),
                    };
                })
                .with_performance_config(|performance| {
                    performance.default_command_timeout = settings.command_timeout;
                })
                .set_policy(ReconnectPolicy::new_exponential(
                    0,
                    50,
                    MAX_RECONNECT_DELAY_MS,
                    2,
                ));
            let pool = builder
                .build_pool(settings.pool_size.max(1))
                .map_err(|e| bad(e.details().to_owned()))?;
            shards.push(Shard {
                url: shown,
                topology,
                pool,
                replicas: Arc::new(Replicas::new(
                    settings.replicas_for(topology),
                    settings.replicas_ack_timeout,
                )),
                builder,
            });
        }
        Ok(Self {
            shards,
            prefix: settings.prefix.clone(),
            presence_ttl: settings.presence_ttl,
        })
    }

    /// Start connecting every pool (in the background, reconnecting for ever), and wait
    /// up to `wait` for the first connections; returns the deployments still unreachable
    /// then (the server starts anyway and reports them as unhealthy).
    pub async fn connect(&self, wait: Duration) -> Vec<String> {
        for shard in &self.shards {
            shard.pool.connect_pool();
        }
        let mut unreachable = Vec::new();
        for shard in &self.shards {
            let connected = tokio::time::timeout(wait, shard.pool.wait_for_connect()).await;
            if !matches!(connected, Ok(Ok(()))) {
                unreachable.push(shard.url.clone());
            }
        }
        unreachable
    }

    /// Close every connection (at shutdown).
    pub async fn quit(&self) {
        for shard in &self.shards {
            let _ = shard.pool.quit().await;
        }
    }

    /// The deployment that holds `key` (a channel name, a user's presence key): always
    /// the same one on every node.
    pub fn shard(&self, key: &str) -> &Shard {
        &self.shards[shard_of(key, self.shards.len())]
    }

    /// Every deployment, in configuration order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// How long a node's presence outlives its last heartbeat (`[redis] presence_ttl`).
    pub fn presence_ttl(&self) -> Duration {
        self.presence_ttl
    }

    /// The key prefix (no trailing separator).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each configured deployment gets its own pool, connected, and keys always go to the
    /// same one.
    #[tokio::test]
    async fn connects_to_every_deployment_and_routes_keys_stably() {
        let (Some(one), Some(two)) = (
            pushhub_testkit::RedisServer::start(),
            pushhub_testkit::RedisServer::start(),
        ) else {
            return;
        };
        let settings = RedisSettings {
            urls: vec![one.url(), two.url()],
            ..RedisSettings::default()
        };
        let connections = RedisConnections::build(&settings).unwrap();
        assert!(connections.connect(Duration::from_secs(5)).await.is_empty());
        for shard in connections.shards() {
            let pong: String = shard.pool.ping(None).await.unwrap();
            assert_eq!(pong, "PONG");
            assert_eq!(shard.topology, Topology::Standalone);
        }
        let first = connections.shard("wms:user:1").url.clone();
        assert_eq!(connections.shard("wms:user:1").url, first);
        connections.quit().await;
    }

    /// A Redis that is not there is reported, not waited for for ever.
    #[tokio::test]
    async fn an_unreachable_redis_is_reported_after_the_wait() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = RedisSettings {
            urls: vec![format!("redis://:secret@127.0.0.1:{port}/0")],
            ..RedisSettings::default()
        };
        let connections = RedisConnections::build(&settings).unwrap();
        let unreachable = connections.connect(Duration::from_millis(300)).await;
        assert_eq!(unreachable, [format!("redis://:***@127.0.0.1:{port}/0")]);
    }
}
