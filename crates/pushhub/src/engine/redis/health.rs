//! Liveness of one deployment's connections, and the periodic work that keeps
//! subscriptions whole: a `PING` probe of the subscriber connection and of every command
//! connection every [`PROBE_EVERY`] (one that stops answering is reconnected, so a wedged
//! one is found within 10 s: gaps are filled through the command connections, so they
//! must not stay wedged either; on Sentinel, one still on a former master is reopened), a
//! resubscription and gap check after every reconnect, and a stream-top check of every subscribed channel
//! every [`CHECK_EVERY`] (an idle channel whose last publication was lost is filled).

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use futures_util::future::join_all;
use tokio::time::{interval, timeout, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::sentinel::Sentinels;
use super::subscriptions::Op;
use super::Inner;
use crate::redis::Topology;

/// How often the subscriber connection is probed.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// How long a probe may wait for its answer.
const PROBE_WAIT: Duration = Duration::from_secs(3);

/// Probes in a row that may fail before the connection is replaced: with the interval and
/// the wait above, a dead or wedged connection is replaced within about 8 s.
const PROBES_BEFORE_RECONNECT: u32 = 2;

/// How often every subscribed channel's stream top is checked.
const CHECK_EVERY: Duration = Duration::from_secs(8);

/// How long a health check waits for each deployment to answer.
const HEALTH_WAIT: Duration = Duration::from_secs(2);

/// Watch lane `index`'s connections until `shutdown`, then close its subscriber connection.
pub async fn watch(inner: Arc<Inner>, index: usize, shutdown: CancellationToken) {
    let lane = &inner.lanes[index];
    let mut reconnects = lane.subscriber.reconnect_rx();
    let mut reconnects_open = true;
    let mut probe = interval(PROBE_EVERY);
    let mut check = interval(CHECK_EVERY);
    probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Probes in a row each connection (the subscriber, then the pool's) left unanswered.
    let mut failures: Vec<u32> = Vec::new();
    let shard = &inner.connections.shards()[index];
    let sentinels = (shard.topology == Topology::Sentinel)
        .then(|| Sentinels::connect(&shard.url, PROBE_WAIT))
        .flatten();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = timeout(HEALTH_WAIT, lane.subscriber.quit()).await;
                if let Some(sentinels) = &sentinels {
                    let _ = timeout(HEALTH_WAIT, sentinels.quit()).await;
                }
                return;
            }
            event = reconnects.recv(), if reconnects_open => match event {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    tracing::info!(redis = %inner.url(index), "subscriber connected; resubscribing and checking for gaps");
                    lane.send(Op::Reconnected);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => reconnects_open = false,
            },
            _ = probe.tick() => {
                let pool = inner.connections.shards()[index].pool.clients();
                let connections = std::iter::once(lane.subscriber.to_client())
                    .chain(pool.iter().cloned());
                let answers = join_all(connections.map(|client| async move {
                    let answered =
                        matches!(timeout(PROBE_WAIT, client.ping::<Value>(None)).await, Ok(Ok(_)));
                    (client, answered)
                }))
                .await;
                failures.resize(answers.len(), 0);
                if shard.replicas.required() && shard.topology != Topology::Cluster {
                    let role = timeout(PROBE_WAIT, shard.pool.next().custom::<Value, String>(
                        CustomCommand::new_static("ROLE", ClusterHash::FirstKey, false),
                        Vec::new(),
                    ))
                    .await;
                    match role {
                        Ok(Ok(role)) => shard.replicas.observe(&role),
                        _ => shard.replicas.observe(&Value::Null),
                    }
                }
                let master = match &sentinels {
                    Some(sentinels) => sentinels.master(PROBE_WAIT).await,
                    None => None,
                };
                for ((client, answered), failed) in answers.into_iter().zip(failures.iter_mut()) {
                    if let Some(master) = master.as_ref().filter(|m| Sentinels::elsewhere(&client, m)) {
                        tracing::warn!(redis = %inner.url(index), client = %client.id(), master = %format!("{}:{}", master.0, master.1), "the Sentinels name another master; reconnecting");
                        let _ = timeout(PROBE_WAIT, client.force_reconnection()).await;
                        *failed = 0;
                        continue;
                    }
                    if answered {
                        *failed = 0;
                        continue;
                    }
                    *failed += 1;
                    if *failed >= PROBES_BEFORE_RECONNECT {
                        *failed = 0;
                        tracing::warn!(redis = %inner.url(index), client = %client.id(), "connection does not answer; reconnecting");
                        let _ = timeout(PROBE_WAIT, client.force_reconnection()).await;
                    }
                }
            }
            _ = check.tick() => lane.send(Op::Check),
        }
    }
}

/// Whether every deployment answers a `PING` on its command pool and on its subscriber
/// connection; the first one that does not, and why.
pub async fn health(inner: &Inner) -> Result<(), String> {
    for (index, lane) in inner.lanes.iter().enumerate() {
        let url = inner.url(index);
        answers(inner.client(index).ping::<Value>(None), url, "").await?;
        answers(
            lane.subscriber.ping::<Value>(None),
            url,
            " (subscriber connection)",
        )
        .await?;
    }
    Ok(())
}

/// Whether `ping` is answered within [`HEALTH_WAIT`].
async fn answers(
    ping: impl std::future::Future<Output = Result<Value, fred::error::Error>>,
    url: &str,
    which: &str,
) -> Result<(), String> {
    match timeout(HEALTH_WAIT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("redis {url}{which}: {error}")),
        Err(_) => Err(format!(
            "redis {url}{which}: no answer within {} ms",
            HEALTH_WAIT.as_millis()
        )),
    }
}
