//! `history/state.json` and `history/lock`: who owns the log, and how its last owner
//! stopped.
//!
//! The lock (an advisory lock on `history/lock`, held from open to close) keeps a second
//! process off the log; a successor may open it as soon as the owner has closed it.
//! The state file says whether the last owner closed the log cleanly, under which boot of
//! the machine (`/proc/sys/kernel/random/boot_id`) it ran, and with which fsync policy:
//! a log left open under another boot may have lost writes that clients had already been
//! given, unless every write was synced.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::FsyncPolicy;

/// The state file's name in the history directory.
pub const STATE_FILE: &str = "state.json";

/// The lock file's name in the history directory.
pub const LOCK_FILE: &str = "lock";

/// What the last owner of the log recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogState {
    /// The machine's boot the owner ran under (empty where the system does not say).
    pub boot_id: String,
    /// False from open to a clean close.
    pub clean: bool,
    /// The fsync policy the owner wrote with.
    pub fsync: FsyncPolicy,
}

impl LogState {
    /// True when writes the last owner had handed to the kernel may be gone: it did not
    /// close cleanly, the machine has restarted since, and not every write was synced.
    pub fn may_have_lost_writes(&self, boot_id: &str) -> bool {
        !self.clean && self.boot_id != boot_id && self.fsync != FsyncPolicy::Always
    }
}

/// This boot of the machine, as Linux names it; empty elsewhere (then a crash is never
/// told from a kill, which the documentation says).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// The state recorded in `dir`, if any.
pub fn read(dir: &Path) -> Result<Option<LogState>, String> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            format!(
                "{} is not a state file pushhub wrote: {error}",
                path.display()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Record `state` in `dir` atomically (temporary file, fsync, rename, fsync of the
/// directory): a crash leaves the old state or the new one.
pub fn write(dir: &Path, state: &LogState) -> std::io::Result<()> {
    let temporary = dir.join(format!("{STATE_FILE}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(&serde_json::to_vec(state).unwrap_or_default())?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(STATE_FILE))?;
    sync_dir(dir)
}

/// Make the directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Take the log's lock, or say who holds it.
pub fn lock(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another process holds {} (is another pushhub running on this data directory?)",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(format!("cannot lock {}: {error}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unclean_stop_under_another_boot_without_fsync_always_may_lose() {
        let state = |clean, boot: &str, fsync| LogState {
            boot_id: boot.into(),
            clean,
            fsync,
        };
        assert!(state(false, "a", FsyncPolicy::EverySecond).may_have_lost_writes("b"));
        assert!(state(false, "a", FsyncPolicy::Never).may_have_lost_writes("b"));
        assert!(!state(false, "a", FsyncPolicy::Always).may_have_lost_writes("b"));
        assert!(!state(false, "a", FsyncPolicy::Never).may_have_lost_writes("a"));
        assert!(!state(true, "a", FsyncPolicy::Never).may_have_lost_writes("b"));
    }

    #[test]
    fn the_lock_is_exclusive_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(lock(dir.path()).unwrap_err().contains("another process"));
        drop(held);
        lock(dir.path()).unwrap();
    }
}
