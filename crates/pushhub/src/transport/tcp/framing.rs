//! Raw TCP framings: how one native JSON payload is delimited on a byte stream.
//!
//! - `lines`: the payload, then `\n`. Native frames are JSON, which escapes every newline
//!   inside a string; a raw newline can only be whitespace between tokens (pushed `data`
//!   keeps the backend's formatting), so the framer writes it as a space, which means the
//!   same. Reading, a `\r` before the `\n` is dropped (terminals and `nc -C` send `\r\n`).
//! - `eof`: the payload, then a configured delimiter (Swoole's `package_eof`, such as
//!   `\r\n`), both ways, exactly. The delimiter holds a control byte, which JSON can only
//!   carry as whitespace between tokens, so the framer writes those bytes as spaces and a
//!   frame never contains its delimiter.
//! - `length`: a header with a 2- or 4-byte length field, big- or little-endian, at a
//!   configured offset (Swoole's `package_length_type`, `package_length_offset`,
//!   `package_body_offset`). As in Swoole, the field counts the bytes from the body offset
//!   to the end of the packet: with a body offset of 0 it counts the header too. The
//!   payload starts after the header; header bytes other than the length are zero when
//!   the server writes them and ignored when it reads. The default `length` framing is a
//!   4-byte big-endian length before the payload (`N`, offsets 0 and 4).
//!
//! Reading refuses a frame larger than the limit as soon as that is known: from a length
//! field before a byte of its payload is buffered, and for a delimiter once more than the
//! limit has arrived without one. An empty frame (blank line, zero-length body) is legal
//! and carries nothing: clients may use it as a keepalive.

use bytes::{BufMut, Bytes, BytesMut};

use crate::disconnect::Disconnect;
use crate::transport::Framer;

/// How frames are delimited on a raw TCP listener; one per listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Framing {
    /// Newline-delimited JSON: easy to use from `nc`, shells and line-oriented code.
    #[default]
    Lines,
    /// A configured delimiter after each payload (Swoole's EOF protocol).
    Eof(Eof),
    /// A header carrying the length (Swoole's fixed header protocol).
    Length(LengthHeader),
}

/// Longest delimiter, as in Swoole (`package_eof` is at most 8 bytes).
pub const MAX_EOF_BYTES: usize = 8;

/// Longest header: room for a protocol's magic, version or type bytes before the body.
pub const MAX_HEADER_BYTES: usize = 1024;

/// A frame delimiter that a JSON payload can never contain (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eof {
    bytes: Vec<u8>,
    /// Most bytes of one packet, delimiter included (Swoole's `package_max_length`).
    max_packet: Option<usize>,
}

impl Eof {
    /// The delimiter `bytes`, if it is 1 to [`MAX_EOF_BYTES`] bytes and holds a control
    /// byte (below 0x20: `\r`, `\n`, `\0`...); otherwise why not.
    pub fn new(bytes: &[u8], max_packet: Option<usize>) -> Result<Self, String> {
        if bytes.is_empty() || bytes.len() > MAX_EOF_BYTES {
            return Err(format!(
                "must be 1 to {MAX_EOF_BYTES} bytes, not {}",
                bytes.len()
            ));
        }
        if !bytes.iter().any(|b| *b < 0x20) {
            return Err("must contain a control character such as \\r, \\n or \\0: frames are JSON, which may hold any printable text, so a printable delimiter could appear inside a message".into());
        }
        if let Some(max) = max_packet.filter(|max| *max <= bytes.len()) {
            return Err(format!(
                "package_max_length {max} leaves no room for a payload before the {}-byte delimiter",
                bytes.len()
            ));
        }
        Ok(Self {
            bytes: bytes.to_vec(),
            max_packet,
        })
    }

    /// The delimiter.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The largest payload both the connection's limit `max` and the packet limit allow.
    pub fn payload_limit(&self, max: usize) -> usize {
        self.max_packet
            .map_or(max, |packet| max.min(packet - self.bytes.len()))
    }
}

/// Bytes and byte order of a length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthField {
    /// 2 bytes, big-endian (PHP `pack('n')`).
    U16Be,
    /// 4 bytes, big-endian (PHP `pack('N')`).
    U32Be,
    /// 2 bytes, little-endian (PHP `pack('v')`).
    U16Le,
    /// 4 bytes, little-endian (PHP `pack('V')`).
    U32Le,
}

