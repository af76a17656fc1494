//! push-serve-compatible API endpoints (seed 004): `/access` and `/push?uid=&password=`.
//!
//! Answers keep push-serve's shape, `{"topic":…,"contents":…}`, errors included, and its
//! status (200), since its clients read the body and nothing else; only a uid that could
//! never connect gets a 400 besides.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, value::RawValue};
use subtle::ConstantTimeEq;

use crate::api::{read_body, ApiState};
use crate::auth::access_key::access_key;
use crate::hub::{names, Target};

/// A push-serve error answer: `{"topic":"error","contents":…}`.
struct Refusal(String);

impl Refusal {
    fn new(contents: impl Into<String>) -> Self {
        Self(contents.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        Json(json!({"topic": "error", "contents": self.0})).into_response()
    }
}

/// The push-serve configuration, if the request's password is right.
fn authorized(
    state: &ApiState,
    query: &HashMap<String, String>,
) -> Result<std::sync::Arc<crate::config::PushServe>, Refusal> {
    let Some(config) = state.pushserve.load_full() else {
        return Err(Refusal::new(
            "push-serve compatibility is not enabled on this server",
        ));
    };
    match query.get("password") {
        Some(given) if bool::from(given.as_bytes().ct_eq(config.password.as_bytes())) => Ok(config),
        Some(_) => Err(Refusal::new("密码错误")),
        None => Err(Refusal::new("缺少参数 password")),
    }
}

fn uid(query: &HashMap<String, String>) -> Result<&str, Refusal> {
    query
        .get("uid")
        .map(String::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Refusal::new("缺少参数 uid"))
}

/// `GET /access?uid=&password=`: an access key for `uid`, for the backend to hand to that
/// logged-in user's client. A uid that could never connect (not a valid user id, such as
/// one that is not UTF-8) gets no key: 400, in push-serve's error shape, with the reason.
pub async fn access(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let answer = authorized(&state, &query).and_then(|config| {
        let uid = uid(&query)?;
        if let Err(invalid) = names::check_user(uid) {
            let refusal = Refusal::new(format!("uid 无效 (invalid uid): {invalid}"));
            return Ok((StatusCode::BAD_REQUEST, refusal).into_response());
        }
        let key = access_key(&config, uid);
        Ok(Json(json!({"topic": "_access", "contents": key})).into_response())
    });
    answer.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct PushBody {
    topic: String,
    contents: Box<RawValue>,
}

/// True when a `/push` request is push-serve's (it names `uid` and `password`), not
/// jdserver's.
pub fn is_pushserve(query: Option<&str>) -> bool {
    let mut uid = false;
    let mut password = false;
    for (key, _) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        uid |= key == "uid";
        password |= key == "password";
    }
    uid && password
}

/// push-serve's API routes on the API listener but `/push`, which it shares with
/// jdserver (the API router tells the two apart).
pub fn routes() -> Router<ApiState> {
    Router::new().route("/access", get(access))
}

/// push-serve's own port (`[pushserve] addr`): its `/access` and `/push`, nothing else.
/// Every `/push` there is push-serve's, whatever its query names, so jdserver's `/push`
/// and the native API (which answer for apps by API key, or openly on loopback) are never
/// reachable through it.
pub fn own_port_router(state: ApiState) -> Router {
    Router::new()
        .route("/access", get(access))
        .route("/push", any(|State(state), request| push(state, request)))
        .with_state(state)
}

/// `POST /push?uid=&password=` with `{"topic":…,"contents":…}`: push to that user.
/// Success only when the user is online, as push-serve answered; the message is kept in
/// history either way.
pub async fn push(state: ApiState, request: Request) -> Response {
    push_answer(state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn push_answer(state: ApiState, request: Request) -> Result<Response, Refusal> {
    let query: HashMap<String, String> =
        form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let config = authorized(&state, &query)?;
    let uid = uid(&query)?.to_owned();
    let body: Bytes = read_body(request.into_body(), state.max_body_bytes)
        .await
        .map_err(|e| Refusal::new(e.message))?;
    crate::json_depth::check(&body).map_err(|e| Refusal::new(e.to_string()))?;
    let push: PushBody =
        serde_json::from_slice(&body).map_err(|e| Refusal::new(format!("消息体格式错误: {e}")))?;
    let targets = [Target::User(uid.clone())];
    let receipt = state
        .hub
        .publish(&config.app, &targets, Some(push.topic), push.contents)
        .await
        .map_err(|e| Refusal::new(e.to_string()))?;
    // Presence answers "online", not this node's delivery count: across nodes the user's
    // connections may all be elsewhere.
    let online = receipt.delivered > 0
        || state
            .hub
            .online(&config.app, &uid)
            .await
            .map_err(|e| Refusal::new(e.to_string()))?;
    if !online {
        return Err(Refusal::new("此用户不在线"));
    }
    Ok(Json(json!({"topic": "success", "number": 1, "contents": "推送成功"})).into_response())
}
