//! Raw TCP framing: `transport::tcp::framing::Decoder::next`, both framings (`lines` and
//! `length`), on the bytes a raw TCP client sends.
//!
//! Input: 1 byte choosing the framing and the read size, 2 bytes of frame-size limit, then
//! the client's byte stream. Checks:
//! - no panic; every step takes a frame off the buffer, asks for more than it holds, or
//!   refuses with 1009; no frame is over the limit;
//! - the stream read in small pieces gives exactly what it gives read at once;
//! - the server's own framer round-trips: a payload framed by `Framing::framer()`
//!   decodes to that payload (for `lines`: with newlines written as spaces, and one
//!   trailing `\r` dropped, as documented).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pushhub::transport::tcp::framing::{Decoded, Decoder, Framing};

/// Every payload of `stream`, read `piece` bytes at a time, and the close code it ended
/// with, if it ended with one.
fn read(framing: Framing, stream: &[u8], max: usize, piece: usize) -> (Vec<Vec<u8>>, Option<u16>) {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in stream.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match decoder.next(&mut buf, max) {
                Ok(Decoded::Payload(payload)) => {
                    assert!(payload.len() <= max, "payload over the limit");
                    assert!(buf.len() < before, "a frame consumed nothing");
                    out.push(payload.to_vec());
                }
                Ok(Decoded::NeedMore(want)) => {
                    assert!(
                        want > buf.len(),
                        "NeedMore({want}) with {} buffered",
                        buf.len()
                    );
                    break;
                }
                Err(reason) => {
                    assert_eq!(reason.code, 1009, "{reason}");
                    return (out, Some(reason.code));
                }
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let [mode, a, b, stream @ ..] = data else {
        return;
    };
    let framing = if mode & 1 == 0 {
        Framing::Lines
    } else {
        Framing::Length
    };
    let max = usize::from(u16::from_le_bytes([*a, *b]));
    let whole = read(framing, stream, max, stream.len());
    let pieces = read(framing, stream, max, usize::from(mode >> 1) % 64 + 1);
    assert_eq!(whole, pieces, "reading in pieces changed the result");

    // The server's framer, with the input as the payload.
    let framed = framing.framer().frame_text(stream);
    let (payloads, closed) = read(framing, &framed, usize::MAX, framed.len());
    assert_eq!(closed, None);
    let mut expected = stream.to_vec();
    if framing == Framing::Lines {
        for byte in expected.iter_mut().filter(|b| **b == b'\n') {
            *byte = b' ';
        }
        if expected.last() == Some(&b'\r') {
            expected.pop();
        }
    }
    assert_eq!(
        payloads,
        [expected],
        "the framer's output decodes differently"
    );
});
