//! `pushhub store repair`: salvage what a damaged store still holds into a new file.
//!
//! redb cannot mend a file damaged outside it; what can be done is to read every record
//! that still reads and write it to a fresh store. The damaged file is opened through the
//! [`ScratchBackend`](super::scratch::ScratchBackend), so the salvage never writes to it,
//! and every read runs under `catch_unwind` (redb may panic on a damaged page): a read
//! that fails costs the records behind it, not the salvage.
//!
//! What is read:
//! - every timer record the `timers` table yields, in id order, until a damaged page stops
//!   the scan;
//! - the index tables (`pending`, `running`, `finished`, `by_app`, `idempotency`), for the
//!   ids of timers the scan may have missed: each is then fetched on its own (another path
//!   through the tree may avoid the damaged page), and an id no read can recover is
//!   reported lost by id;
//! - every cron job the `jobs` table yields;
//! - the id counters in `meta`, so ids are never handed out twice.
//!
//! A record is kept only if it decodes whole. The new store gets every kept record with
//! its index entries rebuilt, then replaces `timers.redb` by rename, after the damaged
//! file has been renamed to `timers.redb.damaged-<UTC time>` (never deleted). The state
//! file then records the new counts, so `serve` accepts the result.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, Value,
};

use super::damage::panic_message;
use super::embedded::{self, Tables, FILE_NAME};
use super::integrity::{self, Verdict};
use super::scratch::ScratchBackend;
use super::state_file::{self, ExpectedState};
use super::{Job, StoreError, Timer, TimerId};

/// Most ids listed one by one in a report; beyond that, a count.
pub const MAX_LISTED_IDS: usize = 100;

/// What `repair` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// The store is not damaged: nothing was changed.
    NotNeeded(Verdict),
    /// A new store holds what could be salvaged.
    Repaired(Salvage),
}

/// What a salvage recovered and lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Salvage {
    /// What the check found wrong.
    pub problem: String,
    /// Timers written to the new store.
    pub timers: u64,
    /// Of those, pending or running: they will fire.
    pub unfinished: u64,
    /// Cron jobs written to the new store.
    pub jobs: u64,
    /// Timers known to have existed (an index names them, or their record is there but
    /// does not decode) that could not be recovered.
    pub lost_timers: Vec<TimerId>,
    /// Cron jobs (app, name) whose record is there but does not decode.
    pub lost_jobs: Vec<(String, String)>,
    /// Reads that failed, and what they cost: records behind them may be lost without
    /// their ids being known.
    pub unreadable: Vec<String>,
    /// What the state file said the store held (compare with what was recovered).
    pub expected: Option<ExpectedState>,
    /// Where the damaged file was kept, if there was one.
    pub kept: Option<PathBuf>,
}

/// Check the store in `data_dir` and, when it is damaged, salvage it. `Err` when the
/// store cannot be checked (a server has it open) or the new store cannot be written; the
/// damaged file is then untouched.
pub fn repair(data_dir: &Path) -> Result<Repair, StoreError> {
    let damage = match integrity::check(data_dir)? {
        Verdict::Damaged(damage) => damage,
        other => return Ok(Repair::NotNeeded(other)),
    };
    let path = data_dir.join(FILE_NAME);
    let mut found = read_what_reads(&path);
    let now_ms = i64::try_from(crate::scheduler::unix_ms()).unwrap_or(i64::MAX);
    let stamp = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string();
    let fresh = data_dir.join(format!("{FILE_NAME}.salvage-{stamp}"));
    let io_error = |what: String, error: std::io::Error| StoreError::Open {
        path: path.clone(),
        reason: format!("{what}: {error}"),
    };
    // A leftover of an interrupted repair at the same second is not built upon.
    let _ = std::fs::remove_file(&fresh);
    if let Err(error) = write_store(&fresh, &found) {
        let _ = std::fs::remove_file(&fresh);
        return Err(error);
    }
    let kept = if path.exists() {
        let kept = data_dir.join(format!("{FILE_NAME}.damaged-{stamp}"));
        std::fs::rename(&path, &kept).map_err(|e| {
            io_error(
                format!("cannot rename the damaged file to {}", kept.display()),
                e,
            )
        })?;
        Some(kept)
    } else {
        None
    };
    std::fs::rename(&fresh, &path).map_err(|e| {
        io_error(
            format!(
                "cannot move the salvaged store {} into place",
                fresh.display()
            ),
            e,
        )
    })?;
    state_file::sync_dir(data_dir)
        .map_err(|e| io_error("cannot sync the data directory".into(), e))?;
    let recovered = ExpectedState {
        open: false,
        timers: found.timers.len() as u64,
        jobs: found.jobs.len() as u64,
        written_ms: crate::scheduler::unix_ms(),
    };
    state_file::write(data_dir, &recovered)
        .map_err(|e| io_error("cannot write the state file".into(), e))?;
    found.report.problem = damage.problem;
    found.report.expected = damage.expected;
    found.report.kept = kept;
    found.report.timers = recovered.timers;
    found.report.jobs = recovered.jobs;
    found.report.unfinished = found
        .timers
        .values()
        .filter(|t| !t.state.is_finished())
        .count() as u64;
    Ok(Repair::Repaired(found.report))
}

