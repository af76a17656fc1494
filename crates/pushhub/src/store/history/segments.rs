//! The log's segment files (`history/<sequence, 16 hex digits>.log`): naming, listing, and
//! reading them back with the damage rules.
//!
//! Only the newest segment is ever written to; a process killed mid-write leaves at most
//! one partial record at its very end. So a record cut short or failing its checksum at
//! the end of the newest segment is a torn write: it is cut off (and logged). The same
//! anywhere else is damage, and the log refuses to open.

use std::fs::File;
use std::io::{BufReader, Read as _, Write};
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

/// How much of a segment holds whole records.
pub struct Read {
    /// Length of the part that holds whole records.
    pub whole: usize,
    /// Length of the file.
    pub len: usize,
}

/// Read a segment record by record, handing each to `each` with its bytes on disk (frame
/// included); `newest` allows a torn write at its end. Streams through one buffer the size
/// of the largest record, so reading a segment costs no more memory than its records
/// kept by `each`.
pub fn read(
    path: &Path,
    newest: bool,
    mut each: impl FnMut(Record, &[u8]),
) -> Result<Read, Damage> {
    let damage = |at: usize, reason: String| Damage {
        path: path.to_owned(),
        at,
        reason,
    };
    let file = File::open(path).map_err(|error| damage(0, error.to_string()))?;
    let len = file
        .metadata()
        .map_err(|error| damage(0, error.to_string()))?
        .len() as usize;
    let mut file = BufReader::with_capacity(1 << 20, file);
    let mut magic = vec![0; MAGIC.len().min(len)];
    file.read_exact(&mut magic)
        .map_err(|error| damage(0, error.to_string()))?;
    if len < MAGIC.len() && newest && MAGIC.starts_with(&magic) {
        return Ok(Read { whole: 0, len });
    }
    if magic != MAGIC {
        return Err(damage(0, "not a pushhub history segment".into()));
    }
    let mut at = MAGIC.len();
    let mut frame = Vec::new();
    while at < len {
        let rest = len - at;
        // The frame header gives the record's length; what the file holds of the record
        // (at most that) is read, and decoding it tells short, damaged and whole apart.
        frame.resize(rest.min(record::FRAME_HEADER), 0);
        file.read_exact(&mut frame)
            .map_err(|error| damage(at, error.to_string()))?;
        if let Some(body_len) = record::body_len(&frame) {
            let available = rest.min(record::FRAME_HEADER + body_len.min(record::MAX_BODY));
            frame.resize(available, 0);
            file.read_exact(&mut frame[record::FRAME_HEADER..])
                .map_err(|error| damage(at, error.to_string()))?;
        }
        match record::decode(&frame) {
            Ok((record, used)) => {
                each(record, &frame[..used]);
                at += used;
            }
            Err(Bad::Short) if newest => break,
            Err(Bad::Damaged(_)) if newest && is_last(&frame, rest) => break,
            Err(Bad::Short) => return Err(damage(at, "record cut short".into())),
            Err(Bad::Damaged(reason)) => return Err(damage(at, reason)),
        }
    }
    Ok(Read { whole: at, len })
}

/// True when a record (`frame`, read from where `rest` bytes of the file are left) that
/// failed its checksum reaches exactly to the end of the file: a torn last write rather
/// than damage in the middle.
fn is_last(frame: &[u8], rest: usize) -> bool {
    record::body_len(frame).is_some_and(|len| record::FRAME_HEADER + len == rest)
}
