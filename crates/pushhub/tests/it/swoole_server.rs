//! Swoole server habits (seed 002): raw TCP framed the way a Swoole server's `set([...])`
//! frames it (an EOF delimiter, a 2- or 4-byte length in either byte order at an offset),
//! connections closed on a frame the server cannot use, and a client message re-sent to
//! every member of a room (the seed's chat). The client side is written here from the
//! seed's PHP (`pack('N', strlen($data)) . $data`, `json_encode($data) . "\r\n"`), not
//! with the server's own framing code.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{Client, TestServer, WAIT};

/// How the test client frames, as a Swoole client's PHP would.
#[derive(Debug, Clone, Copy)]
enum Wire {
    /// The payload, then this delimiter.
    Eof(&'static [u8]),
    /// A header: a length field of `width` bytes (`big`-endian or not) at `at`, counting
    /// from `body`. Other header bytes are filler the server must ignore.
    Header {
        width: usize,
        big: bool,
        at: usize,
        body: usize,
    },
}

const FILLER: u8 = 0x5A;

impl Wire {
    fn header_len(width: usize, at: usize, body: usize) -> usize {
        (at + width).max(body)
    }

    /// `payload` framed, with `length` in place of the true length when given.
    fn pack_claiming(self, payload: &[u8], length: Option<usize>) -> Vec<u8> {
        match self {
            Wire::Eof(eof) => [payload, eof].concat(),
            Wire::Header {
                width,
                big,
                at,
                body,
            } => {
                let header = Self::header_len(width, at, body);
                let value = length.unwrap_or(header + payload.len() - body) as u32;
                let field = match (width, big) {
                    (2, true) => (value as u16).to_be_bytes().to_vec(),
                    (2, false) => (value as u16).to_le_bytes().to_vec(),
                    (_, true) => value.to_be_bytes().to_vec(),
                    (_, false) => value.to_le_bytes().to_vec(),
                };
                let mut out = vec![FILLER; header];
                out[at..at + width].copy_from_slice(&field);
                out.extend_from_slice(payload);
                out
            }
        }
    }

    fn pack(self, payload: &[u8]) -> Vec<u8> {
        self.pack_claiming(payload, None)
    }

    /// One frame off the front of `buf`, if it holds one; checks the header bytes the
    /// server writes besides the length are zero.
    fn unpack(self, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
        match self {
            Wire::Eof(eof) => {
                let at = buf.windows(eof.len()).position(|w| w == eof)?;
                let frame = buf[..at].to_vec();
                buf.drain(..at + eof.len());
                Some(frame)
            }
            Wire::Header {
                width,
                big,
                at,
                body,
            } => {
                let field = buf.get(at..at + width)?;
                let value = match (width, big) {
                    (2, true) => u16::from_be_bytes([field[0], field[1]]) as usize,
                    (2, false) => u16::from_le_bytes([field[0], field[1]]) as usize,
                    (_, true) => {
                        u32::from_be_bytes([field[0], field[1], field[2], field[3]]) as usize
                    }
                    (_, false) => {
                        u32::from_le_bytes([field[0], field[1], field[2], field[3]]) as usize
                    }
                };
                let header = Self::header_len(width, at, body);
                let total = body + value;
                if buf.len() < total {
                    return None;
                }
                for (i, byte) in buf[..header].iter().enumerate() {
                    if !(at..at + width).contains(&i) {
                        assert_eq!(*byte, 0, "header byte {i} of {:?}", &buf[..header]);
                    }
                }
                let frame = buf[header..total].to_vec();
                buf.drain(..total);
                Some(frame)
            }
        }
    }
}

/// A raw TCP client speaking `wire`.
struct Tcp {
    stream: TcpStream,
    wire: Wire,
    buf: Vec<u8>,
}

impl Tcp {
    async fn open(server: &TestServer, wire: Wire) -> Self {
        let addr = server.tcp.expect("tcp listener");
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Self {
            stream,
            wire,
            buf: Vec::new(),
        }
    }

    /// Connected to `app` as `user`, after the welcome.
    async fn hello(server: &TestServer, wire: Wire, app: &str, user: &str) -> Self {
        let mut tcp = Self::open(server, wire).await;
        tcp.send(&json!({"type": "connect", "app": app, "user": user}).to_string())
            .await;
        let welcome = tcp.json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        tcp
    }

