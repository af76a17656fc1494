//! What crosses the engine seam: a [`Message`] (once per push), a [`Publication`] (the
//! message at its [`StreamPosition`] in one channel), and their serialized form.
//!
//! These types sit below both the hub and the engines, so neither imports the other.
//! They are plain data that mean the same on every node: no render cache rides in them, and
//! the one counter they carry (`seq`) is read together with the node named in the message
//! id. So a Redis engine can carry them between nodes as the JSON the serde derives write. The field names are that wire form and must stay stable: nodes of
//! two versions read each other's stream entries and pub/sub payloads during an upgrade.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Where a message sits in a channel's stream.
///
/// The empty position (epoch `""`, offset 0) stands for "before anything was published":
/// a client holding it has seen nothing, whatever epoch the stream later gets.
///
/// `offset` grows by one per message published to the channel. `epoch` names one unbroken
/// life of the stream: when history is lost (a restart of a memory engine, eviction of an
/// idle channel, a Redis flush) the epoch changes, so a client holding an old position can
/// tell that offsets no longer mean what they meant and that recovery is impossible. Losing
/// the oldest messages of a stream that lives on (size, TTL, a bound on history bytes)
/// keeps the epoch: the gap shows as a history that no longer reaches back far enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Opaque name of the current life of the stream.
    pub epoch: Arc<str>,
    /// Offset of the last message in the stream (0 when nothing was ever published).
    pub offset: u64,
}

impl StreamPosition {
    /// The position before anything was published.
    pub fn empty() -> Self {
        Self {
            epoch: "".into(),
            offset: 0,
        }
    }

    /// True for the position before anything was published.
    pub fn is_empty(&self) -> bool {
        self.offset == 0 && self.epoch.is_empty()
    }
}

/// One push, shared by every channel and connection it reaches.
///
/// `data` is kept as the JSON text the publisher sent, so no recipient pays for
/// re-serialization and the bytes a client receives are the bytes the backend sent.
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    /// Unique id of the push across every node; the same in every channel it was published
    /// to, so a connection reached through two channels can tell.
    pub id: Arc<str>,
    /// Application the push belongs to.
    pub app: Arc<str>,
    /// Application-defined event name, if the publisher gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<str>>,
    /// The user who sent it, when a client did (a `send` frame) rather than a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Arc<str>>,
    /// The payload, as JSON text.
    pub data: Box<RawValue>,
    /// When the hub accepted the push, in milliseconds since the Unix epoch.
    #[serde(rename = "ts")]
    pub ts_ms: u64,
    /// Order of acceptance among the messages of the node that accepted it (the node named
    /// in `id`): breaks ties between that node's messages stamped in the same millisecond,
    /// so a replay merged from several channels keeps the order they were pushed in.
    pub seq: u64,
    /// True when the push went to more than one channel: a connection in several of them
    /// must take it once, and only this flag tells a receiving node to check (most pushes
    /// go to one channel and pay nothing for it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// The one connection (its name across nodes) this message must not reach: the
    /// sender of a client event, or the connection a backend names as the trigger's
    /// origin (Pusher's `socket_id`), which already shows what it did. Checked by each
    /// receiving connection, so it holds whichever node delivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Arc<str>>,
    /// Set when this is not a push but a change in who is present in its channel (a
    /// member joined or left a presence room, `data` its info): live-only, never kept in
    /// history, and rendered only by dialects that show members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberChange>,
}

/// A presence member's arrival in a channel or departure from it: told once per user
/// however many connections it holds there (its first joined, its last left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// The member's user id.
    pub user: Arc<str>,
    /// True: it joined (its first connection); false: it left (its last one).
    pub joined: bool,
}

impl Message {
    /// A message with string data, for unit tests.
    #[cfg(test)]
    pub fn for_test(text: &str) -> Self {
        Self {
            id: "test".into(),
            app: "test".into(),
            event: None,
            from: None,
            data: RawValue::from_string(serde_json::to_string(text).unwrap_or_default())
                .unwrap_or_else(|_| RawValue::NULL.to_owned()),
            ts_ms: 0,
            seq: 0,
            shared: false,
            exclude: None,
            member: None,
        }
    }
}

/// A message at its position in one channel: what a connection receives, what a channel's
/// history holds, and what an engine hands the hub.
#[derive(Debug, Serialize, Deserialize)]
pub struct Publication {
    /// The channel, e.g. `wms:user:100`.
    #[serde(rename = "ch")]
    pub channel: Arc<str>,
    /// Where the message sits in that channel's stream.
    #[serde(rename = "pos")]
    pub position: StreamPosition,
    /// The message itself.
    #[serde(rename = "msg")]
    pub message: Arc<Message>,
}

impl Publication {
    /// `message` at `position` in `channel`.
    pub fn new(channel: Arc<str>, position: StreamPosition, message: Arc<Message>) -> Self {
        Self {
            channel,
            position,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serialized form is what other nodes (and other versions) read: its field names
    /// are fixed here, and a round trip keeps the payload's bytes exactly.
    #[test]
    fn serialized_form_is_stable_and_round_trips() {
        let message = Message {
            id: "n1a2b3-7".into(),
            app: "wms".into(),
            event: Some("order".into()),
            from: None,
            data: RawValue::from_string(r#"{"a": [1, 2.50]}"#.to_owned()).unwrap(),
            ts_ms: 1_700_000_000_123,
            seq: 7,
            shared: true,
            exclude: None,
            member: None,
        };
        let publication = Publication::new(
            "wms:user:100".into(),
            StreamPosition {
                epoch: "abcd1234".into(),
                offset: 42,
            },
            Arc::new(message),
        );
        let text = serde_json::to_string(&publication).unwrap();
        assert_eq!(
            text,
            r#"{"ch":"wms:user:100","pos":{"epoch":"abcd1234","offset":42},"msg":{"id":"n1a2b3-7","app":"wms","event":"order","data":{"a": [1, 2.50]},"ts":1700000000123,"seq":7,"shared":true}}"#
        );
        let back: Publication = serde_json::from_str(&text).unwrap();
        assert_eq!(back.position, publication.position);
        assert_eq!(back.message.data.get(), r#"{"a": [1, 2.50]}"#);
        assert_eq!(back.message.event.as_deref(), Some("order"));
        assert!(back.message.shared && back.message.from.is_none());
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }

    #[test]
    fn optional_fields_are_left_out_and_default_when_absent() {
        let text = r#"{"ch":"a:all","pos":{"epoch":"e","offset":1},"msg":{"id":"x","app":"a","data":null,"ts":0,"seq":1}}"#;
        let publication: Publication = serde_json::from_str(text).unwrap();
        assert!(!publication.message.shared);
        assert_eq!(serde_json::to_string(&publication).unwrap(), text);
    }
}
