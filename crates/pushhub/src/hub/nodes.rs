//! The hub's side of the node bus and of presence across nodes: carrying out other
//! nodes' commands here, and the answers that count connections on every node.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;

use super::conns::Addressed;
use super::{channel, names, parse_conn_name, AppSettings, HubInner};
use crate::disconnect::Disconnect;
use crate::engine::{
    EngineError, MemberChange, NodeCommand, NodeEvents, Presence, PresenceEvents, RemoteConn,
};
use crate::hub::Target;

/// Carries out other nodes' commands on this node's connections. Holds the hub weakly,
/// since the hub holds the bus that holds this.
pub(super) struct HubNodes {
    hub: Weak<HubInner>,
}

impl HubNodes {
    pub(super) fn new(hub: Weak<HubInner>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl NodeEvents for HubNodes {
    async fn command(&self, command: NodeCommand) {
        let Some(inner) = self.hub.upgrade() else {
            return;
        };
        match command {
            NodeCommand::Disconnect {
                app,
                user,
                conn,
                code,
                reason,
            } => {
                let conn = match conn.as_deref().map(parse_conn_name) {
                    None => None,
                    Some(Ok(Some(id))) => Some(id),
                    // Another node's connection, or not a name at all: none here.
                    Some(Ok(None) | Err(_)) => return,
                };
                inner.disconnect_local(&app, &user, conn, &Disconnect::new(code, reason));
            }
            NodeCommand::Room {
                app,
                user,
                room,
                join,
            } => {
                let changed = match (
                    names::check_room(&room),
                    inner.apps.load_full().lookup(&app),
                ) {
                    (Ok(()), Ok(Some(app))) => {
                        inner.change_room_local(&app, &user, &room, join).await
                    }
                    _ => return,
                };
                if let Err(error) = changed {
                    tracing::warn!(%error, room, "room change from another node failed");
                }
            }
            NodeCommand::Push {
                ref app, ref conn, ..
            } => {
                let Ok(Some(id)) = parse_conn_name(conn) else {
                    return;
                };
                match command.message() {
                    Some(message) => {
                        inner.push_local(app, conn, id, message);
                    }
                    None => tracing::warn!(conn, "a push from another node is not readable"),
                }
            }
            NodeCommand::Member { ref channel, .. } => match command.message() {
                Some(message) if message.member.is_some() => {
                    inner.deliver_member_change(&Arc::from(channel.as_str()), message);
                }
                _ => tracing::warn!(channel, "a member change from another node is not readable"),
            },
            NodeCommand::CloseNotes { app, conn, change } => {
                let Ok(Some(id)) = parse_conn_name(&conn) else {
                    return;
                };
                if let Addressed::Refused(error) = inner.conns.change_notes(&app, id, &change) {
                    tracing::warn!(%error, conn, "close notes from another node refused");
                }
            }
        }
    }
}

/// The hub's handler for members a dead node took with it: every node's connections in
/// the member's rooms hear that it left, as if its last connection had left there.
pub(super) struct HubPresence {
    hub: Weak<HubInner>,
}

impl HubPresence {
    pub(super) fn new(hub: Weak<HubInner>) -> Self {
        Self { hub }
    }
}

impl HubPresence {
    /// The hub and the app a room scope (a room channel, `app:room:name`) belongs to,
    /// with its room name; `None` for any other scope, or once the hub or the app is gone.
    fn room_of<'s>(&self, scope: &'s str) -> Option<(Arc<HubInner>, Arc<AppSettings>, &'s str)> {
        let inner = self.hub.upgrade()?;
        // App names hold no `:`.
        let (app, _) = scope.split_once(':')?;
        let app = inner.apps.load().lookup(app).ok()??;
        let room = channel::room_name(&app.name, scope)?;
        Some((inner, app, room))
    }
}

impl PresenceEvents for HubPresence {
    fn members_gone(&self, scope: &str, users: &[String]) {
        let Some((inner, app, room)) = self.room_of(scope) else {
            return;
        };
        if let Some(watch) = &app.room_watch {
            for user in users {
                watch.member_removed(room, user);
            }
        }
        let channel: Arc<str> = scope.into();
        let users = users.to_vec();
        let cleanups = inner.cleanups.clone();
        cleanups.spawn(async move {
            for user in users {
                let change = MemberChange {
                    user: user.into(),
                    joined: false,
                };
                inner
                    .member_change(&app.name, &channel, change, None, None)
                    .await;
            }
        });
    }

