//! Cron jobs in the store: named per app, each an HTTP request made on a cron schedule.
//!
//! [`JobStore`] is the contract, a sibling of [`TimerStore`](super::TimerStore): the
//! embedded store keeps jobs in the same file as timers, and a Redis store will implement
//! both. A store keeps records and applies changes atomically; it does no cron
//! arithmetic. The scheduler works out when a job fires next and hands the time in, and
//! [`JobChange::apply`] says what each change does to a record, so every backend applies
//! them alike and only has to make the read-modify-write atomic.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{CallbackRequest, StoreError};

/// A job's id: unique in its store, never reused. A job deleted and created again under
/// the same name gets a new id, so the result of a run of the old job is never recorded
/// on the new one.
pub type JobId = u64;

/// What to do when a run is due while the previous one is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Skip the new run (counted and recorded); the usual choice for jobs that must not
    /// run twice at once.
    Skip,
    /// Start it anyway: runs may overlap.
    Allow,
}

impl Overlap {
    /// The policy's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
    }

    /// The policy named `name` (`skip` or `allow`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "skip" => Some(Overlap::Skip),
            "allow" => Some(Overlap::Allow),
            _ => None,
        }
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Its schedule came due.
    Schedule,
    /// Someone asked for it (`POST /v1/cron/{name}/run`).
    Manual,
    /// At start, for schedules missed while the server was down (or a run cut off by
    /// the stop): one run for all of them.
    CatchUp,
}

impl Trigger {
    /// The trigger's name in the API and the call's `X-Pushhub-Trigger` header.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::CatchUp => "catch_up",
        }
    }
}

/// What a job does, as the API defines it: everything an update replaces. Whether it
/// is paused is the job's state, set apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDefinition {
    /// The app it belongs to.
    pub app: String,
    /// Its name, unique in the app.
    pub name: String,
    /// The cron expression, as given.
    pub schedule: String,
    /// The IANA time zone the expression is read in.
    pub time_zone: String,
    /// What each run calls.
    pub request: CallbackRequest,
    /// What to do about overlapping runs.
    pub overlap: Overlap,
}

/// One finished run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    /// The run's number: 1 for the job's first.
    pub number: u64,
    /// Why it ran.
    pub trigger: Trigger,
    /// The fire time it stands for (Unix milliseconds): the schedule's time, the
    /// request's time for a manual run, the first missed time for a catch-up.
    pub scheduled_ms: u64,
    /// When the call started.
    pub started_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// The answer's status, when one came.
    pub status: Option<u16>,
    /// Why the run failed: no answer, a refused target, or a status other than 2xx.
    pub error: Option<String>,
    /// The start of the answer's body (at most 1 KiB, lossy UTF-8).
    pub response: Option<String>,
    /// A 2xx answer came.
    pub succeeded: bool,
}

/// A stored job: its definition, its schedule and what its runs came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The app it belongs to.
    pub app: String,
    /// Its name.
    pub name: String,
    /// The cron expression.
    pub schedule: String,
    /// The IANA time zone the expression is read in.
    pub time_zone: String,
    /// What each run calls.
    pub request: CallbackRequest,
    /// What to do about overlapping runs.
    pub overlap: Overlap,
    /// Paused: no scheduled runs.
    pub paused: bool,
    /// When it was created (Unix milliseconds).
    pub created_ms: u64,
    /// When its definition last changed (create, update, pause, resume).
    pub updated_ms: u64,
    /// When it runs next on its schedule; `None` when paused or when the expression has
    /// no later time. After a crash, a time in the past means runs were missed.
    pub next_ms: Option<u64>,
    /// Runs in flight. After a crash, more than zero means a run was cut off.
    pub running: u32,
    /// Runs started, ever.
    pub runs: u64,
    /// Scheduled runs skipped because the previous one was still going.
    pub skipped: u64,
    /// Runs that failed.
    pub failed: u64,
    /// The last finished run.
    pub last_run: Option<JobRun>,
    /// When a run was last skipped.
    pub last_skipped_ms: Option<u64>,
}

