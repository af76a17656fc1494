//! Making a timer's or a cron job's HTTP request and summing up the answer.
//!
//! Calls go through a client made like the server's other outbound clients
//! ([`crate::outbound`]: pooled connections, a connect deadline, no redirects), plus the
//! target guard ([`super::targets`]): the URL is checked before each call and every
//! address a host name resolves to is checked before it is connected to. The client
//! ignores `HTTP_PROXY` and friends: a proxy would resolve names itself, out of the
//! guard's sight. Each call is bounded by its timeout, body included, and reads at most
//! [`SNIPPET_BYTES`] of the answer (or what the result log keeps, if that is more).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};

use super::targets::{self, GuardedResolver, Refused, TargetPolicy};
use crate::outbound::OutboundError;
use crate::store::CallbackRequest;

/// Most bytes of an answer kept for the API (a timer's last attempt, a job's last run).
pub const SNIPPET_BYTES: usize = 1024;

/// The answer's headers the result log records: what tells why a call went as it did
/// (what came back, where a redirect pointed, when to come back), as jdserver's
/// trace.log showed the answer.
pub const LOGGED_HEADERS: [&str; 4] = ["content-type", "content-length", "location", "retry-after"];

/// The header that carries the timer's id, so a target can recognise a repeated call
/// (at-least-once delivery) and drop it.
pub const TIMER_ID_HEADER: &str = "x-pushhub-timer-id";

/// The header that carries the attempt number (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-pushhub-attempt";

/// The header that carries a cron job's name.
pub const JOB_HEADER: &str = "x-pushhub-job";

/// The header that carries a cron run's number (1 for the job's first run), so a target
/// can recognise a run made again after a crash.
pub const RUN_HEADER: &str = "x-pushhub-run";

/// The header that says why a cron run happened: `schedule`, `manual` or `catch_up`.
pub const TRIGGER_HEADER: &str = "x-pushhub-trigger";

/// Every header pushhub sets on its calls: a timer or job may not set them itself.
pub const OWN_HEADERS: [&str; 5] = [
    TIMER_ID_HEADER,
    ATTEMPT_HEADER,
    JOB_HEADER,
    RUN_HEADER,
    TRIGGER_HEADER,
];

/// What one call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// The answer's status, when there was an answer.
    pub status: Option<u16>,
    /// The answer's [`LOGGED_HEADERS`] that it carried, in that order.
    pub headers: Vec<(&'static str, String)>,
    /// Why there was no answer.
    pub error: Option<String>,
    /// The start of the answer's body, as many bytes as the executor reads.
    pub body: Vec<u8>,
    /// How long the call took.
    pub duration: Duration,
    /// The target guard refused the call (`error` says why): final, since trying again
    /// would be refused again.
    pub refused: bool,
}

impl CallResult {
    /// The first `limit` bytes of the answer's body as text (invalid sequences
    /// replaced); `None` when no answer came.
    pub fn body_text(&self, limit: usize) -> Option<String> {
        self.status
            .map(|_| snippet_text(&self.body[..self.body.len().min(limit)], limit))
    }

    /// The start of the answer's body as the API shows it.
    pub fn response(&self) -> Option<String> {
        self.body_text(SNIPPET_BYTES)
    }
}

/// An answer as far as it was read.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// Why a call got no answer.
enum Failure {
    /// The guard refused the target.
    Refused(String),
    /// Anything else: connection, timeout, an invalid request.
    Other(String),
}

/// Makes timers' and cron jobs' calls.
#[derive(Debug, Clone)]
pub struct Executor {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
    read_bytes: usize,
}

impl Executor {
    /// Calls that keep to `policy`, reading the first `log_bytes` of each answer for the
    /// result log (and at least [`SNIPPET_BYTES`], for the API).
    pub fn new(policy: Arc<TargetPolicy>, log_bytes: usize) -> Result<Self, OutboundError> {
        let client = crate::outbound::builder()?
            .no_proxy()
            .dns_resolver(GuardedResolver::new(policy.clone()))
            .build()?;
        Ok(Self {
            client,
            policy,
            read_bytes: log_bytes.max(SNIPPET_BYTES),
        })
    }

