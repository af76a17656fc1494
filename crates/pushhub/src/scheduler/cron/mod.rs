//! Cron jobs: named HTTP calls on a cron schedule, durable like timers.
//!
//! Each job is a record in the [`JobStore`] and a slot in memory holding its next fire
//! time, its runs in flight and its parsed expression ([`spec`]). Next fire times sit in
//! an ordered schedule like timers' due times; the cron dispatcher ([`dispatch`]) sleeps
//! until the earliest and starts a task that records the run (next fire time, one more
//! run) in the store, then makes the call through the timers' executor and records the
//! result. Every change to one job (API calls, runs starting and finishing) holds that
//! job's lock around its store write, so memory and store see the same changes in the
//! same order; different jobs never wait for each other.
//!
//! **Overlap.** `skip` (the default): a scheduled run that comes due while the previous
//! run is in flight is skipped, counted (`skipped`) and timed (`last_skipped_ms`), and a
//! manual run is refused. `allow`: runs may overlap.
//!
//! **Missed runs.** At start, a job whose stored next fire time has passed (the server
//! was down, however long, through one fire time or many) or whose run was cut off by
//! the stop runs once, at once (trigger `catch_up`), then goes on from its next fire
//! time after now. A run is made once per fire time otherwise, and at least once: a run
//! cut off by a crash is made up for by the catch-up run.
//!
//! **Shared stores** (several nodes on Redis, [`shared`]): no node keeps jobs in memory;
//! the API reads and changes them in the store, and each fire time is claimed by one node.

mod shared;
pub mod spec;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::backoff::{self, Verdict};
use super::executor::{JOB_HEADER, RUN_HEADER, TRIGGER_HEADER};
use super::log::LogLine;
use super::schedule::Schedule;
use super::{unix_ms, Inner, Timers};
use crate::store::{
    Job, JobChange, JobClaims, JobDefinition, JobId, JobRun, JobStore, Overlap, PutJob,
    RecoveredJob, StoreError, Trigger,
};
use crate::sync::lock;
use spec::{CronSpec, SpecError};

/// Most cron jobs one app may have.
pub const MAX_JOBS_PER_APP: usize = 1000;

/// Longest sleep between looks at the schedule, so a wall-clock step is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How long a run waits after the store failed to record its start.
const STORE_RETRY_MS: u64 = 1000;

/// Why a cron operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The expression or time zone cannot be used.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No such job in the app.
    #[error("no cron job {name:?} in app {app:?}")]
    NotFound {
        /// The app.
        app: String,
        /// The name asked for.
        name: String,
    },
    /// The app has as many jobs as it may.
    #[error("app {0:?} has {MAX_JOBS_PER_APP} cron jobs, the most an app may have")]
    TooManyJobs(String),
    /// A manual run of a job whose run is in flight and whose overlap policy is `skip`.
    #[error("cron job {0:?} is running and its overlap policy is skip: try again when it is done")]
    Running(String),
}

/// Counters since start, as `GET /v1/stats` shows them under `cron`.
#[derive(Debug, Default)]
struct Counters {
    runs: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    running: AtomicU64,
    store_errors: AtomicU64,
}

/// A copy of the cron counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CronSnapshot {
    /// Jobs, over all apps.
    pub jobs: u64,
    /// Jobs waiting for a fire time (not paused, with a next run).
    pub scheduled: u64,
    /// Runs in flight now.
    pub running: u64,
    /// Runs started since start.
    pub runs: u64,
    /// Runs that got a 2xx answer since start.
    pub succeeded: u64,
    /// Runs that failed since start.
    pub failed: u64,
    /// Scheduled runs skipped since start (overlap `skip`, previous run in flight).
    pub skipped: u64,
    /// Store writes that failed.
    pub store_errors: u64,
}

/// One job in memory. Its lock is held around every store write about it.
struct Slot {
    app: String,
    name: String,
    state: Arc<tokio::sync::Mutex<SlotState>>,
}

