"""Server-side Lua scripts: each runs atomically and touches the keys of one room (one slot).

Loaded once and called by SHA (redis-py ``Script`` reloads them after a Redis restart).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class FanOut(StrEnum):
    """How a script fans an event out (an ARGV flag; a string, as Redis passes it to Lua)."""

    PUBLISH = "0"  # PUBLISH: one Redis
    SPUBLISH = "1"  # SPUBLISH: sharded pub/sub on a Redis Cluster
    NONE = "2"  # store only: the caller publishes once a replica has the write


class PublishReply(IntEnum):
    """The first element of :data:`PUBLISH`'s reply."""

    NEW = 0  # {0, event}
    KNOWN_CID = 1  # {1, event}: a resend; the original event
    UNVERIFIED = 2  # {2}: the room's seq is missing or unverified since Redis started: VERIFY it


class ReserveReply(IntEnum):
    """The first element of :data:`RESERVE`'s reply."""

    RESERVED = 0  # {0, event}: the lease is ours, and the event (with its new seq) our intent
    KNOWN_CID = 1  # {1, event}
    UNVERIFIED = 2  # {2}: as PublishReply.UNVERIFIED
    LOCKED = 3  # {3}: another publisher holds the room's lease
    PENDING = 4  # {4, event}: the lease is ours, but an earlier intent is unsettled: settle it


class CommitMode(StrEnum):
    """What :data:`COMMIT` does with the room's intent (ARGV 8)."""

    PUBLISH = "publish"  # the row is stored: log, remember the cid, fan out; drop the lock
    ABORT = "abort"  # the insert surely failed (and the intent is still ours): give the seq back
    RELEASE = "release"  # the outcome is unknown: keep the intent, end our lease now
    BURN = "burn"  # the database holds another message under this seq: drop the intent


class CommitReply(IntEnum):
    """The first element of :data:`COMMIT`'s reply."""

    DONE = 0  # {0, event} published; {0} the abort, release or burn was applied
    SETTLED = 1  # {1, event} / {1}: the intent is gone: published by another publisher (the
    # event the log holds under its seq), or given back or burned
    TAKEN_OVER = 2  # {2}: abort refused: another publisher leased the intent and settles it


# The run id of the Redis process running the script: it changes with every restart (and on a
# promoted replica). A room's seq counts only when it was verified under the current run id
# (KEYS "verified"): a Redis restarted from an older snapshot or an old AOF tail, or empty, may
# hold a seq lower than seqs already delivered and stored, which would be issued again.
BOOT = "local boot = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')\n"

# A room's keys (seq, log, verified marker) expire after CHAT_ROOM_IDLE_TTL_S without a publish
# (or a join that verifies the room); its seq then comes back from the database through VERIFY
# (docs/architecture.md, "Per-room state"). Scripts take that ttl in ms as an optional last
# ARGV: "" or absent, nothing expires.
_TTL = """
local ttl = ARGV[TTL]
if ttl == '' then ttl = nil end
"""


def _ttl(ttl_arg: int) -> str:
    return _TTL.replace("TTL", str(ttl_arg))


def _expire(seq_key: int, log_key: int, verified_key: int) -> str:
    """A publish keeps the room alive: its seq, log and verified marker live ``ttl`` more."""
    return f"""if ttl then
  redis.call('PEXPIRE', KEYS[{seq_key}], ttl)
  redis.call('PEXPIRE', KEYS[{log_key}], ttl)
  redis.call('PEXPIRE', KEYS[{verified_key}], ttl)
end
"""


# Verify a room's seq under this Redis process: raise it to ARGV[1] (the highest seq the caller
# knows was stored or delivered) and mark it verified. KEYS: 1 seq, 2 verified.
# ARGV: 1 floor, 2 idle ttl ms (optional). Returns the seq.
VERIFY = (
    BOOT
    + _ttl(2)
    + """
local seq = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[1]))
if ttl then
  redis.call('SET', KEYS[1], seq, 'PX', ttl)
  redis.call('SET', KEYS[2], boot, 'PX', ttl)
else
  redis.call('SET', KEYS[1], seq)
  redis.call('SET', KEYS[2], boot)
end
return seq
"""
)

