//! The one error shape of every HTTP answer: status + `{"error":{"code","message"}}`.
//!
//! Bad input is the client's business and is not logged; internal failures are logged
//! with their detail and shown to the client only as a generic message.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::close_notes::CloseNotesError;
use crate::disconnect::Disconnect;
use crate::hub::HubError;

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (snake_case), documented in docs/api.md.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: Cow<'static, str>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

/// A connection refusal told over plain HTTP (SSE, long-poll), where there is no close
/// frame to carry it.
impl From<&Disconnect> for ApiError {
    fn from(reason: &Disconnect) -> Self {
        let (status, code) = match reason.code {
            c if c == Disconnect::UNKNOWN_APP.code => (StatusCode::NOT_FOUND, "unknown_app"),
            c if c == Disconnect::MISSING_TOKEN.code => (StatusCode::UNAUTHORIZED, "missing_token"),
            c if c == Disconnect::INVALID_TOKEN.code => (StatusCode::UNAUTHORIZED, "invalid_token"),
            c if c == Disconnect::TOKEN_EXPIRED.code => (StatusCode::UNAUTHORIZED, "token_expired"),
            c if c == Disconnect::USER_FULL.code => (StatusCode::TOO_MANY_REQUESTS, "user_full"),
            c if c == Disconnect::ORIGIN_NOT_ALLOWED.code => {
                (StatusCode::FORBIDDEN, "origin_not_allowed")
            }
            c if c == Disconnect::SERVER_FULL.code => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_full")
            }
            c if c == Disconnect::ENGINE_UNAVAILABLE.code => {
                (StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable")
            }
            c if c == Disconnect::AUTH_UNAVAILABLE.code => {
                (StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable")
            }
            c if c == Disconnect::CREDENTIAL_REJECTED.code => {
                (StatusCode::FORBIDDEN, "credential_rejected")
            }
            c if c == Disconnect::RATE_LIMITED.code => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            c if c == Disconnect::ADDRESS_FULL.code => {
                (StatusCode::TOO_MANY_REQUESTS, "address_full")
            }
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        Self::new(status, code, reason.reason.to_string())
    }
}

impl From<HubError> for ApiError {
    fn from(error: HubError) -> Self {
        let message = error.to_string();
        match error {
            HubError::UnknownApp(_) => Self::new(StatusCode::NOT_FOUND, "unknown_app", message),
            HubError::InvalidApp(_) => Self::bad_request("invalid_app", message),
            HubError::InvalidUser(_) => Self::bad_request("invalid_user", message),
            HubError::InvalidTarget(_) => Self::bad_request("invalid_target", message),
            HubError::InvalidRoom(_) => Self::bad_request("invalid_room", message),
            HubError::UserFull(_) => Self::new(StatusCode::TOO_MANY_REQUESTS, "user_full", message),
            HubError::RoomFull { .. } => Self::new(StatusCode::CONFLICT, "room_full", message),
            HubError::InvalidConn(_) => Self::bad_request("invalid_conn", message),
            HubError::InvalidIdempotencyKey(_) => {
                Self::bad_request("invalid_idempotency_key", message)
            }
            HubError::IdempotencyBusy(_) => {
                Self::new(StatusCode::CONFLICT, "idempotency_in_progress", message)
            }
            HubError::UnknownConn(_) => Self::new(StatusCode::NOT_FOUND, "unknown_conn", message),
            HubError::CloseNotes(CloseNotesError::Invalid(_)) => {
                Self::bad_request("invalid_close_notes", message)
            }
            HubError::CloseNotes(CloseNotesError::Full(_)) => {
                Self::new(StatusCode::CONFLICT, "close_notes_full", message)
            }
            HubError::Engine(error) => {
                tracing::error!(%error, "engine failure while serving an API request");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "engine_unavailable",
                    "the engine is unavailable; retry later",
                )
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Closed => {
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the server is shutting down; retry later",
                )
            }
            // Logged once, when it was found; not again per request.
            crate::store::StoreError::Damaged { .. } => {
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_damaged",
                    "the timer store file is damaged and no longer used; nothing was created or changed. The operator must stop the server and run `pushhub store repair` (the server log says what is wrong)",
                )
            }
            _ => {}
        }
        tracing::error!(%error, "timer store failure while serving an API request");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the timer store is unavailable; retry later",
        )
    }
}

/// JSON nested past the one depth limit every endpoint keeps.
impl From<crate::json_depth::TooDeep> for ApiError {
    fn from(error: crate::json_depth::TooDeep) -> Self {
        Self::bad_request("too_deep", error.to_string())
    }
}
