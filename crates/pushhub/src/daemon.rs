//! `serve --daemon`: running detached from the terminal, for hosts without systemd.
//!
//! The process forks before any thread exists (the tokio runtime included). The parent
//! stays in the foreground until the child says it is serving, then exits 0; if the child
//! fails to start, the parent prints the child's reason and exits non-zero, so a script
//! that starts the daemon learns of the failure. The pid file is the other half:
//! written atomically once serving, refused while it names a live pushhub, removed at a
//! clean exit.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// What the readiness pipe carries when the child serves; anything else is its error.
const READY: &str = "ready\n";

/// Why the process could not detach, or could not take its pid file.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// fork, setsid, a pipe or a redirection failed.
    #[error("cannot detach: {0}")]
    Detach(#[from] nix::Error),
    /// Another pushhub runs under this pid file.
    #[error("pushhub is already running with pid {pid} (pid file {path}); stop it first, or remove the file if that process is not pushhub")]
    Running {
        /// The running process.
        pid: i32,
        /// The pid file.
        path: PathBuf,
    },
    /// The pid file cannot be written.
    #[error("cannot write the pid file {path}: {source}")]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Which side of the fork this process is.
pub enum Role {
    /// The foreground process, done: what the child reported.
    Parent(Outcome),
    /// The detached child, which must report through its [`Readiness`].
    Daemon(Readiness),
}

/// What the foreground process learnt from the daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The daemon serves.
    Ready {
        /// Its process id.
        pid: i32,
    },
    /// The daemon did not start.
    Failed {
        /// Its reason, as it reported it (empty when it died without a word).
        reason: String,
        /// Its exit status, when it has exited.
        status: Option<i32>,
    },
}

/// Fork: the parent waits for the child's word and returns [`Role::Parent`]; the child
/// starts a new session (no controlling terminal), points stdin and stdout at /dev/null
/// and returns [`Role::Daemon`]. Call it before any thread is started.
pub fn detach() -> Result<Role, DaemonError> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: called from `main` before the runtime or any other thread exists, so the
    // child is a copy of a single-threaded process and may do anything afterwards.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => {
            drop(write);
            Ok(Role::Parent(wait_for(child, read)))
        }
        ForkResult::Child => {
            drop(read);
            nix::unistd::setsid()?;
            let null = nix::fcntl::open(
                "/dev/null",
                OFlag::O_RDWR | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?;
            nix::unistd::dup2_stdin(&null)?;
            nix::unistd::dup2_stdout(&null)?;
            Ok(Role::Daemon(Readiness {
                pipe: Mutex::new(Some(File::from(write))),
            }))
        }
    }
}

/// Read the child's word until it closes the pipe; then, unless it serves, reap it for its
/// exit status.
fn wait_for(child: Pid, read: OwnedFd) -> Outcome {
    let mut said = String::new();
    let _ = File::from(read).read_to_string(&mut said);
    if said == READY {
        return Outcome::Ready {
            pid: child.as_raw(),
        };
    }
    let status = match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(128 + signal as i32),
        _ => None,
    };
    Outcome::Failed {
        reason: said.trim().to_owned(),
        status,
    }
}

/// The daemon's line back to the foreground process; said once, then closed.
pub struct Readiness {
    pipe: Mutex<Option<File>>,
}

impl Readiness {
    /// The server serves: the foreground process exits 0.
    pub fn ready(&self) {
        self.say(READY);
    }

    /// Start-up failed with `reason`: the foreground process prints it and exits non-zero.
    pub fn failed(&self, reason: &str) {
        self.say(reason);
    }

    fn say(&self, text: &str) {
        let taken = self
            .pipe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(mut pipe) = taken {
            // The foreground process may have been killed; the daemon goes on regardless.
            let _ = pipe.write_all(text.as_bytes());
        }
    }
}

/// The pid file of a running server; removed when dropped, if it still names this process.
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Write this process's id to `path` (a temporary file renamed over it, so a reader
    /// never sees it half-written), unless it names another live pushhub. A stale file
    /// (the process is gone, or the id now belongs to another program) is replaced.
    pub fn create(path: &Path) -> Result<Self, DaemonError> {
        Self::write(path, None)
    }

    /// [`PidFile::create`] for the successor of an upgrade: the file may name
    /// `predecessor`, which is about to exit.
    pub fn take_over(path: &Path, predecessor: u32) -> Result<Self, DaemonError> {
        Self::write(path, Some(predecessor))
    }

    fn write(path: &Path, predecessor: Option<u32>) -> Result<Self, DaemonError> {
        let pid = std::process::id();
        let ours = |running: &i32| *running as u32 == pid || Some(*running as u32) == predecessor;
        if let Some(running) = running_pushhub(path).filter(|running| !ours(running)) {
            return Err(DaemonError::Running {
                pid: running,
                path: path.to_owned(),
            });
        }
        let error = |source| DaemonError::PidFile {
            path: path.to_owned(),
            source,
        };
        let mut temporary = path.to_owned().into_os_string();
        temporary.push(format!(".{pid}.tmp"));
        let temporary = PathBuf::from(temporary);
        let mut file = File::create(&temporary).map_err(error)?;
        file.write_all(format!("{pid}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|source| {
                let _ = std::fs::remove_file(&temporary);
                error(source)
            })?;
        Ok(Self {
            path: path.to_owned(),
            pid,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim().parse::<u32>() == Ok(self.pid));
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The process the pid file at `path` names, if it is alive and is a pushhub.
fn running_pushhub(path: &Path) -> Option<i32> {
    let pid = std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)?;
    let alive = match nix::sys::signal::kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::Error::EPERM) => true,
        Err(_) => false,
    };
    // A reused id that now belongs to another program is not ours to respect.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    (alive && comm.trim().starts_with("pushhub")).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_is_written_and_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pushhub.pid");
        let file = PidFile::create(&path).expect("create");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_pid_file_is_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pushhub.pid");
        // Process 1 is alive but is not a pushhub; i32::MAX is no process at all.
        for stale in ["1\n", "2147483647\n", "garbage"] {
            std::fs::write(&path, stale).expect("write");
            let file = PidFile::create(&path).expect("stale file replaced");
            drop(file);
        }
    }
}
