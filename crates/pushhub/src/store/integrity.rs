//! The store's check: is `timers.redb` whole, and is it the store the state file says?
//!
//! `serve` runs it before it opens the store and refuses a damaged one; `pushhub store
//! check` runs it and reports. It changes nothing: the file is opened through
//! [`ScratchBackend`](super::scratch::ScratchBackend), so redb's own repair writes to
//! memory only.
//!
//! What it verifies, in order:
//! 1. **Existence.** A missing or zero-length file is a first start only when no state
//!    file ([`super::state_file`]) says a store existed.
//! 2. **Every page.** redb's integrity check walks every table's B-tree from the last
//!    commit and compares each page (branch and leaf) with the checksum its parent holds;
//!    the header and the commit slots carry checksums of their own. A page that does
//!    not verify makes redb fall back to the previous commit; after a crash that is redb
//!    undoing a commit that never finished, but after a clean close it means the last
//!    commit was damaged, and the check says so rather than let its changes vanish.
//! 3. **Every record.** Every table is read end to end and every timer and cron job
//!    decoded, so every read the server will make is known to succeed.
//! 4. **The expected contents.** After a clean close the state file holds exact counts;
//!    a file holding other counts was replaced or rolled back since.
//!
//! redb documents that a file damaged outside it may make it panic; the check runs
//! under `catch_unwind`, and a panic is one more way of finding damage.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use redb::{
    Database, DatabaseError, Key, ReadTransaction, ReadableDatabase, ReadableTable, StorageError,
    TableDefinition, TableError, TableHandle, Value,
};

use super::damage::panic_message;
use super::embedded::{self, FILE_NAME};
use super::scratch::ScratchBackend;
use super::state_file::{self, ExpectedState, STATE_FILE_NAME};
use super::StoreError;

/// redb's page cache during a check: it reads each page once, so a small cache will do.
const CHECK_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The repair progress redb reports when the last commit does not verify and it falls
/// back to the one before.
const FALLBACK_PROGRESS: f64 = 0.3;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No store file (or an empty one) and no state file: a first start.
    Fresh,
    /// Whole: every page verifies and every record reads.
    Sound(Contents),
    /// Damaged: the store must not be used as it is.
    Damaged(Damage),
}

/// What a sound store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// Timers, in every state.
    pub timers: u64,
    /// Of those, pending or running: the ones that will still fire.
    pub unfinished: u64,
    /// Cron jobs.
    pub jobs: u64,
    /// The last commit did not verify and redb will roll it back: normal after a crash
    /// (the commit never finished, so it was never acknowledged).
    pub rolls_back_last_commit: bool,
    /// The state file, if there is one (none: a store made before pushhub kept one).
    pub expected: Option<ExpectedState>,
}

/// What is wrong with a damaged store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// In a sentence.
    pub problem: String,
    /// What the state file says the store held.
    pub expected: Option<ExpectedState>,
}

