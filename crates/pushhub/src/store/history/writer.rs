//! The log's one writer: a thread that takes every record waiting, writes them with one
//! write(2), syncs as the policy says, and only then answers each publisher (group commit).
//!
//! A thread rather than a task: its writes and fsyncs block, and it must keep going while
//! the runtime shuts down (publishes still in flight during the drain need it). It ends
//! when the log is closed, after a last sync.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{record, segments, FsyncPolicy};

/// Most bytes written by one write(2): a burst of publishes is split into such batches.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// What the writer is asked to do.
pub enum Command {
    /// Append new records (bodies without their frame); answered once handed to the
    /// kernel (and synced, under `fsync = "always"`).
    Append {
        /// The bodies.
        bodies: Vec<Vec<u8>>,
        /// The answer.
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Append records copied as they are from an older segment (compaction).
    Copy {
        /// Whole framed records.
        framed: Vec<u8>,
        /// The answer, once written and synced.
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Start a new segment; answers the sequence number of the first one that is not
    /// sealed (every segment below it is complete and synced).
    Roll {
        /// The answer.
        done: oneshot::Sender<Result<u64, String>>,
    },
    /// Sync, then stop.
    Close {
        /// The answer.
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// The writer's state: the newest segment, open for appending.
pub struct Writer {
    /// The history directory.
    pub dir: PathBuf,
    /// The segment being written.
    pub file: File,
    /// Its sequence number.
    pub sequence: u64,
    /// Its length.
    pub len: u64,
    /// The next record's log sequence number.
    pub next_lsn: u64,
    /// When to sync.
    pub fsync: FsyncPolicy,
    /// Segment length at which a new one is started.
    pub segment_bytes: u64,
}

/// What the writer reports for `/v1/stats` and compaction.
#[derive(Debug, Default)]
pub struct Shared {
    /// Bytes in every segment together.
    pub bytes: std::sync::atomic::AtomicU64,
}

impl Writer {
    /// Serve `commands` until a `Close` (or every sender is gone).
    pub fn run(mut self, commands: Receiver<Command>, shared: &Shared) {
        let mut dirty = false;
        let mut last_sync = Instant::now();
        let mut pending: Option<Command> = None;
        loop {
            let command = match pending.take() {
                Some(command) => command,
                None => match commands.recv_timeout(self.sync_wait(dirty, last_sync)) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(error) = self.file.sync_data() {
                            tracing::error!(%error, "history log: fsync failed");
                        }
                        dirty = false;
                        last_sync = Instant::now();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            match command {
                Command::Append { bodies, done } => {
                    let mut out = Vec::new();
                    let mut answers = Vec::new();
                    self.frame_into(&mut out, bodies);
                    answers.push(done);
                    // Group commit: everything already waiting goes into the same write.
                    while out.len() < MAX_BATCH_BYTES {
                        match commands.try_recv() {
                            Ok(Command::Append { bodies, done }) => {
                                self.frame_into(&mut out, bodies);
                                answers.push(done);
                            }
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let result = self.write(&out, shared, &mut dirty, &mut last_sync);
                    for answer in answers {
                        let _ = answer.send(result.clone());
                    }
                }
                Command::Copy { framed, done } => {
                    let result = self
                        .write(&framed, shared, &mut dirty, &mut last_sync)
                        .and_then(|()| self.file.sync_data().map_err(|e| e.to_string()));
                    let _ = done.send(result);
                }
                Command::Roll { done } => {
                    let _ = done.send(self.roll(shared).map(|()| self.sequence));
                }
                Command::Close { done } => {
                    let _ = done.send(self.file.sync_all().map_err(|e| e.to_string()));
                    return;
                }
            }
        }
    }

    /// How long to wait for a command before an `every_second` sync is due.
    fn sync_wait(&self, dirty: bool, last_sync: Instant) -> Duration {
        if dirty && self.fsync == FsyncPolicy::EverySecond {
            Duration::from_secs(1).saturating_sub(last_sync.elapsed())
        } else {
            Duration::from_secs(3600)
        }
    }

    fn frame_into(&mut self, out: &mut Vec<u8>, bodies: Vec<Vec<u8>>) {
        for mut body in bodies {
            record::frame(out, self.next_lsn, &mut body);
            self.next_lsn += 1;
        }
    }

    /// Write `bytes` at the end of the newest segment, starting a new one first when it
    /// is full, then sync as the policy says.
    fn write(
        &mut self,
        bytes: &[u8],
        shared: &Shared,
        dirty: &mut bool,
        last_sync: &mut Instant,
    ) -> Result<(), String> {
        if self.len >= self.segment_bytes {
            self.roll(shared)?;
        }
        self.file
            .write_all(bytes)
            .map_err(|error| format!("writing the history log: {error}"))?;
        self.len += bytes.len() as u64;
        shared
            .bytes
            .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        *dirty = true;
        let sync_now = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::EverySecond => last_sync.elapsed() >= Duration::from_secs(1),
            FsyncPolicy::Never => false,
        };
        if sync_now {
            self.file
                .sync_data()
                .map_err(|error| format!("syncing the history log: {error}"))?;
            *dirty = false;
            *last_sync = Instant::now();
        }
        Ok(())
    }

    /// Seal the newest segment (synced whatever the policy: sealed segments are complete)
    /// and start the next one.
    fn roll(&mut self, shared: &Shared) -> Result<(), String> {
        self.file
            .sync_all()
            .map_err(|error| format!("syncing the history log: {error}"))?;
        let sequence = self.sequence + 1;
        self.file = segments::create(&self.dir, sequence)
            .map_err(|error| format!("starting history segment {sequence}: {error}"))?;
        self.sequence = sequence;
        self.len = segments::MAGIC.len() as u64;
        shared
            .bytes
            .fetch_add(self.len, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
