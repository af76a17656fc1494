//! WebSocket frames: parsing what clients send, building what the server sends.

use std::io::Cursor;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::disconnect::Disconnect;

/// One complete message or control frame from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A whole text message (fragments joined), valid UTF-8.
    Text(String),
    /// A whole binary message (fragments joined). The codec parses it like text; whether
    /// a connection accepts binary is its handler's decision.
    Binary(Bytes),
    /// A ping; answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong (an answer to our heartbeat, or unsolicited).
    Pong,
    /// The client is closing, with its close code if it gave one.
    Close(Option<u16>),
}

/// What parsing the buffer produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A frame was taken off the front of the buffer.
    Frame(Inbound),
    /// A fragment of a message still arriving was taken off the front of the buffer:
    /// nothing to deliver yet, but a frame the client sent all the same (it counts against
    /// the client's frame rate like any other).
    Fragment,
    /// More bytes are needed: the buffer must hold at least this many to make progress.
    NeedMore(usize),
}

/// Parses client frames, joining fragmented messages.
#[derive(Debug, Default)]
pub struct FrameReader {
    fragments: Option<Partial>,
}

/// A data message whose first fragments have arrived.
#[derive(Debug)]
struct Partial {
    binary: bool,
    payload: BytesMut,
    /// How much of a text payload is known to be valid UTF-8: everything but a character
    /// the last fragment may have cut in two.
    checked: usize,
    /// Frames of the message so far.
    frames: u32,
}

impl Partial {
    /// Check the text that arrived since the last call, so a message is refused at the
    /// fragment holding its first invalid byte rather than after its last fragment.
    fn check_utf8(&mut self) -> Result<(), Disconnect> {
        if self.binary {
            return Ok(());
        }
        match std::str::from_utf8(&self.payload[self.checked..]) {
            Ok(_) => self.checked = self.payload.len(),
            Err(error) if error.error_len().is_some() => return Err(Disconnect::INVALID_UTF8),
            Err(error) => self.checked += error.valid_up_to(),
        }
        Ok(())
    }

    fn finish(self) -> Result<Inbound, Disconnect> {
        if self.binary {
            Ok(Inbound::Binary(self.payload.freeze()))
        } else {
            text(self.payload)
        }
    }
}

/// Most frames one message may come in. Browsers and common libraries send a message in
/// one frame, or a few of several KiB; without a bound, a message kept open with empty
/// fragments would let a client send frames that never become a message.
pub const MAX_FRAGMENTS: u32 = 1024;

/// Longest header a client frame can have: 2 + 8 (length) + 4 (mask).
const MAX_HEADER: usize = 14;

