//! Who hears, once per change across every node, that an app's room filled or emptied and
//! who joined or left it as a presence member: a dialect's webhooks (Pusher's
//! `channel_occupied`, `channel_vacated`, `member_added`, `member_removed`), told in the
//! hub's terms and sent in their own format.

/// Room changes, each told exactly once across the cluster (presence decides which node
/// saw it: the first connection in, the last out, or the purge of a dead node). Calls
/// must not block: queue and return.
pub trait RoomWatch: Send + Sync + std::fmt::Debug {
    /// Room `room` got its first connection.
    fn occupied(&self, room: &str);
    /// Room `room` lost its last connection.
    fn vacated(&self, room: &str);
    /// User `user` joined room `room` as a presence member (its first connection there).
    fn member_added(&self, room: &str, user: &str);
    /// User `user` left room `room` as a presence member (its last connection there).
    fn member_removed(&self, room: &str, user: &str);
}