impl Job {
    /// A new job from `definition`, with id `id`, paused or next running at `next_ms`.
    pub fn new(
        id: JobId,
        definition: JobDefinition,
        paused: bool,
        next_ms: Option<u64>,
        now_ms: u64,
    ) -> Self {
        Self {
            id,
            app: definition.app,
            name: definition.name,
            schedule: definition.schedule,
            time_zone: definition.time_zone,
            request: definition.request,
            overlap: definition.overlap,
            paused,
            created_ms: now_ms,
            updated_ms: now_ms,
            next_ms,
            running: 0,
            runs: 0,
            skipped: 0,
            failed: 0,
            last_run: None,
            last_skipped_ms: None,
        }
    }

    /// Replace the definition and the paused state, keeping the id, the counters and the
    /// last run.
    pub fn redefine(
        &mut self,
        definition: JobDefinition,
        paused: bool,
        next_ms: Option<u64>,
        now_ms: u64,
    ) {
        self.schedule = definition.schedule;
        self.time_zone = definition.time_zone;
        self.request = definition.request;
        self.overlap = definition.overlap;
        self.paused = paused;
        self.next_ms = next_ms;
        self.updated_ms = now_ms;
    }
}

/// A change to a stored job, applied atomically by [`JobStore::update_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobChange {
    /// Stop scheduled runs (runs in flight go on).
    Pause,
    /// Start scheduled runs again, the next at `next_ms`.
    Resume {
        /// The next fire time from now.
        next_ms: Option<u64>,
    },
    /// A run starts: one more run, one more in flight; the schedule's next run is at
    /// `next_ms` (unchanged for a manual run).
    Start {
        /// The next fire time.
        next_ms: Option<u64>,
    },
    /// A scheduled run was skipped (the previous one is still going); the next is at
    /// `next_ms`.
    Skip {
        /// The next fire time.
        next_ms: Option<u64>,
    },
    /// A run finished.
    Finish(JobRun),
    /// Move the next scheduled run, nothing else (a run that could not be started is
    /// tried again a little later).
    Reschedule {
        /// The new fire time.
        next_ms: Option<u64>,
    },
}

impl JobChange {
    /// What the change does to `job`, at `now_ms`.
    pub fn apply(self, job: &mut Job, now_ms: u64) {
        match self {
            JobChange::Pause => {
                job.paused = true;
                job.next_ms = None;
                job.updated_ms = now_ms;
            }
            JobChange::Resume { next_ms } => {
                job.paused = false;
                job.next_ms = next_ms;
                job.updated_ms = now_ms;
            }
            JobChange::Start { next_ms } => {
                job.runs += 1;
                job.running = job.running.saturating_add(1);
                job.next_ms = next_ms;
            }
            JobChange::Skip { next_ms } => {
                job.skipped += 1;
                job.last_skipped_ms = Some(now_ms);
                job.next_ms = next_ms;
            }
            JobChange::Finish(run) => {
                job.running = job.running.saturating_sub(1);
                if !run.succeeded {
                    job.failed += 1;
                }
                job.last_run = Some(run);
            }
            JobChange::Reschedule { next_ms } => job.next_ms = next_ms,
        }
    }
}

/// What a [`JobStore::put_job`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutJob {
    /// The job as stored now.
    pub job: Job,
    /// True when it did not exist before.
    pub created: bool,
}

/// A job as found at start, by [`JobStore::recover_jobs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredJob {
    /// The job, with no run in flight any more.
    pub job: Job,
    /// Runs that were in flight when the server stopped: cut off, their results unknown.
    pub interrupted: u32,
}

