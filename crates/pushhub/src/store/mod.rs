//! The durable timer store: every timer the API accepted, its state and its last attempt.
//!
//! [`TimerStore`] is the contract; [`RedbStore`] (a file in the data directory) is the
//! default, and [`RedisStore`] keeps them in Redis for a cluster of nodes, which claim
//! due timers and cron runs from it ([`TimerClaims`], [`JobClaims`]). The store knows
//! nothing of HTTP, the schedule or the API: it keeps records and moves them between
//! states atomically. What runs when is the scheduler's business ([`crate::scheduler`]).
//!
//! A timer's life: `pending` → `running` (an attempt is in flight) → `succeeded`, `failed`,
//! or back to `pending` with a later due time (a retry, or an interval timer's next
//! tick). `cancelled` is reachable from `pending` and `running`. Finished timers (succeeded, failed, cancelled) are kept until
//! [`TimerStore::purge`] removes them.
//!
//! Cron jobs live in the same store behind a sibling contract, [`JobStore`] ([`jobs`]).

mod damage;
mod embedded;
pub mod history;
pub mod integrity;
pub mod jobs;
mod redb_jobs;
mod redis;
pub mod report;
pub mod salvage;
mod scratch;
pub mod state_file;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use damage::DamageSnapshot;
pub use embedded::{RedbStore, FILE_NAME};
pub use jobs::{
    Job, JobChange, JobDefinition, JobId, JobRun, JobStore, Overlap, PutJob, RecoveredJob, Trigger,
};
pub use redis::RedisStore;

/// A timer's id: unique in its store, increasing in creation order, never reused.
pub type TimerId = u64;

/// Where a timer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimerState {
    /// Waiting for its due time (the first attempt, or a retry).
    Pending,
    /// An attempt is in flight.
    Running,
    /// An attempt got a 2xx answer.
    Succeeded,
    /// The last attempt failed and no attempt is left, or the answer was final (4xx).
    Failed,
    /// Cancelled through the API before it finished.
    Cancelled,
}

impl TimerState {
    /// Every state, in the order of a timer's life.
    pub const ALL: [TimerState; 5] = [
        TimerState::Pending,
        TimerState::Running,
        TimerState::Succeeded,
        TimerState::Failed,
        TimerState::Cancelled,
    ];

    /// Succeeded, failed or cancelled: nothing more will happen to it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TimerState::Succeeded | TimerState::Failed | TimerState::Cancelled
        )
    }

    /// The state's name in the API (`pending`, `running`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TimerState::Pending => "pending",
            TimerState::Running => "running",
            TimerState::Succeeded => "succeeded",
            TimerState::Failed => "failed",
            TimerState::Cancelled => "cancelled",
        }
    }
}

/// The HTTP request a timer makes, already validated and encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// An absolute `http://` or `https://` URL, sent as given.
    pub url: String,
    /// Headers in the order given, names as given.
    pub headers: Vec<(String, String)>,
    /// The body, when there is one.
    pub body: Option<String>,
    /// How long one attempt may take, in milliseconds.
    pub timeout_ms: u64,
}

/// How often and how patiently a timer retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 = never retry.
    pub max_attempts: u32,
    /// Backoff before the first retry, in milliseconds; doubles with each retry.
    pub base_ms: u64,
    /// Largest backoff, in milliseconds.
    pub max_ms: u64,
}

/// One attempt's result, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started (Unix milliseconds).
    pub started_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// The answer's status, when one came.
    pub status: Option<u16>,
    /// Why there was no usable answer (connection refused, timeout...), or why the
    /// answer counts as a failure.
    pub error: Option<String>,
    /// The start of the answer's body (at most 1 KiB, lossy UTF-8).
    pub response: Option<String>,
}

/// An interval timer's schedule (Swoole's `tick`): a call every `every_ms` from its first
/// due time, `times` calls in all or until it is cancelled. The store keeps it; what it
/// means for the next due time is the scheduler's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    /// Milliseconds between ticks.
    pub every_ms: u64,
    /// Calls to make in all; `None`: until cancelled.
    pub times: Option<u32>,
}

/// A timer to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTimer {
    /// The app it belongs to.
    pub app: String,
    /// What to call.
    pub request: CallbackRequest,
    /// When to call it (Unix milliseconds).
    pub due_ms: u64,
    /// When the API accepted it (Unix milliseconds).
    pub created_ms: u64,
    /// Retries.
    pub retry: RetryPolicy,
    /// A create with the same app and key as an existing timer returns that timer instead.
    pub idempotency_key: Option<String>,
    /// Set for an interval timer.
    pub interval: Option<Interval>,
}