#[derive(Default)]
struct SlotState {
    /// The job as last stored; `None` before its create is stored.
    job: Option<Job>,
    /// Its parsed expression; `None` when the stored one no longer parses.
    spec: Option<Arc<CronSpec>>,
    /// Runs in flight.
    running: u32,
    /// The next run is the catch-up run after a restart.
    catch_up: bool,
    /// Deleted (or never created): whoever holds this slot must look the job up again.
    removed: bool,
}

/// Every slot, by name and by id, and how many jobs each app has.
#[derive(Default)]
struct Slots {
    by_key: HashMap<(String, String), Arc<Slot>>,
    by_id: HashMap<JobId, Arc<Slot>>,
    per_app: HashMap<String, usize>,
}

/// The cron half of the scheduler's state.
pub(super) struct CronState {
    store: Arc<dyn JobStore>,
    /// Set when the store is shared by several nodes ([`shared`]): `slots` and
    /// `schedule` stay empty.
    claims: Option<Arc<dyn JobClaims>>,
    /// Jobs and scheduled jobs in a shared store, as the last look counted them.
    shared_counts: (AtomicU64, AtomicU64),
    slots: Mutex<Slots>,
    schedule: Mutex<Schedule>,
    wake: Notify,
    /// Calls in flight at once, over all jobs.
    calls: Arc<Semaphore>,
    counters: Counters,
}

impl CronState {
    /// The state after a restart: every stored job in memory, and on the schedule unless
    /// paused; missed and cut-off runs made up for by one catch-up run each, due now.
    pub(super) fn recover(
        store: Arc<dyn JobStore>,
        claims: Option<Arc<dyn JobClaims>>,
        jobs: Vec<RecoveredJob>,
        concurrency: usize,
        now_ms: u64,
    ) -> Self {
        let mut slots = Slots::default();
        let mut schedule = Schedule::default();
        for RecoveredJob {
            mut job,
            interrupted,
        } in jobs
        {
            let spec = match CronSpec::parse(&job.schedule, &job.time_zone, now_ms) {
                Ok(spec) => Some(Arc::new(spec)),
                Err(error) => {
                    tracing::error!(app = %job.app, job = %job.name, %error, "this cron job's schedule cannot be used; it will not run until it is updated");
                    None
                }
            };
            let missed = job.next_ms.is_some_and(|next| next <= now_ms);
            let catch_up = !job.paused && spec.is_some() && (missed || interrupted > 0);
            if catch_up {
                tracing::info!(
                    app = %job.app,
                    job = %job.name,
                    interrupted,
                    "cron job missed its schedule while the server was down: running it once now"
                );
                // A cut-off run with its next fire time still ahead is made up for now.
                job.next_ms = Some(job.next_ms.map_or(now_ms, |next| next.min(now_ms)));
            }
            if let (false, Some(next)) = (job.paused || spec.is_none(), job.next_ms) {
                schedule.insert(next, job.id);
            }
            let (app, name, id) = (job.app.clone(), job.name.clone(), job.id);
            let slot = Arc::new(Slot {
                app: app.clone(),
                name: name.clone(),
                state: Arc::new(tokio::sync::Mutex::new(SlotState {
                    job: Some(job),
                    spec,
                    running: 0,
                    catch_up,
                    removed: false,
                })),
            });
            *slots.per_app.entry(app.clone()).or_default() += 1;
            slots.by_id.insert(id, slot.clone());
            slots.by_key.insert((app, name), slot);
        }
        Self {
            store,
            claims,
            shared_counts: Default::default(),
            slots: Mutex::new(slots),
            schedule: Mutex::new(schedule),
            wake: Notify::new(),
            calls: Arc::new(Semaphore::new(concurrency)),
            counters: Counters::default(),
        }
    }

