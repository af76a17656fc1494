//! Raw TCP framings: how one native JSON payload is delimited on a byte stream.
//!
//! - `lines`: the payload, then `\n`. Native frames are JSON, which escapes every newline
//!   inside a string; a raw newline can only be whitespace between tokens (pushed `data`
//!   keeps the backend's formatting), so the framer writes it as a space, which means the
//!   same. Reading, a `\r` before the `\n` is dropped (terminals and `nc -C` send `\r\n`).
//! - `length`: a 4-byte big-endian payload length, then the payload.
//!
//! Reading refuses a frame larger than the limit as soon as that is known: from a length
//! prefix before a byte of its payload is buffered, and for a line once more than the limit
//! has arrived without a newline. An empty frame (blank line, zero length) is legal and
//! carries nothing: clients may use it as a keepalive.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::disconnect::Disconnect;
use crate::transport::Framer;

/// How frames are delimited on a raw TCP listener; one per listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// Newline-delimited JSON: easy to use from `nc`, shells and line-oriented code.
    #[default]
    Lines,
    /// 4-byte big-endian length prefix: what binary-minded device firmware prefers.
    Length,
}

impl Framing {
    /// The framer that writes this framing (shared: every recipient gets the same bytes).
    pub fn framer(self) -> &'static dyn Framer {
        match self {
            Framing::Lines => &LINES_FRAMER,
            Framing::Length => &LENGTH_FRAMER,
        }
    }

    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Lines => "lines",
            Framing::Length => "length",
        }
    }
}

impl std::fmt::Display for Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Newline-delimited framing.
pub struct LinesFramer;

/// The one newline framer.
pub static LINES_FRAMER: LinesFramer = LinesFramer;

impl Framer for LinesFramer {
    fn frame_text(&self, payload: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(payload.len() + 1);
        out.put_slice(payload);
        // Whitespace in JSON (see the module docs): a space keeps the frame on one line.
        for byte in out.iter_mut().filter(|b| **b == b'\n') {
            *byte = b' ';
        }
        out.put_u8(b'\n');
        out.freeze()
    }
}

/// Length-prefixed framing.
pub struct LengthFramer;

/// The one length-prefix framer.
pub static LENGTH_FRAMER: LengthFramer = LengthFramer;

impl Framer for LengthFramer {
    fn frame_text(&self, payload: &[u8]) -> Bytes {
        // Server payloads are bounded far below 4 GiB (max_body_bytes), so this never
        // saturates; saturating keeps a would-be bug from wrapping into a short frame.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        out.put_u32(len);
        out.put_slice(payload);
        out.freeze()
    }
}

/// What [`Decoder::next`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// One frame's payload (without its delimiter), taken off the buffer.
    Payload(BytesMut),
    /// More bytes are needed: the buffer must hold at least this many to make progress.
    NeedMore(usize),
}

/// Splits a client's byte stream into frames.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    /// Lines: how much of the buffer is known to hold no newline, so a line that arrives
    /// in many small pieces is scanned once, not once per piece.
    scanned: usize,
}

/// Bytes of a length prefix.
const PREFIX: usize = 4;

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            scanned: 0,
        }
    }

    /// Take the next frame off the front of `buf`; frames over `max` payload bytes are
    /// refused with [`Disconnect::TOO_BIG`].
    pub fn next(&mut self, buf: &mut BytesMut, max: usize) -> Result<Decoded, Disconnect> {
        match self.framing {
            Framing::Lines => self.next_line(buf, max),
            Framing::Length => next_prefixed(buf, max),
        }
    }

    fn next_line(&mut self, buf: &mut BytesMut, max: usize) -> Result<Decoded, Disconnect> {
        let from = self.scanned.min(buf.len());
        let Some(at) = buf[from..].iter().position(|&b| b == b'\n') else {
            // Room for the payload and a `\r`; anything longer cannot become a legal line.
            if buf.len() > max.saturating_add(1) {
                return Err(line_too_long(max));
            }
            self.scanned = buf.len();
            return Ok(Decoded::NeedMore(buf.len() + 1));
        };
        self.scanned = 0;
        let mut line = buf.split_to(from + at + 1);
        line.truncate(line.len() - 1);
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > max {
            return Err(line_too_long(max));
        }
        Ok(Decoded::Payload(line))
    }
}