/// A stored timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Its id.
    pub id: TimerId,
    /// The app it belongs to.
    pub app: String,
    /// What it calls.
    pub request: CallbackRequest,
    /// Retries.
    pub retry: RetryPolicy,
    /// The key it was created with, if any.
    pub idempotency_key: Option<String>,
    /// Set for an interval timer; absent from records written before interval timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// Where it is in its life.
    pub state: TimerState,
    /// When the next attempt is due (pending), or was due (otherwise).
    pub due_ms: u64,
    /// When it was created.
    pub created_ms: u64,
    /// Attempts started so far.
    pub attempts: u32,
    /// The last finished attempt.
    pub last: Option<Attempt>,
    /// When it reached a finished state.
    pub finished_ms: Option<u64>,
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The timer: the new one, or the existing one with the same idempotency key.
    pub timer: Timer,
    /// True when an existing timer was returned and nothing was created.
    pub existing: bool,
}

/// What comes after a finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Call again at this time (Unix milliseconds): back to `pending`. A retry, or an
    /// interval timer's next tick.
    Retry {
        /// When.
        due_ms: u64,
    },
    /// Done: `succeeded`.
    Succeeded,
    /// Done: `failed`.
    Failed,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// The timer is cancelled now; `was` is the state it left (pending or running).
    Cancelled {
        /// The timer, cancelled.
        timer: Timer,
        /// Its state before.
        was: TimerState,
    },
    /// It had already finished; nothing changed.
    Finished(Timer),
    /// No such timer.
    NotFound,
}

/// One page of an app's timers, in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// The app.
    pub app: String,
    /// Only timers in this state.
    pub state: Option<TimerState>,
    /// Only ids above this one (the previous page's `next`).
    pub after: Option<TimerId>,
    /// Most timers returned.
    pub limit: usize,
}

/// A page of timers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The timers, in id order.
    pub timers: Vec<Timer>,
    /// Where the next page starts, when there may be one. A page can hold fewer than
    /// `limit` timers (a store may bound how much it scans for a state filter) and still
    /// have a next page.
    pub next: Option<TimerId>,
}

/// Why the store failed. A full disk or a failing write means "not stored, retry later";
/// a damaged file ([`StoreError::Damaged`]) means the store is not used until repaired.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The data directory or its store file cannot be opened (permissions, another
    /// process holds it, an unreadable file).
    #[error("cannot open the timer store {path}: {reason}")]
    Open {
        /// The store's file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A read or write failed.
    #[error("timer store failure: {0}")]
    Backend(String),
    /// A stored record does not decode.
    #[error("timer {id} is stored in a form this version cannot read: {reason}")]
    Corrupt {
        /// Which timer.
        id: TimerId,
        /// Why.
        reason: String,
    },
    /// A stored cron job does not decode.
    #[error(
        "cron job {name:?} of app {app:?} is stored in a form this version cannot read: {reason}"
    )]
    CorruptJob {
        /// Its app.
        app: String,
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The store file is damaged: found at start (the server refuses to start) or while
    /// running (every later operation is refused; see the log). Retrying does not help.
    #[error(
        "the timer store {path} is damaged: {problem}. pushhub will not use it. With the server \
         stopped, `pushhub store check` tells what is wrong and `pushhub store repair` salvages \
         what is readable into a new file (keeping the damaged one); or restore timers.redb and \
         timers.redb.state from a backup (see docs/operations.md, \"A damaged store\")"
    )]
    Damaged {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The store was closed (the server is shutting down).
    #[error("the timer store is closed")]
    Closed,
}

/// The contract every timer store keeps.
///
/// - **Durable answers.** When a method that changes state returns `Ok`, the change
///   survives a crash of the process (and, for the embedded store, of the machine, as far
///   as the disk honours fsync). Concurrent calls may share one commit.
/// - **Atomic transitions, in order.** Each method moves one timer from one state to
///   another as one step, and changes apply in the order the calls were made: a call that
///   returned before another began is applied first.
/// - **At least once.** A timer left `running` by a crash is `pending` again after
///   [`recover`](TimerStore::recover): its attempt may have reached the target, and will
///   be made again.
#[async_trait]
pub trait TimerStore: Send + Sync {
    /// `"redb"`, `"redis"`: for logs and stats.
    fn kind(&self) -> &'static str;

    /// Store a new pending timer and give it an id, or, when its idempotency key is already
    /// used by a timer of the same app, return that timer unchanged.
    async fn create(&self, timer: NewTimer) -> Result<Created, StoreError>;

    /// The timer with this id.
    async fn get(&self, id: TimerId) -> Result<Option<Timer>, StoreError>;

    /// A page of an app's timers.
    async fn list(&self, query: ListQuery) -> Result<ListPage, StoreError>;

    /// At start: put every `running` timer back to `pending` (keeping its due time, so it
    /// fires at once) and return `(due_ms, id)` of every pending timer, to schedule.
    async fn recover(&self) -> Result<Vec<(u64, TimerId)>, StoreError>;

    /// Start an attempt: a `pending` timer becomes `running` with one more attempt, and
    /// is returned as it now is. `None` when the timer is not pending (cancelled, or
    /// gone). So that an attempt starts on time, the store may answer from what it has
    /// committed and record the start afterwards: the change need not be applied, let
    /// alone durable, when this returns. A crash then leaves the timer pending, which
    /// fires it again (at-least-once allows it); a cancel that races with the start may
    /// not stop the call, but the timer ends `cancelled` all the same.
    async fn begin_attempt(&self, id: TimerId) -> Result<Option<Timer>, StoreError>;

