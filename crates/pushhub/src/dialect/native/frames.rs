//! The native protocol's frames (docs/protocol.md): what a client sends, and every frame
//! the server answers with besides `msg` ([`super::encode`]).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::disconnect::Disconnect;
use crate::hub::{ConnInfo, PublishReceipt};
use crate::transport::Link;

/// A frame a native client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum ClientFrame {
    /// Application-level ping; answered with `pong` (WebSocket pings work too).
    Ping {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    /// The answer to the server's `ping` frame (raw TCP heartbeat); nothing to do.
    Pong {},
    /// Raw TCP's first frame; anywhere else it is answered with an error.
    Connect {},
    /// An event for another user of the app (`to`), or for every member of a room the
    /// client is in (`room`), when the app allows it; answered with `sent`.
    Send {
        #[serde(default)]
        id: Option<serde_json::Value>,
        #[serde(default)]
        to: Option<String>,
        #[serde(default)]
        room: Option<String>,
        #[serde(default)]
        event: Option<String>,
        #[serde(default)]
        data: serde_json::Value,
    },
    /// A call to the app's backend, answered with `reply` or `error` carrying the same id.
    Rpc {
        id: serde_json::Value,
        method: String,
        #[serde(default)]
        data: serde_json::Value,
    },
    /// Join a room, answered with `joined` (or an `error` with the same id); with the
    /// position last seen in it (`epoch`, `off`, as `msg` frames carry them), what the room
    /// carried since then is replayed first.
    Join {
        #[serde(default)]
        id: Option<serde_json::Value>,
        room: String,
        #[serde(default)]
        epoch: Option<String>,
        #[serde(default)]
        off: Option<u64>,
    },
    /// Leave a room, answered with `left`.
    Leave {
        #[serde(default)]
        id: Option<serde_json::Value>,
        room: String,
    },
    /// A login on a connection that is logged in already: refused.
    Login {},
    /// End the login, keep the socket: the connection waits anonymous again.
    Logout {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    /// A fresh token for the same user, before the current one expires.
    Refresh {
        #[serde(default)]
        id: Option<serde_json::Value>,
        token: String,
    },
}

#[derive(Serialize)]
pub(super) struct Refreshed<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a serde_json::Value>,
    pub(super) expires: u64,
}

/// Raw TCP's first frame: who the client is, and where it left off.
#[derive(Debug, Deserialize)]
pub(super) struct ConnectFrame {
    pub(super) app: String,
    #[serde(default)]
    pub(super) user: Option<String>,
    #[serde(default)]
    pub(super) token: Option<String>,
    /// A cursor, as the WebSocket `since` query parameter.
    #[serde(default)]
    pub(super) since: Option<String>,
}

#[derive(Serialize)]
pub(super) struct Welcome<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    /// The `login` frame's id, when a login attached the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a serde_json::Value>,
    pub(super) conn: String,
    pub(super) app: &'a str,
    pub(super) user: &'a str,
    pub(super) heartbeat: u64,
    pub(super) idle_timeout: u64,
    pub(super) max_frame_bytes: usize,
    pub(super) recovered: bool,
    pub(super) cursor: String,
    /// When the connection's token expires (Unix seconds): refresh before then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) expires: Option<u64>,
    pub(super) channels: Vec<ChannelFrame<'a>>,
}

#[derive(Serialize)]
pub(super) struct ChannelFrame<'a> {
    pub(super) ch: &'a str,
    pub(super) epoch: &'a str,
    pub(super) off: u64,
    pub(super) recovered: bool,
}

