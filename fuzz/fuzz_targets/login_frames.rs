//! Seed 003's `login` frames: `dialect::native::login::parse_login`, what a client of a
//! `login_later` app sends to log in (`{"type":"login","ukey":"...","since":"..."}`).
//!
//! Input: one byte choosing the app's credential names (`token`; `ukey`, `token`; `ukey`),
//! then the frame's text. Checks: no panic; a frame that is read names its credential by
//! the first of the app's names it carries, with that field's non-empty text, and keeps
//! the frame's id; a `since` string is a cursor when the frame is read; a refusal is one
//! of the error codes docs/protocol.md lists.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushhub::dialect::native::login::parse_login;
use pushhub_fuzz::deeper_than_the_harness_stack;

const NAME_SETS: [&[&str]; 3] = [&["token"], &["ukey", "token"], &["ukey"]];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, text)) = data.split_first() else {
        return;
    };
    let names = NAME_SETS[usize::from(choice) % NAME_SETS.len()];
    if deeper_than_the_harness_stack(text) {
        return;
    }
    let Ok(frame) = serde_json::from_slice::<serde_json::Value>(text) else {
        return;
    };
    match parse_login(&frame, names) {
        Ok(login) => {
            let param = login
                .credential
                .param
                .as_deref()
                .expect("a named credential");
            let position = names
                .iter()
                .position(|n| *n == param)
                .expect("one of the names");
            assert!(names[..position].iter().all(|n| frame.get(n).is_none()));
            assert_eq!(frame[param].as_str(), Some(login.credential.value.as_str()));
            assert!(!login.credential.value.is_empty());
            assert_eq!(login.id.as_ref(), frame.get("id"));
            if frame.get("since").and_then(|s| s.as_str()).is_some() {
                assert!(login.since.is_some());
            }
        }
        Err(error) => assert!(matches!(
            error.code(),
            "missing_credential" | "bad_frame" | "invalid_cursor"
        )),
    }
});
