//! The log's segment files (`history/<sequence, 16 hex digits>.log`): naming, listing, and
//! reading them back with the damage rules.
//!
//! Only the newest segment is ever written to; a process killed mid-write leaves at most
//! one partial record at its very end. So a record cut short or failing its checksum at
//! the end of the newest segment is a torn write: it is cut off (and logged). The same
//! anywhere else is damage, and the log refuses to open.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::{self, Bad, Record};

/// What every segment starts with: the format and its version.
pub const MAGIC: &[u8; 8] = b"PHHLOG01";

/// The segment with sequence number `sequence` in `dir`.
pub fn path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:016x}.log"))
}

/// The segments in `dir`, oldest first, with their sequence numbers.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let sequence = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".log"))
            .filter(|stem| stem.len() == 16)
            .and_then(|stem| u64::from_str_radix(stem, 16).ok());
        if let Some(sequence) = sequence {
            segments.push((sequence, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Create segment `sequence` in `dir`, holding only its header, and make it durable.
pub fn create(dir: &Path, sequence: u64) -> std::io::Result<File> {
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path(dir, sequence))?;
    file.write_all(MAGIC)?;
    file.sync_all()?;
    super::state::sync_dir(dir)?;
    Ok(file)
}

/// Why a segment cannot be read.
#[derive(Debug)]
pub struct Damage {
    /// The segment.
    pub path: PathBuf,
    /// Byte offset of the first bad record.
    pub at: usize,
    /// What is wrong.
    pub reason: String,
}

/// The records of a segment, and how many bytes of it are whole (the file's length
/// unless the end is a torn write).
pub struct Read {
    /// The records, in the order written.
    pub records: Vec<Record>,
    /// Length of the part that holds whole records.
    pub whole: usize,
    /// Length of the file.
    pub len: usize,
}

/// Read a segment; `newest` allows a torn write at its end.
pub fn read(path: &Path, newest: bool) -> Result<Read, Damage> {
    let damage = |at: usize, reason: String| Damage {
        path: path.to_owned(),
        at,
        reason,
    };
    let bytes = std::fs::read(path).map_err(|error| damage(0, error.to_string()))?;
    if bytes.len() < MAGIC.len() && newest && MAGIC.starts_with(&bytes) {
        return Ok(Read {
            records: Vec::new(),
            whole: 0,
            len: bytes.len(),
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(damage(0, "not a pushhub history segment".into()));
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match record::decode(&bytes[at..]) {
            Ok((record, used)) => {
                records.push(record);
                at += used;
            }
            Err(Bad::Short) if newest => break,
            Err(Bad::Damaged(_)) if newest && is_last(&bytes[at..]) => break,
            Err(Bad::Short) => return Err(damage(at, "record cut short".into())),
            Err(Bad::Damaged(reason)) => return Err(damage(at, reason)),
        }
    }
    Ok(Read {
        records,
        whole: at,
        len: bytes.len(),
    })
}

/// True when a record that failed its checksum reaches exactly to the end of the file:
/// a torn last write rather than damage in the middle.
fn is_last(rest: &[u8]) -> bool {
    rest.get(..4).is_some_and(|len| {
        let mut word = [0; 4];
        word.copy_from_slice(len);
        record::FRAME_HEADER + u32::from_le_bytes(word) as usize == rest.len()
    })
}
