"""The Lua scripts :class:`~voicegraph.server.state.redis.RedisState` runs in Redis.

Each runs atomically on the server and reads the time from Redis's own clock (``TIME``), so
workers whose clocks disagree still agree on which calls expired. All take the same two keys:
the sorted set ``<prefix>:calls`` (call id -> expiry) and the hash ``<prefix>:owners`` (call
id -> the holding worker's record JSON), except :data:`ALIAS`.
"""

from __future__ import annotations

__all__ = ["ADMIT", "ALIAS", "CLAIM", "LOOKUP", "SCRIPTS"]

# Expired members are dropped in bounded batches so one call never runs a long script.
_SWEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)
for _, id in ipairs(gone) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
"""
ADMIT = (
    _SWEEP
    + """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)
"""KEYS: calls, owners. ARGV: call id, limit, seconds to hold. 1 admitted, 0 full."""

CLAIM = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
"""
"""KEYS: calls, owners. ARGV: seconds ahead, then call id, record JSON pairs (registers, or
re-registers after an outage, every call named)."""

LOOKUP = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return false end
local t = redis.call('TIME')
if tonumber(score) < tonumber(t[1]) + tonumber(t[2]) / 1000000 then return false end
return redis.call('HGET', KEYS[2], ARGV[1])
"""
"""KEYS: calls, owners. ARGV: call id. The owner's record JSON, or nil."""

ALIAS = """
local worker = redis.call('GET', KEYS[1])
if not worker then return false end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 1 then ttl = 1000 end
redis.call('SET', KEYS[2], worker, 'PX', ttl)
return worker
"""
"""KEYS: placed key of the first id, placed key of the second. The holder's worker id, or nil."""

SCRIPTS = {"admit": ADMIT, "claim": CLAIM, "lookup": LOOKUP, "alias": ALIAS}
"""Every script by the name the state calls it by."""
