"""One call of the Python Pusher server SDK (PyPI `pusher`) against a pushhub, for
crates/pushhub/tests/it/pusher_python.rs.

Usage: pusher_sdk.py OP 'JSON ARGUMENT', with PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET,
PUSHER_HOST and PUSHER_PORT in the environment. Prints one line of JSON:
{"status": 200, "body": ...} for an answer, {"status": N, "error": "..."} for a refusal
the SDK raised (it raises on every non-2xx answer).
"""

import json
import os
import sys

import pusher
from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus, PusherForbidden


def client():
    return pusher.Pusher(
        app_id=os.environ["PUSHER_APP_ID"],
        key=os.environ["PUSHER_KEY"],
        secret=os.environ["PUSHER_SECRET"],
        host=os.environ["PUSHER_HOST"],
        port=int(os.environ["PUSHER_PORT"]),
        ssl=False,
    )


def call(sdk, op, arg):
    if op == "trigger":
        return sdk.trigger(arg["channels"], arg["event"], arg["data"], arg.get("socket_id"))
    if op == "batch":
        return sdk.trigger_batch(arg["batch"])
    if op == "channels":
        return sdk.channels_info(arg.get("prefix"), arg.get("attributes", []))
    if op == "channel":
        return sdk.channel_info(arg["channel"], arg.get("attributes", []))
    if op == "users":
        return sdk.users_info(arg["channel"])
    if op == "terminate":
        return sdk.terminate_user_connections(arg["user"])
    raise SystemExit(f"unknown op {op!r}")


def main():
    op, arg = sys.argv[1], json.loads(sys.argv[2])
    refusals = {PusherBadRequest: 400, PusherBadAuth: 401, PusherForbidden: 403}
    try:
        body = call(client(), op, arg)
        print(json.dumps({"status": 200, "body": body}))
    except (PusherBadRequest, PusherBadAuth, PusherForbidden, PusherBadStatus) as error:
        status = refusals.get(type(error), 0)
        print(json.dumps({"status": status, "error": str(error)}))


if __name__ == "__main__":
    main()
