//! Connections to Redis (or Valkey), shared by everything that keeps cluster state there:
//! the Redis engine (channel streams, presence) and the Redis timer store.
//!
//! What is configured ([`RedisSettings`]: plain data, validated with the rest of the
//! configuration) is kept apart from what is connected ([`RedisConnections`], built once
//! at start). One configured URL is one deployment of Redis — a standalone server, a
//! Sentinel-watched master, or a Redis Cluster, written the way fred reads them — and
//! several URLs are independent deployments that channels are spread over by a consistent
//! hash ([`shard_of`]), for when one Redis cannot carry all the traffic.
//!
//! fred (not redis-rs) because it does what a long-lived server needs out of the box:
//! reconnection with backoff, automatic pipelining of concurrent commands on one
//! connection, Sentinel discovery and failover, cluster slot routing with sharded pub/sub
//! (`SSUBSCRIBE`), a subscriber client that resubscribes after a reconnect, and detection
//! of unresponsive connections.

mod connections;
mod replicas;
mod script;
mod settings;
mod shards;

pub use connections::{RedisConnections, RedisSetupError, Shard};
pub use replicas::{ConfirmError, ReplicaCount, Replicas};
pub use script::Script;
pub use settings::{RedisSettings, Topology};
pub use shards::shard_of;