impl<'a> Welcome<'a> {
    pub(super) fn new(
        info: &'a ConnInfo,
        expires: Option<u64>,
        id: Option<&'a serde_json::Value>,
    ) -> Self {
        Welcome {
            kind: "welcome",
            id,
            conn: crate::hub::conn_name(info.id),
            app: &info.app.name,
            user: info.user.as_deref().unwrap_or_default(),
            heartbeat: info.app.heartbeat.as_secs(),
            idle_timeout: info.app.idle_timeout.as_secs(),
            max_frame_bytes: info.app.max_frame_bytes,
            recovered: info.recovered,
            cursor: info.start_cursor().to_string(),
            expires,
            channels: info
                .channels
                .iter()
                .map(|c| ChannelFrame {
                    ch: &c.channel,
                    epoch: &c.position.epoch,
                    off: c.position.offset,
                    recovered: c.recovered,
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a serde_json::Value>,
    pub(super) code: &'a str,
    /// The close code, on the frame a transport without close frames ends with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) close: Option<u16>,
    pub(super) message: &'a str,
}

#[derive(Serialize)]
pub(super) struct Joined<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a serde_json::Value>,
    pub(super) room: &'a str,
    pub(super) ch: &'a str,
    /// Where the client stands before the replay that follows: its own position when
    /// recovered, else the room's top.
    pub(super) epoch: &'a str,
    pub(super) off: u64,
    /// False when the client gave a position the room's history no longer reaches.
    pub(super) recovered: bool,
}

#[derive(Serialize)]
pub(super) struct Sent<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a serde_json::Value>,
    pub(super) ch: &'a str,
    pub(super) epoch: &'a str,
    pub(super) off: u64,
}

#[derive(Serialize)]
pub(super) struct Left<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a serde_json::Value>,
    pub(super) room: &'a str,
}

#[derive(Serialize)]
pub(super) struct Reply<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) id: &'a serde_json::Value,
    pub(super) data: &'a RawValue,
}

#[derive(Serialize)]
pub(super) struct Pong<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a serde_json::Value>,
}

/// The `sent` answer to a `send`: where the message stands in the channel it went to.
pub(super) fn send_sent(link: &Link, id: Option<&serde_json::Value>, receipt: &PublishReceipt) {
    let Some((channel, position)) = receipt.positions.first() else {
        return;
    };
    let sent = Sent {
        kind: "sent",
        id,
        ch: channel,
        epoch: &position.epoch,
        off: position.offset,
    };
    link.send_text(&serde_json::to_vec(&sent).unwrap_or_default());
}

/// Queue an `error` frame; the connection stays open.
pub(super) fn send_error(link: &Link, id: Option<&serde_json::Value>, code: &str, message: &str) {
    link.send_text(&error_frame(id, code, message));
}

pub(super) fn error_frame(id: Option<&serde_json::Value>, code: &str, message: &str) -> Vec<u8> {
    let frame = ErrorFrame {
        kind: "error",
        id,
        code,
        close: None,
        message,
    };
    serde_json::to_vec(&frame).unwrap_or_default()
}

/// The server's heartbeat on transports without a ping of their own (raw TCP).
pub const PING: &[u8] = br#"{"type":"ping"}"#;

/// The last frame on transports without a close frame of their own (raw TCP): an `error`
/// frame naming the reason, with its close code, e.g.
/// `{"type":"error","code":"too_big","close":1009,"message":"..."}`.
pub fn closing_frame(reason: &Disconnect) -> Vec<u8> {
    let frame = ErrorFrame {
        kind: "error",
        id: None,
        code: reason.name(),
        close: Some(reason.code),
        message: &reason.reason,
    };
    serde_json::to_vec(&frame).unwrap_or_default()
}

/// The first frame of a client that authenticates in-band: `{"type":"auth","token":...}`.
#[derive(Debug, Deserialize)]
pub(super) struct AuthFrame {
    pub(super) token: String,
    #[serde(default)]
    pub(super) since: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_frame_names_the_reason_and_its_code() {
        assert_eq!(
            String::from_utf8(closing_frame(&Disconnect::SHUTDOWN)).unwrap(),
            r#"{"type":"error","code":"shutdown","close":1001,"message":"server shutting down"}"#
        );
        let frame: serde_json::Value =
            serde_json::from_slice(&closing_frame(&Disconnect::TOO_BIG.with_reason("a\nb")))
                .unwrap();
        assert_eq!(frame["code"], "too_big");
        assert_eq!(frame["message"], "a\nb");
    }
}
