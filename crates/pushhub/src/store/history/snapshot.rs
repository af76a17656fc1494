//! The history snapshot an upgrade leaves for its successor when histories live in memory
//! only (`history_store = "memory"`, the default): every channel's epoch, offset and kept
//! messages, so clients resume across the upgrade with `recovered: true`.
//!
//! One file, `data_dir/history.snapshot`: an 8-byte magic, the format version (`u32 LE`),
//! the body's length (`u64 LE`) and CRC-32 (`u32 LE`), then the body, JSON. It is written
//! to a temporary file, synced and renamed, so a reader sees a whole snapshot or none; the
//! successor deletes it once loaded. A process killed with -9 writes none, and its
//! successor starts every channel in a new epoch, as any start without history does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Restored, RestoredStream};
use crate::engine::{HistoryPolicy, Publication, StreamPosition};

/// The snapshot's file name inside `data_dir`.
pub const FILE_NAME: &str = "history.snapshot";

/// What every snapshot starts with.
const MAGIC: &[u8; 8] = b"PHSNAPv\0";

/// The body's format; a snapshot of another version is not read.
const VERSION: u32 = 1;

/// Bytes before the body: magic, version, length, checksum.
const HEADER: usize = 8 + 4 + 8 + 4;

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file operation failed.
    #[error("history snapshot {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is not a whole snapshot of this version.
    #[error("history snapshot {path} is unusable: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One channel as the body spells it.
#[derive(Serialize, Deserialize)]
struct Channel {
    ch: Arc<str>,
    epoch: Arc<str>,
    off: u64,
    last_ms: u64,
    ttl_ms: u64,
    size: u64,
    max_bytes: u64,
    kept: Vec<(u64, Arc<Publication>)>,
}

/// Write `streams` as the snapshot in `data_dir` (blocking: call it off the runtime).
/// Returns the bytes written.
pub fn write(data_dir: &Path, streams: &[RestoredStream]) -> Result<u64, SnapshotError> {
    let path = data_dir.join(FILE_NAME);
    let channels: Vec<Channel> = streams
        .iter()
        .map(|stream| Channel {
            ch: stream.channel.clone(),
            epoch: stream.top.epoch.clone(),
            off: stream.top.offset,
            last_ms: stream.last_wall_ms,
            ttl_ms: u64::try_from(stream.policy.ttl.as_millis()).unwrap_or(u64::MAX),
            size: stream.policy.size as u64,
            max_bytes: stream.policy.max_bytes as u64,
            kept: stream.kept.clone(),
        })
        .collect();
    // Plain data with derived serializers: writing it to memory cannot fail.
    let body = serde_json::to_vec(&channels).unwrap_or_default();
    let mut bytes = Vec::with_capacity(HEADER + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    let temporary = data_dir.join(format!("{FILE_NAME}.tmp"));
    let io = |source| SnapshotError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, &path))
        .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
        .map_err(|source| {
            let _ = std::fs::remove_file(&temporary);
            io(source)
        })?;
    Ok(bytes.len() as u64)
}

/// Read the snapshot in `data_dir` and delete it: `None` when there is none. An
/// unusable one is deleted too (and reported): its channels start afresh.
pub fn take(data_dir: &Path) -> Result<Option<Restored>, SnapshotError> {
    let path = data_dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SnapshotError::Io { path, source }),
    };
    let read = decode(&bytes).map_err(|reason| SnapshotError::Unusable {
        path: path.clone(),
        reason,
    });
    std::fs::remove_file(&path).map_err(|source| SnapshotError::Io {
        path: path.clone(),
        source,
    })?;
    read.map(Some)
}

fn decode(bytes: &[u8]) -> Result<Restored, String> {
    let header = bytes
        .get(..HEADER)
        .ok_or_else(|| format!("{} bytes is shorter than its header", bytes.len()))?;
    if &header[..8] != MAGIC {
        return Err("not a pushhub history snapshot".into());
    }
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let version = word(8);
    if version != VERSION {
        return Err(format!(
            "format version {version}; this pushhub reads {VERSION}"
        ));
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&header[12..20]);
    let length = u64::from_le_bytes(length);
    let body = &bytes[HEADER..];
    if body.len() as u64 != length {
        return Err(format!(
            "the body has {} bytes, the header says {length}",
            body.len()
        ));
    }
    if crc32fast::hash(body) != word(20) {
        return Err("checksum mismatch".into());
    }
    let channels: Vec<Channel> =
        serde_json::from_slice(body).map_err(|error| format!("unreadable body: {error}"))?;
    let records = channels.iter().map(|c| c.kept.len() as u64).sum();
    let streams = channels
        .into_iter()
        .map(|channel| RestoredStream {
            channel: channel.ch,
            top: StreamPosition {
                epoch: channel.epoch,
                offset: channel.off,
            },
            last_wall_ms: channel.last_ms,
            policy: HistoryPolicy {
                ttl: Duration::from_millis(channel.ttl_ms),
                size: usize::try_from(channel.size).unwrap_or(usize::MAX),
                max_bytes: usize::try_from(channel.max_bytes).unwrap_or(usize::MAX),
            },
            kept: channel.kept,
        })
        .collect();
    Ok(Restored { streams, records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Message;

    fn stream(channel: &str, offsets: std::ops::RangeInclusive<u64>) -> RestoredStream {
        let top = *offsets.end();
        RestoredStream {
            channel: channel.into(),
            top: StreamPosition {
                epoch: "e1".into(),
                offset: top,
            },
            last_wall_ms: 1_000 + top,
            policy: HistoryPolicy {
                size: 10,
                ttl: Duration::from_secs(60),
                max_bytes: 4096,
            },
            kept: offsets
                .map(|offset| {
                    let position = StreamPosition {
                        epoch: "e1".into(),
                        offset,
                    };
                    let message = Arc::new(Message::for_test(&format!("m{offset}")));
                    (
                        1_000 + offset,
                        Arc::new(Publication::new(channel.into(), position, message)),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_snapshot_round_trips_once_and_is_gone_after() {
        let dir = tempfile::tempdir().unwrap();
        let streams = vec![stream("a:user:1", 3..=5), stream("a:all", 1..=1)];
        write(dir.path(), &streams).unwrap();
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
        let restored = take(dir.path()).unwrap().expect("a snapshot");
        assert_eq!(restored.records, 4);
        let first = &restored.streams[0];
        assert_eq!(first.channel.as_ref(), "a:user:1");
        assert_eq!(first.top.offset, 5);
        assert_eq!(
            (first.last_wall_ms, first.policy),
            (1_005, streams[0].policy)
        );
        let kept: Vec<(u64, u64, String)> = first
            .kept
            .iter()
            .map(|(wall, p)| (*wall, p.position.offset, p.message.data.get().to_owned()))
            .collect();
        assert_eq!(kept[0], (1_003, 3, "\"m3\"".to_owned()));
        assert_eq!(kept.len(), 3);
        assert!(take(dir.path()).unwrap().is_none(), "deleted once loaded");
    }

    #[test]
    fn a_damaged_or_foreign_snapshot_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        write(dir.path(), &[stream("a:user:1", 1..=2)]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        let versioned = {
            let mut copy = bytes.clone();
            copy[8] = 9;
            copy
        };
        for (damaged, expected) in [
            (bytes.clone(), "checksum"),
            (bytes[..bytes.len() - 1].to_vec(), "the header says"),
            (versioned, "format version 9"),
            (b"short".to_vec(), "shorter"),
            (vec![0; 40], "not a pushhub"),
        ] {
            std::fs::write(&path, damaged).unwrap();
            let error = take(dir.path()).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!path.exists());
        }
    }
}
