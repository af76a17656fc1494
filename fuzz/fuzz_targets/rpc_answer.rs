//! A backend's RPC answer: `backend::rpc::judge` on an HTTP status and a body (what
//! `backend::rpc_answer::parse` takes apart), then the close notes it carries applied to
//! a connection's notes (`close_notes::CloseNotes::apply`), as the server does.
//!
//! Input: two bytes of HTTP status (big-endian, taken modulo 600), then the body.
//!
//! Checks: no panic; an accepted answer's reply is JSON; an object reply never keeps the
//! reserved `"_pushhub"` member, and one that had none is the body as written (trimmed);
//! the close notes it carries pass their own check, and applying them keeps a
//! connection's notes within their bounds or refuses them whole.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use pushhub::backend::rpc::judge;
use pushhub::backend::rpc_answer::RESERVED_MEMBER;
use pushhub::close_notes::{CloseNotes, MAX_NOTES, MAX_NOTE_BYTES};
use serde::de::IgnoredAny;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [high, low, body @ ..] => (u16::from_be_bytes([*high, *low]) % 600, body),
        _ => return,
    };
    let Ok(answer) = judge(status, body.to_vec()) else {
        return;
    };
    assert!((200..300).contains(&status));
    // JSON as the server forwards it: syntax only, so a number no f64 holds (`1e999`)
    // is a valid reply, as it is for the client that receives it.
    let text = answer.reply.get();
    serde_json::from_str::<IgnoredAny>(text).expect("a reply is JSON");
    if let Ok(object) = serde_json::from_str::<BTreeMap<String, IgnoredAny>>(text) {
        assert!(!object.contains_key(RESERVED_MEMBER), "{text}");
    }
    let Some(change) = answer.close_notes else {
        if !body.is_empty() {
            let text = std::str::from_utf8(body).expect("an accepted body is UTF-8");
            assert_eq!(answer.reply.get(), text.trim());
        }
        return;
    };
    change
        .check()
        .expect("carried close notes pass their check");
    let mut notes = CloseNotes::default();
    for _ in 0..3 {
        let before = notes.clone();
        if notes.apply(&change).is_err() {
            assert_eq!(notes, before, "a refused change changes nothing");
        }
        for list in [&notes.controllers, &notes.close_keys] {
            assert!(list.len() <= MAX_NOTES);
            assert!(list
                .iter()
                .all(|n| !n.is_empty() && n.len() <= MAX_NOTE_BYTES));
        }
    }
});
