//! The Pusher Channels dialect (issue 19): pusher-js, Laravel Echo and the Pusher server
//! SDKs against pushhub, unchanged.
//!
//! A Pusher channel `X` of an app is the hub room `X` (hub channel `APP:room:X`), so a
//! native client in room `X` receives what a Pusher trigger sends to `X` and the other way
//! round (docs/pusher.md). This module holds what the dialect's parts share: the
//! `socket_id` a Pusher client is known by, and Pusher's channel-name rules. The HTTP API
//! is in [`api`].

pub mod api;
pub mod client;
pub mod frames;
pub mod gateway;

use crate::hub::{names, ConnId, Target};
use crate::node::NODE_ID_LEN;

/// Longest Pusher channel name, in characters (all ASCII), as Pusher documents it.
pub const MAX_CHANNEL_CHARS: usize = 164;

/// The prefix of presence channels, whose members the API lists.
pub const PRESENCE_PREFIX: &str = "presence-";

/// The channels of signed-in users: pusher-js subscribes `#server-to-user-U` after
/// `pusher:signin`, and the SDKs' `sendToUser(U, …)` triggers on it. It is the hub's
/// user channel of `U`, so a native push to user `U` reaches a signed-in Pusher client.
pub const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

/// True for Pusher's cache channels (`cache-`, `private-cache-`, `presence-cache-`,
/// `private-encrypted-cache-`), whose last event is replayed to each new subscriber.
pub fn is_cache_channel(name: &str) -> bool {
    ["", "private-", "presence-", "private-encrypted-"]
        .iter()
        .any(|kind| {
            name.strip_prefix(kind)
                .is_some_and(|rest| rest.starts_with("cache-"))
        })
}

/// Why a Pusher channel name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// Empty, too long or with a character Pusher does not allow.
    #[error("channel name {0:?} is not 1-164 characters from A-Z a-z 0-9 _ - = @ , . ;")]
    Invalid(String),
    /// Pusher allows `,`, pushhub does not (its resume cursors separate channels by it).
    #[error("channel name {0:?} contains ',', which pushhub's room names cannot hold")]
    Comma(String),
    /// A `#server-to-user-` channel whose user id is not one.
    #[error("{0}")]
    User(String),
}

/// Where an event on Pusher channel `name` goes: the user's channel for
/// `#server-to-user-U`, the room `name` for any other valid name.
pub fn target_of(name: &str) -> Result<Target, ChannelNameError> {
    if let Some(user) = name.strip_prefix(USER_CHANNEL_PREFIX) {
        names::check_user(user).map_err(|error| ChannelNameError::User(error.to_string()))?;
        return Ok(Target::User(user.to_owned()));
    }
    check_channel(name)?;
    Ok(Target::Room(name.to_owned()))
}

/// Check a channel name as Pusher does (`[A-Za-z0-9_\-=@,.;]`, at most 164 characters),
/// then as a hub room name: the room it maps to is the same text.
pub fn check_channel(name: &str) -> Result<(), ChannelNameError> {
    let pusher_ok = !name.is_empty()
        && name.len() <= MAX_CHANNEL_CHARS
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
        });
    let shown = || name.chars().take(80).collect::<String>();
    if !pusher_ok {
        return Err(ChannelNameError::Invalid(shown()));
    }
    if name.contains(',') {
        return Err(ChannelNameError::Comma(shown()));
    }
    Ok(())
}

/// The `socket_id` of this node's connection `id`: `N.M`, where N is the node's name read
/// as a base-36 number and M the connection id, both decimal, as the SDKs check
/// (`^\d+\.\d+$`). It stands for the same connection as the name a `welcome` shows
/// ([`crate::hub::conn_name`]), and [`conn_name_of`] turns it back.
pub fn socket_id(node: &str, id: ConnId) -> String {
    let node = u64::from_str_radix(node, 36).unwrap_or_default();
    format!("{node}.{id}")
}

/// The connection name (`k3x9q2ab-1f`) a `socket_id` stands for, whichever node holds it;
/// `None` when the text is not a socket id pushhub could have given.
pub fn conn_name_of(socket_id: &str) -> Option<String> {
    let (node, id) = socket_id.split_once('.')?;
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(node) || !digits(id) {
        return None;
    }
    let node: u64 = node.parse().ok()?;
    let id: ConnId = id.parse().ok()?;
    let mut name = Vec::with_capacity(NODE_ID_LEN);
    let mut rest = node;
    for _ in 0..NODE_ID_LEN {
        let digit = (rest % 36) as u32;
        name.push(char::from_digit(digit, 36)?);
        rest /= 36;
    }
    if rest != 0 {
        return None;
    }
    let node: String = name.into_iter().rev().collect();
    Some(format!("{node}-{id:x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_are_what_the_sdks_accept_and_turn_back_into_connection_names() {
        for (node, id) in [("k3x9q2ab", 31), ("00000000", 0), ("zzzzzzzz", u64::MAX)] {
            let socket = socket_id(node, id);
            let (n, m) = socket.split_once('.').unwrap();
            assert!(n.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()));
            assert_eq!(conn_name_of(&socket), Some(format!("{node}-{id:x}")));
        }
        assert_eq!(socket_id("00000001", 7), "1.7");
        assert_eq!(conn_name_of("1.31").as_deref(), Some("00000001-1f"));
        let beyond = 36u64.pow(NODE_ID_LEN as u32);
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1.2.3",
            "a.1",
            "-1.2",
            "1.-2",
            "+1.2",
            "1.99999999999999999999",
            &format!("{beyond}.1"),
        ] {
            assert_eq!(conn_name_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channel_names_follow_pusher_and_map_to_rooms() {
        for good in [
            "news",
            "private-orders.7",
            "presence-chat_room-1",
            "private-encrypted-x=y@z;w",
            &"c".repeat(MAX_CHANNEL_CHARS),
        ] {
            assert_eq!(check_channel(good), Ok(()), "{good}");
            assert!(names::check_room(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a*",
            "a:b",
            "é",
            "#server-to-user-1",
            &"c".repeat(165),
        ] {
            assert!(
                matches!(check_channel(bad), Err(ChannelNameError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_channel("a,b"),
            Err(ChannelNameError::Comma(_))
        ));
    }

    #[test]
    fn cache_channels_are_known_by_their_prefixes() {
        for cache in [
            "cache-a",
            "private-cache-a",
            "presence-cache-a",
            "private-encrypted-cache-a",
        ] {
            assert!(is_cache_channel(cache), "{cache}");
        }
        for other in [
            "cachex",
            "a-cache-b",
            "private-a",
            "presence-private-cache-a",
        ] {
            assert!(!is_cache_channel(other), "{other}");
        }
    }

    #[test]
    fn user_channels_are_users_and_other_channels_rooms() {
        assert_eq!(
            target_of("#server-to-user-u1"),
            Ok(Target::User("u1".into()))
        );
        assert_eq!(target_of("news"), Ok(Target::Room("news".into())));
        for bad in ["#server-to-user-", "#server-to-user-a*b", "#other", "a,b"] {
            assert!(target_of(bad).is_err(), "{bad}");
        }
    }
}