# After a reconnect: raise a room's seq to at least ARGV[1], the last seq this gateway delivered
# (so another gateway's verification cannot issue it again). KEYS: 1 seq.
# ARGV: 1 floor, 2 idle ttl ms (optional). Returns the seq.
RAISE = (
    _ttl(2)
    + """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > seq then
  if ttl then
    redis.call('SET', KEYS[1], floor, 'PX', ttl)
  else
    redis.call('SET', KEYS[1], floor)
  end
  return floor
end
return seq
"""
)

# Every room script that shows activity also records it in its shard's rooms index (a sorted set
# of room -> last activity ms, same slot as the room's keys), keeping the ROOMS_PER_SHARD most
# recently active rooms: /api/rooms reads that index, never the keyspace.
ROOMS_PER_SHARD = 1000
_INDEX = f"""
redis.call('ZADD', KEYS[INDEX], ms, ARGV[ROOM])
redis.call('ZREMRANGEBYRANK', KEYS[INDEX], 0, -{ROOMS_PER_SHARD + 1})
"""


# With an idle ttl (_ttl), rooms idle for longer leave the index too (their keys are gone), and
# the index itself expires when its whole shard is idle.
_INDEX_TTL = """
if ttl then
  redis.call('ZREMRANGEBYSCORE', KEYS[INDEX], '-inf',
    string.format('%d', tonumber(ms) - tonumber(ttl)))
  redis.call('PEXPIRE', KEYS[INDEX], ttl)
end
"""


def _index(index_key: int, room_arg: int, expires: bool = False) -> str:
    snippet = _INDEX + _INDEX_TTL if expires else _INDEX
    return snippet.replace("INDEX", str(index_key)).replace("ROOM", str(room_arg))


# KEYS: 1 seq, 2 log, 3 persist stream, 4 cid key, 5 verified, 6 rooms index
# ARGV: 1 event body without its closing brace (orjson-encoded by the gateway),
#       2 channel, 3 log size, 4 cid window (s) or "" when no cid,
#       5 FanOut: "0" PUBLISH, "1" SPUBLISH (Redis Cluster), "2" no fan-out (the caller
#       publishes once a replica has the write), 6 room name, 7 idle ttl ms (optional)
# Returns (PublishReply) {0, event} for a new message, {1, event} for a known cid, {2} when the
# room's seq is missing or unverified (the caller runs VERIFY, then calls again).
PUBLISH = (
    BOOT
    + _ttl(7)
    + """
if ARGV[4] ~= '' then
  local known = redis.call('GET', KEYS[4])
  if known then return {1, known} end
end
if redis.call('GET', KEYS[5]) ~= boot or redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
local seq = redis.call('INCR', KEYS[1])
local now = redis.call('TIME')
local ms = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
local event = ARGV[1] .. ',"seq":' .. seq .. ',"ts":' .. ms .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-1', 'e', event)
redis.call('XADD', KEYS[3], '*', 'e', event)
"""
    + _expire(1, 2, 5)
    + _index(6, 6, expires=True)
    + """if ARGV[4] ~= '' then redis.call('SET', KEYS[4], event, 'EX', ARGV[4]) end
if ARGV[5] == '1' then
  redis.call('SPUBLISH', ARGV[2], event)
elseif ARGV[5] == '0' then
  redis.call('PUBLISH', ARGV[2], event)
end
return {0, event}
"""
)

