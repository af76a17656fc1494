//! `[pushserve]`: push-serve compatibility (seed 004), set up the way push-serve's own
//! `conf.yaml` was (`addr`, `password`), so its users copy those two lines over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[pushserve]` as written in the file (or in `PUSHHUB_PUSHSERVE_*` variables).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPushServe {
    /// The app push-serve's `/access`, `/ws` and `/push` act for. Without a config file
    /// it is the embedded app `demo`.
    pub app: String,
    /// The backend password (push-serve's `conf.yaml` `password`); also the key that signs
    /// access keys, so changing it revokes every key handed out. Any non-empty text, as
    /// push-serve took; shorter than 16 characters is warned about at start.
    pub password: String,
    /// push-serve's own `addr`: one port serving exactly `/ws`, `/access` and `/push`
    /// (push-serve's, never jdserver's or the native API), as push-serve did. Unset: those
    /// endpoints are only on the client (`/ws`) and API (`/access`, `/push`) listeners.
    #[serde(default)]
    pub addr: Option<String>,
    /// Seconds an access key stays valid. Unset: keys never expire, as push-serve's did
    /// (a leaked key opens its uid until the password changes).
    #[serde(default)]
    pub access_key_ttl: Option<u64>,
}

impl RawPushServe {
    /// A table with every key set, so `PUSHHUB_PUSHSERVE_*` variables are read as their
    /// key's type.
    pub(super) fn every_key() -> Self {
        Self {
            app: super::DEMO_APP.into(),
            password: "password".into(),
            addr: Some("127.0.0.1:8080".into()),
            access_key_ttl: Some(86_400),
        }
    }
}

/// push-serve compatibility, validated.
#[derive(Debug, Clone)]
pub struct PushServe {
    /// The app it serves.
    pub app: Arc<str>,
    /// The backend password and access-key signing key.
    pub password: Arc<str>,
    /// push-serve's single port, when set.
    pub addr: Option<SocketAddr>,
    /// How long an access key stays valid; `None`: forever.
    pub access_key_ttl: Option<Duration>,
}

/// Passwords shorter than this are accepted (push-serve's examples are `abc123` and
/// `123123`) but warned about: a client holding an access key can test guesses at the
/// password offline, since the password signs the key.
pub const STRONG_PASSWORD_CHARS: usize = 16;

impl PushServe {
    /// Why this configuration keeps an insecure push-serve habit, one sentence each, for
    /// the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let chars = self.password.chars().count();
        if chars < STRONG_PASSWORD_CHARS {
            warnings.push(format!(
                "[pushserve] password has {chars} characters: anyone who guesses it can read and push to any uid, and a client can test guesses offline against its access key; use {STRONG_PASSWORD_CHARS}+ random characters (docs/security.md)"
            ));
        }
        if self.access_key_ttl.is_none() {
            warnings.push(
                "[pushserve] access keys never expire (access_key_ttl is unset, as push-serve did): a leaked key opens its uid until the password changes; set access_key_ttl (docs/security.md)".into(),
            );
        }
        warnings
    }
}

/// The other listeners' addresses, which `addr` may not take.
pub(super) struct OtherListeners {
    /// `listen`.
    pub client: Option<SocketAddr>,
    /// `api_listen`.
    pub api: Option<SocketAddr>,
    /// `tcp_listen`.
    pub tcp: Option<SocketAddr>,
}

/// Check `[pushserve]`, reporting each problem through `error` (key path, message);
/// `declared` says whether its app exists. Returns the settings when there was none.
pub(super) fn check(
    raw: &RawPushServe,
    declared: bool,
    others: &OtherListeners,
    error: &mut impl FnMut(&[&str], String),
) -> Option<PushServe> {
    let mut ok = true;
    let mut fail = |key: &str, message: String| {
        ok = false;
        error(&["pushserve", key], message);
    };
    if !declared {
        fail(
            "app",
            format!("app {:?} is not declared in [apps]", raw.app),
        );
    }
    if raw.password.is_empty() {
        fail(
            "password",
            "must not be empty: it is what keeps anyone from reading any uid's pushes".into(),
        );
    }
    if raw.access_key_ttl == Some(0) {
        fail(
            "access_key_ttl",
            "must be at least 1 second; leave it out for keys that never expire".into(),
        );
    }
    let addr = match raw.addr.as_deref().map(str::parse::<SocketAddr>) {
        None => None,
        Some(Ok(addr)) => Some(addr),
        Some(Err(_)) => {
            fail(
                "addr",
                format!(
                    "{:?} is not an address like 0.0.0.0:8080",
                    raw.addr.as_deref().unwrap_or_default()
                ),
            );
            None
        }
    };
    if let Some(addr) = addr.filter(|a| a.port() != 0) {
        let taken = [
            (others.client, "the client listener (listen)"),
            (others.api, "the API listener (api_listen)"),
            (others.tcp, "the raw TCP listener (tcp_listen)"),
        ]
        .into_iter()
        .find(|(other, _)| *other == Some(addr));
        if let Some((_, which)) = taken {
            fail(
                "addr",
                format!("{addr} is already {which}: push-serve's port needs a port of its own"),
            );
        }
    }
    ok.then(|| PushServe {
        app: raw.app.as_str().into(),
        password: raw.password.as_str().into(),
        addr,
        access_key_ttl: raw.access_key_ttl.map(Duration::from_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Overrides};
    use std::time::Duration;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables_alone_set_up_the_seeds_deployment() {
        let config = Config::load(
            None,
            vars(&[
                ("PUSHHUB_PUSHSERVE_PASSWORD", "abc123"),
                ("PUSHHUB_PUSHSERVE_ADDR", "0.0.0.0:8080"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let pushserve = config.pushserve.unwrap();
        assert_eq!(&*pushserve.app, "demo");
        assert_eq!(&*pushserve.password, "abc123");
        assert_eq!(pushserve.addr, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(pushserve.access_key_ttl, None);
        assert_eq!(pushserve.warnings().len(), 2);
        assert!(
            config.api_listen.ip().is_loopback(),
            "the rest of the API stays on loopback"
        );
    }

    #[test]
    fn a_variable_overrides_the_files_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pushhub.toml");
        let text = "[apps.shop]\nauth = \"none\"\n[pushserve]\napp = \"shop\"\npassword = \"123123\"\naccess_key_ttl = 3600\n";
        std::fs::write(&path, text).unwrap();
        let long = "a-long-password-kept-out-of-files";
        let config = Config::load(
            Some(&path),
            vars(&[("PUSHHUB_PUSHSERVE_PASSWORD", long)]),
            &Overrides::default(),
        )
        .unwrap();
        let pushserve = config.pushserve.unwrap();
        assert_eq!(&*pushserve.password, long);
        assert_eq!(pushserve.access_key_ttl, Some(Duration::from_secs(3600)));
        assert!(pushserve.warnings().is_empty());
    }
}
