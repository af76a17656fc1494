//! The log file: appended to, reopened by path on demand (logrotate moves the file, then
//! SIGUSR2), and optionally rotated by size (`pushhub.log` → `pushhub.log.1` → ... up to
//! `keep` old files).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing_subscriber::fmt::MakeWriter;

/// Size-based rotation: when a line would take the file past `max_bytes`, it is renamed to
/// `.1` (older ones shift up, the one past `keep` is deleted) and a new file is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The size a file may reach.
    pub max_bytes: u64,
    /// How many rotated files are kept beside the current one (at least 1).
    pub keep: usize,
}

/// A shared handle on the log file; every clone writes to the same file, and
/// [`LogFile::reopen`] through any of them switches all of them.
#[derive(Clone)]
pub struct LogFile {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    file: File,
    written: u64,
    rotation: Option<Rotation>,
    capture_stderr: bool,
}

impl LogFile {
    /// Open `path` for appending (created if missing). With `capture_stderr`, the process's
    /// stderr (file descriptor 2) points at the file too, after this and every reopen, so a
    /// daemon's panics and early messages land in its log instead of nowhere.
    pub fn open(path: &Path, rotation: Option<Rotation>, capture_stderr: bool) -> io::Result<Self> {
        let (file, written) = open_append(path, capture_stderr)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_owned(),
                file,
                written,
                rotation,
                capture_stderr,
            })),
        })
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.lock().path.clone()
    }

    /// Open the path again, so lines go to a new file once the old one was moved away
    /// (logrotate without `copytruncate`). On failure the current file is kept.
    pub fn reopen(&self) -> io::Result<()> {
        let mut inner = self.lock();
        let (file, written) = open_append(&inner.path, inner.capture_stderr)?;
        inner.file = file;
        inner.written = written;
        Ok(())
    }

    /// The lock, taken even if a writer panicked while holding it: the file handle it
    /// guards is never left half-changed.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Shift `path.N` to `path.N+1` (dropping the last), `path` to `path.1`, and start a
    /// new `path`.
    fn rotate(&mut self, keep: usize) -> io::Result<()> {
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        match std::fs::remove_file(numbered(keep)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        for n in (1..keep).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        let (file, written) = open_append(&self.path, self.capture_stderr)?;
        self.file = file;
        self.written = written;
        Ok(())
    }
}

fn open_append(path: &Path, capture_stderr: bool) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let written = file.metadata()?.len();
    if capture_stderr {
        nix::unistd::dup2_stderr(&file).map_err(io::Error::from)?;
    }
    Ok((file, written))
}

/// One log event's bytes: the formatter writes each event in a single `write_all`, so a
/// rotation always falls between lines.
pub struct LogWriter<'a>(&'a LogFile);

impl Write for LogWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.0.lock();
        if let Some(rotation) = inner.rotation {
            let after = inner.written.saturating_add(buf.len() as u64);
            if inner.written > 0 && after > rotation.max_bytes {
                inner.rotate(rotation.keep)?;
            }
        }
        let written = inner.file.write(buf)?;
        inner.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().file.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(file: &LogFile, text: &str) {
        file.make_writer()
            .write_all(format!("{text}\n").as_bytes())
            .expect("write");
    }

    #[test]
    fn rotates_by_size_keeping_n_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pushhub.log");
        let rotation = Rotation {
            max_bytes: 10,
            keep: 2,
        };
        let file = LogFile::open(&path, Some(rotation), false).expect("open");
        for text in ["aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff", "gggg"] {
            line(&file, text);
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        assert_eq!(read("pushhub.log"), "gggg\n");
        assert_eq!(read("pushhub.log.1"), "eeee\nffff\n");
        assert_eq!(read("pushhub.log.2"), "cccc\ndddd\n");
        assert!(!dir.path().join("pushhub.log.3").exists());
    }

    #[test]
    fn reopen_follows_a_moved_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pushhub.log");
        let file = LogFile::open(&path, None, false).expect("open");
        line(&file, "before");
        std::fs::rename(&path, dir.path().join("moved.log")).expect("move");
        line(&file, "still old");
        file.reopen().expect("reopen");
        line(&file, "after");
        let moved = std::fs::read_to_string(dir.path().join("moved.log")).expect("moved");
        assert_eq!(moved, "before\nstill old\n");
        assert_eq!(std::fs::read_to_string(&path).expect("new"), "after\n");
    }
}