/// Everything read from the damaged file.
#[derive(Default)]
struct Found {
    timers: BTreeMap<TimerId, Timer>,
    jobs: Vec<Job>,
    next_id: u64,
    next_job_id: u64,
    report: Salvage,
}

/// Read every record that still reads. Never fails: what cannot be read is reported.
fn read_what_reads(path: &Path) -> Found {
    let mut found = Found::default();
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        found
            .report
            .unreadable
            .push("the file is missing or empty: nothing in it to salvage".into());
        return found;
    }
    let db = match open_damaged(path) {
        Ok(db) => db,
        Err(reason) => {
            found.report.unreadable.push(format!(
                "redb cannot open the file ({reason}): nothing could be read"
            ));
            return found;
        }
    };
    read_timers(db.as_ref(), &mut found);
    read_jobs(db.as_ref(), &mut found);
    read_counters(db.as_ref(), &mut found);
    found
}

/// The damaged file, opened for reading through a scratch overlay: read-only when it was
/// closed cleanly (nothing is walked at open), else with redb's crash recovery, which
/// may fall back to the commit before the last.
fn open_damaged(path: &Path) -> Result<Box<dyn ReadableDatabase>, String> {
    let attempt = |read_only: bool| {
        catch_unwind(AssertUnwindSafe(
            || -> Result<Box<dyn ReadableDatabase>, String> {
                let backend = ScratchBackend::open(path).map_err(|e| e.to_string())?;
                let builder = Database::builder();
                match read_only {
                    true => builder
                        .open_read_only_with_backend(backend)
                        .map(|db| Box::new(db) as Box<dyn ReadableDatabase>),
                    false => builder
                        .create_with_backend(backend)
                        .map(|db| Box::new(db) as Box<dyn ReadableDatabase>),
                }
                .map_err(|e| e.to_string())
            },
        ))
        .unwrap_or_else(|payload| Err(panic_message(payload.as_ref())))
    };
    attempt(true).or_else(|_| attempt(false))
}

/// A read transaction, or why not.
fn begin(db: &dyn ReadableDatabase) -> Result<ReadTransaction, String> {
    catch_unwind(AssertUnwindSafe(|| {
        db.begin_read().map_err(|e| e.to_string())
    }))
    .unwrap_or_else(|payload| Err(panic_message(payload.as_ref())))
}

/// Visit every entry of `table` until the end or the first failure; the failure, if any.
fn visit<K: Key + 'static, V: Value + 'static>(
    db: &dyn ReadableDatabase,
    table: TableDefinition<K, V>,
    mut each: impl FnMut(K::SelfType<'_>, V::SelfType<'_>),
) -> Option<String> {
    let txn = match begin(db) {
        Ok(txn) => txn,
        Err(reason) => return Some(reason),
    };
    let walked = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        let opened = match txn.open_table(table) {
            Ok(opened) => opened,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(error) => return Err(error.to_string()),
        };
        for entry in opened.iter().map_err(|e| e.to_string())? {
            let (key, value) = entry.map_err(|e| e.to_string())?;
            each(key.value(), value.value());
        }
        Ok(())
    }));
    match walked {
        Ok(Ok(())) => None,
        Ok(Err(reason)) => Some(reason),
        Err(payload) => Some(panic_message(payload.as_ref())),
    }
}