    fn scopes_vacated(&self, scopes: &[String]) {
        for scope in scopes {
            if let Some((_, app, room)) = self.room_of(scope) {
                if let Some(watch) = &app.room_watch {
                    watch.vacated(room);
                }
            }
        }
    }
}

/// The command that closes `user`'s connections to `app` (only `conn` when given) with
/// `reason` on the nodes that hold them.
pub(super) fn kick(
    app: &str,
    user: &str,
    conn: Option<String>,
    reason: &Disconnect,
) -> NodeCommand {
    NodeCommand::Disconnect {
        app: app.to_owned(),
        user: user.to_owned(),
        conn,
        code: reason.code,
        reason: reason.reason.to_string(),
    }
}

/// Of `conns` (oldest first), those that connected before this node's connection `id`
/// did at `since_ms`: only they count against a newcomer's per-user limit, so two
/// newcomers on two nodes at once agree on which of them is the newer.
pub(super) fn older_than(conns: Vec<RemoteConn>, id: u64, since_ms: u64) -> Vec<RemoteConn> {
    let name = super::conn_name(id);
    conns
        .into_iter()
        .filter(|remote| (remote.since_ms, remote.name.as_str()) < (since_ms, name.as_str()))
        .collect()
}

/// Connections per user of an app, as presence counted them in one read.
pub(super) type UserCounts = HashMap<String, usize>;

/// How many connections each user that `targets` name holds in `app` (each user asked
/// once), in one presence read: a batch counts the users of all its pushes together
/// rather than one read per push.
pub(super) async fn user_counts<'a>(
    presence: &dyn Presence,
    app: &str,
    targets: impl IntoIterator<Item = &'a Target>,
) -> Result<UserCounts, EngineError> {
    let mut users: Vec<&str> = targets
        .into_iter()
        .filter_map(|target| match target {
            Target::User(user) => Some(user.as_str()),
            _ => None,
        })
        .collect();
    users.sort_unstable();
    users.dedup();
    if users.is_empty() {
        return Ok(UserCounts::new());
    }
    let counts = presence.connections_each(app, &users).await?;
    Ok(users.into_iter().map(str::to_owned).zip(counts).collect())
}

/// How many connections on every node a push to `targets` of `app` reaches, as presence
/// counts them (what `delivered` means when presence spans nodes: the publishing node
/// cannot see other nodes' deliveries), its users' counts taken from `users` (see
/// [`user_counts`]). `all` counts the app's connections; a user its connections; a room
/// its members' connections; a group the connections of users whose id puts them in it
/// (groups granted by a credential are not known to presence). A connection reached
/// through several targets may be counted once per target.
pub(super) async fn reach(
    presence: &dyn Presence,
    app: &str,
    targets: &[Target],
    users: &UserCounts,
) -> Result<u64, EngineError> {
    if targets.iter().any(|t| matches!(t, Target::All)) {
        return Ok(presence.total(app).await? as u64);
    }
    let mut count: usize = 0;
    let mut app_users = None;
    for target in targets {
        count += match target {
            Target::All => 0,
            Target::User(user) => users.get(user.as_str()).copied().unwrap_or(0),
            Target::Room(room) => presence.total(&channel::room(app, room)).await?,
            Target::Group(group) => {
                if app_users.is_none() {
                    app_users = Some(presence.users(app).await?);
                }
                app_users
                    .iter()
                    .flatten()
                    .filter(|(user, _)| channel::groups_of(user).any(|g| g == group))
                    .map(|(_, connections)| connections)
                    .sum()
            }
        };
    }
    Ok(count as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only connections that came before the newcomer count, ties going by name.
    #[test]
    fn older_than_keeps_the_earlier_connections_only() {
        let conn = |name: &str, since_ms| RemoteConn {
            name: name.into(),
            since_ms,
        };
        // Node names are 8 characters of a-z0-9: "00000000" sorts before any other,
        // "zzzzzzzz" after.
        let kept = older_than(
            vec![
                conn("aaaaaaaa-1", 10),
                conn("00000000-1", 20),
                conn("zzzzzzzz-1", 20),
                conn("aaaaaaaa-2", 30),
            ],
            5,
            20,
        );
        let names: Vec<&str> = kept.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["aaaaaaaa-1", "00000000-1"]);
    }
}