impl LengthField {
    /// Bytes the field takes.
    pub fn width(self) -> usize {
        match self {
            Self::U16Be | Self::U16Le => 2,
            Self::U32Be | Self::U32Le => 4,
        }
    }

    /// The largest value the field holds.
    pub fn max_value(self) -> usize {
        match self {
            Self::U16Be | Self::U16Le => usize::from(u16::MAX),
            Self::U32Be | Self::U32Le => u32::MAX as usize,
        }
    }

    /// The PHP `pack` letter, as Swoole's `package_length_type` names it.
    pub fn letter(self) -> char {
        match self {
            Self::U16Be => 'n',
            Self::U32Be => 'N',
            Self::U16Le => 'v',
            Self::U32Le => 'V',
        }
    }

    fn read(self, bytes: &[u8]) -> usize {
        match (self, bytes) {
            (Self::U16Be, [a, b, ..]) => usize::from(u16::from_be_bytes([*a, *b])),
            (Self::U16Le, [a, b, ..]) => usize::from(u16::from_le_bytes([*a, *b])),
            (Self::U32Be, [a, b, c, d, ..]) => u32::from_be_bytes([*a, *b, *c, *d]) as usize,
            (Self::U32Le, [a, b, c, d, ..]) => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
            _ => 0,
        }
    }

    /// Writes `value` (at most [`Self::max_value`]) into the field's bytes.
    fn write(self, value: usize, out: &mut [u8]) {
        match self {
            Self::U16Be => out.copy_from_slice(&(value as u16).to_be_bytes()),
            Self::U16Le => out.copy_from_slice(&(value as u16).to_le_bytes()),
            Self::U32Be => out.copy_from_slice(&(value as u32).to_be_bytes()),
            Self::U32Le => out.copy_from_slice(&(value as u32).to_le_bytes()),
        }
    }
}

/// A packet header that carries the length of what follows (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthHeader {
    field: LengthField,
    /// Where the length field starts (Swoole's `package_length_offset`).
    length_offset: usize,
    /// Where the length starts counting (Swoole's `package_body_offset`).
    body_offset: usize,
    /// Most bytes of one packet, header included (Swoole's `package_max_length`).
    max_packet: Option<usize>,
}

impl Default for LengthHeader {
    /// The `length` framing: a 4-byte big-endian length, then that many bytes.
    fn default() -> Self {
        Self {
            field: LengthField::U32Be,
            length_offset: 0,
            body_offset: 4,
            max_packet: None,
        }
    }
}

impl LengthHeader {
    /// A header with `field` at `length_offset`, counting from `body_offset`: either 0
    /// (the length counts the whole packet) or at or after the field's end, and within
    /// [`MAX_HEADER_BYTES`]; otherwise why not.
    pub fn new(
        field: LengthField,
        length_offset: usize,
        body_offset: usize,
        max_packet: Option<usize>,
    ) -> Result<Self, String> {
        let field_end = length_offset.saturating_add(field.width());
        if field_end.max(body_offset) > MAX_HEADER_BYTES {
            return Err(format!(
                "the header may be at most {MAX_HEADER_BYTES} bytes"
            ));
        }
        if body_offset != 0 && body_offset < field_end {
            return Err(format!(
                "package_body_offset must be 0 (the length counts the whole packet) or at least {field_end} (after the length field), not {body_offset}"
            ));
        }
        let header = Self {
            field,
            length_offset,
            body_offset,
            max_packet,
        };
        if let Some(max) = max_packet.filter(|max| *max <= header.header_len()) {
            return Err(format!(
                "package_max_length {max} leaves no room for a payload after the {}-byte header",
                header.header_len()
            ));
        }
        Ok(header)
    }

    /// The length field's type.
    pub fn field(&self) -> LengthField {
        self.field
    }

    /// Bytes before the payload.
    pub fn header_len(&self) -> usize {
        (self.length_offset + self.field.width()).max(self.body_offset)
    }

    /// The largest payload the connection's limit `max`, the packet limit and the length
    /// field allow.
    pub fn payload_limit(&self, max: usize) -> usize {
        let header = self.header_len();
        let by_packet = self.max_packet.map_or(usize::MAX, |packet| packet - header);
        let by_field = (self.field.max_value() + self.body_offset).saturating_sub(header);
        max.min(by_packet).min(by_field)
    }
}

