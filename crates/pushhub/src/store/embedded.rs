//! The embedded store: one redb file, `timers.redb`, in the data directory, holding the
//! timers and (tables in [`super::redb_jobs`]) the cron jobs.
//!
//! Why redb: it is pure Rust (no C toolchain, one static binary), crash-safe by design
//! (copy-on-write B-trees, checksummed commits, fsync on commit), ACID with MVCC so reads
//! never wait for the writer, actively maintained, and the most used embedded key-value
//! store written in Rust. SQLite would do too, at the cost of a C dependency and SQL for
//! what are only key lookups and ordered scans.
//!
//! Layout (all keys big-endian, so ranges are in numeric order):
//!
//! | table | key → value | what for |
//! |---|---|---|
//! | `timers` | id → JSON [`Timer`] | the records |
//! | `pending` | id → due ms | pending and running timers: what [`recover`](TimerStore::recover) schedules |
//! | `running` | id → () | attempts in flight: what recovery puts back to pending |
//! | `finished` | (finished ms, id) → () | what [`purge`](TimerStore::purge) removes, oldest first |
//! | `by_app` | (app, id) → () | listing an app's timers in id order |
//! | `idempotency` | (app, key) → id | creates with an idempotency key |
//! | `meta` | name → u64 | `format` (1), `next_id` and `next_job_id` |
//! | `jobs` | (app, name) → JSON [`Job`](super::Job) | cron jobs ([`super::redb_jobs`]) |
//!
//! The `jobs` table came after the first release of this layout: a file without it gets
//! it at the next open, and an older pushhub ignores it, so the format stays 1.
//!
//! Writes go through one writer thread that commits whatever requests are queued in one
//! transaction ([`super::writer`]), so concurrent creates share an fsync.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};
use tokio::sync::oneshot;

use super::damage::{panic_message, DamageLatch, DamageSnapshot};
use super::integrity::{self, Verdict};
use super::state_file::{self, ExpectedState};
use super::writer::{Op, Writer};
use super::{
    Attempt, Cancel, Created, ListPage, ListQuery, NewTimer, Next, StoreError, Timer, TimerId,
    TimerState, TimerStore,
};
use crate::sync::lock;

pub(super) const TIMERS: TableDefinition<u64, &[u8]> = TableDefinition::new("timers");
pub(super) const PENDING: TableDefinition<u64, u64> = TableDefinition::new("pending");
pub(super) const RUNNING: TableDefinition<u64, ()> = TableDefinition::new("running");
pub(super) const FINISHED: TableDefinition<(u64, u64), ()> = TableDefinition::new("finished");
pub(super) const BY_APP: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_app");
pub(super) const IDEMPOTENCY: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("idempotency");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The layout version this code writes and reads.
pub(super) const FORMAT: u64 = 1;

/// The store file's name in the data directory.
pub const FILE_NAME: &str = "timers.redb";

/// Page cache unless configured (`[timers] store_cache_mb`): enough for the indexes of a
/// million timers and the hot records; redb's default (1 GiB) would make the cache the
/// largest thing in the process.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Most records one listing reads when it filters by state, so a page stays cheap when
/// few timers match; the page then ends early with a `next` cursor.
const MAX_LIST_SCAN: usize = 10_000;

/// The embedded [`TimerStore`].
pub struct RedbStore {
    db: Mutex<Option<Arc<Database>>>,
    writer: Writer,
    latch: Arc<DamageLatch>,
    data_dir: PathBuf,
}

/// A redb error as a store error: `Corrupted` is damage (the path is filled in by the
/// [`DamageLatch`] the error goes through), anything else a backend failure.
pub(super) fn backend(error: impl Into<redb::Error>) -> StoreError {
    match error.into() {
        redb::Error::Corrupted(problem) => StoreError::Damaged {
            path: PathBuf::from(FILE_NAME),
            problem,
        },
        other => StoreError::Backend(other.to_string()),
    }
}

