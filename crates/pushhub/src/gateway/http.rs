//! What the dialects' plain-HTTP client endpoints share (native SSE and long-poll,
//! jdserver's `getMsg`: for clients that cannot keep a WebSocket): CORS, the preflight and
//! the poll wait.
//!
//! They answer refusals with an HTTP error (there is no close frame to carry one) and allow
//! any origin, since they carry nothing a client could not get over WebSocket.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http_error::ApiError;

/// Seconds a poll waits when the client does not say (or less, when
/// `limits.max_poll_wait` is shorter).
const DEFAULT_WAIT_SECS: f64 = 25.0;
/// The response header present when a poll asked to wait longer than
/// `limits.max_poll_wait`: it carries the seconds the poll waited at most instead.
const CAPPED_HEADER: &str = "x-pushhub-timeout-capped";

/// `response` readable from any page: a client HTTP endpoint carries nothing a client
/// could not get over WebSocket.
pub fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-pushhub-cursor, x-pushhub-recovered, x-pushhub-timeout-capped"),
    );
    response
}

/// `OPTIONS` on a client HTTP endpoint: the CORS preflight a browser sends before a
/// cross-origin POST with a JSON body.
pub async fn preflight() -> Response {
    let mut response = cors(StatusCode::NO_CONTENT.into_response());
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, last-event-id"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// How long a poll waits: what the client asked for, in seconds (fractions allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// The wait applied.
    pub duration: Duration,
    /// Set when the client asked for more than the maximum: the wait applied is the
    /// maximum, and the answer says so.
    capped: bool,
}

impl Wait {
    /// The wait `timeout` asks for (default [`DEFAULT_WAIT_SECS`]), at most `max`.
    pub fn of(timeout: Option<&str>, max: Duration) -> Result<Self, ApiError> {
        let seconds = match timeout.map(str::trim) {
            None | Some("") => DEFAULT_WAIT_SECS.min(max.as_secs_f64()),
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_param",
                        format!("timeout {text:?} is not a number of seconds"),
                    )
                })?,
        };
        let capped = seconds > max.as_secs_f64();
        Ok(Self {
            duration: if capped {
                max
            } else {
                Duration::from_secs_f64(seconds)
            },
            capped,
        })
    }

    /// The `X-Pushhub-Timeout-Capped` header, when the wait was capped.
    pub fn header(self) -> Option<(HeaderName, HeaderValue)> {
        self.capped.then(|| {
            (
                HeaderName::from_static(CAPPED_HEADER),
                HeaderValue::from(self.duration.as_secs()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_take_fractions_and_are_capped_at_the_maximum() {
        let max = Duration::from_secs(120);
        let wait = |text| Wait::of(text, max).unwrap();
        assert_eq!(wait(None).duration, Duration::from_secs(25));
        assert_eq!(wait(Some(" ")).duration, Duration::from_secs(25));
        assert_eq!(wait(Some("0.5")).duration, Duration::from_millis(500));
        assert!(!wait(Some("120")).capped);
        let capped = wait(Some("600"));
        assert_eq!((capped.duration, capped.capped), (max, true));
        let (name, value) = capped.header().unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            (CAPPED_HEADER, "120")
        );
        assert_eq!(wait(Some("5")).header(), None);
        let short = Wait::of(None, Duration::from_secs(10)).unwrap();
        assert_eq!(
            (short.duration, short.capped),
            (Duration::from_secs(10), false)
        );
        for bad in ["soon", "-1", "NaN", "inf"] {
            assert_eq!(Wait::of(Some(bad), max).unwrap_err().code, "invalid_param");
        }
    }
}
