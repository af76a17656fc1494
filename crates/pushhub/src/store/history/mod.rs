//! The durable history log (`history_store = "disk"`): the memory engine's channel
//! histories written to `data_dir/history/`, so a restart keeps every channel's epoch,
//! offsets and kept messages.
//!
//! An append-only log of segment files ([`segments`]), written by one thread with group
//! commit ([`writer`]): a publish waits until its record has been handed to the kernel, so
//! killing the process loses nothing that any client or backend was told of. When the
//! page cache reaches the disk is the fsync policy's business ([`FsyncPolicy`]); a log
//! left open by a machine that crashed since may lack writes clients saw, and then
//! [`HistoryLog::open`] starts every channel afresh (new epochs) rather than reuse an
//! offset for a different message ([`state`]).
//!
//! The log stays bounded by what history keeps: once the segments hold well over twice
//! what the engine keeps, [`HistoryLog::compact`] copies the records still kept out of the
//! sealed segments and deletes those.

mod record;
mod segments;
pub mod snapshot;
mod state;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::engine::{HistoryPolicy, Publication, StreamPosition};
use crate::sync::lock;
pub use record::Record;

/// The history directory's name inside `data_dir`.
pub const DIR_NAME: &str = "history";

/// Default length at which a segment is sealed and a new one started.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Where the memory engine keeps channel histories (`history_store`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryStore {
    /// In the process only: a restart starts every channel in a new epoch. The default
    /// until the log keeps the history byte bounds in resident memory too
    /// (docs/operations.md, Durable history).
    #[default]
    Memory,
    /// In memory and in a log in `data_dir/history`: restarts keep every stream.
    Disk,
}

/// When the log's writes are forced to the disk (like Redis's `appendfsync`). Whatever
/// the policy, a publish is answered only after its record was handed to the kernel, so a
/// killed process loses nothing; the policy decides what a machine crash may lose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Sync before answering each publish (its group commit): a machine crash loses nothing.
    Always,
    /// Sync at most a second after a write: a machine crash may lose the last second.
    #[default]
    EverySecond,
    /// Leave it to the kernel (usually within 30 s): a machine crash may lose more.
    Never,
}

/// Why the log cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The log is damaged where no crash can have left it: pushhub refuses to start.
    #[error("history log damaged: {path} at byte {at}: {reason}; move the history directory aside to start with empty histories (clients then resume with recovered:false)")]
    Damaged {
        /// The segment.
        path: String,
        /// Where.
        at: usize,
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed, or the lock is held.
    #[error("history log in {dir}: {reason}")]
    Io {
        /// The history directory.
        dir: String,
        /// What failed.
        reason: String,
    },
    /// The log was closed (the server is stopping) or its writer failed.
    #[error("history log: {0}")]
    Write(String),
}

/// How the log is kept.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// When writes reach the disk.
    pub fsync: FsyncPolicy,
    /// Length at which a segment is sealed.
    pub segment_bytes: u64,
}

/// One channel's stream as the log had it.
#[derive(Debug)]
pub struct RestoredStream {
    /// The channel.
    pub channel: Arc<str>,
    /// Its top position (its epoch, its last offset).
    pub top: StreamPosition,
    /// When its last publication was made, in milliseconds since the Unix epoch.
    pub last_wall_ms: u64,
    /// Its history policy at its last publication.
    pub policy: HistoryPolicy,
    /// Its kept publications, oldest first, consecutive up to the top, with when each
    /// was made (as `last_wall_ms`).
    pub kept: Vec<(u64, Arc<Publication>)>,
}

/// What opening the log found.
#[derive(Debug, Default)]
pub struct Restored {
    /// Every channel's stream.
    pub streams: Vec<RestoredStream>,
    /// Records read.
    pub records: u64,
}

/// The open log: a handle to its writer, and its lock.
pub struct HistoryLog {
    dir: PathBuf,
    fsync: FsyncPolicy,
    commands: Mutex<Option<std::sync::mpsc::Sender<writer::Command>>>,
    shared: Arc<writer::Shared>,
    segment_bytes: u64,
    lock: Mutex<Option<File>>,
    /// Why the last append failed, until one succeeds again: the health `pushhub status`
    /// shows (publishes fail meanwhile).
    failing: Mutex<Option<String>>,
}

