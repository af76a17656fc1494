//! A client's position in each of its channels, as one string it can carry.
//!
//! Native clients pass it to resume (`since=`), SSE uses it as the event id (so the
//! browser's `Last-Event-ID` resumes), and long-poll returns it for the next call.
//!
//! Format: entries joined by `,`, each `CHANNEL@EPOCH:OFFSET`, e.g.
//! `demo:user:100@k3x9q2mz:42,demo:all@p0q1r2s3:7`. Channel names cannot contain `,` (user
//! ids may not), epochs are `[a-z0-9]` and offsets digits, so an entry splits
//! unambiguously from the right even when a user id holds `@` or `:`. `CHANNEL@:0` means
//! "seen nothing of this channel yet".

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::engine::StreamPosition;

/// Longest cursor accepted, in bytes: room for every channel a connection can have (its
/// user, `all`, [`MAX_GROUP_DEPTH`](super::names::MAX_GROUP_DEPTH) groups of its id and
/// [`MAX_EXTRA_GROUPS`](super::MAX_EXTRA_GROUPS) granted ones) at their longest, so a
/// cursor the server hands out is always one it takes back (a test checks).
pub const MAX_CURSOR_BYTES: usize = 16 * 1024;

/// Positions by channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    positions: BTreeMap<Arc<str>, StreamPosition>,
}

/// Why a cursor string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct CursorError(pub String);

impl Cursor {
    /// Parse the string form.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        if text.len() > MAX_CURSOR_BYTES {
            return Err(CursorError(format!("longer than {MAX_CURSOR_BYTES} bytes")));
        }
        let mut cursor = Cursor::default();
        for entry in text.split(',').filter(|e| !e.is_empty()) {
            let bad = || CursorError(format!("entry {entry:?} is not CHANNEL@EPOCH:OFFSET"));
            let (rest, offset) = entry.rsplit_once(':').ok_or_else(bad)?;
            let (channel, epoch) = rest.rsplit_once('@').ok_or_else(bad)?;
            let offset: u64 = offset.parse().map_err(|_| bad())?;
            if channel.is_empty() {
                return Err(bad());
            }
            cursor.set(channel.into(), position(epoch, offset).map_err(|_| bad())?);
        }
        Ok(cursor)
    }

    /// The position recorded for `channel`.
    pub fn get(&self, channel: &str) -> Option<&StreamPosition> {
        self.positions.get(channel)
    }

    /// Record `position` for `channel`.
    pub fn set(&mut self, channel: Arc<str>, position: StreamPosition) {
        self.positions.insert(channel, position);
    }

    /// True when no channel has a position.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// The position a client names by `epoch` and `offset` (a cursor entry's, or a room
/// `join`'s): the epoch is `[a-z0-9]`, and the empty epoch only goes with offset 0.
pub fn position(epoch: &str, offset: u64) -> Result<StreamPosition, CursorError> {
    let epoch_ok = epoch
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !epoch_ok {
        return Err(CursorError(format!("epoch {epoch:?} is not [a-z0-9]")));
    }
    if epoch.is_empty() && offset != 0 {
        return Err(CursorError(format!(
            "offset {offset} without an epoch (the empty position is epoch \"\" and offset 0)"
        )));
    }
    Ok(StreamPosition {
        epoch: epoch.into(),
        offset,
    })
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (channel, position)) in self.positions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{channel}@{}:{}", position.epoch, position.offset)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol.md states the limit clients must keep to; it once said half of it.
    #[test]
    fn the_documented_limit_is_the_enforced_one() {
        let docs = include_str!("../../../../docs/protocol.md");
        let grouped = format!("{},{:03}", MAX_CURSOR_BYTES / 1000, MAX_CURSOR_BYTES % 1000);
        assert!(docs.contains(&format!("At most {grouped} bytes")));
        assert!(docs.contains(&format!("longer than {MAX_CURSOR_BYTES} bytes")));
    }

    #[test]
    fn the_longest_cursor_a_connection_can_have_is_accepted() {
        use crate::hub::{channel, names, MAX_EXTRA_GROUPS};
        let app = "a".repeat(names::MAX_APP_BYTES);
        let level = "u".repeat(names::MAX_USER_BYTES / (names::MAX_GROUP_DEPTH + 1) - 1);
        let user = vec![level.as_str(); names::MAX_GROUP_DEPTH + 1].join("/");
        assert!(names::check_user(&user).is_ok(), "{}", user.len());
        let mut channels = channel::channels_for(&app, &user);
        for n in 0..MAX_EXTRA_GROUPS {
            let group = format!("{n}{}", "g".repeat(names::MAX_USER_BYTES - 3));
            channels.push(channel::group(&app, &group));
        }
        let mut cursor = Cursor::default();
        for ch in channels {
            let position = StreamPosition {
                epoch: "z".repeat(16).into(),
                offset: u64::MAX,
            };
            cursor.set(ch, position);
        }
        let text = cursor.to_string();
        assert!(text.len() <= MAX_CURSOR_BYTES, "{} bytes", text.len());
        assert_eq!(Cursor::parse(&text).unwrap(), cursor);
    }
    use proptest::prelude::*;

    #[test]
    fn round_trip_with_awkward_user_ids() {
        let text = "demo:all@p0q1:7,demo:user:bob@x.com:8080@k3x9:42,demo:user:new@:0";
        let cursor = Cursor::parse(text).unwrap();
        assert_eq!(cursor.get("demo:user:bob@x.com:8080").unwrap().offset, 42);
        assert_eq!(
            &*cursor.get("demo:user:bob@x.com:8080").unwrap().epoch,
            "k3x9"
        );
        assert_eq!(cursor.get("demo:user:new"), Some(&StreamPosition::empty()));
        assert_eq!(cursor.to_string(), text);
        assert_eq!(Cursor::parse("").unwrap(), Cursor::default());
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "x",
            "ch@ep",
            "ch@ep:x",
            "@ep:1",
            "ch@EP:1",
            "ch@:5",
            "ch:1",
            &"a".repeat(9000),
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "[a-z0-9@:,/]{0,80}") {
            if let Ok(cursor) = Cursor::parse(&text) {
                prop_assert_eq!(Cursor::parse(&cursor.to_string()).unwrap(), cursor);
            }
        }
    }
}
