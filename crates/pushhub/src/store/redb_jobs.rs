//! The embedded store's cron jobs: the `jobs` table of `timers.redb`, (app, name) → JSON
//! [`Job`], plus `next_job_id` in `meta`.
//!
//! Writes go through the same group-commit writer as timers ([`super::writer`]), so a job
//! change is durable when it returns and never races a timer write for the file; reads
//! run on blocking threads from a read transaction, as timer reads do.

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::embedded::{backend, RedbStore, Tables};
use super::writer::Op;
use super::{Job, JobChange, JobDefinition, JobId, JobStore, PutJob, RecoveredJob, StoreError};

/// The jobs, by app and name.
pub(super) const JOBS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("jobs");

fn encode(job: &Job) -> Vec<u8> {
    // A struct of strings and numbers always serializes.
    serde_json::to_vec(job).unwrap_or_default()
}

pub(super) fn decode(app: &str, name: &str, bytes: &[u8]) -> Result<Job, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::CorruptJob {
        app: app.to_owned(),
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

impl Tables<'_> {
    fn load_job(&self, app: &str, name: &str) -> Result<Option<Job>, StoreError> {
        match self.jobs.get((app, name)).map_err(backend)? {
            Some(bytes) => decode(app, name, bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn save_job(&mut self, job: &Job) -> Result<(), StoreError> {
        self.jobs
            .insert(
                (job.app.as_str(), job.name.as_str()),
                encode(job).as_slice(),
            )
            .map_err(backend)?;
        Ok(())
    }

    pub(super) fn put_job(
        &mut self,
        definition: JobDefinition,
        paused: bool,
        next_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<PutJob, StoreError> {
        // A record that no longer decodes is replaced: the new definition repairs it.
        let existing = match self.load_job(&definition.app, &definition.name) {
            Ok(job) => job,
            Err(StoreError::CorruptJob { .. }) => None,
            Err(error) => return Err(error),
        };
        let (job, created) = match existing {
            Some(mut job) => {
                job.redefine(definition, paused, next_ms, now_ms);
                (job, false)
            }
            None => {
                let id = self
                    .meta
                    .get("next_job_id")
                    .map_err(backend)?
                    .map_or(1, |v| v.value());
                self.meta.insert("next_job_id", id + 1).map_err(backend)?;
                (Job::new(id, definition, paused, next_ms, now_ms), true)
            }
        };
        self.save_job(&job)?;
        Ok(PutJob { job, created })
    }

    pub(super) fn update_job(
        &mut self,
        app: &str,
        name: &str,
        id: JobId,
        change: JobChange,
        now_ms: u64,
    ) -> Result<Option<Job>, StoreError> {
        let Some(mut job) = self.load_job(app, name)?.filter(|job| job.id == id) else {
            return Ok(None);
        };
        change.apply(&mut job, now_ms);
        self.save_job(&job)?;
        Ok(Some(job))
    }

    pub(super) fn delete_job(&mut self, app: &str, name: &str) -> Result<Option<Job>, StoreError> {
        let removed = self.jobs.remove((app, name)).map_err(backend)?;
        removed
            .map(|bytes| decode(app, name, bytes.value()))
            .transpose()
    }

    pub(super) fn recover_jobs(&mut self) -> Result<Vec<RecoveredJob>, StoreError> {
        let mut stored = Vec::new();
        for entry in self.jobs.iter().map_err(backend)? {
            let (key, bytes) = entry.map_err(backend)?;
            let (app, name) = key.value();
            match decode(app, name, bytes.value()) {
                Ok(job) => stored.push(job),
                Err(error) => tracing::error!(%error, "a cron job cannot be read; it will not run"),
            }
        }
        let mut recovered = Vec::with_capacity(stored.len());
        for mut job in stored {
            let interrupted = std::mem::take(&mut job.running);
            if interrupted > 0 {
                self.save_job(&job)?;
            }
            recovered.push(RecoveredJob { job, interrupted });
        }
        Ok(recovered)
    }
}

fn get_job(db: &Database, app: &str, name: &str) -> Result<Option<Job>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    // Opening the store creates the table, so it is always there.
    let jobs = txn.open_table(JOBS).map_err(backend)?;
    let found = jobs.get((app, name)).map_err(backend)?;
    found
        .map(|bytes| decode(app, name, bytes.value()))
        .transpose()
}

fn list_jobs(db: &Database, app: &str) -> Result<Vec<Job>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    // Opening the store creates the table, so it is always there.
    let jobs = txn.open_table(JOBS).map_err(backend)?;
    let mut listed = Vec::new();
    for entry in jobs.range((app, "")..).map_err(backend)? {
        let (key, bytes) = entry.map_err(backend)?;
        let (owner, name) = key.value();
        if owner != app {
            break;
        }
        match decode(owner, name, bytes.value()) {
            Ok(job) => listed.push(job),
            Err(error) => tracing::error!(%error, "a cron job cannot be read; not listed"),
        }
    }
    Ok(listed)
}

#[async_trait]
impl JobStore for RedbStore {
    async fn put_job(
        &self,
        definition: JobDefinition,
        paused: bool,
        next_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<PutJob, StoreError> {
        self.write(|reply| Op::PutJob {
            definition,
            paused,
            next_ms,
            now_ms,
            reply,
        })
        .await
    }

    async fn get_job(&self, app: &str, name: &str) -> Result<Option<Job>, StoreError> {
        let (app, name) = (app.to_owned(), name.to_owned());
        self.read(move |db| get_job(db, &app, &name)).await
    }

    async fn list_jobs(&self, app: &str) -> Result<Vec<Job>, StoreError> {
        let app = app.to_owned();
        self.read(move |db| list_jobs(db, &app)).await
    }

    async fn update_job(
        &self,
        app: &str,
        name: &str,
        id: JobId,
        change: JobChange,
        now_ms: u64,
    ) -> Result<Option<Job>, StoreError> {
        let (app, name) = (app.to_owned(), name.to_owned());
        self.write(|reply| Op::UpdateJob {
            app,
            name,
            id,
            change,
            now_ms,
            reply,
        })
        .await
    }

    async fn delete_job(&self, app: &str, name: &str) -> Result<Option<Job>, StoreError> {
        let (app, name) = (app.to_owned(), name.to_owned());
        self.write(|reply| Op::DeleteJob { app, name, reply }).await
    }

    async fn recover_jobs(&self) -> Result<Vec<RecoveredJob>, StoreError> {
        self.write(Op::RecoverJobs).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn redb_store_keeps_the_job_contract() {
        super::super::contract::check_jobs(|dir| async move {
            let store = Arc::new(RedbStore::open(&dir).expect("open"));
            (
                store.clone() as Arc<dyn JobStore>,
                store as Arc<dyn super::super::TimerStore>,
            )
        })
        .await;
    }
}
