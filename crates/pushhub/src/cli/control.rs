//! `pushhub status`, `pushhub reload` and `pushhub stop [--force]` (seed 001's
//! `console.php -s status|reload|stop`): a running server's state, a reload of its
//! configuration and a graceful stop, through the admin endpoints of its API listener.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::{text, utc, ApiClient, CliError};

/// How often `pushhub stop` looks whether the server still answers.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How long past its grace `pushhub stop` waits for the server to go before saying so.
const STOP_SLACK: Duration = Duration::from_secs(10);

impl ApiClient {
    /// `pushhub status`: the answer of `GET /v1/admin/status`, and a report of it.
    pub async fn status(&self) -> Result<(Value, String), CliError> {
        let answer = self.call(Method::GET, "/v1/admin/status", &[]).await?;
        let text = status_report(&answer);
        Ok((answer, text))
    }

    /// `pushhub reload`: `POST /v1/admin/reload`. A refused reload is the API's 422,
    /// whose errors the [`CliError`] lists.
    pub async fn reload(&self) -> Result<(Value, String), CliError> {
        let answer = self.call(Method::POST, "/v1/admin/reload", &[]).await?;
        let text = reload_report(&answer);
        Ok((answer, text))
    }

    /// `pushhub stop`: `POST /v1/admin/stop`, then wait until the server no longer
    /// answers on its API listener (its grace, and some slack); an error if it still does
    /// then.
    pub async fn stop(&self, force: bool) -> Result<(Value, String), CliError> {
        let body = json!({ "force": force });
        let answer = self
            .call_with(Method::POST, "/v1/admin/stop", &[], Some(&body))
            .await?;
        let grace = Duration::from_secs_f64(answer["grace_secs"].as_f64().unwrap_or(0.0));
        let started = Instant::now();
        while self.answers().await {
            if started.elapsed() > grace + STOP_SLACK {
                return Err(CliError::StillRunning(format!(
                    "node {} accepted the stop but still answers after {} s",
                    text(&answer["node"]),
                    started.elapsed().as_secs()
                )));
            }
            tokio::time::sleep(STOP_POLL).await;
        }
        // The API listener is gone; the process itself exits once its clients and calls
        // are done, which no request can see any more.
        let node = text(&answer["node"]);
        let took = started.elapsed().as_secs_f64();
        let line = if force {
            format!(
                "node {node} is stopping now (forced): it stopped accepting after {took:.1} s and exits without waiting for connections and calls\n"
            )
        } else {
            format!(
                "node {node} is stopping: it stopped accepting after {took:.1} s and exits once its connections and calls finish, within {} s\n",
                grace.as_secs_f64()
            )
        };
        Ok((answer, line))
    }

    /// Whether the server still answers on its API listener (`/healthz`, any status).
    async fn answers(&self) -> bool {
        let url = format!("{}/healthz", self.base);
        self.http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok()
    }
}

/// Seconds as `2d 03h 04m`, `3h 04m 05s`, `4m 05s` or `5s`.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h:02}h {m:02}m"),
    }
}

/// Bytes as `12.3 MiB`.
fn mebibytes(value: &Value) -> String {
    value.as_u64().map_or_else(
        || "-".into(),
        |bytes| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)),
    )
}

/// A rate as `1.5/s published, 3.0/s delivered (last 10 s)`, or `-` just after start.
fn rate(value: &Value) -> String {
    if value.is_null() {
        return "-".into();
    }
    let per_sec = |name: &str| value[name].as_f64().unwrap_or(0.0);
    format!(
        "{:.1}/s published, {:.1}/s delivered (last {} s)",
        per_sec("published_per_sec"),
        per_sec("delivered_per_sec"),
        per_sec("window_secs")
    )
}

/// `healthy`, or `UNHEALTHY` with the problem.
fn health(part: &Value) -> String {
    if part["healthy"] == true {
        "healthy".into()
    } else {
        match part["problem"].as_str() {
            Some(problem) => format!("UNHEALTHY: {problem}"),
            None => "UNHEALTHY".into(),
        }
    }
}

