//! The node bus: commands one node asks the other nodes to carry out on their own
//! connections (kick a user, put a user's connections in a room, push to one connection,
//! change one connection's close notes).
//!
//! A connection lives on one node, but the API call that concerns it may arrive at any
//! node. The node that takes the call acts on its own connections itself and sends the
//! command over the bus to every other node, which acts on theirs. The in-memory default
//! ([`LocalBus`]) has no other nodes to tell; a Redis bus carries commands over one
//! pub/sub channel all nodes listen to.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{EngineError, Message};
use crate::close_notes::CloseNotesChange;

/// What a node asks the others to do; plain data with a stable serialized form (the
/// Redis bus sends it as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum NodeCommand {
    /// Close `user`'s connections to `app` (only the one named `conn` when given), with
    /// close `code` and `reason`.
    Disconnect {
        /// The app.
        app: String,
        /// The user.
        user: String,
        /// One connection's name across nodes; absent: all of the user's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conn: Option<String>,
        /// The close code the client gets.
        code: u16,
        /// The close reason the client gets.
        reason: String,
    },
    /// Put `user`'s connections to `app` in room `room` (`join`), or take them out.
    Room {
        /// The app.
        app: String,
        /// The user.
        user: String,
        /// The room name.
        room: String,
        /// True joins, false leaves.
        join: bool,
    },
    /// Queue `message` to connection `conn` of `app`, live-only (a connection target).
    Push {
        /// The app.
        app: String,
        /// The connection's name across nodes.
        conn: String,
        /// The message as the node that accepted the push made it, in its serialized
        /// form as text: raw JSON (its data) cannot sit inside a tagged command. Read it
        /// with [`NodeCommand::message`].
        message: String,
    },
    /// Queue a member change (`message`, its `member` set) to this node's connections in
    /// room channel `channel`, live-only.
    Member {
        /// The room channel.
        channel: String,
        /// The message in its serialized form as text, as [`NodeCommand::Push`] carries
        /// one. Read it with [`NodeCommand::message`].
        message: String,
    },
    /// Apply `change` to the close notes of connection `conn` of `app`.
    CloseNotes {
        /// The app.
        app: String,
        /// The connection's name across nodes.
        conn: String,
        /// Names to add and remove.
        change: CloseNotesChange,
    },
}

impl NodeCommand {
    /// The command that pushes `message` to connection `conn` of `app`.
    pub fn push(app: &str, conn: &str, message: &Message) -> Result<Self, EngineError> {
        let message = serde_json::to_string(message)
            .map_err(|e| EngineError::Unavailable(format!("node bus: {e}")))?;
        Ok(Self::Push {
            app: app.to_owned(),
            conn: conn.to_owned(),
            message,
        })
    }

    /// The command that tells the other nodes' connections in room channel `channel`
    /// of a member change, `message`.
    pub fn member(channel: &str, message: &Message) -> Result<Self, EngineError> {
        let message = serde_json::to_string(message)
            .map_err(|e| EngineError::Unavailable(format!("node bus: {e}")))?;
        Ok(Self::Member {
            channel: channel.to_owned(),
            message,
        })
    }

    /// The message a `push` or `member` command carries, or `None` (another command, or
    /// not readable).
    pub fn message(&self) -> Option<Arc<Message>> {
        match self {
            Self::Push { message, .. } | Self::Member { message, .. } => {
                serde_json::from_str(message).ok().map(Arc::new)
            }
            _ => None,
        }
    }
}

/// Where a bus hands the commands of other nodes to this node's hub: given once, at
/// start. Commands reach it one at a time, in the order the bus received them (a join
/// followed by a leave for one user is applied in that order).
#[async_trait]
pub trait NodeEvents: Send + Sync {
    /// Carry out `command` on this node's connections.
    async fn command(&self, command: NodeCommand);
}

/// Commands to the other nodes of the cluster.
///
/// Contract: `send` hands the command to every other node that is alive now, at most
/// once each; a node never receives its own commands back (it acts on its own
/// connections itself). A node that is down misses the command, which is what it should
/// do: its connections are gone with it.
#[async_trait]
pub trait NodeBus: Send + Sync {
    /// Give the bus the hub's handler; called once, at start.
    fn register_events(&self, events: Arc<dyn NodeEvents>);

    /// Send `command` to every other node.
    async fn send(&self, command: &NodeCommand) -> Result<(), EngineError>;

    /// Wait, up to `wait`, until commands from other nodes reach this node; false when
    /// they do not yet. A node that starts accepting connections before then could miss
    /// a kick meant for one of them, so the server asks this first.
    async fn ready(&self, wait: Duration) -> bool;
}

/// The bus of a single node: there is nobody else to tell.
pub struct LocalBus;

#[async_trait]
impl NodeBus for LocalBus {
    fn register_events(&self, _events: Arc<dyn NodeEvents>) {}

    async fn send(&self, _command: &NodeCommand) -> Result<(), EngineError> {
        Ok(())
    }

    async fn ready(&self, _wait: Duration) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serialized form other nodes read: stable names, optional fields left out.
    #[test]
    fn commands_have_a_stable_json_form() {
        let kick = NodeCommand::Disconnect {
            app: "wms".into(),
            user: "7".into(),
            conn: None,
            code: 4009,
            reason: "bye".into(),
        };
        let text = serde_json::to_string(&kick).unwrap();
        assert_eq!(
            text,
            r#"{"cmd":"disconnect","app":"wms","user":"7","code":4009,"reason":"bye"}"#
        );
        let back = serde_json::from_str::<NodeCommand>(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        let room = r#"{"cmd":"room","app":"wms","user":"7","room":"r1","join":true}"#;
        assert!(matches!(
            serde_json::from_str::<NodeCommand>(room).unwrap(),
            NodeCommand::Room { join: true, .. }
        ));
        let notes = r#"{"cmd":"close_notes","app":"wms","conn":"abcdefgh-1f","change":{"add_close_keys":["room:42"]}}"#;
        let NodeCommand::CloseNotes { change, .. } = serde_json::from_str(notes).unwrap() else {
            panic!("not a close_notes command");
        };
        assert_eq!(change.add_close_keys, ["room:42"]);
        let push = NodeCommand::push("wms", "abcdefgh-1f", &Message::for_test("hi")).unwrap();
        let text = serde_json::to_string(&push).unwrap();
        assert!(text.starts_with(r#"{"cmd":"push","app":"wms","conn":"abcdefgh-1f","message":"{"#));
        let back = serde_json::from_str::<NodeCommand>(&text).unwrap();
        assert_eq!(back.message().unwrap().data.get(), r#""hi""#);
    }
}
