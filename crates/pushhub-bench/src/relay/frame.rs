//! The JSON text frames the relay sends, in pushhub's wire format.

use serde::Serialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// `{"type":"welcome","conn":"<id>","app":"APP","user":"USER"}`, the first frame of a connection.
pub fn welcome(conn: u64, app: &str, user: &str) -> Utf8Bytes {
    serde_json::json!({
        "type": "welcome",
        "conn": conn.to_string(),
        "app": app,
        "user": user,
    })
    .to_string()
    .into()
}

/// A published message as delivered to subscribers.
#[derive(Serialize)]
pub struct MsgFrame<'a> {
    /// Always `"msg"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Channel: `APP:all` or `APP:user:USER`.
    pub ch: &'a str,
    /// Identifies the offset sequence (the relay's start time); offsets restart with it.
    pub epoch: &'a str,
    /// Position of this message in its channel.
    pub off: u64,
    /// Message id, as returned by the push API.
    pub id: &'a str,
    /// Application event name.
    pub event: &'a str,
    /// Application payload, copied verbatim.
    pub data: &'a RawValue,
    /// Server time of publication, Unix ms.
    pub ts: u64,
}

impl MsgFrame<'_> {
    /// Serializes once; the result is cloned (refcount only) for every subscriber.
    pub fn encode(&self) -> Result<Utf8Bytes, serde_json::Error> {
        Ok(serde_json::to_string(self)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_protocol_shape() {
        let w: serde_json::Value = serde_json::from_str(welcome(7, "demo", "u1").as_str()).unwrap();
        assert_eq!(w["type"], "welcome");
        assert_eq!(w["conn"], "7");
        assert_eq!(w["user"], "u1");

        let data = RawValue::from_string(r#"{"seq":1,"t":2}"#.into()).unwrap();
        let m = MsgFrame {
            kind: "msg",
            ch: "demo:all",
            epoch: "e",
            off: 3,
            id: "9",
            event: "bench",
            data: &data,
            ts: 5,
        }
        .encode()
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(m.as_str()).unwrap();
        assert_eq!(v["type"], "msg");
        assert_eq!(v["ch"], "demo:all");
        assert_eq!(v["off"], 3);
        assert_eq!(v["data"]["seq"], 1);
    }
}
