//! Native API endpoints: `/v1/push`, `/v1/disconnect`, `/v1/apps/{app}/users`, `/v1/stats`,
//! `/healthz`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::{json_body, parse_json, read_body, users_page, ApiState};
use crate::disconnect::Disconnect;
use crate::http_error::ApiError;
use crate::hub::target::{self, Target};
use crate::hub::{names, PublishReceipt, PushSpec};

/// Body of `POST /v1/push`, read in place: its names borrow from the body (copied only
/// when JSON escapes them) until the push needs them owned.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest<'a> {
    #[serde(borrow)]
    app: Cow<'a, str>,
    /// Users, groups or everyone, in the target grammar.
    #[serde(default, borrow)]
    to: Option<Cow<'a, str>>,
    /// A room, instead of `to`.
    #[serde(default)]
    room: Option<String>,
    /// One connection (the `conn` of its `welcome`), instead of `to`: live-only.
    #[serde(default)]
    conn: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    /// Makes a retry within the idempotency window answer with the first push's answer
    /// instead of publishing again.
    #[serde(default)]
    idempotency_key: Option<String>,
    /// A connection (the `conn` of its `welcome`) the push must not reach: the client
    /// whose action this push tells everyone else about.
    #[serde(default)]
    exclude: Option<String>,
}

/// What a `POST /v1/push` asks for, checked.
#[derive(Debug)]
pub enum PushAction {
    /// A push to one connection, live-only.
    Conn {
        /// The connection, as its `welcome` named it.
        conn: String,
        /// The event name.
        event: Option<String>,
        /// The payload.
        data: Box<RawValue>,
    },
    /// A publish to users, groups, everyone or a room.
    Publish(PushSpec),
}

/// Read a `POST /v1/push` body: `400 bad_json` when it is not JSON, `400 invalid_request`
/// when a field is missing, mistyped or unknown. The app is known from here on (for the
/// key check); what the push asks for is checked by [`PushRequest::into_action`].
pub fn read_push(body: &[u8]) -> Result<PushRequest<'_>, ApiError> {
    parse_json(body, "push request")
}

impl PushRequest<'_> {
    /// The app pushed to.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// What the push asks for, or the `400` telling what it names wrong.
    pub fn into_action(self) -> Result<PushAction, ApiError> {
        let data = self.data.unwrap_or(RawValue::NULL).to_owned();
        if let Some(conn) = self.conn {
            if self.to.is_some() || self.room.is_some() {
                return Err(ApiError::bad_request("invalid_request", ONE_TARGET));
            }
            if self.idempotency_key.is_some() || self.exclude.is_some() {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "a push to one \"conn\" is live-only and takes no \"idempotency_key\" or \"exclude\"",
                ));
            }
            return Ok(PushAction::Conn {
                conn,
                event: self.event,
                data,
            });
        }
        Ok(PushAction::Publish(PushSpec {
            targets: targets_of(self.to.as_deref(), self.room, ONE_TARGET)?,
            event: self.event,
            data,
            idempotency_key: self.idempotency_key,
            exclude: self.exclude,
        }))
    }
}

/// Answer of `POST /v1/push`. Its names are the receipt's own, shared rather than
/// copied: the answer is written straight from them.
#[derive(Debug, Serialize)]
pub struct PushResponse {
    /// The message id.
    pub id: Arc<str>,
    /// Connections the message reached: on one node, those it was queued to; across nodes,
    /// the targets' online connections as presence counts them (see docs/api.md).
    pub delivered: u64,
    /// The message's offset, when the push had a single target channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off: Option<u64>,
    /// Each target channel and the message's position there.
    pub channels: Vec<ChannelPosition>,
}

/// A message's position in one channel.
#[derive(Debug, Serialize)]
pub struct ChannelPosition {
    /// The channel.
    pub ch: Arc<str>,
    /// Its epoch.
    pub epoch: Arc<str>,
    /// The message's offset there.
    pub off: u64,
}

impl From<PublishReceipt> for PushResponse {
    fn from(receipt: PublishReceipt) -> Self {
        let off = match receipt.positions.as_slice() {
            [(_, position)] => Some(position.offset),
            _ => None,
        };
        Self {
            id: receipt.id,
            delivered: receipt.delivered,
            off,
            channels: receipt
                .positions
                .into_iter()
                .map(|(ch, position)| ChannelPosition {
                    ch,
                    epoch: position.epoch,
                    off: position.offset,
                })
                .collect(),
        }
    }
}

/// What a push naming no target, or more than one kind, is told.
const ONE_TARGET: &str = "give one of \"to\" (users, groups, everyone), \"room\" or \"conn\"";

/// The targets of a push that names users, groups or everyone (`to`) or a room; `hint`
/// is what it is told when it names neither or both.
pub fn targets_of(
    to: Option<&str>,
    room: Option<String>,
    hint: &str,
) -> Result<Vec<Target>, ApiError> {
    match (to, room) {
        (Some(to), None) => Ok(target::parse(to)?),
        (None, Some(room)) => {
            names::check_room(&room)?;
            Ok(vec![Target::Room(room)])
        }
        _ => Err(ApiError::bad_request("invalid_request", hint.to_owned())),
    }
}

