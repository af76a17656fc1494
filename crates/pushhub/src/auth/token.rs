//! Client tokens: JWTs signed with an app's secret (HS256) or private key (RS256, ES256).
//!
//! Claims: `sub` (the user id, required), `exp` (required), and optionally `app` (must be
//! this app when present), `groups` (extra group channels) and `rooms` (rooms it may join). Several secrets and keys may
//! be valid at once, so they rotate without downtime. Verification allows no clock leeway
//! beyond 5 seconds: an expired token is refused with its own close code so the client
//! knows to fetch a fresh one.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Seconds a token may be past `exp` and still pass, for clock skew.
pub const LEEWAY_SECS: u64 = 5;

/// The claims pushhub reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// The app the token is for; checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Extra groups the user belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Rooms the user may join (MSwoole's room code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<String>,
    /// Anything else about the user (MSwoole's auth carried type and nickname), passed on
    /// to the backend with RPC calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Well signed, but past its `exp`.
    #[error("token expired")]
    Expired,
    /// Malformed, wrongly signed, for another app, or missing a claim.
    #[error("{0}")]
    Invalid(String),
}

/// Why a configured key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The keys that verify one app's tokens.
#[derive(Default)]
pub struct TokenKeys {
    keys: Vec<(DecodingKey, Algorithm)>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKeys({} keys)", self.keys.len())
    }
}

impl TokenKeys {
    /// Keys from HS256 `secrets` and RS256/ES256 public keys in PEM form.
    pub fn new(secrets: &[String], public_keys: &[String]) -> Result<Self, KeyError> {
        let mut keys: Vec<(DecodingKey, Algorithm)> = secrets
            .iter()
            .map(|s| (DecodingKey::from_secret(s.as_bytes()), Algorithm::HS256))
            .collect();
        for pem in public_keys {
            let key = if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                (key, Algorithm::RS256)
            } else if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                (key, Algorithm::ES256)
            } else {
                return Err(KeyError("not an RSA or EC public key in PEM form".into()));
            };
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The claims of `token` if one of the keys signed it, it has not expired, and it is
    /// for `app` (when it names one).
    pub fn verify(&self, token: &str, app: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError::Invalid(format!("malformed: {e}")))?;
        let mut last = TokenError::Invalid("no key for its algorithm".into());
        for (key, algorithm) in self.keys.iter().filter(|(_, a)| *a == header.alg) {
            let mut validation = Validation::new(*algorithm);
            validation.leeway = LEEWAY_SECS;
            validation.set_required_spec_claims(&["exp", "sub"]);
            match decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    return match &data.claims.app {
                        Some(other) if other != app => {
                            Err(TokenError::Invalid(format!("it is for app {other:?}")))
                        }
                        _ => Ok(data.claims),
                    }
                }
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                    return Err(TokenError::Expired)
                }
                Err(e) => last = TokenError::Invalid(e.to_string()),
            }
        }
        Err(last)
    }
}

/// A HS256 token for `user` of `app`, valid for `ttl_secs`: what `pushhub token` prints
/// for development, and what a backend mints with any JWT library.
pub fn mint(
    secret: &str,
    app: &str,
    user: &str,
    groups: &[String],
    ttl_secs: u64,
) -> Result<String, KeyError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = Claims {
        sub: user.to_owned(),
        exp: now.saturating_add(ttl_secs),
        app: Some(app.to_owned()),
        groups: groups.to_vec(),
        rooms: Vec::new(),
        info: None,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| KeyError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &["old-secret-0123456789abcdef012345".into(), SECRET.into()],
            &[],
        )
        .unwrap()
    }

    #[test]
    fn a_minted_token_verifies_with_any_current_secret() {
        let token = mint(SECRET, "wms", "100", &["vip".into()], 60).unwrap();
        let claims = keys().verify(&token, "wms").unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.groups.as_slice()),
            ("100", &["vip".to_owned()][..])
        );
    }

    #[test]
    fn refusals_are_specific() {
        let other_app = mint(SECRET, "crm", "1", &[], 60).unwrap();
        assert!(
            matches!(keys().verify(&other_app, "wms"), Err(TokenError::Invalid(why)) if why.contains("crm"))
        );
        let wrong_secret = mint("another-secret-0123456789abcdefgh", "wms", "1", &[], 60).unwrap();
        assert!(matches!(
            keys().verify(&wrong_secret, "wms"),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            keys().verify("not.a.jwt", "wms"),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            keys().verify("", "wms"),
            Err(TokenError::Invalid(_))
        ));
        let claims = Claims {
            sub: "1".into(),
            exp: 1,
            app: None,
            groups: vec![],
            rooms: vec![],
            info: None,
        };
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(keys().verify(&expired, "wms"), Err(TokenError::Expired));
    }

    #[test]
    fn bad_pem_is_refused_at_configuration() {
        assert!(TokenKeys::new(
            &[],
            &["-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----".into()]
        )
        .is_err());
    }
}
