//! The dispatcher of a store shared by several nodes: claim due timers instead of
//! scheduling them, and keep the leases of calls in flight.
//!
//! Timers created on other nodes are found by polling the store's due index every
//! [`POLL`] (one cheap script per node, whatever the number of timers), not by a pub/sub
//! wake-up: a poll cannot be missed the way a message sent while a subscription
//! connection reconnects can, and it also finds timers whose lease ran out, which no
//! message announces. Between polls the dispatcher sleeps until the earliest due time it
//! was told of, so timers fire on time; a timer created on this node wakes it at once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dispatch::make_attempt;
use super::{unix_ms, Inner};
use crate::store::TimerClaims;

/// Longest wait between claims: a timer created on another node fires within this of
/// its due time.
pub(super) const POLL: Duration = Duration::from_millis(200);

/// Most timers claimed in one round trip.
const CLAIM_BATCH: usize = 200;

/// How long the dispatcher waits after the store failed (Redis away).
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Until `shutdown`: take the free call slots, claim as many due timers, and start each
/// one's attempt on a task of its own (tracked by `in_flight`).
pub(super) async fn dispatch(
    inner: Arc<Inner>,
    claims: Arc<dyn TimerClaims>,
    shutdown: CancellationToken,
    in_flight: TaskTracker,
) {
    let mut failing = false;
    loop {
        let first = tokio::select! {
            slot = inner.slots.clone().acquire_owned() => slot,
            _ = shutdown.cancelled() => return,
        };
        let Ok(first) = first else { return };
        let mut slots = vec![first];
        while slots.len() < CLAIM_BATCH {
            match inner.slots.clone().try_acquire_owned() {
                Ok(slot) => slots.push(slot),
                Err(_) => break,
            }
        }
        let now = unix_ms();
        let wait = match claims.claim_due(now, slots.len()).await {
            Ok(claimed) => {
                if failing {
                    tracing::info!("the timer store answers again: claiming due timers");
                    failing = false;
                }
                inner.shared_pending.store(claimed.pending, Relaxed);
                let full = claimed.timers.len() == slots.len();
                for timer in claimed.timers {
                    let Some(slot) = slots.pop() else { break };
                    in_flight.spawn(make_attempt(inner.clone(), timer, slot));
                }
                match (full, claimed.next_due_ms) {
                    (true, _) => Duration::ZERO,
                    (false, Some(due)) => Duration::from_millis(due.saturating_sub(now)).min(POLL),
                    (false, None) => POLL,
                }
            }
            Err(error) => {
                inner.counters.store_errors.fetch_add(1, Relaxed);
                if !failing {
                    tracing::error!(%error, "cannot claim due timers; trying again every second");
                    failing = true;
                }
                STORE_RETRY
            }
        };
        drop(slots);
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Until `stop` (the calls in flight are over): renew the store's leases every third of
/// the lease. Nothing to do for a store that is not shared.
pub(super) async fn renew(inner: Arc<Inner>, stop: CancellationToken) {
    let Some(claims) = inner.claims.clone() else {
        return;
    };
    let mut every = tokio::time::interval(claims.lease() / 3);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(error) = claims.renew_leases(unix_ms()).await {
            tracing::warn!(%error, "cannot renew the leases of calls in flight; trying again");
        }
    }
}
