//! The dispatcher loop, one attempt's task, and the retention purge.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::{self, Verdict};
use super::executor::{ATTEMPT_HEADER, TIMER_ID_HEADER};
use super::interval;
use super::log::LogLine;
use super::{unix_ms, Inner};
use crate::store::{Attempt, Next, StoreError, Timer, TimerId, TimerState};
use crate::sync::lock;

/// Longest sleep between looks at the schedule, so a wall-clock step is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How long a timer waits after the store failed to start its attempt.
const STORE_RETRY_MS: u64 = 1000;

/// How often finished timers past retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Most timers purged per store write, so a purge never holds the writer for long.
const PURGE_BATCH: usize = 10_000;

/// Until `shutdown`: take a call slot, wait for the earliest due timer, and start its
/// attempt on a task of its own (tracked by `in_flight`). Taking the slot first keeps
/// timers in the schedule, in due order, while every slot is busy.
pub(super) async fn dispatch(
    inner: Arc<Inner>,
    shutdown: CancellationToken,
    in_flight: TaskTracker,
) {
    loop {
        let slot = tokio::select! {
            slot = inner.slots.clone().acquire_owned() => slot,
            _ = shutdown.cancelled() => return,
        };
        let Ok(slot) = slot else { return };
        let Some(id) = next_due(&inner, &shutdown).await else {
            return;
        };
        in_flight.spawn(attempt(inner.clone(), id, slot));
    }
}

/// The next timer whose time has come, or `None` at shutdown.
async fn next_due(inner: &Inner, shutdown: &CancellationToken) -> Option<TimerId> {
    loop {
        let now = unix_ms();
        let wait = {
            let mut schedule = lock(&inner.schedule);
            if let Some((_, id)) = schedule.pop_due(now) {
                return Some(id);
            }
            schedule.next_due().map_or(MAX_SLEEP, |due| {
                Duration::from_millis(due - now).min(MAX_SLEEP)
            })
        };
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
}

/// One attempt of timer `id`, holding one call slot throughout.
async fn attempt(inner: Arc<Inner>, id: TimerId, slot: OwnedSemaphorePermit) {
    let timer = match inner.store.begin_attempt(id).await {
        Ok(Some(timer)) => timer,
        // Cancelled since it was scheduled.
        Ok(None) => return,
        Err(StoreError::Closed) => return,
        // The store is no longer used (the latch logged why, once): the timer stays in
        // the file, for after the repair, instead of being retried against it.
        Err(StoreError::Damaged { .. }) => {
            inner.counters.store_errors.fetch_add(1, Relaxed);
            return;
        }
        Err(error) => {
            tracing::error!(%error, timer = id, "cannot start a timer's attempt; trying again in 1 s");
            inner.counters.store_errors.fetch_add(1, Relaxed);
            inner.schedule(unix_ms() + STORE_RETRY_MS, id);
            return;
        }
    };
    make_attempt(inner, timer, slot).await;
}

/// The attempt of `timer`, started in the store (it is `running`, its attempt counted),
/// holding one call slot throughout: make the call, log it, store what comes next.
pub(super) async fn make_attempt(inner: Arc<Inner>, timer: Timer, _slot: OwnedSemaphorePermit) {
    let id = timer.id;
    inner.counters.attempts.fetch_add(1, Relaxed);
    inner.counters.running.fetch_add(1, Relaxed);
    let started_ms = unix_ms();
    let marks = [
        (TIMER_ID_HEADER, id.to_string()),
        (ATTEMPT_HEADER, timer.attempts.to_string()),
    ];
    let result = inner.executor.call("timer", &timer.request, &marks).await;
    inner.counters.running.fetch_sub(1, Relaxed);
    let now = unix_ms();
    let verdict = match result.refused {
        true => Verdict::Final,
        false => backoff::judge(result.status),
    };
    let next = match &timer.interval {
        Some(ticks) => interval::next(
            ticks,
            timer.due_ms,
            timer.attempts,
            verdict,
            result.refused,
            now,
        ),
        None => backoff::next(&timer.retry, timer.attempts, verdict, now, fastrand::f64()),
    };
    let attempt_ms = u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX);
    let attempt = Attempt {
        number: timer.attempts,
        started_ms,
        duration_ms: attempt_ms,
        status: result.status,
        error: result.error.clone().or_else(|| {
            (verdict != Verdict::Success)
                .then(|| format!("HTTP {}", result.status.unwrap_or_default()))
        }),
        response: result.response(),
    };
    let stored = inner.store.finish_attempt(id, attempt, next, now).await;
    let label = match (&stored, next) {
        // A cancel while the call ran wins over what the answer called for.
        (Ok(Some(TimerState::Cancelled)), _) => "cancelled",
        (_, Next::Succeeded) => "succeeded",
        (_, Next::Failed) => "failed",
        (_, Next::Retry { .. }) => "retry",
    };
    inner.log.record_call(
        LogLine {
            ts: started_ms,
            timer: Some(id),
            app: &timer.app,
            attempt: timer.interval.is_none().then_some(timer.attempts),
            tick: timer.interval.is_some().then_some(timer.attempts),
            method: &timer.request.method,
            url: &timer.request.url,
            status: result.status,
            error: result.error.as_deref(),
            duration_ms: attempt_ms,
            next: label,
            ..LogLine::default()
        },
        &result,
    );
    match stored {
        Ok(Some(TimerState::Succeeded)) => drop(inner.counters.succeeded.fetch_add(1, Relaxed)),
        Ok(Some(TimerState::Failed)) => drop(inner.counters.failed.fetch_add(1, Relaxed)),
        Ok(Some(TimerState::Pending)) => {
            if let Next::Retry { due_ms } = next {
                if timer.interval.is_none() {
                    inner.counters.retries.fetch_add(1, Relaxed);
                }
                inner.schedule(due_ms, id);
            }
        }
        Ok(_) | Err(StoreError::Closed) => {}
        Err(StoreError::Damaged { .. }) => drop(inner.counters.store_errors.fetch_add(1, Relaxed)),
        Err(error) => {
            inner.counters.store_errors.fetch_add(1, Relaxed);
            tracing::error!(%error, timer = id, "cannot store a timer's result: it stays running until a restart makes the call again");
        }
    }
}

/// Every [`PURGE_EVERY`] until `shutdown`: remove finished timers older than retention.
pub(super) async fn purge(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let retention = u64::try_from(inner.settings.retention.as_millis()).unwrap_or(u64::MAX);
        let before = unix_ms().saturating_sub(retention);
        loop {
            match inner.store.purge(before, PURGE_BATCH).await {
                Ok(n) if n == PURGE_BATCH => continue,
                Ok(0) => break,
                Ok(n) => {
                    tracing::debug!(timers = n, "purged finished timers past retention");
                    break;
                }
                Err(StoreError::Damaged { .. }) => break,
                Err(error) => {
                    tracing::warn!(%error, "purging finished timers failed; trying again later");
                    break;
                }
            }
        }
    }
}