impl HistoryLog {
    /// Open (or create) the log in `data_dir/history`, take its lock, read it back, cut a
    /// torn last record off, and start its writer on a new segment. Blocks: call it off
    /// the runtime.
    pub fn open(data_dir: &Path, options: LogOptions) -> Result<(Self, Restored), HistoryError> {
        let dir = data_dir.join(DIR_NAME);
        let io = |reason: String| HistoryError::Io {
            dir: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(format!("cannot create it: {e}")))?;
        let lock_file = state::lock(&dir).map_err(io)?;
        let boot_id = state::boot_id();
        let previous = state::read(&dir).map_err(io)?;
        let list = segments::list(&dir).map_err(|e| io(format!("cannot list it: {e}")))?;
        let mut records = Vec::new();
        let mut bytes = 0u64;
        for (index, (_, path)) in list.iter().enumerate() {
            let newest = index + 1 == list.len();
            let read = segments::read(path, newest, |record, _| records.push(record))
                .map_err(HistoryError::from)?;
            if read.whole < read.len {
                tracing::warn!(
                    segment = %path.display(),
                    cut = read.len - read.whole,
                    "history log: a torn last record (the process was killed mid-write) is cut off"
                );
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| io(format!("cannot repair {}: {e}", path.display())))?;
                file.set_len(read.whole as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io(format!("cannot repair {}: {e}", path.display())))?;
            }
            bytes += read.whole as u64;
        }
        let next_lsn = records.iter().map(|r| r.lsn + 1).max().unwrap_or(1);
        let read_records = records.len() as u64;
        let mut restored = Restored {
            streams: streams(records),
            records: read_records,
        };
        if previous.is_some_and(|p| p.may_have_lost_writes(&boot_id)) {
            tracing::warn!(
                channels = restored.streams.len(),
                "history log: the machine restarted without a clean stop and not every write was synced, so writes clients saw may be lost; every channel starts a new epoch (resuming clients get recovered:false)"
            );
            for (_, path) in &list {
                std::fs::remove_file(path)
                    .map_err(|e| io(format!("cannot remove {}: {e}", path.display())))?;
            }
            bytes = 0;
            restored = Restored::default();
        }
        let sequence = list.last().map_or(1, |(sequence, _)| sequence + 1);
        let file = segments::create(&dir, sequence)
            .map_err(|e| io(format!("cannot create a segment: {e}")))?;
        bytes += segments::MAGIC.len() as u64;
        state::write(
            &dir,
            &state::LogState {
                boot_id,
                clean: false,
                fsync: options.fsync,
            },
        )
        .map_err(|e| io(format!("cannot write its state file: {e}")))?;
        let shared = Arc::new(writer::Shared::default());
        shared.bytes.store(bytes, Ordering::Relaxed);
        let (commands, receiver) = std::sync::mpsc::channel();
        let writer = writer::Writer {
            dir: dir.clone(),
            file,
            sequence,
            len: segments::MAGIC.len() as u64,
            next_lsn,
            fsync: options.fsync,
            segment_bytes: options.segment_bytes,
        };
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("history-log".into())
            .spawn(move || writer.run(receiver, &thread_shared))
            .map_err(|e| io(format!("cannot start its writer: {e}")))?;
        Ok((
            Self {
                dir,
                fsync: options.fsync,
                commands: Mutex::new(Some(commands)),
                shared,
                segment_bytes: options.segment_bytes,
                lock: Mutex::new(Some(lock_file)),
                failing: Mutex::new(None),
            },
            restored,
        ))
    }

    /// The body of `publication`'s record, to [`append`](Self::append).
    pub fn body(publication: &Publication, policy: HistoryPolicy, wall_ms: u64) -> Vec<u8> {
        record::body(publication, policy, wall_ms)
    }

    /// Append records; returns once they were handed to the kernel (and synced, under
    /// `fsync = "always"`). Records of one call, and of calls made one after the other,
    /// are written in that order.
    pub async fn append(&self, bodies: Vec<Vec<u8>>) -> Result<(), HistoryError> {
        let (done, answer) = oneshot::channel();
        let result = match self.send(writer::Command::Append { bodies, done }) {
            Ok(()) => answer
                .await
                .map_err(|_| HistoryError::Write("the writer stopped".into()))
                .and_then(|written| written.map_err(HistoryError::Write)),
            Err(error) => Err(error),
        };
        *lock(&self.failing) = result.as_ref().err().map(ToString::to_string);
        result
    }

    /// Why the last append failed, while appends fail; `None` while they succeed.
    pub fn problem(&self) -> Option<String> {
        lock(&self.failing).clone()
    }

    /// Bytes in the log's segments.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// True when the segments hold well over what is kept (`live_bytes`): more than twice
    /// as much, and more than two segments' worth.
    pub fn needs_compaction(&self, live_bytes: u64) -> bool {
        let bytes = self.bytes();
        bytes > 2 * self.segment_bytes && bytes > 2 * live_bytes
    }

    /// Seal the newest segment, copy the records of every sealed segment that `is_live`
    /// keeps into the log (with their original sequence numbers), then delete the sealed
    /// segments. A crash halfway leaves records twice, which reading back tolerates.
    pub async fn compact(
        &self,
        is_live: impl Fn(&Record) -> bool,
    ) -> Result<CompactionReport, HistoryError> {
        let (done, answer) = oneshot::channel();
        self.send(writer::Command::Roll { done })?;
        let first_open = answer
            .await
            .map_err(|_| HistoryError::Write("the writer stopped".into()))?
            .map_err(HistoryError::Write)?;
        let dir = self.dir.clone();
        let io = |reason: String| HistoryError::Io {
            dir: dir.display().to_string(),
            reason,
        };
        let sealed: Vec<_> = segments::list(&dir)
            .map_err(|e| io(e.to_string()))?
            .into_iter()
            .filter(|(sequence, _)| *sequence < first_open)
            .collect();
        let mut report = CompactionReport::default();
        for (_, path) in &sealed {
            report.removed_bytes += self.copy_live(path, &is_live, &mut report).await?;
        }
        for (_, path) in &sealed {
            std::fs::remove_file(path)
                .map_err(|e| io(format!("cannot remove {}: {e}", path.display())))?;
            report.segments += 1;
        }
        state::sync_dir(&dir).map_err(|e| io(e.to_string()))?;
        self.shared
            .bytes
            .fetch_sub(report.removed_bytes, Ordering::Relaxed);
        Ok(report)
    }

    /// Copy the records of sealed segment `path` that `is_live` keeps to the newest
    /// segment, as they are on disk, in batches of at most [`COPY_BATCH_BYTES`]; returns
    /// the segment's length. Reads the segment as a stream, off the runtime: compaction
    /// holds one batch, never a whole segment.
    async fn copy_live(
        &self,
        path: &Path,
        is_live: &impl Fn(&Record) -> bool,
        report: &mut CompactionReport,
    ) -> Result<u64, HistoryError> {
        let read_path = path.to_owned();
        // Liveness is the engine's to judge, on the runtime; the reader, off it, sends
        // each record with its frame, a few at a time.
        let (records, mut frames) = tokio::sync::mpsc::channel::<(Record, Vec<u8>)>(16);
        let reader = tokio::task::spawn_blocking(move || {
            segments::read(&read_path, false, |record, frame| {
                let _ = records.blocking_send((record, frame.to_vec()));
            })
        });
        let mut batch = Vec::new();
        while let Some((record, frame)) = frames.recv().await {
            if !is_live(&record) {
                continue;
            }
            report.copied += 1;
            batch.extend_from_slice(&frame);
            if batch.len() >= COPY_BATCH_BYTES {
                self.copy(std::mem::take(&mut batch), report).await?;
            }
        }
        if !batch.is_empty() {
            self.copy(batch, report).await?;
        }
        let read = reader
            .await
            .map_err(|e| HistoryError::Write(e.to_string()))?
            .map_err(HistoryError::from)?;
        Ok(read.len as u64)
    }

    /// Append framed records copied from an older segment, synced.
    async fn copy(
        &self,
        framed: Vec<u8>,
        report: &mut CompactionReport,
    ) -> Result<(), HistoryError> {
        report.copied_bytes += framed.len() as u64;
        let (done, answer) = oneshot::channel();
        self.send(writer::Command::Copy { framed, done })?;
        answer
            .await
            .map_err(|_| HistoryError::Write("the writer stopped".into()))?
            .map_err(HistoryError::Write)
    }

    /// Close the log cleanly: sync it, record the clean stop and release the lock, so a
    /// successor may open it. Appends fail from here on. Call it once nothing publishes
    /// any more (the server does, after its connections and requests have ended).
    pub async fn close(&self) -> Result<(), HistoryError> {
        let (done, answer) = oneshot::channel();
        self.send(writer::Command::Close { done })?;
        lock(&self.commands).take();
        answer
            .await
            .map_err(|_| HistoryError::Write("the writer stopped".into()))?
            .map_err(HistoryError::Write)?;
        state::write(
            &self.dir,
            &state::LogState {
                boot_id: state::boot_id(),
                clean: true,
                fsync: self.fsync,
            },
        )
        .map_err(|e| HistoryError::Io {
            dir: self.dir.display().to_string(),
            reason: format!("cannot record the clean stop: {e}"),
        })?;
        if let Some(file) = lock(&self.lock).take() {
            let _ = file.unlock();
        }
        Ok(())
    }

    fn send(&self, command: writer::Command) -> Result<(), HistoryError> {
        lock(&self.commands)
            .as_ref()
            .ok_or_else(|| HistoryError::Write("the log is closed".into()))?
            .send(command)
            .map_err(|_| HistoryError::Write("the writer stopped".into()))
    }
}

