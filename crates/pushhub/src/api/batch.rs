//! `POST /v1/batch`: many pushes in one request, each answered on its own.
//!
//! Two forms. `pushes`: a list of pushes, each with its own target, event, data and
//! optional idempotency key. `broadcast`: one message (`event`, `data`) to a list of
//! independent targets. The whole request fails only when it cannot be read (not JSON,
//! too large, more pushes than `limits.max_batch`, an unknown app or a refused key); a
//! bad entry gets its own error in the answer and the others are published.

use axum::extract::{Request, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::native::{targets_of, PushResponse};
use super::{parse_json, read_body, ApiState};
use crate::http_error::ApiError;
use crate::hub::{PublishReceipt, PushSpec, Target};

/// Body of `POST /v1/batch`: entries stay raw until each is read on its own, so one bad
/// entry fails alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    app: String,
    #[serde(default)]
    pushes: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    broadcast: Option<Vec<Box<RawValue>>>,
    /// The broadcast's event.
    #[serde(default)]
    event: Option<String>,
    /// The broadcast's payload.
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

/// One push of the `pushes` form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushEntry {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// One target of the `broadcast` form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetEntry {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    room: Option<String>,
}

/// What an entry names when it names no target or two kinds.
const ONE_TARGET: &str = "give one of \"to\" (users, groups, everyone) or \"room\"";

/// One entry's answer: a push's answer, or its own error.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum EntryAnswer {
    Published(PushResponse),
    Failed { error: EntryError },
}

#[derive(Debug, Serialize)]
struct EntryError {
    code: &'static str,
    message: String,
}

impl From<Result<PublishReceipt, ApiError>> for EntryAnswer {
    fn from(result: Result<PublishReceipt, ApiError>) -> Self {
        match result {
            Ok(receipt) => Self::Published(receipt.into()),
            Err(error) => Self::Failed {
                error: EntryError {
                    code: error.code,
                    message: error.message.into_owned(),
                },
            },
        }
    }
}

/// Answer of `POST /v1/batch`.
#[derive(Debug, Serialize)]
pub struct BatchResponse {
    /// How many entries were published (or answered from their idempotency key).
    published: usize,
    /// How many failed.
    failed: usize,
    /// One answer per entry, in order.
    results: Vec<EntryAnswer>,
}

impl BatchResponse {
    fn new(results: Vec<EntryAnswer>) -> Self {
        let failed = results
            .iter()
            .filter(|r| matches!(r, EntryAnswer::Failed { .. }))
            .count();
        Self {
            published: results.len() - failed,
            failed,
            results,
        }
    }
}

/// `POST /v1/batch`: publish many pushes, or one message to many targets, in one request.
pub async fn batch(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<BatchResponse>, ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = read_body(body, state.max_batch_body_bytes).await?;
    let batch: BatchRequest = parse_json(&bytes, "batch request")?;
    state.keys.load().check(&parts.headers, &batch.app)?;
    let entries = match (&batch.pushes, &batch.broadcast) {
        (Some(entries), None) | (None, Some(entries)) => entries.len(),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give one of \"pushes\" (a list of pushes) or \"broadcast\" (a list of targets, with \"event\" and \"data\")",
            ))
        }
    };
    if entries > state.max_batch {
        return Err(ApiError::bad_request(
            "too_many_pushes",
            format!(
                "a batch carries at most {} pushes (limits.max_batch); this one has {entries}",
                state.max_batch
            ),
        ));
    }
    let results = match batch.pushes {
        Some(pushes) => {
            if batch.event.is_some() || batch.data.is_some() {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "\"event\" and \"data\" go with \"broadcast\"; each of \"pushes\" has its own",
                ));
            }
            pushes_form(&state, &batch.app, &pushes).await?
        }
        None => {
            let targets = batch.broadcast.unwrap_or_default();
            broadcast_form(&state, &batch.app, &targets, batch.event, batch.data).await?
        }
    };
    Ok(Json(BatchResponse::new(results)))
}

