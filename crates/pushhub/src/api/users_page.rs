//! The answer of `GET /v1/apps/{app}/users`: which users are online, a page at a time, and
//! on request how each one's connections on this node came (what `pushhub users` and the
//! admin dashboard show).
//!
//! Without parameters the answer is every online user with a connection count, as it
//! always was. `limit` and `cursor` page through users in id order; `conns=true` adds each
//! user's connections held by this node: in a cluster, presence counts a user's
//! connections on every node, but their detail lives only on the node that holds them, so
//! the answer names that node (`conns_of_node`).

use serde_json::{json, Value};

use crate::http_error::ApiError;
use crate::hub::{conn_name, ConnSnapshot, Hub};

/// Most users one page may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// What a request asks of the list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UsersQuery {
    /// Add each user's connections on this node.
    pub conns: bool,
    /// Most users in the answer; `None`: all.
    pub limit: Option<usize>,
    /// Start after this user id (a previous page's `next_cursor`).
    pub after: Option<String>,
}

impl UsersQuery {
    /// Parse the query string; other parameters (such as the `app` the CLI sends to
    /// every endpoint) are ignored.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let invalid = |message: String| ApiError::bad_request("invalid_param", message);
        let mut parsed = Self::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*name {
                "conns" => {
                    parsed.conns = match &*value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(invalid(format!("conns {value:?} is not true or false"))),
                    }
                }
                "limit" => {
                    parsed.limit = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| (1..=MAX_LIMIT).contains(n))
                            .ok_or_else(|| {
                                invalid(format!("limit must be between 1 and {MAX_LIMIT}"))
                            })?,
                    )
                }
                "cursor" => parsed.after = Some(value.into_owned()).filter(|c| !c.is_empty()),
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// The answer for `app`, whose online users (with connection counts, from presence) are
/// `users`. Totals always cover every user; `next_cursor` is set when a page stopped short.
pub fn render(hub: &Hub, app: &str, mut users: Vec<(String, usize)>, page: &UsersQuery) -> Value {
    let total_users = users.len();
    let total_connections: usize = users.iter().map(|(_, count)| count).sum();
    users.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let start = page.after.as_deref().map_or(0, |after| {
        users.partition_point(|(user, _)| user.as_str() <= after)
    });
    let end = page
        .limit
        .map_or(users.len(), |limit| (start + limit).min(users.len()));
    let next_cursor = (end < users.len() && end > start).then(|| users[end - 1].0.clone());
    let list: Vec<Value> = users[start..end]
        .iter()
        .map(|(user, count)| {
            let mut entry = json!({"user": user, "connections": count});
            if page.conns {
                entry["conns"] = hub
                    .user_conns(app, user)
                    .iter()
                    .map(conn_entry)
                    .collect::<Vec<_>>()
                    .into();
            }
            entry
        })
        .collect();
    let mut answer = json!({
        "app": app,
        "users": list,
        "total_users": total_users,
        "total_connections": total_connections,
    });
    if page.conns {
        answer["conns_of_node"] = json!(crate::node::node_id());
    }
    if page.limit.is_some() || page.after.is_some() {
        answer["next_cursor"] = json!(next_cursor);
    }
    answer
}

/// One connection as the answer shows it.
fn conn_entry(conn: &ConnSnapshot) -> Value {
    let addr = conn.detail.addr.map(|addr| match addr.port() {
        0 => addr.ip().to_string(),
        _ => addr.to_string(),
    });
    json!({
        "conn": conn_name(conn.id),
        "node": crate::node::node_id(),
        "transport": conn.detail.transport,
        "dialect": conn.detail.dialect,
        "addr": addr,
        "since": conn.since_ms,
        "queue": conn.queued,
        "queue_bytes": conn.queued_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_refuse_nonsense() {
        assert_eq!(UsersQuery::parse(None).unwrap(), UsersQuery::default());
        let page = UsersQuery::parse(Some("app=x&conns=true&limit=2&cursor=u%201")).unwrap();
        assert_eq!(
            page,
            UsersQuery {
                conns: true,
                limit: Some(2),
                after: Some("u 1".into())
            }
        );
        assert_eq!(
            UsersQuery::parse(Some("limit=0")).unwrap_err().code,
            "invalid_param"
        );
        assert!(UsersQuery::parse(Some("conns=maybe")).is_err());
    }
}