/// Most bytes of copied records compaction hands to the writer at once.
const COPY_BATCH_BYTES: usize = 4 * 1024 * 1024;

impl From<segments::Damage> for HistoryError {
    fn from(damage: segments::Damage) -> Self {
        Self::Damaged {
            path: damage.path.display().to_string(),
            at: damage.at,
            reason: damage.reason,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CompactionReport {
    /// Sealed segments deleted.
    pub segments: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Records still kept, copied to the newest segment.
    pub copied: u64,
    /// Their bytes.
    pub copied_bytes: u64,
}

/// Channel streams from the records of the log, in any order: a channel's newest record
/// (by sequence number) names its epoch; its history is the consecutive run of that
/// epoch's records that ends at its top, at most its policy's size.
fn streams(records: Vec<Record>) -> Vec<RestoredStream> {
    let mut by_channel: HashMap<Arc<str>, Vec<Record>> = HashMap::new();
    for record in records {
        by_channel
            .entry(record.publication.channel.clone())
            .or_default()
            .push(record);
    }
    let mut streams = Vec::with_capacity(by_channel.len());
    for (channel, mut records) in by_channel {
        let Some(newest) = records.iter().max_by_key(|r| r.lsn) else {
            continue;
        };
        let epoch = newest.publication.position.epoch.clone();
        let (policy, last_wall_ms) = (newest.policy, newest.wall_ms);
        records.retain(|r| r.publication.position.epoch == epoch);
        records.sort_by_key(|r| std::cmp::Reverse(r.publication.position.offset));
        records.dedup_by_key(|r| r.publication.position.offset);
        let Some(top) = records.first().map(|r| r.publication.position.clone()) else {
            continue;
        };
        let keep = if policy.is_off() { 0 } else { policy.size };
        let mut kept: Vec<(u64, Arc<Publication>)> = records
            .iter()
            .enumerate()
            .take_while(|(i, r)| r.publication.position.offset + *i as u64 == top.offset)
            .take(keep)
            .map(|(_, r)| (r.wall_ms, r.publication.clone()))
            .collect();
        kept.reverse();
        streams.push(RestoredStream {
            channel,
            top,
            last_wall_ms,
            policy,
            kept,
        });
    }
    streams
}

#[cfg(test)]
mod tests;
