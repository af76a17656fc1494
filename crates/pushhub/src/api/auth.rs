//! Who may use the server API for which app: `Authorization: Bearer KEY`, where each app
//! key names exactly one app and an admin key (`admin_keys`) opens every app and the
//! server-wide operations.
//!
//! An app with keys needs one of them (or an admin key) on every request about it (401
//! without, 403 with another app's key). An app without keys is open, which configuration
//! allows only while the API listens on loopback, so only processes on this host reach it.
//! Server-wide operations (status, reload, stop, the dashboard) need an admin key once any
//! is configured; without one they are open on a loopback API only, to callers that could
//! already use every app, and refused on an exposed one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};

use crate::http_error::ApiError;
use crate::hub::AppPolicy;

/// The API keys of every declared app, and the operators' keys.
#[derive(Debug, Default)]
pub struct ApiKeys {
    owner: HashMap<Arc<str>, Arc<str>>,
    keyed: HashSet<Arc<str>>,
    admin: HashSet<Arc<str>>,
    /// Why the API is reachable from beyond this host, if it is.
    exposure: Option<&'static str>,
}

impl ApiKeys {
    /// The keys of `apps` and the operators' `admin` keys, for an API listener reachable
    /// beyond this host for the reason `exposure` (None: loopback only).
    pub fn new<'a>(
        apps: impl IntoIterator<Item = &'a AppPolicy>,
        admin: &[String],
        exposure: Option<&'static str>,
    ) -> Self {
        let mut keys = Self {
            admin: admin.iter().map(|k| Arc::from(k.as_str())).collect(),
            exposure,
            ..Self::default()
        };
        for app in apps {
            for key in &app.api_keys {
                keys.owner.insert(key.clone(), app.name.clone());
                keys.keyed.insert(app.name.clone());
            }
        }
        keys
    }

    /// Whether the request presents one of the operators' keys.
    fn is_admin(&self, key: &str) -> bool {
        self.admin.contains(key)
    }

    /// The key the request presents, if any; a malformed `Authorization` header is refused.
    fn presented(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|key| Some(key.trim()))
            .ok_or_else(|| {
                refused(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_authorization",
                    "the Authorization header must be \"Bearer KEY\"",
                ))
            })
    }

    /// May this request act for `app`?
    pub fn check(&self, headers: &HeaderMap, app: &str) -> Result<(), ApiError> {
        match Self::presented(headers)? {
            Some(key) if self.is_admin(key) => Ok(()),
            Some(key) => match self.owner.get(key) {
                Some(owner) if &**owner == app => Ok(()),
                Some(_) => Err(refused(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("this API key is not a key of app {app:?}"),
                ))),
                None => Err(unknown_key()),
            },
            None if self.keyed.contains(app) => Err(refused(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                format!("app {app:?} requires an API key: send Authorization: Bearer KEY"),
            ))),
            None => Ok(()),
        }
    }

    /// The app whose key the request presents, if it presents one (an admin key names
    /// no app); an unknown key or a malformed header is refused.
    pub fn app_of(&self, headers: &HeaderMap) -> Result<Option<Arc<str>>, ApiError> {
        match Self::presented(headers)? {
            Some(key) if self.is_admin(key) => Ok(None),
            Some(key) => match self.owner.get(key) {
                Some(app) => Ok(Some(app.clone())),
                None => Err(unknown_key()),
            },
            None => Ok(None),
        }
    }

    /// May this request see server-wide information? With keys configured, any app's
    /// key will do; without, the loopback-only API is open.
    pub fn check_any(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match Self::presented(headers)? {
            Some(key) if self.owner.contains_key(key) || self.is_admin(key) => Ok(()),
            Some(_) => Err(unknown_key()),
            None if self.keyed.is_empty() => Ok(()),
            None => Err(refused(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "this server requires an API key: send Authorization: Bearer KEY",
            ))),
        }
    }
}

