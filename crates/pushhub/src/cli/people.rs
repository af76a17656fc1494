//! `pushhub users APP`, `pushhub kick APP USER` and `pushhub push APP TARGET DATA`: who is
//! online and how they came, closing a user's connections, pushing by hand (seed 001's
//! `console.php -s status` listing, seed 003's `process show`), through the same API
//! endpoints a backend calls.

use std::fmt::Write as _;

use reqwest::Method;
use serde_json::{json, Value};

use super::{cell, segment, table, text, utc, ApiClient, CliError};

/// What `pushhub users` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersCommand {
    /// The app.
    pub app: String,
    /// Most users shown.
    pub limit: usize,
    /// Start after this user id (a previous page's last).
    pub after: Option<String>,
}

/// What `pushhub kick` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KickCommand {
    /// The app.
    pub app: String,
    /// The user whose connections to close.
    pub user: String,
    /// Only this connection (a `conn` that `pushhub users` shows).
    pub conn: Option<String>,
    /// What the client is told.
    pub reason: Option<String>,
    /// Ask the client not to reconnect (close 4516 rather than 4009).
    pub for_good: bool,
}

/// What `pushhub push` sends.
#[derive(Debug, Clone, PartialEq)]
pub struct PushCommand {
    /// The app.
    pub app: String,
    /// `room:NAME`, `conn:ID`, `user:ID`, or the API's target grammar (`100`, `100,101`,
    /// `group1/*`, `*`).
    pub target: String,
    /// The payload: JSON, or a string.
    pub data: Value,
    /// The event name.
    pub event: Option<String>,
}

impl PushCommand {
    /// A push of `data` as given on the command line: JSON when it parses as JSON (`42`,
    /// `{"a":1}`, `"quoted"`), else the text itself as a string; always the text with
    /// `as_string`.
    pub fn new(
        app: String,
        target: String,
        data: &str,
        as_string: bool,
        event: Option<String>,
    ) -> Self {
        let data = if as_string {
            Value::String(data.to_owned())
        } else {
            serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()))
        };
        Self {
            app,
            target,
            data,
            event,
        }
    }

    /// The body of `POST /v1/push`.
    fn body(&self) -> Value {
        let (field, value) = if let Some(room) = self.target.strip_prefix("room:") {
            ("room", room)
        } else if let Some(conn) = self.target.strip_prefix("conn:") {
            ("conn", conn)
        } else if let Some(user) = self.target.strip_prefix("user:") {
            ("to", user)
        } else {
            ("to", self.target.as_str())
        };
        let mut body = json!({"app": self.app, field: value, "data": self.data});
        if let Some(event) = &self.event {
            body["event"] = json!(event);
        }
        body
    }
}

impl ApiClient {
    /// `pushhub users`: the answer of `GET /v1/apps/{app}/users?conns=true`, and a table
    /// with a line per connection.
    pub async fn users(&self, command: &UsersCommand) -> Result<(Value, String), CliError> {
        let mut query = vec![
            ("conns", "true".to_owned()),
            ("limit", command.limit.to_string()),
        ];
        if let Some(after) = &command.after {
            query.push(("cursor", after.clone()));
        }
        let path = format!("/v1/apps/{}/users", segment(&command.app));
        let answer = self.call(Method::GET, &path, &query).await?;
        let text = users_table(&answer);
        Ok((answer, text))
    }

    /// `pushhub kick`: `POST /v1/disconnect`. A user with no connection to close is an
    /// error, so a script learns that nothing happened.
    pub async fn kick(&self, command: &KickCommand) -> Result<(Value, String), CliError> {
        let mut body = json!({
            "app": command.app,
            "user": command.user,
            "reconnect": !command.for_good,
        });
        if let Some(conn) = &command.conn {
            body["conn"] = json!(conn);
        }
        if let Some(reason) = &command.reason {
            body["reason"] = json!(reason);
        }
        let answer = self
            .call_with(Method::POST, "/v1/disconnect", &[], Some(&body))
            .await?;
        let closed = answer["disconnected"].as_u64().unwrap_or(0);
        let whose = match &command.conn {
            Some(conn) => format!("connection {conn} of user {:?}", command.user),
            None => format!("user {:?}", command.user),
        };
        if closed == 0 {
            return Err(CliError::NotFound(format!(
                "{whose} is not connected to app {:?}; nothing to close",
                command.app
            )));
        }
        let how = if command.for_good {
            "told not to reconnect"
        } else {
            "free to reconnect"
        };
        let line = format!(
            "closed {closed} connection(s) of {whose} in app {:?} ({how})\n",
            command.app
        );
        Ok((answer, line))
    }

