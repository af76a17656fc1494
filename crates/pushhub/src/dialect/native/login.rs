//! The native `login` and `logout` frames (seed 003: connect first, log in later).
//!
//! A client of a `login_later` app that connects without a credential is greeted with
//! `waiting` instead of `welcome` and stays unattached (hub::login says what that means).
//! `{"type":"login","ukey":"..."}` (or any credential name the app takes, e.g. `token`)
//! attaches it and is answered with the `welcome` carrying the frame's id; a refusal is an
//! `error` frame and the client may try again. `{"type":"logout"}` detaches it and is
//! answered with `waiting` again; the socket stays open throughout.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{send_error, NativeClient, Pong};
use crate::auth::{self, Credential, CredentialSource, Presented};
use crate::disconnect::Disconnect;
use crate::hub::login::logged_out;
use crate::hub::{AppSettings, Cursor};
use crate::transport::Link;

/// A client waiting to log in: its app, and where its stream should resume from once it
/// does (the connect request's `since`, unless the `login` frame names one).
pub(super) struct Waiting {
    app: Arc<AppSettings>,
    since: Option<Cursor>,
}

/// What a `login` frame asks: who to log in as, and where to resume.
#[derive(Debug)]
pub struct LoginFrame {
    /// The frame's `id`, echoed by the answer.
    pub id: Option<Value>,
    /// The credential, under the first of the app's names the frame carries.
    pub credential: Credential,
    /// The frame's `since` cursor.
    pub since: Option<Cursor>,
}

/// Why a `login` frame could not be read; the connection keeps waiting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginFrameError {
    /// None of the app's credential names is in the frame.
    #[error("a login frame carries the credential as {0}")]
    MissingCredential(String),
    /// The credential is not a non-empty string.
    #[error("{0:?} must be a non-empty string")]
    NotText(String),
    /// The `since` cursor is not one.
    #[error("invalid since: {0}")]
    InvalidSince(String),
}

impl LoginFrameError {
    /// The `code` of the `error` frame that answers it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingCredential(_) => "missing_credential",
            Self::NotText(_) => "bad_frame",
            Self::InvalidSince(_) => "invalid_cursor",
        }
    }
}

/// Read a `login` frame (a JSON object whose `type` is `login`) for an app whose clients
/// name their credential one of `names`, tried in order.
pub fn parse_login(frame: &Value, names: &[&str]) -> Result<LoginFrame, LoginFrameError> {
    let missing = || {
        let ways: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        LoginFrameError::MissingCredential(ways.join(" or "))
    };
    let (name, value) = names
        .iter()
        .find_map(|name| Some((*name, frame.get(*name)?)))
        .ok_or_else(missing)?;
    let value = value
        .as_str()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| LoginFrameError::NotText(name.to_owned()))?;
    let since = match frame.get("since") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            Some(Cursor::parse(text).map_err(|e| LoginFrameError::InvalidSince(e.to_string()))?)
        }
        Some(_) => {
            return Err(LoginFrameError::InvalidSince(
                "since must be a cursor string".into(),
            ))
        }
    };
    Ok(LoginFrame {
        id: frame.get("id").cloned(),
        credential: Credential::new(value, CredentialSource::Frame).named(name),
        since,
    })
}

/// The greeting of a client that waits to log in, and the answer to a `logout`.
#[derive(Serialize)]
struct WaitingFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    app: &'a str,
    heartbeat: u64,
    idle_timeout: u64,
    max_frame_bytes: usize,
    /// The names a `login` frame may carry the credential under.
    login: Vec<&'a str>,
}

/// A refused login: an `error` frame, with how many seconds to wait when the refusal is
/// the login rate.
#[derive(Serialize)]
struct LoginRefused<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    code: &'a str,
    message: &'a str,
    retry_after: u64,
}

impl NativeClient {
    /// Let the client wait for its login: the app's liveness (no handshake deadline: seed
    /// 003's clients stayed connected without logging in), and a `waiting` frame
    /// answering `reply_to`.
    pub(super) fn wait(
        &mut self,
        app: Arc<AppSettings>,
        since: Option<Cursor>,
        reply_to: Option<&Value>,
        link: &Link,
    ) {
        self.liveness = crate::dialect::liveness(&app);
        let frame = WaitingFrame {
            kind: "waiting",
            id: reply_to,
            app: &app.name,
            heartbeat: app.heartbeat.as_secs(),
            idle_timeout: app.idle_timeout.as_secs(),
            max_frame_bytes: app.max_frame_bytes,
            login: auth::query_params(&app),
        };
        link.send_text(&serde_json::to_vec(&frame).unwrap_or_default());
        self.waiting = Some(Waiting { app, since });
    }

