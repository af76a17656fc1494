//! Who a client is: the identity a dialect attaches a connection as.
//!
//! An app's `auth` mode decides it: `"none"` believes the user id the client names (for
//! development and trusted networks), `"token"` takes it from a signed JWT
//! ([`token`]). Dialects call [`authenticate`] and never look inside a credential.

pub mod token;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, AuthMode};

/// Who a client is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub user: String,
    /// Groups granted by the credential, beyond those the user id implies.
    pub groups: Vec<String>,
    /// When the credential expires, in seconds since the Unix epoch (tokens only).
    pub expires: Option<u64>,
}

impl Identity {
    /// When a connection made with this identity must be refreshed or closed, on the
    /// runtime's clock (with the same few seconds of skew verification allows).
    pub fn expiry(&self) -> Option<tokio::time::Instant> {
        expiry_instant(self.expires?)
    }
}

/// `expires` (Unix seconds) as an instant on the runtime's clock, plus the skew allowance.
pub fn expiry_instant(expires: u64) -> Option<tokio::time::Instant> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let left = expires.saturating_sub(now) + token::LEEWAY_SECS;
    Some(tokio::time::Instant::now() + Duration::from_secs(left))
}

/// Authenticate a client of `app` that named `user` and presented `token` (either may be
/// absent). A refusal is the close reason.
pub fn authenticate(
    app: &AppSettings,
    user: Option<String>,
    token: Option<&str>,
) -> Result<Identity, Disconnect> {
    match app.auth {
        AuthMode::None => {
            let user = user.ok_or_else(|| {
                Disconnect::BAD_REQUEST.with_reason("missing user: connect with ?app=APP&user=USER")
            })?;
            Ok(Identity {
                user,
                groups: Vec::new(),
                expires: None,
            })
        }
        AuthMode::Token => {
            let token = token.ok_or(Disconnect::MISSING_TOKEN)?;
            let claims = verify(app, token)?;
            Ok(Identity {
                user: claims.sub,
                groups: claims.groups,
                expires: Some(claims.exp),
            })
        }
    }
}

/// The claims of `token` for `app`, or the close reason.
pub fn verify(app: &AppSettings, token: &str) -> Result<token::Claims, Disconnect> {
    app.token_keys
        .verify(token, &app.name)
        .map_err(|error| match error {
            token::TokenError::Expired => Disconnect::TOKEN_EXPIRED,
            token::TokenError::Invalid(why) => {
                Disconnect::INVALID_TOKEN.with_reason(format!("invalid token: {why}"))
            }
        })
}
