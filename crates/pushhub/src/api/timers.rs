//! Native timer endpoints; the checks every way of creating a timer shares are the
//! scheduler's ([`crate::scheduler::rules`]).
//!
//! - `POST /v1/timers`: create (201), or return the timer with the same idempotency key
//!   (200); with `interval_ms` (and optionally `times`), an interval timer.
//! - `GET /v1/timers?app=&state=&limit=&cursor=`: an app's timers, in creation order.
//! - `GET /v1/timers/{id}`: one timer, with its last attempt.
//! - `DELETE /v1/timers/{id}`: cancel (409 once it has finished).
//! - `POST /v1/timers/{id}/retry`: run a failed timer again ([`super::timer_retry`]).
//!
//! A timer belongs to an app; the app's API keys guard it as they guard pushes. Another
//! app's timer answers 404, as if it did not exist.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::{parse_json, read_body, ApiState};
use crate::http_error::ApiError;
use crate::scheduler::rules::{interval_of, new_timer, Call, RuleError, When};
use crate::store::{Cancel, ListQuery, RetryPolicy, Timer, TimerId, TimerState};

impl From<RuleError> for ApiError {
    fn from(refused: RuleError) -> Self {
        ApiError::bad_request(refused.code, refused.message)
    }
}

/// Most timers in one page of a listing.
const MAX_PAGE: usize = 1000;
/// Timers in a page when the request does not say.
const DEFAULT_PAGE: usize = 100;

/// A request's headers as the API shows them: name → value, repeated names joined with
/// `, `.
pub(crate) fn header_object(list: &[(String, String)]) -> Map<String, Value> {
    let mut headers = Map::new();
    for (name, value) in list {
        match headers.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    headers
}

/// A timer as the API shows it; `with_body` adds the request body (one timer, not lists).
pub fn view(timer: &Timer, with_body: bool) -> Value {
    let headers = header_object(&timer.request.headers);
    let mut out = json!({
        "id": timer.id,
        "app": timer.app,
        "state": timer.state.name(),
        "method": timer.request.method,
        "url": timer.request.url,
        "headers": headers,
        "body_bytes": timer.request.body.as_ref().map_or(0, String::len),
        "timeout_ms": timer.request.timeout_ms,
        "due_ms": timer.due_ms,
        "created_ms": timer.created_ms,
        "finished_ms": timer.finished_ms,
        "attempts": timer.attempts,
        "retry": {
            "max_attempts": timer.retry.max_attempts,
            "base_ms": timer.retry.base_ms,
            "max_ms": timer.retry.max_ms,
        },
        "idempotency_key": timer.idempotency_key,
        "interval_ms": timer.interval.map(|i| i.every_ms),
        "times": timer.interval.and_then(|i| i.times),
        "last_attempt": timer.last.as_ref().map(|a| json!({
            "number": a.number,
            "started_ms": a.started_ms,
            "duration_ms": a.duration_ms,
            "status": a.status,
            "error": a.error,
            "response": a.response,
        })),
    });
    if with_body {
        out["body"] = json!(timer.request.body);
    }
    out
}

/// Body of `POST /v1/timers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTimer {
    app: String,
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    json: Option<Box<RawValue>>,
    #[serde(default)]
    form: Option<Map<String, Value>>,
    #[serde(default)]
    delay_ms: Option<i64>,
    #[serde(default)]
    at: Option<i64>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    retry: Option<RetryRequest>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    interval_ms: Option<u64>,
    #[serde(default)]
    times: Option<u32>,
}

/// A timer's own retry policy; unset fields take the `[timers]` defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryRequest {
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    base_ms: Option<u64>,
    #[serde(default)]
    max_ms: Option<u64>,
}

/// `POST /v1/timers`.
pub async fn create(State(state): State<ApiState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, state.max_body_bytes).await?;
    let create: CreateTimer = parse_json(&body, "timer")?;
    state.keys.load().check(&parts.headers, &create.app)?;
    state.hub.app(&create.app)?;
    let settings = state.timers.settings();
    let interval = interval_of(settings, create.interval_ms, create.times)?;
    let when = match (create.delay_ms, create.at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_delay",
                "give delay_ms or at, not both",
            ))
        }
        (None, Some(at)) => When::At(at),
        (Some(delay), None) => When::Delay(delay),
        // An interval timer's first tick is one interval away, as Swoole's tick's is.
        (None, None) => {
            When::Delay(interval.map_or(0, |i| i64::try_from(i.every_ms).unwrap_or(i64::MAX)))
        }
    };
    let mut headers = header_list(create.headers)?;
    let body = request_body(create.body, create.json, create.form, &mut headers)?;
    let defaults = settings.retry;
    let retry = match (create.retry, interval) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_retry",
                "an interval timer does not retry: its next tick is its retry",
            ))
        }
        (None, Some(_)) => RetryPolicy {
            max_attempts: 1,
            ..defaults
        },
        (retry, None) => retry.map_or(defaults, |r| RetryPolicy {
            max_attempts: r.max_attempts.unwrap_or(defaults.max_attempts),
            base_ms: r.base_ms.unwrap_or(defaults.base_ms),
            max_ms: r.max_ms.unwrap_or(defaults.max_ms),
        }),
    };
    let method = create
        .method
        .map(|m| m.to_ascii_uppercase())
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let call = Call {
        method,
        url: create.url,
        headers,
        body,
        timeout_ms: create.timeout_ms,
    };
    let timer = new_timer(
        settings,
        create.app,
        call,
        when,
        retry,
        create.idempotency_key,
        interval,
    )?;
    let created = state.timers.create(timer).await?;
    let status = if created.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/v1/timers/{}", created.timer.id);
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(view(&created.timer, true)),
    )
        .into_response())
}

