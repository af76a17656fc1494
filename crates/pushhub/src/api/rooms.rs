//! Room endpoints: who is in a room, and server-side joins and leaves.
//!
//! - `GET /v1/apps/{app}/rooms/{room}`: members with their connection counts.
//! - `POST /v1/apps/{app}/rooms/{room}/members` `{"user":"100"}`: put the user's
//!   connections (on every node) in the room.
//! - `DELETE /v1/apps/{app}/rooms/{room}/members/{user}`: take them out.
//!
//! Pushing to a room is `POST /v1/push` with `"room"` instead of `"to"`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{json_body, ApiState};
use crate::http_error::ApiError;

/// Body of `POST /v1/apps/{app}/rooms/{room}/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    user: String,
}

fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", rejection.body_text())
}

/// `GET /v1/apps/{app}/rooms/{room}`: the room's members, sorted by user id.
pub async fn members(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let Path((app, room)) = path.map_err(path_error)?;
    state.keys.load().check(&headers, &app)?;
    let members = state.hub.room_members(&app, &room).await?;
    let connections: usize = members.iter().map(|(_, c)| c).sum();
    let users: Vec<_> = members
        .iter()
        .map(|(user, count)| json!({"user": user, "connections": count}))
        .collect();
    Ok(Json(json!({
        "app": app,
        "room": room,
        "users": users,
        "total_users": members.len(),
        "total_connections": connections,
    })))
}

/// `POST /v1/apps/{app}/rooms/{room}/members`: join the user's connections to the room.
pub async fn add(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let Path((app, room)) = path.map_err(path_error)?;
    let (parts, body) = request.into_parts();
    state.keys.load().check(&parts.headers, &app)?;
    let add: AddMember = json_body(body, state.max_body_bytes, "add-member request").await?;
    let joined = state.hub.add_to_room(&app, &add.user, &room).await?;
    Ok(Json(json!({ "joined": joined })))
}

/// `DELETE /v1/apps/{app}/rooms/{room}/members/{user}`: take the user's connections out.
pub async fn remove(
    State(state): State<ApiState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let Path((app, room, user)) = path.map_err(path_error)?;
    state.keys.load().check(&headers, &app)?;
    let left = state.hub.remove_from_room(&app, &user, &room).await?;
    Ok(Json(json!({ "left": left })))
}