    /// Make `request`, adding pushhub's own headers `marks` (a timer's id and attempt, a
    /// job's name and run); recorded as a call of `kind` (`timer`, `cron`), which `/metrics`
    /// and the timers' latency read.
    pub async fn call(
        &self,
        kind: &'static str,
        request: &CallbackRequest,
        marks: &[(&'static str, String)],
    ) -> CallResult {
        let started = Instant::now();
        let outcome = self.send(request, marks).await;
        let duration = started.elapsed();
        let counted = match &outcome {
            Ok(answer) if (200..300).contains(&answer.status) => "ok",
            Ok(_) => "http_error",
            Err(Failure::Refused(_)) => "refused",
            Err(Failure::Other(_)) => "unreachable",
        };
        crate::work_counters::calls(kind, None).record(counted, duration);
        let failed = |error, refused| CallResult {
            status: None,
            headers: Vec::new(),
            error: Some(error),
            body: Vec::new(),
            duration,
            refused,
        };
        match outcome {
            Ok(answer) => CallResult {
                status: Some(answer.status),
                headers: answer.headers,
                error: None,
                body: answer.body,
                duration,
                refused: false,
            },
            Err(Failure::Refused(error)) => failed(error, true),
            Err(Failure::Other(error)) => failed(error, false),
        }
    }

    async fn send(
        &self,
        spec: &CallbackRequest,
        marks: &[(&'static str, String)],
    ) -> Result<Answer, Failure> {
        let url = reqwest::Url::parse(&spec.url)
            .map_err(|e| Failure::Other(format!("invalid URL {:?}: {e}", spec.url)))?;
        // Again at call time: the allowed targets may have changed since the create.
        self.policy
            .check_url(&url)
            .map_err(|refused| Failure::Refused(refused.to_string()))?;
        let port = url.port_or_known_default().unwrap_or(0);
        let method = reqwest::Method::from_bytes(spec.method.as_bytes())
            .map_err(|_| Failure::Other(format!("invalid method {:?}", spec.method)))?;
        let mut request = self
            .client
            .request(method, url)
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
        for (name, value) in marks {
            request = request.header(*name, value);
        }
        if let Some(body) = &spec.body {
            request = request.body(body.clone());
        }
        let sent = targets::for_port(port, request.send()).await;
        let mut response = sent.map_err(|e| match refusal(&e) {
            Some(refused) => Failure::Refused(refused.to_string()),
            None => Failure::Other(describe(&e, spec.timeout_ms)),
        })?;
        let status = response.status().as_u16();
        let headers = LOGGED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = response.headers().get(*name)?;
                Some((
                    *name,
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                ))
            })
            .collect();
        let mut body = Vec::new();
        while body.len() < self.read_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status came; a body cut short does not change the verdict.
                Err(_) => break,
            }
        }
        body.truncate(self.read_bytes);
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// The guard's refusal behind a request error, if that is what it was.
fn refusal(error: &reqwest::Error) -> Option<&Refused> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
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

/// `bytes` as text (invalid sequences replaced), at most `limit` bytes long.
fn snippet_text(bytes: &[u8], limit: usize) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::own_listeners::OwnListeners;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn get(url: String) -> CallbackRequest {
        CallbackRequest {
            method: "GET".into(),
            url,
            headers: Vec::new(),
            body: None,
            timeout_ms: 5_000,
        }
    }

    /// The resolver learns each call's port, so `localhost` is refused on pushhub's own
    /// port and called on a backend's, and an address reaching pushhub is refused at call
    /// time too (the policy may have changed since the create).
    #[tokio::test]
    async fn calls_reaching_pushhub_are_refused_and_others_are_made() {
        let pushhub = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_port = backend.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = backend.accept().await {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        let own = OwnListeners::new([pushhub.local_addr().unwrap()]);
        let executor =
            Executor::new(Arc::new(TargetPolicy::default().refusing_own(own)), 0).unwrap();
        let made = executor
            .call(
                "timer",
                &get(format!("http://localhost:{backend_port}/hook")),
                &[],
            )
            .await;
        assert_eq!((made.status, made.error), (Some(204), None));
        let pushhub_port = pushhub.local_addr().unwrap().port();
        for url in [
            format!("http://localhost:{pushhub_port}/v1/push"),
            format!("http://127.0.0.1:{pushhub_port}/v1/push"),
            format!("http://[::ffff:127.0.0.1]:{pushhub_port}/v1/push"),
        ] {
            let refused = executor.call("timer", &get(url.clone()), &[]).await;
            assert!(refused.refused, "{url}: {:?}", refused.error);
        }
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(200), pushhub.accept()).await;
        assert!(accepted.is_err(), "nothing connected to pushhub's listener");
    }
}