    /// The slot of `app`/`name`, if there is one.
    fn find(&self, app: &str, name: &str) -> Option<Arc<Slot>> {
        lock(&self.slots)
            .by_key
            .get(&(app.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The slot of `app`/`name`, made (empty, for a create) when missing.
    fn find_or_make(&self, app: &str, name: &str) -> Arc<Slot> {
        lock(&self.slots)
            .by_key
            .entry((app.to_owned(), name.to_owned()))
            .or_insert_with(|| {
                Arc::new(Slot {
                    app: app.to_owned(),
                    name: name.to_owned(),
                    state: Arc::new(tokio::sync::Mutex::new(SlotState::default())),
                })
            })
            .clone()
    }

    /// Forget `slot` (its job is deleted, or its create failed); whoever waits on its
    /// lock sees `removed` and looks again.
    fn remove(&self, slot: &Arc<Slot>, state: &mut SlotState) {
        state.removed = true;
        let mut slots = lock(&self.slots);
        let key = (slot.app.clone(), slot.name.clone());
        if slots.by_key.get(&key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.by_key.remove(&key);
        }
        if let Some(job) = state.job.take() {
            slots.by_id.remove(&job.id);
            if let Some(count) = slots.per_app.get_mut(&job.app) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    slots.per_app.remove(&job.app);
                }
            }
            if let Some(next) = job.next_ms {
                lock(&self.schedule).remove(next, job.id);
            }
        }
    }

    /// Move a job's place on the schedule from `old` to `new`.
    fn reschedule(&self, id: JobId, old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        let mut schedule = lock(&self.schedule);
        if let Some(old) = old {
            schedule.remove(old, id);
        }
        if let Some(new) = new {
            if schedule.insert(new, id) {
                self.wake.notify_one();
            }
        }
    }

    /// Replace the job in `state` by `job` as the store returned it, moving its place on
    /// the schedule.
    fn stored(&self, state: &mut SlotState, job: Job) {
        let old = state.job.as_ref().and_then(|j| j.next_ms);
        self.reschedule(job.id, old, job.next_ms);
        state.job = Some(job);
    }
}

/// A locked slot holding a job.
type Held = (Arc<Slot>, tokio::sync::OwnedMutexGuard<SlotState>);

impl Timers {
    /// Create the job `definition` names, or update it (its history stays). `paused`
    /// sets whether it is paused; `None` leaves an existing job as it is (a new one
    /// runs). Its next run is worked out from now. Runs in flight are not affected.
    pub async fn put_job(
        &self,
        definition: JobDefinition,
        paused: Option<bool>,
    ) -> Result<PutJob, CronError> {
        let cron = &self.inner.cron;
        let now = unix_ms();
        let spec = Arc::new(CronSpec::parse(
            &definition.schedule,
            &definition.time_zone,
            now,
        )?);
        if cron.claims.is_some() {
            return self.shared_put_job(definition, paused, &spec, now).await;
        }
        loop {
            let slot = cron.find_or_make(&definition.app, &definition.name);
            let mut state = slot.state.clone().lock_owned().await;
            if state.removed {
                continue;
            }
            let existing = state.job.as_ref();
            if existing.is_none() {
                let count = lock(&cron.slots)
                    .per_app
                    .get(&definition.app)
                    .copied()
                    .unwrap_or(0);
                if count >= MAX_JOBS_PER_APP {
                    cron.remove(&slot, &mut state);
                    return Err(CronError::TooManyJobs(definition.app));
                }
            }
            let paused = paused.unwrap_or(existing.is_some_and(|job| job.paused));
            let next = if paused { None } else { spec.next_after(now) };
            let put = match cron.store.put_job(definition, paused, next, now).await {
                Ok(put) => put,
                Err(error) => {
                    if state.job.is_none() {
                        cron.remove(&slot, &mut state);
                    }
                    return Err(error.into());
                }
            };
            if put.created {
                let mut slots = lock(&cron.slots);
                *slots.per_app.entry(put.job.app.clone()).or_default() += 1;
                slots.by_id.insert(put.job.id, slot.clone());
            }
            state.spec = Some(spec);
            state.catch_up = false;
            cron.stored(&mut state, put.job.clone());
            return Ok(put);
        }
    }

    /// The job `name` of `app`.
    pub async fn get_job(&self, app: &str, name: &str) -> Result<Job, CronError> {
        self.inner
            .cron
            .store
            .get_job(app, name)
            .await?
            .ok_or_else(|| not_found(app, name))
    }

    /// Every job of `app`, in name order.
    pub async fn list_jobs(&self, app: &str) -> Result<Vec<Job>, CronError> {
        Ok(self.inner.cron.store.list_jobs(app).await?)
    }

