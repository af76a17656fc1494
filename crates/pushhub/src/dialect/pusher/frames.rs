//! Pusher protocol 7 frames: what pusher-js sends, and what it expects back.
//!
//! Every frame is a JSON object with an `event`, most with a `channel`, and a `data` that
//! the server sends as a JSON-encoded string (pusher-js parses it again), except in
//! `pusher:error`, `pusher:subscription_error` and `pusher:signin_success`, whose `data`
//! is an object.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::USER_CHANNEL_PREFIX;
use crate::engine::{Member, Publication};

/// One frame from a client: `{"event":…,"channel":…,"data":…}`.
#[derive(Debug, Deserialize)]
pub struct ClientFrame<'a> {
    /// The event: `pusher:subscribe`, `pusher:ping`, `client-typing`...
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    /// The channel, for client events.
    #[serde(default, borrow)]
    pub channel: Option<Cow<'a, str>>,
    /// The event's data, as the client sent it.
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

/// What a client frame asks for, read from it.
#[derive(Debug)]
pub enum Command<'f> {
    /// `pusher:ping`.
    Ping,
    /// `pusher:subscribe`.
    Subscribe(Subscribe),
    /// `pusher:unsubscribe`.
    Unsubscribe(Unsubscribe),
    /// `pusher:signin`.
    Signin(Signin),
    /// A `client-` event.
    ClientEvent {
        /// Its name.
        event: &'f str,
        /// Its channel.
        channel: Option<&'f str>,
        /// Its data.
        data: Option<&'f RawValue>,
    },
    /// Anything else (`pusher:pong`, a newer client's event): Pusher ignores it.
    Ignored,
}

/// Why a client frame cannot be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a JSON object with an `event`.
    #[error("a frame must be {{\"event\":…,\"data\":…}}")]
    NotAFrame,
    /// `pusher:subscribe` without a channel.
    #[error("pusher:subscribe needs {{\"channel\":…}}")]
    Subscribe,
    /// `pusher:unsubscribe` without a channel.
    #[error("pusher:unsubscribe needs {{\"channel\":…}}")]
    Unsubscribe,
    /// `pusher:signin` without its two fields.
    #[error("pusher:signin needs {{\"auth\":…,\"user_data\":…}}")]
    Signin,
}

/// Read a client's text frame.
pub fn read(text: &str) -> Result<ClientFrame<'_>, FrameError> {
    serde_json::from_str(text).map_err(|_| FrameError::NotAFrame)
}

/// What `frame` asks for. A `pusher:` event's data may come as an object or, as some
/// clients send it, as a string holding one.
pub fn command<'f>(frame: &'f ClientFrame<'_>) -> Result<Command<'f>, FrameError> {
    fn data<T: serde::de::DeserializeOwned>(raw: Option<&RawValue>) -> Option<T> {
        let raw = raw?.get();
        serde_json::from_str(raw).ok().or_else(|| {
            let inner: String = serde_json::from_str(raw).ok()?;
            serde_json::from_str(&inner).ok()
        })
    }
    Ok(match &*frame.event {
        "pusher:ping" => Command::Ping,
        "pusher:subscribe" => Command::Subscribe(data(frame.data).ok_or(FrameError::Subscribe)?),
        "pusher:unsubscribe" => {
            Command::Unsubscribe(data(frame.data).ok_or(FrameError::Unsubscribe)?)
        }
        "pusher:signin" => Command::Signin(data(frame.data).ok_or(FrameError::Signin)?),
        event if event.starts_with("client-") => Command::ClientEvent {
            event,
            channel: frame.channel.as_deref(),
            data: frame.data,
        },
        _ => Command::Ignored,
    })
}

/// `pusher:subscribe`'s data.
#[derive(Debug, Deserialize)]
pub struct Subscribe {
    /// The channel.
    pub channel: String,
    /// `key:signature` for private and presence channels.
    #[serde(default)]
    pub auth: Option<String>,
    /// A presence member's JSON (`{"user_id":…,"user_info":…}`), exactly as signed.
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// `pusher:unsubscribe`'s data.
#[derive(Debug, Deserialize)]
pub struct Unsubscribe {
    /// The channel.
    pub channel: String,
}

/// `pusher:signin`'s data.
#[derive(Debug, Deserialize)]
pub struct Signin {
    /// `key:signature` over `socket_id::user::user_data`.
    pub auth: String,
    /// The user's JSON (`{"id":…,…}`), exactly as signed.
    pub user_data: String,
}

/// A presence member as `channel_data` describes it.
#[derive(Debug, Deserialize)]
pub struct ChannelData {
    /// The member's id: Pusher's SDKs send a string, some backends a number.
    pub user_id: serde_json::Value,
    /// What the member shows of itself.
    #[serde(default)]
    pub user_info: Option<Box<RawValue>>,
}

impl ChannelData {
    /// The member's id as text: a string as it is, a number in decimal; `None` for
    /// anything else.
    pub fn user_id(&self) -> Option<String> {
        match &self.user_id {
            serde_json::Value::String(id) if !id.is_empty() => Some(id.clone()),
            serde_json::Value::Number(id) => Some(id.to_string()),
            _ => None,
        }
    }
}

/// A signed-in user as `user_data` describes it.
#[derive(Debug, Deserialize)]
pub struct UserData {
    /// The user's id, a non-empty string (pusher-js refuses anything else).
    pub id: serde_json::Value,
}

/// A server frame whose `data` is JSON text sent as a string.
#[derive(Serialize)]
struct StringData<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

/// A server frame whose `data` is an object.
#[derive(Serialize)]
struct ObjectData<'a, T: Serialize> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: T,
}

