//! Cron on a store shared by several nodes: every node polls the store for due jobs, and
//! each fire time is claimed by exactly one node ([`JobClaims::claim_run`]: the change
//! applies only while the job's next fire time is still that one), which makes the call.
//!
//! The job's `running` count lives in the store, so `overlap = skip` holds across nodes.
//! A node killed mid-run stops renewing its run's lease; the next node to look counts the
//! run as cut off and moves the job's next fire time back to it, so a node makes it up
//! at once: a catch-up run, as after a restart on one node. Any run that starts more than
//! [`LATE`] after its fire time (the whole cluster was down through it) is a catch-up
//! run too, and one run stands for every fire time missed, as on one node.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::spec::CronSpec;
use super::{call, not_found, CronError, Run, MAX_JOBS_PER_APP};
use crate::scheduler::claim::POLL;
use crate::scheduler::{unix_ms, Inner, Timers};
use crate::store::{
    Job, JobChange, JobClaims, JobDefinition, Overlap, PutJob, StoreError, Trigger,
};

/// A run that starts this late after its fire time is a catch-up run.
const LATE: u64 = 2_000;

/// Most due jobs looked at per poll.
const DUE_BATCH: usize = 100;

/// How long the dispatcher waits after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Until `shutdown`: every [`POLL`] (or when a job changed on this node), claim the due
/// fire times of every job, each on a task of its own.
pub(super) async fn dispatch(
    inner: Arc<Inner>,
    claims: Arc<dyn JobClaims>,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        let now = unix_ms();
        let wait = match claims.due_jobs(now, DUE_BATCH).await {
            Ok(found) => {
                failing = false;
                let counts = &inner.cron.shared_counts;
                counts.0.store(found.jobs, Relaxed);
                counts.1.store(found.scheduled, Relaxed);
                for (fire_ms, job) in found.due {
                    inner
                        .in_flight
                        .spawn(fire(inner.clone(), claims.clone(), fire_ms, job));
                }
                POLL
            }
            Err(StoreError::Closed) => return,
            Err(error) => {
                inner.cron.counters.store_errors.fetch_add(1, Relaxed);
                if !failing {
                    tracing::error!(%error, "cannot look for due cron jobs; trying again every second");
                    failing = true;
                }
                STORE_RETRY
            }
        };
        tokio::select! {
            _ = inner.cron.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Claim `job`'s fire time `fire_ms`; the node that wins records the run (or the skip)
/// and makes the call.
async fn fire(inner: Arc<Inner>, claims: Arc<dyn JobClaims>, fire_ms: u64, job: Job) {
    let cron = &inner.cron;
    let now = unix_ms();
    let spec = match CronSpec::parse(&job.schedule, &job.time_zone, now) {
        Ok(spec) => spec,
        Err(error) => {
            tracing::error!(app = %job.app, job = %job.name, %error, "this cron job's schedule cannot be used; it will not run until it is updated");
            return;
        }
    };
    let next_ms = spec.next_after(fire_ms.max(now));
    let skip = job.overlap == Overlap::Skip && job.running > 0;
    let change = match skip {
        true => JobChange::Skip { next_ms },
        false => JobChange::Start { next_ms },
    };
    let claimed = claims
        .claim_run(&job.app, &job.name, job.id, fire_ms, change, now)
        .await;
    let started = match claimed {
        Ok(Some(started)) => started,
        // Another node (or an earlier look of this one) has it.
        Ok(None) | Err(StoreError::Closed) => return,
        Err(error) => {
            cron.counters.store_errors.fetch_add(1, Relaxed);
            tracing::error!(app = %job.app, job = %job.name, %error, "cannot claim a cron run; the next look tries again");
            return;
        }
    };
    if skip {
        cron.counters.skipped.fetch_add(1, Relaxed);
        tracing::info!(app = %job.app, job = %job.name, "cron run skipped: the previous run is still going (overlap = skip)");
        return;
    }
    let trigger = match now > fire_ms + LATE {
        true => Trigger::CatchUp,
        false => Trigger::Schedule,
    };
    let run = Run {
        job: started,
        trigger,
        scheduled_ms: fire_ms,
    };
    call(inner.clone(), None, run).await;
}

impl Timers {
    /// [`Timers::put_job`] on a shared store.
    pub(super) async fn shared_put_job(
        &self,
        definition: JobDefinition,
        paused: Option<bool>,
        spec: &CronSpec,
        now: u64,
    ) -> Result<PutJob, CronError> {
        let cron = &self.inner.cron;
        let existing = cron
            .store
            .get_job(&definition.app, &definition.name)
            .await?;
        if existing.is_none()
            && cron.store.list_jobs(&definition.app).await?.len() >= MAX_JOBS_PER_APP
        {
            return Err(CronError::TooManyJobs(definition.app));
        }
        let paused = paused.unwrap_or(existing.is_some_and(|job| job.paused));
        let next = if paused { None } else { spec.next_after(now) };
        let put = cron.store.put_job(definition, paused, next, now).await?;
        cron.wake.notify_one();
        Ok(put)
    }

    /// [`Timers::pause_job`] on a shared store.
    pub(super) async fn shared_pause(&self, app: &str, name: &str) -> Result<Job, CronError> {
        let job = self.get_job(app, name).await?;
        if job.paused {
            return Ok(job);
        }
        self.shared_change(&job, JobChange::Pause).await
    }

    /// [`Timers::resume_job`] on a shared store.
    pub(super) async fn shared_resume(&self, app: &str, name: &str) -> Result<Job, CronError> {
        let job = self.get_job(app, name).await?;
        if !job.paused {
            return Ok(job);
        }
        let now = unix_ms();
        let next_ms = CronSpec::parse(&job.schedule, &job.time_zone, now)?.next_after(now);
        let resumed = self
            .shared_change(&job, JobChange::Resume { next_ms })
            .await?;
        self.inner.cron.wake.notify_one();
        Ok(resumed)
    }

    /// [`Timers::run_job`] on a shared store: `overlap = skip` looks at the runs in
    /// flight on every node.
    pub(super) async fn shared_run(&self, app: &str, name: &str) -> Result<Job, CronError> {
        let job = self.get_job(app, name).await?;
        if job.overlap == Overlap::Skip && job.running > 0 {
            return Err(CronError::Running(name.to_owned()));
        }
        let now = unix_ms();
        let started = self
            .shared_change(
                &job,
                JobChange::Start {
                    next_ms: job.next_ms,
                },
            )
            .await?;
        let run = Run {
            job: started.clone(),
            trigger: Trigger::Manual,
            scheduled_ms: now,
        };
        self.inner
            .in_flight
            .spawn(call(self.inner.clone(), None, run));
        Ok(started)
    }

    /// [`Timers::delete_job`] on a shared store.
    pub(super) async fn shared_delete(&self, app: &str, name: &str) -> Result<Job, CronError> {
        self.inner
            .cron
            .store
            .delete_job(app, name)
            .await?
            .ok_or_else(|| not_found(app, name))
    }

    async fn shared_change(&self, job: &Job, change: JobChange) -> Result<Job, CronError> {
        self.inner
            .cron
            .store
            .update_job(&job.app, &job.name, job.id, change, unix_ms())
            .await?
            .ok_or_else(|| not_found(&job.app, &job.name))
    }
}
