//! The push-serve dialect (seed 004), wire-compatible so its users only change host and
//! port.
//!
//! A backend asks `GET /access?uid=&password=` for an access key and hands it to its
//! logged-in client; the client connects to `/ws?uid=&access_key=` and receives each push as
//! `{"topic":…,"number":1,"contents":…}`; the backend pushes with
//! `POST /push?uid=&password=` and a JSON body `{"topic":…,"contents":…}`.
//!
//! Access keys are an HMAC-SHA256 over the app, the uid and the expiry, keyed with the
//! push-serve password: `SIGNATURE` for a key that never expires (push-serve's habit, and
//! the default: the same uid always gets the same key), `EXPIRY.SIGNATURE` when
//! `access_key_ttl` is set. A key opens exactly one uid of one app; changing the password
//! revokes every key, and setting `access_key_ttl` revokes every key that never expires.

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

    fn name(&self) -> &'static str {
        "pushserve"
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The MAC of a key for `uid` that expires at `expires` (Unix seconds), or never. The
/// expiry is signed as digits and "never" as `-`, so neither form passes for the other.
fn signature(password: &str, app: &str, uid: &str, expires: Option<u64>) -> Hmac<Sha256> {
    let mut mac = hmac_sha256(password.as_bytes());
    let expires = expires.map_or_else(|| "-".to_owned(), |at| at.to_string());
    mac.update(format!("{app}\n{uid}\n{expires}").as_bytes());
    mac
}

/// An access key for `uid`: one that expires after `access_key_ttl`, or, without it, one
/// that never does.
pub fn access_key(config: &PushServe, uid: &str) -> String {
    let expires = config.access_key_ttl.map(|ttl| unix_now() + ttl.as_secs());
    let mac = signature(&config.password, &config.app, uid, expires).finalize();
    let signed = URL_SAFE_NO_PAD.encode(mac.into_bytes());
    match expires {
        Some(at) => format!("{at}.{signed}"),
        None => signed,
    }
}

/// True when `key` was handed out for `uid` and has not expired. A key that never
/// expires is refused once `access_key_ttl` is set, so turning expiry on ends them all.
pub fn access_key_valid(config: &PushServe, uid: &str, key: &str) -> bool {
    let (expires, signed) = match key.split_once('.') {
        Some((at, signed)) => match at.parse::<u64>() {
            Ok(at) if at > unix_now() => (Some(at), signed),
            _ => return false,
        },
        None if config.access_key_ttl.is_none() => (None, key),
        None => return false,
    };
    let Ok(signed) = URL_SAFE_NO_PAD.decode(signed) else {
        return false;
    };
    signature(&config.password, &config.app, uid, expires)
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

    fn config(ttl: Option<u64>) -> PushServe {
        PushServe {
            app: "demo".into(),
            password: "abc123".into(),
            addr: None,
            access_key_ttl: ttl.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_key_opens_its_uid_only() {
        for config in [config(None), config(Some(60))] {
            let key = access_key(&config, "42");
            assert!(access_key_valid(&config, "42", &key));
            assert!(!access_key_valid(&config, "43", &key));
            let other_password = PushServe {
                password: "123123".into(),
                ..config.clone()
            };
            assert!(!access_key_valid(&other_password, "42", &key));
            let other_app = PushServe {
                app: "shop".into(),
                ..config.clone()
            };
            assert!(!access_key_valid(&other_app, "42", &key));
            for bad in ["", "x", "1.2", "99999999999.AAAA", ".", &format!("{key}A")] {
                assert!(!access_key_valid(&config, "42", bad), "{bad}");
            }
        }
    }

    #[test]
    fn keys_never_expire_unless_a_ttl_is_set() {
        let forever = config(None);
        let key = access_key(&forever, "42");
        assert!(!key.contains('.'), "no expiry in {key}");
        assert_eq!(
            key,
            access_key(&forever, "42"),
            "the same uid, the same key"
        );
        assert!(
            !access_key_valid(&config(Some(60)), "42", &key),
            "setting access_key_ttl ends the keys that never expire"
        );
        let expiring = access_key(&config(Some(60)), "42");
        let (at, _) = expiring.split_once('.').unwrap();
        let at: u64 = at.parse().unwrap();
        assert!((unix_now() + 59..=unix_now() + 60).contains(&at));
        assert!(
            access_key_valid(&forever, "42", &expiring),
            "a key with an expiry keeps it when access_key_ttl is removed"
        );
        let (_, signed) = expiring.split_once('.').unwrap();
        assert!(
            !access_key_valid(&forever, "42", signed),
            "an expiring key's signature is no key that never expires"
        );
    }

    #[test]
    fn expired_keys_fail() {
        let config = config(Some(60));
        let expires = unix_now() - 1;
        let mac = signature(&config.password, &config.app, "42", Some(expires)).finalize();
        let key = format!("{expires}.{}", URL_SAFE_NO_PAD.encode(mac.into_bytes()));
        assert!(!access_key_valid(&config, "42", &key));
    }
}