impl ApiKeys {
    /// Why server-wide operations are refused to everyone, if they are: the API is
    /// reachable beyond this host for that reason and no admin key is configured. The
    /// dashboard says so on its page rather than behind its sign-in.
    pub fn admin_disabled(&self) -> Option<&'static str> {
        self.exposure.filter(|_| self.admin.is_empty())
    }

    /// May this request run a server-wide operation (status, reload, stop, the
    /// dashboard)? With admin keys configured, only with one of them; without, on a
    /// loopback API only, to a caller [`check_any`](Self::check_any) lets in.
    pub fn check_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.admin.is_empty() {
            return match self.exposure {
                Some(why) => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "admin_disabled",
                    format!("{why}, so server-wide operations need an admin key, and none is configured: set admin_keys"),
                )),
                None => self.check_any(headers),
            };
        }
        match Self::presented(headers)? {
            Some(key) if self.is_admin(key) => Ok(()),
            Some(key) if self.owner.contains_key(key) => Err(refused(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this is an app's API key: server-wide operations need an admin key",
            ))),
            Some(_) => Err(unknown_key()),
            None => Err(refused(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_admin_key",
                "this operation needs an admin key: send Authorization: Bearer KEY",
            ))),
        }
    }

    /// May this request read the server's metrics (`/metrics`)? Once admin keys are
    /// configured, only with one of them, as for every server-wide operation; without,
    /// as `/v1/stats`: any app's key, or nothing on a server without keys. A Prometheus
    /// scraping an exposed API without admin keys thus keeps working with an app's key.
    pub fn check_monitoring(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.admin.is_empty() {
            self.check_any(headers)
        } else {
            self.check_admin(headers)
        }
    }
}

fn unknown_key() -> ApiError {
    refused(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "unknown API key",
    ))
}

/// Count a refused API request in `pushhub_auth_failures_total` under its error code
/// (one of a fixed few), then hand the error back.
fn refused(error: ApiError) -> ApiError {
    crate::metrics::global().auth_failure("api", error.code);
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn app(name: &str, keys: &[&str]) -> AppPolicy {
        let config = crate::config::Config::load(None, [], &Default::default()).unwrap();
        AppPolicy {
            name: name.into(),
            api_keys: keys.iter().map(|k| Arc::from(*k)).collect(),
            ..config.defaults
        }
    }

    fn bearer(key: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        );
        headers
    }

    #[test]
    fn keys_open_only_their_own_app() {
        let keys = ApiKeys::new(
            &[
                app("a", &["key-a-1", "key-a-2"]),
                app("b", &["key-b"]),
                app("open", &[]),
            ],
            &[],
            None,
        );
        assert!(keys.check(&bearer("key-a-1"), "a").is_ok());
        assert!(
            keys.check(&bearer("key-a-2"), "a").is_ok(),
            "rotation: both keys work"
        );
        assert_eq!(
            keys.check(&bearer("key-b"), "a").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            keys.check(&HeaderMap::new(), "a").unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            keys.check(&bearer("nope"), "a").unwrap_err().code,
            "invalid_api_key"
        );
        assert!(keys.check(&HeaderMap::new(), "open").is_ok());
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        assert_eq!(
            keys.check(&basic, "open").unwrap_err().code,
            "invalid_authorization"
        );
        assert!(keys.check_any(&bearer("key-b")).is_ok());
        assert_eq!(
            keys.app_of(&bearer("key-a-2")).unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(keys.app_of(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            keys.app_of(&bearer("nope")).unwrap_err().code,
            "invalid_api_key"
        );
        assert_eq!(
            keys.check_any(&HeaderMap::new()).unwrap_err().code,
            "missing_api_key"
        );
        assert!(ApiKeys::new(&[app("open", &[])], &[], None)
            .check_any(&HeaderMap::new())
            .is_ok());
    }

    #[test]
    fn an_admin_key_opens_every_app_and_the_server_wide_operations() {
        let admin = "admin-key-0123456789".to_owned();
        let keys = ApiKeys::new(
            &[app("a", &["key-a"]), app("open", &[])],
            std::slice::from_ref(&admin),
            Some("the API listens beyond loopback"),
        );
        assert!(keys.check(&bearer(&admin), "a").is_ok());
        assert!(keys.check(&bearer(&admin), "open").is_ok());
        assert!(keys.check_any(&bearer(&admin)).is_ok());
        assert_eq!(keys.app_of(&bearer(&admin)).unwrap(), None);
        assert!(keys.check_admin(&bearer(&admin)).is_ok());
        let refused = |headers: &HeaderMap| keys.check_admin(headers).unwrap_err();
        assert_eq!(refused(&bearer("key-a")).status, StatusCode::FORBIDDEN);
        assert_eq!(refused(&bearer("nope")).code, "invalid_api_key");
        assert_eq!(refused(&HeaderMap::new()).code, "missing_admin_key");
    }

    #[test]
    fn without_admin_keys_server_wide_operations_are_open_on_loopback_only() {
        let apps = [app("a", &["key-a"])];
        let loopback = ApiKeys::new(&apps, &[], None);
        assert!(loopback.check_admin(&bearer("key-a")).is_ok());
        assert_eq!(
            loopback.check_admin(&HeaderMap::new()).unwrap_err().code,
            "missing_api_key"
        );
        let exposed = ApiKeys::new(&apps, &[], Some("the API listens beyond loopback"));
        assert_eq!(
            exposed.check_admin(&bearer("key-a")).unwrap_err().code,
            "admin_disabled"
        );
    }
}