impl FrameReader {
    /// A reader with no message in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take the next frame off the front of `buf`: one frame per call, fragments included,
    /// so the caller sees (and can count) every frame. Messages larger than `max_message`
    /// bytes (fragments counted together) are refused before their payload is buffered,
    /// and messages in more than [`MAX_FRAGMENTS`] frames when the one over arrives.
    pub fn next(&mut self, buf: &mut BytesMut, max_message: usize) -> Result<Step, Disconnect> {
        let mut cursor = Cursor::new(&buf[..]);
        let (header, length) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(Step::NeedMore((buf.len() + 1).min(MAX_HEADER))),
            Err(_) => return Err(Disconnect::PROTOCOL_ERROR),
        };
        let header_len = cursor.position() as usize;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Disconnect::PROTOCOL_ERROR.with_reason("reserved bits set"));
        }
        let Some(mask) = header.mask else {
            return Err(Disconnect::PROTOCOL_ERROR.with_reason("client frames must be masked"));
        };
        let is_control = matches!(header.opcode, OpCode::Control(_));
        if is_control && (!header.is_final || length > 125) {
            return Err(Disconnect::PROTOCOL_ERROR.with_reason("invalid control frame"));
        }
        let so_far = self
            .fragments
            .as_ref()
            .map_or(0, |f| f.payload.len() as u64);
        if !is_control && length.saturating_add(so_far) > max_message as u64 {
            return Err(Disconnect::TOO_BIG
                .with_reason(format!("message too big: limit is {max_message} bytes")));
        }
        let total = header_len + length as usize;
        if buf.len() < total {
            return Ok(Step::NeedMore(total));
        }
        let mut payload = buf.split_to(total);
        payload.advance(header_len);
        apply_mask(&mut payload, mask);
        let inbound = match header.opcode {
            OpCode::Data(opcode @ (Data::Text | Data::Binary)) => {
                if self.fragments.is_some() {
                    return Err(Disconnect::PROTOCOL_ERROR
                        .with_reason("new message before the previous one ended"));
                }
                let partial = Partial {
                    binary: opcode == Data::Binary,
                    payload,
                    checked: 0,
                    frames: 1,
                };
                match self.finish_or_hold(partial, header.is_final)? {
                    Some(inbound) => inbound,
                    None => return Ok(Step::Fragment),
                }
            }
            OpCode::Data(Data::Continue) => {
                let Some(mut partial) = self.fragments.take() else {
                    return Err(
                        Disconnect::PROTOCOL_ERROR.with_reason("continuation without a message")
                    );
                };
                if partial.frames >= MAX_FRAGMENTS {
                    return Err(Disconnect::TOO_MANY_FRAGMENTS.with_reason(format!(
                        "too many fragments: a message may have at most {MAX_FRAGMENTS} fragments"
                    )));
                }
                partial.frames += 1;
                partial.payload.extend_from_slice(&payload);
                match self.finish_or_hold(partial, header.is_final)? {
                    Some(inbound) => inbound,
                    None => return Ok(Step::Fragment),
                }
            }
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                return Err(Disconnect::PROTOCOL_ERROR.with_reason("reserved opcode"))
            }
            OpCode::Control(Control::Ping) => Inbound::Ping(payload.freeze()),
            OpCode::Control(Control::Pong) => Inbound::Pong,
            OpCode::Control(Control::Close) => close_code(&payload)?,
        };
        Ok(Step::Frame(inbound))
    }

    /// The whole message when `partial` ended with a final frame; otherwise its text so
    /// far is checked and it is held for the next fragment.
    fn finish_or_hold(
        &mut self,
        mut partial: Partial,
        is_final: bool,
    ) -> Result<Option<Inbound>, Disconnect> {
        if is_final {
            return partial.finish().map(Some);
        }
        partial.check_utf8()?;
        self.fragments = Some(partial);
        Ok(None)
    }

    /// True while a fragmented message is being assembled.
    pub fn in_message(&self) -> bool {
        self.fragments.is_some()
    }
}

fn text(payload: BytesMut) -> Result<Inbound, Disconnect> {
    String::from_utf8(payload.to_vec())
        .map(Inbound::Text)
        .map_err(|_| Disconnect::INVALID_UTF8)
}

fn close_code(payload: &[u8]) -> Result<Inbound, Disconnect> {
    match payload.len() {
        0 => Ok(Inbound::Close(None)),
        1 => Err(Disconnect::PROTOCOL_ERROR.with_reason("close frame with a 1-byte payload")),
        _ => {
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(Disconnect::INVALID_UTF8);
            }
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !tungstenite::protocol::frame::coding::CloseCode::from(code).is_allowed() {
                return Err(
                    Disconnect::PROTOCOL_ERROR.with_reason(format!("invalid close code {code}"))
                );
            }
            Ok(Inbound::Close(Some(code)))
        }
    }
}

/// Unmask a client payload in place.
fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.put_slice(payload);
    out.freeze()
}

/// A final, unmasked text frame.
pub fn text_frame(payload: &[u8]) -> Bytes {
    frame(0x1, payload)
}

/// A final, unmasked binary frame: pushhub's own dialects never send one, but an echo of a
/// client's binary message (the conformance suite's echo server) does.
pub fn binary_frame(payload: &[u8]) -> Bytes {
    frame(0x2, payload)
}

/// A heartbeat ping with an empty payload.
pub fn ping_frame() -> Bytes {
    Bytes::from_static(&[0x89, 0x00])
}

/// The answer to a client's ping.
pub fn pong_frame(payload: &[u8]) -> Bytes {
    frame(0xA, payload)
}

