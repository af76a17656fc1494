//! The MSwoole dialect (seed 001), for clients migrating from it: WebSocket frames
//! `{"method":"module.controller.action", ...arguments}` are RPC calls to the app's
//! backend, and every frame the server sends, replies, pushes and errors alike, is
//! `{"status":Int,"info":String,"param":Mixed,"event":String}`.
//!
//! MSwoole authenticated with a DES-encrypted `auth` parameter holding the user id, type,
//! room code and nickname; here `auth` is the app's credential (a pushhub token, or that
//! very DES string for an `auth = "mswoole-des"` app), checked before the upgrade (403, as
//! MSwoole answered). The room code is the credential's room: the connection joins it when
//! it opens, as MSwoole put the user in its room. A frame without `method` calls the
//! configured default method, as MSwoole routed it to `Index.Index.Index`; the text `2`
//! is MSwoole's keep-alive, answered `3`.

pub mod gateway;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::calls::Calls;
use super::Encode;
use crate::auth::Identity;
use crate::backend::rpc::RpcError;
use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, Hub, Publication, Render, Session};
use crate::transport::{ClientHandler, Link, Liveness};

/// The text frame MSwoole's clients sent to keep an idle connection open (the server cut
/// connections silent for a minute), answered with [`KEEPALIVE_ANSWER`] as MSwoole did.
const KEEPALIVE: &str = "2";

/// MSwoole's answer to [`KEEPALIVE`].
const KEEPALIVE_ANSWER: &[u8] = b"3";

/// Encodes publications as MSwoole frames: `param` is the push's data, `event` its event.
pub struct MSwooleEncoder;

/// The MSwoole encoder; stateless.
pub static MSWOOLE: MSwooleEncoder = MSwooleEncoder;

/// Every frame the server sends.
#[derive(Serialize)]
pub struct Frame<'a> {
    /// 200 for pushes and answers; an HTTP-like error status otherwise.
    pub status: u16,
    /// A message for people.
    pub info: &'a str,
    /// The data.
    pub param: &'a RawValue,
    /// The push's event, or the method a reply answers.
    pub event: &'a str,
}

impl Frame<'_> {
    /// The frame as JSON text.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Encode for MSwooleEncoder {
    fn encode(&self, p: &Publication) -> Vec<u8> {
        Frame {
            status: 200,
            info: "",
            param: &p.message.data,
            event: p.message.event.as_deref().unwrap_or(""),
        }
        .to_vec()
    }

    fn name(&self) -> &'static str {
        "mswoole"
    }
}

/// An error frame for `event` (the method, when there was one).
fn error_frame(status: u16, info: &str, event: &str) -> Vec<u8> {
    Frame {
        status,
        info,
        param: &RawValue::NULL.to_owned(),
        event,
    }
    .to_vec()
}

/// The status MSwoole clients see for an RPC failure.
fn status_of(error: &RpcError) -> u16 {
    match error {
        RpcError::NotEnabled => 501,
        RpcError::UnknownMethod(_) => 404,
        RpcError::Busy(_) => 429,
        RpcError::Timeout(_) => 504,
        RpcError::Unavailable | RpcError::BadAnswer(_) => 502,
        RpcError::Failed { status, .. } => *status,
    }
}

/// The frame for a backend's `answer` to `method`: passed on as it is when the backend
/// already speaks MSwoole (an object with `status` and `info`), else wrapped as `param`.
fn reply_frame(method: &str, answer: Result<Box<RawValue>, RpcError>) -> Vec<u8> {
    match answer {
        Ok(answer) => {
            let speaks_mswoole = serde_json::from_str::<Map<String, Value>>(answer.get())
                .is_ok_and(|object| {
                    object.get("status").is_some_and(Value::is_number)
                        && object.get("info").is_some_and(Value::is_string)
                });
            if speaks_mswoole {
                answer.get().as_bytes().to_vec()
            } else {
                Frame {
                    status: 200,
                    info: "success",
                    param: &answer,
                    event: method,
                }
                .to_vec()
            }
        }
        Err(error) => error_frame(status_of(&error), &error.to_string(), method),
    }
}

