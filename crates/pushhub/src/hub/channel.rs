//! Channel names (DESIGN.md principle 2): every push is a publish to channels.
//!
//! - user `100` of app `wms` → `wms:user:100`
//! - everyone → `wms:all`
//! - group `group1` (users `group1/…`) → `wms:group:group1`
//! - room `r1` (joined while connected) → `wms:room:r1`
//! - one connection `k3x9q2ab-1f` → `wms:conn:k3x9q2ab-1f`, a name only (live-only, see
//!   [`conn`])
//!
//! A user id `a/b/c` belongs to groups `a` and `a/b`: every proper prefix ending before a `/`.

use std::sync::Arc;

/// `parts` end to end, in one allocation: without the `String` a `format!` would build
/// first and the `Arc` copy again (names are made on every publish).
pub fn joined(parts: &[&str]) -> Arc<str> {
    const ON_STACK: usize = 256;
    let len: usize = parts.iter().map(|part| part.len()).sum();
    if len > ON_STACK {
        return Arc::from(parts.concat());
    }
    let mut text = [0u8; ON_STACK];
    let mut at = 0;
    for part in parts {
        text[at..at + part.len()].copy_from_slice(part.as_bytes());
        at += part.len();
    }
    match std::str::from_utf8(&text[..len]) {
        Ok(text) => Arc::from(text),
        Err(_) => Arc::from(parts.concat()),
    }
}

/// The channel of one user.
pub fn user(app: &str, user: &str) -> Arc<str> {
    joined(&[app, ":user:", user])
}

/// The channel every connection of an app is in.
pub fn all(app: &str) -> Arc<str> {
    joined(&[app, ":all"])
}

/// The channel of one group.
pub fn group(app: &str, group: &str) -> Arc<str> {
    joined(&[app, ":group:", group])
}

/// The channel of one room: connections join and leave it while connected.
pub fn room(app: &str, room: &str) -> Arc<str> {
    joined(&[app, ":room:", room])
}

/// The room a room channel of `app` is (`wms:room:r1` → `r1`); `None` for any other
/// channel.
pub fn room_name<'c>(app: &str, channel: &'c str) -> Option<&'c str> {
    channel
        .strip_prefix(app)?
        .strip_prefix(":room:")
        .filter(|room| !room.is_empty())
}

/// The name a push to one connection carries as its channel (`wms:conn:k3x9q2ab-1f`): no
/// stream stands behind it, nothing subscribes to it, and its position is always the empty
/// one, so the push is live-only and moves no client's cursor.
pub fn conn(app: &str, conn: &str) -> Arc<str> {
    joined(&[app, ":conn:", conn])
}

/// The app and user of a user channel (`wms:user:100` → `wms`, `100`); `None` for any
/// other channel. App names hold no `:`, so the first one ends the app.
pub fn user_of(channel: &str) -> Option<(&str, &str)> {
    let (app, rest) = channel.split_once(':')?;
    Some((app, rest.strip_prefix("user:")?))
}

/// Groups a user id belongs to, shortest first: `a/b/c` → `a`, `a/b`.
pub fn groups_of(user: &str) -> impl Iterator<Item = &str> {
    user.match_indices('/')
        .map(move |(i, _)| &user[..i])
        .filter(|g| !g.is_empty())
}

/// Every channel a connection of `user` in `app` subscribes to at connect.
pub fn channels_for(app: &str, user_id: &str) -> Vec<Arc<str>> {
    let mut channels = vec![user(app, user_id), all(app)];
    channels.extend(groups_of(user_id).map(|g| group(app, g)));
    channels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_their_parts_joined() {
        assert_eq!(&*user("wms", "100"), "wms:user:100");
        assert_eq!(&*all("wms"), "wms:all");
        assert_eq!(&*room("wms", "r1"), "wms:room:r1");
        let long = "u".repeat(300);
        assert_eq!(*group("wms", &long), *format!("wms:group:{long}"));
        assert_eq!(&*joined(&[]), "");
    }

    #[test]
    fn groups_are_every_slash_prefix() {
        assert_eq!(groups_of("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(groups_of("100").count(), 0);
        assert_eq!(groups_of("group1/7").collect::<Vec<_>>(), ["group1"]);
        assert_eq!(groups_of("/x").count(), 0);
    }

    #[test]
    fn user_channels_name_their_user() {
        assert_eq!(user_of(&user("wms", "a:b/c")), Some(("wms", "a:b/c")));
        assert_eq!(user_of(&all("wms")), None);
        assert_eq!(user_of(&room("wms", "user:1")), None);
        assert_eq!(user_of(&group("wms", "g")), None);
    }

    #[test]
    fn connection_channels() {
        let names: Vec<String> = channels_for("wms", "g/1")
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(names, ["wms:user:g/1", "wms:all", "wms:group:g"]);
    }
}