    /// Record a finished attempt and what comes next; returns the timer's state after
    /// that, or `None` if the timer no longer exists. A timer cancelled while its attempt
    /// ran stays `cancelled` and only records the attempt.
    async fn finish_attempt(
        &self,
        id: TimerId,
        attempt: Attempt,
        next: Next,
        now_ms: u64,
    ) -> Result<Option<TimerState>, StoreError>;

    /// Cancel a pending or running timer.
    async fn cancel(&self, id: TimerId, now_ms: u64) -> Result<Cancel, StoreError>;

    /// Remove up to `limit` timers that finished before `before_ms`; returns how many.
    async fn purge(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError>;

    /// Damage found while running ([`StoreError::Damaged`]), for `GET /v1/stats`.
    fn damage(&self) -> DamageSnapshot {
        DamageSnapshot::default()
    }

    /// Finish every write accepted so far and release the store. Later calls fail with
    /// [`StoreError::Closed`].
    async fn close(&self) -> Result<(), StoreError>;
}

/// What a [`TimerClaims::claim_due`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    /// The timers claimed, each `running` with one more attempt, leased to this store.
    pub timers: Vec<Timer>,
    /// When the earliest timer still pending is due.
    pub next_due_ms: Option<u64>,
    /// Timers still pending.
    pub pending: u64,
}

/// A timer store that several nodes share. Instead of scheduling the timers it created,
/// each node claims due timers from the store: a claim is atomic (one node gets each
/// timer) and holds a lease that the store renews while the call is in flight. A timer
/// whose lease runs out (its node died mid-call) is due again and claimed by another
/// node, which makes the call again (at least once).
#[async_trait]
pub trait TimerClaims: Send + Sync {
    /// Claim up to `limit` timers due at `now_ms`: running ones whose lease ran out
    /// first, then pending ones in due order.
    async fn claim_due(&self, now_ms: u64, limit: usize) -> Result<Claimed, StoreError>;

    /// How long a claim lasts without renewal.
    fn lease(&self) -> std::time::Duration;

    /// Extend every lease this store holds (timers' and cron runs') to `now_ms` + the
    /// lease; a lease found taken over by another node is forgotten. The scheduler calls
    /// it every third of the lease while calls are in flight.
    async fn renew_leases(&self, now_ms: u64) -> Result<(), StoreError>;
}

/// What a [`JobClaims::due_jobs`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueJobs {
    /// The jobs due, as `(fire time, job)`.
    pub due: Vec<(u64, Job)>,
    /// Jobs in the store, over all apps.
    pub jobs: u64,
    /// Jobs with a next fire time (not paused).
    pub scheduled: u64,
}

/// A job store that several nodes share: each due time of a job runs on one node.
#[async_trait]
pub trait JobClaims: Send + Sync {
    /// Jobs whose next fire time is at or before `now_ms` (at most `limit`). Runs cut off
    /// by a node that died (their lease ran out) are counted as finished first and their
    /// jobs made due at the cut-off run's fire time, for a catch-up run.
    async fn due_jobs(&self, now_ms: u64, limit: usize) -> Result<DueJobs, StoreError>;

    /// Apply `change` to the job `name` of `app` only if its id is still `id`, it is not
    /// paused and its next fire time is still `fire_ms`: the claim of that fire time.
    /// `None` when another node claimed it first (or the job changed).
    async fn claim_run(
        &self,
        app: &str,
        name: &str,
        id: JobId,
        fire_ms: u64,
        change: JobChange,
        now_ms: u64,
    ) -> Result<Option<Job>, StoreError>;
}

/// The stores a server runs with: timers and cron jobs, two views of one backend.
/// Closing the timer store ([`TimerStore::close`]) closes both.
#[derive(Clone)]
pub struct Stores {
    /// Timers.
    pub timers: Arc<dyn TimerStore>,
    /// Cron jobs.
    pub jobs: Arc<dyn JobStore>,
    /// Set when the store is shared by several nodes: due timers are claimed from it
    /// rather than scheduled in memory.
    pub claims: Option<Arc<dyn TimerClaims>>,
    /// Set when the store is shared by several nodes: cron fire times are claimed.
    pub job_claims: Option<Arc<dyn JobClaims>>,
}

/// Open the store configured for this server: the embedded one in `data_dir` (created if
/// missing), after checking it ([`integrity`]). Blocks while the file is checked, opened
/// and, after a crash, repaired; `cache_bytes` of the file are kept in memory.
pub fn open(data_dir: &Path, cache_bytes: usize) -> Result<Stores, StoreError> {
    let store = Arc::new(RedbStore::open_with_cache(data_dir, cache_bytes)?);
    Ok(Stores {
        timers: store.clone(),
        jobs: store,
        claims: None,
        job_claims: None,
    })
}

#[cfg(test)]
pub(crate) mod contract;
#[cfg(test)]
mod damage_tests;
