//! Why a connection ends: one vocabulary shared by every transport and dialect.
//!
//! Codes follow RFC 6455 where one fits; pushhub's own codes split in two ranges so a
//! client library knows what to do without reading the reason:
//! - 4000–4499: transient. Reconnect (with backoff) and resume.
//! - 4500–4999: terminal. Reconnecting with the same request fails the same way.
//!
//! The table in docs/protocol.md lists every code; keep the two in step.

use std::borrow::Cow;
use std::fmt;

use crate::hub::HubError;

/// A close code and a human-readable reason (at most 123 bytes on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// WebSocket close code.
    pub code: u16,
    /// Why, for people and logs.
    pub reason: Cow<'static, str>,
}

impl Disconnect {
    /// A disconnect with a reason computed at run time.
    pub fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    const fn fixed(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason: Cow::Borrowed(reason),
        }
    }

    /// The client closed normally.
    pub const NORMAL: Self = Self::fixed(1000, "normal closure");
    /// The server is shutting down; reconnect to another node or later.
    pub const SHUTDOWN: Self = Self::fixed(1001, "server shutting down");
    /// A new version of the server takes over (`pushhub upgrade`): reconnect to the same
    /// address now, after a short random delay (RFC 6455's "service restart"). The
    /// successor already holds the listening sockets, so the reconnect is queued, never
    /// refused, and resumes from the client's position.
    pub const RESTART: Self = Self::fixed(1012, "service restart: reconnect now");
    /// The client broke the WebSocket framing rules.
    pub const PROTOCOL_ERROR: Self = Self::fixed(1002, "websocket protocol error");
    /// The client sent a binary frame where text is expected.
    pub const BINARY_NOT_SUPPORTED: Self = Self::fixed(1003, "binary frames are not supported");
    /// The client went away without a close frame (never sent on the wire).
    pub const ABNORMAL: Self = Self::fixed(1006, "connection lost");
    /// The client sent a text frame that is not UTF-8.
    pub const INVALID_UTF8: Self = Self::fixed(1007, "text frame is not valid UTF-8");
    /// The client sent a message larger than `max_frame_bytes`.
    pub const TOO_BIG: Self = Self::fixed(1009, "message too big");
    /// Nothing arrived from the client for `idle_timeout` seconds.
    pub const IDLE_TIMEOUT: Self = Self::fixed(4000, "idle timeout: no traffic from client");
    /// The client sent frames faster than its app allows (`max_frames_per_second`).
    pub const RATE_LIMITED: Self = Self::fixed(1008, "rate limit: too many frames per second");
    /// The client split one message into more frames than a message may have
    /// ([`crate::transport::ws::codec::MAX_FRAGMENTS`]).
    pub const TOO_MANY_FRAGMENTS: Self = Self::fixed(1008, "too many fragments in one message");
    /// The client did not read its messages fast enough; its queue overflowed.
    pub const SLOW_CONSUMER: Self = Self::fixed(4001, "slow consumer: send queue overflowed");
    /// The server is at its connection limit.
    pub const SERVER_FULL: Self = Self::fixed(4002, "server at connection limit");
    /// The client did not finish its handshake (jdserver: send `init`; raw TCP: send
    /// `connect`) in time.
    pub const HANDSHAKE_TIMEOUT: Self =
        Self::fixed(4004, "handshake timeout: no init/connect frame in time");
    /// The client is owed more missed messages than fit in one go: it got the first part
    /// and should reconnect at once from its new position for the rest.
    pub const REPLAY_CONTINUES: Self = Self::fixed(
        4005,
        "more missed messages to replay: reconnect from your new position",
    );
    /// The engine (broker/presence) failed; a later attempt may work.
    pub const ENGINE_UNAVAILABLE: Self = Self::fixed(4003, "engine unavailable, retry later");
    /// The request was malformed (missing or invalid user, bad init frame).
    pub const BAD_REQUEST: Self = Self::fixed(4500, "bad request");
    /// The app does not exist.
    pub const UNKNOWN_APP: Self = Self::fixed(4501, "unknown app");
    /// A reload removed the connection's app from the configuration: the same code as
    /// connecting to an app that does not exist, which is what reconnecting would get.
    pub const APP_REMOVED: Self = Self::fixed(4501, "app removed from the configuration");
    /// A jdserver client sent something other than `init` as its first frame.
    pub const EXPECTED_INIT: Self = Self::fixed(4502, "first frame must be {\"ac\":\"init\",...}");
    /// A raw TCP client's first frame was not `{"type":"connect",...}` (the same code as
    /// [`Self::EXPECTED_INIT`]: the first frame was not the dialect's handshake).
    pub const EXPECTED_CONNECT: Self = Self::fixed(
        4502,
        "first frame must be {\"type\":\"connect\",\"app\":...,\"user\":...}",
    );
    /// The client's token has expired: fetch a fresh one and reconnect.
    pub const TOKEN_EXPIRED: Self =
        Self::fixed(4006, "token expired: reconnect with a fresh token");
    /// The app's auth backend (`auth = "webhook"`) failed, was too slow, or answered
    /// garbage; a later attempt may work.
    pub const AUTH_UNAVAILABLE: Self = Self::fixed(4007, "auth backend unavailable, retry later");
    /// The app's backend disconnected the client through the API (`POST /v1/disconnect`);
    /// it may reconnect (a backend that wants it gone for good says so: 4516).
    pub const KICKED: Self = Self::fixed(4009, "disconnected by the server");
    /// The app's backend disconnected the client and asked it not to reconnect.
    pub const KICKED_FOR_GOOD: Self =
        Self::fixed(4516, "disconnected by the server: do not reconnect");
    /// The client's address holds as many connections as `limits.max_connections_per_ip`
    /// allows; one of them must end first.
    pub const ADDRESS_FULL: Self = Self::fixed(4008, "too many connections from this address");
    /// The app's auth backend answered that the credential is not valid (HTTP 401/403).
    pub const CREDENTIAL_REJECTED: Self =
        Self::fixed(4515, "credential rejected by the app's auth backend");
    /// The app requires a token and the client sent none.
    pub const MISSING_TOKEN: Self = Self::fixed(
        4510,
        "this app requires a token: pass token=JWT or send it in the first frame",
    );
    /// The client's token is malformed, wrongly signed, or for another app.
    pub const INVALID_TOKEN: Self = Self::fixed(4511, "invalid token");
    /// A newer connection of the same user took this one's place (the app allows a user
    /// only so many connections and keeps the newest). Terminal: reconnecting would push
    /// the newer one out in turn.
    pub const REPLACED: Self = Self::fixed(4512, "replaced by a newer connection of the same user");
    /// The user already holds as many connections as the app allows, and keeps the oldest.
    pub const USER_FULL: Self = Self::fixed(4513, "too many connections for this user");
    /// The page that opened the connection is not among the app's allowed origins.
    pub const ORIGIN_NOT_ALLOWED: Self = Self::fixed(4514, "origin not allowed for this app");
    /// The app is switched off for this kind of client (a Pusher app with
    /// `enabled = false`).
    pub const APP_DISABLED: Self = Self::fixed(4517, "this app is disabled");
    /// The app holds as many connections of this kind as it allows (a Pusher app's
    /// `max_connections`).
    pub const APP_FULL: Self = Self::fixed(4518, "this app has as many connections as it may hold");
    /// The client speaks a version of its protocol this server does not (a Pusher client's
    /// `?protocol=`).
    pub const UNSUPPORTED_PROTOCOL: Self = Self::fixed(4519, "unsupported protocol version");
    /// A jdserver client sent `init` a second time.
    pub const ALREADY_INITIALIZED: Self =
        Self::fixed(4503, "init was already received on this connection");

    /// The same code with a more specific reason.
    pub fn with_reason(&self, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(self.code, reason)
    }

    /// A short machine-readable name for the code, for transports that report a close in
    /// a frame rather than a close code (the `code` of raw TCP's closing `error` frame).
    /// docs/protocol.md lists them next to the codes.
    pub fn name(&self) -> &'static str {
        match self.code {
            1000 => "normal",
            1001 => "shutdown",
            1002 => "protocol_error",
            1003 => "unsupported_data",
            1006 => "connection_lost",
            1007 => "invalid_utf8",
            1008 => "rate_limited",
            1009 => "too_big",
            1012 => "restart",
            4000 => "idle_timeout",
            4001 => "slow_consumer",
            4002 => "server_full",
            4003 => "engine_unavailable",
            4004 => "handshake_timeout",
            4005 => "replay_continues",
            4006 => "token_expired",
            4007 => "auth_unavailable",
            4008 => "address_full",
            4009 => "kicked",
            4510 => "missing_token",
            4511 => "invalid_token",
            4512 => "replaced",
            4513 => "user_full",
            4514 => "origin_not_allowed",
            4515 => "credential_rejected",
            4516 => "kicked_for_good",
            4517 => "app_disabled",
            4518 => "app_full",
            4519 => "unsupported_protocol",
            4500 => "bad_request",
            4501 => "unknown_app",
            4502 => "expected_handshake",
            4503 => "already_initialized",
            _ => "closed",
        }
    }

    /// True when a client should reconnect after this close.
    pub fn should_reconnect(&self) -> bool {
        !(4500..5000).contains(&self.code)
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

/// The close a hub refusal turns into.
impl From<&HubError> for Disconnect {
    fn from(error: &HubError) -> Self {
        match error {
            HubError::UnknownApp(_) => Disconnect::UNKNOWN_APP.with_reason(error.to_string()),
            HubError::Engine(_) => Disconnect::ENGINE_UNAVAILABLE,
            HubError::UserFull(_) => Disconnect::USER_FULL.with_reason(error.to_string()),
            _ => Disconnect::BAD_REQUEST.with_reason(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_reason_has_its_own_name() {
        let all = [
            Disconnect::NORMAL,
            Disconnect::SHUTDOWN,
            Disconnect::RESTART,
            Disconnect::PROTOCOL_ERROR,
            Disconnect::BINARY_NOT_SUPPORTED,
            Disconnect::ABNORMAL,
            Disconnect::INVALID_UTF8,
            Disconnect::TOO_BIG,
            Disconnect::IDLE_TIMEOUT,
            Disconnect::SLOW_CONSUMER,
            Disconnect::SERVER_FULL,
            Disconnect::HANDSHAKE_TIMEOUT,
            Disconnect::ENGINE_UNAVAILABLE,
            Disconnect::BAD_REQUEST,
            Disconnect::UNKNOWN_APP,
            Disconnect::EXPECTED_INIT,
            Disconnect::ALREADY_INITIALIZED,
            Disconnect::TOKEN_EXPIRED,
            Disconnect::AUTH_UNAVAILABLE,
            Disconnect::ADDRESS_FULL,
            Disconnect::MISSING_TOKEN,
            Disconnect::INVALID_TOKEN,
            Disconnect::REPLACED,
            Disconnect::USER_FULL,
            Disconnect::ORIGIN_NOT_ALLOWED,
            Disconnect::CREDENTIAL_REJECTED,
            Disconnect::RATE_LIMITED,
            Disconnect::KICKED,
            Disconnect::KICKED_FOR_GOOD,
        ];
        let names: std::collections::HashSet<&str> = all.iter().map(Disconnect::name).collect();
        assert_eq!(names.len(), all.len());
        assert!(!names.contains("closed"));
        assert_eq!(
            Disconnect::EXPECTED_CONNECT.name(),
            Disconnect::EXPECTED_INIT.name()
        );
        assert_eq!(Disconnect::new(3000, "app-defined").name(), "closed");
    }
}
