//! Pusher's HTTP API on the API listener, as the Pusher server SDKs call it (npm `pusher`,
//! `pusher/pusher-php-server`, Laravel's broadcaster):
//!
//! - `POST /apps/{id}/events`, `POST /apps/{id}/batch_events`: triggers, a push to the
//!   room of each channel named;
//! - `GET /apps/{id}/channels`, `GET /apps/{id}/channels/{name}`,
//!   `GET /apps/{id}/channels/{name}/users`: occupancy, asked of presence (every node);
//! - `POST /apps/{id}/users/{user}/terminate_connections`: the user's connections closed
//!   (also as `POST /users/{user}/terminate_connections`, the app found by the signed
//!   `auth_key`: the path the Python SDK, PyPI `pusher` 3.3, sends).
//!
//! Every request is signed with the app's secret ([`PusherSecret::verify_request`]) and
//! needs no API key. Statuses are Pusher's (400, 401, 403, 404, 413); the bodies are
//! pushhub's JSON error shape, which the SDKs hand over as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{
    check_channel, conn_name_of, is_cache_channel, target_of, PRESENCE_PREFIX, USER_CHANNEL_PREFIX,
};
use crate::api::{parse_json, read_body, ApiState};
use crate::auth::pusher::{PusherSecret, SignedRequest};
use crate::disconnect::Disconnect;
use crate::http_error::ApiError;
use crate::hub::app::PusherPolicy;
use crate::hub::{names, AppSettings, Hub, Publication, PushSpec, Target};

/// Longest event name, in characters, as Pusher allows.
pub const MAX_EVENT_NAME_CHARS: usize = 200;

/// The close Pusher's `terminate_connections` gives the user's connections (Pusher's code
/// for a connection the app closed).
pub fn terminated() -> Disconnect {
    Disconnect::new(
        4009,
        "connection terminated by the app (terminate_connections)",
    )
}

/// Pusher's API routes; each finds its app by the `{id}` of its path, or where the path
/// has none, by its `auth_key`.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/apps/{app_id}/events", post(events))
        .route("/apps/{app_id}/batch_events", post(batch_events))
        .route("/apps/{app_id}/channels", get(channels))
        .route("/apps/{app_id}/channels/{channel}", get(channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(users))
        .route(
            "/apps/{app_id}/users/{user}/terminate_connections",
            post(terminate_connections),
        )
        .route(
            "/users/{user}/terminate_connections",
            post(terminate_connections_by_key),
        )
}

/// A request whose signature checked out: its app, the app's Pusher settings, its query
/// parameters and its body.
struct Signed {
    app: Arc<AppSettings>,
    pusher: Arc<PusherPolicy>,
    query: Vec<(String, String)>,
    body: axum::body::Bytes,
}

impl Signed {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The attributes `info=a,b` asks for.
    fn info(&self) -> Vec<&str> {
        info_list(self.param("info"))
    }
}

fn info_list(info: Option<&str>) -> Vec<&str> {
    info.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|attribute| !attribute.is_empty())
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Find the app of `app_id`, read the body and check the signature: 404 for an app id no
/// app has, 413 for a body over `max_body_bytes`, 401 for a bad or stale signature, 403
/// for a disabled app.
async fn signed(state: &ApiState, app_id: &str, request: Request) -> Result<Signed, ApiError> {
    let app = state.hub.pusher_app(app_id);
    let unknown = || format!("no app has Pusher app_id {app_id:?}");
    check_signed(state, app, unknown, request).await
}

/// As [`signed`], for a path without an app id: the app is the one whose key the request's
/// `auth_key` names (the signature then proves it holds that app's secret).
async fn signed_by_key(state: &ApiState, request: Request) -> Result<Signed, ApiError> {
    let key = query_of(&request)
        .into_iter()
        .find(|(name, _)| name == "auth_key")
        .map(|(_, key)| key)
        .unwrap_or_default();
    let app = state.hub.pusher_app_by_key(&key);
    let unknown = || format!("no app has Pusher key {key:?} (auth_key)");
    check_signed(state, app, unknown, request).await
}

