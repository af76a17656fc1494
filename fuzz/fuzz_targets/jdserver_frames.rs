//! jdserver clients: `dialect::jdserver::JdClient`, the handler that parses a jdserver
//! client's `{"ac":"init","app":...,"user":...}` and ignores what follows, on a fresh hub;
//! and `dialect::jdserver::raw_text`, how a pushed value is sent to it.
//!
//! Input: 1 byte choosing how the client came, then lines:
//! - even: WebSocket on `/`, every line a text frame (the first must be `init`);
//! - odd: long-poll `getMsg`, whose request names the app (line 1), the user (line 2), a
//!   token (line 3, for the token app `secure`) and a cursor (line 4).
//!
//! Checks: no panic; before `init` anything else closes with 4502, a valid `init`
//! attaches, a second `init` closes with 4503 and anything else after it is ignored;
//! every close code is one the server may send; closing leaves no connection behind;
//! `raw_text` of a JSON string is the string, of anything else the JSON itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushhub::dialect::jdserver::{raw_text, JdClient};
use pushhub::disconnect::Disconnect;
use pushhub::hub::Cursor;
use pushhub::transport::ClientHandler;
use pushhub_fuzz::{
    before_handshake, check_disconnect, connections, drain, frames, jdserver_renderer, link,
};
use serde_json::value::RawValue;
use serde_json::Value;

fn is_init(line: &str) -> bool {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("ac").and_then(Value::as_str).map(|ac| ac == "init"))
        .unwrap_or(false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let lines = frames(rest);
    for line in &lines {
        if let Ok(raw) = RawValue::from_string(line.trim().to_owned()) {
            let text = raw_text(&raw);
            match serde_json::from_str::<Value>(raw.get()) {
                Ok(Value::String(s)) => assert_eq!(text, s.as_bytes()),
                _ => assert_eq!(text, raw.get().as_bytes()),
            }
        }
    }

    let hub = pushhub_fuzz::hub();
    let link = link();
    pushhub_fuzz::runtime().block_on(async {
        let line = |i: usize| lines.get(i).cloned();
        let (mut client, feed) = if mode % 2 == 0 {
            (
                JdClient::new(hub.clone(), jdserver_renderer(), before_handshake()),
                &lines[..],
            )
        } else {
            let token = line(2).filter(|t| !t.is_empty());
            let since = line(3).and_then(|c| Cursor::parse(&c).ok());
            let client = JdClient::given(
                hub.clone(),
                jdserver_renderer(),
                before_handshake(),
                line(0).unwrap_or_default(),
                line(1).filter(|u| !u.is_empty()),
                token,
                since,
            );
            (client, &[][..])
        };
        let mut ended = client.on_open(&link).await.err();
        if ended.is_none() {
            for text in feed {
                let attached = link.stream_start().is_some();
                let result = client.on_text(text, &link).await;
                match (attached, is_init(text), &result) {
                    (false, false, Err(reason)) => assert_eq!(reason.code, 4502, "{reason}"),
                    (false, false, Ok(())) => panic!("a frame before init was accepted"),
                    (false, true, Ok(())) => assert!(link.stream_start().is_some()),
                    (true, true, Err(reason)) => assert_eq!(reason.code, 4503, "{reason}"),
                    (true, true, Ok(())) => panic!("a second init was accepted"),
                    (true, false, result) => assert!(result.is_ok(), "{result:?}"),
                    (false, true, Err(_)) => {}
                }
                if let Err(reason) = result {
                    ended = Some(reason);
                    break;
                }
            }
        }
        if let Some(reason) = &ended {
            check_disconnect(reason);
        }
        let (_, closing) = drain(&link);
        if let Some(reason) = closing {
            check_disconnect(&reason);
        }
        client
            .on_close(ended.as_ref().unwrap_or(&Disconnect::NORMAL))
            .await;
    });
    assert_eq!(
        connections(&hub),
        0,
        "a closed client left a connection behind"
    );
});
