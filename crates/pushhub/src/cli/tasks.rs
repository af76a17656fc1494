//! `pushhub tasks`: the server's outgoing work at a glance (seed 003's `task status`):
//! timers, cron jobs, and each app's RPC calls and lifecycle webhook queue, from
//! `GET /v1/tasks`.

use std::fmt::Write as _;

use reqwest::Method;
use serde_json::Value;

use super::{cell, table, text, utc, ApiClient, CliError};

impl ApiClient {
    /// `pushhub tasks`: the answer of `GET /v1/tasks`, and its summary as text.
    pub async fn tasks(&self) -> Result<(Value, String), CliError> {
        let answer = self.call(Method::GET, "/v1/tasks", &[]).await?;
        let text = tasks_report(&answer);
        Ok((answer, text))
    }
}

/// A latency as `12.5 ms avg, 40.1 ms max`, or `-` before any call.
fn latency(value: &Value) -> String {
    match value["count"].as_u64() {
        Some(n) if n > 0 => format!(
            "{:.1} ms avg, {:.1} ms max",
            value["avg_ms"].as_f64().unwrap_or(0.0),
            value["max_ms"].as_f64().unwrap_or(0.0)
        ),
        _ => "-".into(),
    }
}

/// `GET /v1/tasks` as text: a paragraph for timers and cron, a table of queues by app.
pub fn tasks_report(answer: &Value) -> String {
    let timers = &answer["timers"];
    let cron = &answer["cron"];
    let mut out = String::new();
    let next_due = match &timers["next_due_ms"] {
        Value::Null => "-".to_owned(),
        due => utc(due),
    };
    let _ = writeln!(
        out,
        "timers: {} pending, {} running, {} failed, {} retries, {} succeeded; next due {next_due}; callbacks {}",
        text(&timers["pending"]),
        text(&timers["running"]),
        text(&timers["failed"]),
        text(&timers["retries"]),
        text(&timers["succeeded"]),
        latency(&timers["latency"])
    );
    if timers["store_damaged"] == true {
        out.push_str("timers: the store is DAMAGED; see `pushhub store check`\n");
    }
    let _ = writeln!(
        out,
        "cron:   {} jobs ({} scheduled), {} running, {} runs, {} failed, {} skipped",
        text(&cron["jobs"]),
        text(&cron["scheduled"]),
        text(&cron["running"]),
        text(&cron["runs"]),
        text(&cron["failed"]),
        text(&cron["skipped"])
    );
    let mut rows = Vec::new();
    for app in answer["apps"].as_array().into_iter().flatten() {
        let rpc = &app["rpc"];
        if !rpc.is_null() {
            rows.push(vec![
                cell(&text(&app["app"])),
                "rpc".into(),
                text(&rpc["queued"]),
                format!(
                    "{}/{}",
                    text(&rpc["in_flight"]),
                    text(&rpc["max_in_flight"])
                ),
                text(&rpc["succeeded"]),
                format!(
                    "{} ({} timeouts)",
                    text(&rpc["failed"]),
                    text(&rpc["timeouts"])
                ),
                "-".into(),
                latency(&rpc["latency"]),
            ]);
        }
        let hook = &app["webhook"];
        if !hook.is_null() {
            rows.push(vec![
                cell(&text(&app["app"])),
                "webhook".into(),
                format!("{}/{}", text(&hook["queued"]), text(&hook["max_queued"])),
                text(&hook["in_flight"]),
                text(&hook["sent"]),
                format!(
                    "{} ({} dropped)",
                    text(&hook["failed"]),
                    text(&hook["dropped"])
                ),
                text(&hook["retries"]),
                latency(&hook["latency"]),
            ]);
        }
    }
    if rows.is_empty() {
        out.push_str("no app has an RPC backend or a lifecycle webhook\n");
    } else {
        out.push('\n');
        out.push_str(&table(
            &[
                "APP",
                "QUEUE",
                "QUEUED",
                "IN FLIGHT",
                "DONE",
                "FAILED",
                "RETRIES",
                "LATENCY",
            ],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tasks_read_as_a_summary_and_a_table() {
        let lat = json!({"count": 2, "avg_ms": 12.5, "max_ms": 20.0});
        let answer = json!({
            "timers": {"pending": 3, "running": 1, "failed": 2, "retries": 4, "succeeded": 9,
                "next_due_ms": 0, "latency": lat, "store_damaged": false},
            "cron": {"jobs": 1, "scheduled": 1, "running": 0, "runs": 5, "failed": 1, "skipped": 0},
            "apps": [{"app": "demo", "rpc": null, "webhook": {"queued": 1, "max_queued": 1000,
                "in_flight": 5, "sent": 10, "failed": 5, "dropped": 0, "retries": 3,
                "latency": {"count": 0}}}]});
        let out = tasks_report(&answer);
        assert!(
            out.starts_with("timers: 3 pending, 1 running, 2 failed, 4 retries, 9 succeeded; next due 1970-01-01 00:00:00Z; callbacks 12.5 ms avg, 20.0 ms max\n"),
            "{out}"
        );
        assert!(out.contains("cron:   1 jobs (1 scheduled)"), "{out}");
        assert!(
            out.contains("demo  webhook  1/1000  5          10    5 (0 dropped)  3        -"),
            "{out}"
        );
    }
}