    /// The slot of an existing job, locked.
    async fn held(&self, app: &str, name: &str) -> Result<Held, CronError> {
        loop {
            let slot = self
                .inner
                .cron
                .find(app, name)
                .ok_or_else(|| not_found(app, name))?;
            let state = slot.state.clone().lock_owned().await;
            if state.removed {
                continue;
            }
            if state.job.is_none() {
                return Err(not_found(app, name));
            }
            return Ok((slot, state));
        }
    }

    /// Apply `change` to the job in `state`, in the store then in memory.
    async fn change(
        &self,
        slot: &Slot,
        state: &mut SlotState,
        change: JobChange,
    ) -> Result<Job, CronError> {
        let cron = &self.inner.cron;
        let id = state
            .job
            .as_ref()
            .map(|job| job.id)
            .ok_or_else(|| not_found(&slot.app, &slot.name))?;
        let job = cron
            .store
            .update_job(&slot.app, &slot.name, id, change, unix_ms())
            .await?
            .ok_or_else(|| not_found(&slot.app, &slot.name))?;
        cron.stored(state, job.clone());
        Ok(job)
    }

    /// Pause the job: no scheduled runs until it is resumed (a run in flight goes on).
    pub async fn pause_job(&self, app: &str, name: &str) -> Result<Job, CronError> {
        if self.inner.cron.claims.is_some() {
            return self.shared_pause(app, name).await;
        }
        let (slot, mut state) = self.held(app, name).await?;
        if let Some(job) = state.job.as_ref().filter(|job| job.paused) {
            return Ok(job.clone());
        }
        state.catch_up = false;
        self.change(&slot, &mut state, JobChange::Pause).await
    }

    /// Resume a paused job: it runs next at its first fire time from now (what it
    /// missed while paused is not made up for).
    pub async fn resume_job(&self, app: &str, name: &str) -> Result<Job, CronError> {
        if self.inner.cron.claims.is_some() {
            return self.shared_resume(app, name).await;
        }
        let (slot, mut state) = self.held(app, name).await?;
        let job = state.job.clone().ok_or_else(|| not_found(app, name))?;
        if !job.paused {
            return Ok(job);
        }
        let spec = match &state.spec {
            Some(spec) => spec.clone(),
            None => Arc::new(CronSpec::parse(&job.schedule, &job.time_zone, unix_ms())?),
        };
        let next_ms = spec.next_after(unix_ms());
        state.spec = Some(spec);
        self.change(&slot, &mut state, JobChange::Resume { next_ms })
            .await
    }

    /// Run the job now, paused or not, unless its overlap policy is `skip` and a run is
    /// in flight ([`CronError::Running`]). Returns the job with the run counted; the call
    /// goes on in the background.
    pub async fn run_job(&self, app: &str, name: &str) -> Result<Job, CronError> {
        if self.inner.cron.claims.is_some() {
            return self.shared_run(app, name).await;
        }
        let (slot, mut state) = self.held(app, name).await?;
        let job = state.job.clone().ok_or_else(|| not_found(app, name))?;
        if job.overlap == Overlap::Skip && state.running > 0 {
            return Err(CronError::Running(name.to_owned()));
        }
        let now = unix_ms();
        let started = self
            .change(
                &slot,
                &mut state,
                JobChange::Start {
                    next_ms: job.next_ms,
                },
            )
            .await?;
        state.running += 1;
        drop(state);
        let run = Run {
            job: started.clone(),
            trigger: Trigger::Manual,
            scheduled_ms: now,
        };
        self.inner
            .in_flight
            .spawn(call(self.inner.clone(), Some(slot), run));
        Ok(started)
    }

    /// Delete the job. A run in flight goes on; its result is not recorded.
    pub async fn delete_job(&self, app: &str, name: &str) -> Result<Job, CronError> {
        if self.inner.cron.claims.is_some() {
            return self.shared_delete(app, name).await;
        }
        let (slot, mut state) = self.held(app, name).await?;
        let cron = &self.inner.cron;
        let deleted = cron
            .store
            .delete_job(app, name)
            .await?
            .ok_or_else(|| not_found(app, name))?;
        cron.remove(&slot, &mut state);
        Ok(deleted)
    }

