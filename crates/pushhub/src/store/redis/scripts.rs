//! The Lua scripts behind every read-modify-write of the Redis store: each runs atomically
//! on the Redis server, so two nodes never both move one timer or one job.
//!
//! Every script gets the store's key base (`{prefix}:{sched}`, one hash tag, so a Redis
//! Cluster keeps them all in one slot) as `ARGV[1]` and builds its keys from it:
//! - `B:seq`, `B:jseq`: the last timer id and job id handed out;
//! - `B:t:<id>`: a timer, a hash (`id app spec idem state due attempts last finished
//!   owner lease`; `spec` and `last` are JSON the scripts never look into);
//! - `B:due` (pending timers by due time), `B:leases` (running timers by lease end),
//!   `B:done` (finished timers by finish time), `B:app:<app>` (an app's timers by id),
//!   `B:idem` (idempotency key → timer id);
//! - `B:jobs` (job key → the job as JSON), `B:jdue` (job key by next fire time),
//!   `B:japp:<app>` (an app's job names), `B:jruns` (runs in flight by lease end).

use crate::redis::Script;

/// Create a timer, or return the one holding the idempotency key.
/// ARGV: base, app, idem field ('' for none), spec, due. Returns `{created, record}`.
pub(super) static CREATE: Script = Script::fixed(
    r#"
local b = ARGV[1]
if ARGV[3] ~= '' then
  local existing = redis.call('HGET', b..':idem', ARGV[3])
  if existing then
    return {0, redis.call('HGETALL', b..':t:'..existing)}
  end
end
local id = redis.call('INCR', b..':seq')
local k = b..':t:'..id
redis.call('HSET', k, 'id', id, 'app', ARGV[2], 'spec', ARGV[4], 'state', 'pending',
  'due', ARGV[5], 'attempts', 0)
if ARGV[3] ~= '' then
  redis.call('HSET', b..':idem', ARGV[3], id)
  redis.call('HSET', k, 'idem', ARGV[3])
end
redis.call('ZADD', b..':due', ARGV[5], id)
redis.call('ZADD', b..':app:'..ARGV[2], id, id)
return {1, redis.call('HGETALL', k)}
"#,
);

/// Start an attempt of a pending timer, leased to this store.
/// ARGV: base, id, owner, lease end. Returns the record, or nil when not pending.
pub(super) static BEGIN: Script = Script::fixed(
    r#"
local b = ARGV[1]
local k = b..':t:'..ARGV[2]
if redis.call('HGET', k, 'state') ~= 'pending' then return false end
redis.call('HINCRBY', k, 'attempts', 1)
redis.call('HSET', k, 'state', 'running', 'owner', ARGV[3], 'lease', ARGV[4])
redis.call('ZREM', b..':due', ARGV[2])
redis.call('ZADD', b..':leases', ARGV[4], ARGV[2])
return redis.call('HGETALL', k)
"#,
);

