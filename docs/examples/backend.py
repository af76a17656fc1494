#!/usr/bin/env python3
"""A pushhub app backend in plain Python (standard library only, no framework).

It answers what pushhub sends an app's backend (docs/api.md, "RPC and room webhooks"):

  POST /auth     auth = "webhook": who does this credential belong to?
  POST /rpc      rpc frames:       {"method": "live.user.like", ...} -> an answer
  POST /rooms    join_rooms = "webhook": may this user join that room?
  POST /events   lifecycle events: connect, disconnect, join, leave (batched)

Every request but /auth carries X-Pushhub-Signature: t=UNIX,v1=HEX, the HMAC-SHA256 of
"t.body" with the app's backend_secret; requests whose signature does not check out, or is
older than five minutes, are refused with 401.

Run:   python3 docs/examples/backend.py --port 9000 --secret "$BACKEND_SECRET"
Then point an app at it (pushhub.toml):

  [apps.live]
  auth = "webhook"
  backend_secret = "...the same secret..."
  join_rooms = "webhook"
  [apps.live.auth_webhook]
  url = "http://127.0.0.1:9000/auth"
  [apps.live.rpc]
  url = "http://127.0.0.1:9000/rpc"
  [apps.live.room_webhook]
  url = "http://127.0.0.1:9000/rooms"
  [apps.live.events]
  url = "http://127.0.0.1:9000/events"
"""

import argparse
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_AGE = 300  # seconds a signature stays acceptable

# Stand-ins for the application's own data.
SESSIONS = {"session-ann": {"user": "100", "rooms": ["lobby"], "info": {"nickname": "Ann"}}}
LIKES = {}
ONLINE = {}


def verify(secret: bytes, header: str, body: bytes) -> bool:
    """True when `header` is pushhub's signature of `body` made in the last MAX_AGE s."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - timestamp) < MAX_AGE
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


def rpc(call: dict):
    """One RPC call: (status, answer). The caller is call["user"], vouched for by pushhub."""
    method, data = call["method"], call.get("data") or {}
    if method == "live.user.like":
        video = str(data.get("video", ""))
        LIKES[video] = LIKES.get(video, 0) + 1
        return 200, {"video": video, "likes": LIKES[video], "by": call["user"]}
    if method == "live.user.whoami":
        return 200, {"user": call["user"], "info": call.get("info")}
    return 404, {"error": f"no such method: {method}"}


class Backend(BaseHTTPRequestHandler):
    secret = b""

    def answer(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/auth":
            # The credential is the client's own secret; nothing to verify but itself.
            question = json.loads(body)
            session = SESSIONS.get(question["credential"])
            if session is None:
                return self.answer(403, {"error": "not logged in"})
            return self.answer(200, session)
        if not verify(self.secret, self.headers.get("x-pushhub-signature", ""), body):
            return self.answer(401, {"error": "bad signature"})
        request = json.loads(body)
        if self.path == "/rpc":
            return self.answer(*rpc(request))
        if self.path == "/rooms":
            allowed = request["room"] in ("lobby", "stage")
            return self.answer(200, {}) if allowed else self.answer(403, {"error": "members only"})
        if self.path == "/events":
            for event in request["events"]:
                key = (event["user"], event["conn"])
                if event["type"] == "connect":
                    ONLINE[key] = event["ts"]
                elif event["type"] == "disconnect":
                    ONLINE.pop(key, None)
                print(json.dumps(event), flush=True)
            return self.answer(204, {})
        return self.answer(404, {"error": "no such endpoint"})

    def do_GET(self) -> None:
        if self.path == "/online":
            return self.answer(200, sorted({user for user, _ in ONLINE}))
        return self.answer(404, {"error": "no such endpoint"})

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument("--secret", required=True, help="the app's backend_secret")
    args = parser.parse_args()
    Backend.secret = args.secret.encode()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Backend)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
