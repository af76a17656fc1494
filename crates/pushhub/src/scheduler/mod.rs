//! Durable delayed HTTP callbacks and cron jobs: the schedules, the dispatchers, and
//! the calls.
//!
//! [`Timers`] is what the API talks to: it writes a timer to the [`TimerStore`] (durably,
//! before answering) and puts it in the in-memory [`Schedule`]. [`Timers::run`] is the
//! dispatcher: it sleeps until the earliest timer is due, takes a slot of the global
//! concurrency bound, and hands the timer to a task of its own, which marks it running,
//! makes the call ([`executor`]), logs it ([`log`]), and stores the result and what comes
//! next (a retry goes back into the schedule). The dispatcher never waits for a call, so a
//! slow or dead target only holds its own slot.
//!
//! Delivery is at least once: a crash or a shutdown that outlasts the grace period leaves
//! attempts in flight `running` in the store, and they are made again after the restart.
//! The `X-Pushhub-Timer-Id` header lets targets drop repeats.
//!
//! **Shared stores.** When the store is shared by several nodes (Redis: [`TimerClaims`]),
//! no node schedules timers in memory: each dispatcher claims due timers from the store
//! (atomically, one node per timer, with a lease renewed while the call is in flight)
//! and otherwise works as above. A timer whose node died mid-call is claimed again once
//! its lease runs out, so it fires while any node lives. The embedded path is untouched.
//!
//! Interval timers ([`interval`]) are timers whose finished call schedules the next tick
//! the way a failed one schedules a retry: the store sees one pending timer either way.
//!
//! Cron jobs ([`cron`]) share the executor, the result log, the shutdown and the store
//! file with timers, and have a dispatcher of their own. Every call, a timer's or a
//! job's, keeps to the allowed targets ([`targets`]).

pub mod backoff;
mod claim;
pub mod cron;
mod dispatch;
pub mod embedded_ipv4;
pub mod executor;
pub mod interval;
pub mod log;
pub mod own_listeners;
pub mod rules;
pub mod schedule;
pub mod targets;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{
    Cancel, Created, ListPage, ListQuery, NewTimer, RetryPolicy, StoreError, Stores, Timer,
    TimerClaims, TimerId, TimerStore,
};
use crate::sync::lock;
use executor::Executor;
use log::{ResultLog, Rotation};
use schedule::Schedule;
use targets::TargetPolicy;

/// Timer settings, validated from the `[timers]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerSettings {
    /// Calls in flight at once, over all timers.
    pub concurrency: usize,
    /// How long one call may take, unless the timer says otherwise.
    pub request_timeout: Duration,
    /// The retry policy of native timers that do not give one.
    pub retry: RetryPolicy,
    /// How far ahead a timer may be set.
    pub max_delay: Duration,
    /// The shortest interval an interval timer may tick at.
    pub min_interval: Duration,
    /// How long finished timers stay queryable.
    pub retention: Duration,
    /// The timer store's page cache, in bytes.
    pub store_cache_bytes: usize,
    /// The result log's rotation.
    pub log: Rotation,
    /// The app jdserver's `/setTimeout` uses when a request names none and carries no
    /// API key: the only declared app, when there is exactly one. Cron requests that
    /// name no app use it too.
    pub default_app: Option<String>,
    /// What timers and cron jobs may call (`allow_hosts`).
    pub targets: Arc<TargetPolicy>,
}

/// Milliseconds since the Unix epoch: timers are due at wall-clock times, which survive
/// restarts (a monotonic clock does not).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Counters since start, plus gauges, as `GET /v1/stats` shows them under `timers`.
#[derive(Debug, Default)]
struct Counters {
    created: AtomicU64,
    attempts: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    cancelled: AtomicU64,
    running: AtomicU64,
    store_errors: AtomicU64,
}

/// A copy of the timer counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TimersSnapshot {
    /// The store in use (`redb`).
    pub store: &'static str,
    /// Timers waiting for their due time (first attempts and retries).
    pub pending: u64,
    /// Calls in flight now.
    pub running: u64,
    /// Timers created since start (idempotent repeats not counted).
    pub created: u64,
    /// Calls made since start.
    pub attempts: u64,
    /// Timers that succeeded since start.
    pub succeeded: u64,
    /// Timers that failed for good since start.
    pub failed: u64,
    /// Attempts that failed and were scheduled again.
    pub retries: u64,
    /// Timers cancelled since start.
    pub cancelled: u64,
    /// Store operations that failed (the timer then waits for a retry or a restart).
    pub store_errors: u64,
    /// Result log lines dropped because the disk could not keep up.
    pub log_dropped: u64,
    /// True once the store file was found damaged while running: it is no longer used,
    /// and every timer and cron operation fails until it is repaired (see the log).
    pub store_damaged: bool,
    /// Operations refused since then.
    pub store_damage_refusals: u64,
}

