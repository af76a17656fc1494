//! One signed JSON POST to an app's backend: the request every backend feature makes
//! (RPC calls, room checks, message vetting), in one place so all are signed, bounded and
//! reported the same way.

use std::sync::Arc;

use super::signature::{sign_now, SIGNATURE_HEADER};

/// The longest answer read from a backend.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Where an app's backend calls go out from: the shared HTTP client and the app's signing
/// secret.
#[derive(Clone)]
pub struct BackendClient {
    client: reqwest::Client,
    secret: Arc<str>,
}

impl std::fmt::Debug for BackendClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackendClient")
    }
}

/// Why a call got no answer at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Connecting or sending failed.
    #[error("the backend is unreachable")]
    Unreachable,
    /// The answer was larger than [`MAX_ANSWER_BYTES`].
    #[error("the backend's answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
}

/// What one [`BackendClient::post`] under a deadline came to, as metrics count outcomes.
pub fn outcome(
    answer: &Result<Result<(u16, Vec<u8>), CallError>, tokio::time::error::Elapsed>,
) -> &'static str {
    match answer {
        Err(_) => "timeout",
        Ok(Err(CallError::Unreachable)) => "unreachable",
        Ok(Err(CallError::TooLarge)) => "too_large",
        Ok(Ok((200..=299, _))) => "ok",
        Ok(Ok(_)) => "http_error",
    }
}

impl BackendClient {
    /// Calls made with `client`, signed with `secret`.
    pub fn new(client: reqwest::Client, secret: Arc<str>) -> Self {
        Self { client, secret }
    }

    /// POST `body` (JSON) to `url`, signed; the answer's status and body. The caller
    /// bounds the time it takes.
    pub async fn post(
        &self,
        url: &reqwest::Url,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), CallError> {
        let mut response = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign_now(self.secret.as_bytes(), &body))
            .body(body)
            .send()
            .await
            .map_err(|error| {
                tracing::debug!(%error, %url, "backend request failed");
                CallError::Unreachable
            })?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| CallError::Unreachable)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(CallError::TooLarge);
            }
            answer.extend_from_slice(&chunk);
        }
        Ok((status, answer))
    }
}

/// A yes-or-no question put to an app's backend (may this user join that room, may this
/// message go out): 2xx is yes, 401/403 is no, anything else is no answer.
#[derive(Debug, Clone)]
pub struct Question {
    /// Where the question is POSTed.
    pub url: reqwest::Url,
    /// How long the backend may take to answer.
    pub timeout: std::time::Duration,
    /// The signed client it is asked through.
    pub backend: BackendClient,
}

/// The backend's answer to a [`Question`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Yes,
    /// 401/403, with the backend's `{"error":"..."}` text when it gave one.
    No(Option<String>),
}

impl Question {
    /// Ask, with `body` as the JSON question; `Err` says why no answer came.
    pub async fn ask(&self, body: &impl serde::Serialize) -> Result<Verdict, String> {
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(self.timeout, self.backend.post(&self.url, body));
        let answer = crate::work_counters::calls("question", None)
            .time(answer, outcome)
            .await;
        match answer {
            Err(_) => Err(format!(
                "the backend did not answer within {} ms",
                self.timeout.as_millis()
            )),
            Ok(Err(error)) => Err(error.to_string()),
            Ok(Ok((200..=299, _))) => Ok(Verdict::Yes),
            Ok(Ok((401 | 403, body))) => Ok(Verdict::No(error_text(&body))),
            Ok(Ok((status, _))) => Err(format!("the backend answered HTTP {status}")),
        }
    }
}

/// The `error` text of a backend's `{"error":"..."}`, cut to fit an error frame.
fn error_text(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("error")?
        .as_str()
        .map(|text| text.chars().take(200).collect())
}
