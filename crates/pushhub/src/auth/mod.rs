//! Who a client is: the identity a dialect attaches a connection as.
//!
//! An app's `auth` mode decides it: `"none"` believes the user id the client names (for
//! development and trusted networks), `"token"` takes it from a signed JWT ([`token`]),
//! `"webhook"` asks the app's backend about an opaque credential ([`webhook`]),
//! `"mswoole-des"` decrypts MSwoole's legacy `auth` string ([`mswoole_des`]). Dialects
//! gather what the client presented and call [`authenticate`]; they never look inside a
//! credential.

pub mod access_key;
pub mod mswoole_des;
pub mod pusher;
pub mod token;
pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::disconnect::Disconnect;
use crate::hub::{AppSettings, AuthMode};

/// Where a client's credential came from. Backends may treat them differently (a web
/// session cookie and an app token are different things), so a webhook is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    /// A query parameter of the connect request (`?token=`, or one of the webhook's
    /// `query_param` names).
    Query,
    /// A frame: the native `auth` frame, the raw TCP `connect` frame, jdserver's `init`.
    Frame,
    /// A cookie of the connect request (webhook apps that name one).
    Cookie,
}

/// A credential as a client presented it: a JWT for token apps, anything the app's
/// backend understands for webhook apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The credential's text.
    pub value: String,
    /// Where it came from.
    pub source: CredentialSource,
    /// The name it came under (`ukey`, `token`), when the app accepts several: seed 003's
    /// backend checked a web `ukey` and an app `token` differently, so a webhook is told.
    pub param: Option<Arc<str>>,
}

impl Credential {
    /// `value` as it arrived from `source`.
    pub fn new(value: impl Into<String>, source: CredentialSource) -> Self {
        Self {
            value: value.into(),
            source,
            param: None,
        }
    }

    /// The same credential, as it arrived under the name `param`.
    pub fn named(mut self, param: &str) -> Self {
        self.param = Some(param.into());
        self
    }
}

/// Everything a client presented when it connected; which parts count is the app's
/// `auth` mode.
#[derive(Debug, Clone, Default)]
pub struct Presented {
    /// The user id the client named (believed only by `auth = "none"` apps).
    pub user: Option<String>,
    /// The credential from the request's query or the client's first frame.
    pub credential: Option<Credential>,
    /// The request's `Cookie` header, for webhook apps that take a session cookie.
    pub cookies: Option<String>,
}

impl Presented {
    /// The credential that counts for `app`: none for `auth = "none"`; the query or frame
    /// credential for tokens; for webhooks the app's cookie when it names one and the
    /// request carries it, else the query or frame credential.
    pub fn credential_for(&self, app: &AppSettings) -> Option<Credential> {
        match app.auth {
            AuthMode::None => None,
            AuthMode::Token | AuthMode::MSwooleDes => self.credential.clone(),
            AuthMode::Webhook => app
                .webhook
                .as_ref()
                .and_then(|webhook| webhook.settings().cookie.as_deref())
                .and_then(|name| cookie_value(self.cookies.as_deref()?, name))
                .map(|value| Credential::new(value, CredentialSource::Cookie))
                .or_else(|| self.credential.clone()),
        }
    }
}

/// The names `app`'s clients put their credential under, in a query parameter or a
/// `login` frame: `token`, or those the app's auth webhook names (seed 003's web clients
/// sent `ukey`, its apps `token`: one app may take both).
pub fn query_params(app: &AppSettings) -> Vec<&str> {
    match &app.webhook {
        Some(webhook) if app.auth == AuthMode::Webhook => webhook
            .settings()
            .query_params
            .iter()
            .map(|name| &**name)
            .collect(),
        _ => vec!["token"],
    }
}