/// The `pushes` form: each entry read on its own, the good ones published together.
async fn pushes_form(
    state: &ApiState,
    app: &str,
    entries: &[Box<RawValue>],
) -> Result<Vec<EntryAnswer>, ApiError> {
    let mut answers: Vec<Option<EntryAnswer>> = Vec::with_capacity(entries.len());
    let mut specs = Vec::with_capacity(entries.len());
    for entry in entries {
        match push_spec(entry) {
            Ok(spec) => {
                answers.push(None);
                specs.push(spec);
            }
            Err(error) => answers.push(Some(Err(error).into())),
        }
    }
    let mut published = state.hub.publish_batch(app, specs).await?.into_iter();
    Ok(answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| match published.next() {
                Some(result) => result.map_err(ApiError::from).into(),
                None => Err(unanswered()).into(),
            })
        })
        .collect())
}

/// An entry the hub gave no answer for (it answers each one: this is a bug, said so).
fn unanswered() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "this entry got no answer",
    )
}

/// One entry of the `pushes` form, read and checked.
fn push_spec(entry: &RawValue) -> Result<PushSpec, ApiError> {
    let push: PushEntry = parse_json(entry.get().as_bytes(), "push")?;
    Ok(PushSpec {
        targets: targets_of(push.to.as_deref(), push.room, ONE_TARGET)?,
        event: push.event,
        data: push.data.unwrap_or_else(|| RawValue::NULL.to_owned()),
        idempotency_key: push.idempotency_key,
    })
}

/// The `broadcast` form: each target read on its own, the message published once to the
/// good ones.
async fn broadcast_form(
    state: &ApiState,
    app: &str,
    entries: &[Box<RawValue>],
    event: Option<String>,
    data: Option<Box<RawValue>>,
) -> Result<Vec<EntryAnswer>, ApiError> {
    let parsed: Vec<Result<Vec<Target>, ApiError>> = entries
        .iter()
        .map(|entry| broadcast_target(entry))
        .collect();
    let good: Vec<Vec<Target>> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let data = data.unwrap_or_else(|| RawValue::NULL.to_owned());
    let mut receipts = if good.is_empty() {
        Vec::new().into_iter()
    } else {
        state
            .hub
            .broadcast(app, &good, event, data)
            .await?
            .into_iter()
    };
    Ok(parsed
        .into_iter()
        .map(|p| match p {
            Ok(_) => receipts.next().ok_or_else(unanswered).into(),
            Err(error) => Err(error).into(),
        })
        .collect())
}

/// One target of the `broadcast` form, read and checked.
fn broadcast_target(entry: &RawValue) -> Result<Vec<Target>, ApiError> {
    let target: TargetEntry = parse_json(entry.get().as_bytes(), "target")?;
    targets_of(target.to.as_deref(), target.room, ONE_TARGET)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn each_entry_is_read_on_its_own() {
        let spec = push_spec(&raw(r#"{"to":"1,2","data":{"a":1},"idempotency_key":"k"}"#)).unwrap();
        assert_eq!(spec.targets.len(), 2);
        assert_eq!(spec.data.get(), r#"{"a":1}"#);
        assert_eq!(spec.idempotency_key.as_deref(), Some("k"));
        let errors = [
            (r#"{"data":1}"#, "invalid_request"),
            (r#"{"to":"1","room":"r"}"#, "invalid_request"),
            (r#"{"to":"1","conn":"x"}"#, "invalid_request"),
            (r#"{"to":""}"#, "invalid_target"),
            (r#"{"room":"a*"}"#, "invalid_room"),
            (r#""text""#, "invalid_request"),
        ];
        for (entry, code) in errors {
            assert_eq!(push_spec(&raw(entry)).unwrap_err().code, code, "{entry}");
        }
        assert_eq!(
            broadcast_target(&raw(r#"{"room":"lobby"}"#)).unwrap().len(),
            1
        );
        assert_eq!(
            broadcast_target(&raw(r#"{"to":"1","data":2}"#))
                .unwrap_err()
                .code,
            "invalid_request"
        );
    }

    proptest! {
        /// Whatever an entry holds, reading it answers a push or a 4xx, never panics.
        #[test]
        fn any_entry_reads_or_fails_with_a_client_error(text in "[{}\\[\\]\":,a-z0-9 */]{0,60}") {
            if let Ok(entry) = RawValue::from_string(text) {
                if let Err(error) = push_spec(&entry) {
                    prop_assert!(error.status.is_client_error());
                }
                if let Err(error) = broadcast_target(&entry) {
                    prop_assert!(error.status.is_client_error());
                }
            }
        }
    }
}
