//! Client-to-user messages: whether a client may `send` an event to another user of its
//! app (seed 002's `alertTip`). Off unless the app allows it, because it lets any client
//! reach any user; an app may let its backend vet each message.

use serde::Serialize;
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
            Self::NotAllowed => "send_not_allowed",
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
