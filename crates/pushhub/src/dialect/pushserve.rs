//! The push-serve dialect (seed 004), wire-compatible so its users only change host and
//! port.
//!
//! A backend asks `GET /access?uid=&password=` for an access key and hands it to its
//! logged-in client; the client connects to `/ws?uid=&access_key=` and receives each push as
//! `{"topic":…,"number":1,"contents":…}`; the backend pushes with
//! `POST /push?uid=&password=` and a JSON body `{"topic":…,"contents":…}`.
//!
//! Access keys are `EXPIRY.SIGNATURE`: an HMAC-SHA256 over the app, the uid and the
//! expiry, keyed with the push-serve password. A key opens exactly one uid of one app
//! until it expires; changing the password revokes every key.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Sha256;

use super::Encode;
use crate::auth::Identity;
use crate::backend::signature::hmac_sha256;
use crate::config::PushServe;
use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, Hub, Publication, Render, Session};
use crate::transport::{ClientHandler, Link, Liveness};

/// Encodes publications as push-serve messages.
pub struct PushServeEncoder;

/// The push-serve encoder; stateless.
pub static PUSHSERVE: PushServeEncoder = PushServeEncoder;

#[derive(Serialize)]
struct Message<'a> {
    topic: &'a str,
    number: u32,
    contents: &'a RawValue,
}

impl Encode for PushServeEncoder {
    fn encode(&self, p: &Publication) -> Vec<u8> {
        let message = Message {
            topic: p.message.event.as_deref().unwrap_or(""),
            number: 1,
            contents: &p.message.data,
        };
        serde_json::to_vec(&message).unwrap_or_default()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn signature(password: &str, app: &str, uid: &str, expires: u64) -> Hmac<Sha256> {
    let mut mac = hmac_sha256(password.as_bytes());
    mac.update(format!("{app}\n{uid}\n{expires}").as_bytes());
    mac
}

/// A new access key for `uid`.
pub fn access_key(config: &PushServe, uid: &str) -> String {
    let expires = unix_now() + config.access_key_ttl.as_secs();
    let mac = signature(&config.password, &config.app, uid, expires).finalize();
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(mac.into_bytes()))
}

/// True when `key` was handed out for `uid` and has not expired.
pub fn access_key_valid(config: &PushServe, uid: &str, key: &str) -> bool {
    let Some((expires, signed)) = key.split_once('.') else {
        return false;
    };
    let (Ok(expires), Ok(signed)) = (expires.parse::<u64>(), URL_SAFE_NO_PAD.decode(signed)) else {
        return false;
    };
    expires > unix_now()
        && signature(&config.password, &config.app, uid, expires)
            .verify_slice(&signed)
            .is_ok()
}

/// One push-serve client: attached at open as the uid its access key was checked for.
pub struct PushServeClient {
    hub: Hub,
    app: Arc<AppSettings>,
    uid: Option<String>,
    renderer: Arc<dyn Render>,
    session: Option<Session>,
}

impl PushServeClient {
    /// A client of `app` whose access key for `uid` was already checked.
    pub fn new(hub: Hub, app: Arc<AppSettings>, uid: String, renderer: Arc<dyn Render>) -> Self {
        Self {
            hub,
            app,
            uid: Some(uid),
            renderer,
            session: None,
        }
    }
}

#[async_trait]
impl ClientHandler for PushServeClient {
    async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
        let Some(uid) = self.uid.take() else {
            return Ok(());
        };
        let identity = Identity {
            user: uid,
            groups: Vec::new(),
            rooms: Vec::new(),
            info: None,
            expires: None,
        };
        let session = super::attach(
            &self.hub,
            link,
            &self.renderer,
            self.app.clone(),
            identity,
            None,
            |_| {},
        )
        .await?;
        self.session = Some(session);
        Ok(())
    }

    /// push-serve clients only listen; whatever they send is ignored, as push-serve did.
    async fn on_text(&mut self, _text: &str, _link: &Link) -> Result<(), Disconnect> {
        Ok(())
    }

    fn liveness(&self) -> Liveness {
        super::liveness(&self.app)
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
    use std::time::Duration;

    fn config() -> PushServe {
        PushServe {
            app: "demo".into(),
            password: "abc12345".into(),
            access_key_ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_key_opens_its_uid_only() {
        let config = config();
        let key = access_key(&config, "42");
        assert!(access_key_valid(&config, "42", &key));
        assert!(!access_key_valid(&config, "43", &key));
        let other_password = PushServe {
            password: "another-pw".into(),
            ..config.clone()
        };
        assert!(!access_key_valid(&other_password, "42", &key));
        for bad in ["", "x", "1.2", "99999999999.AAAA", &key.replace('.', "")] {
            assert!(!access_key_valid(&config, "42", bad), "{bad}");
        }
    }

    #[test]
    fn expired_keys_fail() {
        let config = config();
        let expires = unix_now() - 1;
        let mac = signature(&config.password, &config.app, "42", expires).finalize();
        let key = format!("{expires}.{}", URL_SAFE_NO_PAD.encode(mac.into_bytes()));
        assert!(!access_key_valid(&config, "42", &key));
    }
}