/// A close frame; the reason is cut to the 123 bytes a control frame allows.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(0x8, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![first];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 65535 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn parse_all(bytes: &[u8], max: usize) -> Result<Vec<Inbound>, Disconnect> {
        let mut buf = BytesMut::from(bytes);
        let mut reader = FrameReader::new();
        let mut out = Vec::new();
        loop {
            match reader.next(&mut buf, max)? {
                Step::Frame(f) => out.push(f),
                Step::Fragment => {}
                Step::NeedMore(_) => return Ok(out),
            }
        }
    }

    #[test]
    fn text_ping_pong_close() {
        let mut bytes = client_frame(0x81, "héllo, a longer text".as_bytes());
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x8A, b""));
        bytes.extend(client_frame(0x88, &[0x03, 0xE8, b'b', b'y', b'e']));
        assert_eq!(
            parse_all(&bytes, 1000).unwrap(),
            [
                Inbound::Text("héllo, a longer text".into()),
                Inbound::Ping(Bytes::from_static(b"p")),
                Inbound::Pong,
                Inbound::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn fragments_join_with_interleaved_ping() {
        let mut bytes = client_frame(0x01, b"ab");
        bytes.extend(client_frame(0x89, b""));
        bytes.extend(client_frame(0x00, b"cd"));
        bytes.extend(client_frame(0x80, b"ef"));
        assert_eq!(
            parse_all(&bytes, 1000).unwrap(),
            [Inbound::Ping(Bytes::new()), Inbound::Text("abcdef".into())]
        );
    }

    /// Found with the ws_codec fuzz target (fuzz/seeds/ws_codec/regress_fragment_recursion):
    /// each fragment used to recurse, so a read holding thousands of empty fragments
    /// overflowed the stack of the task (2 MiB) and aborted the server.
    #[test]
    fn thousands_of_fragments_in_one_read_use_constant_stack() {
        let mut bytes = client_frame(0x01, b"ab");
        for _ in 0..100_000 {
            bytes.extend(client_frame(0x00, b""));
        }
        bytes.extend(client_frame(0x80, b"c"));
        let parsed = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || parse_all(&bytes, 1000))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(parsed.unwrap_err().code, 1008, "over MAX_FRAGMENTS");
    }

    #[test]
    fn binary_messages_are_parsed_whole_and_fragmented() {
        let mut bytes = client_frame(0x82, &[0xff, 0x00]);
        bytes.extend(client_frame(0x02, &[1, 2]));
        bytes.extend(client_frame(0x89, b""));
        bytes.extend(client_frame(0x80, &[0xfe]));
        assert_eq!(
            parse_all(&bytes, 1000).unwrap(),
            [
                Inbound::Binary(Bytes::from_static(&[0xff, 0x00])),
                Inbound::Ping(Bytes::new()),
                Inbound::Binary(Bytes::from_static(&[1, 2, 0xfe])),
            ]
        );
    }

    #[test]
    fn a_character_cut_between_fragments_is_joined() {
        let euro = "€".as_bytes();
        let mut bytes = client_frame(0x01, &euro[..1]);
        bytes.extend(client_frame(0x00, &euro[1..2]));
        bytes.extend(client_frame(0x80, &euro[2..]));
        assert_eq!(
            parse_all(&bytes, 1000).unwrap(),
            [Inbound::Text("€".into())]
        );
    }

    /// Autobahn 6.x: a fragmented text message is refused at the fragment holding its
    /// first invalid byte, before the client has sent the rest (it may never).
    #[test]
    fn invalid_utf8_fails_at_its_fragment() {
        let bytes = client_frame(0x01, &[b'a', 0xce, 0xba, 0xed, 0xa0, 0x80]);
        assert_eq!(parse_all(&bytes, 1000).unwrap_err().code, 1007);
        let cut = client_frame(0x01, &[b'a', 0xce]);
        assert_eq!(parse_all(&cut, 1000).unwrap(), []);
    }

    /// Each fragment is a step of its own, so whoever reads the frames can count them all
    /// (a message kept open with empty fragments used to be read in one step, uncounted).
    #[test]
    fn every_fragment_is_a_step() {
        let mut bytes = client_frame(0x01, b"a");
        bytes.extend(client_frame(0x00, b""));
        bytes.extend(client_frame(0x80, b"b"));
        let mut buf = BytesMut::from(&bytes[..]);
        let mut reader = FrameReader::new();
        assert_eq!(reader.next(&mut buf, 100).unwrap(), Step::Fragment);
        assert!(reader.in_message());
        assert_eq!(reader.next(&mut buf, 100).unwrap(), Step::Fragment);
        assert_eq!(
            reader.next(&mut buf, 100).unwrap(),
            Step::Frame(Inbound::Text("ab".into()))
        );
        assert!(!reader.in_message());
    }

    #[test]
    fn a_message_has_at_most_max_fragments() {
        let message = |frames: u32| {
            let mut bytes = client_frame(0x01, b"x");
            for _ in 2..frames {
                bytes.extend(client_frame(0x00, b""));
            }
            bytes.extend(client_frame(0x80, b"y"));
            bytes
        };
        assert_eq!(
            parse_all(&message(MAX_FRAGMENTS), 1000).unwrap(),
            [Inbound::Text("xy".into())]
        );
        let mut twice = message(MAX_FRAGMENTS);
        twice.extend(message(MAX_FRAGMENTS));
        assert_eq!(
            parse_all(&twice, 1000).unwrap().len(),
            2,
            "counted per message"
        );
        let refused = parse_all(&message(MAX_FRAGMENTS + 1), 1000).unwrap_err();
        assert_eq!(refused.code, 1008);
        assert!(refused.reason.contains("1024 fragments"), "{refused}");
    }

    #[test]
    fn partial_input_asks_for_more_and_lengths_are_exact() {
        let payload = vec![b'x'; 70_000];
        let bytes = client_frame(0x81, &payload);
        let mut reader = FrameReader::new();
        let mut buf = BytesMut::from(&bytes[..1]);
        assert_eq!(reader.next(&mut buf, 100_000).unwrap(), Step::NeedMore(2));
        let mut buf = BytesMut::from(&bytes[..100]);
        assert_eq!(
            reader.next(&mut buf, 100_000).unwrap(),
            Step::NeedMore(bytes.len())
        );
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(
            matches!(reader.next(&mut buf, 100_000).unwrap(), Step::Frame(Inbound::Text(t)) if t.len() == 70_000)
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn violations_get_their_close_codes() {
        let code = |bytes: Vec<u8>| parse_all(&bytes, 100).unwrap_err().code;
        assert_eq!(code(client_frame(0x81, &[0xff, 0xfe])), 1007);
        assert_eq!(code(client_frame(0x81, &[b'x'; 101])), 1009);
        let mut two = client_frame(0x01, &[b'x'; 60]);
        two.extend(client_frame(0x80, &[b'x'; 60]));
        assert_eq!(code(two), 1009);
        assert_eq!(code(client_frame(0xC1, b"rsv")), 1002);
        assert_eq!(code(client_frame(0x83, b"")), 1002);
        assert_eq!(code(client_frame(0x09, b"")), 1002);
        assert_eq!(code(client_frame(0x80, b"x")), 1002);
        assert_eq!(code(client_frame(0x88, &[3])), 1002);
        assert_eq!(
            code(client_frame(0x88, &[0x03, 0xED])),
            1002,
            "1005 must not be sent"
        );
        assert_eq!(code(client_frame(0x88, &[0, 0])), 1002);
        assert_eq!(code(client_frame(0x88, &[0x03, 0xE8, 0xff])), 1007);
        assert_eq!(code(vec![0x81, 0x01, b'x']), 1002);
        let mut oversize_control = client_frame(0x89, &[0; 126]);
        oversize_control.truncate(20);
        assert_eq!(code(oversize_control), 1002);
    }

    #[test]
    fn server_frames() {
        assert_eq!(&text_frame(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let big = text_frame(&[b'a'; 300]);
        assert_eq!(&big[..4], &[0x81, 126, 0x01, 0x2C]);
        let huge = text_frame(&vec![b'a'; 70_000]);
        assert_eq!(huge[1], 127);
        assert_eq!(huge.len(), 70_010);
        let close = close_frame(4001, &"é".repeat(100));
        assert!(close.len() <= 2 + 125);
        assert!(std::str::from_utf8(&close[4..]).is_ok());
    }

    #[test]
    fn mask_matches_bytewise_xor() {
        let mask = [0x11, 0x22, 0x33, 0x44];
        for len in [0, 1, 7, 8, 9, 31] {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut fast = original.clone();
            apply_mask(&mut fast, mask);
            let slow: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes from a client never panic the parser, and every step either
        /// consumes bytes, asks for more than it has, or fails with a close code.
        #[test]
        fn arbitrary_client_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..300) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut reader = FrameReader::new();
            for _ in 0..600 {
                let before = buf.len();
                match reader.next(&mut buf, max) {
                    Ok(Step::Frame(_) | Step::Fragment) => prop_assert!(buf.len() < before),
                    Ok(Step::NeedMore(want)) => { prop_assert!(want > buf.len()); break; }
                    Err(reason) => { prop_assert!(reason.code >= 1000); break; }
                }
            }
        }
    }
}
