//! [`JobStore`] and [`JobClaims`] on Redis: a job is one JSON value in a hash, changed
//! by compare-and-set ([`scripts::JOB_CAS`]) around [`JobChange::apply`], so every
//! backend applies changes alike and two nodes never both apply one.
//!
//! A run in flight holds a lease in the runs index (`B:jruns`), whose member names the
//! job, its id, the run's number and the fire time it stands for. A run whose lease ran
//! out (its node died) is reaped by the next node that looks: the job's `running`
//! count drops, and its next fire time moves back to the cut-off run's, so a node makes
//! it up at once with a catch-up run.

use std::collections::HashMap;

use async_trait::async_trait;
use fred::interfaces::{HashesInterface, KeysInterface, SortedSetsInterface};

use super::codec::number;
use super::{backend, scripts, RedisStore};
use crate::store::{
    DueJobs, Job, JobChange, JobClaims, JobDefinition, JobId, JobStore, PutJob, RecoveredJob,
    StoreError,
};

/// Most cut-off runs reaped per look.
const REAP_BATCH: i64 = 100;

/// The jobs hash's field for job `name` of `app`.
fn job_field(app: &str, name: &str) -> String {
    format!("{}:{app}:{name}", app.len())
}

/// A run's member in the runs index.
fn run_member(field: &str, id: JobId, number: u64, fire_ms: u64) -> String {
    format!("{field}\n{id}\n{number}\n{fire_ms}")
}

/// The parts of a run's member: job field, job id, run number, fire time.
fn parse_member(member: &str) -> Option<(&str, JobId, u64, u64)> {
    let mut parts = member.rsplitn(4, '\n');
    let fire = parts.next()?.parse().ok()?;
    let number = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    Some((parts.next()?, id, number, fire))
}

