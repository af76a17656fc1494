//! Resume cursors: `hub::Cursor::parse`, what a client passes as `since=`, in a `connect`
//! or `auth` frame, as SSE's `Last-Event-ID` and to long-poll.
//!
//! Checks: no panic; a parsed cursor written back (`Display`) is no longer than the text
//! it came from (so it is accepted again) and parses to the same cursor.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushhub::hub::cursor::MAX_CURSOR_BYTES;
use pushhub::hub::Cursor;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(cursor) = Cursor::parse(&text) else {
        return;
    };
    let written = cursor.to_string();
    assert!(
        written.len() <= text.len().min(MAX_CURSOR_BYTES),
        "{written:?} from {text:?}"
    );
    assert_eq!(
        Cursor::parse(&written).expect("a written cursor parses"),
        cursor
    );
    assert_eq!(cursor.is_empty(), written.is_empty());
});
