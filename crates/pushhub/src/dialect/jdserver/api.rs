//! jdserver-compatible API endpoints (seed 000): `/push`, `/getUsers` and `/setTimeout`.
//!
//! Parameters come from the query string, a form body or a JSON body, by GET or POST,
//! with PHP bracket notation for arrays ([`crate::api::params`]).

use axum::extract::{Request, State};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{Map, Value};

use crate::api::{content_type, params, read_body, ApiState};
use crate::http_error::ApiError;
use crate::hub::target;
use crate::scheduler::rules::{self, Call, When};
use crate::store::RetryPolicy;

/// jdserver's API routes but `/push`, which it shares with push-serve (the API router
/// tells the two apart).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/getUsers", any(get_users))
        .route("/setTimeout", any(set_timeout))
}

/// Every parameter of a jdserver-style request (query, form or JSON body), bodies up to
/// `max_body_bytes`.
pub(crate) async fn request_params(
    max_body_bytes: usize,
    request: Request,
) -> Result<Map<String, Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, max_body_bytes).await?;
    params::collect(parts.uri.query(), content_type(&parts.headers), &body)
}

/// A parameter that must be a string (numbers are taken as their text, as PHP would).
pub(crate) fn text_param(
    params: &Map<String, Value>,
    name: &'static str,
) -> Result<String, ApiError> {
    match params.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(ApiError::bad_request(
            "invalid_param",
            format!("parameter {name:?} must be a string"),
        )),
        None => Err(ApiError::bad_request(
            "missing_param",
            format!("missing parameter {name:?}"),
        )),
    }
}

/// The parameters of a request about one app, once its API key (if the app has keys) is
/// checked; the app's name comes with them.
async fn app_request(
    state: &ApiState,
    request: Request,
) -> Result<(Map<String, Value>, String), ApiError> {
    let headers = request.headers().clone();
    let params = request_params(state.max_body_bytes, request).await?;
    let app = text_param(&params, "app")?;
    state.keys.load().check(&headers, &app)?;
    Ok((params, app))
}

/// `/push?app=&user=&msg=`: push `msg` to `user` (`100`, `100,101`, `*`, `group1/*`).
pub async fn push(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<PushAnswer>, ApiError> {
    let (params, app) = app_request(&state, request).await?;
    let user = text_param(&params, "user")?;
    let msg = params
        .get("msg")
        .ok_or_else(|| ApiError::bad_request("missing_param", "missing parameter \"msg\""))?;
    let data = serde_json::value::to_raw_value(msg)
        .map_err(|e| ApiError::bad_request("invalid_param", format!("parameter \"msg\": {e}")))?;
    let targets = target::parse(&user)?;
    let receipt = state.hub.publish(&app, &targets, None, data).await?;
    Ok(Json(PushAnswer {
        id: receipt.id,
        delivered: receipt.delivered,
    }))
}

/// jdserver's answer to `/push`: `{"id":"…","delivered":N}`, written straight from the
/// receipt.
#[derive(Debug, serde::Serialize)]
pub struct PushAnswer {
    /// The message id.
    id: std::sync::Arc<str>,
    /// Connections the message reached.
    delivered: u64,
}

/// `/getUsers?app=`: the ids of the app's online users, as a JSON array.
pub async fn get_users(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (_, app) = app_request(&state, request).await?;
    let users = state.hub.users(&app).await?;
    Ok(Json(Value::Array(
        users
            .into_iter()
            .map(|(user, _)| Value::String(user))
            .collect(),
    )))
}

/// `/setTimeout?url=&data=&timeout=&headers[]=`: call `url` once, `timeout` milliseconds
/// from now (default 0: at once). Without `data` the call is a GET; with it, a POST whose
/// body is `data` form-encoded (PHP's `http_build_query`), or JSON when `headers` holds
/// `Content-Type: application/json`; a string `data` is sent as it is. `headers` is a list
/// of `Name: value` lines. Answers the timer id, a bare number as jdserver's did.
///
/// jdserver made one attempt and wrote the result to its trace.log; so does this (the
/// result log is `timers.log`), with at-least-once delivery across crashes on top.
/// `/v1/timers` offers retries.
pub async fn set_timeout(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let headers = request.headers().clone();
    let params = request_params(state.max_body_bytes, request).await?;
    let app = timer_app(&state, &params, &headers)?;
    state.hub.app(&app)?;
    let url = text_param(&params, "url")?;
    let delay = delay_param(&params)?;
    let mut lines = header_lines(&params)?;
    let (method, body) = match params.get("data") {
        None | Some(Value::Null) => ("GET", None),
        Some(data) => ("POST", Some(encode_data(data, &mut lines))),
    };
    let settings = state.timers.settings();
    let call = Call {
        method: method.into(),
        url,
        headers: lines,
        body,
        timeout_ms: None,
    };
    let once = RetryPolicy {
        max_attempts: 1,
        ..settings.retry
    };
    let timer = rules::new_timer(settings, app, call, When::Delay(delay), once, None, None)?;
    let created = state.timers.create(timer).await?;
    Ok(Json(Value::from(created.timer.id)))
}

/// The app a `/setTimeout` call acts for. jdserver's had no app; pushhub's timers belong
/// to one: the `app` parameter, else the app of the API key presented, else the only
/// declared app (the embedded default's `demo`).
fn timer_app(
    state: &ApiState,
    params: &Map<String, Value>,
    headers: &axum::http::HeaderMap,
) -> Result<String, ApiError> {
    let app = if params.contains_key("app") {
        text_param(params, "app")?
    } else if let Some(app) = state.keys.load().app_of(headers)? {
        app.to_string()
    } else if let Some(app) = &state.timers.settings().default_app {
        app.clone()
    } else {
        return Err(ApiError::bad_request(
            "missing_param",
            "missing parameter \"app\": this server has several apps; name one, or send the app's API key",
        ));
    };
    state.keys.load().check(headers, &app)?;
    Ok(app)
}

/// `timeout`: whole milliseconds, as a number or text; absent or empty is 0.
fn delay_param(params: &Map<String, Value>) -> Result<i64, ApiError> {
    let invalid = |shown: &dyn std::fmt::Display| {
        ApiError::bad_request(
            "invalid_param",
            format!("timeout {shown} is not a whole number of milliseconds"),
        )
    };
    match params.get("timeout") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| invalid(n)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(0),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| invalid(&format!("{s:?}"))),
        Some(other) => Err(invalid(other)),
    }
}