/// Claim due timers: first running ones whose lease ran out (their node died), then
/// pending ones due by now, each one more attempt, running and leased to this store.
/// ARGV: base, owner, now, lease end, limit.
/// Returns `{records, earliest pending due time or false, pending count}`.
pub(super) static CLAIM: Script = Script::fixed(
    r#"
local b = ARGV[1]
local out = {}
local function take(id)
  local k = b..':t:'..id
  redis.call('HINCRBY', k, 'attempts', 1)
  redis.call('HSET', k, 'state', 'running', 'owner', ARGV[2], 'lease', ARGV[4])
  redis.call('ZADD', b..':leases', ARGV[4], id)
  out[#out + 1] = redis.call('HGETALL', k)
end
local limit = tonumber(ARGV[5])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', b..':leases', '-inf', ARGV[3], 'LIMIT', 0, limit)) do
  take(id)
end
if #out < limit then
  local due = redis.call('ZRANGEBYSCORE', b..':due', '-inf', ARGV[3], 'LIMIT', 0, limit - #out)
  for _, id in ipairs(due) do
    redis.call('ZREM', b..':due', id)
    take(id)
  end
end
local first = redis.call('ZRANGE', b..':due', 0, 0, 'WITHSCORES')
return {out, first[2] or false, redis.call('ZCARD', b..':due')}
"#,
);

/// Extend the leases this store still holds. ARGV: base, owner, lease end, ids...
/// Returns the ids whose lease is no longer this store's.
pub(super) static RENEW: Script = Script::fixed(
    r#"
local b = ARGV[1]
local lost = {}
for i = 4, #ARGV do
  local k = b..':t:'..ARGV[i]
  local s = redis.call('HMGET', k, 'state', 'owner')
  if s[1] == 'running' and s[2] == ARGV[2] then
    redis.call('HSET', k, 'lease', ARGV[3])
    redis.call('ZADD', b..':leases', ARGV[3], ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"#,
);

/// Let leases run out now (this store is closing): other nodes take the timers over at
/// once. ARGV: base, owner, ids...
pub(super) static RELEASE: Script = Script::fixed(
    r#"
local b = ARGV[1]
for i = 3, #ARGV do
  local k = b..':t:'..ARGV[i]
  local s = redis.call('HMGET', k, 'state', 'owner')
  if s[1] == 'running' and s[2] == ARGV[2] then
    redis.call('HSET', k, 'lease', 0)
    redis.call('ZADD', b..':leases', 0, ARGV[i])
  end
end
return 0
"#,
);

/// Record a finished attempt. ARGV: base, id, owner, last (JSON), next ('retry',
/// 'succeeded', 'failed'), retry due, now. Returns the state after, or nil when gone.
/// An attempt whose lease another node took over records nothing: that node's attempt
/// is the one that counts.
pub(super) static FINISH: Script = Script::fixed(
    r#"
local b = ARGV[1]
local k = b..':t:'..ARGV[2]
local s = redis.call('HMGET', k, 'state', 'owner')
if not s[1] then return false end
if s[1] == 'cancelled' then
  redis.call('HSET', k, 'last', ARGV[4])
  return 'cancelled'
end
if s[1] ~= 'running' or s[2] ~= ARGV[3] then return s[1] end
redis.call('HSET', k, 'last', ARGV[4])
redis.call('HDEL', k, 'owner', 'lease')
redis.call('ZREM', b..':leases', ARGV[2])
if ARGV[5] == 'retry' then
  redis.call('HSET', k, 'state', 'pending', 'due', ARGV[6])
  redis.call('ZADD', b..':due', ARGV[6], ARGV[2])
else
  redis.call('HSET', k, 'state', ARGV[5], 'finished', ARGV[7])
  redis.call('ZADD', b..':done', ARGV[7], ARGV[2])
end
return ARGV[5] == 'retry' and 'pending' or ARGV[5]
"#,
);

/// Cancel a pending or running timer. ARGV: base, id, now.
/// Returns `{'cancelled', was, record}`, `{'finished', state, record}` or nil.
pub(super) static CANCEL: Script = Script::fixed(
    r#"
local b = ARGV[1]
local k = b..':t:'..ARGV[2]
local state = redis.call('HGET', k, 'state')
if not state then return false end
if state ~= 'pending' and state ~= 'running' then
  return {'finished', state, redis.call('HGETALL', k)}
end
redis.call('ZREM', b..':due', ARGV[2])
redis.call('ZREM', b..':leases', ARGV[2])
redis.call('HDEL', k, 'owner', 'lease')
redis.call('HSET', k, 'state', 'cancelled', 'finished', ARGV[3])
redis.call('ZADD', b..':done', ARGV[3], ARGV[2])
return {'cancelled', state, redis.call('HGETALL', k)}
"#,
);

/// Remove timers finished before a time, with their index entries and idempotency
/// keys. ARGV: base, before, limit. Returns how many.
pub(super) static PURGE: Script = Script::fixed(
    r#"
local b = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', b..':done', '-inf', '('..ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local k = b..':t:'..id
  local s = redis.call('HMGET', k, 'app', 'idem')
  if s[1] then redis.call('ZREM', b..':app:'..s[1], id) end
  if s[2] and redis.call('HGET', b..':idem', s[2]) == id then
    redis.call('HDEL', b..':idem', s[2])
  end
  redis.call('DEL', k)
  redis.call('ZREM', b..':done', id)
end
return #ids
"#,
);

/// A page of an app's timers. ARGV: base, app, after, state ('' for any), limit, most
/// scanned. Returns `{records, next or false}`.
pub(super) static LIST: Script = Script::fixed(
    r#"
local b = ARGV[1]
local index = b..':app:'..ARGV[2]
local limit = tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYSCORE', index, '('..ARGV[3], '+inf', 'LIMIT', 0, tonumber(ARGV[6]))
local out = {}
local last = false
for _, id in ipairs(ids) do
  last = id
  local k = b..':t:'..id
  if ARGV[4] == '' or redis.call('HGET', k, 'state') == ARGV[4] then
    out[#out + 1] = redis.call('HGETALL', k)
    if #out == limit then break end
  end
end
if last and #redis.call('ZRANGEBYSCORE', index, '('..last, '+inf', 'LIMIT', 0, 1) == 0 then
  last = false
end
return {out, last}
"#,
);

/// At a store's start: its own running timers (cut off) are pending again.
/// ARGV: base, owner. Returns every pending timer as `{id, due, ...}`.
pub(super) static RECOVER: Script = Script::fixed(
    r#"
local b = ARGV[1]
for _, id in ipairs(redis.call('ZRANGE', b..':leases', 0, -1)) do
  local k = b..':t:'..id
  if redis.call('HGET', k, 'owner') == ARGV[2] then
    local due = redis.call('HGET', k, 'due')
    redis.call('HSET', k, 'state', 'pending')
    redis.call('HDEL', k, 'owner', 'lease')
    redis.call('ZREM', b..':leases', id)
    redis.call('ZADD', b..':due', due, id)
  end
end
return redis.call('ZRANGE', b..':due', 0, -1, 'WITHSCORES')
"#,
);

/// Replace a job if it is still as read (compare and set), keeping its indexes.
/// ARGV: base, job key, expected JSON ('' for none), new JSON, next fire time ('' for
/// none), app, name, run member to lease ('' for none), lease end.
/// Returns 1, or 0 when the job changed meanwhile.
pub(super) static JOB_CAS: Script = Script::fixed(
    r#"
local b = ARGV[1]
local current = redis.call('HGET', b..':jobs', ARGV[2]) or ''
if current ~= ARGV[3] then return 0 end
redis.call('HSET', b..':jobs', ARGV[2], ARGV[4])
if ARGV[5] == '' then
  redis.call('ZREM', b..':jdue', ARGV[2])
else
  redis.call('ZADD', b..':jdue', ARGV[5], ARGV[2])
end
redis.call('ZADD', b..':japp:'..ARGV[6], 0, ARGV[7])
if ARGV[8] ~= '' then redis.call('ZADD', b..':jruns', ARGV[9], ARGV[8]) end
return 1
"#,
);

/// Delete a job with its indexes. ARGV: base, job key, app, name. Returns the job's
/// JSON, or nil.
pub(super) static JOB_DELETE: Script = Script::fixed(
    r#"
local b = ARGV[1]
local current = redis.call('HGET', b..':jobs', ARGV[2])
if not current then return false end
redis.call('HDEL', b..':jobs', ARGV[2])
redis.call('ZREM', b..':jdue', ARGV[2])
redis.call('ZREM', b..':japp:'..ARGV[3], ARGV[4])
return current
"#,
);