/// The credential of `app`'s client among the parameters `lookup` finds (the first of the
/// app's [`query_params`] present), marked as arriving from `source` under its name.
pub fn credential_in<'v>(
    app: &AppSettings,
    source: CredentialSource,
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Option<Credential> {
    query_params(app)
        .into_iter()
        .find_map(|name| lookup(name).map(|value| Credential::new(value, source).named(name)))
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`), quotes removed.
pub fn cookie_value(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then(|| value.trim_matches('"').to_owned())
    })
}

/// Who a client is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub user: String,
    /// Groups granted by the credential, beyond those the user id implies.
    pub groups: Vec<String>,
    /// Rooms the credential lets the user join (from a token's `rooms` claim or a
    /// webhook's answer).
    pub rooms: Vec<String>,
    /// What else the credential says about the user (a token's `info` claim, a webhook's
    /// `info`: a nickname, a role), passed on to the backend with each RPC call.
    pub info: Option<serde_json::Value>,
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

/// Authenticate a client of `app` from what it `presented`. A refusal is the close reason,
/// and is counted in the metrics.
pub async fn authenticate(app: &AppSettings, presented: Presented) -> Result<Identity, Disconnect> {
    let identity = identify(app, presented).await;
    if let Err(reason) = &identity {
        count_failure(reason);
    }
    identity
}

/// Count a client's refused credential in `pushhub_auth_failures_total`, under a reason
/// from a fixed list (the close code's meaning, never the client's text).
pub fn count_failure(reason: &Disconnect) {
    let label = match reason.code {
        c if c == Disconnect::MISSING_TOKEN.code => "missing_credential",
        c if c == Disconnect::INVALID_TOKEN.code => "invalid_credential",
        c if c == Disconnect::TOKEN_EXPIRED.code => "expired",
        c if c == Disconnect::CREDENTIAL_REJECTED.code => "rejected",
        c if c == Disconnect::AUTH_UNAVAILABLE.code => "backend_unavailable",
        c if c == Disconnect::BAD_REQUEST.code => "bad_request",
        _ => "other",
    };
    crate::metrics::global().auth_failure("client", label);
}

async fn identify(app: &AppSettings, presented: Presented) -> Result<Identity, Disconnect> {
    match app.auth {
        AuthMode::None => {
            let user = presented.user.ok_or_else(|| {
                Disconnect::BAD_REQUEST.with_reason("missing user: connect with ?app=APP&user=USER")
            })?;
            Ok(Identity {
                user,
                groups: Vec::new(),
                rooms: Vec::new(),
                info: None,
                expires: None,
            })
        }
        AuthMode::Token => {
            let token = presented
                .credential_for(app)
                .ok_or_else(|| missing_credential(app, true))?;
            let claims = verify(app, &token.value)?;
            Ok(Identity {
                user: claims.sub,
                groups: claims.groups,
                rooms: claims.rooms,
                info: claims.info,
                expires: Some(claims.exp),
            })
        }
        AuthMode::Webhook => {
            let credential = presented
                .credential_for(app)
                .ok_or_else(|| missing_credential(app, true))?;
            match &app.webhook {
                Some(webhook) => webhook.check(&app.name, &credential).await,
                None => Err(Disconnect::AUTH_UNAVAILABLE.with_reason("no auth backend configured")),
            }
        }
        AuthMode::MSwooleDes => {
            let auth = presented
                .credential_for(app)
                .ok_or_else(|| missing_credential(app, true))?;
            open_mswoole_des(app, &auth.value)
        }
    }
}

/// The identity in MSwoole's encrypted `auth` string: `id` the user, `code` its room,
/// the rest its `info`. Its age was checked once, here: MSwoole's strings carried no
/// expiry for the connection, so the connection lives as long as it stays active.
fn open_mswoole_des(app: &AppSettings, auth: &str) -> Result<Identity, Disconnect> {
    let Some(des) = &app.mswoole_des else {
        return Err(Disconnect::AUTH_UNAVAILABLE.with_reason("no DES key configured"));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = des.open(auth, now).map_err(|error| {
        let base = if error.is_expiry() {
            Disconnect::TOKEN_EXPIRED
        } else {
            Disconnect::INVALID_TOKEN
        };
        base.with_reason(error.to_string())
    })?;
    Ok(Identity {
        user: claims.user,
        groups: Vec::new(),
        rooms: claims.room.into_iter().collect(),
        info: claims.info,
        expires: None,
    })
}

/// The refusal for a client that presented no credential to an app that needs one, naming
/// the ways it could have (`can_send_frames`: whether its transport carries an `auth` frame).
pub fn missing_credential(app: &AppSettings, can_send_frames: bool) -> Disconnect {
    let mut ways = match (&app.auth, &app.webhook) {
        (AuthMode::Webhook, Some(webhook)) => {
            let settings = webhook.settings();
            let mut ways: Vec<String> = settings
                .query_params
                .iter()
                .map(|name| format!("{name}=..."))
                .collect();
            ways.extend(settings.cookie.as_ref().map(|c| format!("the {c} cookie")));
            ways
        }
        (AuthMode::MSwooleDes, _) => vec!["token=AUTH".to_owned()],
        _ => vec!["token=JWT".to_owned()],
    };
    if can_send_frames {
        ways.push("an auth frame".into());
    }
    let what = match app.auth {
        AuthMode::Webhook => "a credential",
        AuthMode::MSwooleDes => "an MSwoole auth string",
        _ => "a token",
    };
    let reason = format!("this app requires {what}: pass {}", ways.join(" or "));
    Disconnect::MISSING_TOKEN.with_reason(reason)
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
