//! RPC: a client's `rpc` frame, carried to the app's backend and answered back.
//!
//! MSwoole (seed 001) routed `{"method":"module.controller.action",...}` frames to
//! controllers inside the push server. pushhub POSTs the call to the app's backend instead
//! (one URL, or one per method prefix), with who the caller is, signed; the backend's JSON
//! answer becomes the reply. Everything that can go wrong has its own error code, and none
//! of it closes the connection: a slow backend costs the caller a `rpc_timeout`, a client
//! firing calls without waiting gets `rpc_busy`, and other connections never notice.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use super::call::{BackendClient, CallError};
use super::rpc_answer::{self, RpcAnswer};
use crate::work_counters::{CallRecord, Gauge, LatencySnapshot};

/// The longest method name accepted.
const MAX_METHOD_BYTES: usize = 128;

/// One app's RPC routing and bounds, as configured.
#[derive(Debug, Clone)]
pub struct RpcSettings {
    /// Method prefix → URL, longest prefix first; the prefix `""` catches every method.
    pub routes: Vec<(String, reqwest::Url)>,
    /// How long one call may take, waiting for a free slot included.
    pub timeout: Duration,
    /// Most calls one connection may have in flight; beyond it calls fail at once.
    pub max_in_flight_per_connection: usize,
    /// Most calls the app may have in flight; beyond it calls wait (within `timeout`).
    pub max_in_flight: usize,
}

/// A configured RPC proxy for one app.
pub struct RpcProxy {
    settings: RpcSettings,
    backend: BackendClient,
    in_flight: Semaphore,
    counters: RpcCounters,
}

/// How an app's RPC calls fare, for `GET /v1/tasks`.
#[derive(Debug, Default)]
pub struct RpcCounters {
    /// Calls waiting for one of the app's `max_in_flight` slots.
    pub waiting: Gauge,
    /// Calls sent to the backend and not yet answered.
    pub in_flight: Gauge,
    /// How each call ended and how long it took, waiting for a slot included: the app's
    /// `rpc` record, which `/metrics` reads too.
    pub calls: Arc<CallRecord>,
}

/// A copy of an app's [`RpcCounters`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RpcQueue {
    /// Calls waiting for a slot.
    pub queued: u64,
    /// Calls at the backend.
    pub in_flight: u64,
    /// The app's limit on calls in flight.
    pub max_in_flight: usize,
    /// Calls answered with a result since start.
    pub succeeded: u64,
    /// Calls that got no result since start.
    pub failed: u64,
    /// Of those, calls whose deadline passed.
    pub timeouts: u64,
    /// How long calls took.
    pub latency: LatencySnapshot,
}

impl std::fmt::Debug for RpcProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcProxy({} routes)", self.settings.routes.len())
    }
}

/// One call, as the backend receives it (the JSON body of the POST).
#[derive(Debug, Serialize)]
pub struct RpcCall<'a> {
    /// The caller's app.
    pub app: &'a str,
    /// The caller's user id, as authenticated.
    pub user: &'a str,
    /// The caller's connection (the `conn` of its `welcome`), for a later push or kick.
    pub conn: &'a str,
    /// What the caller's credential said about it beyond its id (a token's `info`
    /// claim, a webhook's `info` answer), when anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<&'a serde_json::Value>,
    /// The method called, e.g. `live.user.like`.
    pub method: &'a str,
    /// The call's arguments, as the client sent them.
    pub data: &'a RawValue,
}

/// Why a call got no answer; each becomes an `error` frame with [`RpcError::code`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    /// The app has no RPC backend.
    #[error("this app does not take rpc calls")]
    NotEnabled,
    /// The method name is malformed or no route takes it.
    #[error("{0}")]
    UnknownMethod(String),
    /// The connection already has as many calls in flight as allowed.
    #[error("too many calls in flight on this connection (at most {0}): wait for replies")]
    Busy(usize),
    /// No answer within the deadline.
    #[error("the backend did not answer within {0} ms")]
    Timeout(u128),
    /// The backend could not be reached.
    #[error("the backend is unreachable")]
    Unavailable,
    /// The backend answered 2xx with something that is not JSON (or too large).
    #[error("the backend's answer is not JSON: {0}")]
    BadAnswer(String),
    /// The backend answered with an error status; `message` is its own when it gave one.
    #[error("{message}")]
    Failed {
        /// The backend's HTTP status.
        status: u16,
        /// Its error message, or a description of the status.
        message: String,
    },
}

