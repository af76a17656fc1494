//! Pusher client frames and the frames the server writes back:
//! `dialect::pusher::frames::{read, command}` (what `PusherClient::on_text` runs on every
//! text a pusher-js client sends), `ChannelData::user_id`, and `frames::publication` on
//! what a client event may carry.
//!
//! Input: any bytes; as UTF-8 text they are a client frame.
//!
//! Checks: no panic; a frame that reads as a client event is relayed as a frame that is
//! JSON, whose `data` is a string and whose `event` is the client's; a presence member's
//! id, when there is one, is not empty; a `socket_id` reads back to a connection name of
//! this server's form or is refused.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use pushhub::dialect::pusher::frames::{self, ChannelData, Command};
use pushhub::dialect::pusher::{conn_name_of, socket_id};
use pushhub::engine::{Message, Publication, StreamPosition};

fn relayed(event: &str, data: &serde_json::value::RawValue) {
    let message = Message {
        id: "n-1".into(),
        app: "chat".into(),
        event: Some(event.into()),
        from: None,
        data: data.to_owned(),
        ts_ms: 0,
        seq: 1,
        shared: false,
        exclude: None,
        member: None,
    };
    let publication = Publication::new(
        "chat:room:private-x".into(),
        StreamPosition::empty(),
        Arc::new(message),
    );
    let frame: serde_json::Value =
        serde_json::from_slice(&frames::publication(&publication)).expect("a frame is JSON");
    assert!(frame["data"].is_string(), "{frame}");
    assert_eq!(frame["event"], event);
    assert_eq!(frame["channel"], "private-x");
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Some(name) = conn_name_of(text) {
        let (node, id) = name.split_once('-').expect("a connection name has a dash");
        let id = u64::from_str_radix(id, 16).expect("its id is hex");
        let again = socket_id(node, id);
        assert_eq!(conn_name_of(&again).as_deref(), Some(name.as_str()));
    }
    let Ok(frame) = frames::read(text) else {
        return;
    };
    match frames::command(&frame) {
        Ok(Command::ClientEvent {
            event,
            data: Some(data),
            ..
        }) => relayed(event, data),
        Ok(Command::Subscribe(subscribe)) => {
            if let Some(Ok(member)) = subscribe
                .channel_data
                .as_deref()
                .map(serde_json::from_str::<ChannelData>)
            {
                assert!(member.user_id().is_none_or(|id| !id.is_empty()));
            }
        }
        _ => {}
    }
});
