#!/usr/bin/env python3
"""Write the hand-made seed inputs of every fuzz target into fuzz/seeds/TARGET/.

The seeds are committed; this script is how they were made, so they can be made again
(or extended) in the same input formats the targets read (see each target's doc comment
in fuzz/fuzz_targets/). Frames and parameters are the examples of docs/protocol.md and
docs/api.md. Run: python3 fuzz/make_seeds.py
"""

import base64
import hashlib
import hmac
import json
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
SECRET = b"fuzz-secret-0123456789abcdef0123"  # fuzz/src/lib.rs SECRET
FAR_FUTURE = 4102444800  # 2100-01-01: seed tokens stay valid


def write(target, name, data):
    folder = os.path.join(HERE, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims, header=None):
    header = header or {"alg": "HS256", "typ": "JWT"}
    signed = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + b64(
        json.dumps(claims, separators=(",", ":")).encode()
    )
    signature = hmac.new(SECRET, signed.encode(), hashlib.sha256).digest()
    return signed + "." + b64(signature)


def client_frame(first, payload, mask=b"\x01\x02\x03\x04"):
    """A masked client frame, as a browser sends it."""
    n = len(payload)
    out = bytes([first])
    if n < 126:
        out += bytes([0x80 | n])
    elif n < 65536:
        out += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        out += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return out + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# ws_codec: [limit lo, limit hi, read size (top bit: built), stream or records]
def ws(limit, piece, stream):
    return struct.pack("<H", limit) + bytes([piece]) + stream


def record(flags, repeat, payload):
    """A built-mode record: a masked frame with these flags, sent repeat + 1 times."""
    return bytes([flags, repeat, len(payload)]) + payload


PING = b'{"type":"ping","id":1}'
write("ws_codec", "text", ws(65535, 7, client_frame(0x81, PING)))
write("ws_codec", "text_16bit_length", ws(65535, 13, client_frame(0x81, b'{"type":"ping","id":"' + b"x" * 200 + b'"}')))
write(
    "ws_codec",
    "control_frames",
    ws(1000, 3, client_frame(0x89, b"p") + client_frame(0x8A, b"") + client_frame(0x88, b"\x03\xe8bye")),
)
write(
    "ws_codec",
    "fragments_with_ping",
    ws(
        1000,
        5,
        client_frame(0x01, b"ab") + client_frame(0x89, b"") + client_frame(0x00, b"cd") + client_frame(0x80, b"ef"),
    ),
)
write(
    "ws_codec",
    "built_fragments",
    ws(65535, 0x85, record(0x01, 0, b"ab") + record(0x89, 0, b"") + record(0x00, 3, b"cd") + record(0x80, 0, b"ef")),
)
write("ws_codec", "built_pings", ws(1000, 0x83, record(0x89, 20, b"p") + record(0x81, 1, PING) + record(0x88, 0, b"\x03\xe8")))
write("ws_codec", "too_big", ws(10, 1, client_frame(0x81, b"x" * 11)))
write("ws_codec", "binary", ws(100, 2, client_frame(0x82, b"bin")))
write("ws_codec", "unmasked", ws(100, 2, b"\x81\x02hi"))

# tcp_framing: [framing (bits 0-1) and EOF length - 1 (bits 2-3), read size, limit lo, limit hi,
#   packet limit lo, packet limit hi, 4 framing parameters, stream]
CONNECT = b'{"type":"connect","app":"demo","user":"100"}'
NO_PARAMS = b"\0\0\0\0"


def framing(mode, piece, limit, packet=0, params=NO_PARAMS):
    return bytes([mode, piece]) + struct.pack("<HH", limit, packet) + params