impl RedbStore {
    /// Check `data_dir/timers.redb` ([`integrity::check`]) and open it, or create it on a
    /// first start, creating the directory if needed. A damaged store is refused with
    /// [`StoreError::Damaged`] and left as it is. The check reads the whole file, and
    /// after a crash redb repairs it first, which walks it again: a few seconds for
    /// millions of timers.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(data_dir, CACHE_BYTES)
    }

    /// [`open`](Self::open) with `cache_bytes` of page cache.
    pub fn open_with_cache(data_dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let path = data_dir.join(FILE_NAME);
        let open_error = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(data_dir)
            .map_err(|e| open_error(format!("cannot create {}: {e}", data_dir.display())))?;
        let (timers, jobs) = match integrity::check(data_dir)? {
            Verdict::Fresh => (0, 0),
            Verdict::Damaged(damage) => {
                return Err(StoreError::Damaged {
                    path,
                    problem: damage.problem,
                })
            }
            Verdict::Sound(contents) => {
                if contents.rolls_back_last_commit {
                    tracing::warn!(
                        path = %path.display(),
                        "the timer store's last commit did not finish before a crash; redb rolls it back (it was never acknowledged)"
                    );
                }
                (contents.timers, contents.jobs)
            }
        };
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .set_repair_callback(|session| {
                if session.progress() == 0.0 {
                    tracing::warn!("the timer store was not closed cleanly (crash or kill -9): repairing it");
                }
            })
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => open_error(
                    "another process uses this data directory (each server needs its own --data-dir)"
                        .into(),
                ),
                other => open_error(other.to_string()),
            })?;
        let next_id = prepare(&db).map_err(|e| open_error(e.to_string()))?;
        let opened = ExpectedState {
            open: true,
            timers,
            jobs,
            written_ms: crate::scheduler::unix_ms(),
        };
        state_file::write(data_dir, &opened).map_err(|e| {
            open_error(format!(
                "cannot write {}: {e}",
                state_file::path(data_dir).display()
            ))
        })?;
        let db = Arc::new(db);
        let latch = Arc::new(DamageLatch::new(path.clone()));
        let writer = Writer::spawn(db.clone(), next_id, latch.clone())
            .map_err(|e| open_error(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            db: Mutex::new(Some(db)),
            writer,
            latch,
            data_dir: data_dir.to_owned(),
        })
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        lock(&self.db).clone().ok_or(StoreError::Closed)
    }

    /// Run a read on a blocking thread, so a cache miss never stalls the runtime. Damage
    /// found by the read (a `Corrupted` error, a panic inside redb) trips the latch.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.latch.check()?;
        let db = self.db()?;
        match tokio::task::spawn_blocking(move || read(&db)).await {
            Ok(Err(StoreError::Damaged { problem, .. })) => Err(self.latch.trip(problem)),
            Ok(result) => result,
            Err(error) if error.is_panic() => {
                Err(self.latch.trip(panic_message(error.into_panic().as_ref())))
            }
            Err(error) => Err(StoreError::Backend(format!("read task failed: {error}"))),
        }
    }

    /// Queue a write and wait for its answer.
    pub(super) async fn write<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        self.latch.check()?;
        let (reply, answer) = oneshot::channel();
        self.writer.send(op(reply))?;
        match answer.await {
            Ok(result) => result,
            // The writer drops an answer unsent only when redb panicked under it.
            Err(_) if self.writer.is_open() => Err(self
                .latch
                .trip("a write failed inside redb (it panicked)".into())),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

/// The store's final counts, taken after the writer has stopped; `None` when the store
/// was found damaged (the state file then keeps saying the store was open, so the next
/// start checks the file) or cannot be counted.
fn final_counts(latch: &DamageLatch, db: &Database) -> Option<(u64, u64)> {
    if latch.tripped() {
        return None;
    }
    let counted = catch_unwind(AssertUnwindSafe(|| count(db)))
        .unwrap_or_else(|payload| Err(StoreError::Backend(panic_message(payload.as_ref()))));
    counted
        .map_err(|error| tracing::warn!(%error, "cannot count the timer store at close; the next start checks the file all the same"))
        .ok()
}

/// Record a clean close in the state file: the next start expects exactly these counts.
fn record_clean_close(data_dir: &Path, (timers, jobs): (u64, u64)) {
    let closed = ExpectedState {
        open: false,
        timers,
        jobs,
        written_ms: crate::scheduler::unix_ms(),
    };
    if let Err(error) = state_file::write(data_dir, &closed) {
        tracing::warn!(%error, "cannot record the timer store's state at close; the next start checks the file all the same");
    }
}

/// How many timers and cron jobs the store holds.
fn count(db: &Database) -> Result<(u64, u64), StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let timers = txn
        .open_table(TIMERS)
        .map_err(backend)?
        .len()
        .map_err(backend)?;
    let jobs = txn
        .open_table(super::redb_jobs::JOBS)
        .map_err(backend)?
        .len()
        .map_err(backend)?;
    Ok((timers, jobs))
}

