//! `PUSHHUB_*` environment variables over the configuration file.
//!
//! Every top-level key has a variable (`PUSHHUB_HEARTBEAT`, `PUSHHUB_API_LISTEN`) and every
//! key of `[limits]` one with a `LIMITS_` infix (`PUSHHUB_LIMITS_MAX_FRAME_BYTES`), and of
//! `[timers]` with `TIMERS_` (`PUSHHUB_TIMERS_CONCURRENCY`), and of `[redis]` with `REDIS_`
//! (`PUSHHUB_REDIS_URLS=redis://10.0.0.5:6379/0`). A value
//! is read as the type its key has (a number stays text where the key is text; a list is
//! comma-separated: `PUSHHUB_LIMITS_TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8`). A
//! `PUSHHUB_*` variable that names no key is an error, so a misspelling never goes unseen.
//! The keys of `[tls]` have a `TLS_` infix the same way (`PUSHHUB_TLS_CERT`), and those of
//! `[pushserve]` a `PUSHSERVE_` one (`PUSHHUB_PUSHSERVE_PASSWORD`), although these tables
//! are absent by default.

use toml::{Table, Value};

use super::{ConfigError, RawConfig, RawPushServe, RawTls};

/// `PUSHHUB_*` variables that other parts of the program read.
const NOT_CONFIG_KEYS: &[&str] = &[
    "PUSHHUB_LOG",
    // `serve --log-format` (src/main.rs).
    "PUSHHUB_LOG_FORMAT",
    "PUSHHUB_CONFIG",
    // The API key of `pushhub cron` and `pushhub timers` (src/main.rs).
    "PUSHHUB_API_KEY",
    // The listening sockets a successor inherits in an upgrade (src/upgrade/).
    "PUSHHUB_UPGRADE",
];

/// One variable that was applied: the key path it set and the variable's name.
pub type Applied = (Vec<String>, String);

/// Top-level keys that are unset by default, so the table of defaults lacks them, with a
/// value of their type to read a variable as.
fn unset_by_default(key: &str) -> Option<Value> {
    match key {
        "dynamic_apps" => Some(Value::Boolean(false)),
        "tcp_listen" => Some(Value::String(String::new())),
        _ => None,
    }
}

fn typed(like: Option<&Value>, raw: &str) -> Result<Value, String> {
    match like {
        Some(Value::Integer(_)) => raw
            .trim()
            .parse()
            .map(Value::Integer)
            .map_err(|_| format!("{raw:?} is not a whole number")),
        Some(Value::Boolean(_)) | None => raw
            .trim()
            .parse()
            .map(Value::Boolean)
            .map_err(|_| format!("{raw:?} is not true or false")),
        Some(Value::Array(_)) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        )),
        Some(_) => Ok(Value::String(raw.to_owned())),
    }
}

/// Apply the `PUSHHUB_*` variables among `vars` to `table`; returns what was applied.
pub fn apply(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Applied>, Vec<ConfigError>> {
    let defaults = Table::try_from(RawConfig::default()).unwrap_or_default();
    let no_limits = Table::new();
    let default_limits = defaults
        .get("limits")
        .and_then(Value::as_table)
        .unwrap_or(&no_limits);
    let default_timers = defaults
        .get("timers")
        .and_then(Value::as_table)
        .unwrap_or(&no_limits);
    let default_redis = defaults
        .get("redis")
        .and_then(Value::as_table)
        .unwrap_or(&no_limits);
    // `[tls]` is unset by default; its keys, typed, from a table with every key set.
    let tls_keys = Table::try_from(RawTls {
        cert: "cert.pem".into(),
        key: "key.pem".into(),
        client: true,
        api: false,
        tcp: false,
    })
    .unwrap_or_default();
    let pushserve_keys = Table::try_from(RawPushServe::every_key()).unwrap_or_default();
    let mut applied = Vec::new();
    let mut errors = Vec::new();
    for (name, raw) in vars {
        if !name.starts_with("PUSHHUB_") || NOT_CONFIG_KEYS.contains(&name.as_str()) {
            continue;
        }
        let key = name["PUSHHUB_".len()..].to_ascii_lowercase();
        let path: Vec<String> = match key.strip_prefix("limits_") {
            Some(limit) if default_limits.contains_key(limit) => {
                vec!["limits".into(), limit.into()]
            }
            _ if key
                .strip_prefix("timers_")
                .is_some_and(|k| default_timers.contains_key(k)) =>
            {
                vec!["timers".into(), key["timers_".len()..].into()]
            }
            _ if key
                .strip_prefix("redis_")
                .is_some_and(|k| default_redis.contains_key(k)) =>
            {
                vec!["redis".into(), key["redis_".len()..].into()]
            }
            _ if key
                .strip_prefix("tls_")
                .is_some_and(|k| tls_keys.contains_key(k)) =>
            {
                vec!["tls".into(), key["tls_".len()..].into()]
            }
            _ if key
                .strip_prefix("pushserve_")
                .is_some_and(|k| pushserve_keys.contains_key(k)) =>
            {
                vec!["pushserve".into(), key["pushserve_".len()..].into()]
            }
            _ if unset_by_default(&key).is_some()
                || (defaults.contains_key(&key)
                    && !matches!(key.as_str(), "limits" | "apps" | "timers" | "redis")) =>
            {
                vec![key.clone()]
            }
            _ => {
                errors.push(ConfigError {
                    location: name.clone(),
                    key: String::new(),
                    message: "unknown PUSHHUB_* variable: no configuration key has this name (see pushhub.example.toml)".into(),
                });
                continue;
            }
        };
        let like = match path.as_slice() {
            [limits, limit] if limits == "limits" => default_limits.get(limit).cloned(),
            [timers, key] if timers == "timers" => default_timers.get(key).cloned(),
            [redis, key] if redis == "redis" => default_redis.get(key).cloned(),
            [tls, tls_key] if tls == "tls" => tls_keys.get(tls_key).cloned(),
            [pushserve, key] if pushserve == "pushserve" => pushserve_keys.get(key).cloned(),
            [top] => defaults.get(top).cloned().or_else(|| unset_by_default(top)),
            _ => None,
        };
        let value = match typed(like.as_ref(), &raw) {
            Ok(value) => value,
            Err(message) => {
                errors.push(ConfigError {
                    location: name.clone(),
                    key: path.join("."),
                    message,
                });
                continue;
            }
        };
        match path.as_slice() {
            [section, key] => {
                let entry = table
                    .entry(section.clone())
                    .or_insert_with(|| Value::Table(Table::new()));
                match entry.as_table_mut() {
                    Some(inner) => {
                        inner.insert(key.clone(), value);
                    }
                    None => {
                        errors.push(ConfigError {
                            location: name.clone(),
                            key: section.clone(),
                            message: "must be a table".into(),
                        });
                        continue;
                    }
                }
            }
            _ => {
                table.insert(path.join("."), value);
            }
        }
        applied.push((path, name));
    }
    if errors.is_empty() {
        Ok(applied)
    } else {
        Err(errors)
    }
}