impl RpcError {
    /// The `code` of the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotEnabled => "rpc_not_enabled",
            Self::UnknownMethod(_) => "unknown_method",
            Self::Busy(_) => "rpc_busy",
            Self::Timeout(_) => "rpc_timeout",
            Self::Unavailable => "rpc_unavailable",
            Self::BadAnswer(_) => "rpc_bad_answer",
            Self::Failed { .. } => "rpc_failed",
        }
    }
}

/// A backend's error answer: `{"error":"..."}`, `{"error":{"message":"..."}}` or
/// `{"message":"..."}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    error: Option<ErrorDetail>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorDetail {
    Text(String),
    Object { message: String },
}

impl RpcProxy {
    /// A proxy as `settings` says, calling through `backend`, recording its calls in
    /// `calls`.
    pub fn new(settings: RpcSettings, backend: BackendClient, calls: Arc<CallRecord>) -> Self {
        Self {
            in_flight: Semaphore::new(settings.max_in_flight.max(1)),
            settings,
            backend,
            counters: RpcCounters {
                waiting: Gauge::default(),
                in_flight: Gauge::default(),
                calls,
            },
        }
    }

    /// How its calls fare now.
    pub fn queue(&self) -> RpcQueue {
        let c = &self.counters;
        RpcQueue {
            queued: c.waiting.get(),
            in_flight: c.in_flight.get(),
            max_in_flight: self.settings.max_in_flight,
            succeeded: c.calls.count("ok"),
            failed: c.calls.total() - c.calls.count("ok"),
            timeouts: c.calls.count("timeout"),
            latency: c.calls.latency(),
        }
    }

    /// The configuration the proxy runs with.
    pub fn settings(&self) -> &RpcSettings {
        &self.settings
    }

    /// The URL that takes `method`, or why none does.
    fn route(&self, method: &str) -> Result<&reqwest::Url, RpcError> {
        let valid = !method.is_empty()
            && method.len() <= MAX_METHOD_BYTES
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
        if !valid {
            return Err(RpcError::UnknownMethod(format!(
                "method must be 1-{MAX_METHOD_BYTES} characters from A-Z a-z 0-9 . _ - /"
            )));
        }
        self.settings
            .routes
            .iter()
            .find(|(prefix, _)| method.starts_with(prefix.as_str()))
            .map(|(_, url)| url)
            .ok_or_else(|| RpcError::UnknownMethod(format!("no backend takes method {method:?}")))
    }

    /// Make `call` and return the backend's JSON answer, taken apart.
    pub async fn call(&self, call: &RpcCall<'_>) -> Result<RpcAnswer, RpcError> {
        let url = self.route(call.method)?;
        let body = serde_json::to_vec(call).map_err(|e| RpcError::BadAnswer(e.to_string()))?;
        let deadline = self.settings.timeout;
        let counters = &self.counters;
        let call = tokio::time::timeout(deadline, async {
            let waiting = counters.waiting.hold();
            let _slot = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| RpcError::Unavailable)?;
            drop(waiting);
            let _in_flight = counters.in_flight.hold();
            match self.backend.post(url, body).await {
                Ok((status, answer)) => judge(status, answer),
                Err(CallError::Unreachable) => Err(RpcError::Unavailable),
                Err(error @ CallError::TooLarge) => Err(RpcError::BadAnswer(error.to_string())),
            }
        });
        counters
            .calls
            .time(call, |answer| match answer {
                Err(_) => "timeout",
                Ok(Ok(_)) => "ok",
                Ok(Err(RpcError::Unavailable)) => "unreachable",
                Ok(Err(RpcError::Failed { .. })) => "http_error",
                Ok(Err(_)) => "bad_answer",
            })
            .await
            .unwrap_or(Err(RpcError::Timeout(deadline.as_millis())))
    }
}

