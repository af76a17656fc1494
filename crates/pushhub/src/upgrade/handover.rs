//! The old process's half of an upgrade: start the successor with the listening sockets,
//! wait for its word, and, once it is ready, stop (the shutdown token) and hand over.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::{Launch, Role, UpgradeError, ENV, FAILED, READY, RELEASED};
use crate::sync::lock;

/// How long a successor may take to load its configuration and report (below the 30 s
/// `pushhub upgrade` waits for its answer).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts successors; one per server, shared by whoever may ask for an upgrade.
#[derive(Clone)]
pub struct Upgrader {
    inner: Arc<Inner>,
}

struct Inner {
    launch: Option<Launch>,
    listeners: Vec<(Role, RawFd)>,
    shutdown: CancellationToken,
    /// Held while a successor is being started: one upgrade at a time.
    starting: tokio::sync::Mutex<()>,
    /// The successor that reported ready, until the shutdown takes it.
    handover: Mutex<Option<Handover>>,
}

/// What the caller of an upgrade learns once the successor is ready.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    /// The successor's process id.
    pub pid: u32,
    /// The program it runs.
    pub program: String,
    /// How long it took to report ready, in milliseconds.
    pub ready_ms: u64,
}

/// A successor that is ready and waits for this process's stores.
pub struct Handover {
    channel: BufReader<UnixStream>,
    pid: u32,
}

impl Upgrader {
    /// An upgrader handing `listeners` (role and descriptor, which stay open as long as
    /// the server accepts) to successors started as `launch` (`None`: upgrades refused),
    /// cancelling `shutdown` once one is ready.
    pub fn new(
        launch: Option<Launch>,
        listeners: Vec<(Role, RawFd)>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                launch,
                listeners,
                shutdown,
                starting: tokio::sync::Mutex::new(()),
                handover: Mutex::new(None),
            }),
        }
    }

    /// Start a successor and wait until it is ready; then cancel the shutdown token, so
    /// the server stops and hands over ([`Upgrader::take_handover`]). On any error the
    /// successor is gone and this server serves on as before.
    pub async fn upgrade(&self) -> Result<Started, UpgradeError> {
        let inner = &self.inner;
        let launch = inner.launch.as_ref().ok_or(UpgradeError::Unavailable)?;
        let _one = inner.starting.try_lock().map_err(|_| UpgradeError::Busy)?;
        if lock(&inner.handover).is_some() {
            return Err(UpgradeError::Busy);
        }
        if inner.shutdown.is_cancelled() {
            return Err(UpgradeError::Stopping);
        }
        let program = launch.program.display().to_string();
        let begun = Instant::now();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut spec = format!("channel={}", theirs.as_raw_fd());
        for (role, fd) in &inner.listeners {
            spec.push_str(&format!(",{role}={fd}"));
        }
        let mut inherited: Vec<RawFd> = inner.listeners.iter().map(|(_, fd)| *fd).collect();
        inherited.push(theirs.as_raw_fd());
        let mut command = tokio::process::Command::new(&launch.program);
        command.args(&launch.args).env(ENV, spec);
        // SAFETY: runs in the forked child before exec, and only calls fcntl (async-signal
        // safe) on descriptors this process holds open: the child's copies become
        // inheritable, this process's stay close-on-exec.
        unsafe {
            command.pre_exec(move || {
                for fd in &inherited {
                    let fd = BorrowedFd::borrow_raw(*fd);
                    nix::fcntl::fcntl(
                        fd,
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                    )?;
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| UpgradeError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        })?;
        drop(theirs);
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, %program, "upgrade: started the new process; waiting until it is ready");
        ours.set_nonblocking(true)?;
        let mut channel = BufReader::new(UnixStream::from_std(ours)?);
        let mut line = String::new();
        let heard = tokio::time::timeout(READY_TIMEOUT, channel.read_line(&mut line)).await;
        let refused = match heard {
            Ok(Ok(_)) if line.trim_end() == READY => None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                let status = match tokio::time::timeout(READY_TIMEOUT, child.wait()).await {
                    Ok(Ok(status)) => describe(status),
                    _ => "no exit status".to_owned(),
                };
                Some(UpgradeError::Died(status))
            }
            Ok(Ok(_)) => {
                let reason = line.trim_end();
                let reason = reason.strip_prefix(FAILED).unwrap_or(reason).to_owned();
                let _ = tokio::time::timeout(READY_TIMEOUT, child.wait()).await;
                Some(UpgradeError::Refused(reason))
            }
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Some(UpgradeError::Timeout(READY_TIMEOUT.as_secs()))
            }
        };
        if let Some(error) = refused {
            tracing::error!(%error, "upgrade refused; still serving");
            return Err(error);
        }
        let ready_ms = u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            pid,
            ready_ms,
            "upgrade: the new process is ready; closing clients with 1012 and handing over"
        );
        super::systemd::notify(&format!("MAINPID={pid}\nSTATUS=handing over to pid {pid}"));
        *lock(&inner.handover) = Some(Handover { channel, pid });
        inner.shutdown.cancel();
        Ok(Started {
            pid,
            program,
            ready_ms,
        })
    }

    /// The successor waiting for this process's stores, when the shutdown under way is
    /// an upgrade's (taken once).
    pub fn take_handover(&self) -> Option<Handover> {
        lock(&self.inner.handover).take()
    }
}

impl Handover {
    /// The successor's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Tell the successor that every store is closed: it opens them and accepts.
    pub async fn release(mut self) {
        let line = format!("{RELEASED}\n");
        match self.channel.get_mut().write_all(line.as_bytes()).await {
            Ok(()) => tracing::info!(
                pid = self.pid,
                "upgrade: stores released to the new process"
            ),
            // It learns the same from the channel closing when this process exits.
            Err(error) => {
                tracing::warn!(pid = self.pid, %error, "upgrade: cannot reach the new process")
            }
        }
    }
}

/// An exit status in words.
fn describe(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}