write("tcp_framing", "lines", framing(0x00, 7, 65535) + CONNECT + b"\n" + PING + b"\r\n\n")
write("tcp_framing", "lines_too_long", framing(0x00, 1, 10) + b"x" * 12 + b"\n")
write(
    "tcp_framing",
    "length",
    framing(0x01, 7, 65535) + struct.pack(">I", len(CONNECT)) + CONNECT + struct.pack(">I", 0),
)
write("tcp_framing", "length_too_big", framing(0x01, 0, 100) + b"\x7f\xff\xff\xff")
# Seed 002: package_eof "\r\n", "Just a test.\r\n" three times.
write("tcp_framing", "eof_crlf", framing(0x06, 5, 65535, 0, b"\r\n\0\0") + b"Just a test.\r\n" * 3)
write("tcp_framing", "eof_over_packet", framing(0x06, 3, 65535, 10, b"\r\n\0\0") + b"x" * 12 + b"\r\n")
# Seed 002: 'N' at 0, body at 4, package_max_length 81920 (clipped to 65535 here).
write(
    "tcp_framing",
    "header_seed_n",
    framing(0x03, 9, 65535, 65535, bytes([1, 0, 1, 0])) + (struct.pack(">I", 12) + b"Just a test.") * 3,
)
# 'v' at 2, body at 6: two bytes before the length, two after.
write(
    "tcp_framing",
    "header_v_offset",
    framing(0x03, 2, 65535, 0, bytes([2, 2, 1, 2])) + b"AB" + struct.pack("<H", len(PING)) + b"CD" + PING,
)
# 'N' counting the whole packet, with a length shorter than its header.
write("tcp_framing", "header_whole_short", framing(0x03, 4, 65535, 0, bytes([1, 0, 0, 0])) + struct.pack(">I", 2) + b"{}")

# native_frames: [how the client came, then one text frame per line]
SINCE = "demo:user:100@k0xthqw9:41,demo:all@p0q1r2s3:7"
TOKEN = jwt({"sub": "100", "exp": FAR_FUTURE, "app": "secure", "groups": ["vip"]})
OTHER_USER = jwt({"sub": "200", "exp": FAR_FUTURE})
EXPIRED = jwt({"sub": "100", "exp": 1})
native_frames = [
    ("raw_tcp_connect", 0, [json.dumps({"type": "connect", "app": "demo", "user": "100", "since": SINCE}), '{"type":"ping","id":1}', '{"type":"pong"}']),
    ("raw_tcp_connect_token", 0, [json.dumps({"type": "connect", "app": "secure", "token": TOKEN}), '{"type":"refresh","id":2,"token":"%s"}' % TOKEN]),
    ("raw_tcp_not_connect", 0, ['{"type":"ping"}']),
    (
        "websocket_frames",
        1,
        [
            "100",
            '{"type":"ping","id":1}',
            '{"type":"pong"}',
            "{not json",
            "[1,2]",
            '{"type":5,"id":3}',
            '{"type":"teleport","id":"x"}',
            '{"type":"connect","app":"demo","user":"1"}',
            '{"type":"refresh","id":2,"token":"JWT"}',
            '{"type":"rpc","id":7,"method":"live.user.like","data":{"video":42}}',
            '{"type":"join","id":1,"room":"r1"}',
            '{"type":"leave","id":2,"room":"r1"}',
            '{"type":"join","room":"a,b"}',
        ],
    ),
    ("websocket_solo_user", 5, ["group1/7", '{"type":"ping"}']),
    ("auth_frame", 2, [json.dumps({"type": "auth", "token": TOKEN, "since": "secure:user:100@:0"}), '{"type":"refresh","id":2,"token":"%s"}' % OTHER_USER, '{"type":"refresh","id":3,"token":"%s"}' % EXPIRED]),
    ("auth_frame_bad", 2, ['{"type":"auth","token":"not.a.jwt"}']),
    ("token_in_url", 3, [TOKEN, '{"type":"refresh","id":2,"token":"%s"}' % TOKEN, '{"type":"join","id":1,"room":"r1"}']),
]
for name, mode, lines in native_frames:
    write("native_frames", name, bytes([mode]) + "\n".join(lines).encode())

