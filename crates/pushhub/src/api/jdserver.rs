//! jdserver-compatible API endpoints (seed 000): `/push` and `/getUsers`.
//!
//! Parameters come from the query string, a form body or a JSON body, by GET or POST,
//! with PHP bracket notation for arrays ([`super::params`]).

use axum::extract::{Request, State};
use axum::Json;
use serde_json::{Map, Value};

use super::{content_type, params, read_body, ApiState};
use crate::http_error::ApiError;
use crate::hub::target;

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
    state.keys.check(&headers, &app)?;
    Ok((params, app))
}

/// `/push?app=&user=&msg=`: push `msg` to `user` (`100`, `100,101`, `*`, `group1/*`).
pub async fn push(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (params, app) = app_request(&state, request).await?;
    let user = text_param(&params, "user")?;
    let msg = params
        .get("msg")
        .ok_or_else(|| ApiError::bad_request("missing_param", "missing parameter \"msg\""))?;
    let data = serde_json::value::to_raw_value(msg)
        .map_err(|e| ApiError::bad_request("invalid_param", format!("parameter \"msg\": {e}")))?;
    let targets = target::parse(&user)?;
    let receipt = state.hub.publish(&app, &targets, None, data).await?;
    Ok(Json(
        serde_json::json!({"id": &*receipt.id, "delivered": receipt.delivered}),
    ))
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
