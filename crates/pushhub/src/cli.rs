//! The operator commands `pushhub cron ...` and `pushhub timers ...` (swoole-push's
//! `crontab show|stop|resume|run`, seed 003): a client of the API listener that prints
//! readable tables, or the API's JSON with `--json`.
//!
//! They go through the HTTP API rather than the data directory, so they work on a
//! running server (which holds the store's lock) and on a remote one, under the same API
//! keys as a backend.

mod control;
mod people;
mod tasks;
mod upgrade;

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;

/// How long one command may wait for the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The widest a table cell gets; longer text is cut with `…`.
const MAX_CELL_CHARS: usize = 48;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--api` is not an http(s) URL.
    #[error("--api {0:?} is not an http:// or https:// URL")]
    BadApiUrl(String),
    /// No answer from the server.
    #[error("cannot reach the API at {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server refused (its error code and message, and each of its errors when it
    /// lists them, as a refused reload does).
    #[error("{code}: {message} (HTTP {status}){}", details.iter().map(|d| format!("\n  {d}")).collect::<String>())]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's error code (`job_not_found`, `missing_api_key`...).
        code: String,
        /// The API's message.
        message: String,
        /// Every error the answer lists (`location: key: message`), if it lists them.
        details: Vec<String>,
    },
    /// The server accepted a stop but did not go.
    #[error("{0}")]
    StillRunning(String),
    /// The command named something the server does not have (a user who is not online).
    #[error("{0}")]
    NotFound(String),
    /// The answer is not the API's JSON (is `--api` pointing at pushhub's API listener?).
    #[error("the answer from {url} is not pushhub's (HTTP {status}); is --api the API listener?")]
    NotPushhub {
        /// Where.
        url: String,
        /// HTTP status.
        status: u16,
    },
}

pub use people::{KickCommand, PushCommand, UsersCommand};

/// What `pushhub cron` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronCommand {
    /// Every job of the app, with next run, last run and last result.
    List,
    /// One job in full.
    Show(String),
    /// Stop its scheduled runs (swoole-push's `crontab stop`).
    Pause(String),
    /// Start them again.
    Resume(String),
    /// Run it now.
    Run(String),
    /// Delete it.
    Delete(String),
}

/// What `pushhub timers` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerCommand {
    /// One page of the app's timers, optionally in one state.
    List {
        /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
        state: Option<String>,
        /// Most timers shown.
        limit: Option<usize>,
    },
    /// One timer in full.
    Show(u64),
    /// Cancel a pending or running timer.
    Cancel(u64),
}

/// A client of one server's API listener.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    app: Option<String>,
    key: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the API at `api` (`http://127.0.0.1:8082`), acting for `app` (else
    /// the server decides: the key's app, or its only app) with API key `key`.
    pub fn new(api: &str, app: Option<String>, key: Option<String>) -> Result<Self, CliError> {
        let parsed = Url::parse(api).map_err(|_| CliError::BadApiUrl(api.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::BadApiUrl(api.to_owned()));
        }
        let unreachable = |reason: String| CliError::Unreachable {
            url: api.to_owned(),
            reason,
        };
        let http = crate::outbound::builder()
            .map_err(|e| unreachable(e.to_string()))?
            .user_agent(concat!("pushhub-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            base: api.trim_end_matches('/').to_owned(),
            app,
            key: key.filter(|k| !k.is_empty()),
            http,
        })
    }

    /// Make one API call; the answer's JSON, or the API's error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        self.call_with(method, path, query, None).await
    }

    /// Make one API call with `body` as its JSON body, if given; the answer's JSON, or the
    /// API's error.
    async fn call_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let text = format!("{}{path}", self.base);
        let mut url = Url::parse(&text).map_err(|_| CliError::BadApiUrl(self.base.clone()))?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(app) = &self.app {
                pairs.append_pair("app", app);
            }
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let shown = url.to_string();
        let mut request = self.http.request(method, url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| CliError::Unreachable {
            url: shown.clone(),
            reason: root_cause(&e),
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| CliError::Unreachable {
            url: shown.clone(),
            reason: root_cause(&e),
        })?;
        let value: Value = serde_json::from_slice(&body).map_err(|_| CliError::NotPushhub {
            url: shown.clone(),
            status,
        })?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        match (
            value["error"]["code"].as_str(),
            value["error"]["message"].as_str(),
        ) {
            // No such endpoint: the client listener, or another pushhub version.
            (Some("not_found"), _) => Err(CliError::NotPushhub { url: shown, status }),
            (Some(code), Some(message)) => Err(CliError::Api {
                status,
                code: code.to_owned(),
                message: message.to_owned(),
                details: value["error"]["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(error_line)
                    .collect(),
            }),
            _ => Err(CliError::NotPushhub { url: shown, status }),
        }
    }

    /// Run a `pushhub cron` command; the answer, and the text to print for it.
    pub async fn cron(&self, command: &CronCommand) -> Result<(Value, String), CliError> {
        let job_path = |name: &str, action: &str| format!("/v1/cron/{}{action}", segment(name));
        let answer = match command {
            CronCommand::List => {
                let value = self.call(Method::GET, "/v1/cron", &[]).await?;
                let text = jobs_table(&value);
                return Ok((value, text));
            }
            CronCommand::Show(name) => {
                let value = self.call(Method::GET, &job_path(name, ""), &[]).await?;
                let text = job_details(&value);
                return Ok((value, text));
            }
            CronCommand::Pause(name) => {
                self.call(Method::POST, &job_path(name, "/pause"), &[])
                    .await?
            }
            CronCommand::Resume(name) => {
                self.call(Method::POST, &job_path(name, "/resume"), &[])
                    .await?
            }
            CronCommand::Run(name) => {
                self.call(Method::POST, &job_path(name, "/run"), &[])
                    .await?
            }
            CronCommand::Delete(name) => {
                self.call(Method::DELETE, &job_path(name, ""), &[]).await?
            }
        };
        let job = text(&answer["name"]);
        let app = text(&answer["app"]);
        let line = match command {
            CronCommand::Pause(_) => format!("paused {job} (app {app})"),
            CronCommand::Resume(_) => format!(
                "resumed {job} (app {app}); next run {}",
                time_or(&answer["next_run"], "none")
            ),
            CronCommand::Run(_) => format!(
                "started run #{} of {job} (app {app})",
                text(&answer["runs"])
            ),
            _ => format!("deleted {job} (app {app})"),
        };
        Ok((answer, line + "\n"))
    }

    /// Run a `pushhub timers` command; the answer, and the text to print for it.
    pub async fn timers(&self, command: &TimerCommand) -> Result<(Value, String), CliError> {
        match command {
            TimerCommand::List { state, limit } => {
                let mut query = Vec::new();
                if let Some(state) = state {
                    query.push(("state", state.clone()));
                }
                if let Some(limit) = limit {
                    query.push(("limit", limit.to_string()));
                }
                let value = self.call(Method::GET, "/v1/timers", &query).await?;
                let text = timers_table(&value);
                Ok((value, text))
            }
            TimerCommand::Show(id) => {
                let value = self
                    .call(Method::GET, &format!("/v1/timers/{id}"), &[])
                    .await?;
                let text = timer_details(&value);
                Ok((value, text))
            }
            TimerCommand::Cancel(id) => {
                let value = self
                    .call(Method::DELETE, &format!("/v1/timers/{id}"), &[])
                    .await?;
                Ok((value, format!("cancelled timer {id}\n")))
            }
        }
    }
}