/// One MSwoole client, authenticated at the handshake.
pub struct MSwooleClient {
    hub: Hub,
    renderer: Arc<dyn Render>,
    app: Arc<AppSettings>,
    identity: Option<Identity>,
    session: Option<Session>,
    expiry: Option<tokio::time::Instant>,
    calls: Calls,
    default_method: Option<Arc<str>>,
}

impl MSwooleClient {
    /// A client of `app` known as `identity`, whose frames without `method` call
    /// `default_method` (refused without one).
    pub fn new(
        hub: Hub,
        app: Arc<AppSettings>,
        identity: Identity,
        renderer: Arc<dyn Render>,
        default_method: Option<Arc<str>>,
    ) -> Self {
        Self {
            hub,
            renderer,
            app,
            expiry: identity.expiry(),
            identity: Some(identity),
            session: None,
            calls: Calls::default(),
            default_method,
        }
    }
}

#[async_trait]
impl ClientHandler for MSwooleClient {
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
        let Some(identity) = self.identity.take() else {
            return Ok(());
        };
        let mut session = super::attach(
            &self.hub,
            link,
            &self.renderer,
            self.app.clone(),
            identity,
            None,
            |_| {},
        )
        .await?;
        session.join_granted_rooms().await;
        self.session = Some(session);
        Ok(())
    }

    async fn on_text(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        if text == KEEPALIVE {
            link.send_text(KEEPALIVE_ANSWER);
            return Ok(());
        }
        let Ok(mut frame) = serde_json::from_str::<Map<String, Value>>(text) else {
            link.send_text(&error_frame(
                400,
                "frame must be a JSON object with a string \"method\"",
                "",
            ));
            return Ok(());
        };
        let method = match (frame.remove("method"), &self.default_method) {
            (Some(Value::String(method)), _) => method,
            (None, Some(default)) => default.to_string(),
            _ => {
                link.send_text(&error_frame(
                    400,
                    "frame must be a JSON object with a string \"method\"",
                    "",
                ));
                return Ok(());
            }
        };
        let data =
            serde_json::value::to_raw_value(&frame).unwrap_or_else(|_| RawValue::NULL.to_owned());
        let (event, reply_event) = (method.clone(), method.clone());
        let started = self
            .calls
            .start(session, method, data, link.sender(), move |answer| {
                reply_frame(&reply_event, answer)
            });
        if let Err(error) = started {
            link.send_text(&reply_frame(&event, Err(error)));
        }
        Ok(())
    }

    fn liveness(&self) -> Liveness {
        Liveness {
            credential_expiry: self.expiry,
            ..super::liveness(&self.app)
        }
    }

    async fn on_close(&mut self, reason: &Disconnect) {
        self.calls.abandon();
        if let Some(session) = self.session.take() {
            session.close(reason).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn answers_are_wrapped_unless_they_already_speak_mswoole() {
        let wrapped = reply_frame("live.user.like", Ok(raw(r#"{"likes":3}"#)));
        assert_eq!(
            String::from_utf8(wrapped).unwrap(),
            r#"{"status":200,"info":"success","param":{"likes":3},"event":"live.user.like"}"#
        );
        let native = r#"{"status":1,"info":"执行完成","param":null,"event":"x"}"#;
        assert_eq!(reply_frame("x", Ok(raw(native))), native.as_bytes());
        let failed = reply_frame(
            "a.b",
            Err(RpcError::Failed {
                status: 422,
                message: "no".into(),
            }),
        );
        assert_eq!(
            String::from_utf8(failed).unwrap(),
            r#"{"status":422,"info":"no","param":null,"event":"a.b"}"#
        );
        assert_eq!(status_of(&RpcError::Timeout(5)), 504);
    }
}
