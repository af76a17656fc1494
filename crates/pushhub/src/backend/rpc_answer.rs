//! A backend's successful RPC answer: the reply for the client, and what the backend asks
//! of pushhub beside it.
//!
//! The answer is the client's reply as the backend wrote it. An answer that is a JSON
//! object may carry one reserved member, `"_pushhub"`, which pushhub takes out before the
//! reply goes on: `{"_pushhub": {"close_notes": {...}}}` changes the calling connection's
//! close notes (what MSwoole controllers did with `$app->fdAddCloseKey($data['fd'], …)`
//! while handling a call). The other members reach the client byte for byte, in order.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::close_notes::CloseNotesChange;

/// The member of an answer object that speaks to pushhub, not to the client.
pub const RESERVED_MEMBER: &str = "_pushhub";

/// A successful answer, taken apart.
#[derive(Debug)]
pub struct RpcAnswer {
    /// The reply for the client.
    pub reply: Box<RawValue>,
    /// The change to the calling connection's close notes, when the backend asked one.
    pub close_notes: Option<CloseNotesChange>,
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadAnswer(pub String);

/// What `"_pushhub"` may hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Directives {
    #[serde(default)]
    close_notes: Option<CloseNotesChange>,
}

/// An object's members in order, each value as its JSON text.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Take a 2xx answer's body `text` (JSON, nesting already bounded) apart: an object with
/// `"_pushhub"` loses that member (malformed directives are a bad answer, so a backend
/// learns of its mistake); anything else is the reply as it is.
pub fn parse(text: String) -> Result<RpcAnswer, BadAnswer> {
    if !text.trim_start().starts_with('{') {
        let reply = RawValue::from_string(text).map_err(|e| BadAnswer(e.to_string()))?;
        return Ok(RpcAnswer {
            reply,
            close_notes: None,
        });
    }
    let Members(members) = serde_json::from_str(&text).map_err(|e| BadAnswer(e.to_string()))?;
    let mut directives = members.iter().filter(|(name, _)| name == RESERVED_MEMBER);
    let Some((_, found)) = directives.next() else {
        let reply = RawValue::from_string(text).map_err(|e| BadAnswer(e.to_string()))?;
        return Ok(RpcAnswer {
            reply,
            close_notes: None,
        });
    };
    if directives.next().is_some() {
        return Err(BadAnswer(format!("{RESERVED_MEMBER:?} appears twice")));
    }
    let directives: Directives = serde_json::from_str(found.get())
        .map_err(|e| BadAnswer(format!("{RESERVED_MEMBER}: {e}")))?;
    if let Some(change) = &directives.close_notes {
        change
            .check()
            .map_err(|e| BadAnswer(format!("{RESERVED_MEMBER}.close_notes: {e}")))?;
    }
    let mut reply = String::with_capacity(text.len());
    reply.push('{');
    for (name, value) in members.iter().filter(|(name, _)| name != RESERVED_MEMBER) {
        if reply.len() > 1 {
            reply.push(',');
        }
        let name = serde_json::to_string(name).map_err(|e| BadAnswer(e.to_string()))?;
        reply.push_str(&name);
        reply.push(':');
        reply.push_str(value.get());
    }
    reply.push('}');
    Ok(RpcAnswer {
        reply: RawValue::from_string(reply).map_err(|e| BadAnswer(e.to_string()))?,
        close_notes: directives.close_notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_without_directives_is_the_reply_as_written() {
        for text in [r#" {"a" : 1.50, "b":[1]} "#, "[1,2]", r#""ok""#, "{}"] {
            let answer = parse(text.to_owned()).unwrap();
            assert_eq!(answer.reply.get(), text.trim());
            assert!(answer.close_notes.is_none());
        }
    }

    #[test]
    fn directives_are_taken_out_and_the_rest_kept_in_order() {
        let text = r#"{"z":1.50,"_pushhub":{"close_notes":{"add_close_keys":["room:42"],"add_controllers":["Live.User"]}},"a":"é\n"}"#;
        let answer = parse(text.to_owned()).unwrap();
        assert_eq!(answer.reply.get(), r#"{"z":1.50,"a":"é\n"}"#);
        let change = answer.close_notes.unwrap();
        assert_eq!(change.add_close_keys, ["room:42"]);
        assert_eq!(change.add_controllers, ["Live.User"]);
        let only = parse(r#"{"_pushhub":{}}"#.to_owned()).unwrap();
        assert_eq!(only.reply.get(), "{}");
        assert!(only.close_notes.is_none());
    }

    #[test]
    fn malformed_directives_are_a_bad_answer() {
        for text in [
            r#"{"_pushhub":1}"#,
            r#"{"_pushhub":{"close":{}}}"#,
            r#"{"_pushhub":{"close_notes":{"add_keys":["x"]}}}"#,
            r#"{"_pushhub":{"close_notes":{"add_close_keys":[""]}}}"#,
            r#"{"_pushhub":{},"_pushhub":{}}"#,
            r#"{"a":1"#,
        ] {
            assert!(parse(text.to_owned()).is_err(), "{text}");
        }
    }
}
