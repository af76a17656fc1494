//! What occupies an app's rooms, asked of presence so the answer covers every node: the
//! questions Pusher's HTTP API asks of its channels (`GET /apps/{id}/channels[/{name}]`,
//! `…/users`), which a Pusher channel answers as the room of the same name.

use std::sync::Arc;

use super::{channel, names, AppSettings, Hub, HubError};
use crate::engine::{Member, Publication};

/// How occupied one room is, across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomOccupancy {
    /// Connections in the room.
    pub connections: usize,
    /// Distinct users among them.
    pub users: usize,
}

impl Hub {
    /// The app whose Pusher app id is `app_id`, among the apps served now (a reload
    /// changes them like any other setting).
    pub fn pusher_app(&self, app_id: &str) -> Option<Arc<AppSettings>> {
        self.inner.apps.load().by_pusher_id(app_id)
    }

    /// The app whose Pusher key is `key` (a client's `/app/{key}`).
    pub fn pusher_app_by_key(&self, key: &str) -> Option<Arc<AppSettings>> {
        self.inner.apps.load().by_pusher_key(key)
    }

    /// The occupied rooms of `app` whose name starts with `prefix`, with their connection
    /// counts, sorted by name.
    pub async fn occupied_rooms(
        &self,
        app: &AppSettings,
        prefix: &str,
    ) -> Result<Vec<(String, usize)>, HubError> {
        let scope_prefix = channel::room(&app.name, "");
        let scopes = self
            .inner
            .engine
            .presence
            .scopes(&format!("{scope_prefix}{prefix}"))
            .await?;
        Ok(scopes
            .into_iter()
            .filter_map(|(scope, conns)| {
                let room = scope.strip_prefix(&*scope_prefix)?;
                Some((room.to_owned(), conns))
            })
            .collect())
    }

    /// How many connections and users room `room` of `app` holds.
    pub async fn room_occupancy(
        &self,
        app: &AppSettings,
        room: &str,
    ) -> Result<RoomOccupancy, HubError> {
        names::check_room(room)?;
        let scope = channel::room(&app.name, room);
        let presence = &self.inner.engine.presence;
        let connections = presence.total(&scope).await?;
        let users = match connections {
            0 => 0,
            _ => presence.user_count(&scope).await?,
        };
        Ok(RoomOccupancy { connections, users })
    }

    /// The newest message room `room` of `app` still keeps in its history, if any: what
    /// a Pusher cache channel replays.
    pub async fn room_last(
        &self,
        app: &AppSettings,
        room: &str,
    ) -> Result<Option<Arc<Publication>>, HubError> {
        names::check_room(room)?;
        let channel = channel::room(&app.name, room);
        let history = self.recent_history(&app.name, &channel, 1).await?;
        Ok(history.publications.into_iter().last())
    }

    /// The members of room `room` of `app`: one per user however many connections it
    /// holds there, with the info its first connection joined with.
    pub async fn room_presence(
        &self,
        app: &AppSettings,
        room: &str,
    ) -> Result<Vec<Member>, HubError> {
        names::check_room(room)?;
        let scope = channel::room(&app.name, room);
        Ok(self.inner.engine.presence.members(&scope).await?)
    }
}
