//! What a connection may do besides receive: join and leave rooms, send to a user or a
//! room, refresh its token. The app's rules for each are enforced here, once, for every
//! dialect: a dialect parses the request from its frames and renders the answer, or the
//! typed refusal, in its own wire format (REVIEW §2: a new dialect must not copy policy).

use std::sync::Arc;

use serde_json::value::RawValue;

use super::{
    names, AuthMode, ChannelState, HubError, PublishReceipt, RoomEntry, RoomStart, Session,
};
use crate::backend::rooms::{JoinRefused, JoinRequest};
use crate::backend::send::{SendRefused, SendRequest};
use crate::disconnect::Disconnect;
use crate::engine::StreamPosition;

/// What a connection's credential grants beyond its user id, kept with the connection so
/// every later request of it is judged by the same credential.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Rooms the credential lists (a token's `rooms` claim, a webhook's `rooms`, an
    /// MSwoole string's `code`; `"*"`: any), for the app's `credential` room policy.
    pub rooms: Vec<String>,
    /// What else the credential says about the user (a nickname, a role), told to the
    /// backend with each join it is asked about and each RPC call.
    pub info: Option<Arc<serde_json::Value>>,
}

/// The close reason a hub failure stands for: dialects report it as they report a close.
fn hub_reason(error: &HubError) -> Disconnect {
    Disconnect::from(error)
}

/// Why a join or leave failed; [`RoomError::code`] names it as error frames do.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// The room name is not a valid one.
    #[error("{0}")]
    InvalidRoom(String),
    /// The app's room policy says no, or could not decide.
    #[error(transparent)]
    Refused(#[from] JoinRefused),
    /// The hub could not carry it out (its close reason's text).
    #[error("{}", hub_reason(.0).reason)]
    Hub(HubError),
}

impl RoomError {
    /// A short machine-readable name: `invalid_room`, the policy's refusal code, or the
    /// name of the hub failure's close reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRoom(_) => "invalid_room",
            Self::Refused(refused) => refused.code(),
            Self::Hub(error) => hub_reason(error).name(),
        }
    }
}

impl From<HubError> for RoomError {
    fn from(error: HubError) -> Self {
        match error {
            HubError::InvalidRoom(why) => Self::InvalidRoom(why),
            error => Self::Hub(error),
        }
    }
}

/// Why a client's `send` failed; [`SendError::code`] names it as error frames do.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiving user id is not a valid one.
    #[error("{0}")]
    InvalidUser(String),
    /// The room name is not a valid one.
    #[error("{0}")]
    InvalidRoom(String),
    /// The app's send policy says no, or could not decide.
    #[error(transparent)]
    Refused(#[from] SendRefused),
    /// The hub could not carry it out (its close reason's text).
    #[error("{}", hub_reason(.0).reason)]
    Hub(HubError),
}

impl SendError {
    /// A short machine-readable name: `invalid_user`, `invalid_room`, the policy's
    /// refusal code, or the name of the hub failure's close reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUser(_) => "invalid_user",
            Self::InvalidRoom(_) => "invalid_room",
            Self::Refused(refused) => refused.code(),
            Self::Hub(error) => hub_reason(error).name(),
        }
    }
}

/// Why a token refresh was refused; the connection keeps its current expiry.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The app does not authenticate with tokens.
    #[error("this app does not use tokens")]
    NotATokenApp,
    /// The new token names another user.
    #[error("the new token is for another user")]
    WrongUser,
    /// The token does not verify (its close reason's text).
    #[error("{}", .0.reason)]
    Credential(Disconnect),
}

impl RefreshError {
    /// A short machine-readable name: `not_a_token_app`, `wrong_user`, or the name of the
    /// token's refusal (`invalid_token`, `token_expired`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotATokenApp => "not_a_token_app",
            Self::WrongUser => "wrong_user",
            Self::Credential(reason) => reason.name(),
        }
    }
}