/// The contract every job store keeps, with the same guarantees as
/// [`TimerStore`](super::TimerStore): a change that returned `Ok` is durable, and each
/// call reads and writes one job atomically.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Create the job `definition` names (app and name), or replace the definition and
    /// paused state of the existing one, keeping its id, counters and last run; it runs
    /// next at `next_ms`.
    async fn put_job(
        &self,
        definition: JobDefinition,
        paused: bool,
        next_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<PutJob, StoreError>;

    /// The job `name` of `app`.
    async fn get_job(&self, app: &str, name: &str) -> Result<Option<Job>, StoreError>;

    /// Every job of `app`, in name order.
    async fn list_jobs(&self, app: &str) -> Result<Vec<Job>, StoreError>;

    /// Apply `change` to the job `name` of `app` if its id is still `id`; returns the job
    /// as it is after that, or `None` when it is gone (or was deleted and created again).
    async fn update_job(
        &self,
        app: &str,
        name: &str,
        id: JobId,
        change: JobChange,
        now_ms: u64,
    ) -> Result<Option<Job>, StoreError>;

    /// Delete the job `name` of `app`; returns it as it was, or `None` if there was none.
    async fn delete_job(&self, app: &str, name: &str) -> Result<Option<Job>, StoreError>;

    /// At start: every job, with the runs left in flight by the last stop counted in
    /// [`RecoveredJob::interrupted`] and cleared.
    async fn recover_jobs(&self) -> Result<Vec<RecoveredJob>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::new(
            7,
            JobDefinition {
                app: "a".into(),
                name: "n".into(),
                schedule: "* * * * *".into(),
                time_zone: "UTC".into(),
                request: CallbackRequest {
                    method: "GET".into(),
                    url: "http://127.0.0.1:9/x".into(),
                    headers: Vec::new(),
                    body: None,
                    timeout_ms: 1000,
                },
                overlap: Overlap::Skip,
            },
            false,
            Some(60_000),
            1,
        )
    }

    fn run(succeeded: bool) -> JobRun {
        JobRun {
            number: 1,
            trigger: Trigger::Schedule,
            scheduled_ms: 60_000,
            started_ms: 60_001,
            duration_ms: 3,
            status: Some(if succeeded { 200 } else { 500 }),
            error: (!succeeded).then(|| "HTTP 500".into()),
            response: None,
            succeeded,
        }
    }

    #[test]
    fn changes_count_runs_and_move_the_schedule() {
        let mut job = job();
        JobChange::Start {
            next_ms: Some(120_000),
        }
        .apply(&mut job, 60_001);
        assert_eq!((job.runs, job.running, job.next_ms), (1, 1, Some(120_000)));
        JobChange::Skip {
            next_ms: Some(180_000),
        }
        .apply(&mut job, 120_001);
        assert_eq!(
            (job.skipped, job.last_skipped_ms, job.next_ms),
            (1, Some(120_001), Some(180_000))
        );
        JobChange::Finish(run(false)).apply(&mut job, 130_000);
        assert_eq!((job.running, job.failed), (0, 1));
        assert_eq!(job.last_run, Some(run(false)));
        JobChange::Finish(run(true)).apply(&mut job, 130_001);
        assert_eq!((job.running, job.failed), (0, 1), "never below zero");
        JobChange::Pause.apply(&mut job, 140_000);
        assert_eq!(
            (job.paused, job.next_ms, job.updated_ms),
            (true, None, 140_000)
        );
        JobChange::Resume {
            next_ms: Some(180_000),
        }
        .apply(&mut job, 150_000);
        assert_eq!((job.paused, job.next_ms), (false, Some(180_000)));
        JobChange::Reschedule {
            next_ms: Some(151_000),
        }
        .apply(&mut job, 150_000);
        assert_eq!(job.next_ms, Some(151_000));
        assert_eq!(job.runs, 1, "only Start counts a run");
    }

    #[test]
    fn a_new_definition_keeps_the_history() {
        let mut job = job();
        JobChange::Start { next_ms: None }.apply(&mut job, 2);
        let mut definition = JobDefinition {
            app: "a".into(),
            name: "n".into(),
            schedule: "0 * * * *".into(),
            time_zone: "Europe/Paris".into(),
            request: job.request.clone(),
            overlap: Overlap::Allow,
        };
        definition.request.url = "http://127.0.0.1:9/y".into();
        job.redefine(definition, true, None, 3);
        assert_eq!(
            (job.id, job.runs, job.running, job.created_ms),
            (7, 1, 1, 1)
        );
        assert_eq!(
            (
                job.schedule.as_str(),
                job.overlap,
                job.paused,
                job.updated_ms
            ),
            ("0 * * * *", Overlap::Allow, true, 3)
        );
        assert_eq!(Overlap::parse("allow"), Some(Overlap::Allow));
        assert_eq!(Overlap::parse("sometimes"), None);
        assert_eq!(Trigger::CatchUp.name(), "catch_up");
    }
}
