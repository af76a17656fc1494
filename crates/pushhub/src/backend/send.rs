//! Client messages: whether a client may `send` an event to another user of its app (seed
//! 002's `alertTip`), or to every member of a room it is in (seed 002's chat). Off unless
//! the app allows it, because it lets any client reach any user; an app may let its
//! backend vet each message to a user.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::call::{Question, Verdict};

/// How an app treats `send` frames.
#[derive(Debug, Clone, Default)]
pub enum SendPolicy {
    /// Refused (the default).
    #[default]
    Off,
    /// Any connected client may send to any user of the app.
    Open,
    /// The backend vets each message.
    Webhook(Question),
}

/// How an app treats `send` frames addressed to a room (`room_send` in its configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomSendPolicy {
    /// Refused (the default).
    #[default]
    Off,
    /// A client may send to the rooms it is in; every member gets the message, the
    /// sender's own connections included (a chat shows the sender its own line).
    Members,
}

impl RoomSendPolicy {
    /// Whether a client may send to `room`, which it `is_member` of or not.
    pub fn may_send(&self, room: &str, is_member: bool) -> Result<(), SendRefused> {
        match self {
            Self::Off => Err(SendRefused::RoomsNotAllowed),
            Self::Members if is_member => Ok(()),
            Self::Members => Err(SendRefused::NotInRoom(format!(
                "join room {room:?} before sending to it"
            ))),
        }
    }
}

/// A message a client wants to send, as the vetting backend is told.
#[derive(Debug, Serialize)]
pub struct SendRequest<'a> {
    /// The app.
    pub app: &'a str,
    /// The sending user, as authenticated.
    pub from: &'a str,
    /// The sending connection (a `welcome`'s `conn`).
    pub conn: &'a str,
    /// The receiving user.
    pub to: &'a str,
    /// The event name, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'a str>,
    /// The payload.
    pub data: &'a RawValue,
}

/// Why a `send` was refused; the `code` of the error frame tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendRefused {
    /// The app does not take `send` frames.
    #[error("this app does not let clients send to users")]
    NotAllowed,
    /// The app does not take `send` frames to rooms.
    #[error("this app does not let clients send to rooms")]
    RoomsNotAllowed,
    /// A room send from a client that is not in the room.
    #[error("{0}")]
    NotInRoom(String),
    /// The backend said no.
    #[error("{0}")]
    Forbidden(String),
    /// The backend could not decide: down, slow, or an unexpected answer.
    #[error("{0}")]
    Unavailable(String),
}

impl SendRefused {
    /// The `code` of the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAllowed | Self::RoomsNotAllowed => "send_not_allowed",
            Self::NotInRoom(_) => "not_in_room",
            Self::Forbidden(_) => "send_forbidden",
            Self::Unavailable(_) => "send_unavailable",
        }
    }
}

impl SendPolicy {
    /// Whether `request` may go out.
    pub async fn may_send(&self, request: &SendRequest<'_>) -> Result<(), SendRefused> {
        match self {
            Self::Off => Err(SendRefused::NotAllowed),
            Self::Open => Ok(()),
            Self::Webhook(question) => match question.ask(request).await {
                Ok(Verdict::Yes) => Ok(()),
                Ok(Verdict::No(why)) => {
                    Err(SendRefused::Forbidden(why.unwrap_or_else(|| {
                        "the backend refused this message".into()
                    })))
                }
                Err(why) => Err(SendRefused::Unavailable(why)),
            },
        }
    }
}