# Presence: KEYS 1 = room hash (user -> expiry ms), 2 = the user's gateways (zset, score expiry),
#           3 = persist stream, 4 = rooms index.
# ARGV: 1 user, 2 gateway id, 3 expiry ms, 4 channel, 5 "join"|"leave", 6 FanOut ("1"/"0"),
#       7 room name, 8 idle ttl ms (optional: for the rooms index)
# Publishes a presence event and queues a membership entry only when the user's presence in the
# room really changes (first gateway in, last gateway out). Returns 1 if it changed.
# The room hash expires with its latest entry (here and in KEEP): a hash whose gateways all
# crashed, in a room no gateway sweeps any more, does not stay behind.
PRESENCE = (
    _ttl(8)
    + """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms)
local before = redis.call('ZCARD', KEYS[2])
if ARGV[5] == 'join' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
  redis.call('PEXPIREAT', KEYS[2], ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[3]) then
    redis.call('PEXPIREAT', KEYS[1], ARGV[3])
  end
  if before > 0 then return 0 end
else
  redis.call('ZREM', KEYS[2], ARGV[2])
  if before == 0 or redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[1])
end
"""
    + _index(4, 7, expires=True)
    + """
local user = cjson.encode(ARGV[1])
local room = cjson.encode(ARGV[7])
local joined, left = '[]', '[]'
if ARGV[5] == 'join' then joined = '[' .. user .. ']' else left = '[' .. user .. ']' end
local event = '{"type":"presence","room":' .. room .. ',"joined":' .. joined ..
  ',"left":' .. left .. '}'
if ARGV[6] == '1' then
  redis.call('SPUBLISH', ARGV[4], event)
else
  redis.call('PUBLISH', ARGV[4], event)
end
redis.call('XADD', KEYS[3], '*', 'e',
  '{"type":"' .. ARGV[5] .. '","room":' .. room .. ',"user":' .. user .. ',"ts":' .. ms .. '}')
return 1
"""
)

# One room's presence round, run by each gateway (presence.py): keep this gateway's users of the
# room present, then expire the users whose gateways all stopped refreshing (a crashed gateway),
# and make the room hash live as long as its latest entry.
# A user is kept only while this gateway is still listed for her: a round built before her leave
# and run after it must not bring her back (a ghost).
# KEYS: 1 room hash, 2 persist stream, 3.. the zsets of the users ARGV 8.. (one each, in order)
# ARGV: 1 gateway id, 2 expiry ms, 3 channel, 4 FanOut ("1"/"0"), 5 room name,
#       6 zset key prefix (a user's zset key is prefix .. user), 7 "1": sweep too (a room's
#       users may come in several calls: only the last sweeps), 8.. our users
# Returns our users not kept: this gateway was no longer listed for them.
KEEP = """
local missing = {}
for i = 8, #ARGV do
  local zset = KEYS[i - 5]
  if redis.call('ZSCORE', zset, ARGV[1]) then
    redis.call('ZADD', zset, ARGV[2], ARGV[1])
    redis.call('PEXPIREAT', zset, ARGV[2])
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[2])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
if ARGV[7] ~= '1' then return missing end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local fields = redis.call('HGETALL', KEYS[1])
local gone = {}
local latest = 0
for i = 1, #fields, 2 do
  local expiry = tonumber(fields[i + 1])
  if expiry <= ms then
    local zset = ARGV[6] .. fields[i]
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', ms)
    local last = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
    if #last == 0 then
      redis.call('HDEL', KEYS[1], fields[i])
      table.insert(gone, fields[i])
      expiry = 0
    else
      expiry = tonumber(last[2])
    end
  end
  latest = math.max(latest, expiry)
end
if latest > 0 and redis.call('PEXPIRETIME', KEYS[1]) < latest then
  redis.call('PEXPIREAT', KEYS[1], string.format('%d', latest))
end
if #gone == 0 then return missing end
local room = cjson.encode(ARGV[5])
local names = {}
for i, user in ipairs(gone) do
  names[i] = cjson.encode(user)
  redis.call('XADD', KEYS[2], '*', 'e',
    '{"type":"leave","room":' .. room .. ',"user":' .. names[i] .. ',"ts":' .. ms .. '}')
end
local event = '{"type":"presence","room":' .. room .. ',"joined":[],"left":[' ..
  table.concat(names, ',') .. ']}'
if ARGV[4] == '1' then
  redis.call('SPUBLISH', ARGV[3], event)
else
  redis.call('PUBLISH', ARGV[3], event)
end
return missing
"""