fn to_vec(frame: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(frame).unwrap_or_default()
}

/// `pusher:connection_established`: the socket id and how long the client may stay
/// silent before it pings.
pub fn connection_established(socket_id: &str, activity_timeout: u64) -> Vec<u8> {
    let data = serde_json::json!({ "socket_id": socket_id, "activity_timeout": activity_timeout });
    to_vec(&StringData {
        event: "pusher:connection_established",
        channel: None,
        data: &data.to_string(),
        user_id: None,
    })
}

/// `pusher:error` with Pusher's `code` (`None`: an error that asks nothing of the
/// client) and a message.
pub fn error(code: Option<u16>, message: &str) -> Vec<u8> {
    to_vec(&ObjectData {
        event: "pusher:error",
        channel: None,
        data: serde_json::json!({ "code": code, "message": message }),
    })
}

/// `pusher:pong`, the answer to `pusher:ping`.
pub fn pong() -> Vec<u8> {
    br#"{"event":"pusher:pong","data":"{}"}"#.to_vec()
}

/// `pusher_internal:subscription_succeeded` for `channel`, with `data` (JSON text: `{}`,
/// or a presence channel's members).
pub fn subscription_succeeded(channel: &str, data: &str) -> Vec<u8> {
    to_vec(&StringData {
        event: "pusher_internal:subscription_succeeded",
        channel: Some(channel),
        data,
        user_id: None,
    })
}

/// `pusher:subscription_error` for `channel`, as pusher-js reports it to the page
/// (`type`, `error`, HTTP-like `status`).
pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> Vec<u8> {
    to_vec(&ObjectData {
        event: "pusher:subscription_error",
        channel: Some(channel),
        data: serde_json::json!({ "type": kind, "error": message, "status": status }),
    })
}

/// `pusher:cache_miss`: a cache channel had nothing to replay on subscribe.
pub fn cache_miss(channel: &str) -> Vec<u8> {
    to_vec(&ObjectData {
        event: "pusher:cache_miss",
        channel: Some(channel),
        data: serde_json::json!({}),
    })
}

/// `pusher:signin_success` with the user's data as the client sent it.
pub fn signin_success(user_data: &str) -> Vec<u8> {
    to_vec(&ObjectData {
        event: "pusher:signin_success",
        channel: None,
        data: serde_json::json!({ "user_data": user_data }),
    })
}

/// The data of a presence channel's `subscription_succeeded`: every member's id and
/// info, and how many there are.
pub fn presence_data(members: &[Member]) -> String {
    // Written directly from the members' stored JSON: at 10,000 members this list is the
    // largest frame the dialect sends, and parsing each info only to print it again
    // would be most of its cost.
    let ids: Vec<String> = members
        .iter()
        .map(|member| serde_json::to_string(&member.user).unwrap_or_default())
        .collect();
    let size: usize = members
        .iter()
        .zip(&ids)
        .map(|(member, id)| 2 * id.len() + member.info.as_deref().map_or(4, str::len) + 3)
        .sum();
    let mut data = String::with_capacity(size + 64);
    data.push_str(r#"{"presence":{"ids":["#);
    data.push_str(&ids.join(","));
    data.push_str(r#"],"hash":{"#);
    for (i, (member, id)) in members.iter().zip(&ids).enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(id);
        data.push(':');
        data.push_str(member.info.as_deref().unwrap_or("null"));
    }
    data.push_str(r#"},"count":"#);
    data.push_str(&members.len().to_string());
    data.push_str("}}");
    data
}

/// The Pusher channel a hub channel of some app is: a room is the channel of its name,
/// a user channel `#server-to-user-U`; `None` for the others, which no Pusher client
/// subscribes to (a push to one connection names none).
pub fn pusher_channel(hub_channel: &str) -> Option<Cow<'_, str>> {
    let (_, rest) = hub_channel.split_once(':')?;
    if let Some(room) = rest.strip_prefix("room:") {
        return Some(Cow::Borrowed(room));
    }
    rest.strip_prefix("user:")
        .map(|user| Cow::Owned(format!("{USER_CHANNEL_PREFIX}{user}")))
}

/// The frame for a publication: an event on its channel, a member change, or a push to
/// one connection. Data that is a JSON string goes as it is; any other JSON goes as its
/// text in a string, as Pusher's `data` always is.
pub fn publication(publication: &Publication) -> Vec<u8> {
    let message = &publication.message;
    let channel = pusher_channel(&publication.channel);
    if let Some(change) = &message.member {
        let data = if change.joined {
            let info: &RawValue = &message.data;
            format!(
                r#"{{"user_id":{},"user_info":{}}}"#,
                serde_json::to_string(&*change.user).unwrap_or_default(),
                info.get()
            )
        } else {
            format!(
                r#"{{"user_id":{}}}"#,
                serde_json::to_string(&*change.user).unwrap_or_default()
            )
        };
        let event = if change.joined {
            "pusher_internal:member_added"
        } else {
            "pusher_internal:member_removed"
        };
        return to_vec(&StringData {
            event,
            channel: channel.as_deref(),
            data: &data,
            user_id: None,
        });
    }
    let text = data_text(&message.data);
    to_vec(&StringData {
        event: message.event.as_deref().unwrap_or(DEFAULT_EVENT),
        channel: channel.as_deref(),
        data: &text,
        user_id: message.from.as_deref(),
    })
}

/// `data` as the text Pusher's `data` carries: a JSON string as its own text, any other
/// JSON as it was written.
pub fn data_text(data: &RawValue) -> Cow<'_, str> {
    let raw = data.get();
    serde_json::from_str::<Cow<'_, str>>(raw).unwrap_or(Cow::Borrowed(raw))
}

