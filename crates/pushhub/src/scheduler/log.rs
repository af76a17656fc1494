//! The result log, `timers.log` in the data directory: one JSON line per call, timers'
//! attempts and cron jobs' runs alike, with the answer's status, its headers of interest
//! and the start of its body (what jdserver wrote to its trace.log), rotated by size.
//!
//! Lines are written by a thread of their own, so a slow disk never holds up a timer; if
//! it falls more than [`QUEUE_LINES`] lines behind, lines are dropped and counted.
//! Rotation renames `timers.log` to `timers.log.1`, `.1` to `.2`, and so on, and deletes
//! the oldest beyond the configured count.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;

use serde::Serialize;

use super::executor::CallResult;
use crate::sync::lock;

/// The log's file name in the data directory.
pub const FILE_NAME: &str = "timers.log";

/// Lines waiting to be written before new ones are dropped.
const QUEUE_LINES: usize = 65_536;

/// One call, as logged: a timer's attempt (`timer`, `attempt`), an interval timer's
/// tick (`timer`, `tick`) or a cron job's run (`job`, `run`, `trigger`).
#[derive(Debug, Default, Serialize)]
pub struct LogLine<'a> {
    /// When the call started (Unix milliseconds).
    pub ts: u64,
    /// The timer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer: Option<u64>,
    /// The cron job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<&'a str>,
    /// Its app.
    pub app: &'a str,
    /// A timer's attempt: 1 for the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// An interval timer's call: 1 for its first tick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick: Option<u32>,
    /// A job's run number: 1 for its first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    /// Why a job's run happened: `schedule`, `manual`, `catch_up`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<&'a str>,
    /// The request's method.
    pub method: &'a str,
    /// The request's URL.
    pub url: &'a str,
    /// The answer's status, when one came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The answer's headers of interest ([`super::executor::LOGGED_HEADERS`]) that it
    /// carried, name → value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<&'a str, &'a str>,
    /// The start of the answer's body (`timers.log_body_bytes`, lossy UTF-8), when an
    /// answer came and the log keeps bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Why there was no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// How long the attempt took.
    pub duration_ms: u64,
    /// What follows: `succeeded`, `retry` (for an interval timer: the next tick),
    /// `failed`, or `cancelled` when the timer was cancelled while the attempt ran; a
    /// job's run: `succeeded` or `failed`.
    pub next: &'a str,
}

/// Where and how much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Size at which the file is rotated; 0 turns the log off.
    pub max_bytes: u64,
    /// Rotated files kept (`timers.log.1` ... `timers.log.N`).
    pub files: usize,
    /// Bytes of each answer's body kept in its line; 0 keeps none.
    pub body_bytes: usize,
}

/// The handle that queues lines for the log thread.
pub struct ResultLog {
    queue: Mutex<Option<SyncSender<String>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
    body_bytes: usize,
}

impl ResultLog {
    /// Open (append to) `dir/timers.log` and start its thread. With `max_bytes` 0 nothing
    /// is opened and lines are discarded.
    pub fn open(dir: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let log = Self {
            queue: Mutex::new(None),
            thread: Mutex::new(None),
            dropped: AtomicU64::new(0),
            body_bytes: rotation.body_bytes,
        };
        if rotation.max_bytes == 0 {
            return Ok(log);
        }
        let path = dir.join(FILE_NAME);
        let file = Output::open(path, rotation)?;
        let (queue, lines) = mpsc::sync_channel(QUEUE_LINES);
        let thread = std::thread::Builder::new()
            .name("pushhub-timer-log".into())
            .spawn(move || file.run(&lines))?;
        *lock(&log.queue) = Some(queue);
        *lock(&log.thread) = Some(thread);
        Ok(log)
    }

    /// Queue one line; never waits.
    pub fn record(&self, line: &LogLine<'_>) {
        let Some(queue) = &*lock(&self.queue) else {
            return;
        };
        let Ok(text) = serde_json::to_string(line) else {
            return;
        };
        match queue.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Queue the line of a call that came to `result`: `line` with the answer's headers
    /// and the start of its body added.
    pub fn record_call<'a>(&self, mut line: LogLine<'a>, result: &'a CallResult) {
        line.headers = result
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        if self.body_bytes > 0 {
            line.body = result.body_text(self.body_bytes);
        }
        self.record(&line);
    }