/// A request's query parameters, decoded.
fn query_of(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Read `request`'s body and check its signature against `app`'s Pusher secret (404 with
/// `unknown` when there is no such app).
async fn check_signed(
    state: &ApiState,
    app: Option<Arc<AppSettings>>,
    unknown: impl Fn() -> String,
    request: Request,
) -> Result<Signed, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "unknown_app", unknown());
    let app = app.ok_or_else(not_found)?;
    let pusher = app.pusher.clone().ok_or_else(not_found)?;
    let query = query_of(&request);
    let (parts, body) = request.into_parts();
    let body = read_body(body, state.max_body_bytes).await?;
    let secret = PusherSecret {
        key: &pusher.key,
        secret: &pusher.secret,
    };
    let request = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: &query,
        body: &body,
    };
    secret
        .verify_request(&request, now_secs())
        .map_err(|error| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                error.to_string(),
            )
        })?;
    if !pusher.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "app_disabled",
            format!(
                "Pusher app {:?} is disabled (enabled = false)",
                pusher.app_id
            ),
        ));
    }
    Ok(Signed {
        app,
        pusher,
        query,
        body,
    })
}

/// A channel name the API may act on, or 400.
fn channel_name(name: &str) -> Result<(), ApiError> {
    check_channel(name).map_err(|error| ApiError::bad_request("invalid_channel", error.to_string()))
}

/// An event as the SDKs send it; `data` is a string (the SDKs serialize objects first),
/// and any other JSON is taken as its text.
#[derive(Deserialize)]
struct EventBody {
    name: String,
    data: Box<RawValue>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

/// One checked trigger: what is published where.
struct Trigger {
    name: String,
    /// The event's data, a JSON string.
    data: Box<RawValue>,
    channels: Vec<String>,
    /// Where each channel's event goes, in the order of `channels`.
    targets: Vec<Target>,
    /// The connection (its name) the trigger's `socket_id` names: it does not get it.
    exclude: Option<String>,
}

/// Check `event` against Pusher's rules and the app's limits.
fn trigger(pusher: &PusherPolicy, event: EventBody) -> Result<Trigger, ApiError> {
    if event.name.is_empty() || event.name.chars().count() > MAX_EVENT_NAME_CHARS {
        return Err(ApiError::bad_request(
            "invalid_event_name",
            format!("an event name is 1 to {MAX_EVENT_NAME_CHARS} characters"),
        ));
    }
    let channels = match (event.channels, event.channel) {
        (Some(channels), None) => channels,
        (None, Some(channel)) => vec![channel],
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "name the channels in either \"channels\" (a list) or \"channel\"",
            ))
        }
    };
    if channels.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "\"channels\" is empty",
        ));
    }
    if channels.len() > pusher.max_trigger_channels {
        return Err(ApiError::bad_request(
            "too_many_channels",
            format!(
                "an event goes to at most {} channels, not {}",
                pusher.max_trigger_channels,
                channels.len()
            ),
        ));
    }
    let targets = channels
        .iter()
        .map(|channel| target_of(channel))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ApiError::bad_request("invalid_channel", error.to_string()))?;
    let text = super::frames::data_text(&event.data);
    if text.len() > pusher.max_event_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            format!(
                "event data is {} bytes, more than this app's max_event_bytes ({})",
                text.len(),
                pusher.max_event_bytes
            ),
        ));
    }
    let exclude = match &event.socket_id {
        Some(socket_id) => Some(conn_name_of(socket_id).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_socket_id",
                format!("socket_id {socket_id:?} is not one this server gave (N.M, digits)"),
            )
        })?),
        None => None,
    };
    let data = serde_json::value::to_raw_value(&text).map_err(|error| {
        ApiError::bad_request("invalid_request", format!("event data: {error}"))
    })?;
    Ok(Trigger {
        name: event.name,
        data,
        channels,
        targets,
        exclude,
    })
}

/// Publish `triggers` in one engine call: one message per channel, so a connection in two
/// of the channels receives the event on each, as Pusher delivers it.
///
/// A trigger's `socket_id` (its connection's name, [`trigger`]) is skipped on whichever
/// node holds it.
async fn publish(hub: &Hub, app: &AppSettings, triggers: &[Trigger]) -> Result<(), ApiError> {
    let pushes = triggers
        .iter()
        .flat_map(|trigger| {
            trigger.targets.iter().map(|target| PushSpec {
                targets: vec![target.clone()],
                event: Some(trigger.name.clone()),
                data: trigger.data.clone(),
                idempotency_key: None,
                exclude: trigger.exclude.clone(),
            })
        })
        .collect();
    for answer in hub.publish_batch(&app.name, pushes).await? {
        answer?;
    }
    Ok(())
}

