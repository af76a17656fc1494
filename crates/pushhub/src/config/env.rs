//! `PUSHHUB_*` environment variables over the configuration file.
//!
//! Every top-level key has a variable (`PUSHHUB_HEARTBEAT`, `PUSHHUB_API_LISTEN`) and every
//! key of `[limits]` one with a `LIMITS_` infix (`PUSHHUB_LIMITS_MAX_FRAME_BYTES`).
//! Variables that name no key (`PUSHHUB_LOG`, `PUSHHUB_CONFIG`, ...) are left to whoever
//! reads them. Values are read as integers or booleans when they look like one.

use toml::{Table, Value};

use super::{ConfigError, RawConfig};

fn parse_value(raw: &str) -> Value {
    if let Ok(i) = raw.parse::<i64>() {
        Value::Integer(i)
    } else if let Ok(b) = raw.parse::<bool>() {
        Value::Boolean(b)
    } else {
        Value::String(raw.to_owned())
    }
}

/// Apply the `PUSHHUB_*` variables among `vars` to `table`.
pub fn apply(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), Vec<ConfigError>> {
    let defaults = Table::try_from(RawConfig::default()).unwrap_or_default();
    let limits: Vec<String> = defaults
        .get("limits")
        .and_then(Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    let top: Vec<String> = defaults
        .keys()
        .filter(|k| *k != "limits" && *k != "apps")
        .cloned()
        .chain(["dynamic_apps".to_owned()])
        .collect();
    for (name, raw) in vars {
        let Some(key) = name.strip_prefix("PUSHHUB_").map(str::to_ascii_lowercase) else {
            continue;
        };
        if let Some(limit) = key
            .strip_prefix("limits_")
            .filter(|k| limits.iter().any(|l| l == k))
        {
            let section = table
                .entry("limits")
                .or_insert_with(|| Value::Table(Table::new()));
            match section.as_table_mut() {
                Some(section) => {
                    section.insert(limit.to_owned(), parse_value(&raw));
                }
                None => {
                    return Err(vec![ConfigError {
                        location: name,
                        key: "limits".into(),
                        message: "must be a table".into(),
                    }])
                }
            }
        } else if top.contains(&key) {
            table.insert(key, parse_value(&raw));
        }
    }
    Ok(())
}