    async fn send(&mut self, text: &str) {
        let bytes = self.wire.pack(text.as_bytes());
        self.raw(&bytes).await;
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next frame's bytes; `None` once the server closed the connection.
    async fn next_bytes(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(frame) = self.wire.unpack(&mut self.buf) {
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("nothing from the server within the wait");
            match read {
                Ok(0) | Err(_) => {
                    assert!(
                        self.buf.is_empty(),
                        "partial frame at close: {:?}",
                        self.buf
                    );
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame that is not a heartbeat, as JSON.
    async fn json(&mut self) -> Value {
        loop {
            let bytes = self.next_bytes().await.expect("connection closed");
            let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes))
            });
            if value["type"] != "ping" {
                return value;
            }
        }
    }

    /// The closing error frame's `code`, `close` and `message`, then the end of the stream.
    async fn closed(&mut self) -> (String, u64, String) {
        let last = self.json().await;
        assert_eq!(last["type"], "error", "{last}");
        let close = last["close"].as_u64().unwrap_or_else(|| panic!("{last}"));
        assert_eq!(
            self.next_bytes().await,
            None,
            "the connection must end after {last}"
        );
        (
            last["code"].as_str().unwrap_or_default().to_owned(),
            close,
            last["message"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

/// A server with raw TCP framed by the `[tcp_framing]` table `framing`, app `demo`, and
/// the extra tables `extra`.
fn framed_server(framing: &str, extra: &str) -> (TestServer, tempfile::TempDir) {
    let (server, dir) = TestServer::with_config(&format!(
        "tcp_listen = \"127.0.0.1:0\"\n[tcp_framing]\n{framing}\n{extra}\n[apps.demo]\nauth = \"none\"\n"
    ));
    assert!(
        server.tcp.is_some(),
        "no raw TCP listener:\n{}",
        server.log()
    );
    (server, dir)
}

/// Connect, ping, and a push that reaches the client, in `wire`.
async fn round_trip(server: &TestServer, wire: Wire) {
    let mut tcp = Tcp::hello(server, wire, "demo", "9501").await;
    tcp.send(r#"{"type":"ping","id":1}"#).await;
    assert_eq!(
        tcp.json().await,
        json!({"type": "pong", "id": 1}),
        "{wire:?}"
    );
    assert_eq!(server.push("9501", json!({"msg": "hello server"})).await, 1);
    let msg = tcp.json().await;
    assert_eq!(msg["data"], json!({"msg": "hello server"}), "{wire:?}");
}

#[tokio::test]
async fn the_seeds_eof_settings_frame_both_ways_with_crlf() {
    // TaskServer's settings, as the seed sets them.
    let (server, _dir) = framed_server(
        "open_eof_check = true\npackage_eof = \"\\r\\n\"\nopen_eof_split = true",
        "",
    );
    let wire = Wire::Eof(b"\r\n");
    round_trip(&server, wire).await;
    let mut tcp = Tcp::hello(&server, wire, "demo", "eof").await;
    // The seed's client: `$client->send("Just a test.\r\n")` three times, in one write.
    tcp.raw("Just a test.\r\n".repeat(3).as_bytes()).await;
    for _ in 0..3 {
        assert_eq!(tcp.json().await["code"], "bad_json");
    }
    // TaskClient's `json_encode($data) . "\r\n"`: JSON, but not a pushhub frame.
    let task = json!({"event": "send-mail", "to": "422744***@qq.com", "subject": "just a test"});
    tcp.raw(format!("{task}\r\n").as_bytes()).await;
    assert_eq!(tcp.json().await["code"], "bad_frame");
    // Data pushed with CRLF between its tokens arrives whole, on one frame.
    let (status, _) = server
        .post_raw(
            "/v1/push",
            "application/json",
            "{\"app\":\"demo\",\"to\":\"eof\",\"data\":{\r\n \"text\": \"a\\r\\nb\",\r\n \"n\": [1,\r\n 2]\r\n}}",
        )
        .await;
    assert_eq!(status, 200);
    let msg = tcp.json().await;
    assert_eq!(msg["data"], json!({"text": "a\r\nb", "n": [1, 2]}));
    assert!(tcp.buf.is_empty());
}

#[tokio::test]
async fn length_fields_of_two_and_four_bytes_in_both_orders_and_at_an_offset() {
    // (settings, how the client frames): the seed's own first.
    let two_byte_limits = "[limits]\nmax_body_bytes = 60000";
    let cases: [(&str, &str, Wire); 6] = [
        (
            "open_length_check = true\npackage_length_type = \"N\"\npackage_length_offset = 0\npackage_body_offset = 4\npackage_max_length = 81920",
            "",
            Wire::Header { width: 4, big: true, at: 0, body: 4 },
        ),
        (
            "open_length_check = true\npackage_length_type = \"n\"\npackage_body_offset = 2",
            two_byte_limits,
            Wire::Header { width: 2, big: true, at: 0, body: 2 },
        ),
        (
            "open_length_check = true\npackage_length_type = \"V\"\npackage_body_offset = 4",
            "",
            Wire::Header { width: 4, big: false, at: 0, body: 4 },
        ),
        // Two bytes of something else, the length, two more header bytes, the body.
        (
            "open_length_check = true\npackage_length_type = \"v\"\npackage_length_offset = 2\npackage_body_offset = 6",
            two_byte_limits,
            Wire::Header { width: 2, big: false, at: 2, body: 6 },
        ),
        // Swoole's defaults: `N` at 0, body offset 0: the length counts the header too.
        (
            "open_length_check = true",
            "",
            Wire::Header { width: 4, big: true, at: 0, body: 0 },
        ),
        (
            "open_length_check = true\npackage_length_type = \"V\"\npackage_length_offset = 4\npackage_body_offset = 0",
            "",
            Wire::Header { width: 4, big: false, at: 4, body: 0 },
        ),
    ];
    for (framing, extra, wire) in cases {
        let (server, _dir) = framed_server(framing, extra);
        round_trip(&server, wire).await;
        // Two frames and the start of a third in one write, the rest in another.
        let mut tcp = Tcp::hello(&server, wire, "demo", "split").await;
        let mut bytes = wire.pack(br#"{"type":"ping","id":"a"}"#);
        bytes.extend(wire.pack(br#"{"type":"ping","id":"b"}"#));
        let third = wire.pack(br#"{"type":"ping","id":"c"}"#);
        bytes.extend(&third[..3]);
        tcp.raw(&bytes).await;
        assert_eq!(tcp.json().await["id"], "a");
        assert_eq!(tcp.json().await["id"], "b");
        tcp.raw(&third[3..]).await;
        assert_eq!(tcp.json().await["id"], "c", "{wire:?}");
    }
}

#[tokio::test]
async fn bad_lengths_and_missing_delimiters_close_with_their_reason() {
    // A length shorter than the header it counts.
    let whole = Wire::Header {
        width: 4,
        big: true,
        at: 0,
        body: 0,
    };
    let (server, _dir) = framed_server("open_length_check = true", "");
    let mut tcp = Tcp::hello(&server, whole, "demo", "short").await;
    tcp.raw(&[0, 0, 0, 2, b'{', b'}']).await;
    let (code, close, message) = tcp.closed().await;
    assert_eq!(
        (code.as_str(), close),
        ("protocol_error", 1002),
        "{message}"
    );
    assert!(message.contains("less than the 4-byte header"), "{message}");
    assert!(!server.log().contains("panicked"));

    // Over package_max_length, told from the length alone; at it, fine.
    let seed = Wire::Header {
        width: 4,
        big: true,
        at: 0,
        body: 4,
    };
    let (server, _dir) = framed_server(
        "open_length_check = true\npackage_length_type = \"N\"\npackage_body_offset = 4\npackage_max_length = 1024",
        "",
    );
    let mut tcp = Tcp::hello(&server, seed, "demo", "max").await;
    let bare = r#"{"type":"ping","pad":""}"#.len();
    let padded = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(1020 - bare));
    assert_eq!(padded.len(), 1020);
    tcp.send(&padded).await;
    assert_eq!(tcp.json().await["type"], "pong");
    tcp.raw(&seed.pack_claiming(b"", Some(1021))).await;
    let (code, close, message) = tcp.closed().await;
    assert_eq!((code.as_str(), close), ("too_big", 1009), "{message}");
    assert!(
        message.contains("says 1021 bytes, limit is 1020"),
        "{message}"
    );

    // A 2-byte length claiming more than the payload the server takes.
    let (server, _dir) = framed_server(
        "open_length_check = true\npackage_length_type = \"v\"\npackage_body_offset = 2",
        "[limits]\nmax_body_bytes = 60000\nmax_frame_bytes = 1000",
    );
    let two = Wire::Header {
        width: 2,
        big: false,
        at: 0,
        body: 2,
    };
    let mut tcp = Tcp::open(&server, two).await;
    tcp.raw(&two.pack_claiming(b"", Some(60000))).await;
    let (code, close, message) = tcp.closed().await;
    assert_eq!((code.as_str(), close), ("too_big", 1009), "{message}");

    // No delimiter up to package_max_length: refused once a frame cannot end in time.
    let (server, _dir) = framed_server(
        "open_eof_check = true\npackage_eof = \"\\r\\n\"\npackage_max_length = 100",
        "",
    );
    let crlf = Wire::Eof(b"\r\n");
    let mut tcp = Tcp::hello(&server, crlf, "demo", "eof").await;
    tcp.raw(&[b'x'; 98]).await;
    tcp.raw(b"\r\n").await;
    assert_eq!(
        tcp.json().await["code"],
        "bad_json",
        "98 bytes and CRLF: 100 in all"
    );
    tcp.raw(&[b'x'; 120]).await;
    let (code, close, message) = tcp.closed().await;
    assert_eq!((code.as_str(), close), ("too_big", 1009), "{message}");
    assert!(
        message.contains("no delimiter: limit is 98 bytes"),
        "{message}"
    );
    assert!(!server.log().contains("panicked"));
}

#[tokio::test]
async fn invalid_frames_close_the_connection_when_the_app_says_so() {
    let (server, _dir) = framed_server(
        "open_eof_check = true\npackage_eof = \"\\r\\n\"",
        "[apps.strict]\nauth = \"none\"\ninvalid_frames = \"close\"",
    );
    // The seed's CommentServer frame: no `type`, so "data format invalidate.".
    let seed_frame = json!({"event": "alertTip", "toUid": 2}).to_string();
    let cases = [
        (seed_frame.as_str(), "string \"type\""),
        ("not json", "not valid JSON"),
        // "event is not exists.": a type the dialect does not know.
        (
            r#"{"type":"alertTip","toUid":2}"#,
            "unknown frame type \"alertTip\"",
        ),
        (
            r#"{"type":"send","data":1}"#,
            "either \"to\" (a user) or \"room\"",
        ),
    ];
    for (frame, why) in cases {
        let (mut ws, _) = server.native("strict", "1").await;
        ws.send(frame).await;
        let (code, reason) = ws.closed().await;
        assert_eq!(code, 4500, "{frame}: {reason}");
        assert!(reason.contains(why), "{frame}: {reason}");
    }
    let crlf = Wire::Eof(b"\r\n");
    let mut tcp = Tcp::hello(&server, crlf, "strict", "2").await;
    tcp.send(&seed_frame).await;
    let (code, close, message) = tcp.closed().await;
    assert_eq!((code.as_str(), close), ("bad_request", 4500), "{message}");

    // By default the same frames are answered and the connection stays.
    let (mut ws, _) = server.native("demo", "1").await;
    ws.send(&seed_frame).await;
    assert_eq!(ws.json().await["code"], "bad_frame");
    ws.send(r#"{"type":"alertTip"}"#).await;
    assert_eq!(ws.json().await["code"], "unknown_type");
    ws.send(r#"{"type":"ping"}"#).await;
    assert_eq!(ws.json().await["type"], "pong");
    // Frames the app refuses (not malformed ones) are answered even when strict.
    let (mut strict, _) = server.native("strict", "3").await;
    strict
        .send(r#"{"type":"send","id":1,"to":"1","data":"x"}"#)
        .await;
    assert_eq!(strict.json().await["code"], "send_not_allowed");
    strict.send(r#"{"type":"ping"}"#).await;
    assert_eq!(strict.json().await["type"], "pong");
}

async fn join(client: &mut Client, room: &str) {
    client
        .send(&json!({"type": "join", "id": "j", "room": room}).to_string())
        .await;
    let joined = client.json().await;
    assert_eq!(joined["type"], "joined", "{joined}");
}

fn room_send(room: &str, data: &str) -> String {
    json!({"type": "send", "id": 7, "room": room, "event": "chat", "data": data}).to_string()
}

#[tokio::test]
async fn a_room_message_reaches_every_member_when_the_app_allows_it() {
    let (server, _dir) = TestServer::with_config(
        "[apps.chat]\nauth = \"none\"\nroom_send = \"members\"\n[apps.quiet]\nauth = \"none\"\n",
    );
    let (mut alice, _) = server.native("chat", "alice").await;
    let (mut bob, _) = server.native("chat", "bob").await;
    let (mut carol, _) = server.native("chat", "carol").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;

    // The seed's chat page sends what was typed; every member gets it, the sender too.
    alice
        .send(&room_send("lobby", "This is websocket client."))
        .await;
    let mut frames = [alice.json().await, alice.json().await];
    frames.sort_by_key(|f| f["type"].as_str().map(str::to_owned));
    let [msg, sent] = frames;
    assert_eq!(
        (
            sent["type"].as_str(),
            sent["id"].as_u64(),
            sent["ch"].as_str()
        ),
        (Some("sent"), Some(7), Some("chat:room:lobby")),
        "{sent}"
    );
    let at_bob = bob.json().await;
    assert_eq!(at_bob, msg);
    assert_eq!(
        (
            msg["type"].as_str(),
            msg["ch"].as_str(),
            msg["from"].as_str(),
            msg["event"].as_str(),
            msg["data"].as_str(),
            msg["off"].as_u64()
        ),
        (
            Some("msg"),
            Some("chat:room:lobby"),
            Some("alice"),
            Some("chat"),
            Some("This is websocket client."),
            sent["off"].as_u64()
        )
    );

    // Not a member: refused, and the room's message never reached carol (her next frame
    // is the answer to her own send).
    carol.send(&room_send("lobby", "let me in")).await;
    let refused = carol.json().await;
    assert_eq!(
        (
            refused["type"].as_str(),
            refused["code"].as_str(),
            refused["id"].as_u64()
        ),
        (Some("error"), Some("not_in_room"), Some(7)),
        "{refused}"
    );
    carol.send(&room_send("a,b", "x")).await;
    assert_eq!(carol.json().await["code"], "invalid_room");

    // An app that does not allow it.
    let (mut quiet, _) = server.native("quiet", "dave").await;
    join(&mut quiet, "lobby").await;
    quiet.send(&room_send("lobby", "hello")).await;
    assert_eq!(quiet.json().await["code"], "send_not_allowed");
}

/// The seed's clients in PHP: its `for` loops and `pack('N', ...)` / `. "\r\n"` framing,
/// on a plain stream socket (`swoole_client` needs the Swoole extension; the bytes are
/// the same). Prints each frame the server answers, one per line.
const SEED_CLIENT_PHP: &str = r#"<?php
[, $port, $mode] = $argv;
$client = stream_socket_client("tcp://127.0.0.1:$port", $errno, $errstr, 5);
$client || exit("connect failed. Error: {$errno}\n");
stream_set_timeout($client, 10);
if ($mode === 'length') {
    $send = function ($data) use ($client) { fwrite($client, pack('N', strlen($data)) . $data); };
    $recv = function () use ($client) {
        $info = unpack('N', stream_get_contents($client, 4));
        return stream_get_contents($client, $info[1]);
    };
} else {
    $send = function ($data) use ($client) { fwrite($client, $data . "\r\n"); };
    $recv = function () use ($client) { return rtrim(fgets($client), "\r\n"); };
}
$send(json_encode(['type' => 'connect', 'app' => 'demo', 'user' => '9501']));
echo $recv() . PHP_EOL;
for ($i = 0; $i < 3; $i++) {
    $send("Just a test.");
}
for ($i = 0; $i < 3; $i++) {
    echo $recv() . PHP_EOL;
}
$send(json_encode(['type' => 'ping', 'id' => 1]));
echo $recv() . PHP_EOL;
"#;

#[tokio::test]
async fn the_seeds_php_clients_work_unchanged() {
    if std::process::Command::new("php")
        .arg("-v")
        .output()
        .is_err()
    {
        pushhub_testkit::missing("php (apt-get install php-cli)");
        return;
    }
    let script = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(script.path(), SEED_CLIENT_PHP).expect("write script");
    let settings = [
        (
            "length",
            "open_length_check = true\npackage_length_type = \"N\"\npackage_length_offset = 0\npackage_body_offset = 4\npackage_max_length = 81920",
        ),
        (
            "eof",
            "open_eof_check = true\npackage_eof = \"\\r\\n\"\nopen_eof_split = true",
        ),
    ];
    for (mode, framing) in settings {
        let (server, _dir) = framed_server(framing, "");
        let port = server.tcp.expect("tcp").port().to_string();
        let path = script.path().to_owned();
        let mode_arg = mode.to_owned();
        let output = tokio::time::timeout(
            WAIT * 2,
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("php")
                    .arg(&path)
                    .args([port, mode_arg])
                    .output()
                    .expect("run php")
            }),
        )
        .await
        .expect("php did not finish in time")
        .expect("php task");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{mode}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let frames: Vec<Value> = stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{mode}: {e}: {line}"))
            })
            .collect();
        let kinds: Vec<&str> = frames
            .iter()
            .map(|f| {
                f["code"]
                    .as_str()
                    .or(f["type"].as_str())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            kinds,
            ["welcome", "bad_json", "bad_json", "bad_json", "pong"],
            "{mode}: {stdout}"
        );
        assert_eq!(frames[0]["user"], "9501");
    }
}
