#!/usr/bin/env bash
# jdserver's test.sh for pushhub: every jdserver HTTP call with curl, against a running
# server (docs/migrating.md, "jdserver"). Each call is printed before its answer; the
# script stops with exit status 1 at the first answer that is not what jdserver's users
# expect.
#
# Usage: scripts/jdserver-test.sh
#
# Settings (environment):
#   PUSHHUB_API     the API listener, host:port          (default 127.0.0.1:8082)
#   PUSHHUB_CLIENT  the client listener, host:port       (default 127.0.0.1:8081)
#   APP             the app                              (default wms)
#   ECHO_URL        what /setTimeout calls back          (default http://127.0.0.1:9/echo.php)
#   PUSHHUB_API_KEY the app's API key, when it has keys  (default: none)
#
# The app must let getMsg name its user (`auth = "none"`, as jdserver had no auth; the
# embedded default does for any app). /setTimeout only schedules the calls: whether
# ECHO_URL answered is in timers.log in the data directory (jdserver's trace.log), and
# in `GET /v1/timers/ID`.
set -euo pipefail

api=${PUSHHUB_API:-127.0.0.1:8082}
client=${PUSHHUB_CLIENT:-127.0.0.1:8081}
app=${APP:-wms}
echo_url=${ECHO_URL:-http://127.0.0.1:9/echo.php}
auth=()
if [[ -n ${PUSHHUB_API_KEY:-} ]]; then
    auth=(-H "Authorization: Bearer $PUSHHUB_API_KEY")
fi
headers=$(mktemp)
trap 'rm -f "$headers"' EXIT

# An argument as a shell would need it: single-quoted unless it is plain.
quoted() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# call DESCRIPTION CURL-ARGS...: print the call, run it, leave the body in $body and the
# status in $status.
call() {
    local what=$1 arg
    shift
    printf '\n== %s\n$ curl -g' "$what"
    for arg in "$@"; do
        printf ' %s' "$(quoted "$arg")"
    done
    printf '\n'
    body=$(curl -sS -g -D "$headers" -w '\n%{http_code}' "$@")
    status=${body##*$'\n'}
    body=${body%$'\n'*}
    printf '%s %s\n' "$status" "$body"
}

fail() {
    printf 'FAILED: %s\n' "$1" >&2
    exit 1
}

expect_status() {
    [[ $status == "$1" ]] || fail "expected HTTP $1, got $status: $body"
}

# The value of response header $1 of the last call.
header() {
    grep -i "^$1:" "$headers" | head -n1 | cut -d' ' -f2- | tr -d '\r'
}

call "getUsers: who is online" "${auth[@]}" "http://$api/getUsers?app=$app"
expect_status 200
[[ $body == \[*\] ]] || fail "getUsers answers a JSON array"

call "getMsg: where user 100 stands now (no wait)" \
    "http://$client/getMsg?app=$app&user=100&timeout=0"
expect_status 200
cursor=$(header x-pushhub-cursor)
[[ -n $cursor ]] || fail "getMsg answers an X-Pushhub-Cursor header"

call "push: to user 100, msg as a PHP array (http_build_query)" "${auth[@]}" \
    "http://$api/push" --data-urlencode "app=$app" --data-urlencode "user=100" \
    --data-urlencode "msg[id]=1" --data-urlencode "msg[text]=订单10待审批"
expect_status 200

call "getMsg: what user 100 got since (long-poll, 5 s at most)" \
    "http://$client/getMsg?app=$app&user=100&timeout=5&cursor=$cursor"
expect_status 200
[[ $body == '{"id":"1","text":"订单10待审批"}' ]] || fail "getMsg answers the push as sent"

call "push: to everyone, a scalar msg" "${auth[@]}" \
    "http://$api/push?app=$app&user=*&msg=hello"
expect_status 200

call "push: to group group1/*" "${auth[@]}" \
    "http://$api/push?app=$app&user=group1/*&msg=hello+group1"
expect_status 200

call "setTimeout: GET $echo_url?a=1&b=2 at once" "${auth[@]}" \
    "http://$api/setTimeout" --data-urlencode "app=$app" --data-urlencode "url=$echo_url?a=1&b=2"
expect_status 200
[[ $body =~ ^[0-9]+$ ]] || fail "setTimeout answers the timer id"

call "setTimeout: POST c=3&d=4 (form) in 1 s" "${auth[@]}" \
    "http://$api/setTimeout" --data-urlencode "app=$app" --data-urlencode "url=$echo_url?a=1&b=2" \
    --data-urlencode "data[c]=3" --data-urlencode "data[d]=4" --data-urlencode "timeout=1000"
expect_status 200
[[ $body =~ ^[0-9]+$ ]] || fail "setTimeout answers the timer id"

call "setTimeout: POST {\"c\":\"3\",\"d\":\"4\"} (JSON: form values are text), with a Basic auth header" "${auth[@]}" \
    "http://$api/setTimeout" --data-urlencode "app=$app" --data-urlencode "url=$echo_url?a=1&b=2" \
    --data-urlencode "data[c]=3" --data-urlencode "data[d]=4" \
    --data-urlencode "headers[]=Content-Type: application/json" \
    --data-urlencode "headers[]=Authorization: Basic dGVzdDp0ZXN0MTIz"
expect_status 200
[[ $body =~ ^[0-9]+$ ]] || fail "setTimeout answers the timer id"

printf '\nAll jdserver calls answered as expected.\n'
