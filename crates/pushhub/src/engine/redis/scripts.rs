//! The broker's server-side scripts (publish, read, renew an epoch), run as
//! [`Script`]s (`EVALSHA`, falling back to `EVAL`).

use crate::redis::Script;

/// Drops a stream's entries older than `cutoff` (ms): they are a prefix, as entries are
/// appended in time order. Shared by both scripts.
const TRIM_EXPIRED: &str = r#"
local function trim_expired(stream, cutoff)
  while true do
    local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    if #head == 0 then return end
    for _, entry in ipairs(head) do
      if tonumber(entry[2][4]) > cutoff then
        redis.call('XTRIM', stream, 'MINID', entry[1])
        return
      end
    end
    local last = head[#head][1]
    local offset = tonumber(string.sub(last, 1, string.find(last, '-') - 1))
    redis.call('XTRIM', stream, 'MINID', string.format('%d-0', offset + 1))
  end
end
local function now_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
"#;

/// Publish to one channel, atomically: KEYS = meta, stream, pub/sub channel; ARGV =
/// publish command (`PUBLISH`/`SPUBLISH`, or `""` to leave the pub/sub publish to the
/// caller, who sends [`pubsub_payload`] once replicas hold the entry), channel name as JSON, message as JSON, an
/// epoch for a new stream, history size, history TTL (ms), idle expiry (ms). A stream
/// whose meta is gone, or whose kept history vanished, starts over in the new epoch.
/// Returns `{epoch, offset}`.
const PUBLISH_BODY: &str = r#"
local meta, stream, channel = KEYS[1], KEYS[2], KEYS[3]
local size, ttl, keep = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local state = redis.call('HMGET', meta, 'e', 'h')
local epoch = state[1]
if epoch and state[2] == '1' and redis.call('EXISTS', stream) == 0 then
  epoch = false
end
if not epoch then
  redis.call('DEL', meta, stream)
  epoch = ARGV[4]
  redis.call('HSET', meta, 'e', epoch)
end
local offset = redis.call('HINCRBY', meta, 'o', 1)
if size > 0 and ttl > 0 then
  local now = now_ms()
  redis.call('XADD', stream, 'MAXLEN', size, string.format('%d-0', offset), 'm', ARGV[3], 't', string.format('%d', now))
  trim_expired(stream, now - ttl)
  redis.call('HSET', meta, 'h', '1', 't', ttl)
  redis.call('PEXPIRE', stream, keep)
else
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'h', '0', 't', 0)
end
redis.call('PEXPIRE', meta, keep)
if ARGV[1] ~= '' then
  redis.call(ARGV[1], channel, '{"ch":' .. ARGV[2] .. ',"pos":{"epoch":"' .. epoch ..
    '","offset":' .. string.format('%d', offset) .. '},"msg":' .. ARGV[3] .. '}')
end
return {epoch, offset}
"#;

/// Read one channel: KEYS = meta, stream; ARGV = `1` to read entries (`0`: the top
/// only), the reader's epoch (`""` for the empty position), the offset it stands at, the
/// most entries to return (-1: all). Entries are read when the reader's epoch is the
/// stream's (or empty), or the one the stream was renewed from (see the renew script):
/// then from the reader's offset or the renewal's, whichever is lower, since entries up
/// to the renewal kept their offsets. Returns `{epoch, top, oldest kept offset or 0,
/// 1 if entries follow the reader's position (0: another epoch), id, msg, id, msg…}`,
/// `{"", 0, 0, 0}` for a stream that does not exist.
const READ_BODY: &str = r#"
local meta, stream = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'e', 'o', 't', 'p', 'r')
local epoch = state[1]
if not epoch then return {'', 0, 0, 0} end
local out = {epoch, tonumber(state[2] or '0'), 0, 0}
local after = tonumber(ARGV[3])
local follows = ARGV[2] == '' or ARGV[2] == epoch
if not follows and state[4] == ARGV[2] then
  follows = true
  after = math.min(after, tonumber(state[5] or '0'))
end
if follows then out[4] = 1 end
local ttl = tonumber(state[3] or '0')
if ttl > 0 then trim_expired(stream, now_ms() - ttl) end
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if #first == 0 then return out end
out[3] = tonumber(string.sub(first[1][1], 1, string.find(first[1][1], '-') - 1))
local limit = tonumber(ARGV[4])
if ARGV[1] ~= '1' or limit == 0 or not follows then return out end
local from = string.format('%d-0', after + 1)
local entries
if limit > 0 then
  entries = redis.call('XRANGE', stream, from, '+', 'COUNT', limit)
else
  entries = redis.call('XRANGE', stream, from, '+')
end
for _, entry in ipairs(entries) do
  table.insert(out, entry[1])
  table.insert(out, entry[2][2])
end
return out
"#;

/// Start a new epoch for a stream that went back: KEYS = meta, stream; ARGV = the epoch a
/// node handed over, the offset it reached there, a new epoch. When the stream is still in
/// that epoch but its top is below that offset (its latest publications were lost: a
/// failover to a replica that had not caught up), its offsets no longer mean what clients
/// were told, so it gets the new epoch (and loses any entry above its top, which only an
/// inconsistent copy could hold, so the next append fits). The epoch it had and the top
/// it was renewed at are kept (`p`, `r`): entries up to there are the ones nodes already
/// handed over, and a node still in the old epoch reads on from there instead of again
/// from the beginning. Returns `{epoch, top}` as they
/// are then (`{"", 0}` for a stream that does not exist).
const RENEW_BODY: &str = r#"
local state = redis.call('HMGET', KEYS[1], 'e', 'o')
if not state[1] then return {'', 0} end
local top = tonumber(state[2] or '0')
if state[1] == ARGV[1] and top < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'e', ARGV[3], 'p', ARGV[1], 'r', top)
  local above = redis.call('XRANGE', KEYS[2], string.format('%d-0', top + 1), '+')
  for _, entry in ipairs(above) do
    redis.call('XDEL', KEYS[2], entry[1])
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('XSETID', KEYS[2], string.format('%d-0', top))
  end
  return {ARGV[3], top}
end
return {state[1], top}
"#;

/// What the publish script sends on the pub/sub channel, for a caller that sends it
/// itself (after waiting for replicas); the dispatcher reads this shape.
pub fn pubsub_payload(channel_json: &str, epoch: &str, offset: u64, message_json: &str) -> String {
    format!(
        r#"{{"ch":{channel_json},"pos":{{"epoch":"{epoch}","offset":{offset}}},"msg":{message_json}}}"#
    )
}

/// The publish script.
pub fn publish() -> Script {
    Script::new(format!("{TRIM_EXPIRED}{PUBLISH_BODY}"))
}

/// The read script (history, gap fills).
pub fn read() -> Script {
    Script::new(format!("{TRIM_EXPIRED}{READ_BODY}"))
}

/// The script renewing the epoch of a stream that went back.
pub fn renew() -> Script {
    Script::new(RENEW_BODY.to_owned())
}