/// `headers`: `Name: value` lines, as a list (a PHP array: its keys are ignored, as curl
/// ignores them) or one string (lines separated by newlines).
fn header_lines(params: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    let malformed = |why: String| ApiError::bad_request("invalid_header", why);
    let lines: Vec<&Value> = match params.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(Value::Object(items)) => items.values().collect(),
        Some(one @ Value::String(_)) => vec![one],
        Some(_) => {
            return Err(malformed(
                "headers must be a list of \"Name: value\" lines".into(),
            ))
        }
    };
    let mut headers = Vec::new();
    for line in lines {
        let Value::String(text) = line else {
            return Err(malformed(format!("header line {line} is not text")));
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| malformed(format!("header line {line:?} is not \"Name: value\"")))?;
            let (name, value) = (name.trim(), value.trim());
            rules::check_header(name, value)?;
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    Ok(headers)
}

/// The POST body for `data`, adding `Content-Type: application/x-www-form-urlencoded`
/// when the headers name no content type.
fn encode_data(data: &Value, headers: &mut Vec<(String, String)>) -> String {
    let content_type = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let body = match data {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(true) => "1".into(),
        Value::Bool(false) | Value::Null => String::new(),
        Value::Array(_) | Value::Object(_)
            if content_type.as_deref() == Some("application/json") =>
        {
            data.to_string()
        }
        Value::Array(_) | Value::Object(_) => params::php_query(data),
    };
    if content_type.is_none() {
        headers.push((
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn data_is_encoded_as_the_headers_say() {
        let mut headers = Vec::new();
        assert_eq!(
            encode_data(&json!({"c": "3", "d": "4"}), &mut headers),
            "c=3&d=4"
        );
        assert_eq!(
            headers,
            [(
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned()
            )]
        );
        let mut headers = vec![(
            "content-type".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        )];
        assert_eq!(
            encode_data(&json!({"c": 3, "d": 4}), &mut headers),
            r#"{"c":3,"d":4}"#
        );
        assert_eq!(headers.len(), 1);
        let mut headers = vec![("Content-Type".to_owned(), "text/plain".to_owned())];
        assert_eq!(encode_data(&json!("raw body"), &mut headers), "raw body");
        assert_eq!(encode_data(&json!(12), &mut Vec::new()), "12");
    }

    #[test]
    fn header_lines_and_delays_are_read_like_php_sent_them() {
        let lines = header_lines(&map(json!({"headers": ["Content-Type: application/json", "Authorization: Basic dGVzdDp0ZXN0MTIz"]}))).unwrap();
        assert_eq!(
            lines[1],
            (
                "Authorization".to_owned(),
                "Basic dGVzdDp0ZXN0MTIz".to_owned()
            )
        );
        let lines = header_lines(&map(json!({"headers": {"3": "X-A: 1", "7": "X-B:2"}}))).unwrap();
        assert_eq!(
            lines,
            [
                ("X-A".to_owned(), "1".to_owned()),
                ("X-B".to_owned(), "2".to_owned())
            ]
        );
        let lines = header_lines(&map(json!({"headers": "X-A: 1\r\nX-B: 2\n"}))).unwrap();
        assert_eq!(lines.len(), 2);
        for bad in [
            json!(["no colon"]),
            json!([1]),
            json!(5),
            json!(["Bad Name: x"]),
            json!(["Host: x"]),
        ] {
            assert_eq!(
                header_lines(&map(json!({"headers": bad})))
                    .unwrap_err()
                    .code,
                "invalid_header"
            );
        }
        assert_eq!(delay_param(&map(json!({}))).unwrap(), 0);
        assert_eq!(delay_param(&map(json!({"timeout": ""}))).unwrap(), 0);
        assert_eq!(delay_param(&map(json!({"timeout": "1500"}))).unwrap(), 1500);
        assert_eq!(delay_param(&map(json!({"timeout": -5}))).unwrap(), -5);
        for bad in [json!("soon"), json!(1.5), json!([1])] {
            assert_eq!(
                delay_param(&map(json!({"timeout": bad}))).unwrap_err().code,
                "invalid_param"
            );
        }
    }
}