fn read_timers(db: &dyn ReadableDatabase, found: &mut Found) {
    let mut undecodable = BTreeSet::new();
    let mut last = None;
    let failure = visit(db, embedded::TIMERS, |id, bytes| {
        last = Some(id);
        match embedded::decode(id, bytes) {
            Ok(timer) if timer.id == id => drop(found.timers.insert(id, timer)),
            _ => {
                undecodable.insert(id);
            }
        }
    });
    if let Some(reason) = failure {
        let place = last.map_or("at its start".to_owned(), |id| format!("after id {id}"));
        found.report.unreadable.push(format!(
            "table timers: the scan stopped {place} ({reason}); timers further on are recovered only through the indexes"
        ));
    }
    let mut referenced = BTreeSet::new();
    let indexes: [(&str, Option<String>); 5] = [
        (
            "pending",
            visit(db, embedded::PENDING, |id, _| {
                referenced.insert(id);
            }),
        ),
        (
            "running",
            visit(db, embedded::RUNNING, |id, _| {
                referenced.insert(id);
            }),
        ),
        (
            "finished",
            visit(db, embedded::FINISHED, |(_, id), _| {
                referenced.insert(id);
            }),
        ),
        (
            "by_app",
            visit(db, embedded::BY_APP, |(_, id), _| {
                referenced.insert(id);
            }),
        ),
        (
            "idempotency",
            visit(db, embedded::IDEMPOTENCY, |_, id| {
                referenced.insert(id);
            }),
        ),
    ];
    for (name, failure) in indexes {
        if let Some(reason) = failure {
            found.report.unreadable.push(format!(
                "index {name}: the scan stopped ({reason}); it only helps find timers, so this alone loses none"
            ));
        }
    }
    let missing = referenced
        .iter()
        .chain(&undecodable)
        .filter(|id| !found.timers.contains_key(id))
        .copied()
        .collect::<BTreeSet<_>>();
    for id in missing {
        match fetch(db, id) {
            Some(timer) => drop(found.timers.insert(id, timer)),
            None => found.report.lost_timers.push(id),
        }
    }
}

/// One timer, read on its own path through the tree.
fn fetch(db: &dyn ReadableDatabase, id: TimerId) -> Option<Timer> {
    let txn = begin(db).ok()?;
    catch_unwind(AssertUnwindSafe(|| {
        let table = txn.open_table(embedded::TIMERS).ok()?;
        let bytes = table.get(id).ok()??;
        embedded::decode(id, bytes.value())
            .ok()
            .filter(|t| t.id == id)
    }))
    .ok()
    .flatten()
}

fn read_jobs(db: &dyn ReadableDatabase, found: &mut Found) {
    let failure =
        visit(
            db,
            super::redb_jobs::JOBS,
            |(app, name), bytes| match super::redb_jobs::decode(app, name, bytes) {
                Ok(job) => found.jobs.push(job),
                Err(_) => found
                    .report
                    .lost_jobs
                    .push((app.to_owned(), name.to_owned())),
            },
        );
    if let Some(reason) = failure {
        let place = found.jobs.last().map_or("at its start".to_owned(), |j| {
            format!("after {:?}/{:?}", j.app, j.name)
        });
        found.report.unreadable.push(format!(
            "table jobs: the scan stopped {place} ({reason}); cron jobs further on are lost"
        ));
    }
}

/// The id counters: the stored ones when they read, and past every recovered id anyway.
fn read_counters(db: &dyn ReadableDatabase, found: &mut Found) {
    let mut stored = BTreeMap::new();
    if let Some(reason) = visit(db, embedded::META, |name, value| {
        stored.insert(name.to_owned(), value);
    }) {
        found.report.unreadable.push(format!(
            "table meta: the scan stopped ({reason}); ids continue after the highest recovered"
        ));
    }
    let highest_timer = found.timers.keys().chain(&found.report.lost_timers).max();
    found.next_id = stored
        .get("next_id")
        .copied()
        .unwrap_or(1)
        .max(highest_timer.map_or(1, |id| id + 1));
    let highest_job = found.jobs.iter().map(|j| j.id).max();
    found.next_job_id = stored
        .get("next_job_id")
        .copied()
        .unwrap_or(1)
        .max(highest_job.map_or(1, |id| id + 1));
}

/// Write the salvaged records to a new store file at `path`, durably.
fn write_store(path: &Path, found: &Found) -> Result<(), StoreError> {
    let failed = |reason: String| StoreError::Open {
        path: path.to_owned(),
        reason,
    };
    let db = Database::create(path).map_err(|e| failed(e.to_string()))?;
    let txn = db.begin_write().map_err(|e| failed(e.to_string()))?;
    {
        let mut tables = Tables::open(&txn).map_err(|e| failed(e.to_string()))?;
        tables
            .meta
            .insert("format", embedded::FORMAT)
            .map_err(|e| failed(e.to_string()))?;
        tables
            .meta
            .insert("next_id", found.next_id)
            .map_err(|e| failed(e.to_string()))?;
        tables
            .meta
            .insert("next_job_id", found.next_job_id)
            .map_err(|e| failed(e.to_string()))?;
        for timer in found.timers.values() {
            tables.restore(timer)?;
        }
        for job in &found.jobs {
            tables.save_job(job)?;
        }
    }
    txn.commit().map_err(|e| failed(e.to_string()))?;
    db.close().map_err(|e| failed(e.to_string()))
}
