//! Liveness of one deployment's subscriber connection, and the periodic work that keeps
//! subscriptions whole: a `PING` probe every [`PROBE_EVERY`] (a connection that stops
//! answering is reconnected, so a wedged one is found within 10 s), a resubscription and
//! gap check after every reconnect, and a stream-top check of every subscribed channel
//! every [`CHECK_EVERY`] (an idle channel whose last publication was lost is filled).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface};
use fred::types::Value;
use tokio::time::{interval, timeout, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::subscriptions::Op;
use super::Inner;

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

/// Watch lane `index` until `shutdown`, then close its subscriber connection.
pub async fn watch(inner: Arc<Inner>, index: usize, shutdown: CancellationToken) {
    let lane = &inner.lanes[index];
    let mut reconnects = lane.subscriber.reconnect_rx();
    let mut reconnects_open = true;
    let mut probe = interval(PROBE_EVERY);
    let mut check = interval(CHECK_EVERY);
    probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failures = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = timeout(HEALTH_WAIT, lane.subscriber.quit()).await;
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
                let answered = matches!(timeout(PROBE_WAIT, lane.subscriber.ping::<Value>(None)).await, Ok(Ok(_)));
                lane.listening.store(answered, Ordering::Relaxed);
                if answered {
                    failures = 0;
                } else {
                    failures += 1;
                    if failures >= PROBES_BEFORE_RECONNECT {
                        failures = 0;
                        tracing::warn!(redis = %inner.url(index), "subscriber connection does not answer; reconnecting");
                        let _ = timeout(PROBE_WAIT, lane.subscriber.force_reconnection()).await;
                    }
                }
            }
            _ = check.tick() => lane.send(Op::Check),
        }
    }
}

/// Whether every deployment answers a `PING` on its command pool and its subscriber
/// connection answered its last probe; the first one that does not, and why.
pub async fn health(inner: &Inner) -> Result<(), String> {
    for (index, lane) in inner.lanes.iter().enumerate() {
        let ping = timeout(HEALTH_WAIT, inner.client(index).ping::<Value>(None)).await;
        match ping {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(format!("redis {}: {error}", inner.url(index))),
            Err(_) => {
                return Err(format!(
                    "redis {}: no answer within {} ms",
                    inner.url(index),
                    HEALTH_WAIT.as_millis()
                ))
            }
        }
        if !lane.listening.load(Ordering::Relaxed) {
            return Err(format!(
                "redis {}: the subscriber connection does not answer",
                inner.url(index)
            ));
        }
    }
    Ok(())
}