/// The answer a backend's `status` and `body` amount to.
pub fn judge(status: u16, body: Vec<u8>) -> Result<RpcAnswer, RpcError> {
    if (200..300).contains(&status) {
        if body.is_empty() {
            return Ok(RpcAnswer {
                reply: RawValue::NULL.to_owned(),
                close_notes: None,
            });
        }
        crate::json_depth::check(&body).map_err(|e| RpcError::BadAnswer(e.to_string()))?;
        let text = String::from_utf8(body).map_err(|_| RpcError::BadAnswer("not UTF-8".into()))?;
        return rpc_answer::parse(text).map_err(|e| RpcError::BadAnswer(e.0));
    }
    let message = serde_json::from_slice::<ErrorAnswer>(&body)
        .ok()
        .and_then(|answer| match answer.error {
            Some(ErrorDetail::Text(text)) => Some(text),
            Some(ErrorDetail::Object { message }) => Some(message),
            None => answer.message,
        })
        .map(|text| text.chars().take(500).collect())
        .unwrap_or_else(|| format!("the backend answered HTTP {status}"));
    Err(RpcError::Failed { status, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(routes: &[(&str, &str)]) -> RpcProxy {
        let mut routes: Vec<(String, reqwest::Url)> = routes
            .iter()
            .map(|(p, u)| (p.to_string(), reqwest::Url::parse(u).unwrap()))
            .collect();
        routes.sort_by_key(|route| std::cmp::Reverse(route.0.len()));
        RpcProxy::new(
            RpcSettings {
                routes,
                timeout: Duration::from_secs(1),
                max_in_flight_per_connection: 1,
                max_in_flight: 1,
            },
            BackendClient::new(crate::outbound::client().unwrap(), "secret".into()),
            Arc::default(),
        )
    }

    /// An answer is forwarded to the client as the backend wrote it, so its nesting is
    /// bounded here, as every other JSON pushhub passes on.
    #[test]
    fn an_answer_nested_too_deep_is_a_bad_answer() {
        let depth = crate::json_depth::MAX_DEPTH;
        let fine = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(judge(200, fine.into_bytes()).is_ok());
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            judge(200, deep.into_bytes()),
            Err(RpcError::BadAnswer(message)) if message.contains("nested deeper")
        ));
    }

    #[test]
    fn the_longest_prefix_routes_a_method() {
        let proxy = proxy(&[
            ("live.", "http://127.0.0.1:1/live"),
            ("live.admin.", "http://127.0.0.1:1/admin"),
        ]);
        assert_eq!(proxy.route("live.admin.ban").unwrap().path(), "/admin");
        assert_eq!(proxy.route("live.user.like").unwrap().path(), "/live");
        assert!(matches!(
            proxy.route("shop.buy"),
            Err(RpcError::UnknownMethod(_))
        ));
        for bad in ["", "a b", "x\n", &"m".repeat(129)] {
            assert!(proxy.route(bad).is_err(), "{bad:?}");
        }
        let catch_all = self::proxy(&[("", "http://127.0.0.1:1/rpc")]);
        assert_eq!(catch_all.route("any.thing").unwrap().path(), "/rpc");
    }

    #[test]
    fn answers_and_errors() {
        assert_eq!(
            judge(200, br#"{"likes":3}"#.to_vec()).unwrap().reply.get(),
            r#"{"likes":3}"#
        );
        assert_eq!(judge(204, Vec::new()).unwrap().reply.get(), "null");
        assert!(matches!(
            judge(200, b"<html>".to_vec()),
            Err(RpcError::BadAnswer(_))
        ));
        assert_eq!(
            judge(422, br#"{"error":"not enough coins"}"#.to_vec()).unwrap_err(),
            (RpcError::Failed {
                status: 422,
                message: "not enough coins".into()
            })
        );
        assert_eq!(
            judge(
                400,
                br#"{"error":{"code":"x","message":"bad room"}}"#.to_vec()
            )
            .unwrap_err(),
            (RpcError::Failed {
                status: 400,
                message: "bad room".into()
            })
        );
        assert_eq!(
            judge(500, b"oops".to_vec()).unwrap_err().to_string(),
            "the backend answered HTTP 500"
        );
    }
}