/// The attributes `info` asks for of `channel`, among `subscription_count` and
/// `user_count` (presence channels only; others leave it out, as Pusher does). A user's
/// channel (`sendToUser`) has none.
async fn channel_attributes(
    hub: &Hub,
    app: &AppSettings,
    channel: &str,
    info: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let mut attributes = Map::new();
    if channel.starts_with(USER_CHANNEL_PREFIX) {
        return Ok(attributes);
    }
    let subscriptions = info.contains(&"subscription_count");
    let users = info.contains(&"user_count") && channel.starts_with(PRESENCE_PREFIX);
    if !subscriptions && !users {
        return Ok(attributes);
    }
    let occupancy = hub.room_occupancy(app, channel).await?;
    if users {
        attributes.insert("user_count".into(), occupancy.users.into());
    }
    if subscriptions {
        attributes.insert("subscription_count".into(), occupancy.connections.into());
    }
    Ok(attributes)
}

/// `POST /apps/{id}/events` with `{name, data, channels | channel, socket_id?, info?}`:
/// `{}`, or the channels' attributes when `info` asks for them.
async fn events(
    State(state): State<ApiState>,
    Path(app_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let signed = signed(&state, &app_id, request).await?;
    let event: EventBody = parse_json(&signed.body, "event")?;
    let info = info_list(event.info.as_deref())
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let trigger = trigger(&signed.pusher, event)?;
    publish(&state.hub, &signed.app, std::slice::from_ref(&trigger)).await?;
    if info.is_empty() {
        return Ok(Json(Value::Object(Map::new())));
    }
    let info: Vec<&str> = info.iter().map(String::as_str).collect();
    let mut channels = Map::new();
    for channel in &trigger.channels {
        let attributes = channel_attributes(&state.hub, &signed.app, channel, &info).await?;
        channels.insert(channel.clone(), Value::Object(attributes));
    }
    Ok(Json(serde_json::json!({ "channels": channels })))
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

/// `POST /apps/{id}/batch_events` with `{batch: [{channel, name, data, socket_id?,
/// info?}]}`: all or none are published; `{}`, or `{"batch": [attributes…]}` in order
/// when any event asks for `info`.
async fn batch_events(
    State(state): State<ApiState>,
    Path(app_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let signed = signed(&state, &app_id, request).await?;
    let body: BatchBody = parse_json(&signed.body, "batch")?;
    if body.batch.len() > signed.pusher.max_batch_events {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!(
                "a batch holds at most {} events, not {}",
                signed.pusher.max_batch_events,
                body.batch.len()
            ),
        ));
    }
    let mut triggers = Vec::with_capacity(body.batch.len());
    let mut infos = Vec::with_capacity(body.batch.len());
    for event in body.batch {
        infos.push(
            info_list(event.info.as_deref())
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
        triggers.push(trigger(&signed.pusher, event)?);
    }
    publish(&state.hub, &signed.app, &triggers).await?;
    if infos.iter().all(Vec::is_empty) {
        return Ok(Json(Value::Object(Map::new())));
    }
    let mut batch = Vec::with_capacity(triggers.len());
    for (trigger, info) in triggers.iter().zip(&infos) {
        let info: Vec<&str> = info.iter().map(String::as_str).collect();
        let mut attributes = Map::new();
        if let Some(channel) = trigger.channels.first() {
            attributes = channel_attributes(&state.hub, &signed.app, channel, &info).await?;
        }
        batch.push(Value::Object(attributes));
    }
    Ok(Json(serde_json::json!({ "batch": batch })))
}

/// 400 unless `user_count` is asked only where it means something: presence channels.
fn user_count_on_presence(info: &[&str], presence: bool) -> Result<(), ApiError> {
    if info.contains(&"user_count") && !presence {
        return Err(ApiError::bad_request(
            "invalid_info",
            "user_count is only available for presence channels (filter_by_prefix=presence- or a presence- channel)",
        ));
    }
    Ok(())
}

/// `GET /apps/{id}/channels?filter_by_prefix=&info=`: the occupied channels, with
/// `user_count` (presence prefixes only) and `subscription_count` when asked.
async fn channels(
    State(state): State<ApiState>,
    Path(app_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let signed = signed(&state, &app_id, request).await?;
    let prefix = signed.param("filter_by_prefix").unwrap_or("");
    let info = signed.info();
    user_count_on_presence(&info, prefix.starts_with(PRESENCE_PREFIX))?;
    let rooms = state.hub.occupied_rooms(&signed.app, prefix).await?;
    let mut channels = BTreeMap::new();
    for (room, connections) in rooms {
        let mut attributes = Map::new();
        if info.contains(&"user_count") {
            let occupancy = state.hub.room_occupancy(&signed.app, &room).await?;
            attributes.insert("user_count".into(), occupancy.users.into());
        }
        if info.contains(&"subscription_count") {
            attributes.insert("subscription_count".into(), connections.into());
        }
        channels.insert(room, Value::Object(attributes));
    }
    Ok(Json(serde_json::json!({ "channels": channels })))
}

/// `GET /apps/{id}/channels/{name}?info=`: `{"occupied": bool}` and the attributes asked
/// (`cache`: a cache channel's last event, `{"data", "ttl"}`, when its history keeps one).
async fn channel(
    State(state): State<ApiState>,
    Path((app_id, channel)): Path<(String, String)>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let signed = signed(&state, &app_id, request).await?;
    channel_name(&channel)?;
    let info = signed.info();
    user_count_on_presence(&info, channel.starts_with(PRESENCE_PREFIX))?;
    let occupancy = state.hub.room_occupancy(&signed.app, &channel).await?;
    let mut answer = Map::new();
    answer.insert("occupied".into(), (occupancy.connections > 0).into());
    if info.contains(&"user_count") {
        answer.insert("user_count".into(), occupancy.users.into());
    }
    if info.contains(&"subscription_count") {
        answer.insert("subscription_count".into(), occupancy.connections.into());
    }
    if info.contains(&"cache") && is_cache_channel(&channel) {
        if let Some(last) = state.hub.room_last(&signed.app, &channel).await? {
            answer.insert("cache".into(), cached(&signed.app, &last));
        }
    }
    Ok(Json(Value::Object(answer)))
}

/// A cache channel's last event as `info=cache` shows it: its data (the text a trigger
/// sent; any other JSON as its text) and the seconds its history keeps it still.
fn cached(app: &AppSettings, last: &Publication) -> Value {
    let data = super::frames::data_text(&last.message.data);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let age = now_ms.saturating_sub(last.message.ts_ms) / 1000;
    let ttl = app.history.ttl.as_secs().saturating_sub(age);
    serde_json::json!({ "data": data, "ttl": ttl })
}

/// `GET /apps/{id}/channels/{presence-name}/users`: `{"users": [{"id": …}]}`, one entry
/// per user however many connections it holds, across nodes.
async fn users(
    State(state): State<ApiState>,
    Path((app_id, channel)): Path<(String, String)>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let signed = signed(&state, &app_id, request).await?;
    channel_name(&channel)?;
    if !channel.starts_with(PRESENCE_PREFIX) {
        return Err(ApiError::bad_request(
            "not_presence",
            format!("{channel:?} is not a presence channel: only presence- channels list users"),
        ));
    }
    let members = state.hub.room_presence(&signed.app, &channel).await?;
    let users: Vec<Value> = members
        .into_iter()
        .map(|member| serde_json::json!({ "id": member.user }))
        .collect();
    Ok(Json(serde_json::json!({ "users": users })))
}

/// `POST /apps/{id}/users/{user}/terminate_connections`: close every connection of the
/// user, on every node; `{}` (also when the user has none).
async fn terminate_connections(
    State(state): State<ApiState>,
    Path((app_id, user)): Path<(String, String)>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let signed = signed(&state, &app_id, request).await?;
    terminate(&state, &signed, &user).await
}

/// `POST /users/{user}/terminate_connections`: as above, the app found by `auth_key`.
async fn terminate_connections_by_key(
    State(state): State<ApiState>,
    Path(user): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let signed = signed_by_key(&state, request).await?;
    terminate(&state, &signed, &user).await
}

/// Close every connection of `user` in the signed request's app, on every node.
async fn terminate(state: &ApiState, signed: &Signed, user: &str) -> Result<Json<Value>, ApiError> {
    names::check_user(user)?;
    state
        .hub
        .disconnect(&signed.app.name, user, None, &terminated())
        .await?;
    Ok(Json(Value::Object(Map::new())))
}
