//! push-serve's access keys (seed 004): what a backend asks `GET /access` for and hands
//! to its logged-in client, which connects with it to `/ws?uid=&access_key=`.
//!
//! A key is an HMAC-SHA256 over the app, the uid and the expiry, keyed with the push-serve
//! password: `SIGNATURE` for a key that never expires (push-serve's habit, and the
//! default: the same uid always gets the same key), `EXPIRY.SIGNATURE` when
//! `access_key_ttl` is set. A key opens exactly one uid of one app; changing the password
//! revokes every key, and setting `access_key_ttl` revokes every key that never expires.
//! It is a credential like a token, so it lives here with the others, not in the dialect.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::backend::signature::hmac_sha256;
use crate::config::PushServe;

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