/// One of the errors an API answer lists, as `location: key: message`.
fn error_line(error: &Value) -> String {
    [&error["location"], &error["key"], &error["message"]]
        .into_iter()
        .filter_map(Value::as_str)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The innermost cause of a request error: the part that says what went wrong.
fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `name` as one path segment: characters other than `A-Z a-z 0-9 _ . -` escaped.
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A JSON value as table text: strings bare, `null` as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time from the API, as `2026-11-26 09:00:00+01:00`; `fallback` for `null`.
fn time_or(value: &Value, fallback: &str) -> String {
    value
        .as_str()
        .map_or_else(|| fallback.to_owned(), |t| t.replacen('T', " ", 1))
}

/// Unix milliseconds as `2026-11-26 08:00:00Z`.
fn utc(value: &Value) -> String {
    value
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "-".into(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

/// `text` cut to [`MAX_CELL_CHARS`].
fn cell(text: &str) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= MAX_CELL_CHARS {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MAX_CELL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Rows under a header, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, value) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths[i].saturating_sub(value.chars().count());
            text.push_str(value);
            text.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A run's result in a few words: `ok 200 (4 ms)`, `failed: HTTP 503 (12 ms)`.
fn outcome(run: &Value) -> String {
    if run.is_null() {
        return "-".into();
    }
    let took = format!("({} ms)", text(&run["duration_ms"]));
    match run["outcome"].as_str() {
        Some("succeeded") => format!("ok {} {took}", text(&run["status"])),
        _ => format!("failed: {} {took}", text(&run["error"])),
    }
}

/// A job's state: `paused`, `running` (a run in flight) or `active`.
fn job_state(job: &Value) -> &'static str {
    if job["paused"] == true {
        "paused"
    } else if job["running"].as_u64().unwrap_or(0) > 0 {
        "running"
    } else {
        "active"
    }
}

/// `GET /v1/cron` as a table.
pub fn jobs_table(answer: &Value) -> String {
    let jobs = answer["jobs"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        return format!("no cron jobs in app {}\n", text(&answer["app"]));
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            vec![
                text(&job["name"]),
                text(&job["schedule"]),
                text(&job["time_zone"]),
                job_state(job).to_owned(),
                time_or(&job["next_run"], "-"),
                time_or(&job["last_run"]["started"], "-"),
                cell(&outcome(&job["last_run"])),
                text(&job["runs"]),
                text(&job["skipped"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "SCHEDULE",
            "TIME ZONE",
            "STATE",
            "NEXT RUN",
            "LAST RUN",
            "LAST RESULT",
            "RUNS",
            "SKIPPED",
        ],
        &rows,
    )
}

/// One job, a field a line.
pub fn job_details(job: &Value) -> String {
    let last = &job["last_run"];
    let last_run = if last.is_null() {
        "-".to_owned()
    } else {
        format!(
            "#{} ({}) at {}: {}",
            text(&last["number"]),
            text(&last["trigger"]),
            time_or(&last["started"], "-"),
            outcome(last)
        )
    };
    let fields = [
        ("name", text(&job["name"])),
        ("app", text(&job["app"])),
        ("schedule", text(&job["schedule"])),
        ("time zone", text(&job["time_zone"])),
        ("state", job_state(job).to_owned()),
        (
            "request",
            format!("{} {}", text(&job["method"]), text(&job["url"])),
        ),
        ("overlap", text(&job["overlap"])),
        ("next run", time_or(&job["next_run"], "-")),
        ("last run", last_run),
        (
            "runs",
            format!(
                "{} ({} failed, {} skipped)",
                text(&job["runs"]),
                text(&job["failed"]),
                text(&job["skipped"])
            ),
        ),
    ];
    let mut out = String::new();
    for (name, value) in fields {
        let _ = writeln!(out, "{:<10} {value}", format!("{name}:"));
    }
    out
}

/// `GET /v1/timers` as a table.
pub fn timers_table(answer: &Value) -> String {
    let timers = answer["timers"].as_array().cloned().unwrap_or_default();
    if timers.is_empty() {
        return "no timers\n".into();
    }
    let rows: Vec<Vec<String>> = timers
        .iter()
        .map(|timer| {
            let last = &timer["last_attempt"];
            let last = if last.is_null() {
                "-".to_owned()
            } else {
                match (&last["status"], &last["error"]) {
                    (_, Value::String(error)) => error.clone(),
                    (status, _) => text(status),
                }
            };
            vec![
                text(&timer["id"]),
                text(&timer["state"]),
                utc(&timer["due_ms"]),
                text(&timer["attempts"]),
                cell(&last),
                cell(&format!(
                    "{} {}",
                    text(&timer["method"]),
                    text(&timer["url"])
                )),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "STATE", "DUE (UTC)", "ATTEMPTS", "LAST", "REQUEST"],
        &rows,
    );
    if let Some(next) = answer["next_cursor"].as_str() {
        let _ = writeln!(out, "more: the next page starts after timer {next}");
    }
    out
}

/// One timer, a field a line.
pub fn timer_details(timer: &Value) -> String {
    let last = &timer["last_attempt"];
    let last = if last.is_null() {
        "-".to_owned()
    } else {
        format!(
            "#{} at {}: {} ({} ms)",
            text(&last["number"]),
            utc(&last["started_ms"]),
            match &last["error"] {
                Value::String(error) => error.clone(),
                _ => text(&last["status"]),
            },
            text(&last["duration_ms"])
        )
    };
    // An interval timer's calls are ticks, counted against `times` (or endless), not
    // attempts against a retry policy.
    let (calls, every) = match &timer["interval_ms"] {
        Value::Null => (
            format!(
                "{} of {}",
                text(&timer["attempts"]),
                text(&timer["retry"]["max_attempts"])
            ),
            None,
        ),
        every => (
            match &timer["times"] {
                Value::Null => format!("{} (until cancelled)", text(&timer["attempts"])),
                times => format!("{} of {}", text(&timer["attempts"]), text(times)),
            },
            Some(("every", format!("{} ms", text(every)))),
        ),
    };
    let fields = [
        Some(("id", text(&timer["id"]))),
        Some(("app", text(&timer["app"]))),
        Some(("state", text(&timer["state"]))),
        Some((
            "request",
            format!("{} {}", text(&timer["method"]), text(&timer["url"])),
        )),
        every,
        Some(("due", utc(&timer["due_ms"]))),
        Some(("created", utc(&timer["created_ms"]))),
        Some(("attempts", calls)),
        Some(("last", last)),
    ];
    let mut out = String::new();
    for (name, value) in fields.into_iter().flatten() {
        let _ = writeln!(out, "{:<9} {value}", format!("{name}:"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_line_up_and_cut_long_cells() {
        let out = table(
            &["A", "LONGER"],
            &[
                vec!["x".into(), "1".into()],
                vec!["wide cell".into(), "2".into()],
            ],
        );
        assert_eq!(out, "A          LONGER\nx          1\nwide cell  2\n");
        let long = cell(&"y".repeat(100));
        assert_eq!(long.chars().count(), MAX_CELL_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn jobs_and_timers_read_well() {
        let jobs = json!({"app": "demo", "jobs": [{
            "name": "cleanup", "schedule": "*/10 * * * * *", "time_zone": "Europe/Paris",
            "paused": false, "running": 0, "runs": 3, "skipped": 1, "failed": 1,
            "next_run": "2026-11-26T09:00:10+01:00",
            "last_run": {"number": 3, "trigger": "schedule", "outcome": "failed",
                "started": "2026-11-26T09:00:00.004+01:00", "duration_ms": 12,
                "status": 503, "error": "HTTP 503"},
        }]});
        let out = jobs_table(&jobs);
        assert!(out.starts_with("NAME "), "{out}");
        assert!(
            out.contains(
                "cleanup  */10 * * * * *  Europe/Paris  active  2026-11-26 09:00:10+01:00"
            ),
            "{out}"
        );
        assert!(out.contains("failed: HTTP 503 (12 ms)"), "{out}");
        assert_eq!(
            jobs_table(&json!({"app": "demo", "jobs": []})),
            "no cron jobs in app demo\n"
        );
        let details = job_details(&jobs["jobs"][0]);
        assert!(
            details.contains("runs:      3 (1 failed, 1 skipped)"),
            "{details}"
        );
        let timers = json!({"timers": [{"id": 7, "state": "pending", "due_ms": 0,
            "attempts": 0, "method": "GET", "url": "http://127.0.0.1:9/x", "last_attempt": null}],
            "next_cursor": "7"});
        let out = timers_table(&timers);
        assert!(
            out.contains(
                "7   pending  1970-01-01 00:00:00Z  0         -     GET http://127.0.0.1:9/x"
            ),
            "{out}"
        );
        assert!(
            out.ends_with("more: the next page starts after timer 7\n"),
            "{out}"
        );
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        let ticker = json!({"id": 8, "app": "demo", "state": "pending", "method": "GET",
            "url": "http://127.0.0.1:9/tick", "due_ms": 0, "created_ms": 0, "attempts": 2,
            "retry": {"max_attempts": 1}, "interval_ms": 2000, "times": 5, "last_attempt": null});
        let details = timer_details(&ticker);
        assert!(details.contains("every:    2000 ms\n"), "{details}");
        assert!(details.contains("attempts: 2 of 5\n"), "{details}");
        let endless = json!({"interval_ms": 2000, "times": null, "attempts": 2});
        assert!(timer_details(&endless).contains("attempts: 2 (until cancelled)\n"));
        let once = json!({"interval_ms": null, "attempts": 1, "retry": {"max_attempts": 5}});
        let details = timer_details(&once);
        assert!(details.contains("attempts: 1 of 5\n") && !details.contains("every"));
    }
}