fn line_too_long(max: usize) -> Disconnect {
    Disconnect::TOO_BIG.with_reason(format!("line too long: limit is {max} bytes"))
}

fn next_prefixed(buf: &mut BytesMut, max: usize) -> Result<Decoded, Disconnect> {
    let Some(prefix) = buf.get(..PREFIX) else {
        return Ok(Decoded::NeedMore(PREFIX));
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > max {
        return Err(Disconnect::TOO_BIG.with_reason(format!(
            "frame too big: length prefix says {len} bytes, limit is {max}"
        )));
    }
    let total = PREFIX + len;
    if buf.len() < total {
        return Ok(Decoded::NeedMore(total));
    }
    let mut frame = buf.split_to(total);
    let _ = frame.split_to(PREFIX);
    Ok(Decoded::Payload(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, bytes: &[u8], max: usize) -> Result<Vec<String>, Disconnect> {
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match decoder.next(&mut buf, max)? {
                Decoded::Payload(p) => out.push(String::from_utf8_lossy(&p).into_owned()),
                Decoded::NeedMore(_) => return Ok(out),
            }
        }
    }

    fn prefixed(payload: &[u8]) -> Vec<u8> {
        LENGTH_FRAMER.frame_text(payload).to_vec()
    }

    #[test]
    fn framers_round_trip_through_decoders() {
        for framing in [Framing::Lines, Framing::Length] {
            let mut bytes = Vec::new();
            for payload in [r#"{"type":"ping"}"#, "", r#"{"a":"x\ny"}"#] {
                let payload = serde_json::to_string(payload).unwrap();
                bytes.extend_from_slice(&framing.framer().frame_text(payload.as_bytes()));
            }
            let frames = decode_all(framing, &bytes, 100).unwrap();
            assert_eq!(frames.len(), 3, "{framing}");
            assert_eq!(frames[2], r#""{\"a\":\"x\\ny\"}""#);
        }
    }

    #[test]
    fn newlines_between_json_tokens_stay_on_the_line() {
        let pretty = b"{\n  \"type\": \"msg\",\n  \"data\": [1,\r\n 2]\n}";
        let framed = LINES_FRAMER.frame_text(pretty);
        assert_eq!(framed.iter().filter(|b| **b == b'\n').count(), 1);
        let frames = decode_all(Framing::Lines, &framed, 100).unwrap();
        let value: serde_json::Value = serde_json::from_str(&frames[0]).unwrap();
        assert_eq!(value, serde_json::json!({"type": "msg", "data": [1, 2]}));
    }

    #[test]
    fn lines_split_anywhere_and_drop_one_cr() {
        let stream = b"{\"type\":\"ping\"}\r\n\n{\"x\":1}\n";
        let mut decoder = Decoder::new(Framing::Lines);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &byte in stream {
            buf.put_u8(byte);
            while let Decoded::Payload(p) = decoder.next(&mut buf, 100).unwrap() {
                out.push(String::from_utf8(p.to_vec()).unwrap());
            }
        }
        assert_eq!(out, [r#"{"type":"ping"}"#, "", r#"{"x":1}"#]);
        assert!(buf.is_empty());
        assert_eq!(
            decode_all(Framing::Lines, b"a\r\r\n", 100).unwrap(),
            ["a\r"]
        );
    }

    #[test]
    fn lines_at_the_limit_pass_and_longer_ones_close_with_1009() {
        let max = 10;
        let exact = format!("{}\r\n", "x".repeat(max));
        assert_eq!(
            decode_all(Framing::Lines, exact.as_bytes(), max)
                .unwrap()
                .len(),
            1
        );
        let over = format!("{}\n", "x".repeat(max + 1));
        assert_eq!(
            decode_all(Framing::Lines, over.as_bytes(), max)
                .unwrap_err()
                .code,
            1009
        );
        // Without a newline: waits while a legal line could still end, then refuses.
        let mut decoder = Decoder::new(Framing::Lines);
        let mut buf = BytesMut::from("x".repeat(max + 1).as_bytes());
        assert_eq!(
            decoder.next(&mut buf, max).unwrap(),
            Decoded::NeedMore(max + 2)
        );
        buf.put_u8(b'x');
        let error = decoder.next(&mut buf, max).unwrap_err();
        assert_eq!(error.code, 1009);
        assert!(error.reason.contains("limit is 10 bytes"), "{error}");
    }

    #[test]
    fn length_prefix_split_anywhere() {
        let mut stream = prefixed(b"hello");
        stream.extend(prefixed(b""));
        stream.extend(prefixed(b"world"));
        let mut decoder = Decoder::new(Framing::Length);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &byte in &stream {
            buf.put_u8(byte);
            while let Decoded::Payload(p) = decoder.next(&mut buf, 100).unwrap() {
                out.push(String::from_utf8(p.to_vec()).unwrap());
            }
        }
        assert_eq!(out, ["hello", "", "world"]);
        let mut decoder = Decoder::new(Framing::Length);
        let mut partial = BytesMut::from(&prefixed(b"hello")[..6]);
        assert_eq!(
            decoder.next(&mut partial, 100).unwrap(),
            Decoded::NeedMore(9)
        );
        let mut short = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(decoder.next(&mut short, 100).unwrap(), Decoded::NeedMore(4));
    }

    #[test]
    fn oversize_length_prefix_is_refused_from_the_prefix_alone() {
        let mut decoder = Decoder::new(Framing::Length);
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        let error = decoder.next(&mut buf, 65536).unwrap_err();
        assert_eq!(error.code, 1009);
        assert!(error.reason.contains("2147483647"), "{error}");
        assert!(
            buf.capacity() < 1024,
            "nothing was reserved for the payload"
        );
        let mut at_limit = BytesMut::from(&prefixed(&[b'x'; 100])[..]);
        assert!(matches!(
            decoder.next(&mut at_limit, 100),
            Ok(Decoded::Payload(_))
        ));
        let mut over = BytesMut::from(&prefixed(&[b'x'; 101])[..4]);
        assert_eq!(decoder.next(&mut over, 100).unwrap_err().code, 1009);
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn framing() -> impl Strategy<Value = Framing> {
        prop_oneof![Just(Framing::Lines), Just(Framing::Length)]
    }

    proptest! {
        /// Arbitrary bytes, fed in arbitrary pieces, never panic a decoder; every step takes
        /// a frame off the buffer, asks for more than it holds, or refuses with 1009; and
        /// no frame it returns is over the limit.
        #[test]
        fn arbitrary_client_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            pieces in proptest::collection::vec(1usize..64, 1..40),
            max in 0usize..300,
            framing in framing(),
        ) {
            let mut decoder = Decoder::new(framing);
            let mut buf = BytesMut::new();
            let mut rest = &bytes[..];
            let mut piece = pieces.iter().cycle();
            'feed: while !rest.is_empty() {
                let take = (*piece.next().unwrap_or(&1)).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                loop {
                    let before = buf.len();
                    match decoder.next(&mut buf, max) {
                        Ok(Decoded::Payload(p)) => {
                            prop_assert!(p.len() <= max);
                            prop_assert!(buf.len() < before);
                        }
                        Ok(Decoded::NeedMore(want)) => {
                            prop_assert!(want > buf.len());
                            break;
                        }
                        Err(reason) => {
                            prop_assert_eq!(reason.code, 1009);
                            break 'feed;
                        }
                    }
                }
            }
        }
    }
}
