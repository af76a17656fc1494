//! The jdserver dialect (seed 000), wire-compatible so its users only change host and port.
//!
//! Client: a WebSocket on `/` whose first frame is `{"ac":"init","app":"wms","user":"100"}`
//! (`user` may be a number). After that the client receives each push's `msg` raw: a
//! string as the string itself, a number as its text, anything else as JSON. jdserver had
//! no replies and ignored other frames after init; so does this dialect. Its API
//! endpoints (`/push`, `/getUsers`, `/setTimeout`) are in [`api`].

pub mod api;
pub mod gateway;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::Encode;
use crate::auth::{authenticate, Credential, CredentialSource, Presented};
use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, Cursor, Hub, Publication, Render, Session};
use crate::transport::{ClientHandler, Link, Liveness};

/// Encodes publications the way jdserver sent `msg`.
pub struct JdEncoder;

/// The jdserver encoder; stateless.
pub static JDSERVER: JdEncoder = JdEncoder;

/// jdserver's text for a pushed value: strings as themselves, numbers as their text, and
/// arrays, objects, booleans and null as JSON.
pub fn raw_text(data: &serde_json::value::RawValue) -> Vec<u8> {
    let json = data.get();
    if json.starts_with('"') {
        if let Ok(text) = serde_json::from_str::<String>(json) {
            return text.into_bytes();
        }
    }
    json.as_bytes().to_vec()
}

impl Encode for JdEncoder {
    fn encode(&self, p: &Publication) -> Vec<u8> {
        raw_text(&p.message.data)
    }

    fn name(&self) -> &'static str {
        "jdserver"
    }
}

/// The user id of an init frame: a string, or a number as its decimal text.
fn user_id(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One jdserver client: waits for `init`, then receives pushes.
pub struct JdClient {
    hub: Hub,
    renderer: Arc<dyn Render>,
    before_init: Liveness,
    given: Option<Given>,
    session: Option<Session>,
    /// When its token expires (token apps; jdserver clients cannot refresh).
    credential_expiry: Option<tokio::time::Instant>,
}

/// An app, user and resume cursor given with the request (getMsg) instead of an `init`.
struct Given {
    app: String,
    user: Option<String>,
    token: Option<String>,
    since: Option<Cursor>,
}

impl JdClient {
    /// A client that has not sent `init` yet; `before_init` applies until it has (its
    /// handshake deadline is when the client must have sent it).
    pub fn new(hub: Hub, renderer: Arc<dyn Render>, before_init: Liveness) -> Self {
        Self {
            hub,
            renderer,
            before_init,
            given: None,
            session: None,
            credential_expiry: None,
        }
    }

    /// A client whose app and user came with its request (jdserver's `getMsg`): attached
    /// at open, resuming from `since` when given. `user` may be absent for apps that take
    /// it from the token.
    pub fn given(
        hub: Hub,
        renderer: Arc<dyn Render>,
        liveness: Liveness,
        app: String,
        user: Option<String>,
        token: Option<String>,
        since: Option<Cursor>,
    ) -> Self {
        Self {
            given: Some(Given {
                app,
                user,
                token,
                since,
            }),
            ..Self::new(hub, renderer, liveness)
        }
    }

    async fn init(&mut self, frame: &Value, link: &Link) -> Result<(), Disconnect> {
        let bad = |why: &str| Disconnect::BAD_REQUEST.with_reason(format!("invalid init: {why}"));
        let app = frame
            .get("app")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("\"app\" must be a string"))?;
        let user = match frame.get("user") {
            None => None,
            given => {
                Some(user_id(given).ok_or_else(|| bad("\"user\" must be a string or a number"))?)
            }
        };
        let token = match frame.get("token") {
            None => None,
            Some(Value::String(token)) => Some(token.clone()),
            Some(_) => return Err(bad("\"token\" must be a string")),
        };
        let credential = token.map(|token| Credential::new(token, CredentialSource::Frame));
        // The one client whose app is named after the upgrade: the gateway could not hold
        // its page's origin to the app's allowed origins, so that happens here.
        let app = self.hub.app(app).map_err(|e| Disconnect::from(&e))?;
        app.admit_origin(link.origin())?;
        self.attach(app, user, credential, None, link).await
    }

    /// Authenticate as the app's `auth` mode says (jdserver had none: `auth = "none"`
    /// apps take the user id as given; token and webhook apps take it from the credential:
    /// `token`, or for webhooks the app's cookie when the request carries it), then attach.
    async fn attach(
        &mut self,
        app: Arc<AppSettings>,
        user: Option<String>,
        credential: Option<Credential>,
        since: Option<Cursor>,
        link: &Link,
    ) -> Result<(), Disconnect> {
        let presented = Presented {
            user,
            credential,
            cookies: link.cookies().map(str::to_owned),
        };
        let identity = authenticate(&app, presented).await?;
        self.credential_expiry = identity.expiry();
        let session = super::attach(
            &self.hub,
            link,
            &self.renderer,
            app,
            identity,
            since,
            |_| {},
        )
        .await?;
        self.session = Some(session);
        Ok(())
    }
}

#[async_trait]
impl ClientHandler for JdClient {
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
        match self.given.take() {
            Some(Given {
                app,
                user,
                token,
                since,
            }) => {
                let credential = token.map(|token| Credential::new(token, CredentialSource::Query));
                let app = self.hub.app(&app).map_err(|e| Disconnect::from(&e))?;
                self.attach(app, user, credential, since, link).await
            }
            None => Ok(()),
        }
    }

    async fn on_text(&mut self, text: &str, link: &Link) -> Result<(), Disconnect> {
        let frame: Option<Value> = serde_json::from_str(text).ok();
        let is_init = frame
            .as_ref()
            .and_then(|f| f.get("ac"))
            .and_then(Value::as_str)
            == Some("init");
        match (&self.session, frame) {
            (None, Some(frame)) if is_init => self.init(&frame, link).await,
            (None, _) => Err(Disconnect::EXPECTED_INIT),
            (Some(_), _) if is_init => Err(Disconnect::ALREADY_INITIALIZED),
            (Some(_), _) => Ok(()),
        }
    }

    fn liveness(&self) -> Liveness {
        match &self.session {
            Some(session) => Liveness {
                credential_expiry: self.credential_expiry,
                ..super::liveness(session.app())
            },
            None => self.before_init,
        }
    }

    async fn on_close(&mut self, reason: &Disconnect) {
        if let Some(session) = self.session.take() {
            session.close(reason).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn raw(json: &str) -> String {
        String::from_utf8(raw_text(&RawValue::from_string(json.to_owned()).unwrap())).unwrap()
    }

    #[test]
    fn scalars_raw_and_structures_as_json() {
        assert_eq!(raw(r#""订单10待审批""#), "订单10待审批");
        assert_eq!(raw(r#""a\"b""#), "a\"b");
        assert_eq!(raw("42"), "42");
        assert_eq!(raw("1.5"), "1.5");
        assert_eq!(raw(r#"{"id":1,"text":"x"}"#), r#"{"id":1,"text":"x"}"#);
        assert_eq!(raw("[1,2]"), "[1,2]");
    }

    #[test]
    fn user_ids() {
        assert_eq!(user_id(Some(&serde_json::json!("100"))), Some("100".into()));
        assert_eq!(user_id(Some(&serde_json::json!(100))), Some("100".into()));
        assert_eq!(user_id(Some(&serde_json::json!(null))), None);
        assert_eq!(user_id(None), None);
    }
}