# jdserver_frames: [even: WebSocket frames | odd: getMsg app, user, token, cursor]
jd = [
    ("init", 0, ['{"ac":"init","app":"wms","user":"100"}', '{"ac":"ping"}', '{"ac":"init","app":"wms","user":"100"}']),
    ("init_numeric_user", 0, ['{"ac":"init","app":"demo","user":100}', "hello"]),
    ("init_token", 0, [json.dumps({"ac": "init", "app": "secure", "token": TOKEN})]),
    ("init_bad", 0, ['{"ac":"init","app":"wms","user":[1]}']),
    ("not_init", 0, ['"订单10待审批"']),
    ("get_msg", 1, ["wms", "100", "", "wms:user:100@:0,wms:all@:0"]),
    ("get_msg_token", 1, ["secure", "100", TOKEN, ""]),
]
for name, mode, lines in jd:
    write("jdserver_frames", name, bytes([mode]) + "\n".join(lines).encode())

# token: [mode, then a token | claims | header line and claims | user id]
write("token", "hs256", b"\x00" + TOKEN.encode())
write("token", "expired", b"\x00" + EXPIRED.encode())
write("token", "rs256_header", b"\x00" + jwt({"sub": "1", "exp": FAR_FUTURE}, {"alg": "RS256"}).encode())
write("token", "es256_header", b"\x00" + jwt({"sub": "1", "exp": FAR_FUTURE}, {"alg": "ES256", "kid": "k"}).encode())
write("token", "claims", b"\x01" + json.dumps({"sub": "100", "exp": FAR_FUTURE, "app": "wms", "groups": ["vip"], "rooms": ["r1"]}).encode())
write("token", "claims_other_app", b"\x01" + json.dumps({"sub": "100", "exp": FAR_FUTURE, "app": "crm"}).encode())
write("token", "claims_aud_nbf", b"\x01" + json.dumps({"sub": "1", "exp": FAR_FUTURE, "nbf": FAR_FUTURE, "aud": "x"}).encode())
write("token", "header_and_claims", b"\x02" + b'{"alg":"HS256","typ":"JWT","crit":["b64"]}\n' + json.dumps({"sub": "1", "exp": FAR_FUTURE}).encode())
write("token", "mint", b"\x03" + "group1/张三".encode())

# target_expr, cursor: the text itself
for name, expr in [("user", "100"), ("list", "100, 101,100"), ("all", "*"), ("group", "group1/*"), ("deep_group", "a/b/*"), ("mix", "7,g/*,*"), ("bad", "a/*/b")]:
    write("target_expr", name, expr)
for name, cursor in [
    ("two_channels", SINCE),
    ("awkward_user", "demo:all@p0q1:7,demo:user:bob@x.com:8080@k3x9:42,demo:user:new@:0"),
    ("empty_position", "demo:all@:0"),
    ("bad", "nonsense"),
]:
    write("cursor", name, cursor)

# params: [content type (bit 7: no query), query line, body]
params = [
    ("php_brackets", 3, "app=wms&user=*", "msg%5Bid%5D=1&msg%5Btext%5D=%E8%AE%A2%E5%8D%9510"),
    ("lists", 0, "a[]=x&a[]=y&b[0]=x&b[1]=y&c[1]=x&c[0]=y", ""),
    ("nested", 4, "", "a[x][y][]=1&a[x][y][]=2&a[x][z]=3&a[5]=x&a[]=y"),
    ("overrides", 0, "a=1&a[b]=2&a[b=1&a+b=c+d&[x]=1&=2", "user=3"),
    ("json_body", 2, "app=a&user=1", '{"user":2,"msg":{"x":[1]}}'),
    ("json_in_form", 5, "app=wms", '{"app":"wms","user":"*","msg":"hi"}'),
    ("multipart", 6, "", "--x"),
]
for name, mode, query, body in params:
    write("params", name, bytes([mode]) + query.encode() + b"\n" + body.encode())

