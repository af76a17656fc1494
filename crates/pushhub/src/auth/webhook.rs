//! Backend check (`auth = "webhook"`): the app's own backend decides who a client is.
//!
//! Seed 003's clients logged in with the main site's `ukey` (web) or `token` (app), which the
//! push server checked against the site's validation API. pushhub does the same for any
//! opaque credential: it POSTs `{"app","credential","source","param"}` to the app's URL and takes
//! the user id, groups and rooms from the answer. The backend is another service that can
//! be down or slow: each check has a deadline and a bounded number run at once per app, so
//! a failing backend costs its own clients a refusal (retryable, 4007) and nothing else.
//! Answers may be cached for a few seconds, so a reconnect storm asks once per credential.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{Credential, CredentialSource, Identity};
use crate::disconnect::Disconnect;
use crate::hub::names;

/// The most distinct credentials one app's cache remembers.
const CACHE_CAPACITY: u64 = 100_000;

/// The longest part of a backend's refusal message passed on to the client: a WebSocket
/// close reason holds 123 bytes in all.
const MAX_MESSAGE_CHARS: usize = 80;

/// The longest answer read from a backend; anything larger is garbage for this purpose.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One app's backend check, as configured.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where credentials are POSTed.
    pub url: reqwest::Url,
    /// The query parameters (and `login` frame fields) a client's credential arrives in,
    /// first match wins: `token` unless configured; seed 003 took `ukey` from web clients
    /// and `token` from apps.
    pub query_params: Vec<Arc<str>>,
    /// The cookie a browser's credential arrives in, when the app takes one.
    pub cookie: Option<Arc<str>>,
    /// How long one check may take, queueing included.
    pub timeout: Duration,
    /// How long an answer (accepted or rejected) is reused; zero: every connection asks.
    pub cache_ttl: Duration,
    /// Most checks in flight at once for the app.
    pub max_concurrency: usize,
}

/// A configured backend check, ready to ask.
pub struct WebhookAuth {
    settings: WebhookSettings,
    client: reqwest::Client,
    in_flight: Semaphore,
    cache: Option<Cache<CacheKey, Arc<Verdict>>>,
}

impl std::fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookAuth({})", self.settings.url)
    }
}

/// What an answer is cached under: the same text may be a valid `ukey` and an invalid
/// `token`.
type CacheKey = (CredentialSource, Option<Arc<str>>, String);

/// What the backend decided about one credential: a definite answer, worth caching.
#[derive(Debug, Clone)]
enum Verdict {
    Accepted(Identity),
    Rejected(String),
}

/// Why no definite answer came: never cached, the client may retry.
#[derive(Debug, Clone, thiserror::Error)]
enum Unavailable {
    #[error("auth backend did not answer within {0} ms")]
    Timeout(u128),
    #[error("auth backend unreachable")]
    Unreachable,
    #[error("auth backend answered HTTP {0}")]
    Status(u16),
    #[error("auth backend answer is not {{\"user\":...}}: {0}")]
    Garbage(String),
}

/// The request body the backend receives.
#[derive(Serialize)]
struct Question<'a> {
    app: &'a str,
    credential: &'a str,
    source: CredentialSource,
    /// The name the credential came under (`ukey`, `token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
}

/// An accepting answer: `{"user":"100","groups":[...],"rooms":[...],"info":{...}}`.
#[derive(Deserialize)]
struct Answer {
    user: UserId,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    info: Option<serde_json::Value>,
}

/// A user id as backends write it: text, or a number (PHP backends often send ints).
#[derive(Deserialize)]
#[serde(untagged)]
enum UserId {
    Text(String),
    Number(u64),
}

/// A refusing answer's optional explanation: `{"error":"..."}` or `{"message":"..."}`.
#[derive(Deserialize)]
struct Refusal {
    #[serde(alias = "message")]
    error: Option<String>,
}

impl WebhookAuth {
    /// A check as `settings` says, making its calls with `client`.
    pub fn new(settings: WebhookSettings, client: reqwest::Client) -> Self {
        let cache = (!settings.cache_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(settings.cache_ttl)
                .build()
        });
        Self {
            in_flight: Semaphore::new(settings.max_concurrency.max(1)),
            settings,
            client,
            cache,
        }
    }

    /// The configuration this check runs with.
    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// Who the backend says `credential` belongs to, for a client of `app`. Concurrent
    /// checks of one credential share a single request when answers are cached.
    pub async fn check(&self, app: &str, credential: &Credential) -> Result<Identity, Disconnect> {
        let started = std::time::Instant::now();
        let verdict = match &self.cache {
            Some(cache) => cache
                .try_get_with(
                    (
                        credential.source,
                        credential.param.clone(),
                        credential.value.clone(),
                    ),
                    async { self.ask(app, credential).await.map(Arc::new) },
                )
                .await
                .map_err(|e| (*e).clone()),
            None => self.ask(app, credential).await.map(Arc::new),
        };
        crate::work_counters::calls("auth", None)
            .record(webhook_outcome(&verdict), started.elapsed());
        match verdict.as_deref() {
            Ok(Verdict::Accepted(identity)) => Ok(identity.clone()),
            Ok(Verdict::Rejected(why)) => {
                Err(Disconnect::CREDENTIAL_REJECTED.with_reason(why.clone()))
            }
            Err(unavailable) => {
                tracing::warn!(app, url = %self.settings.url, error = %unavailable, "client refused: auth backend failed");
                Err(Disconnect::AUTH_UNAVAILABLE.with_reason(unavailable.to_string()))
            }
        }
    }

    /// One round trip to the backend, within the deadline and the concurrency bound.
    async fn ask(&self, app: &str, credential: &Credential) -> Result<Verdict, Unavailable> {
        let deadline = self.settings.timeout;
        tokio::time::timeout(deadline, async {
            let _permit = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| Unavailable::Unreachable)?;
            let question = Question {
                app,
                credential: &credential.value,
                source: credential.source,
                param: credential.param.as_deref(),
            };
            let response = self
                .client
                .post(self.settings.url.clone())
                .json(&question)
                .send()
                .await
                .map_err(|error| {
                    tracing::debug!(%error, "auth backend request failed");
                    Unavailable::Unreachable
                })?;
            let status = response.status();
            let body = read_limited(response).await?;
            judge(status.as_u16(), &body)
        })
        .await
        .unwrap_or(Err(Unavailable::Timeout(deadline.as_millis())))
    }
}

