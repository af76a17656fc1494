//! Publications as native `msg` frames: encoded once per publication for every native
//! connection, whatever its transport.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::dialect::Encode;
use crate::hub::Publication;

/// Encodes publications as native `msg` frames.
pub struct NativeEncoder;

/// The native encoder; stateless.
pub static NATIVE: NativeEncoder = NativeEncoder;

#[derive(Serialize)]
struct MsgFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ch: &'a str,
    epoch: &'a str,
    off: u64,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    /// The sending user, for a client's `send` (absent on backend pushes).
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    data: &'a RawValue,
    ts: u64,
}

impl Encode for NativeEncoder {
    fn encode(&self, p: &Publication) -> Vec<u8> {
        let frame = MsgFrame {
            kind: "msg",
            ch: &p.channel,
            epoch: &p.position.epoch,
            off: p.position.offset,
            id: &p.message.id,
            event: p.message.event.as_deref(),
            from: p.message.from.as_deref(),
            data: &p.message.data,
            ts: p.message.ts_ms,
        };
        serde_json::to_vec(&frame).unwrap_or_default()
    }

    fn name(&self) -> &'static str {
        "native"
    }
}
