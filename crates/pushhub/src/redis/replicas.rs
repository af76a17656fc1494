//! Waiting for replicas to hold a write before it is answered. Redis replicates
//! asynchronously: a master that answered a write and then failed over before its
//! replicas copied it takes the write with it, and the old master even keeps accepting
//! writes for a moment after Sentinel promoted a replica, then drops them when it becomes
//! a replica itself. `WAIT` after the write closes that window for the writes that must not
//! be lost once accepted (publishes, timers): the write is answered only when every
//! replica Sentinel could promote holds it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};

/// How many replicas a write must reach before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaCount {
    /// Every replica the master has (at least one): any of them may be promoted, so a
    /// write only some of them hold can be lost to a failover.
    All,
    /// This many (0: answer at once, as Redis does).
    Exactly(u32),
}

/// A deployment's replica requirement, and how many replicas its master was last seen
/// with: a master known to have too few is refused before anything is written, so a push
/// refused then is not delivered later either (a write that waited in vain stays in the
/// master's stream).
#[derive(Debug)]
pub struct Replicas {
    wanted: ReplicaCount,
    timeout: Duration,
    /// Replicas the master listed last (`ROLE`); `u32::MAX` while unknown.
    connected: AtomicU32,
}

/// Why a write could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    /// Redis could not be asked (disconnected, timed out).
    #[error(transparent)]
    Redis(#[from] fred::error::Error),
    /// The master has fewer replicas connected than the write must reach: refused
    /// before it was written.
    #[error("the master has {connected} replica(s) connected and a write must reach {wanted}; nothing was written")]
    TooFewReplicas {
        /// Replicas the master listed.
        connected: u32,
        /// Replicas a write must reach.
        wanted: u32,
    },
    /// Too few replicas held it in time: it is on the master, but a failover now could
    /// lose it.
    #[error("held by {acked} of the {wanted} replica(s) it must reach within {timeout_ms} ms")]
    Unconfirmed {
        /// Replicas that acknowledged it.
        acked: i64,
        /// Replicas it had to reach.
        wanted: u32,
        /// How long it waited.
        timeout_ms: u128,
    },
}

impl Replicas {
    /// A requirement, with the master's replicas not seen yet.
    pub fn new(wanted: ReplicaCount, timeout: Duration) -> Self {
        Self {
            wanted,
            timeout,
            connected: AtomicU32::new(u32::MAX),
        }
    }

    /// True when writes wait for replicas at all.
    pub fn required(&self) -> bool {
        self.wanted != ReplicaCount::Exactly(0)
    }

    /// Record what the master answered to `ROLE` (`["master", offset, [[ip, port,
    /// offset]…]]`); any other answer (a replica, a failure) leaves the count unknown, so
    /// writes are tried and the wait decides.
    pub fn observe(&self, role: &Value) {
        let connected = match role {
            Value::Array(parts)
                if parts.first().and_then(Value::as_str).as_deref() == Some("master") =>
            {
                match parts.get(2) {
                    Some(Value::Array(replicas)) => {
                        u32::try_from(replicas.len()).unwrap_or(u32::MAX)
                    }
                    _ => 0,
                }
            }
            _ => u32::MAX,
        };
        self.connected.store(connected, Ordering::Relaxed);
    }

    /// How many replicas the next write must reach, or its refusal (before anything is
    /// written) when the master was last seen with fewer.
    pub fn ready(&self) -> Result<u32, ConfirmError> {
        let connected = self.connected.load(Ordering::Relaxed);
        let wanted = match self.wanted {
            ReplicaCount::Exactly(n) => n,
            ReplicaCount::All if connected == u32::MAX => 1,
            ReplicaCount::All => connected.max(1),
        };
        if wanted == 0 || connected == u32::MAX || connected >= wanted {
            return Ok(wanted);
        }
        Err(ConfirmError::TooFewReplicas { connected, wanted })
    }

    /// Wait until the writes `client` sent so far (on its one connection, which must be
    /// the one that wrote) are held by `wanted` replicas (from [`ready`](Self::ready)).
    /// `key` is a key the write touched: on a Cluster it routes the wait to the master
    /// that owns it. Refused at once while the connection is down: a wait run on a new
    /// connection would confirm nothing it wrote.
    pub async fn confirm(
        &self,
        client: &Client,
        key: &str,
        wanted: u32,
    ) -> Result<(), ConfirmError> {
        if wanted == 0 {
            return Ok(());
        }
        let once = client.with_options(&Options {
            fail_fast: true,
            timeout: Some(self.timeout + client.perf_config().default_command_timeout),
            ..Options::default()
        });
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let acked: Value = once
            .custom(
                CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false),
                vec![
                    i64::from(wanted),
                    i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        let acked = acked.as_i64().unwrap_or(0);
        if acked >= i64::from(wanted) {
            Ok(())
        } else {
            Err(ConfirmError::Unconfirmed {
                acked,
                wanted,
                timeout_ms: self.timeout.as_millis(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(replicas: usize) -> Value {
        let replica = Value::Array(vec!["127.0.0.1".into(), "7001".into(), "42".into()]);
        Value::Array(vec![
            "master".into(),
            42.into(),
            Value::Array(vec![replica; replicas]),
        ])
    }

    #[test]
    fn all_means_every_replica_the_master_has_and_at_least_one() {
        let replicas = Replicas::new(ReplicaCount::All, Duration::from_millis(500));
        assert_eq!(
            replicas.ready().unwrap(),
            1,
            "unknown yet: one, and the wait decides"
        );
        replicas.observe(&role(2));
        assert_eq!(replicas.ready().unwrap(), 2);
        replicas.observe(&role(0));
        assert!(matches!(
            replicas.ready(),
            Err(ConfirmError::TooFewReplicas {
                connected: 0,
                wanted: 1
            })
        ));
        replicas.observe(&Value::Null);
        assert_eq!(replicas.ready().unwrap(), 1, "a failed probe knows nothing");
    }

    #[test]
    fn a_number_is_that_many() {
        let replicas = Replicas::new(ReplicaCount::Exactly(2), Duration::from_millis(500));
        replicas.observe(&role(1));
        assert!(matches!(
            replicas.ready(),
            Err(ConfirmError::TooFewReplicas {
                connected: 1,
                wanted: 2
            })
        ));
        replicas.observe(&role(3));
        assert_eq!(replicas.ready().unwrap(), 2);
        let none = Replicas::new(ReplicaCount::Exactly(0), Duration::from_millis(500));
        none.observe(&role(0));
        assert!(!none.required());
        assert_eq!(none.ready().unwrap(), 0);
    }
}