/// What a check came to, as metrics count outcomes (a cached answer counts too: the
/// latency then shows the cache at work).
fn webhook_outcome(verdict: &Result<Arc<Verdict>, Unavailable>) -> &'static str {
    match verdict {
        Ok(_) => "ok",
        Err(Unavailable::Timeout(_)) => "timeout",
        Err(Unavailable::Unreachable) => "unreachable",
        Err(Unavailable::Status(_)) => "http_error",
        Err(Unavailable::Garbage(_)) => "bad_answer",
    }
}

/// The body of `response`, refusing one larger than [`MAX_ANSWER_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, Unavailable> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| Unavailable::Unreachable)?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Unavailable::Garbage(format!(
                "larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The verdict a backend's `status` and `body` amount to.
fn judge(status: u16, body: &[u8]) -> Result<Verdict, Unavailable> {
    match status {
        200 => accepted(body),
        401 | 403 => Ok(Verdict::Rejected(rejection(body))),
        _ => Err(Unavailable::Status(status)),
    }
}

fn accepted(body: &[u8]) -> Result<Verdict, Unavailable> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| Unavailable::Garbage(short(&e.to_string())))?;
    let user = match answer.user {
        UserId::Text(user) => user,
        UserId::Number(user) => user.to_string(),
    };
    names::check_user(&user).map_err(|e| Unavailable::Garbage(short(&e.to_string())))?;
    Ok(Verdict::Accepted(Identity {
        user,
        groups: answer.groups,
        rooms: answer.rooms,
        info: answer.info,
        expires: None,
    }))
}

/// The close reason for a refusal, with the backend's explanation when it gave one.
fn rejection(body: &[u8]) -> String {
    match serde_json::from_slice::<Refusal>(body)
        .ok()
        .and_then(|r| r.error)
    {
        Some(why) => format!("credential rejected: {}", short(&why)),
        None => "credential rejected by the app's auth backend".into(),
    }
}

/// `text` cut to fit a close reason.
fn short(text: &str) -> String {
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_of(verdict: Result<Verdict, Unavailable>) -> String {
        match verdict {
            Ok(Verdict::Accepted(identity)) => identity.user,
            other => panic!("expected acceptance, got {other:?}"),
        }
    }

    #[test]
    fn accepts_text_and_numeric_user_ids_with_groups() {
        assert_eq!(user_of(judge(200, br#"{"user":"u-1"}"#)), "u-1");
        assert_eq!(user_of(judge(200, br#"{"user":100,"extra":true}"#)), "100");
        let Ok(Verdict::Accepted(identity)) =
            judge(200, br#"{"user":"7","groups":["vip"],"rooms":["r1"]}"#)
        else {
            panic!("not accepted")
        };
        assert_eq!(identity.groups, ["vip"]);
        assert_eq!(identity.rooms, ["r1"]);
    }

    #[test]
    fn refusals_carry_the_backends_reason_cut_to_fit() {
        let Ok(Verdict::Rejected(why)) = judge(403, br#"{"error":"logged out"}"#) else {
            panic!("not rejected")
        };
        assert_eq!(why, "credential rejected: logged out");
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(500));
        let Ok(Verdict::Rejected(why)) = judge(401, long.as_bytes()) else {
            panic!("not rejected")
        };
        assert!(why.len() <= 123, "{why}");
        assert!(matches!(judge(401, b"nope"), Ok(Verdict::Rejected(_))));
    }

    #[test]
    fn garbage_and_errors_are_unavailable_not_rejections() {
        for (status, body) in [
            (200, &b"<html>"[..]),
            (200, br#"{"id":1}"#),
            (200, br#"{"user":""}"#),
            (200, br#"{"user":"a,b"}"#),
            (200, br#"{"user":null}"#),
            (500, br#"{"user":"1"}"#),
            (302, b""),
            (404, b""),
        ] {
            assert!(
                judge(status, body).is_err(),
                "{status} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
