//! WebSocket frames from a client: `transport::ws::codec::FrameReader::next`, the parser
//! every WebSocket connection runs on the bytes it reads.
//!
//! Input: 2 bytes of message-size limit, 1 byte of read size, then the client's stream:
//! - raw (top bit of the read-size byte clear): the bytes as they are;
//! - built (top bit set): records `[flags, repeat, length, payload...]`, each a masked
//!   frame (`flags`: FIN, RSV and opcode bits as on the wire) sent `repeat + 1` times,
//!   so streams of thousands of frames (a message in many fragments) are reachable
//!   from a few bytes of input.
//!
//! scripts/fuzz.sh runs the target with a 256 KiB stack, so stack use that grows with the
//! input (recursion per frame) crashes it instead of going unseen. Checks:
//! - no panic; every step takes a frame (or a fragment) off the buffer, asks for more than
//!   it holds, or refuses with a close code the server may send;
//! - texts and binary messages are within the limit, pings within 125 bytes, close codes
//!   allowed;
//! - the stream read in small pieces gives exactly what it gives read at once;
//! - what the server itself frames (text, binary, pong, close) parses back to what it
//!   framed.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pushhub::transport::ws::codec::{
    binary_frame, close_frame, pong_frame, text_frame, FrameReader, Inbound, Step,
};
use pushhub_fuzz::check_disconnect;

/// Every frame of `stream`, read `piece` bytes at a time, and the close code it ended
/// with, if it ended with one.
fn read(stream: &[u8], max: usize, piece: usize) -> (Vec<Inbound>, Option<u16>) {
    let mut reader = FrameReader::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in stream.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match reader.next(&mut buf, max) {
                Ok(Step::Frame(frame)) => {
                    assert!(buf.len() < before, "a frame consumed nothing");
                    match &frame {
                        Inbound::Text(text) => assert!(text.len() <= max, "text over the limit"),
                        Inbound::Binary(data) => {
                            assert!(data.len() <= max, "binary over the limit")
                        }
                        Inbound::Ping(payload) => assert!(payload.len() <= 125),
                        Inbound::Close(Some(code)) => assert!(
                            matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999),
                            "close code {code} accepted"
                        ),
                        Inbound::Pong | Inbound::Close(None) => {}
                    }
                    out.push(frame);
                }
                Ok(Step::Fragment) => assert!(buf.len() < before, "a fragment consumed nothing"),
                Ok(Step::NeedMore(want)) => {
                    assert!(
                        want > buf.len(),
                        "NeedMore({want}) with {} buffered",
                        buf.len()
                    );
                    break;
                }
                Err(reason) => {
                    check_disconnect(&reason);
                    return (out, Some(reason.code));
                }
            }
        }
    }
    (out, None)
}

/// The client stream `records` describe: `[flags, repeat, length, payload...]` each.
fn build(mut records: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = Vec::new();
    while let [flags, repeat, length, rest @ ..] = records {
        let payload = &rest[..usize::from(*length).min(rest.len())];
        records = &rest[payload.len()..];
        let mut frame = vec![*flags];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
        for _ in 0..=*repeat {
            out.extend_from_slice(&frame);
        }
    }
    out
}

/// A server frame as a client would send it: the mask bit set and an all-zero mask
/// inserted after the length (XOR with zero leaves the payload as it is).
fn as_client_frame(server: &[u8]) -> Vec<u8> {
    let header = match server[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = server[..header].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&server[header..]);
    out
}

/// Parse one frame the server built (unmasked, so masked first).
fn parse_one(server: &[u8]) -> Inbound {
    let mut buf = BytesMut::from(&as_client_frame(server)[..]);
    match FrameReader::new().next(&mut buf, usize::MAX) {
        Ok(Step::Frame(frame)) => {
            assert!(buf.is_empty(), "trailing bytes after a server frame");
            frame
        }
        other => panic!("server frame {server:?} does not parse: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, piece, stream @ ..] = data else {
        return;
    };
    let max = u16::from_le_bytes([*a, *b]) as usize;
    let client = if piece & 0x80 == 0 {
        stream.to_vec()
    } else {
        build(stream)
    };
    let whole = read(&client, max, client.len());
    let pieces = read(&client, max, usize::from(*piece % 64) + 1);
    assert_eq!(whole, pieces, "reading in pieces changed the result");

    for frame in &whole.0 {
        match frame {
            Inbound::Text(text) => assert_eq!(parse_one(&text_frame(text.as_bytes())), *frame),
            Inbound::Binary(data) => assert_eq!(parse_one(&binary_frame(data)), *frame),
            _ => {}
        }
    }
    // The server's own frames, with the input as their payload.
    let text = String::from_utf8_lossy(stream);
    assert_eq!(
        parse_one(&text_frame(text.as_bytes())),
        Inbound::Text(text.to_string())
    );
    let ping = &stream[..stream.len().min(125)];
    assert_eq!(parse_one(&pong_frame(ping)), Inbound::Pong);
    let code = u16::from_le_bytes([*a, *b]) % 1000 + 4000;
    let close = close_frame(code, &text);
    assert!(close.len() <= 2 + 125, "close frame over 125 bytes");
    assert_eq!(parse_one(&close), Inbound::Close(Some(code)));
});
