//! Making a timer's HTTP request and summing up the answer.
//!
//! Calls go through the server's shared outbound client ([`crate::outbound`]): pooled
//! connections, a connect deadline, no redirects. Each call is bounded by the timer's
//! timeout, body included, and reads at most [`SNIPPET_BYTES`] of the answer.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};

use crate::store::Timer;

/// Most bytes of an answer kept for the API and the log.
pub const SNIPPET_BYTES: usize = 1024;

/// The header that carries the timer's id, so a target can recognise a repeated call
/// (at-least-once delivery) and drop it.
pub const TIMER_ID_HEADER: &str = "x-pushhub-timer-id";

/// The header that carries the attempt number (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-pushhub-attempt";

/// What one call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// The answer's status, when there was an answer.
    pub status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<String>,
    /// The start of the answer's body.
    pub response: Option<String>,
    /// How long the call took.
    pub duration: Duration,
}

/// Makes timers' calls.
#[derive(Debug, Clone)]
pub struct Executor {
    client: reqwest::Client,
}

impl Executor {
    /// Calls through `client` (see [`crate::outbound::client`]).
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }

    /// Make attempt number `attempt` of `timer`'s request.
    pub async fn call(&self, timer: &Timer, attempt: u32) -> CallResult {
        let started = Instant::now();
        let outcome = self.send(timer, attempt).await;
        let duration = started.elapsed();
        match outcome {
            Ok((status, response)) => CallResult {
                status: Some(status),
                error: None,
                response: Some(response),
                duration,
            },
            Err(error) => CallResult {
                status: None,
                error: Some(error),
                response: None,
                duration,
            },
        }
    }

    async fn send(&self, timer: &Timer, attempt: u32) -> Result<(u16, String), String> {
        let spec = &timer.request;
        let method = reqwest::Method::from_bytes(spec.method.as_bytes())
            .map_err(|_| format!("invalid method {:?}", spec.method))?;
        let mut request = self
            .client
            .request(method, &spec.url)
            .timeout(Duration::from_millis(spec.timeout_ms));
        for (name, value) in &spec.headers {
            // Validated when the timer was created.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request = request.header(name, value);
            }
        }
        request = request
            .header(TIMER_ID_HEADER, timer.id)
            .header(ATTEMPT_HEADER, attempt);
        if let Some(body) = &spec.body {
            request = request.body(body.clone());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| describe(&e, spec.timeout_ms))?;
        let status = response.status().as_u16();
        let mut snippet = Vec::new();
        while snippet.len() < SNIPPET_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status came; a body cut short does not change the verdict.
                Err(_) => break,
            }
        }
        snippet.truncate(SNIPPET_BYTES);
        Ok((status, snippet_text(&snippet)))
    }
}

/// A request error in words: what happened, with the underlying cause.
fn describe(error: &reqwest::Error, timeout_ms: u64) -> String {
    if error.is_timeout() {
        return format!("timed out after {timeout_ms} ms");
    }
    let kind = if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    match causes.last() {
        Some(root) => format!("{kind}: {root}"),
        None => format!("{kind}: {error}"),
    }
}

/// `bytes` as text (invalid sequences replaced), at most [`SNIPPET_BYTES`] long.
fn snippet_text(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    let mut end = text.len().min(SNIPPET_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}
