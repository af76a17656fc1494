//! The rules every timer and cron job passes before it is stored, whichever way it came
//! (`POST /v1/timers`, `PUT /v1/cron/NAME`, jdserver's `/timer`): a callable URL on an
//! allowed target, a method and headers pushhub may send, a timeout, a retry policy and a
//! due time within bounds. Each refusal has a stable code the API answers with.

use axum::http::{HeaderName, HeaderValue};

use super::executor::OWN_HEADERS;
use super::{interval, unix_ms, TimerSettings};
use crate::store::{CallbackRequest, Interval, NewTimer, RetryPolicy};

/// Why a timer or a cron job was refused: `code` is the API's error code, the text says
/// what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    /// Stable error code (`invalid_url`, `target_not_allowed`...).
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

impl RuleError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Longest URL accepted.
const MAX_URL_BYTES: usize = 8192;
/// Most headers a timer may send.
const MAX_HEADERS: usize = 100;
/// Longest idempotency key.
const MAX_KEY_BYTES: usize = 256;
/// Longest per-timer call timeout: an hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Methods a timer may use.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// Headers the HTTP client sets itself (pushhub's own, [`OWN_HEADERS`], too): a timer
/// or a cron job may not set them.
const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
];

/// When a timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// This many milliseconds from now.
    Delay(i64),
    /// At this Unix time in milliseconds (a past time fires at once).
    At(i64),
}

/// A timer's or cron job's request, as a caller gave it, before the checks.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The method.
    pub method: String,
    /// The URL.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<String>,
    /// The per-call timeout, in milliseconds (default: `request_timeout`).
    pub timeout_ms: Option<u64>,
}

/// Check a caller's timer and make it ready to store; `interval` makes it an interval
/// timer, whose first tick is at `when`.
pub fn new_timer(
    settings: &TimerSettings,
    app: String,
    call: Call,
    when: When,
    retry: RetryPolicy,
    idempotency_key: Option<String>,
    interval: Option<Interval>,
) -> Result<NewTimer, RuleError> {
    let request = callback_request(settings, call)?;
    check_retry(&retry)?;
    if let Some(key) = &idempotency_key {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(RuleError::new(
                "invalid_idempotency_key",
                format!("idempotency_key must be 1 to {MAX_KEY_BYTES} bytes"),
            ));
        }
    }
    let now = unix_ms();
    Ok(NewTimer {
        app,
        request,
        due_ms: due(settings, when, now)?,
        created_ms: now,
        retry,
        idempotency_key,
        interval,
    })
}

/// The interval of a timer's `interval_ms` and `times`, within the bounds of `settings`;
/// `None` for a one-shot timer.
pub fn interval_of(
    settings: &TimerSettings,
    interval_ms: Option<u64>,
    times: Option<u32>,
) -> Result<Option<Interval>, RuleError> {
    let invalid = |message: String| RuleError::new("invalid_interval", message);
    match (interval_ms, times) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(invalid(
            "times counts an interval timer's ticks: give interval_ms too".into(),
        )),
        (Some(every_ms), times) => {
            interval::check(every_ms, times, settings.min_interval, settings.max_delay)
                .map(Some)
                .map_err(|e| invalid(e.to_string()))
        }
    }
}

/// Check a caller's request (URL and allowed target, method, headers, timeout) and make
/// it ready to store, for a timer or a cron job.
pub fn callback_request(
    settings: &TimerSettings,
    call: Call,
) -> Result<CallbackRequest, RuleError> {
    let url = check_url(&call.url)?;
    settings
        .targets
        .check_url(&url)
        .map_err(|refused| RuleError::new("target_not_allowed", refused.to_string()))?;
    if !METHODS.contains(&call.method.as_str()) {
        return Err(RuleError::new(
            "invalid_method",
            format!(
                "method {:?} is not one of {}",
                call.method,
                METHODS.join(", ")
            ),
        ));
    }
    if call.headers.len() > MAX_HEADERS {
        return Err(RuleError::new(
            "invalid_header",
            format!("more than {MAX_HEADERS} headers"),
        ));
    }
    for (name, value) in &call.headers {
        check_header(name, value)?;
    }
    let timeout_ms = call
        .timeout_ms
        .unwrap_or(u64::try_from(settings.request_timeout.as_millis()).unwrap_or(u64::MAX));
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(RuleError::new(
            "invalid_timeout",
            format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    Ok(CallbackRequest {
        method: call.method,
        url: call.url,
        headers: call.headers,
        body: call.body,
        timeout_ms,
    })
}

/// An absolute `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<reqwest::Url, RuleError> {
    if url.len() > MAX_URL_BYTES {
        return Err(RuleError::new(
            "invalid_url",
            format!("the URL is longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| RuleError::new("invalid_url", format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(RuleError::new(
            "invalid_scheme",
            format!(
                "{url:?}: only http:// and https:// URLs are called, not {}://",
                parsed.scheme()
            ),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(RuleError::new(
            "invalid_url",
            format!("{url:?} has no host"),
        ));
    }
    Ok(parsed)
}

/// A header a timer may send.
pub fn check_header(name: &str, value: &str) -> Result<(), RuleError> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        RuleError::new(
            "invalid_header",
            format!("{name:?} is not a valid header name"),
        )
    })?;
    if RESERVED_HEADERS.contains(&parsed.as_str()) || OWN_HEADERS.contains(&parsed.as_str()) {
        return Err(RuleError::new(
            "invalid_header",
            format!("header {name:?} is set by pushhub itself"),
        ));
    }
    HeaderValue::from_str(value).map_err(|_| {
        RuleError::new(
            "invalid_header",
            format!("the value of header {name:?} has characters a header may not hold"),
        )
    })?;
    Ok(())
}

fn check_retry(retry: &RetryPolicy) -> Result<(), RuleError> {
    let invalid = |message: &str| Err(RuleError::new("invalid_retry", message.to_owned()));
    if !(1..=100).contains(&retry.max_attempts) {
        return invalid("retry.max_attempts must be between 1 and 100");
    }
    if retry.base_ms == 0 || retry.max_ms < retry.base_ms || retry.max_ms > 86_400_000 {
        return invalid(
            "retry.base_ms must be at least 1, and retry.max_ms between base_ms and 86400000",
        );
    }
    Ok(())
}

/// The due time of `when`, within `max_delay` of `now`.
fn due(settings: &TimerSettings, when: When, now: u64) -> Result<u64, RuleError> {
    let max = u64::try_from(settings.max_delay.as_millis()).unwrap_or(u64::MAX);
    let too_far = || {
        RuleError::new(
            "invalid_delay",
            format!(
                "a timer may be set at most {} seconds ahead (timers.max_delay)",
                settings.max_delay.as_secs()
            ),
        )
    };
    match when {
        When::Delay(ms) if ms < 0 => Err(RuleError::new(
            "invalid_delay",
            format!("the delay is negative ({ms} ms)"),
        )),
        When::Delay(ms) => {
            let ms = ms.unsigned_abs();
            if ms > max {
                return Err(too_far());
            }
            Ok(now + ms)
        }
        When::At(ms) if ms < 0 => Err(RuleError::new(
            "invalid_delay",
            format!("`at` is before 1970 ({ms})"),
        )),
        When::At(ms) => {
            let at = ms.unsigned_abs();
            if at.saturating_sub(now) > max {
                return Err(too_far());
            }
            Ok(at)
        }
    }
}
