//! Zero-downtime upgrade: a new binary takes over the listening sockets while this one
//! drains (`pushhub upgrade`, `POST /v1/admin/upgrade`; docs/operations.md, "Upgrading
//! without downtime").
//!
//! The running server starts its successor itself: the program at the path it was started
//! from (so a binary replaced on disk is the new version) with the same arguments, every
//! listening socket inherited as a file descriptor, and one end of a socket pair to talk
//! over ([`handover`]). The successor loads its configuration, takes the inherited
//! listeners without binding and answers `ready`, or its error ([`successor`]); an error or
//! silence leaves the running server as it was. On `ready` the old process stops accepting
//! (the kernel keeps queueing new connections on the shared sockets: nobody is refused),
//! closes its clients with 1012 (reconnect now), finishes API requests in flight, stops
//! its timers, writes the channels' histories for the successor to load, closes its stores
//! and says `released`; then the successor opens them and accepts. What the old process
//! tells systemd lives in [`systemd`].

pub mod handover;
pub mod successor;
pub mod systemd;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

pub use handover::{Handover, Upgrader};

/// The environment variable that tells a successor which inherited descriptor is which:
/// `channel=FD,client=FD,api=FD,tcp=FD,pushserve=FD` (the listeners it has).
pub const ENV: &str = "PUSHHUB_UPGRADE";

/// The line a successor sends once it can serve.
const READY: &str = "ready";

/// The line a successor sends before its reason when it cannot serve.
const FAILED: &str = "error: ";

/// The line the old process sends once it has closed its stores.
const RELEASED: &str = "released";

/// Which listener an inherited socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client listener (`listen`).
    Client,
    /// The API listener (`api_listen`).
    Api,
    /// The raw TCP listener (`tcp_listen`).
    Tcp,
    /// push-serve's own port (`[pushserve] addr`).
    PushServe,
}

impl Role {
    /// Every role, in the order the environment variable lists them.
    pub const ALL: [Role; 4] = [Role::Client, Role::Api, Role::Tcp, Role::PushServe];

    fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Api => "api",
            Role::Tcp => "tcp",
            Role::PushServe => "pushserve",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How this process was started: what its successor is run as.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program: the path it was started by (made absolute against the directory it
    /// started in), so a binary replaced on disk at that path is what runs next. Started
    /// through `PATH` (no `/` in it), the resolved path of the running executable, taken
    /// at start-up (later, Linux names a replaced one `... (deleted)`).
    pub program: PathBuf,
    /// The arguments after the program name.
    pub args: Vec<OsString>,
}

impl Launch {
    /// This process's program and arguments; call it at start-up, before anything can
    /// replace the binary or change the working directory.
    pub fn current() -> std::io::Result<Self> {
        let mut args = std::env::args_os();
        let first = args.next().unwrap_or_default();
        let program = if first.as_encoded_bytes().contains(&b'/') {
            std::env::current_dir()?.join(&first)
        } else {
            std::env::current_exe()?
        };
        Ok(Self {
            program,
            args: args.collect(),
        })
    }
}

/// Why an upgrade did not happen; the running server keeps serving in every case.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Another upgrade is running, or has handed over already.
    #[error("an upgrade is already in progress")]
    Busy,
    /// The server is stopping.
    #[error("the server is stopping")]
    Stopping,
    /// This server was not started as a program (an embedded server, a test).
    #[error("this server cannot start a successor: it was not started by the pushhub command")]
    Unavailable,
    /// The successor could not be started at all.
    #[error("cannot start {program}: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// The successor reported that it cannot serve (an invalid configuration, a TLS
    /// certificate that does not load, ...).
    #[error("the new process cannot serve: {0}")]
    Refused(String),
    /// The successor ended without a word.
    #[error("the new process exited before it was ready ({0}); see the log")]
    Died(String),
    /// The successor did not report within the time allowed.
    #[error("the new process was not ready within {0} s; it was stopped")]
    Timeout(u64),
    /// The successor was started from a variable it cannot read.
    #[error("{ENV} is malformed: {0}")]
    Environment(String),
    /// An operating-system call failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