/// The event name a push without one arrives under (a native push names none).
pub const DEFAULT_EVENT: &str = "message";

/// Pusher's encoding of publications: [`publication`]. It shows presence member changes.
pub struct PusherEncoder;

/// The one Pusher encoder.
pub static PUSHER: PusherEncoder = PusherEncoder;

impl crate::dialect::Encode for PusherEncoder {
    fn encode(&self, p: &Publication) -> Vec<u8> {
        publication(p)
    }

    fn name(&self) -> &'static str {
        "pusher"
    }

    fn shows_members(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{MemberChange, Message, StreamPosition};
    use std::sync::Arc;

    fn publication_of(channel: &str, data: &str, event: Option<&str>) -> Publication {
        Publication::new(
            channel.into(),
            StreamPosition::empty(),
            Arc::new(Message {
                event: event.map(Into::into),
                data: RawValue::from_string(data.to_owned()).unwrap(),
                ..Message::for_test("x")
            }),
        )
    }

    fn parsed(frame: &[u8]) -> serde_json::Value {
        serde_json::from_slice(frame).unwrap()
    }

    #[test]
    fn data_is_always_a_string_and_a_string_is_sent_as_it_is() {
        let object = parsed(&publication(&publication_of(
            "chat:room:news",
            r#"{"a":1}"#,
            Some("tick"),
        )));
        assert_eq!(object["event"], "tick");
        assert_eq!(object["channel"], "news");
        assert_eq!(object["data"], r#"{"a":1}"#);
        let string = parsed(&publication(&publication_of(
            "chat:room:news",
            r#""{\"a\": 1}""#,
            None,
        )));
        assert_eq!(string["data"], r#"{"a": 1}"#);
        assert_eq!(string["event"], DEFAULT_EVENT);
        let user = parsed(&publication(&publication_of("chat:user:7", "1", Some("e"))));
        assert_eq!(user["channel"], "#server-to-user-7");
        assert_eq!(user["data"], "1");
    }

    #[test]
    fn member_changes_are_pusher_internal_events() {
        let mut message = Message::for_test("x");
        message.data = RawValue::from_string(r#"{"name":"Ann"}"#.into()).unwrap();
        message.member = Some(MemberChange {
            user: "7".into(),
            joined: true,
        });
        let added = parsed(&publication(&Publication::new(
            "chat:room:presence-x".into(),
            StreamPosition::empty(),
            Arc::new(message),
        )));
        assert_eq!(added["event"], "pusher_internal:member_added");
        let data: serde_json::Value =
            serde_json::from_str(added["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"user_id":"7","user_info":{"name":"Ann"}})
        );
        let member = |user: &str, info: Option<&str>| Member {
            user: user.into(),
            conns: 1,
            info: info.map(Into::into),
        };
        let presence = presence_data(&[member("1", Some(r#"{"a":1}"#)), member("2", None)]);
        let presence: serde_json::Value = serde_json::from_str(&presence).unwrap();
        assert_eq!(presence["presence"]["count"], 2);
        assert_eq!(presence["presence"]["ids"], serde_json::json!(["1", "2"]));
        assert_eq!(presence["presence"]["hash"]["1"]["a"], 1);
    }

    #[test]
    fn established_and_errors_are_what_pusher_js_reads() {
        let established = parsed(&connection_established("1.2", 120));
        let data: serde_json::Value =
            serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["socket_id"], "1.2");
        assert_eq!(data["activity_timeout"], 120);
        let error = parsed(&error(Some(4001), "no such app"));
        assert_eq!(error["data"]["code"], 4001);
        let member = ChannelData {
            user_id: serde_json::json!(42),
            user_info: None,
        };
        assert_eq!(member.user_id().as_deref(), Some("42"));
    }
}
