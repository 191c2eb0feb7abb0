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

    RESERVED = 0  # {0, seq, ts}: the lock is ours
    KNOWN_CID = 1  # {1, event}
    UNVERIFIED = 2  # {2}: as PublishReply.UNVERIFIED
    LOCKED = 3  # {3}: another publisher holds the room's lock


# The run id of the Redis process running the script: it changes with every restart (and on a
# promoted replica). A room's seq counts only when it was verified under the current run id
# (KEYS "verified"): a Redis restarted from an older snapshot or an old AOF tail, or empty, may
# hold a seq lower than seqs already delivered and stored, which would be issued again.
BOOT = "local boot = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')\n"

# Verify a room's seq under this Redis process: raise it to ARGV[1] (the highest seq the caller
# knows was stored or delivered) and mark it verified. KEYS: 1 seq, 2 verified. Returns the seq.
VERIFY = (
    BOOT
    + """
local seq = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[1]))
redis.call('SET', KEYS[1], seq)
redis.call('SET', KEYS[2], boot)
return seq
"""
)

# After a reconnect: raise a room's seq to at least ARGV[1], the last seq this gateway delivered
# (so another gateway's verification cannot issue it again). KEYS: 1 seq. Returns the seq.
RAISE = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > seq then
  redis.call('SET', KEYS[1], floor)
  return floor
end
return seq
"""

# Every room script that shows activity also records it in its shard's rooms index (a sorted set
# of room -> last activity ms, same slot as the room's keys), keeping the ROOMS_PER_SHARD most
# recently active rooms: /api/rooms reads that index, never the keyspace.
ROOMS_PER_SHARD = 1000
_INDEX = f"""
redis.call('ZADD', KEYS[INDEX], ms, ARGV[ROOM])
redis.call('ZREMRANGEBYRANK', KEYS[INDEX], 0, -{ROOMS_PER_SHARD + 1})
"""


def _index(index_key: int, room_arg: int) -> str:
    return _INDEX.replace("INDEX", str(index_key)).replace("ROOM", str(room_arg))


# KEYS: 1 seq, 2 log, 3 persist stream, 4 cid key, 5 verified, 6 rooms index
# ARGV: 1 event body without its closing brace (orjson-encoded by the gateway),
#       2 channel, 3 log size, 4 cid window (s) or "" when no cid,
#       5 FanOut: "0" PUBLISH, "1" SPUBLISH (Redis Cluster), "2" no fan-out (the caller
#       publishes once a replica has the write), 6 room name
# Returns (PublishReply) {0, event} for a new message, {1, event} for a known cid, {2} when the
# room's seq is missing or unverified (the caller runs VERIFY, then calls again).
PUBLISH = (
    BOOT
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
    + _index(6, 6)
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
#       7 room name
# Publishes a presence event and queues a membership entry only when the user's presence in the
# room really changes (first gateway in, last gateway out). Returns 1 if it changed.
PRESENCE = (
    """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms)
local before = redis.call('ZCARD', KEYS[2])
if ARGV[5] == 'join' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
  redis.call('PEXPIREAT', KEYS[2], ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  if before > 0 then return 0 end
else
  redis.call('ZREM', KEYS[2], ARGV[2])
  if before == 0 or redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[1])
end
"""
    + _index(4, 7)
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

# Keep a user's presence on this gateway alive, but only while the gateway is still listed for
# her: a refresh built before her leave and run after it must not bring her back (a ghost).
# KEYS: 1 room hash, 2 the user's gateways (zset); ARGV: 1 user, 2 gateway id, 3 expiry ms.
# Returns 1 if refreshed, 0 if this gateway is no longer listed for her.
REFRESH = """
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# Expire the presence of users whose gateways all stopped refreshing (a crashed gateway).
# KEYS: 1 room hash, 2 persist stream; ARGV: 1 channel, 2 FanOut ("1"/"0"), 3 room name,
#       4 zset key prefix (the user's zset key is prefix .. user)
# Returns the number of users expired.
SWEEP = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local fields = redis.call('HGETALL', KEYS[1])
local gone = {}
for i = 1, #fields, 2 do
  if tonumber(fields[i + 1]) <= ms then
    local zset = ARGV[4] .. fields[i]
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', ms)
    if redis.call('ZCARD', zset) == 0 then
      redis.call('HDEL', KEYS[1], fields[i])
      table.insert(gone, fields[i])
    end
  end
end
if #gone == 0 then return 0 end
local room = cjson.encode(ARGV[3])
local names = {}
for i, user in ipairs(gone) do
  names[i] = cjson.encode(user)
  redis.call('XADD', KEYS[2], '*', 'e',
    '{"type":"leave","room":' .. room .. ',"user":' .. names[i] .. ',"ts":' .. ms .. '}')
end
local event = '{"type":"presence","room":' .. room .. ',"joined":[],"left":[' ..
  table.concat(names, ',') .. ']}'
if ARGV[2] == '1' then
  redis.call('SPUBLISH', ARGV[1], event)
else
  redis.call('PUBLISH', ARGV[1], event)
end
return #gone
"""

# Synchronous persist mode, step 1: take the room's lock and the next seq.
# KEYS: 1 seq, 2 cid key, 3 room lock, 4 verified; ARGV: 1 cid or "", 2 lock token, 3 lock ttl ms
# Returns (ReserveReply) {1, event} for a known cid, {2} when the seq is missing or unverified,
# {3} when the room is locked by another publisher, else {0, seq, ts}.
RESERVE = (
    BOOT
    + """
if ARGV[1] ~= '' then
  local known = redis.call('GET', KEYS[2])
  if known then return {1, known} end
end
if redis.call('GET', KEYS[4]) ~= boot or redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return {3} end
local now = redis.call('TIME')
local ms = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
return {0, redis.call('INCR', KEYS[1]), ms}
"""
)

# Step 2 (after the database insert): publish, or give the seq back when the insert failed.
# KEYS: 1 seq, 2 log, 3 cid key, 4 room lock, 5 rooms index
# ARGV: 1 event, 2 seq, 3 channel, 4 log size, 5 cid window or "", 6 token, 7 FanOut ("1"/"0"),
#       8 "publish" | "abort", 9 room name
# Returns 1, or 0 when the lock was lost (it expired: the insert took longer than its ttl).
COMMIT = (
    """
if redis.call('GET', KEYS[4]) ~= ARGV[6] then return 0 end
if ARGV[8] == 'abort' then
  redis.call('DECR', KEYS[1])
  redis.call('DEL', KEYS[4])
  return 1
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], ARGV[2] .. '-1', 'e', ARGV[1])
local ms = redis.call('TIME')[1] .. '000'
"""
    + _index(5, 9)
    + """if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[5]) end
if ARGV[7] == '1' then
  redis.call('SPUBLISH', ARGV[3], ARGV[1])
else
  redis.call('PUBLISH', ARGV[3], ARGV[1])
end
redis.call('DEL', KEYS[4])
return 1
"""
)