fn decode(app: &str, name: &str, json: &str) -> Result<Job, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::CorruptJob {
        app: app.to_owned(),
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

fn encode(job: &Job) -> Result<String, StoreError> {
    serde_json::to_string(job).map_err(|e| StoreError::Backend(format!("encoding a job: {e}")))
}

/// What a compare-and-set writes: the job, and the run lease it takes, if any.
struct Write {
    job: Job,
    lease: Option<String>,
}

impl RedisStore {
    async fn job_json(&self, field: &str) -> Result<Option<String>, StoreError> {
        self.check_open()?;
        self.pool
            .hget(self.key("jobs"), field)
            .await
            .map_err(backend)
    }

    /// Read job `field`, let `change` decide what to write (`None`: nothing), and write it
    /// if the job is still as read; read again when another node changed it meanwhile.
    async fn modify<F>(
        &self,
        app: &str,
        name: &str,
        mut change: F,
    ) -> Result<Option<Job>, StoreError>
    where
        F: FnMut(Option<Job>) -> Result<Option<Write>, StoreError> + Send,
    {
        let field = job_field(app, name);
        loop {
            let current = self.job_json(&field).await?;
            let job = current
                .as_deref()
                .map(|json| decode(app, name, json))
                .transpose()?;
            let Some(write) = change(job)? else {
                return Ok(None);
            };
            let until = self.lease_end(crate::scheduler::unix_ms());
            let reply = self
                .eval(
                    &scripts::JOB_CAS,
                    vec![
                        field.clone(),
                        current.unwrap_or_default(),
                        encode(&write.job)?,
                        write
                            .job
                            .next_ms
                            .map_or_else(String::new, |n| n.to_string()),
                        app.to_owned(),
                        name.to_owned(),
                        write.lease.clone().unwrap_or_default(),
                        until.to_string(),
                    ],
                )
                .await?;
            if number(&reply) == Some(1) {
                if let Some(member) = write.lease {
                    self.held.take_run(member);
                }
                return Ok(Some(write.job));
            }
        }
    }

    /// Apply `change` to `job`: a started run takes a lease (standing for `fire_ms`), a
    /// finished one gives its lease back, and does not count down `running` when its
    /// lease was reaped meanwhile (the reaper did).
    async fn applied(
        &self,
        field: &str,
        change: &JobChange,
        fire_ms: u64,
    ) -> Result<impl Fn(&mut Job, u64) -> Option<String>, StoreError> {
        let reaped = match change {
            JobChange::Finish(run) => {
                let mut removed = 0;
                let prefix = format!("{field}\n");
                let held = self.held.runs_of(&prefix);
                for member in held.iter().filter(|m| {
                    parse_member(m).is_some_and(|(_, _, number, _)| number == run.number)
                }) {
                    self.held.drop_run(member);
                    removed += self
                        .pool
                        .zrem::<i64, _, _>(self.key("jruns"), member.as_str())
                        .await
                        .map_err(backend)?;
                }
                removed == 0
            }
            _ => false,
        };
        let field = field.to_owned();
        let change = change.clone();
        Ok(move |job: &mut Job, now_ms: u64| {
            let running = job.running;
            change.clone().apply(job, now_ms);
            if reaped {
                job.running = running;
            }
            matches!(change, JobChange::Start { .. })
                .then(|| run_member(&field, job.id, job.runs, fire_ms))
        })
    }

    /// Count down the runs cut off by nodes that died (leases run out by `now_ms`) and
    /// move their jobs' next fire time back to the cut-off run's. Returns the runs
    /// reaped per job id.
    async fn reap(&self, now_ms: u64) -> Result<HashMap<JobId, u32>, StoreError> {
        self.check_open()?;
        let expired: Vec<String> = self
            .pool
            .zrangebyscore(
                self.key("jruns"),
                "-inf",
                now_ms as f64,
                false,
                Some((0, REAP_BATCH)),
            )
            .await
            .map_err(backend)?;
        let mut reaped = HashMap::new();
        for member in expired {
            let removed: i64 = self
                .pool
                .zrem(self.key("jruns"), member.as_str())
                .await
                .map_err(backend)?;
            self.held.drop_run(&member);
            let Some((field, id, _, fire_ms)) = parse_member(&member).filter(|_| removed == 1)
            else {
                continue;
            };
            let Some((app, name)) = split_field(field) else {
                continue;
            };
            let cut = self
                .modify(app, name, |job| {
                    Ok(job.filter(|job| job.id == id).map(|mut job| {
                        job.running = job.running.saturating_sub(1);
                        if !job.paused {
                            job.next_ms = Some(job.next_ms.map_or(fire_ms, |n| n.min(fire_ms)));
                        }
                        Write { job, lease: None }
                    }))
                })
                .await?;
            if cut.is_some() {
                tracing::warn!(app, job = name, "a cron run was cut off by a node that stopped renewing its lease; it is made up with a catch-up run");
                *reaped.entry(id).or_default() += 1;
            }
        }
        Ok(reaped)
    }
}

/// The app and name a job field names.
fn split_field(field: &str) -> Option<(&str, &str)> {
    let (len, rest) = field.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let app = rest.get(..len)?;
    let name = rest.get(len..)?.strip_prefix(':')?;
    Some((app, name))
}

#[async_trait]
impl JobStore for RedisStore {
    async fn put_job(
        &self,
        definition: JobDefinition,
        paused: bool,
        next_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<PutJob, StoreError> {
        let (app, name) = (definition.app.clone(), definition.name.clone());
        // Drawn before the read, for when the job turns out new: ids are never reused,
        // gaps do no harm.
        let id: u64 = self.pool.incr(self.key("jseq")).await.map_err(backend)?;
        let mut created = false;
        let job = self
            .modify(&app, &name, |current| {
                created = current.is_none();
                let job = match current {
                    Some(mut job) => {
                        job.redefine(definition.clone(), paused, next_ms, now_ms);
                        job
                    }
                    None => Job::new(id, definition.clone(), paused, next_ms, now_ms),
                };
                Ok(Some(Write { job, lease: None }))
            })
            .await?
            .ok_or_else(|| StoreError::Backend("a job write came back empty".into()))?;
        Ok(PutJob { job, created })
    }

    async fn get_job(&self, app: &str, name: &str) -> Result<Option<Job>, StoreError> {
        self.job_json(&job_field(app, name))
            .await?
            .map(|json| decode(app, name, &json))
            .transpose()
    }

    async fn list_jobs(&self, app: &str) -> Result<Vec<Job>, StoreError> {
        self.check_open()?;
        let names: Vec<String> = self
            .pool
            .zrange(
                self.key(&format!("japp:{app}")),
                0,
                -1,
                None,
                false,
                None,
                false,
            )
            .await
            .map_err(backend)?;
        let mut jobs = Vec::with_capacity(names.len());
        for name in names {
            jobs.extend(self.get_job(app, &name).await?);
        }
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(jobs)
    }

    async fn update_job(
        &self,
        app: &str,
        name: &str,
        id: JobId,
        change: JobChange,
        now_ms: u64,
    ) -> Result<Option<Job>, StoreError> {
        let field = job_field(app, name);
        let apply = self.applied(&field, &change, now_ms).await?;
        self.modify(app, name, |job| {
            Ok(job.filter(|job| job.id == id).map(|mut job| {
                let lease = apply(&mut job, now_ms);
                Write { job, lease }
            }))
        })
        .await
    }

    async fn delete_job(&self, app: &str, name: &str) -> Result<Option<Job>, StoreError> {
        let reply = self
            .eval(
                &scripts::JOB_DELETE,
                vec![job_field(app, name), app.to_owned(), name.to_owned()],
            )
            .await?;
        super::codec::text(&reply)
            .map(|json| decode(app, name, &json))
            .transpose()
    }

    async fn recover_jobs(&self) -> Result<Vec<RecoveredJob>, StoreError> {
        let reaped = self.reap(crate::scheduler::unix_ms()).await?;
        let all: HashMap<String, String> =
            self.pool.hgetall(self.key("jobs")).await.map_err(backend)?;
        let mut jobs = Vec::with_capacity(all.len());
        for (field, json) in all {
            let (app, name) = split_field(&field).unwrap_or(("", &field));
            let job = decode(app, name, &json)?;
            let interrupted = reaped.get(&job.id).copied().unwrap_or(0);
            jobs.push(RecoveredJob { job, interrupted });
        }
        Ok(jobs)
    }
}

#[async_trait]
impl JobClaims for RedisStore {
    async fn due_jobs(&self, now_ms: u64, limit: usize) -> Result<DueJobs, StoreError> {
        self.reap(now_ms).await?;
        let fields: Vec<String> = self
            .pool
            .zrangebyscore(
                self.key("jdue"),
                "-inf",
                now_ms as f64,
                false,
                Some((0, i64::try_from(limit).unwrap_or(i64::MAX))),
            )
            .await
            .map_err(backend)?;
        let mut due = Vec::with_capacity(fields.len());
        for field in fields {
            let Some((app, name)) = split_field(&field) else {
                continue;
            };
            if let Some(job) = self.get_job(app, name).await? {
                if let (false, Some(next)) = (job.paused, job.next_ms) {
                    if next <= now_ms {
                        due.push((next, job));
                    }
                }
            }
        }
        let jobs: u64 = self.pool.hlen(self.key("jobs")).await.map_err(backend)?;
        let scheduled: u64 = self.pool.zcard(self.key("jdue")).await.map_err(backend)?;
        Ok(DueJobs {
            due,
            jobs,
            scheduled,
        })
    }

    async fn claim_run(
        &self,
        app: &str,
        name: &str,
        id: JobId,
        fire_ms: u64,
        change: JobChange,
        now_ms: u64,
    ) -> Result<Option<Job>, StoreError> {
        let field = job_field(app, name);
        let apply = self.applied(&field, &change, fire_ms).await?;
        self.modify(app, name, |job| {
            Ok(job
                .filter(|job| job.id == id && !job.paused && job.next_ms == Some(fire_ms))
                .map(|mut job| {
                    let lease = apply(&mut job, now_ms);
                    Write { job, lease }
                }))
        })
        .await
    }
}
