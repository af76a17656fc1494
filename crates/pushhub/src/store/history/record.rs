//! One record of the history log: a publication with what restoring it needs.
//!
//! On disk a record is `len: u32 LE`, `crc: u32 LE` (CRC-32 of the body), then `len` bytes
//! of body: `lsn`, `wall_ms`, `ttl_ms`, `size`, `max_bytes` (each `u64 LE`), then the
//! publication in its stable serialized form ([`Publication`]'s JSON). The length and the
//! checksum are what tell a record cut short by a kill -9 from a whole one.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::{HistoryPolicy, Publication};

/// Bytes before the body: its length and its checksum.
pub const FRAME_HEADER: usize = 8;

/// Fixed part of the body, before the publication's JSON.
const META: usize = 5 * 8;

/// Largest body a record may have: a publication bigger than this is refused (the
/// config's `max_body_bytes` keeps pushes far below it), and a length above it in a file
/// is damage, not a record.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// A record's meaning, decoded.
#[derive(Debug)]
pub struct Record {
    /// Order of first writing over the whole log (kept when compaction copies a record):
    /// the newest record of a channel names its current epoch.
    pub lsn: u64,
    /// When the publication was accepted, in milliseconds since the Unix epoch: TTLs are
    /// measured from it across restarts.
    pub wall_ms: u64,
    /// The channel's history policy when it was published.
    pub policy: HistoryPolicy,
    /// The publication.
    pub publication: Arc<Publication>,
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// The file ends before the record does.
    Short,
    /// The length or the checksum is wrong, or the body does not parse.
    Damaged(String),
}

/// The body of `publication` (without the frame: the writer adds it with the `lsn`).
pub fn body(publication: &Publication, policy: HistoryPolicy, wall_ms: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(META + 128 + publication.message.data.get().len());
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&wall_ms.to_le_bytes());
    body.extend_from_slice(&millis(policy.ttl).to_le_bytes());
    body.extend_from_slice(&(policy.size as u64).to_le_bytes());
    body.extend_from_slice(&(policy.max_bytes as u64).to_le_bytes());
    // A publication is plain data with a derived serializer: writing it cannot fail.
    let _ = serde_json::to_writer(&mut body, publication);
    body
}

/// Frame `body` as record `lsn` onto `out`.
pub fn frame(out: &mut Vec<u8>, lsn: u64, body: &mut [u8]) {
    body[..8].copy_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// The body length a record's frame header (at the start of `frame`) announces.
pub fn body_len(frame: &[u8]) -> Option<usize> {
    frame.get(..4).map(|len| le32(len) as usize)
}

/// The record at the start of `bytes` and its length on disk.
pub fn decode(bytes: &[u8]) -> Result<(Record, usize), Bad> {
    let (len, crc) = match (bytes.get(..4), bytes.get(4..8)) {
        (Some(len), Some(crc)) => (le32(len) as usize, le32(crc)),
        _ => return Err(Bad::Short),
    };
    if !(META..=MAX_BODY).contains(&len) {
        return Err(Bad::Damaged(format!("impossible record length {len}")));
    }
    let Some(body) = bytes.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Err(Bad::Short);
    };
    if crc32fast::hash(body) != crc {
        return Err(Bad::Damaged("checksum mismatch".into()));
    }
    let field = |i: usize| le64(&body[i * 8..i * 8 + 8]);
    let publication: Publication = serde_json::from_slice(&body[META..])
        .map_err(|error| Bad::Damaged(format!("unreadable publication: {error}")))?;
    let record = Record {
        lsn: field(0),
        wall_ms: field(1),
        policy: HistoryPolicy {
            ttl: Duration::from_millis(field(2)),
            size: usize::try_from(field(3)).unwrap_or(usize::MAX),
            max_bytes: usize::try_from(field(4)).unwrap_or(usize::MAX),
        },
        publication: Arc::new(publication),
    };
    Ok((record, FRAME_HEADER + len))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn le32(bytes: &[u8]) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(bytes);
    u32::from_le_bytes(word)
}

fn le64(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Message, StreamPosition};

    fn sample() -> (Publication, HistoryPolicy) {
        let publication = Publication::new(
            "a:user:1".into(),
            StreamPosition {
                epoch: "e1".into(),
                offset: 7,
            },
            Arc::new(Message::for_test("hello")),
        );
        let policy = HistoryPolicy {
            size: 10,
            ttl: Duration::from_secs(60),
            max_bytes: 1000,
        };
        (publication, policy)
    }

    #[test]
    fn a_record_round_trips() {
        let (publication, policy) = sample();
        let mut out = Vec::new();
        frame(&mut out, 42, &mut body(&publication, policy, 123));
        let (record, used) = decode(&out).unwrap();
        assert_eq!(used, out.len());
        assert_eq!(
            (record.lsn, record.wall_ms, record.policy),
            (42, 123, policy)
        );
        assert_eq!(record.publication.position, publication.position);
        assert_eq!(record.publication.message.data.get(), "\"hello\"");
    }

    #[test]
    fn a_cut_record_is_short_and_a_flipped_bit_is_damage() {
        let (publication, policy) = sample();
        let mut out = Vec::new();
        frame(&mut out, 1, &mut body(&publication, policy, 0));
        for cut in [0, 3, 8, out.len() - 1] {
            assert_eq!(decode(&out[..cut]).unwrap_err(), Bad::Short, "cut at {cut}");
        }
        let last = out.len() - 2;
        out[last] ^= 1;
        assert!(matches!(decode(&out), Err(Bad::Damaged(_))));
    }
}
