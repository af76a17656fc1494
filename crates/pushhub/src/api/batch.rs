//! `POST /v1/batch`: many pushes in one request, each answered on its own.
//!
//! Two forms. `pushes`: a list of pushes, each with its own target, event, data and
//! optional idempotency key. `broadcast`: one message (`event`, `data`) to a list of
//! independent targets. The whole request fails only when it cannot be read (not JSON,
//! too large, more pushes than `limits.max_batch`, an unknown app or a refused key); a
//! bad entry gets its own error in the answer and the others are published.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::native::{targets_of, PushResponse};
use super::{parse_json, read_body, ApiState};
use crate::http_error::ApiError;
use crate::hub::{PublishReceipt, PushSpec, Target};

/// Body of `POST /v1/batch`: entries stay raw (borrowed from the body, not copied) until
/// each is read on its own, so one bad entry fails alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest<'a> {
    #[serde(borrow)]
    app: Cow<'a, str>,
    #[serde(default, borrow)]
    pushes: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    broadcast: Option<Vec<&'a RawValue>>,
    /// The broadcast's event.
    #[serde(default)]
    event: Option<String>,
    /// The broadcast's payload.
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// One push of the `pushes` form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushEntry<'a> {
    #[serde(default, borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    exclude: Option<String>,
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

/// What a `POST /v1/batch` asks for: each entry read and checked on its own.
#[derive(Debug)]
pub enum BatchEntries {
    /// The `pushes` form: each push, or why it cannot be published.
    Pushes(Vec<Result<PushSpec, ApiError>>),
    /// The `broadcast` form: one message to each target that reads.
    Broadcast {
        /// Each entry's targets, or why they cannot be pushed to.
        targets: Vec<Result<Vec<Target>, ApiError>>,
        /// The event name.
        event: Option<String>,
        /// The payload.
        data: Box<RawValue>,
    },
}

/// Read a `POST /v1/batch` body: `400 bad_json` when it is not JSON, `400
/// invalid_request` when a field is missing, mistyped or unknown. The app is known from
/// here on (for the key check); the entries are read by [`BatchRequest::into_entries`].
pub fn read_batch(body: &[u8]) -> Result<BatchRequest<'_>, ApiError> {
    parse_json(body, "batch request")
}

impl BatchRequest<'_> {
    /// The app pushed to.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// Its entries, each read on its own; the whole batch is refused when it has neither
    /// form or both, more than `max_batch` entries, or `event`/`data` beside `pushes`.
    pub fn into_entries(self, max_batch: usize) -> Result<BatchEntries, ApiError> {
        let entries = match (&self.pushes, &self.broadcast) {
            (Some(entries), None) | (None, Some(entries)) => entries.len(),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "give one of \"pushes\" (a list of pushes) or \"broadcast\" (a list of targets, with \"event\" and \"data\")",
                ))
            }
        };
        if entries > max_batch {
            return Err(ApiError::bad_request(
                "too_many_pushes",
                format!(
                    "a batch carries at most {max_batch} pushes (limits.max_batch); this one has {entries}"
                ),
            ));
        }
        match self.pushes {
            Some(pushes) => {
                if self.event.is_some() || self.data.is_some() {
                    return Err(ApiError::bad_request(
                        "invalid_request",
                        "\"event\" and \"data\" go with \"broadcast\"; each of \"pushes\" has its own",
                    ));
                }
                Ok(BatchEntries::Pushes(
                    pushes.into_iter().map(push_spec).collect(),
                ))
            }
            None => Ok(BatchEntries::Broadcast {
                targets: self
                    .broadcast
                    .unwrap_or_default()
                    .into_iter()
                    .map(broadcast_target)
                    .collect(),
                event: self.event,
                data: self.data.unwrap_or(RawValue::NULL).to_owned(),
            }),
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
    let batch = read_batch(&bytes)?;
    state.keys.load().check(&parts.headers, batch.app())?;
    let app = batch.app.clone();
    let results = match batch.into_entries(state.max_batch)? {
        BatchEntries::Pushes(specs) => pushes_form(&state, &app, specs).await?,
        BatchEntries::Broadcast {
            targets,
            event,
            data,
        } => broadcast_form(&state, &app, targets, event, data).await?,
    };
    Ok(Json(BatchResponse::new(results)))
}

/// The `pushes` form: each entry read on its own, the good ones published together.
async fn pushes_form(
    state: &ApiState,
    app: &str,
    entries: Vec<Result<PushSpec, ApiError>>,
) -> Result<Vec<EntryAnswer>, ApiError> {
    let mut answers: Vec<Option<EntryAnswer>> = Vec::with_capacity(entries.len());
    let mut specs = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry {
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
        data: push.data.unwrap_or(RawValue::NULL).to_owned(),
        idempotency_key: push.idempotency_key,
        exclude: push.exclude,
    })
}

/// The `broadcast` form: each target read on its own, the message published once to the
/// good ones.
async fn broadcast_form(
    state: &ApiState,
    app: &str,
    parsed: Vec<Result<Vec<Target>, ApiError>>,
    event: Option<String>,
    data: Box<RawValue>,
) -> Result<Vec<EntryAnswer>, ApiError> {
    let good: Vec<Vec<Target>> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
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
