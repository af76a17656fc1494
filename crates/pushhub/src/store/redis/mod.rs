//! The timer and cron store of a cluster: every node keeps its timers and jobs in Redis,
//! and any node may fire any of them.
//!
//! Records and indexes are laid out in [`scripts`]; every change that reads before it
//! writes is one Lua script (or, for jobs, a compare-and-set script around
//! [`JobChange::apply`](super::JobChange::apply)), so two nodes never both move one timer
//! or one job. Ids come from one Redis counter, so they are unique across nodes, and
//! idempotency keys are one Redis hash, so they are global.
//!
//! **Claims and leases.** A node that starts a call (a timer's attempt, a cron run)
//! holds a lease on it until now + `[redis] lease`, renewed every third of the lease
//! while the call is in flight ([`leases`]). A node killed mid-call stops renewing; once
//! its lease has run out, another node claims the timer (the call is made again: at
//! least once, with `X-Pushhub-Timer-Id` to drop repeats) or counts the job's run as
//! cut off and makes it up with a catch-up run. A node that stops cleanly lets its
//! leases run out at once.
//!
//! Durability is Redis's: with `appendonly yes` and `appendfsync always` an answered
//! change survives a Redis crash; with `everysec`, up to a second of changes may be lost
//! (docs/operations.md).

mod codec;
mod jobs;
mod leases;
mod scripts;
mod timers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::clients::Pool;
use fred::types::Value;

use super::{StoreError, Stores};
use crate::redis::{ConfirmError, RedisConnections, Replicas, Script};
use leases::Held;

/// Timers and cron jobs in Redis, shared by every node on the same Redis and prefix.
pub struct RedisStore {
    pool: Pool,
    /// The replicas every script's writes must reach before they count (a failover
    /// would otherwise lose a timer just created, or a claim, and fire it twice).
    replicas: Arc<Replicas>,
    /// `{prefix}:{sched}`: one hash tag, so a Redis Cluster keeps every key in one slot
    /// and the scripts may touch them together.
    base: String,
    /// This store's name in leases: the node's name and a random part, so two stores of
    /// one process (tests) are two owners too.
    owner: String,
    lease: Duration,
    held: Held,
    closed: AtomicBool,
}

impl RedisStore {
    /// A store on `connections` (the deployment that holds the key `sched`, when there
    /// are several), whose calls hold leases of `lease`.
    pub fn new(connections: &RedisConnections, lease: Duration) -> Self {
        let shard = connections.shard("sched");
        Self {
            pool: shard.pool.clone(),
            replicas: shard.replicas.clone(),
            base: format!("{}:{{sched}}", connections.prefix()),
            owner: format!("{}-{:08x}", crate::node::node_id(), fastrand::u32(..)),
            lease,
            held: Held::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// The timer and job stores of one Redis store, with their claiming capabilities.
    pub fn stores(self: Arc<Self>) -> Stores {
        Stores {
            timers: self.clone(),
            jobs: self.clone(),
            claims: Some(self.clone()),
            job_claims: Some(self),
        }
    }

    fn check_open(&self) -> Result<(), StoreError> {
        match self.closed.load(Ordering::Acquire) {
            true => Err(StoreError::Closed),
            false => Ok(()),
        }
    }

    /// When a lease taken now ends, in Unix milliseconds.
    fn lease_end(&self, now_ms: u64) -> u64 {
        now_ms + u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX / 2)
    }

    /// Run `script` with the key base first among its arguments, and as its one declared
    /// key so a Redis Cluster routes it to the node owning the slot; answered once the
    /// required replicas hold what it wrote.
    async fn eval(&self, script: &Script, args: Vec<String>) -> Result<Value, StoreError> {
        self.check_open()?;
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.base.clone());
        all.extend(args);
        let unconfirmed = |error: ConfirmError| StoreError::Backend(format!("redis: {error}"));
        let wanted = self.replicas.ready().map_err(unconfirmed)?;
        let client = self.pool.next();
        let value = script
            .run(client, vec![self.base.clone()], all)
            .await
            .map_err(backend)?;
        self.replicas
            .confirm(client, &self.base, wanted)
            .await
            .map_err(unconfirmed)?;
        Ok(value)
    }
}

/// A Redis failure as the store reports it.
fn backend(error: fred::error::Error) -> StoreError {
    StoreError::Backend(format!("redis: {error}"))
}

#[cfg(test)]
mod tests;