impl Session {
    /// What the connection's credential grants.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// Join room `room` if the app's room policy lets this connection (asking the
    /// backend, when the policy says so, before anything changes), then as
    /// [`Session::join_room`] does: `answer` with where the connection stands, what it
    /// missed since `since`, then live.
    pub async fn join(
        &mut self,
        room: &str,
        since: Option<StreamPosition>,
        answer: impl FnOnce(&ChannelState),
    ) -> Result<ChannelState, RoomError> {
        names::check_room(room)?;
        let conn = self.conn();
        let user = self.presence_id();
        let request = JoinRequest {
            app: &self.app.name,
            user: &user,
            conn: &conn,
            room,
            info: self.grant.info.as_deref(),
        };
        self.app.rooms.may_join(&request, &self.grant.rooms).await?;
        let entry = RoomEntry {
            start: since.map_or(RoomStart::Top, RoomStart::Since),
            member: None,
        };
        Ok(self.join_room(room, entry, answer).await?)
    }

    /// Join every room the credential names (all but `"*"`), as MSwoole put a client in
    /// its string's room at connect: the credential is the grant, so no policy is asked.
    /// A room that cannot be joined is logged and skipped.
    pub async fn join_granted_rooms(&mut self) {
        let rooms = self.grant.rooms.clone();
        for room in rooms.iter().filter(|room| *room != "*") {
            let entry = RoomEntry {
                start: RoomStart::Top,
                member: None,
            };
            if let Err(error) = self.join_room(room, entry, |_| {}).await {
                tracing::warn!(%error, room, "could not join a room the credential names");
            }
        }
    }

    /// Leave room `room`. False when the connection was not in it.
    pub async fn leave(&self, room: &str) -> Result<bool, RoomError> {
        Ok(self.leave_room(room).await?)
    }

    /// Send an event to user `to` of the app, if its send policy lets this connection
    /// (asking the backend, when the policy says so): published to `to`'s channel,
    /// marked with the sender.
    pub async fn send(
        &self,
        to: &str,
        event: Option<String>,
        data: Box<RawValue>,
    ) -> Result<PublishReceipt, SendError> {
        let conn = self.conn();
        let from = self.presence_id();
        let request = SendRequest {
            app: &self.app.name,
            from: &from,
            conn: &conn,
            to,
            event: event.as_deref(),
            data: &data,
        };
        self.app.send.may_send(&request).await?;
        let sent = self.hub.send(&self.app.name, &from, to, event, data).await;
        sent.map_err(|error| match error {
            HubError::InvalidUser(why) => SendError::InvalidUser(why),
            error => SendError::Hub(error),
        })
    }

    /// Send an event to every member of room `room`, if the app's `room_send` policy lets
    /// this connection (a member) talk there; the sender's own connections in the room
    /// get it too.
    pub async fn send_to_room(
        &self,
        room: &str,
        event: Option<String>,
        data: Box<RawValue>,
    ) -> Result<PublishReceipt, SendError> {
        names::check_room(room).map_err(|error| SendError::InvalidRoom(error.to_string()))?;
        self.app.room_send.may_send(room, self.in_room(room))?;
        let origin = super::Origin {
            from: Some(self.presence_id()),
            exclude: None,
        };
        self.hub
            .send_to_room(&self.app.name, origin, room, event, data)
            .await
            .map_err(SendError::Hub)
    }

    /// Check a fresh token for the same user: its expiry (Unix seconds), until which the
    /// connection may then live.
    pub fn refresh(&self, token: &str) -> Result<u64, RefreshError> {
        if self.app.auth != AuthMode::Token {
            return Err(RefreshError::NotATokenApp);
        }
        let claims = crate::auth::verify(&self.app, token).map_err(RefreshError::Credential)?;
        if self.user.as_deref() != Some(claims.sub.as_str()) {
            return Err(RefreshError::WrongUser);
        }
        Ok(claims.exp)
    }
}
