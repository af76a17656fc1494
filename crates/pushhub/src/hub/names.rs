//! Validation of app names and user ids, the identifiers every channel name is built from.

use super::HubError;

/// Longest user id accepted, in bytes.
pub const MAX_USER_BYTES: usize = 256;
/// Longest app name accepted, in bytes.
pub const MAX_APP_BYTES: usize = 64;

/// Check an app name: 1–64 characters from `A–Z a–z 0–9 _ - .`.
///
/// Kept narrow because app names appear in channel names, config keys and URLs.
pub fn check_app(app: &str) -> Result<(), HubError> {
    let ok = !app.is_empty()
        && app.len() <= MAX_APP_BYTES
        && app
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(HubError::InvalidApp(app.chars().take(80).collect()))
    }
}

/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Check an idempotency key: 1–256 bytes (as timers take them) without control characters (a backend's own
/// id for a push, such as `order-10-shipped` or a UUID).
pub fn check_idempotency_key(key: &str) -> Result<(), HubError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES || key.chars().any(char::is_control)
    {
        return Err(HubError::InvalidIdempotencyKey(format!(
            "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// Most group levels (`/`) a user id may have: each is a channel of its own, and a
/// connection's cursor names every channel, so ids may not make it grow without end.
pub const MAX_GROUP_DEPTH: usize = 16;

/// Longest room name accepted, in bytes: a Pusher channel name (at most 164 characters
/// of ASCII) is a room name.
pub const MAX_ROOM_BYTES: usize = 164;

/// Check a room name: 1–164 bytes, no control characters, no white space at either end,
/// no `,` or `*`. `*` is kept free for target syntax; `,` separates the entries of a
/// resume cursor (`CHANNEL@EPOCH:OFFSET,…`), whose channels hold room names, so a Pusher
/// channel name with `,` (which Pusher allows) is refused (docs/pusher.md).
pub fn check_room(room: &str) -> Result<(), HubError> {
    let reason = if room.is_empty() {
        Some("is empty")
    } else if room.len() > MAX_ROOM_BYTES {
        Some("is longer than 164 bytes")
    } else if room.chars().any(|c| c.is_control()) {
        Some("contains a control character")
    } else if room.trim() != room {
        Some("starts or ends with white space")
    } else if room.contains(',') || room.contains('*') {
        Some("contains ',' or '*'")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(why) => Err(HubError::InvalidRoom(format!(
            "room {:?} {why}",
            room.chars().take(80).collect::<String>()
        ))),
    }
}

/// Check a user id: 1–256 bytes, no control characters, no `,` or `*` (they are target
/// syntax), no empty group segment at the end (`a/`), and no U+FFFD.
///
/// U+FFFD (the replacement character) is what a lenient decoder makes of bytes that are not
/// UTF-8: query strings and form bodies are decoded that way, so `user=%FF` and
/// `user=%FE` would both arrive as `"\u{FFFD}"` and be one user. Refusing the character
/// keeps one byte string one user on every path, whichever decoder it took.
pub fn check_user(user: &str) -> Result<(), HubError> {
    let reason = if user.is_empty() {
        Some("is empty")
    } else if user.contains(char::REPLACEMENT_CHARACTER) {
        Some("is not valid UTF-8 (or contains U+FFFD, the mark of bytes that were not)")
    } else if user.len() > MAX_USER_BYTES {
        Some("is longer than 256 bytes")
    } else if user.chars().any(|c| c.is_control()) {
        Some("contains a control character")
    } else if user.trim() != user {
        Some("starts or ends with white space")
    } else if user.contains(',') || user.contains('*') {
        Some("contains ',' or '*', which are target syntax")
    } else if user.ends_with('/') {
        Some("ends with '/'")
    } else if user.contains("//") {
        Some("has an empty group level ('//')")
    } else if user.matches('/').count() > MAX_GROUP_DEPTH {
        Some("has more than 16 group levels ('/')")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(why) => Err(HubError::InvalidUser(format!(
            "user id {:?} {why}",
            user.chars().take(80).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps() {
        assert!(check_app("wms").is_ok());
        assert!(check_app("my-app_2.0").is_ok());
        for bad in ["", "a b", "a:b", "é", &"x".repeat(65)] {
            assert!(check_app(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users() {
        for good in ["100", "group1/1", "a/b/c", "张三", "a:b"] {
            assert!(check_user(good).is_ok(), "{good}");
        }
        let deep = vec!["a"; MAX_GROUP_DEPTH + 2].join("/");
        for bad in [
            "",
            "a,b",
            "*",
            "g/*",
            "a\nb",
            "a/",
            "a//b",
            "\u{FFFD}",
            "a\u{FFFD}b",
            &"x".repeat(257),
            &deep,
        ] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
    }
}
