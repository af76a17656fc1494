//! A client's resume cursor, kept the way a real pushhub client keeps it.
//!
//! Format (docs/protocol.md, pushhub's `hub::cursor`): entries joined by `,`,
//! each `CHANNEL@EPOCH:OFFSET`, e.g. `demo:user:u1@k3x9q2mz:42,demo:all@p0q1r2s3:7`.
//! Channel names may contain `@` and `:` (user ids may), epochs are `[a-z0-9]*`
//! and offsets digits, so an entry splits from the right. `CHANNEL@:0` means
//! "seen nothing of this channel yet".
//!
//! A client starts from the welcome frame's `cursor` and moves its channel's
//! entry to `(epoch, off)` of every `msg` frame it receives; reconnecting with
//! `since=<cursor>` then asks for exactly what it missed.

use std::fmt;

use anyhow::{bail, Context, Result};

/// One channel's position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The channel's history epoch; empty for "nothing seen".
    pub epoch: String,
    /// The offset of the last message seen in that epoch (0 = none).
    pub offset: u64,
}

/// How a received message relates to the position the client had for its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Exactly the next offset of the same epoch (or offset 1 of a channel never seen).
    Next,
    /// Same epoch, but offsets were skipped (normal when other pushes went to the channel).
    Gap,
    /// Same epoch, offset not above the current one: a replayed or reordered message.
    Stale,
    /// A different epoch than the client had (server restart or expired history).
    NewEpoch,
    /// A channel the cursor did not name.
    NewChannel,
}

/// Positions by channel, in the order the server listed them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    entries: Vec<(String, Position)>,
}

impl Cursor {
    /// Parses the string form; the empty string is the empty cursor.
    pub fn parse(text: &str) -> Result<Self> {
        let mut cursor = Cursor::default();
        for entry in text.split(',').filter(|e| !e.is_empty()) {
            let (rest, offset) = entry
                .rsplit_once(':')
                .with_context(|| format!("cursor entry {entry:?} has no ':OFFSET'"))?;
            let (channel, epoch) = rest
                .rsplit_once('@')
                .with_context(|| format!("cursor entry {entry:?} has no '@EPOCH'"))?;
            let offset: u64 = offset
                .parse()
                .with_context(|| format!("cursor entry {entry:?}: offset is not a number"))?;
            if channel.is_empty() {
                bail!("cursor entry {entry:?} has an empty channel");
            }
            if !epoch
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                bail!("cursor entry {entry:?}: epoch must be [a-z0-9]");
            }
            if epoch.is_empty() && offset != 0 {
                bail!("cursor entry {entry:?}: an empty epoch needs offset 0");
            }
            cursor.set(channel, epoch, offset);
        }
        Ok(cursor)
    }

    /// The position recorded for `channel`.
    pub fn get(&self, channel: &str) -> Option<&Position> {
        self.entries
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, p)| p)
    }

    /// Sets `channel` to `epoch:offset` (adding the channel if it is new).
    pub fn set(&mut self, channel: &str, epoch: &str, offset: u64) {
        let position = Position {
            epoch: epoch.to_string(),
            offset,
        };
        match self.entries.iter_mut().find(|(c, _)| c == channel) {
            Some((_, p)) => *p = position,
            None => self.entries.push((channel.to_string(), position)),
        }
    }

    /// Records a received message of `channel` at `epoch:offset` and says how it
    /// relates to what the client had. A stale message does not move the cursor
    /// back; anything else moves it to the message.
    pub fn advance(&mut self, channel: &str, epoch: &str, offset: u64) -> Step {
        let step = match self.get(channel) {
            None => Step::NewChannel,
            Some(p) if p.epoch.is_empty() && p.offset == 0 => {
                if offset == 1 {
                    Step::Next
                } else {
                    Step::Gap
                }
            }
            Some(p) if p.epoch != epoch => Step::NewEpoch,
            Some(p) if offset <= p.offset => Step::Stale,
            Some(p) if offset == p.offset + 1 => Step::Next,
            Some(_) => Step::Gap,
        };
        if step != Step::Stale {
            self.set(channel, epoch, offset);
        }
        step
    }

    /// Number of channels named.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no channel is named.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (channel, p)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{channel}@{}:{}", p.epoch, p.offset)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_welcome_form() {
        let text = "demo:all@:0,demo:user:u7@:0";
        let c = Cursor::parse(text).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("demo:all").unwrap().offset, 0);
        assert_eq!(c.get("demo:all").unwrap().epoch, "");
        assert_eq!(c.to_string(), text);
        assert!(Cursor::parse("").unwrap().is_empty());
    }

    #[test]
    fn splits_from_the_right_with_awkward_user_ids() {
        let text = "demo:all@p0q1:7,demo:user:bob@x.com:8080@k3x9:42";
        let c = Cursor::parse(text).unwrap();
        let p = c.get("demo:user:bob@x.com:8080").unwrap();
        assert_eq!((p.epoch.as_str(), p.offset), ("k3x9", 42));
        assert_eq!(c.to_string(), text);
    }

    #[test]
    fn refuses_malformed_entries() {
        for bad in ["x", "ch@ep", "ch@ep:x", "@ep:1", "ch@EP:1", "ch@:5", "ch:1"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn advance_follows_messages() {
        let mut c = Cursor::parse("demo:all@:0,demo:user:u1@:0").unwrap();
        assert_eq!(c.advance("demo:all", "ep1", 1), Step::Next);
        assert_eq!(c.advance("demo:all", "ep1", 2), Step::Next);
        assert_eq!(c.advance("demo:all", "ep1", 5), Step::Gap);
        assert_eq!(c.advance("demo:all", "ep1", 5), Step::Stale);
        assert_eq!(c.advance("demo:all", "ep1", 3), Step::Stale);
        // A stale message never moves the cursor back.
        assert_eq!(c.get("demo:all").unwrap().offset, 5);
        assert_eq!(c.advance("demo:user:u1", "ep2", 4), Step::Gap);
        assert_eq!(c.advance("demo:all", "ep9", 1), Step::NewEpoch);
        assert_eq!(c.advance("demo:group:g", "ep3", 1), Step::NewChannel);
        // Order of the welcome is kept, new channels go last.
        assert_eq!(
            c.to_string(),
            "demo:all@ep9:1,demo:user:u1@ep2:4,demo:group:g@ep3:1"
        );
    }

    #[test]
    fn round_trips_after_updates() {
        let mut c = Cursor::parse("demo:all@:0").unwrap();
        c.advance("demo:all", "k0xthqw9", 1);
        let again = Cursor::parse(&c.to_string()).unwrap();
        assert_eq!(again, c);
    }
}