    /// The cron counters.
    pub fn cron_snapshot(&self) -> CronSnapshot {
        let cron = &self.inner.cron;
        let c = &cron.counters;
        let (jobs, scheduled) = match cron.claims {
            Some(_) => (
                cron.shared_counts.0.load(Relaxed),
                cron.shared_counts.1.load(Relaxed),
            ),
            None => (
                lock(&cron.slots).by_id.len() as u64,
                lock(&cron.schedule).len() as u64,
            ),
        };
        CronSnapshot {
            jobs,
            scheduled,
            running: c.running.load(Relaxed),
            runs: c.runs.load(Relaxed),
            succeeded: c.succeeded.load(Relaxed),
            failed: c.failed.load(Relaxed),
            skipped: c.skipped.load(Relaxed),
            store_errors: c.store_errors.load(Relaxed),
        }
    }
}

fn not_found(app: &str, name: &str) -> CronError {
    CronError::NotFound {
        app: app.to_owned(),
        name: name.to_owned(),
    }
}

/// Until `shutdown`: wait for the earliest fire time and start a task for each job due.
/// The tasks are tracked by the scheduler's `in_flight`, so shutdown waits for their calls.
pub(super) async fn dispatch(inner: Arc<Inner>, shutdown: CancellationToken) {
    if let Some(claims) = inner.cron.claims.clone() {
        return shared::dispatch(inner, claims, shutdown).await;
    }
    loop {
        let now = unix_ms();
        let (due, wait) = {
            let mut schedule = lock(&inner.cron.schedule);
            let mut due = Vec::new();
            while let Some(entry) = schedule.pop_due(now) {
                due.push(entry);
            }
            let wait = schedule.next_due().map_or(MAX_SLEEP, |next| {
                Duration::from_millis(next.saturating_sub(now)).min(MAX_SLEEP)
            });
            (due, wait)
        };
        for (fire_ms, id) in due {
            inner.in_flight.spawn(fire(inner.clone(), id, fire_ms));
        }
        tokio::select! {
            _ = inner.cron.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Job `id` came due at `fire_ms`: record the run (or the skip) and make the call.
async fn fire(inner: Arc<Inner>, id: JobId, fire_ms: u64) {
    let cron = &inner.cron;
    let Some(slot) = lock(&cron.slots).by_id.get(&id).cloned() else {
        return;
    };
    let mut state = slot.state.lock().await;
    let (job, spec) = match (&state.job, &state.spec) {
        // Paused, updated or deleted since it was put on the schedule: nothing is due.
        (Some(job), Some(spec)) if !job.paused && job.id == id && job.next_ms == Some(fire_ms) => {
            (job.clone(), spec.clone())
        }
        _ => return,
    };
    let now = unix_ms();
    let next_ms = spec.next_after(fire_ms.max(now));
    let skip = job.overlap == Overlap::Skip && state.running > 0;
    let change = if skip {
        JobChange::Skip { next_ms }
    } else {
        JobChange::Start { next_ms }
    };
    let stored = cron
        .store
        .update_job(&slot.app, &slot.name, id, change, now)
        .await;
    let started = match stored {
        Ok(Some(job)) => job,
        Ok(None) | Err(StoreError::Closed) => return,
        // The store is no longer used (the latch logged why, once): the job waits for
        // the repair and a restart rather than retrying against a damaged file.
        Err(StoreError::Damaged { .. }) => {
            cron.counters.store_errors.fetch_add(1, Relaxed);
            return;
        }
        Err(error) => {
            cron.counters.store_errors.fetch_add(1, Relaxed);
            tracing::error!(app = %slot.app, job = %slot.name, %error, "cannot record a cron run; trying again in 1 s");
            let retry = Some(now + STORE_RETRY_MS);
            cron.reschedule(id, Some(fire_ms), retry);
            if let Some(job) = state.job.as_mut() {
                job.next_ms = retry;
            }
            return;
        }
    };
    cron.stored(&mut state, started.clone());
    if skip {
        cron.counters.skipped.fetch_add(1, Relaxed);
        tracing::info!(app = %slot.app, job = %slot.name, "cron run skipped: the previous run is still going (overlap = skip)");
        return;
    }
    let trigger = match std::mem::take(&mut state.catch_up) {
        true => Trigger::CatchUp,
        false => Trigger::Schedule,
    };
    state.running += 1;
    drop(state);
    let run = Run {
        job: started,
        trigger,
        scheduled_ms: fire_ms,
    };
    call(inner.clone(), Some(slot), run).await;
}

/// A run that has been recorded as started.
struct Run {
    /// The job, with the run counted (its `runs` is this run's number).
    job: Job,
    trigger: Trigger,
    scheduled_ms: u64,
}

/// Make a run's call, holding one of the cron call slots, and record its result; with
/// the job's `slot` when jobs are kept in memory (not with a shared store).
async fn call(inner: Arc<Inner>, slot: Option<Arc<Slot>>, run: Run) {
    let cron = &inner.cron;
    let Run {
        job,
        trigger,
        scheduled_ms,
    } = run;
    let number = job.runs;
    // The semaphore is never closed.
    let permit = cron.calls.clone().acquire_owned().await.ok();
    cron.counters.runs.fetch_add(1, Relaxed);
    cron.counters.running.fetch_add(1, Relaxed);
    let started_ms = unix_ms();
    let marks = [
        (JOB_HEADER, job.name.clone()),
        (RUN_HEADER, number.to_string()),
        (TRIGGER_HEADER, trigger.name().to_owned()),
    ];
    let result = inner.executor.call("cron", &job.request, &marks).await;
    drop(permit);
    cron.counters.running.fetch_sub(1, Relaxed);
    let succeeded = !result.refused && backoff::judge(result.status) == Verdict::Success;
    let error = result
        .error
        .clone()
        .or_else(|| (!succeeded).then(|| format!("HTTP {}", result.status.unwrap_or_default())));
    let duration_ms = u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX);
    let outcome = if succeeded { "succeeded" } else { "failed" };
    let counter = if succeeded {
        &cron.counters.succeeded
    } else {
        &cron.counters.failed
    };
    counter.fetch_add(1, Relaxed);
    inner.log.record_call(
        LogLine {
            ts: started_ms,
            job: Some(&job.name),
            app: &job.app,
            run: Some(number),
            trigger: Some(trigger.name()),
            method: &job.request.method,
            url: &job.request.url,
            status: result.status,
            error: error.as_deref(),
            duration_ms,
            next: outcome,
            ..LogLine::default()
        },
        &result,
    );
    let finished = JobRun {
        number,
        trigger,
        scheduled_ms,
        started_ms,
        duration_ms,
        status: result.status,
        error,
        response: result.response(),
        succeeded,
    };
    let Some(slot) = slot else {
        let stored = cron
            .store
            .update_job(
                &job.app,
                &job.name,
                job.id,
                JobChange::Finish(finished),
                unix_ms(),
            )
            .await;
        if let Err(error) = stored {
            cron.counters.store_errors.fetch_add(1, Relaxed);
            tracing::error!(app = %job.app, job = %job.name, %error, "cannot record a cron run's result");
        }
        return;
    };
    let mut state = slot.state.lock().await;
    state.running = state.running.saturating_sub(1);
    let stored = cron
        .store
        .update_job(
            &slot.app,
            &slot.name,
            job.id,
            JobChange::Finish(finished),
            unix_ms(),
        )
        .await;
    match stored {
        Ok(Some(updated)) if state.job.as_ref().is_some_and(|j| j.id == updated.id) => {
            cron.stored(&mut state, updated);
        }
        Ok(_) | Err(StoreError::Closed) => {}
        Err(StoreError::Damaged { .. }) => drop(cron.counters.store_errors.fetch_add(1, Relaxed)),
        Err(error) => {
            cron.counters.store_errors.fetch_add(1, Relaxed);
            tracing::error!(app = %slot.app, job = %slot.name, %error, "cannot record a cron run's result");
        }
    }
}
