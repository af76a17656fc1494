//! `timers.redb.state`: what the store file should hold, recorded outside it.
//!
//! redb turns a missing or zero-length file into a new, empty store without a word, so a
//! store that was emptied (a truncating copy, a full disk during a restore, a mistaken
//! `: > timers.redb`) would start as if nothing had ever been scheduled. This small JSON
//! file beside it says that a store exists and what it held: written when the server
//! opens the store (counts at that moment, `open: true`) and again when it closes it
//! cleanly (final counts, `open: false`). The check at start compares ([`super::integrity`]):
//! a state file without a store file means the store was lost, not that this is a first
//! start; and after a clean close the counts must match exactly.
//!
//! It is written atomically (a temporary file, fsync, rename, fsync of the directory), so
//! a crash leaves the old version or the new one, never half of either.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::embedded::FILE_NAME;

/// The state file's name in the data directory.
pub const STATE_FILE_NAME: &str = "timers.redb.state";

/// What the store held when the state file was last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedState {
    /// True from open to a clean close: the counts are those at open, and a crash may
    /// have changed them since. False after a clean close: the counts are exact.
    pub open: bool,
    /// Timers in the store (every state).
    pub timers: u64,
    /// Cron jobs in the store.
    pub jobs: u64,
    /// When this was written (Unix milliseconds).
    pub written_ms: u64,
}

/// The state file of the store in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE_NAME)
}

/// The recorded state; `Ok(None)` when there is no state file (a first start, or a store
/// made by a pushhub without one); `Err` with a reason when it exists but cannot be read.
pub fn read(data_dir: &Path) -> Result<Option<ExpectedState>, String> {
    let path = path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        format!(
            "{} is not a state file pushhub wrote: {error}",
            path.display()
        )
    })
}

/// Record `state` for the store in `data_dir`, atomically and durably.
pub fn write(data_dir: &Path, state: &ExpectedState) -> std::io::Result<()> {
    let target = path(data_dir);
    let temporary = data_dir.join(format!("{STATE_FILE_NAME}.tmp"));
    let mut text = serde_json::to_vec_pretty(&StateFileJson {
        file: FILE_NAME,
        state,
    })
    .map_err(std::io::Error::other)?;
    text.push(b'\n');
    let mut file = File::create(&temporary)?;
    file.write_all(&text)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &target)?;
    sync_dir(data_dir)
}

/// fsync a directory, so a rename or a new file in it survives a power loss.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The file as written: the store file's name first, for a reader who opens it.
#[derive(Serialize)]
struct StateFileJson<'a> {
    file: &'static str,
    #[serde(flatten)]
    state: &'a ExpectedState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_state_reads_back_and_a_missing_or_garbled_one_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), Ok(None));
        let state = ExpectedState {
            open: false,
            timers: 5,
            jobs: 1,
            written_ms: 42,
        };
        write(dir.path(), &state).unwrap();
        assert_eq!(read(dir.path()), Ok(Some(state)));
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(text.contains("\"file\": \"timers.redb\""), "{text}");
        assert!(!dir.path().join("timers.redb.state.tmp").exists());
        std::fs::write(path(dir.path()), b"\0\0garbage").unwrap();
        let error = read(dir.path()).unwrap_err();
        assert!(error.contains("not a state file"), "{error}");
    }
}
