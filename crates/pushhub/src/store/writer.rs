//! Group commit: one thread applies every queued write in one transaction and one fsync.
//!
//! A commit costs an fsync (milliseconds on most disks) whatever it holds, so a writer
//! that committed each create alone would cap creation at a few hundred per second.
//! Here callers queue their writes on a channel; the thread takes everything queued (up to
//! [`MAX_BATCH`]), applies it in order in one transaction, commits, and only then answers
//! each caller. While it commits, new requests queue up for the next batch, so batches
//! grow with load and throughput with them.
//!
//! Starting an attempt is not answered at all: the store answers it from a read and
//! queues the change here (see [`super::TimerStore::begin_attempt`]), so an attempt never
//! waits for a commit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::Database;
use tokio::sync::oneshot;

use super::damage::{panic_message, DamageLatch};
use super::embedded::{backend, Tables};
use super::{
    Attempt, Cancel, Created, Job, JobChange, JobDefinition, JobId, NewTimer, Next, PutJob,
    RecoveredJob, StoreError, TimerId, TimerState,
};
use crate::sync::lock;

/// Most writes in one transaction: bounds how long one commit keeps the others waiting.
const MAX_BATCH: usize = 4096;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One queued write and where its answer goes.
pub(super) enum Op {
    Create(NewTimer, Reply<Created>),
    Begin(TimerId),
    Finish {
        id: TimerId,
        attempt: Attempt,
        next: Next,
        now_ms: u64,
        reply: Reply<Option<TimerState>>,
    },
    Cancel {
        id: TimerId,
        now_ms: u64,
        reply: Reply<Cancel>,
    },
    Recover(Reply<Vec<(u64, TimerId)>>),
    Purge {
        before_ms: u64,
        limit: usize,
        reply: Reply<usize>,
    },
    PutJob {
        definition: JobDefinition,
        paused: bool,
        next_ms: Option<u64>,
        now_ms: u64,
        reply: Reply<PutJob>,
    },
    UpdateJob {
        app: String,
        name: String,
        id: JobId,
        change: JobChange,
        now_ms: u64,
        reply: Reply<Option<Job>>,
    },
    DeleteJob {
        app: String,
        name: String,
        reply: Reply<Option<Job>>,
    },
    RecoverJobs(Reply<Vec<RecoveredJob>>),
}

impl Op {
    /// Answer with `failure`, without applying.
    fn fail(self, failure: &StoreError) {
        fn error<T>(reply: Reply<T>, failure: &StoreError) {
            let _ = reply.send(Err(failure.clone()));
        }
        match self {
            Op::Create(_, reply) => error(reply, failure),
            Op::Begin(_) => {}
            Op::Finish { reply, .. } => error(reply, failure),
            Op::Cancel { reply, .. } => error(reply, failure),
            Op::Recover(reply) => error(reply, failure),
            Op::Purge { reply, .. } => error(reply, failure),
            Op::PutJob { reply, .. } => error(reply, failure),
            Op::UpdateJob { reply, .. } => error(reply, failure),
            Op::DeleteJob { reply, .. } => error(reply, failure),
            Op::RecoverJobs(reply) => error(reply, failure),
        }
    }
}

/// Sends a held-back answer, given the commit's failure if it failed.
type Answer = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// An answer held back until the transaction it belongs to is committed.
struct Deferred(Answer);

impl Deferred {
    fn new<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Self {
        Self(Box::new(move |failed: Option<&StoreError>| {
            let answer = match failed {
                Some(failure) => Err(failure.clone()),
                None => result,
            };
            let _ = reply.send(answer);
        }))
    }
}