impl std::fmt::Display for Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Framing::Lines => f.write_str("lines"),
            Framing::Length(header) if *header == LengthHeader::default() => f.write_str("length"),
            Framing::Eof(eof) => write!(f, "eof {:?}", String::from_utf8_lossy(&eof.bytes)),
            Framing::Length(h) => write!(
                f,
                "length {} at {}, body at {}",
                h.field.letter(),
                h.length_offset,
                h.body_offset
            ),
        }
    }
}

/// Writes payloads in one listener's framing. Made once per listener and shared: every
/// recipient gets the same bytes.
#[derive(Debug, Clone)]
pub struct TcpFramer {
    framing: Framing,
}

impl TcpFramer {
    /// The framer of `framing`.
    pub fn new(framing: Framing) -> Self {
        Self { framing }
    }
}

impl Framer for TcpFramer {
    fn frame_text(&self, payload: &[u8]) -> Bytes {
        match &self.framing {
            Framing::Lines => delimited(payload, b"\n"),
            Framing::Eof(eof) => delimited(payload, &eof.bytes),
            Framing::Length(header) => prefixed(header, payload),
        }
    }

    fn name(&self) -> &'static str {
        "tcp"
    }
}

/// `payload` then `eof`, with the control bytes of `eof` written as spaces in the payload
/// (whitespace in JSON, see the module docs).
fn delimited(payload: &[u8], eof: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + eof.len());
    out.put_slice(payload);
    for byte in out.iter_mut().filter(|b| **b < 0x20 && eof.contains(b)) {
        *byte = b' ';
    }
    out.put_slice(eof);
    out.freeze()
}

fn prefixed(header: &LengthHeader, payload: &[u8]) -> Bytes {
    let header_len = header.header_len();
    let value = header_len + payload.len() - header.body_offset;
    // Configuration keeps every server payload within the field (a 2-byte field needs a
    // small `limits.max_body_bytes`); should one still not fit, the client gets an empty
    // frame, a keepalive, rather than a length that would break every frame after it.
    let (value, payload) = if value <= header.field.max_value() {
        (value, payload)
    } else {
        tracing::warn!(
            bytes = payload.len(),
            "a message does not fit the raw TCP length field; sent an empty frame instead"
        );
        (header_len - header.body_offset, &[][..])
    };
    let mut out = BytesMut::zeroed(header_len);
    let field = header.length_offset..header.length_offset + header.field.width();
    header.field.write(value, &mut out[field]);
    out.put_slice(payload);
    out.freeze()
}

/// What [`Decoder::next`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// One frame's payload (without its delimiter or header), taken off the buffer.
    Payload(BytesMut),
    /// More bytes are needed: the buffer must hold at least this many to make progress.
    NeedMore(usize),
}

/// Splits a client's byte stream into frames.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    /// Delimiters: how much of the buffer is known to hold no delimiter start, so a frame
    /// that arrives in many small pieces is scanned once, not once per piece.
    scanned: usize,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            scanned: 0,
        }
    }

    /// Take the next frame off the front of `buf`; frames over `max` payload bytes (or
    /// over the framing's packet limit) are refused with [`Disconnect::TOO_BIG`], a length
    /// field shorter than its own header with [`Disconnect::PROTOCOL_ERROR`].
    pub fn next(&mut self, buf: &mut BytesMut, max: usize) -> Result<Decoded, Disconnect> {
        let too_long = |what: &str, limit: usize| {
            Disconnect::TOO_BIG.with_reason(format!("{what}: limit is {limit} bytes"))
        };
        match &self.framing {
            Framing::Lines => {
                // Room for the payload and a `\r`.
                let longest = max.saturating_add(1);
                let Some(mut line) = next_delimited(&mut self.scanned, buf, b"\n", longest)
                    .map_err(|()| too_long("line too long", max))?
                else {
                    return Ok(Decoded::NeedMore(buf.len() + 1));
                };
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                if line.len() > max {
                    return Err(too_long("line too long", max));
                }
                Ok(Decoded::Payload(line))
            }
            Framing::Eof(eof) => {
                let limit = eof.payload_limit(max);
                let what = "frame too big: no delimiter";
                match next_delimited(&mut self.scanned, buf, &eof.bytes, limit) {
                    Ok(Some(frame)) => Ok(Decoded::Payload(frame)),
                    Ok(None) => Ok(Decoded::NeedMore(buf.len() + 1)),
                    Err(()) => Err(too_long(what, limit)),
                }
            }
            Framing::Length(header) => next_prefixed(header, buf, max),
        }
    }
}