    /// A frame from a waiting client: `login`, `auth` (a client written for apps that
    /// await a first `auth` frame logs in with it), `logout` (answered `waiting`), `ping`,
    /// `pong`; anything else is refused with `not_logged_in`. None closes the connection.
    pub(super) async fn on_waiting_frame(
        &mut self,
        text: &str,
        link: &Link,
    ) -> Result<(), Disconnect> {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                let why = format!("frame is not valid JSON: {error}");
                send_error(link, None, "bad_json", &why);
                return Ok(());
            }
        };
        let id = value.get("id");
        match value.get("type").and_then(Value::as_str) {
            Some("login") => self.login(&value, false, link).await,
            Some("auth") => self.login(&value, true, link).await,
            Some("logout") => {
                if let Some(waiting) = self.waiting.take() {
                    self.wait(waiting.app, waiting.since, id, link);
                }
            }
            Some("ping") => {
                let pong = Pong { kind: "pong", id };
                link.send_text(&serde_json::to_vec(&pong).unwrap_or_default());
            }
            Some("pong") => {}
            _ => send_error(
                link,
                id,
                "not_logged_in",
                "this connection is not logged in: send {\"type\":\"login\",...} first",
            ),
        }
        Ok(())
    }

    /// Log a waiting client in: within the app's login rate, authenticate the frame's
    /// credential and attach as a connect with it would, answering with `welcome`; a
    /// refusal is an `error` frame and the client keeps waiting. An `auth_frame` carries
    /// its credential as `token`, unnamed, as it does before any other app's welcome.
    async fn login(&mut self, value: &Value, auth_frame: bool, link: &Link) {
        let Some(waiting) = &self.waiting else { return };
        let app = waiting.app.clone();
        let id = value.get("id");
        let names = if auth_frame {
            vec!["token"]
        } else {
            auth::query_params(&app)
        };
        let mut frame = match parse_login(value, &names) {
            Ok(frame) => frame,
            Err(error) => return send_error(link, id, error.code(), &error.to_string()),
        };
        if auth_frame {
            frame.credential.param = None;
        }
        if let Some(policy) = app.login {
            let now = tokio::time::Instant::now();
            if let Err(wait) = self.logins.attempt(policy, now) {
                let retry_after = wait.as_secs().max(1);
                let message = format!(
                    "at most {} logins a minute: retry in {retry_after} s",
                    policy.max_per_minute
                );
                let refused = LoginRefused {
                    kind: "error",
                    id,
                    code: "login_rate_limited",
                    message: &message,
                    retry_after,
                };
                link.send_text(&serde_json::to_vec(&refused).unwrap_or_default());
                return;
            }
        }
        let since = frame.since.or_else(|| waiting.since.clone());
        let presented = Presented {
            credential: Some(frame.credential),
            ..Presented::default()
        };
        match self
            .attach(app, presented, since, frame.id.as_ref(), link)
            .await
        {
            Ok(()) => self.waiting = None,
            Err(refused) => {
                send_error(link, id, refused.name(), &refused.reason);
            }
        }
    }

    /// End a `login_later` connection's login: leave its channels, rooms and presence
    /// (the `disconnect` event says "logged out"), abandon its RPC calls, and answer with
    /// `waiting`. On other apps a logout is refused: their connections are their login.
    pub(super) async fn logout(&mut self, id: Option<&Value>, link: &Link) {
        let Some(session) = &self.session else { return };
        if session.app().login.is_none() {
            let why = "this app does not let connections log out: close the connection";
            return send_error(link, id, "login_not_enabled", why);
        }
        let Some(session) = self.session.take() else {
            return;
        };
        let app = session.app().clone();
        std::mem::take(&mut self.calls).abandon();
        session.close(&logged_out()).await;
        self.wait(app, None, id, link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["ukey", "token"];

    fn parse(text: &str) -> Result<LoginFrame, LoginFrameError> {
        parse_login(&serde_json::from_str(text).unwrap(), NAMES)
    }

    #[test]
    fn takes_the_first_credential_name_the_app_knows() {
        let frame = parse(r#"{"type":"login","id":3,"token":"t","ukey":"u"}"#).unwrap();
        assert_eq!(frame.credential.value, "u");
        assert_eq!(frame.credential.param.as_deref(), Some("ukey"));
        assert_eq!(frame.credential.source, CredentialSource::Frame);
        assert_eq!(frame.id, Some(serde_json::json!(3)));
        let frame = parse(r#"{"type":"login","token":"t","since":"wms:all@e:4"}"#).unwrap();
        assert_eq!(frame.credential.param.as_deref(), Some("token"));
        assert!(frame.since.is_some());
    }

    #[test]
    fn refusals_name_what_was_wrong() {
        let missing = parse(r#"{"type":"login","user":"100"}"#).unwrap_err();
        assert_eq!(missing.code(), "missing_credential");
        assert!(missing.to_string().contains("\"ukey\" or \"token\""));
        for bad in [r#"{"ukey":""}"#, r#"{"ukey":7}"#, r#"{"ukey":null}"#] {
            assert_eq!(parse(bad).unwrap_err().code(), "bad_frame", "{bad}");
        }
        for bad in [
            r#"{"ukey":"u","since":"nope"}"#,
            r#"{"ukey":"u","since":1}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err().code(), "invalid_cursor", "{bad}");
        }
    }
}