struct Inner {
    store: Arc<dyn TimerStore>,
    /// Set when the store is shared by several nodes: due timers are claimed from it,
    /// and `schedule` stays empty.
    claims: Option<Arc<dyn TimerClaims>>,
    /// Timers pending in a shared store, as its last claim counted them.
    shared_pending: AtomicU64,
    schedule: Mutex<Schedule>,
    wake: Notify,
    slots: Arc<Semaphore>,
    executor: Executor,
    log: ResultLog,
    settings: TimerSettings,
    counters: Counters,
    cron: cron::CronState,
    /// Every call in flight, timers' and jobs', so shutdown can wait for them.
    in_flight: TaskTracker,
}

/// The timer service: a cheap handle shared by the API and the dispatcher.
#[derive(Clone)]
pub struct Timers {
    inner: Arc<Inner>,
}

/// Why the timer service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The result log cannot be opened.
    #[error("cannot open the timer log in {dir}: {error}")]
    Log {
        /// The data directory.
        dir: String,
        /// Why.
        error: std::io::Error,
    },
    /// The HTTP client cannot be built.
    #[error("cannot make the HTTP client for timers: {0}")]
    Client(#[from] crate::outbound::OutboundError),
    /// The engine (broker, presence) cannot be set up.
    #[error("engine: {0}")]
    Engine(#[from] crate::engine::EngineError),
    /// The durable history log cannot be opened (locked, damaged, unwritable).
    #[error(transparent)]
    History(#[from] crate::store::history::HistoryError),
    /// The apps' services (their backends' HTTP client) cannot be built.
    #[error(transparent)]
    Services(#[from] crate::services::AssembleError),
}

impl Timers {
    /// Recover `stores` (attempts cut off by a crash go back to pending; cron jobs that
    /// missed their schedule get one catch-up run) and schedule every pending timer and
    /// job; the result log goes to `data_dir`. Nothing fires before [`run`](Self::run).
    pub async fn start(
        stores: Stores,
        settings: TimerSettings,
        data_dir: &Path,
    ) -> Result<Self, StartError> {
        let log = ResultLog::open(data_dir, settings.log).map_err(|error| StartError::Log {
            dir: data_dir.display().to_string(),
            error,
        })?;
        let store = stores.timers;
        let mut schedule = Schedule::default();
        // A shared store needs no recovery: a node's cut-off calls are taken over when
        // their leases run out, and due timers and jobs are claimed, not scheduled.
        if stores.claims.is_none() {
            for (due_ms, id) in store.recover().await? {
                schedule.insert(due_ms, id);
            }
        }
        let jobs = match stores.job_claims {
            Some(_) => Vec::new(),
            None => stores.jobs.recover_jobs().await?,
        };
        let cron = cron::CronState::recover(
            stores.jobs,
            stores.job_claims,
            jobs,
            settings.concurrency,
            unix_ms(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                claims: stores.claims,
                shared_pending: AtomicU64::new(0),
                schedule: Mutex::new(schedule),
                wake: Notify::new(),
                slots: Arc::new(Semaphore::new(settings.concurrency)),
                executor: Executor::new(settings.targets.clone(), settings.log.body_bytes)?,
                log,
                settings,
                counters: Counters::default(),
                cron,
                in_flight: TaskTracker::new(),
            }),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &TimerSettings {
        &self.inner.settings
    }

    /// Store a timer (durably) and schedule it; an idempotent repeat returns the timer
    /// that exists.
    pub async fn create(&self, timer: NewTimer) -> Result<Created, StoreError> {
        let created = self.inner.store.create(timer).await?;
        if !created.existing {
            self.inner.counters.created.fetch_add(1, Relaxed);
            self.inner.schedule(created.timer.due_ms, created.timer.id);
        }
        Ok(created)
    }

    /// The timer with this id.
    pub async fn get(&self, id: TimerId) -> Result<Option<Timer>, StoreError> {
        self.inner.store.get(id).await
    }

    /// A page of an app's timers.
    pub async fn list(&self, query: ListQuery) -> Result<ListPage, StoreError> {
        self.inner.store.list(query).await
    }

    /// Cancel a pending or running timer. A call in flight is not interrupted, but no
    /// retry follows it.
    pub async fn cancel(&self, id: TimerId) -> Result<Cancel, StoreError> {
        let outcome = self.inner.store.cancel(id, unix_ms()).await?;
        if let Cancel::Cancelled { timer, .. } = &outcome {
            self.inner.counters.cancelled.fetch_add(1, Relaxed);
            lock(&self.inner.schedule).remove(timer.due_ms, timer.id);
        }
        Ok(outcome)
    }

    /// The counters.
    pub fn snapshot(&self) -> TimersSnapshot {
        let c = &self.inner.counters;
        let damage = self.inner.store.damage();
        TimersSnapshot {
            store: self.inner.store.kind(),
            pending: match self.inner.claims {
                Some(_) => self.inner.shared_pending.load(Relaxed),
                None => lock(&self.inner.schedule).len() as u64,
            },
            running: c.running.load(Relaxed),
            created: c.created.load(Relaxed),
            attempts: c.attempts.load(Relaxed),
            succeeded: c.succeeded.load(Relaxed),
            failed: c.failed.load(Relaxed),
            retries: c.retries.load(Relaxed),
            cancelled: c.cancelled.load(Relaxed),
            store_errors: c.store_errors.load(Relaxed),
            log_dropped: self.inner.log.dropped(),
            store_damaged: damage.problem.is_some(),
            store_damage_refusals: damage.refused,
        }
    }

    /// When the next timer is due (milliseconds since the Unix epoch), on a store this
    /// node schedules alone; `None` when none waits, or when a shared store hands out due
    /// timers to every node.
    pub fn next_due_ms(&self) -> Option<u64> {
        match self.inner.claims {
            Some(_) => None,
            None => lock(&self.inner.schedule).next_due(),
        }
    }

    /// How long timer callbacks took since start (the `timer` calls' record).
    pub fn latency(&self) -> crate::work_counters::LatencySnapshot {
        crate::work_counters::calls("timer", None).latency()
    }

    /// Fire timers and cron jobs until `shutdown`, purging finished timers past
    /// retention meanwhile. Then give calls in flight up to `grace()` (asked then: a
    /// forced stop gives none) to finish and record
    /// their results, close the log and the store. Calls still in flight after that stay
    /// `running` in the store: timers' are made again after a restart, and a job's is
    /// made up for by a catch-up run.
    pub async fn run(self, shutdown: CancellationToken, grace: impl FnOnce() -> Duration) {
        let in_flight = self.inner.in_flight.clone();
        // Leases are renewed until the calls in flight are over, after the dispatchers stop.
        let calls_over = CancellationToken::new();
        let renewals = tokio::spawn(claim::renew(self.inner.clone(), calls_over.clone()));
        match self.inner.claims.clone() {
            Some(claims) => tokio::join!(
                claim::dispatch(
                    self.inner.clone(),
                    claims,
                    shutdown.clone(),
                    in_flight.clone()
                ),
                dispatch::purge(self.inner.clone(), shutdown.clone()),
                cron::dispatch(self.inner.clone(), shutdown.clone()),
            ),
            None => tokio::join!(
                dispatch::dispatch(self.inner.clone(), shutdown.clone(), in_flight.clone()),
                dispatch::purge(self.inner.clone(), shutdown.clone()),
                cron::dispatch(self.inner.clone(), shutdown.clone()),
            ),
        };
        in_flight.close();
        if tokio::time::timeout(grace(), in_flight.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                calls = in_flight.len(),
                "timer calls still in flight at the end of the shutdown grace: they stay running and are made again after a restart (in a cluster: by another node, at once)"
            );
        }
        calls_over.cancel();
        let _ = renewals.await;
        self.inner.log.close().await;
        if let Err(error) = self.inner.store.close().await {
            tracing::error!(%error, "closing the timer store");
        }
    }
}

impl Inner {
    /// Put a timer in the schedule, waking the dispatcher if it is the new earliest. With
    /// a shared store the timer is already in the store's due index: the dispatcher is
    /// woken to claim again.
    fn schedule(&self, due_ms: u64, id: TimerId) {
        if self.claims.is_some() || lock(&self.schedule).insert(due_ms, id) {
            self.wake.notify_one();
        }
    }
}