/// Check the store in `data_dir`. `Err` when it cannot be checked at all: another
/// process has it open, or the directory cannot be read.
pub fn check(data_dir: &Path) -> Result<Verdict, StoreError> {
    let path = data_dir.join(FILE_NAME);
    let open_error = |reason: String| StoreError::Open {
        path: path.clone(),
        reason,
    };
    let expected = match state_file::read(data_dir) {
        Ok(expected) => expected,
        Err(problem) => {
            return Ok(Verdict::Damaged(Damage {
                problem: format!("its state file is unreadable: {problem}"),
                expected: None,
            }))
        }
    };
    let len = match std::fs::metadata(&path) {
        Ok(metadata) => Some(metadata.len()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(open_error(error.to_string())),
    };
    let damaged = |problem: String| Ok(Verdict::Damaged(Damage { problem, expected }));
    match (len, expected) {
        (None | Some(0), None) => return Ok(Verdict::Fresh),
        (None, Some(state)) => {
            return damaged(format!(
                "the file is missing, but {STATE_FILE_NAME} says it held {}",
                held(&state)
            ))
        }
        (Some(0), Some(state)) => {
            return damaged(format!(
                "the file is empty (0 bytes), but {STATE_FILE_NAME} says it held {}",
                held(&state)
            ))
        }
        (Some(_), _) => {}
    }
    let verified = catch_unwind(AssertUnwindSafe(|| verify(&path)))
        .unwrap_or_else(|payload| Err(Finding::Damaged(panic_message(payload.as_ref()))));
    let (mut contents, fell_back) = match verified {
        Ok(found) => found,
        Err(Finding::InUse) => {
            return Err(open_error(
                "another process uses this data directory (stop the server first)".into(),
            ))
        }
        Err(Finding::Unopenable(reason)) => return Err(open_error(reason)),
        Err(Finding::Damaged(problem)) => return damaged(problem),
    };
    match expected {
        Some(state) if !state.open && fell_back => damaged(
            "its last commit does not verify (pages it wrote are damaged); redb would fall back to the commit before it and silently lose that commit's changes".into(),
        ),
        Some(state) if !state.open && (state.timers, state.jobs) != (contents.timers, contents.jobs) => {
            damaged(format!(
                "it holds {} timer(s) and {} cron job(s), but when it was last closed it held {}: the file was replaced or rolled back since",
                contents.timers,
                contents.jobs,
                held(&state)
            ))
        }
        _ => {
            contents.rolls_back_last_commit = fell_back;
            contents.expected = expected;
            Ok(Verdict::Sound(contents))
        }
    }
}

/// `5 timer(s) and 1 cron job(s)`.
pub(super) fn held(state: &ExpectedState) -> String {
    format!("{} timer(s) and {} cron job(s)", state.timers, state.jobs)
}

/// Why [`verify`] stopped.
enum Finding {
    /// A server holds the file.
    InUse,
    /// The file cannot be opened at all (permissions).
    Unopenable(String),
    /// It is damaged: how.
    Damaged(String),
}

/// Open the file through a scratch overlay with redb's integrity check, then read every
/// table; the contents, and whether redb fell back to the previous commit.
fn verify(path: &Path) -> Result<(Contents, bool), Finding> {
    let backend = ScratchBackend::open(path).map_err(|e| Finding::Unopenable(e.to_string()))?;
    let fell_back = Arc::new(AtomicBool::new(false));
    let flag = fell_back.clone();
    let db = Database::builder()
        .set_cache_size(CHECK_CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .set_repair_callback(move |session| {
            if session.progress() == FALLBACK_PROGRESS {
                flag.store(true, Relaxed);
            }
        })
        .create_with_backend(backend)
        .map_err(|error| match error {
            DatabaseError::DatabaseAlreadyOpen => Finding::InUse,
            DatabaseError::Storage(StorageError::Corrupted(detail)) => Finding::Damaged(format!(
                "pages of it do not match their checksums, so it was changed outside pushhub (redb: {detail})"
            )),
            other => Finding::Damaged(format!("redb cannot open it: {other}")),
        })?;
    let contents = read_everything(&db).map_err(Finding::Damaged)?;
    Ok((contents, fell_back.load(Relaxed)))
}

/// Read every table end to end and decode every record.
fn read_everything(db: &Database) -> Result<Contents, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let mut contents = Contents::default();
    if let Some(timers) = open(&txn, embedded::TIMERS)? {
        for entry in timers.iter().map_err(|e| e.to_string())? {
            let (key, bytes) = entry.map_err(|e| format!("reading the timers: {e}"))?;
            let id = key.value();
            let timer = embedded::decode(id, bytes.value()).map_err(|e| e.to_string())?;
            if timer.id != id {
                return Err(format!(
                    "the record under timer id {id} is timer {}",
                    timer.id
                ));
            }
            contents.timers += 1;
            contents.unfinished += u64::from(!timer.state.is_finished());
        }
    }
    scan(&txn, embedded::PENDING)?;
    scan(&txn, embedded::RUNNING)?;
    scan(&txn, embedded::FINISHED)?;
    scan(&txn, embedded::BY_APP)?;
    scan(&txn, embedded::IDEMPOTENCY)?;
    if let Some(meta) = open(&txn, embedded::META)? {
        let format = meta
            .get("format")
            .map_err(|e| e.to_string())?
            .map(|v| v.value());
        if let Some(other) = format.filter(|f| *f != embedded::FORMAT) {
            return Err(format!(
                "it has layout version {other}; this pushhub reads {}",
                embedded::FORMAT
            ));
        }
        scan(&txn, embedded::META)?;
    }
    if let Some(jobs) = open(&txn, super::redb_jobs::JOBS)? {
        for entry in jobs.iter().map_err(|e| e.to_string())? {
            let (key, bytes) = entry.map_err(|e| format!("reading the cron jobs: {e}"))?;
            let (app, name) = key.value();
            super::redb_jobs::decode(app, name, bytes.value()).map_err(|e| e.to_string())?;
            contents.jobs += 1;
        }
    }
    Ok(contents)
}

/// A table, or `None` when the file has none by that name (a store from before it).
fn open<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, String> {
    match txn.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(format!("opening table {}: {error}", table.name())),
    }
}

/// Read every entry of an index table.
fn scan<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), String> {
    let Some(opened) = open(txn, table)? else {
        return Ok(());
    };
    for entry in opened.iter().map_err(|e| e.to_string())? {
        entry.map_err(|e| format!("reading table {}: {e}", table.name()))?;
    }
    Ok(())
}
