//! Idempotency keys in Redis, so a retry that lands on another node is answered the same.
//!
//! One string per key, `P:idem:<app>:<key>`: `SET NX` with an empty value and a TTL of
//! [`PENDING_FOR`] claims it; the first try's answer (JSON) replaces it with a TTL of
//! [`WINDOW`]; a failed publish deletes it. A retry that finds it empty waits for the
//! answer, polling, up to [`WAIT_FOR_FIRST`].

use std::sync::Arc;

use async_trait::async_trait;
use fred::interfaces::KeysInterface;
use fred::types::{Expiration, SetOptions, Value};
use tokio::time::Instant;

use crate::engine::idempotency::{
    Claim, Idempotency, Outcome, PENDING_FOR, WAIT_FOR_FIRST, WINDOW,
};
use crate::engine::EngineError;
use crate::redis::RedisConnections;

/// How often a retry looks again whether the first try settled.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Idempotency keys shared by every node: see the module documentation.
pub struct RedisIdempotency {
    connections: Arc<RedisConnections>,
}

impl RedisIdempotency {
    /// Keys on `connections` (each key on the deployment its name hashes to).
    pub fn new(connections: Arc<RedisConnections>) -> Self {
        Self { connections }
    }

    fn name(&self, key: &str) -> String {
        format!("{}:idem:{key}", self.connections.prefix())
    }

    fn pool(&self, key: &str) -> &fred::clients::Pool {
        &self.connections.shard(key).pool
    }

    fn unavailable(&self, key: &str, error: &fred::error::Error) -> EngineError {
        EngineError::Unavailable(format!(
            "redis {}: {error}",
            self.connections.shard(key).url
        ))
    }
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Idempotency for RedisIdempotency {
    async fn claim(&self, key: &str) -> Result<Claim, EngineError> {
        let name = self.name(key);
        let pool = self.pool(key);
        let deadline = Instant::now() + WAIT_FOR_FIRST;
        loop {
            let set: Value = pool
                .set(
                    &name,
                    "",
                    Some(Expiration::PX(millis(PENDING_FOR))),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .map_err(|error| self.unavailable(key, &error))?;
            if !set.is_null() {
                return Ok(Claim::First);
            }
            let held: Option<String> = pool
                .get(&name)
                .await
                .map_err(|error| self.unavailable(key, &error))?;
            match held.as_deref() {
                Some(text) if !text.is_empty() => {
                    return serde_json::from_str(text)
                        .map(Claim::Done)
                        .map_err(|error| {
                            EngineError::Unavailable(format!("idempotency key {name}: {error}"))
                        })
                }
                // Expired between the two commands: claim again at once.
                None => continue,
                Some(_) if Instant::now() >= deadline => return Ok(Claim::Busy),
                Some(_) => tokio::time::sleep(POLL_EVERY).await,
            }
        }
    }

    async fn settle(&self, key: &str, outcome: &Outcome) -> Result<(), EngineError> {
        let text = serde_json::to_string(outcome).map_err(|error| {
            EngineError::Unavailable(format!("answer not serializable: {error}"))
        })?;
        let _: Value = self
            .pool(key)
            .set(
                self.name(key),
                text,
                Some(Expiration::PX(millis(WINDOW))),
                None,
                false,
            )
            .await
            .map_err(|error| self.unavailable(key, &error))?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), EngineError> {
        let _: i64 = self
            .pool(key)
            .del(self.name(key))
            .await
            .map_err(|error| self.unavailable(key, &error))?;
        Ok(())
    }
}
