//! Who a client is: the identity a dialect attaches a connection as.
//!
//! An app's `auth` mode decides it: `"none"` believes the user id the client names (for
//! development and trusted networks), `"token"` takes it from a signed JWT
//! ([`token`]). Dialects call [`authenticate`] and never look inside a credential.

pub mod token;

use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, AuthMode};

/// Who a client is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub user: String,
    /// Groups granted by the credential, beyond those the user id implies.
    pub groups: Vec<String>,
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
            })
        }
        AuthMode::Token => {
            let token = token.ok_or(Disconnect::MISSING_TOKEN)?;
            let claims = app
                .token_keys
                .verify(token, &app.name)
                .map_err(|error| match error {
                    token::TokenError::Expired => Disconnect::TOKEN_EXPIRED,
                    token::TokenError::Invalid(why) => {
                        Disconnect::INVALID_TOKEN.with_reason(format!("invalid token: {why}"))
                    }
                })?;
            Ok(Identity {
                user: claims.sub,
                groups: claims.groups,
            })
        }
    }
}