/// Create the tables, check the format, and read the next id to hand out.
fn prepare(db: &Database) -> Result<u64, redb::Error> {
    let txn = db.begin_write()?;
    let next_id = {
        let mut tables = Tables::open(&txn)?;
        let format = tables.meta.get("format")?.map(|v| v.value());
        match format {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(redb::Error::Corrupted(format!(
                    "the timer store has layout version {other}; this pushhub reads {FORMAT}"
                )))
            }
            None => {
                tables.meta.insert("format", FORMAT)?;
            }
        }
        let stored = tables.meta.get("next_id")?.map_or(1, |v| v.value());
        let after_last = tables.timers.last()?.map_or(1, |(k, _)| k.value() + 1);
        stored.max(after_last)
    };
    txn.commit()?;
    Ok(next_id)
}

fn encode(timer: &Timer) -> Vec<u8> {
    // A struct of strings and numbers always serializes.
    serde_json::to_vec(timer).unwrap_or_default()
}

pub(super) fn decode(id: TimerId, bytes: &[u8]) -> Result<Timer, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        id,
        reason: e.to_string(),
    })
}

/// Every table, open in one write transaction.
pub(super) struct Tables<'t> {
    timers: Table<'t, u64, &'static [u8]>,
    pending: Table<'t, u64, u64>,
    running: Table<'t, u64, ()>,
    finished: Table<'t, (u64, u64), ()>,
    by_app: Table<'t, (&'static str, u64), ()>,
    idempotency: Table<'t, (&'static str, &'static str), u64>,
    pub(super) meta: Table<'t, &'static str, u64>,
    pub(super) jobs: Table<'t, (&'static str, &'static str), &'static [u8]>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Self, redb::Error> {
        Ok(Self {
            timers: txn.open_table(TIMERS)?,
            pending: txn.open_table(PENDING)?,
            running: txn.open_table(RUNNING)?,
            finished: txn.open_table(FINISHED)?,
            by_app: txn.open_table(BY_APP)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            meta: txn.open_table(META)?,
            jobs: txn.open_table(super::redb_jobs::JOBS)?,
        })
    }

    fn load(&self, id: TimerId) -> Result<Option<Timer>, StoreError> {
        match self.timers.get(id).map_err(backend)? {
            Some(bytes) => decode(id, bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    fn save(&mut self, timer: &Timer) -> Result<(), StoreError> {
        self.timers
            .insert(timer.id, encode(timer).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    /// Move `timer` to a finished state at `now_ms`.
    fn finish(
        &mut self,
        timer: &mut Timer,
        state: TimerState,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        timer.state = state;
        timer.finished_ms = Some(now_ms);
        self.pending.remove(timer.id).map_err(backend)?;
        self.running.remove(timer.id).map_err(backend)?;
        self.finished
            .insert((now_ms, timer.id), ())
            .map_err(backend)?;
        self.save(timer)
    }

    pub(super) fn create(
        &mut self,
        new: NewTimer,
        next_id: &mut u64,
    ) -> Result<Created, StoreError> {
        if let Some(key) = &new.idempotency_key {
            let existing = self
                .idempotency
                .get((new.app.as_str(), key.as_str()))
                .map_err(backend)?
                .map(|v| v.value());
            if let Some(timer) = existing.map(|id| self.load(id)).transpose()?.flatten() {
                return Ok(Created {
                    timer,
                    existing: true,
                });
            }
        }
        let id = *next_id;
        *next_id += 1;
        let timer = Timer {
            id,
            app: new.app,
            request: new.request,
            retry: new.retry,
            idempotency_key: new.idempotency_key,
            interval: new.interval,
            state: TimerState::Pending,
            due_ms: new.due_ms,
            created_ms: new.created_ms,
            attempts: 0,
            last: None,
            finished_ms: None,
        };
        self.save(&timer)?;
        self.pending.insert(id, timer.due_ms).map_err(backend)?;
        self.by_app
            .insert((timer.app.as_str(), id), ())
            .map_err(backend)?;
        if let Some(key) = &timer.idempotency_key {
            self.idempotency
                .insert((timer.app.as_str(), key.as_str()), id)
                .map_err(backend)?;
        }
        self.meta.insert("next_id", *next_id).map_err(backend)?;
        Ok(Created {
            timer,
            existing: false,
        })
    }

    /// Mark a pending timer running; anything else is left alone (cancelled since the
    /// caller read it).
    pub(super) fn begin_attempt(&mut self, id: TimerId) -> Result<(), StoreError> {
        let Some(mut timer) = self.load(id)? else {
            return Ok(());
        };
        if timer.state != TimerState::Pending {
            return Ok(());
        }
        timer.state = TimerState::Running;
        timer.attempts += 1;
        self.running.insert(id, ()).map_err(backend)?;
        self.save(&timer)
    }

    pub(super) fn finish_attempt(
        &mut self,
        id: TimerId,
        attempt: Attempt,
        next: Next,
        now_ms: u64,
    ) -> Result<Option<TimerState>, StoreError> {
        let Some(mut timer) = self.load(id)? else {
            return Ok(None);
        };
        timer.last = Some(attempt);
        if timer.state.is_finished() {
            self.save(&timer)?;
            return Ok(Some(timer.state));
        }
        match next {
            Next::Retry { due_ms } => {
                timer.state = TimerState::Pending;
                timer.due_ms = due_ms;
                self.running.remove(id).map_err(backend)?;
                self.pending.insert(id, due_ms).map_err(backend)?;
                self.save(&timer)?;
            }
            Next::Succeeded => self.finish(&mut timer, TimerState::Succeeded, now_ms)?,
            Next::Failed => self.finish(&mut timer, TimerState::Failed, now_ms)?,
        }
        Ok(Some(timer.state))
    }

    pub(super) fn cancel(&mut self, id: TimerId, now_ms: u64) -> Result<Cancel, StoreError> {
        let Some(mut timer) = self.load(id)? else {
            return Ok(Cancel::NotFound);
        };
        if timer.state.is_finished() {
            return Ok(Cancel::Finished(timer));
        }
        let was = timer.state;
        self.finish(&mut timer, TimerState::Cancelled, now_ms)?;
        Ok(Cancel::Cancelled { timer, was })
    }

    /// Write a timer salvaged from another store as it was, with its index entries
    /// ([`super::salvage`]). A timer that was running goes in as running, and the next
    /// start's recovery makes it pending again, as after a crash.
    pub(super) fn restore(&mut self, timer: &Timer) -> Result<(), StoreError> {
        self.save(timer)?;
        let (id, app) = (timer.id, timer.app.as_str());
        self.by_app.insert((app, id), ()).map_err(backend)?;
        if let Some(key) = &timer.idempotency_key {
            self.idempotency
                .insert((app, key.as_str()), id)
                .map_err(backend)?;
        }
        match timer.state {
            TimerState::Pending => drop(self.pending.insert(id, timer.due_ms).map_err(backend)?),
            TimerState::Running => {
                self.pending.insert(id, timer.due_ms).map_err(backend)?;
                self.running.insert(id, ()).map_err(backend)?;
            }
            TimerState::Succeeded | TimerState::Failed | TimerState::Cancelled => {
                let finished_ms = timer.finished_ms.unwrap_or(timer.due_ms);
                self.finished
                    .insert((finished_ms, id), ())
                    .map_err(backend)?;
            }
        }
        Ok(())
    }

    pub(super) fn recover(&mut self) -> Result<Vec<(u64, TimerId)>, StoreError> {
        let running: Vec<TimerId> = self
            .running
            .iter()
            .map_err(backend)?
            .map(|entry| entry.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        for id in running {
            if let Some(mut timer) = self.load(id)? {
                if timer.state == TimerState::Running {
                    timer.state = TimerState::Pending;
                    self.save(&timer)?;
                }
            }
            self.running.remove(id).map_err(backend)?;
        }
        self.pending
            .iter()
            .map_err(backend)?
            .map(|entry| entry.map(|(id, due)| (due.value(), id.value())))
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    pub(super) fn purge(&mut self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let old: Vec<(u64, TimerId)> = self
            .finished
            .range((0, 0)..(before_ms, 0))
            .map_err(backend)?
            .take(limit)
            .map(|entry| entry.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        for (finished_ms, id) in &old {
            self.finished.remove((*finished_ms, *id)).map_err(backend)?;
            // A record that does not decode is removed all the same: it is past retention.
            let timer = self.load(*id).ok().flatten();
            self.timers.remove(*id).map_err(backend)?;
            let Some(timer) = timer else { continue };
            self.by_app
                .remove((timer.app.as_str(), *id))
                .map_err(backend)?;
            if let Some(key) = &timer.idempotency_key {
                let owner = self
                    .idempotency
                    .get((timer.app.as_str(), key.as_str()))
                    .map_err(backend)?
                    .map(|v| v.value());
                if owner == Some(*id) {
                    self.idempotency
                        .remove((timer.app.as_str(), key.as_str()))
                        .map_err(backend)?;
                }
            }
        }
        Ok(old.len())
    }
}

fn get(db: &Database, id: TimerId) -> Result<Option<Timer>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let timers = txn.open_table(TIMERS).map_err(backend)?;
    let found = timers.get(id).map_err(backend)?;
    found.map(|bytes| decode(id, bytes.value())).transpose()
}

fn list(db: &Database, query: &ListQuery) -> Result<ListPage, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let timers = txn.open_table(TIMERS).map_err(backend)?;
    let by_app = txn.open_table(BY_APP).map_err(backend)?;
    let start = query.after.map_or(0, |id| id.saturating_add(1));
    let app = query.app.as_str();
    let mut ids = by_app
        .range((app, start)..=(app, u64::MAX))
        .map_err(backend)?
        .map(|entry| entry.map(|(k, _)| k.value().1));
    let mut page = ListPage::default();
    let mut scanned = 0;
    let mut last = None;
    while page.timers.len() < query.limit && scanned < MAX_LIST_SCAN {
        let Some(id) = ids.next().transpose().map_err(backend)? else {
            return Ok(page);
        };
        scanned += 1;
        last = Some(id);
        let Some(bytes) = timers.get(id).map_err(backend)? else {
            continue;
        };
        let timer = decode(id, bytes.value())?;
        if query.state.is_none_or(|state| state == timer.state) {
            page.timers.push(timer);
        }
    }
    if ids.next().is_some() {
        page.next = last;
    }
    Ok(page)
}

#[async_trait]
impl TimerStore for RedbStore {
    fn kind(&self) -> &'static str {
        "redb"
    }

    async fn create(&self, timer: NewTimer) -> Result<Created, StoreError> {
        self.write(|reply| Op::Create(timer, reply)).await
    }

    async fn get(&self, id: TimerId) -> Result<Option<Timer>, StoreError> {
        self.read(move |db| get(db, id)).await
    }

    async fn list(&self, query: ListQuery) -> Result<ListPage, StoreError> {
        self.read(move |db| list(db, &query)).await
    }

    async fn recover(&self) -> Result<Vec<(u64, TimerId)>, StoreError> {
        self.write(Op::Recover).await
    }

    async fn begin_attempt(&self, id: TimerId) -> Result<Option<Timer>, StoreError> {
        let Some(mut timer) = self.read(move |db| get(db, id)).await? else {
            return Ok(None);
        };
        if timer.state != TimerState::Pending {
            return Ok(None);
        }
        self.writer.send(Op::Begin(id))?;
        timer.state = TimerState::Running;
        timer.attempts += 1;
        Ok(Some(timer))
    }

    async fn finish_attempt(
        &self,
        id: TimerId,
        attempt: Attempt,
        next: Next,
        now_ms: u64,
    ) -> Result<Option<TimerState>, StoreError> {
        self.write(|reply| Op::Finish {
            id,
            attempt,
            next,
            now_ms,
            reply,
        })
        .await
    }

    async fn cancel(&self, id: TimerId, now_ms: u64) -> Result<Cancel, StoreError> {
        self.write(|reply| Op::Cancel { id, now_ms, reply }).await
    }

    async fn purge(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        self.write(|reply| Op::Purge {
            before_ms,
            limit,
            reply,
        })
        .await
    }

    fn damage(&self) -> DamageSnapshot {
        self.latch.snapshot()
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.writer.close().await;
        let Some(db) = lock(&self.db).take() else {
            return Ok(());
        };
        let counts = {
            let (latch, db) = (self.latch.clone(), db.clone());
            tokio::task::spawn_blocking(move || final_counts(&latch, &db))
                .await
                .ok()
                .flatten()
        };
        // The last handle closes the file cleanly (no repair at the next start); a read
        // still in flight holds one and closes it when it ends.
        let closed = match Arc::try_unwrap(db) {
            Ok(db) => tokio::task::spawn_blocking(move || db.close())
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))?
                .map_err(backend),
            Err(_) => Ok(()),
        };
        if let (Ok(()), Some(counts)) = (&closed, counts) {
            let data_dir = self.data_dir.clone();
            let _ =
                tokio::task::spawn_blocking(move || record_clean_close(&data_dir, counts)).await;
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redb_store_keeps_the_contract() {
        super::super::contract::check(|dir| async move {
            Arc::new(RedbStore::open(&dir).expect("open")) as Arc<dyn TimerStore>
        })
        .await;
    }

    #[tokio::test]
    async fn a_second_server_on_the_same_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = RedbStore::open(dir.path()).unwrap();
        let error = RedbStore::open(dir.path())
            .err()
            .expect("second open fails");
        assert!(error.to_string().contains("another process"), "{error}");
        first.close().await.unwrap();
        let again = RedbStore::open(dir.path()).unwrap();
        again.close().await.unwrap();
    }
}
