//! What changed between two configurations, key by key, and which of those changes a
//! running server cannot take.
//!
//! Both files are compared as the plain values they were validated into, so the answer
//! names keys (`apps.wms.api_keys`, `limits.max_poll_wait`), never values: a reload's log
//! line can list what changed without printing a secret.

use serde_json::Value;

use crate::config::RawConfig;

/// Keys that only a restart applies: listeners and what is bound to them, the engine and
/// the stores, the scheduler, and the limits sized into structures built once at start.
/// A key matches itself and everything under it.
pub const RESTART_ONLY: &[&str] = &[
    "listen",
    "api_listen",
    "tcp_listen",
    "tcp_framing",
    "data_dir",
    "engine",
    "redis",
    "timers",
    "shutdown_grace",
    "mswoole",
    "jdserver",
    "pushserve.addr",
    "tls.cert",
    "tls.key",
    "tls.client",
    "tls.api",
    "tls.tcp",
    "limits.max_queue_messages",
    "limits.max_queue_bytes",
    "limits.write_timeout",
    "limits.max_body_bytes",
    "limits.max_batch",
    "limits.max_batch_body_bytes",
    "limits.max_history_bytes",
    "limits.max_connections",
    "limits.max_connections_per_ip",
    "limits.max_requests_per_second_per_ip",
];

/// Every key whose value differs between `old` and `new`, as dotted paths, in file order.
/// A table present on one side only (an app added or removed, `[tls]` turned on) is one
/// change, named by the table.
pub fn changed_keys(old: &RawConfig, new: &RawConfig) -> Vec<String> {
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return vec![String::new()];
    };
    let mut changed = Vec::new();
    walk(&mut Vec::new(), &old, &new, &mut changed);
    changed
}

fn walk(path: &mut Vec<String>, old: &Value, new: &Value, changed: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let keys = old
                .keys()
                .chain(new.keys().filter(|k| !old.contains_key(*k)));
            for key in keys {
                path.push(key.clone());
                match (old.get(key), new.get(key)) {
                    (Some(a), Some(b)) => walk(path, a, b, changed),
                    _ => changed.push(path.join(".")),
                }
                path.pop();
            }
        }
        (a, b) if a != b => changed.push(path.join(".")),
        _ => {}
    }
}

/// Tables whose appearing or disappearing needs a restart: they decide which listeners
/// speak TLS, and whether push-serve's routes exist.
const RESTART_TO_TOGGLE: &[&str] = &["tls", "pushserve"];

/// The changed keys that need a restart.
pub fn needing_restart(changed: &[String]) -> Vec<&str> {
    changed
        .iter()
        .map(String::as_str)
        .filter(|key| {
            RESTART_TO_TOGGLE.contains(key)
                || RESTART_ONLY
                    .iter()
                    .any(|restart| key == restart || key.starts_with(&format!("{restart}.")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn names_changed_keys_not_values() {
        let old = raw(
            "heartbeat = 25\n[apps.a]\nauth = \"none\"\napi_keys = [\"secret-key-0123456789\"]\n",
        );
        let new = raw(
            "heartbeat = 30\n[apps.a]\nauth = \"none\"\napi_keys = [\"other-key-0123456789\"]\n[apps.b]\nauth = \"none\"\n",
        );
        let changed = changed_keys(&old, &new);
        assert_eq!(changed, ["heartbeat", "apps.a.api_keys", "apps.b"]);
        assert!(needing_restart(&changed).is_empty());
    }

    #[test]
    fn listeners_engine_and_sized_limits_need_a_restart() {
        let old = raw("listen = \"127.0.0.1:1\"\n[limits]\nmax_poll_wait = 5\n");
        let new = raw(
            "listen = \"127.0.0.1:2\"\nengine = \"redis\"\n[limits]\nmax_poll_wait = 6\nmax_body_bytes = 2048\n",
        );
        let changed = changed_keys(&old, &new);
        assert_eq!(
            needing_restart(&changed),
            ["listen", "engine", "limits.max_body_bytes"]
        );
        let tls = raw("listen = \"127.0.0.1:1\"\n[limits]\nmax_poll_wait = 5\n[tls]\ncert = \"c\"\nkey = \"k\"\nclient = true\n");
        assert_eq!(needing_restart(&changed_keys(&old, &tls)), ["tls"]);
    }
}
