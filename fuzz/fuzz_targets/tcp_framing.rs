//! Raw TCP framing: `transport::tcp::framing::Decoder::next`, every framing (`lines`,
//! `length`, a Swoole EOF delimiter, a Swoole length header), on the bytes a raw TCP
//! client sends.
//!
//! Input: 1 byte choosing the framing (bits 0-1: lines, length, EOF, header; bits 2-3:
//! the EOF's length - 1), 1 byte the read size, 2 bytes of frame-size limit, 2 bytes of
//! packet limit (`package_max_length`, 0: none), 4 bytes of framing parameters (the EOF's
//! bytes, a control byte forced into the last; or the header's field type, length offset,
//! and body offset: 0 or after the field), then the client's byte stream. Checks:
//! - no panic; every step takes a frame off the buffer, asks for more than it holds, or
//!   refuses with 1009 (or 1002, a length shorter than its header); no frame is over the
//!   limit;
//! - the stream read in small pieces gives exactly what it gives read at once;
//! - the server's own framer round-trips: a payload framed by `TcpFramer` decodes to
//!   that payload (with the JSON whitespace a delimiter holds written as spaces; for
//!   `lines`, one trailing `\r` dropped, as documented), or is refused when it is over
//!   the framing's packet limit.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pushhub::transport::tcp::framing::{
    Decoded, Decoder, Eof, Framing, LengthField, LengthHeader, TcpFramer,
};
use pushhub::transport::Framer;

/// Every payload of `stream`, read `piece` bytes at a time, and the close code it ended
/// with, if it ended with one.
fn read(framing: &Framing, stream: &[u8], max: usize, piece: usize) -> (Vec<Vec<u8>>, Option<u16>) {
    let mut decoder = Decoder::new(framing.clone());
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
                    let header = matches!(framing, Framing::Length(_));
                    assert!(
                        reason.code == 1009 || (header && reason.code == 1002),
                        "{reason}"
                    );
                    return (out, Some(reason.code));
                }
            }
        }
    }
    (out, None)
}

/// The framing the input's first bytes describe; `None` when they describe none.
fn framing(mode: u8, packet: u16, params: [u8; 4]) -> Option<Framing> {
    let max_packet = (packet != 0).then_some(usize::from(packet));
    match mode & 3 {
        0 => Some(Framing::Lines),
        1 => Some(Framing::Length(LengthHeader::default())),
        2 => {
            let mut eof = params[..usize::from((mode >> 2) & 3) + 1].to_vec();
            if !eof.iter().any(|b| *b < 0x20) {
                if let Some(last) = eof.last_mut() {
                    *last %= 0x20;
                }
            }
            Eof::new(&eof, max_packet).ok().map(Framing::Eof)
        }
        _ => {
            let field = [
                LengthField::U16Be,
                LengthField::U32Be,
                LengthField::U16Le,
                LengthField::U32Le,
            ][usize::from(params[0] & 3)];
            let at = usize::from(params[1] & 7);
            let body = if params[2] & 1 == 0 {
                0
            } else {
                at + field.width() + usize::from(params[3] & 7)
            };
            LengthHeader::new(field, at, body, max_packet)
                .ok()
                .map(Framing::Length)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, piece, a, b, p, q, w, x, y, z, stream @ ..] = data else {
        return;
    };
    let Some(framing) = framing(*mode, u16::from_le_bytes([*p, *q]), [*w, *x, *y, *z]) else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([*a, *b]));
    let whole = read(&framing, stream, max, stream.len());
    let pieces = read(&framing, stream, max, usize::from(*piece) % 64 + 1);
    assert_eq!(whole, pieces, "reading in pieces changed the result");

    // The server's framer, with the input as the payload.
    let framed = TcpFramer::new(framing.clone()).frame_text(stream);
    let (payloads, closed) = read(&framing, &framed, usize::MAX, framed.len());
    let mut expected = stream.to_vec();
    let limit = match &framing {
        Framing::Lines => {
            for byte in expected.iter_mut().filter(|b| **b == b'\n') {
                *byte = b' ';
            }
            if expected.last() == Some(&b'\r') {
                expected.pop();
            }
            usize::MAX
        }
        Framing::Eof(eof) => {
            let controls: Vec<u8> = eof.bytes().iter().copied().filter(|b| *b < 0x20).collect();
            for byte in expected.iter_mut().filter(|b| controls.contains(&**b)) {
                *byte = b' ';
            }
            eof.payload_limit(usize::MAX)
        }
        Framing::Length(header) => header.payload_limit(usize::MAX),
    };
    if stream.len() > limit {
        assert_eq!(
            closed,
            Some(1009),
            "a payload over the packet limit was read"
        );
        return;
    }
    assert_eq!(closed, None);
    assert_eq!(
        payloads,
        [expected],
        "the framer's output decodes differently"
    );
});