/// `POST /v1/push`: publish to users, groups, everyone or a room of an app, or push to one
/// connection.
pub async fn push(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<PushResponse>, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, state.max_body_bytes).await?;
    let push = read_push(&body)?;
    state.keys.load().check(&parts.headers, push.app())?;
    let app = push.app.clone();
    let spec = match push.into_action()? {
        PushAction::Conn { conn, event, data } => {
            let receipt = state.hub.push_to_conn(&app, &conn, event, data).await?;
            return Ok(Json(receipt.into()));
        }
        PushAction::Publish(spec) => spec,
    };
    if spec.idempotency_key.is_some() {
        let mut answers = state.hub.publish_batch(&app, vec![spec]).await?;
        let answer = answers.pop().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the push got no answer",
            )
        })?;
        return Ok(Json(answer?.into()));
    }
    let receipt = state
        .hub
        .publish_excluding(
            &app,
            &spec.targets,
            spec.event,
            spec.data,
            spec.exclude.as_deref(),
        )
        .await?;
    Ok(Json(receipt.into()))
}

/// Body of `POST /v1/disconnect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectRequest {
    app: String,
    user: String,
    /// One connection (the `conn` of its `welcome`); absent: all of the user's.
    #[serde(default)]
    conn: Option<String>,
    /// What the client is told (the close reason); absent: the code's own text.
    #[serde(default)]
    reason: Option<String>,
    /// False asks the client not to reconnect (close 4516 instead of 4009).
    #[serde(default = "reconnect_by_default")]
    reconnect: bool,
}

fn reconnect_by_default() -> bool {
    true
}

/// Longest custom close reason: a WebSocket close reason holds 123 bytes.
const MAX_REASON_BYTES: usize = 120;

/// `POST /v1/disconnect`: close a user's connections (or one of them) with a reason the
/// client sees, e.g. on logout or a ban.
pub async fn disconnect(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let kick: DisconnectRequest =
        json_body(body, state.max_body_bytes, "disconnect request").await?;
    state.keys.load().check(&parts.headers, &kick.app)?;
    if let Some(text) = kick.conn.as_deref() {
        crate::hub::parse_conn_name(text).map_err(|_| {
            ApiError::bad_request(
                "invalid_conn",
                format!("conn {text:?} is not a connection id from a welcome frame"),
            )
        })?;
    }
    let code = if kick.reconnect {
        Disconnect::KICKED
    } else {
        Disconnect::KICKED_FOR_GOOD
    };
    let reason = match kick.reason {
        Some(text) if text.len() > MAX_REASON_BYTES || text.chars().any(char::is_control) => {
            return Err(ApiError::bad_request(
                "invalid_reason",
                format!(
                    "reason must be at most {MAX_REASON_BYTES} bytes without control characters"
                ),
            ))
        }
        Some(text) => code.with_reason(text),
        None => code,
    };
    let closed = state
        .hub
        .disconnect(&kick.app, &kick.user, kick.conn.as_deref(), &reason)
        .await?;
    Ok(Json(json!({ "disconnected": closed })))
}

/// `GET /v1/apps/{app}/users[?conns=true][&limit=N][&cursor=USER]`: online users with
/// their connection counts, by user id; with `conns=true`, each with this node's
/// connections in detail (see [`users_page`]).
pub async fn users(
    State(state): State<ApiState>,
    app: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(app) = app.map_err(|e| ApiError::bad_request("invalid_app", e.body_text()))?;
    state.keys.load().check(request.headers(), &app)?;
    let page = users_page::UsersQuery::parse(request.uri().query())?;
    let users = state.hub.users(&app).await?;
    Ok(Json(users_page::render(&state.hub, &app, users, &page)))
}

/// `GET /v1/stats`: server counters.
pub async fn stats(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.keys.load().check_any(&headers)?;
    let (broker, presence) = state.hub.engine_kinds();
    let mut body = serde_json::to_value(state.hub.stats().snapshot()).unwrap_or_else(|_| json!({}));
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "uptime_secs".into(),
            json!(state.started.elapsed().as_secs()),
        );
        object.insert(
            "engine".into(),
            json!({"broker": broker, "presence": presence}),
        );
        object.insert("broker".into(), json!(state.hub.broker_stats()));
        object.insert("timers".into(), json!(state.timers.snapshot()));
        object.insert("cron".into(), json!(state.timers.cron_snapshot()));
    }
    Ok(Json(body))
}

/// `GET /healthz`: the process is up and serving, and its engine reaches what it needs
/// (503 `engine_unavailable` with the reason while, say, Redis is away).
pub async fn healthz(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.hub.engine_health().await.map_err(|reason| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "engine_unavailable",
            reason,
        )
    })?;
    Ok(Json(json!({"status": "ok"})))
}