# Synchronous persist mode. The room's lock is a hash: "token" and "until" (ms) are the lease of
# the publisher working on the room; "event" is the intent, the message whose seq was taken and
# whose row may be in the database. The intent outlives its lease: while one exists no new seq is
# taken, and whoever next leases the room settles it first (stores it again, idempotently, then
# publishes it), so a seq whose write has an unknown outcome is never given to another message.

# Step 1: lease the room and take the next seq.
# KEYS: 1 seq, 2 cid key, 3 room lock, 4 verified
# ARGV: 1 cid or "", 2 lease token, 3 lease ms, 4 event body without its closing brace
# Returns (ReserveReply) {1, event} for a known cid, {2} when the seq is missing or unverified,
# {3} while another publisher's lease runs, {4, event} (leased) when an earlier intent is unsettled,
# else {0, event}: the new message with its seq and ts, now the room's intent.
RESERVE = (
    BOOT
    + """
if ARGV[1] ~= '' then
  local known = redis.call('GET', KEYS[2])
  if known then return {1, known} end
end
if redis.call('GET', KEYS[4]) ~= boot or redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lock = redis.call('HMGET', KEYS[3], 'until', 'event')
if lock[1] and tonumber(lock[1]) > ms then return {3} end
redis.call('HSET', KEYS[3], 'token', ARGV[2], 'until', string.format('%d', ms + ARGV[3]))
if lock[2] then return {4, lock[2]} end
local seq = redis.call('INCR', KEYS[1])
local event = ARGV[4] .. ',"seq":' .. seq .. ',"ts":' .. string.format('%d', ms) .. '}'
redis.call('HSET', KEYS[3], 'event', event)
return {0, event}
"""
)

# Step 2, after the database insert: settle the intent (CommitMode).
# KEYS: 1 seq, 2 log, 3 cid key (of the intent's sender and cid), 4 room lock, 5 rooms index,
#       6 verified
# ARGV: 1 event (the intent), 2 its seq, 3 channel, 4 log size, 5 cid window or "", 6 token,
#       7 FanOut ("1"/"0"), 8 CommitMode, 9 room name, 10 idle ttl ms (optional)
# Returns (CommitReply) {0, event} published, {0} done, {1, logged event} or {1} when the intent
# is no longer the room's, {2} when an abort is refused (another publisher leased the intent).
# Publishing needs no lease: the row is stored and the intent is still the room's, so no later
# seq can have been taken.
COMMIT = (
    _ttl(10)
    + """
local intent = redis.call('HMGET', KEYS[4], 'event', 'token')
if intent[1] ~= ARGV[1] then
  local logged = redis.call('XRANGE', KEYS[2], ARGV[2] .. '-1', ARGV[2] .. '-1')
  if #logged > 0 then return {1, logged[1][2][2]} end
  return {1}
end
if ARGV[8] == 'release' then
  if intent[2] == ARGV[6] then redis.call('HSET', KEYS[4], 'until', 0) end
  return {0}
end
if ARGV[8] == 'abort' then
  if intent[2] ~= ARGV[6] then return {2} end
  if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DECR', KEYS[1]) end
  redis.call('DEL', KEYS[4])
  return {0}
end
if ARGV[8] == 'burn' then
  redis.call('DEL', KEYS[4])
  return {0}
end
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')  -- the seq key was lost meanwhile
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], ARGV[2] .. '-1', 'e', ARGV[1])
"""
    + _expire(1, 2, 6)
    + """local ms = redis.call('TIME')[1] .. '000'
"""
    + _index(5, 9, expires=True)
    + """if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[5]) end
if ARGV[7] == '1' then
  redis.call('SPUBLISH', ARGV[3], ARGV[1])
else
  redis.call('PUBLISH', ARGV[3], ARGV[1])
end
redis.call('DEL', KEYS[4])
return {0, ARGV[1]}
"""
)