/// The `headers` object of a native timer or cron job as a list: every value a string.
pub(crate) fn header_list(
    headers: Option<Map<String, Value>>,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut list = Vec::new();
    for (name, value) in headers.unwrap_or_default() {
        match value {
            Value::String(value) => list.push((name, value)),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_header",
                    format!("the value of header {name:?} must be a string"),
                ))
            }
        }
    }
    Ok(list)
}

/// The body of a native timer or cron job from exactly one of `body`, `json` and
/// `form`; `json` and `form` add their Content-Type unless the headers have one.
pub(crate) fn request_body(
    body: Option<String>,
    json: Option<Box<RawValue>>,
    form: Option<Map<String, Value>>,
    headers: &mut Vec<(String, String)>,
) -> Result<Option<String>, ApiError> {
    let (body, content_type) = match (body, json, form) {
        (None, None, None) => return Ok(None),
        (Some(body), None, None) => (body, None),
        (None, Some(json), None) => (json.get().to_owned(), Some("application/json")),
        (None, None, Some(form)) => {
            let mut encoded = form_urlencoded::Serializer::new(String::new());
            for (name, value) in &form {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid_body",
                            format!("form field {name:?} must be a string, number or boolean"),
                        ))
                    }
                };
                encoded.append_pair(name, &text);
            }
            (encoded.finish(), Some("application/x-www-form-urlencoded"))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "give one of body, json and form",
            ))
        }
    };
    let has_type = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if let (Some(content_type), false) = (content_type, has_type) {
        headers.push(("Content-Type".into(), content_type.into()));
    }
    Ok(Some(body))
}

/// The timer `id` names, if the request may see it: another app's timer is not found.
pub(crate) async fn visible_timer(
    state: &ApiState,
    id: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
) -> Result<Timer, ApiError> {
    let not_found = |id: &str| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "timer_not_found",
            format!("no timer {id}"),
        )
    };
    let Path(id) = id.map_err(|e| ApiError::bad_request("invalid_timer_id", e.body_text()))?;
    let number: TimerId = id.parse().map_err(|_| {
        ApiError::bad_request("invalid_timer_id", format!("{id:?} is not a timer id"))
    })?;
    let timer = state
        .timers
        .get(number)
        .await?
        .ok_or_else(|| not_found(&id))?;
    match state.keys.load().check(headers, &timer.app) {
        Ok(()) => Ok(timer),
        Err(error) if error.status == StatusCode::FORBIDDEN => Err(not_found(&id)),
        Err(error) => Err(error),
    }
}

/// `GET /v1/timers/{id}`.
pub async fn get(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let timer = visible_timer(&state, id, &headers).await?;
    Ok(Json(view(&timer, true)))
}

/// `DELETE /v1/timers/{id}`: cancel.
pub async fn cancel(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let timer = visible_timer(&state, id, &headers).await?;
    match state.timers.cancel(timer.id).await? {
        Cancel::Cancelled { timer, .. } => Ok(Json(view(&timer, true))),
        Cancel::Finished(timer) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "timer_finished",
            format!(
                "timer {} has finished ({}); nothing to cancel",
                timer.id,
                timer.state.name()
            ),
        )),
        Cancel::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "timer_not_found",
            format!("no timer {}", timer.id),
        )),
    }
}

/// The app a request about an app's timers or cron jobs acts for: the one it names,
/// else the app of the API key it presents, else the server's only app; once the
/// request's key is checked for it.
pub(crate) fn request_app(
    state: &ApiState,
    named: Option<String>,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let app = match named {
        Some(app) => app,
        None => match state.keys.load().app_of(headers)? {
            Some(app) => app.to_string(),
            None => state.timers.settings().default_app.clone().ok_or_else(|| {
                ApiError::bad_request(
                    "missing_param",
                    "missing parameter \"app\": this server has several apps; name one, or send the app's API key",
                )
            })?,
        },
    };
    crate::hub::names::check_app(&app)?;
    state.keys.load().check(headers, &app)?;
    Ok(app)
}

/// `GET /v1/timers?app=&state=&limit=&cursor=`.
pub async fn list(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    let mut app = None;
    let mut page = ListQuery {
        limit: DEFAULT_PAGE,
        ..ListQuery::default()
    };
    let invalid = |message: String| ApiError::bad_request("invalid_param", message);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "app" => app = Some(value.into_owned()),
            "state" => {
                page.state = Some(
                    TimerState::ALL
                        .into_iter()
                        .find(|s| s.name() == value)
                        .ok_or_else(|| {
                            invalid(format!(
                                "state {value:?} is not one of pending, running, succeeded, failed, cancelled"
                            ))
                        })?,
                )
            }
            "limit" => {
                page.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| invalid(format!("limit must be between 1 and {MAX_PAGE}")))?
            }
            "cursor" => {
                page.after = Some(value.parse().map_err(|_| {
                    invalid(format!(
                        "cursor {value:?} is not a cursor from a previous page"
                    ))
                })?)
            }
            _ => {}
        }
    }
    page.app = request_app(&state, app, request.headers())?;
    let listed = state.timers.list(page).await?;
    Ok(Json(json!({
        "timers": listed.timers.iter().map(|t| view(t, false)).collect::<Vec<_>>(),
        "next_cursor": listed.next.map(|id| id.to_string()),
    })))
}