/// `GET /v1/admin/status` as text, a line per concern.
pub fn status_report(status: &Value) -> String {
    let mut out = String::new();
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{:<12} {value}", format!("{name}:"));
    };
    line(
        "pushhub",
        format!(
            "{} on node {}, up {}",
            text(&status["version"]),
            text(&status["node"]),
            duration(status["uptime_secs"].as_u64().unwrap_or(0))
        ),
    );
    let kinds: Vec<String> = status["connections"]["by_kind"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kind| {
            format!(
                "{}/{} {}",
                text(&kind["transport"]),
                text(&kind["dialect"]),
                text(&kind["connections"])
            )
        })
        .collect();
    line(
        "connections",
        match kinds.is_empty() {
            true => text(&status["connections"]["total"]),
            false => format!(
                "{} ({})",
                text(&status["connections"]["total"]),
                kinds.join(", ")
            ),
        },
    );
    let apps: Vec<String> = status["users"]["by_app"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|app| format!("{} {}", text(&app["app"]), text(&app["users"])))
        .collect();
    line(
        "users",
        format!("{} ({})", text(&status["users"]["total"]), apps.join(", ")),
    );
    line(
        "messages",
        format!(
            "{}; {}",
            rate(&status["rates"]["last_10s"]),
            rate(&status["rates"]["last_60s"])
        ),
    );
    line(
        "memory",
        format!("{} resident", mebibytes(&status["memory"]["rss_bytes"])),
    );
    let engine = &status["engine"];
    line(
        "engine",
        format!(
            "broker {}, presence {}: {}",
            text(&engine["broker"]),
            text(&engine["presence"]),
            health(engine)
        ),
    );
    let timers = &status["stores"]["timers"];
    let damaged = if timers["healthy"] == true {
        "healthy".to_owned()
    } else {
        "DAMAGED (see `pushhub store check`)".to_owned()
    };
    line(
        "timers",
        format!(
            "{} store {damaged}; {} pending, {} running",
            text(&timers["kind"]),
            text(&timers["pending"]),
            text(&timers["running"])
        ),
    );
    let history = &status["stores"]["history"];
    line(
        "history",
        match history["kind"].as_str() {
            Some("disk") => format!(
                "on disk (fsync {}), {} in the log: {}",
                text(&history["fsync"]),
                mebibytes(&history["bytes"]),
                health(history)
            ),
            Some("redis") => "in Redis".into(),
            _ => "in memory (lost at restart)".into(),
        },
    );
    line(
        "webhooks",
        format!("{} sender(s) running", text(&status["webhook_senders"])),
    );
    let reload = &status["reload"];
    let last = &reload["last"];
    let outcome = if last.is_null() {
        "no reload since start".to_owned()
    } else if last["ok"] == true {
        let changed = string_list(&last["changed"]);
        format!(
            "last at {} ({}): applied, {}",
            utc(&last["at_ms"]),
            text(&last["trigger"]),
            if changed.is_empty() {
                "nothing changed".to_owned()
            } else {
                format!("changed {}", changed.join(", "))
            }
        )
    } else {
        let errors = string_list(&last["errors"]);
        let mut refused = format!(
            "last at {} ({}): REFUSED, {} error(s); the running configuration stayed",
            utc(&last["at_ms"]),
            text(&last["trigger"]),
            errors.len()
        );
        for error in errors {
            let _ = write!(refused, "\n             {error}");
        }
        refused
    };
    line(
        "config",
        format!("generation {}; {outcome}", text(&reload["generation"])),
    );
    out
}

/// A JSON array of strings (anything else left out).
fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// `POST /v1/admin/reload`'s answer as text.
pub fn reload_report(applied: &Value) -> String {
    let mut out = format!("reloaded: generation {}", text(&applied["generation"]));
    let changed = string_list(&applied["changed"]);
    if changed.is_empty() {
        out.push_str(", nothing changed\n");
        return out;
    }
    let _ = write!(out, "\nchanged: {}", changed.join(", "));
    let added = string_list(&applied["added_apps"]);
    if !added.is_empty() {
        let _ = write!(out, "\napps added: {}", added.join(", "));
    }
    let removed = string_list(&applied["removed_apps"]);
    if !removed.is_empty() {
        let _ = write!(
            out,
            "\napps removed: {} ({} connection(s) closed)",
            removed.join(", "),
            text(&applied["closed"])
        );
    }
    if let Some(sha256) = applied["tls_sha256"].as_str() {
        let _ = write!(out, "\nTLS certificate served: sha256 {sha256}");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_as_one_line_per_concern() {
        let status = json!({
            "version": "0.1.0", "node": "k3x9q2ab", "uptime_secs": 7384,
            "connections": {"total": 3, "by_kind": [
                {"transport": "sse", "dialect": "native", "connections": 1},
                {"transport": "ws", "dialect": "native", "connections": 2}]},
            "users": {"total": 2, "by_app": [{"app": "demo", "users": 2}]},
            "rates": {"last_10s": {"window_secs": 10.0, "published_per_sec": 1.5,
                "delivered_per_sec": 3.0}, "last_60s": null},
            "memory": {"rss_bytes": 12_897_484},
            "engine": {"broker": "memory", "presence": "memory", "healthy": true, "problem": null},
            "stores": {"timers": {"kind": "redb", "healthy": true, "pending": 1, "running": 0},
                "history": {"kind": "disk", "fsync": "every_second", "bytes": 1_048_576,
                    "healthy": true, "problem": null}},
            "webhook_senders": 1,
            "reload": {"generation": 2, "last": {"at_ms": 0, "trigger": "SIGHUP", "ok": false,
                "changed": [], "errors": ["pushhub.toml: heartbeat: must be at least 1"]}},
        });
        let out = status_report(&status);
        let expected = "\
pushhub:     0.1.0 on node k3x9q2ab, up 2h 03m 04s
connections: 3 (sse/native 1, ws/native 2)
users:       2 (demo 2)
messages:    1.5/s published, 3.0/s delivered (last 10 s); -
memory:      12.3 MiB resident
engine:      broker memory, presence memory: healthy
timers:      redb store healthy; 1 pending, 0 running
history:     on disk (fsync every_second), 1.0 MiB in the log: healthy
webhooks:    1 sender(s) running
config:      generation 2; last at 1970-01-01 00:00:00Z (SIGHUP): REFUSED, 1 error(s); the running configuration stayed
             pushhub.toml: heartbeat: must be at least 1
";
        assert_eq!(out, expected);
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m 05s");
        assert_eq!(duration(2 * 86_400 + 3 * 3600 + 4 * 60), "2d 03h 04m");
    }

    #[test]
    fn a_reload_names_what_changed() {
        let applied = json!({"generation": 3, "changed": ["apps.a.api_keys", "apps.b", "apps.gone"],
            "added_apps": ["b"], "removed_apps": ["gone"], "closed": 2, "tls_sha256": null});
        assert_eq!(
            reload_report(&applied),
            "reloaded: generation 3\nchanged: apps.a.api_keys, apps.b, apps.gone\napps added: b\napps removed: gone (2 connection(s) closed)\n"
        );
        let same = json!({"generation": 4, "changed": [], "added_apps": [], "removed_apps": []});
        assert_eq!(
            reload_report(&same),
            "reloaded: generation 4, nothing changed\n"
        );
    }
}