    /// Lines dropped because the log thread fell behind or failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Write what is queued, flush, and stop the thread.
    pub async fn close(&self) {
        drop(lock(&self.queue).take());
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The open log file and its rotation state; owned by the log thread.
struct Output {
    path: PathBuf,
    rotation: Rotation,
    file: BufWriter<File>,
    size: u64,
}

impl Output {
    fn open(path: PathBuf, rotation: Rotation) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            rotation,
            file: BufWriter::new(file),
            size,
        })
    }

    /// Write lines as they come, flushing whenever the queue is empty, until every
    /// sender is gone.
    fn run(mut self, lines: &Receiver<String>) {
        while let Ok(line) = lines.recv() {
            self.write(&line);
            while let Ok(line) = lines.try_recv() {
                self.write(&line);
            }
            if let Err(error) = self.file.flush() {
                tracing::warn!(%error, path = %self.path.display(), "cannot write the timer log");
            }
        }
    }

    fn write(&mut self, line: &str) {
        let bytes = line.len() as u64 + 1;
        if self.size > 0 && self.size + bytes > self.rotation.max_bytes {
            if let Err(error) = self.rotate() {
                tracing::warn!(%error, path = %self.path.display(), "cannot rotate the timer log");
            }
        }
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.write_all(b"\n"));
        match written {
            Ok(()) => self.size += bytes,
            Err(error) => {
                tracing::warn!(%error, path = %self.path.display(), "cannot write the timer log")
            }
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let _ = std::fs::remove_file(numbered(self.rotation.files));
        for n in (1..self.rotation.files).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(timer: u64) -> LogLine<'static> {
        LogLine {
            ts: 1,
            timer: Some(timer),
            app: "demo",
            attempt: Some(1),
            method: "GET",
            url: "http://127.0.0.1:9/x",
            status: Some(200),
            duration_ms: 3,
            next: "succeeded",
            ..LogLine::default()
        }
    }

    #[tokio::test]
    async fn lines_are_json_and_files_rotate_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 400,
            files: 2,
            body_bytes: 0,
        };
        let log = ResultLog::open(dir.path(), rotation).unwrap();
        for timer in 0..20 {
            log.record(&line(timer));
        }
        log.close().await;
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        let current = read("timers.log");
        let first: serde_json::Value =
            serde_json::from_str(current.lines().next().unwrap()).unwrap();
        assert_eq!(first["app"], "demo");
        assert_eq!(first["status"], 200);
        assert!(first.get("error").is_none());
        assert!(first.get("job").is_none(), "a timer's line names no job");
        for name in ["timers.log", "timers.log.1", "timers.log.2"] {
            let text = read(name);
            assert!(
                !text.is_empty() && text.len() <= 400,
                "{name}: {} bytes",
                text.len()
            );
        }
        assert!(!dir.path().join("timers.log.3").exists());
        let newest: serde_json::Value =
            serde_json::from_str(current.lines().last().unwrap()).unwrap();
        assert_eq!(newest["timer"], 19);
        assert_eq!(log.dropped(), 0);
    }

    #[tokio::test]
    async fn size_zero_turns_the_log_off() {
        let dir = tempfile::tempdir().unwrap();
        let log = ResultLog::open(
            dir.path(),
            Rotation {
                max_bytes: 0,
                files: 1,
                body_bytes: 16,
            },
        )
        .unwrap();
        log.record(&line(1));
        log.close().await;
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[tokio::test]
    async fn a_call_line_keeps_the_answers_headers_and_the_start_of_its_body() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 1 << 20,
            files: 1,
            body_bytes: 5,
        };
        let log = ResultLog::open(dir.path(), rotation).unwrap();
        let answered = CallResult {
            status: Some(404),
            headers: vec![("content-type", "text/plain".into())],
            error: None,
            body: "订单 not found".as_bytes().to_vec(),
            duration: std::time::Duration::from_millis(3),
            refused: false,
        };
        log.record_call(line(1), &answered);
        let unanswered = CallResult {
            status: None,
            headers: Vec::new(),
            error: Some("connection failed".into()),
            body: Vec::new(),
            ..answered
        };
        log.record_call(line(2), &unanswered);
        log.close().await;
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0]["headers"],
            serde_json::json!({"content-type": "text/plain"})
        );
        assert_eq!(
            lines[0]["body"], "订",
            "5 bytes, cut at a character boundary"
        );
        assert!(lines[1].get("headers").is_none() && lines[1].get("body").is_none());
    }
}
