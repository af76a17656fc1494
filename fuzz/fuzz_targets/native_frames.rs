//! Native client frames: `dialect::native::NativeClient`, the handler every native
//! connection (WebSocket, raw TCP) runs each text frame from its client through, on a
//! fresh hub. Parsing happens there (`connect`, `auth`, `ping`, `pong`, `refresh`, and
//! the cursor in `since`), so the target drives the real handler rather than a copy.
//!
//! Input: 1 byte choosing how the client came, then its text frames, one per line:
//! - `0`: raw TCP, so the first frame must be `{"type":"connect",...}`;
//! - `1`: WebSocket `?app=demo&user=LINE1` (or `solo`, one connection per user; a second
//!   connection of the same user then replaces the first);
//! - `2`: WebSocket to the token app `secure` without a token: the first frame must be
//!   `{"type":"auth","token":...}`;
//! - `3`: WebSocket to `secure` with `?token=LINE1`.
//!
//! Checks: no panic; every frame the server queues is a JSON object with a known
//! `type`; a `welcome` comes first and its `cursor` parses to where the stream starts;
//! every close code is one the server may send; closing leaves no connection behind.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushhub::auth::{Credential, CredentialSource, Presented};
use pushhub::dialect::native::NativeClient;
use pushhub::disconnect::Disconnect;
use pushhub::hub::Cursor;
use pushhub::transport::{ClientHandler, Link};
use pushhub_fuzz::{
    before_handshake, check_disconnect, connections, drain, frames, link, native_renderer,
};

/// The frame types the server sends a native client.
const SERVER_TYPES: [&str; 9] = [
    "welcome",
    "msg",
    "pong",
    "error",
    "refreshed",
    "reply",
    "joined",
    "left",
    "sent",
];

/// Check everything `link` has queued; returns whether a welcome was among it.
fn check_sent(link: &Link) -> bool {
    let (sent, closing) = drain(link);
    if let Some(reason) = closing {
        check_disconnect(&reason);
    }
    let mut welcomed = false;
    for (i, frame) in sent.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_slice(frame)
            .unwrap_or_else(|e| panic!("server frame is not JSON ({e}): {frame:?}"));
        let kind = value["type"].as_str().expect("a string type");
        assert!(SERVER_TYPES.contains(&kind), "unknown type {kind:?}");
        if kind == "welcome" {
            assert!(!welcomed && i == 0, "welcome is the first frame, once");
            let cursor = value["cursor"].as_str().expect("welcome has a cursor");
            let start = link.stream_start().expect("a welcomed client is attached");
            let parsed = Cursor::parse(cursor).expect("the welcome's cursor parses");
            assert_eq!(parsed, start.cursor);
            assert_eq!(value["recovered"].as_bool(), Some(start.recovered));
            welcomed = true;
        }
    }
    welcomed
}

/// Open `client`, feed it `lines`, close it; check what it sent and that it let go.
async fn run(mut client: NativeClient, link: &Link, lines: &[String]) -> Option<Disconnect> {
    let mut ended = client.on_open(link).await.err();
    let mut attached = link.stream_start().is_some();
    if attached {
        assert!(check_sent(link), "attached at open without a welcome");
    }
    if ended.is_none() {
        for line in lines {
            if let Err(reason) = client.on_text(line, link).await {
                ended = Some(reason);
                break;
            }
            let liveness = client.liveness();
            assert!(liveness.max_message_bytes > 0);
            let welcomed = check_sent(link);
            assert_eq!(welcomed, !attached && link.stream_start().is_some());
            attached = link.stream_start().is_some();
        }
    }
    if let Some(reason) = &ended {
        check_disconnect(reason);
    }
    check_sent(link);
    client
        .on_close(ended.as_ref().unwrap_or(&Disconnect::NORMAL))
        .await;
    ended
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let lines = frames(rest);
    let hub = pushhub_fuzz::hub();
    let renderer = native_renderer();
    pushhub_fuzz::runtime().block_on(async {
        match mode % 4 {
            0 => {
                let client =
                    NativeClient::awaiting_connect(hub.clone(), renderer, before_handshake());
                run(client, &link(), &lines).await;
            }
            1 => {
                let name = if mode & 4 == 0 { "demo" } else { "solo" };
                let app = hub.app(name).expect("declared app");
                let user = lines[0].clone();
                // A first connection of the same user, still open while the second runs.
                let first_link = link();
                let presented = Presented {
                    user: Some(user),
                    ..Presented::default()
                };
                let mut first = NativeClient::new(
                    hub.clone(),
                    app.clone(),
                    presented.clone(),
                    None,
                    renderer.clone(),
                    before_handshake(),
                );
                let first_open = first.on_open(&first_link).await;
                let client = NativeClient::new(
                    hub.clone(),
                    app,
                    presented,
                    None,
                    renderer,
                    before_handshake(),
                );
                run(client, &link(), &lines[1..]).await;
                check_sent(&first_link);
                first
                    .on_close(first_open.as_ref().err().unwrap_or(&Disconnect::NORMAL))
                    .await;
            }
            2 => {
                let app = hub.app("secure").expect("declared app");
                let client = NativeClient::new(
                    hub.clone(),
                    app,
                    Presented::default(),
                    None,
                    renderer,
                    before_handshake(),
                );
                run(client, &link(), &lines).await;
            }
            _ => {
                let app = hub.app("secure").expect("declared app");
                let presented = Presented {
                    credential: Some(Credential::new(lines[0].clone(), CredentialSource::Query)),
                    ..Presented::default()
                };
                let client = NativeClient::new(
                    hub.clone(),
                    app,
                    presented,
                    None,
                    renderer,
                    before_handshake(),
                );
                run(client, &link(), &lines[1..]).await;
            }
        }
    });
    assert_eq!(
        connections(&hub),
        0,
        "a closed client left a connection behind"
    );
});