/// The handle to the writer thread.
pub(super) struct Writer {
    queue: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Start the thread; ids are handed out from `next_id` on. Damage the thread finds
    /// trips `latch`, after which it answers every write with the latch's error.
    pub(super) fn spawn(
        db: Arc<Database>,
        next_id: u64,
        latch: Arc<DamageLatch>,
    ) -> std::io::Result<Self> {
        let (queue, ops) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("pushhub-store".into())
            .spawn(move || run(&db, &ops, next_id, &latch))?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queue a write.
    pub(super) fn send(&self, op: Op) -> Result<(), StoreError> {
        match &*lock(&self.queue) {
            Some(queue) => queue.send(op).map_err(|_| StoreError::Closed),
            None => Err(StoreError::Closed),
        }
    }

    /// Whether writes are still taken (not closed).
    pub(super) fn is_open(&self) -> bool {
        lock(&self.queue).is_some()
    }

    /// Stop taking writes, and wait until the thread has committed those queued.
    pub(super) async fn close(&self) {
        drop(lock(&self.queue).take());
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Until every sender is gone: take a batch, apply, commit, answer. Once the store is
/// found damaged, answer every batch with that at once, without touching the file. A
/// panic inside redb is caught here: its batch's answers are dropped unsent (their
/// callers see that, [`super::RedbStore`]'s `write`), and it trips the latch.
fn run(db: &Database, ops: &mpsc::Receiver<Op>, mut next_id: u64, latch: &DamageLatch) {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Err(damaged) = latch.check() {
            batch.into_iter().for_each(|op| op.fail(&damaged));
            continue;
        }
        let committed = catch_unwind(AssertUnwindSafe(|| {
            commit(db, batch, &mut next_id, latch);
        }));
        if let Err(payload) = committed {
            latch.trip(panic_message(payload.as_ref()));
        }
    }
}

fn commit(db: &Database, batch: Vec<Op>, next_id: &mut u64, latch: &DamageLatch) {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(error) => {
            let failure = contain(latch, backend(error));
            tracing::error!(%failure, "timer store: cannot start a transaction");
            batch.into_iter().for_each(|op| op.fail(&failure));
            return;
        }
    };
    let mut answers = Vec::with_capacity(batch.len());
    let mut ops = batch.into_iter();
    let failure = match Tables::open(&txn) {
        Ok(mut tables) => apply_all(&mut tables, &mut ops, &mut answers, next_id),
        Err(error) => Some(backend(error)),
    };
    let failure = match failure {
        Some(failure) => {
            drop(txn);
            Some(failure)
        }
        None => txn.commit().err().map(backend),
    };
    let failure = failure.map(|failure| contain(latch, failure));
    if let Some(failure) = &failure {
        if !matches!(failure, StoreError::Damaged { .. }) {
            tracing::error!(%failure, "timer store: a write batch failed");
        }
        ops.for_each(|op| op.fail(failure));
    }
    for answer in answers {
        (answer.0)(failure.as_ref());
    }
}

/// Damage trips the latch (which logs it once and names the file); other failures pass.
fn contain(latch: &DamageLatch, failure: StoreError) -> StoreError {
    match failure {
        StoreError::Damaged { problem, .. } => latch.trip(problem),
        other => other,
    }
}

/// Apply ops in order until one fails for a reason that spoils the transaction; return
/// that reason. Answers that must wait for the commit go to `answers`.
fn apply_all(
    tables: &mut Tables<'_>,
    ops: &mut impl Iterator<Item = Op>,
    answers: &mut Vec<Deferred>,
    next_id: &mut u64,
) -> Option<StoreError> {
    for op in ops {
        let failure = match op {
            Op::Create(new, reply) => defer(answers, reply, tables.create(new, next_id)),
            Op::Begin(id) => spoiled(&tables.begin_attempt(id)),
            Op::Finish {
                id,
                attempt,
                next,
                now_ms,
                reply,
            } => defer(
                answers,
                reply,
                tables.finish_attempt(id, attempt, next, now_ms),
            ),
            Op::Cancel { id, now_ms, reply } => defer(answers, reply, tables.cancel(id, now_ms)),
            Op::Recover(reply) => defer(answers, reply, tables.recover()),
            Op::Purge {
                before_ms,
                limit,
                reply,
            } => defer(answers, reply, tables.purge(before_ms, limit)),
            Op::PutJob {
                definition,
                paused,
                next_ms,
                now_ms,
                reply,
            } => defer(
                answers,
                reply,
                tables.put_job(definition, paused, next_ms, now_ms),
            ),
            Op::UpdateJob {
                app,
                name,
                id,
                change,
                now_ms,
                reply,
            } => defer(
                answers,
                reply,
                tables.update_job(&app, &name, id, change, now_ms),
            ),
            Op::DeleteJob { app, name, reply } => {
                defer(answers, reply, tables.delete_job(&app, &name))
            }
            Op::RecoverJobs(reply) => defer(answers, reply, tables.recover_jobs()),
        };
        if failure.is_some() {
            return failure;
        }
    }
    None
}

/// Hold `result` back until the commit; report whether it spoiled the transaction.
fn defer<T: Send + 'static>(
    answers: &mut Vec<Deferred>,
    reply: Reply<T>,
    result: Result<T, StoreError>,
) -> Option<StoreError> {
    let failure = spoiled(&result);
    answers.push(Deferred::new(reply, result));
    failure
}

/// A storage failure or damage leaves the transaction unusable; other errors (a record
/// that does not decode) concern one write only.
fn spoiled<T>(result: &Result<T, StoreError>) -> Option<StoreError> {
    match result {
        Err(error @ (StoreError::Backend(_) | StoreError::Damaged { .. })) => Some(error.clone()),
        _ => None,
    }
}