# handshake: [method, cookie name line, then "Name: value" header lines]
write(
    "handshake",
    "browser",
    b"\x00session\n"
    + b"Host: 127.0.0.1:8081\nUpgrade: websocket\nConnection: keep-alive, Upgrade\n"
    + b"Sec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
    + b"Origin: http://localhost:3000\nCookie: theme=dark; session=\"abc123\"; ukey=u-42",
)
write("handshake", "not_get", b"\x01ukey\nUpgrade: websocket\nConnection: upgrade\nSec-WebSocket-Version: 13")

# pushserve_access: [uid line, access key]
write("pushserve_access", "key", "42\n1764101234.3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
write("pushserve_access", "query", "uid=42&password=abc12345")

# login_frames: [credential name set (0: token; 1: ukey, token; 2: ukey), frame]
write("login_frames", "ukey", b"\x01" + b'{"type":"login","id":1,"ukey":"web-100"}')
write("login_frames", "token_since", b"\x00" + b'{"type":"login","token":"t","since":"demo:all@e:3,demo:user:100@e:1"}')
write("login_frames", "not_text", b"\x02" + b'{"type":"login","ukey":7}')
write("login_frames", "missing", b"\x01" + b'{"type":"login","user":"100"}')

# rpc_answer: [HTTP status, 2 bytes big-endian, then the backend's body]
answers = [
    ("reply", 200, '{"likes":3}'),
    ("mswoole", 200, '{"status":1,"info":"执行完成","param":null,"event":"index"}'),
    (
        "close_notes",
        200,
        '{"entered":true,"_pushhub":{"close_notes":{"add_controllers":["Live.User"],'
        '"add_close_keys":["room:42"],"remove_close_keys":["user:7"]}}}',
    ),
    ("not_an_object", 200, '"banned"'),
    ("error", 422, '{"error":"not enough coins"}'),
]
for name, status, body in answers:
    write("rpc_answer", name, struct.pack(">H", status) + body.encode())

# mswoole_des: [mode: 0 the auth text | 1 a plaintext sealed with the seed's key]
# The string docs/examples/mswoole_auth.php made (PHP, mcrypt) for the seed's fields.
write(
    "mswoole_des",
    "php_mcrypt",
    b"\x00uCLaksGSXcF5swx*tcxmbNjSfJDVZvjGa24cRI1majoBN8kCxh3LMWTLxUyReT78z0dVRbG:eOT:LD0ISS1PTnzCmsSTHK790LJXi5qMQe1Pc6lMevzoF62SdAlX0U7w",
)
write("mswoole_des", "not_base64", b"\x00not-des!")
write(
    "mswoole_des",
    "seed_fields",
    b"\x01" + json.dumps(
        {"id": 1001, "type": "wechatUser", "code": "room-7", "nickname": "Ann", "ctime": 1700000000}
    ).encode(),
)
write("mswoole_des", "string_ctime", b'\x01{"id":"wall-1","code":7,"ctime":"1700000000"}')

# push_body: [mode: even a POST /v1/push body | odd a POST /v1/batch body, at most
# mode / 2 % 8 entries] (docs/api.md's examples)
bodies = [
    ("push_user", 0, {"app": "demo", "to": "42", "event": "order", "data": {"id": 7}}),
    ("push_mix", 0, {"app": "demo", "to": "1,2,vip/*", "data": "hi", "idempotency_key": "k1"}),
    ("push_room", 0, {"app": "demo", "room": "lobby", "event": "e"}),
    ("push_conn", 0, {"app": "demo", "conn": "n1-c5", "data": [1, 2]}),
    ("push_two_kinds", 0, {"app": "demo", "to": "1", "room": "r"}),
    ("batch_pushes", 7, {"app": "demo", "pushes": [{"to": "1", "data": 1}, {"room": "r"}, {"to": ""}]}),
    ("batch_broadcast", 7, {"app": "demo", "broadcast": [{"to": "1,2"}, {"room": "r"}], "event": "e", "data": {"a": 1}}),
    ("batch_too_many", 2, {"app": "demo", "pushes": [{"to": "1"}, {"to": "2"}]}),
]
for name, mode, body in bodies:
    write("push_body", name, bytes([mode]) + json.dumps(body).encode())