/// The bytes before the next `eof`, taken off `buf` with it; `None` when there is no
/// `eof` yet (and `scanned` says how much need not be searched again); an error when the
/// frame is already longer than `longest`.
fn next_delimited(
    scanned: &mut usize,
    buf: &mut BytesMut,
    eof: &[u8],
    longest: usize,
) -> Result<Option<BytesMut>, ()> {
    let from = (*scanned).min(buf.len());
    let Some(at) = buf[from..].windows(eof.len()).position(|w| w == eof) else {
        // A delimiter may have begun in the last bytes: they are searched again.
        *scanned = (buf.len() + 1).saturating_sub(eof.len());
        return if *scanned > longest {
            Err(())
        } else {
            Ok(None)
        };
    };
    *scanned = 0;
    let mut frame = buf.split_to(from + at + eof.len());
    frame.truncate(frame.len() - eof.len());
    if frame.len() > longest {
        return Err(());
    }
    Ok(Some(frame))
}

fn next_prefixed(
    header: &LengthHeader,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Decoded, Disconnect> {
    let field_end = header.length_offset + header.field.width();
    let Some(field) = buf.get(header.length_offset..field_end) else {
        return Ok(Decoded::NeedMore(field_end));
    };
    let value = header.field.read(field);
    let header_len = header.header_len();
    let counted_header = header_len - header.body_offset;
    let Some(len) = value.checked_sub(counted_header) else {
        return Err(Disconnect::PROTOCOL_ERROR.with_reason(format!(
            "invalid length field: {value} is less than the {counted_header}-byte header it counts"
        )));
    };
    let limit = header.payload_limit(max);
    if len > limit {
        return Err(Disconnect::TOO_BIG.with_reason(format!(
            "frame too big: length prefix says {len} bytes, limit is {limit}"
        )));
    }
    let total = header_len + len;
    if buf.len() < total {
        return Ok(Decoded::NeedMore(total));
    }
    let mut frame = buf.split_to(total);
    let _ = frame.split_to(header_len);
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

    fn length() -> Framing {
        Framing::Length(LengthHeader::default())
    }

    fn prefixed(payload: &[u8]) -> Vec<u8> {
        TcpFramer::new(length()).frame_text(payload).to_vec()
    }

    #[test]
    fn framers_round_trip_through_decoders() {
        for framing in [Framing::Lines, length()] {
            let mut bytes = Vec::new();
            for payload in [r#"{"type":"ping"}"#, "", r#"{"a":"x\ny"}"#] {
                let payload = serde_json::to_string(payload).unwrap();
                bytes.extend_from_slice(
                    &TcpFramer::new(framing.clone()).frame_text(payload.as_bytes()),
                );
            }
            let frames = decode_all(framing.clone(), &bytes, 100).unwrap();
            assert_eq!(frames.len(), 3, "{framing}");
            assert_eq!(frames[2], r#""{\"a\":\"x\\ny\"}""#);
        }
    }

    #[test]
    fn newlines_between_json_tokens_stay_on_the_line() {
        let pretty = b"{\n  \"type\": \"msg\",\n  \"data\": [1,\r\n 2]\n}";
        let framed = TcpFramer::new(Framing::Lines).frame_text(pretty);
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
        let mut decoder = Decoder::new(length());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &byte in &stream {
            buf.put_u8(byte);
            while let Decoded::Payload(p) = decoder.next(&mut buf, 100).unwrap() {
                out.push(String::from_utf8(p.to_vec()).unwrap());
            }
        }
        assert_eq!(out, ["hello", "", "world"]);
        let mut decoder = Decoder::new(length());
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
        let mut decoder = Decoder::new(length());
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
    fn header(field: LengthField, at: usize, body: usize) -> Framing {
        Framing::Length(LengthHeader::new(field, at, body, None).unwrap())
    }

    #[test]
    fn the_seeds_eof_and_length_examples_decode() {
        // Seed 002: `$client->send("Just a test.\r\n")` three times, with
        // `'package_eof' => "\r\n"`.
        let eof = Framing::Eof(Eof::new(b"\r\n", None).unwrap());
        let stream = "Just a test.\r\n".repeat(3);
        assert_eq!(
            decode_all(eof.clone(), stream.as_bytes(), 100).unwrap(),
            ["Just a test."; 3]
        );
        // `pack('N', strlen($data)) . $data` with `'package_length_type' => 'N'`,
        // `'package_length_offset' => 0`, `'package_body_offset' => 4`.
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend(12u32.to_be_bytes());
            stream.extend(b"Just a test.");
        }
        let seed = header(LengthField::U32Be, 0, 4);
        assert_eq!(seed, length());
        assert_eq!(decode_all(seed, &stream, 100).unwrap(), ["Just a test."; 3]);
    }

    #[test]
    fn eof_output_never_contains_its_delimiter() {
        let eof = Framing::Eof(Eof::new(b"\r\n", None).unwrap());
        let framed = TcpFramer::new(eof.clone()).frame_text(b"{\"a\":\r\n 1,\n\"b\":\r2}");
        assert_eq!(&framed[..], b"{\"a\":   1, \"b\": 2}\r\n");
        let nul = Framing::Eof(Eof::new(b"\0", None).unwrap());
        assert_eq!(&TcpFramer::new(nul).frame_text(b"{\n}")[..], b"{\n}\0");
        assert!(Eof::new(b"#END#", None)
            .unwrap_err()
            .contains("control character"));
        assert!(Eof::new(b"", None).is_err());
        assert!(Eof::new(b"\r\n\r\n\r\n\r\n\r\n", None).is_err());
    }

    #[test]
    fn every_length_field_in_both_byte_orders_and_at_an_offset() {
        let cases: [(LengthField, Vec<u8>); 4] = [
            (LengthField::U16Be, vec![0, 5]),
            (LengthField::U32Be, vec![0, 0, 0, 5]),
            (LengthField::U16Le, vec![5, 0]),
            (LengthField::U32Le, vec![5, 0, 0, 0]),
        ];
        for (field, five) in cases {
            // The length right before the body.
            let framing = header(field, 0, field.width());
            let mut stream = five.clone();
            stream.extend(b"hello");
            assert_eq!(
                decode_all(framing.clone(), &stream, 100).unwrap(),
                ["hello"]
            );
            assert_eq!(
                TcpFramer::new(framing).frame_text(b"hello").to_vec(),
                stream
            );
            // Two bytes of something else first, the length, then two more bytes of
            // header before the body: the length counts the body only.
            let framing = header(field, 2, field.width() + 4);
            let mut stream = vec![0xAB, 0xCD];
            stream.extend(&five);
            stream.extend([0xEF, 0x01]);
            stream.extend(b"hello");
            assert_eq!(
                decode_all(framing.clone(), &stream, 100).unwrap(),
                ["hello"]
            );
            let mut written = vec![0, 0];
            written.extend(&five);
            written.extend([0, 0]);
            written.extend(b"hello");
            assert_eq!(
                TcpFramer::new(framing).frame_text(b"hello").to_vec(),
                written
            );
        }
        // A body offset of 0: the length counts the header too.
        let whole = header(LengthField::U32Be, 0, 0);
        let mut stream = 9u32.to_be_bytes().to_vec();
        stream.extend(b"hello");
        assert_eq!(decode_all(whole.clone(), &stream, 100).unwrap(), ["hello"]);
        assert_eq!(TcpFramer::new(whole).frame_text(b"hello").to_vec(), stream);
        assert!(LengthHeader::new(LengthField::U32Be, 2, 4, None).is_err());
        assert!(LengthHeader::new(LengthField::U32Be, 0, 4000, None).is_err());
        assert!(LengthHeader::new(LengthField::U32Be, 0, 4, Some(4)).is_err());
    }

    #[test]
    fn a_length_shorter_than_its_header_or_over_the_packet_limit_is_refused() {
        let whole = header(LengthField::U16Le, 0, 0);
        let error = decode_all(whole, &[1, 0, b'x'], 100).unwrap_err();
        assert_eq!(error.code, 1002);
        assert!(
            error.reason.contains("less than the 2-byte header"),
            "{error}"
        );
        let limited =
            Framing::Length(LengthHeader::new(LengthField::U32Be, 0, 4, Some(4 + 10)).unwrap());
        let error = decode_all(limited.clone(), &11u32.to_be_bytes(), 1000).unwrap_err();
        assert_eq!(error.code, 1009);
        assert!(error.reason.contains("limit is 10"), "{error}");
        let mut at_limit = 10u32.to_be_bytes().to_vec();
        at_limit.extend([b'x'; 10]);
        assert_eq!(decode_all(limited, &at_limit, 1000).unwrap().len(), 1);
        // The packet limit counts the delimiter too.
        let eof = Framing::Eof(Eof::new(b"\r\n", Some(12)).unwrap());
        assert_eq!(
            decode_all(eof.clone(), b"0123456789\r\n", 1000).unwrap(),
            ["0123456789"]
        );
        let error = decode_all(eof.clone(), b"0123456789A\r\n", 1000).unwrap_err();
        assert_eq!(error.code, 1009);
        // Without its delimiter: waits while a legal frame could still end, then refuses.
        let mut decoder = Decoder::new(eof);
        let mut buf = BytesMut::from(&b"0123456789\r"[..]);
        assert_eq!(decoder.next(&mut buf, 1000).unwrap(), Decoded::NeedMore(12));
        buf.put_u8(b'x');
        let error = decoder.next(&mut buf, 1000).unwrap_err();
        assert_eq!(error.code, 1009);
        assert!(
            error.reason.contains("no delimiter: limit is 10 bytes"),
            "{error}"
        );
    }

    #[test]
    fn a_delimiter_split_across_reads_is_found() {
        let eof = Framing::Eof(Eof::new(b"<\0>", None).unwrap());
        let mut decoder = Decoder::new(eof);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &byte in b"ab<\0>c<<\0>" {
            buf.put_u8(byte);
            while let Decoded::Payload(p) = decoder.next(&mut buf, 100).unwrap() {
                out.push(String::from_utf8(p.to_vec()).unwrap());
            }
        }
        assert_eq!(out, ["ab", "c<"]);
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = LengthField> {
        prop_oneof![
            Just(LengthField::U16Be),
            Just(LengthField::U32Be),
            Just(LengthField::U16Le),
            Just(LengthField::U32Le),
        ]
    }

    /// Every framing: lines, delimiters with a control byte, length headers with the
    /// field anywhere in the first bytes, counting the whole packet or from the body.
    fn framing() -> impl Strategy<Value = Framing> {
        let eof = (
            proptest::collection::vec(any::<u8>(), 0..7),
            0u8..0x20,
            proptest::option::of(0usize..400),
        )
            .prop_filter_map("a valid delimiter", |(mut bytes, control, max)| {
                bytes.push(control);
                Eof::new(&bytes, max).ok().map(Framing::Eof)
            });
        let length = (
            field(),
            0usize..6,
            0usize..12,
            proptest::option::of(0usize..400),
        )
            .prop_filter_map("a valid header", |(field, at, body, max)| {
                LengthHeader::new(field, at, body, max)
                    .ok()
                    .map(Framing::Length)
            });
        prop_oneof![Just(Framing::Lines), eof, length]
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
            let mut decoder = Decoder::new(framing.clone());
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
                            let prefixed = matches!(framing, Framing::Length(_));
                            prop_assert!(
                                reason.code == 1009 || (prefixed && reason.code == 1002),
                                "{}", reason
                            );
                            break 'feed;
                        }
                    }
                }
            }
        }

        /// What the server writes reads back as what it wrote, in every framing: JSON
        /// whitespace that would form a delimiter becomes spaces, nothing else changes.
        #[test]
        fn the_framer_round_trips(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            framing in framing(),
        ) {
            let framed = TcpFramer::new(framing.clone()).frame_text(&payload);
            let mut decoder = Decoder::new(framing.clone());
            let mut buf = BytesMut::from(&framed[..]);
            let mut expected = payload.clone();
            let limit = match &framing {
                Framing::Lines => usize::MAX,
                Framing::Eof(eof) => {
                    for byte in expected.iter_mut().filter(|b| **b < 0x20 && eof.bytes().contains(b)) {
                        *byte = b' ';
                    }
                    eof.payload_limit(usize::MAX)
                }
                Framing::Length(header) => header.payload_limit(usize::MAX),
            };
            if framing == Framing::Lines {
                for byte in expected.iter_mut().filter(|b| **b == b'\n') {
                    *byte = b' ';
                }
                if expected.last() == Some(&b'\r') {
                    expected.pop();
                }
            }
            let decoded = decoder.next(&mut buf, usize::MAX);
            if payload.len() <= limit {
                prop_assert_eq!(decoded, Ok(Decoded::Payload(BytesMut::from(&expected[..]))));
                prop_assert!(buf.is_empty());
            } else {
                prop_assert!(decoded.is_err());
            }
        }
    }
}
