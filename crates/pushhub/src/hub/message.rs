//! What a push becomes inside the hub: a [`Message`] (once per push) and one
//! [`Publication`] per target channel (the message at its position in that channel).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::value::RawValue;

use super::render::{FormatId, Render};
use crate::engine::StreamPosition;
use crate::sync::lock;

/// One push, shared by every channel and connection it reaches.
///
/// `data` is kept as the JSON text the publisher sent, so no recipient pays for
/// re-serialization and the bytes a client receives are the bytes the backend sent.
#[derive(Debug)]
pub struct Message {
    /// Unique id of the push; the same in every channel it was published to, so a client
    /// that receives it twice through two channels can tell.
    pub id: Arc<str>,
    /// Application the push belongs to.
    pub app: Arc<str>,
    /// Application-defined event name, if the publisher gave one.
    pub event: Option<Box<str>>,
    /// The user who sent it, when a client did (a `send` frame) rather than a backend.
    pub from: Option<Arc<str>>,
    /// The payload, as JSON text.
    pub data: Box<RawValue>,
    /// When the hub accepted the push, in milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Order of acceptance on the node that accepted it: breaks ties between messages
    /// stamped in the same millisecond.
    pub serial: u64,
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
            serial: 0,
        }
    }
}

/// A message at its position in one channel: what a connection receives.
#[derive(Debug)]
pub struct Publication {
    /// The channel, e.g. `wms:user:100`.
    pub channel: Arc<str>,
    /// Where the message sits in that channel's stream.
    pub position: StreamPosition,
    /// The message itself.
    pub message: Arc<Message>,
    rendered: Mutex<Vec<(FormatId, Bytes)>>,
}

impl Publication {
    /// `message` at `position` in `channel`.
    pub fn new(channel: Arc<str>, position: StreamPosition, message: Arc<Message>) -> Self {
        Self {
            channel,
            position,
            message,
            rendered: Mutex::new(Vec::new()),
        }
    }

    /// This publication in `renderer`'s format, rendered on first use and kept with it
    /// (for as long as history keeps it), so live fan-out and every later replay to any
    /// number of reconnecting clients share one encoding.
    pub fn rendered(&self, renderer: &dyn Render) -> Bytes {
        let format = renderer.format();
        let mut rendered = lock(&self.rendered);
        if let Some((_, bytes)) = rendered.iter().find(|(f, _)| *f == format) {
            return bytes.clone();
        }
        let bytes = renderer.render(self);
        rendered.push((format, bytes.clone()));
        bytes
    }
}
