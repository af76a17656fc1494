//! Timers as the scripts hand them over (a hash's fields and values, flattened) and the
//! JSON part of a record that the scripts never look into.

use std::collections::HashMap;

use fred::types::Value;
use serde::{Deserialize, Serialize};

use crate::store::{
    Attempt, CallbackRequest, Interval, RetryPolicy, StoreError, Timer, TimerId, TimerState,
};

/// What never changes after a create: kept as one JSON field.
#[derive(Serialize, Deserialize)]
pub(super) struct Spec {
    pub request: CallbackRequest,
    pub retry: RetryPolicy,
    pub idempotency_key: Option<String>,
    pub created_ms: u64,
    /// Absent from records written before interval timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
}

/// A reply value as text (Redis answers bulk strings, Lua numbers as integers).
pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A reply value as a number.
pub(super) fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(i) => u64::try_from(*i).ok(),
        other => text(other).and_then(|t| t.parse().ok()),
    }
}

/// The elements of an array reply (none for nil).
pub(super) fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

/// The timer a script's `HGETALL` reply describes; `None` for nil or an empty hash.
pub(super) fn timer(value: Value) -> Result<Option<Timer>, StoreError> {
    let pairs = items(value);
    let mut fields = HashMap::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks(2) {
        if let [name, value] = pair {
            if let (Some(name), Some(value)) = (text(name), text(value)) {
                fields.insert(name, value);
            }
        }
    }
    timer_from(fields)
}

/// The timer a hash's fields describe; `None` for an empty hash.
pub(super) fn timer_from(fields: HashMap<String, String>) -> Result<Option<Timer>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let id: TimerId = fields
        .get("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| StoreError::Backend("a timer record without its id".into()))?;
    let corrupt = |reason: String| StoreError::Corrupt { id, reason };
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| corrupt(format!("no {name} field")))
    };
    let int = |name: &str| -> Result<u64, StoreError> {
        field(name)?
            .parse()
            .map_err(|_| corrupt(format!("{name} is not a number")))
    };
    let spec: Spec =
        serde_json::from_str(field("spec")?).map_err(|e| corrupt(format!("spec: {e}")))?;
    let state_name = field("state")?;
    let state = TimerState::ALL
        .into_iter()
        .find(|s| s.name() == state_name.as_str())
        .ok_or_else(|| corrupt("unknown state".into()))?;
    let last: Option<Attempt> = match fields.get("last") {
        Some(last) => Some(serde_json::from_str(last).map_err(|e| corrupt(format!("last: {e}")))?),
        None => None,
    };
    Ok(Some(Timer {
        id,
        app: field("app")?.clone(),
        request: spec.request,
        retry: spec.retry,
        idempotency_key: spec.idempotency_key,
        interval: spec.interval,
        state,
        due_ms: int("due")?,
        created_ms: spec.created_ms,
        attempts: u32::try_from(int("attempts")?).unwrap_or(u32::MAX),
        last,
        finished_ms: fields.get("finished").and_then(|f| f.parse().ok()),
    }))
}
