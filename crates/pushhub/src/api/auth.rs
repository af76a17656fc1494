//! Who may use the server API for which app: `Authorization: Bearer KEY`, where each key
//! names exactly one app.
//!
//! An app with keys needs one of them on every request about it (401 without, 403 with
//! another app's key). An app without keys is open, which configuration allows only while
//! the API listens on loopback, so only processes on this host reach it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};

use crate::http_error::ApiError;
use crate::hub::AppPolicy;

/// The API keys of every declared app.
#[derive(Debug, Default)]
pub struct ApiKeys {
    owner: HashMap<Arc<str>, Arc<str>>,
    keyed: HashSet<Arc<str>>,
}

impl ApiKeys {
    /// The keys of `apps`.
    pub fn new<'a>(apps: impl IntoIterator<Item = &'a AppPolicy>) -> Self {
        let mut keys = Self::default();
        for app in apps {
            for key in &app.api_keys {
                keys.owner.insert(key.clone(), app.name.clone());
                keys.keyed.insert(app.name.clone());
            }
        }
        keys
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
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_authorization",
                    "the Authorization header must be \"Bearer KEY\"",
                )
            })
    }

    /// May this request act for `app`?
    pub fn check(&self, headers: &HeaderMap, app: &str) -> Result<(), ApiError> {
        match Self::presented(headers)? {
            Some(key) => match self.owner.get(key) {
                Some(owner) if &**owner == app => Ok(()),
                Some(_) => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("this API key is not a key of app {app:?}"),
                )),
                None => Err(unknown_key()),
            },
            None if self.keyed.contains(app) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                format!("app {app:?} requires an API key: send Authorization: Bearer KEY"),
            )),
            None => Ok(()),
        }
    }

    /// The app whose key the request presents, if it presents one; an unknown key or a
    /// malformed header is refused.
    pub fn app_of(&self, headers: &HeaderMap) -> Result<Option<Arc<str>>, ApiError> {
        match Self::presented(headers)? {
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
            Some(key) if self.owner.contains_key(key) => Ok(()),
            Some(_) => Err(unknown_key()),
            None if self.keyed.is_empty() => Ok(()),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "this server requires an API key: send Authorization: Bearer KEY",
            )),
        }
    }
}

fn unknown_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "unknown API key",
    )
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
        let keys = ApiKeys::new(&[
            app("a", &["key-a-1", "key-a-2"]),
            app("b", &["key-b"]),
            app("open", &[]),
        ]);
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
        assert!(ApiKeys::new(&[app("open", &[])])
            .check_any(&HeaderMap::new())
            .is_ok());
    }
}