    /// `pushhub push`: `POST /v1/push`; prints the message id, how many connections it
    /// reached, and its position in each channel.
    pub async fn push(&self, command: &PushCommand) -> Result<(Value, String), CliError> {
        let answer = self
            .call_with(Method::POST, "/v1/push", &[], Some(&command.body()))
            .await?;
        let mut out = format!(
            "pushed {} to {} connection(s)\n",
            text(&answer["id"]),
            text(&answer["delivered"])
        );
        for channel in answer["channels"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {} offset {} (epoch {})",
                text(&channel["ch"]),
                text(&channel["off"]),
                text(&channel["epoch"])
            );
        }
        Ok((answer, out))
    }
}

/// `GET /v1/apps/{app}/users?conns=true` as a table: one line per connection on the
/// answering node, and a line for users whose connections are all on other nodes.
pub fn users_table(answer: &Value) -> String {
    let users = answer["users"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    if users.is_empty() {
        let _ = writeln!(out, "nobody is online in app {}", text(&answer["app"]));
    } else {
        let mut rows = Vec::new();
        for user in &users {
            let conns = user["conns"].as_array().cloned().unwrap_or_default();
            for conn in &conns {
                rows.push(vec![
                    cell(&text(&user["user"])),
                    text(&conn["conn"]),
                    text(&conn["transport"]),
                    text(&conn["dialect"]),
                    text(&conn["addr"]),
                    utc(&conn["since"]),
                    text(&conn["queue"]),
                ]);
            }
            let counted = user["connections"].as_u64().unwrap_or(0) as usize;
            let elsewhere = counted.saturating_sub(conns.len());
            if elsewhere > 0 {
                rows.push(vec![
                    cell(&text(&user["user"])),
                    format!("{elsewhere} on other nodes"),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
        }
        out = table(
            &[
                "USER",
                "CONN",
                "TRANSPORT",
                "DIALECT",
                "ADDRESS",
                "SINCE (UTC)",
                "QUEUE",
            ],
            &rows,
        );
    }
    let _ = writeln!(
        out,
        "{} user(s), {} connection(s) online in app {}; details from node {}",
        text(&answer["total_users"]),
        text(&answer["total_connections"]),
        text(&answer["app"]),
        text(&answer["conns_of_node"])
    );
    if let Some(next) = answer["next_cursor"].as_str() {
        let _ = writeln!(
            out,
            "more: the next page starts after user {next} (--after)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_map_to_the_api_fields_and_data_is_json_or_text() {
        let push = |target: &str, data: &str| {
            PushCommand::new("demo".into(), target.into(), data, false, None).body()
        };
        assert_eq!(
            push("100,g/*", "{\"a\":1}"),
            json!({"app": "demo", "to": "100,g/*", "data": {"a": 1}})
        );
        assert_eq!(push("room:r1", "hi")["room"], "r1");
        assert_eq!(push("room:r1", "hi")["data"], "hi");
        assert_eq!(push("conn:ab-1", "1")["conn"], "ab-1");
        assert_eq!(push("user:room:x", "1")["to"], "room:x");
        let text = PushCommand::new("demo".into(), "*".into(), "42", true, Some("e".into()));
        assert_eq!(text.body()["data"], "42");
        assert_eq!(text.body()["event"], "e");
    }

    #[test]
    fn users_read_as_one_line_per_connection() {
        let answer = json!({"app": "demo", "total_users": 2, "total_connections": 3,
            "conns_of_node": "abcd1234", "next_cursor": "bob", "users": [
            {"user": "alice", "connections": 1, "conns": [{"conn": "abcd1234-1",
                "transport": "websocket", "dialect": "native", "addr": "127.0.0.1:5000",
                "since": 0, "queue": 2}]},
            {"user": "bob", "connections": 2, "conns": []}]});
        let out = users_table(&answer);
        assert!(out.starts_with("USER "), "{out}");
        assert!(
            out.contains(
                "alice  abcd1234-1        websocket  native   127.0.0.1:5000  1970-01-01 00:00:00Z  2"
            ),
            "{out}"
        );
        assert!(out.contains("bob    2 on other nodes"), "{out}");
        assert!(
            out.contains("2 user(s), 3 connection(s) online in app demo"),
            "{out}"
        );
        assert!(out.ends_with("after user bob (--after)\n"), "{out}");
    }
}
