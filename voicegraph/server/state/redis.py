"""Call state shared through Redis, for several workers and machines.

``AgentRuntime(..., state="redis://redis.internal:6379/0")`` (or a :class:`RedisState`) makes
every instance that names the same Redis agree on:

* **single-use stream tokens** -- ``SET <prefix>:token:<nonce> NX EX <seconds left>``: the
  first redemption anywhere wins, a replay on any instance is refused;
* **admission** -- one sorted set ``<prefix>:calls`` (call id -> expiry, by Redis's clock) holds
  every admitted and live call. A Lua script drops expired members, then adds the call unless
  ``limit`` are present, atomically. A webhook's place lasts the stream token's lifetime; once
  the stream starts, the holding worker's heartbeat keeps it (``3 * heartbeat`` seconds ahead),
  so a crashed worker's calls free their places within that time;
* **the registry** -- hash ``<prefix>:owners`` (call id -> worker, line, start time), kept with
  the sorted set by the same scripts;
* **the channel** -- each worker subscribes to ``<prefix>:worker:<worker id>``;
  :meth:`RedisState.publish` looks the owner up and publishes there (Redis pub/sub: at most once;
  a message published while the owner's subscription is down is lost);
* **placed calls** -- ``<prefix>:placed:<call id>`` names the worker holding a dial handle
  (expiring with the handle); :meth:`RedisState.report` publishes a carrier's report to it and
  to the live call's owner, once each.

redis-py's client is asyncio-only: on the asyncio backend it runs in the worker's loop; on Trio it
runs on a private asyncio loop in one thread (:mod:`voicegraph.server.state._bridge`). Needs Redis 6.2
or newer (a single primary; Redis Cluster is not supported).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.abc
import msgspec

from ._bridge import AsyncioBridge
from .base import (
    CallRecord,
    Deliver,
    Dispatcher,
    PlacedHere,
    StateUnavailable,
    encode_message,
    new_worker_id,
)

__all__ = ["RedisState", "RedisStateError"]

logger = logging.getLogger("voicegraph.server.state")
T = TypeVar("T")

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

_REPORT = b"!"  # a payload for a dial handle's holder: delivered whether or not a call is live

_record_decoder = msgspec.json.Decoder(CallRecord)
_CLAIM_BATCH = 200


class RedisStateError(ValueError):
    """A Redis state was configured wrongly (the message says what to change)."""


def _where(url: str) -> str:
    """host:port/db of a Redis URL, without credentials (for logs and errors)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 6379}{parts.path or ''}"


class RedisState:
    """:class:`~voicegraph.server.state.CallState` in Redis (see module docs).

    ``url``: ``redis://[user:password@]host:port/db``, ``rediss://`` for TLS, or
    ``unix:///path/to/socket``. ``prefix``: key prefix, so several deployments can share one
    Redis. ``heartbeat``: seconds between refreshes of this worker's calls (they expire
    ``3 * heartbeat`` seconds after the last). ``timeout``: seconds one Redis operation may take
    before the store counts as unreachable. ``max_connections``: this worker's connection pool
    (operations beyond it wait up to ``timeout``)."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "voicegraph",
        heartbeat: float = 5.0,
        timeout: float = 2.0,
        max_connections: int = 32,
    ) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise RedisStateError(
                f"state URL scheme {scheme!r} is not Redis; use redis://host:6379/0, rediss://... "
                "or unix:///path/to/redis.sock"
            )
        if not prefix or any(c.isspace() for c in prefix):
            raise RedisStateError("prefix must be a non-empty key prefix without spaces")
        if not 0.05 <= heartbeat <= 300:
            raise RedisStateError("heartbeat must be between 0.05 and 300 seconds")
        if not 0.05 <= timeout <= 60:
            raise RedisStateError("timeout must be between 0.05 and 60 seconds")
        if not 2 <= max_connections <= 1024:
            raise RedisStateError("max_connections must be between 2 and 1024")
        try:
            import redis.asyncio  # noqa: F401  (fail at construction, not in the first call)
        except ImportError:
            raise RedisStateError(
                "a Redis state needs the redis package: pip install 'voicegraph[redis]'"
            ) from None
        self._url = url
        self.where = _where(url)
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.max_connections = max_connections
        self.worker_id = new_worker_id()
        self.keys = (f"{prefix}:calls", f"{prefix}:owners")
        self._local: dict[str, CallRecord] = {}
        self._bridge = AsyncioBridge()
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._dispatch = Dispatcher()
        self._placed = PlacedHere()
        self._down_since: float | None = None

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"RedisState({self.where!r}, prefix={self.prefix!r}, worker={self.worker_id!r})"

    # ---------------------------------------------------------------------- plumbing

    def _redis(self) -> Any:
        """The client, built on first use in the loop that runs it."""
        if self._client is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            pool = aioredis.BlockingConnectionPool.from_url(
                self._url,
                max_connections=self.max_connections,
                timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                socket_timeout=self.timeout,
                # One immediate retry: after a Redis restart each pooled connection fails once
                # ("closed by server") before reconnecting. An outage still shows at once.
                retry=Retry(NoBackoff(), 1),
            )
            client = aioredis.Redis(connection_pool=pool)
            self._scripts = {
                "admit": client.register_script(ADMIT),
                "claim": client.register_script(CLAIM),
                "lookup": client.register_script(LOOKUP),
                "alias": client.register_script(ALIAS),
            }
            self._client = client
        return self._client

    async def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` (a coroutine function using the client); StateUnavailable on failure."""
        from redis.exceptions import RedisError

        async def job() -> Any:
            return await fn()

        try:
            with anyio.fail_after(self.timeout * 2 + 1):  # bound even a wedged bridge
                return await self._bridge.call(job)
        except (RedisError, OSError, TimeoutError) as exc:
            detail = str(exc)[:200] or type(exc).__name__
            raise StateUnavailable(
                f"Redis at {self.where} failed during {what}: {detail}"
            ) from None

    def _script(self, name: str) -> Any:
        self._redis()
        return self._scripts[name]

    # -------------------------------------------------------------------- CallState

    async def redeem_token(self, nonce: str, expires_at: int) -> bool:
        seconds = max(1, expires_at - int(time.time()) + 1)
        key = f"{self.prefix}:token:{nonce}"
        done = await self._call(
            "token redemption",
            lambda: self._redis().set(key, self.worker_id, nx=True, ex=seconds),
        )
        return bool(done)

    async def admit(self, call_id: str, limit: int, ttl: float) -> bool:
        ok = await self._call(
            "admission",
            lambda: self._script("admit")(keys=self.keys, args=[call_id, limit, ttl]),
        )
        return bool(ok)

    async def register(self, record: CallRecord) -> None:
        self._local[record.call_id] = record
        await self._claim([record])

    async def _claim(self, records: list[CallRecord]) -> None:
        for i in range(0, len(records), _CLAIM_BATCH):
            args: list[Any] = [self.heartbeat * 3]
            for rec in records[i : i + _CLAIM_BATCH]:
                args += [rec.call_id, msgspec.json.encode(rec)]

            def claim(batch: list[Any] = args) -> Any:
                return self._script("claim")(keys=self.keys, args=batch)

            await self._call("registration", claim)

    async def release(self, call_id: str) -> None:
        self._local.pop(call_id, None)

        async def forget() -> Any:
            pipe = self._redis().pipeline(transaction=True)
            pipe.zrem(self.keys[0], call_id)
            pipe.hdel(self.keys[1], call_id)
            return await pipe.execute()

        await self._call("release", forget)

    async def lookup(self, call_id: str) -> CallRecord | None:
        local = self._local.get(call_id)
        if local is not None:
            return local
        raw = await self._call(
            "lookup", lambda: self._script("lookup")(keys=self.keys, args=[call_id])
        )
        return _record_decoder.decode(raw) if raw else None

    async def publish(self, call_id: str, message: Mapping[str, Any]) -> bool:
        data = encode_message(message)
        if call_id in self._local:  # held here: no round trip through Redis
            await self._dispatch.dispatch(call_id, data)
            return True
        owner = await self.lookup(call_id)
        if owner is None:
            return False
        channel = f"{self.prefix}:worker:{owner.worker}"
        payload = call_id.encode() + b"\n" + data
        receivers = await self._call("publish", lambda: self._redis().publish(channel, payload))
        return int(receivers) > 0

    async def place(self, call_id: str, ttl: float) -> None:
        self._placed.add(call_id, ttl)
        key, ms = f"{self.prefix}:placed:{call_id}", max(1000, int(ttl * 1000))
        await self._call("placed call", lambda: self._redis().set(key, self.worker_id, px=ms))

    async def alias_placed(self, other_id: str, call_id: str) -> None:
        keys = [f"{self.prefix}:placed:{other_id}", f"{self.prefix}:placed:{call_id}"]
        worker = await self._call(
            "placed-call alias", lambda: self._script("alias")(keys=keys, args=[])
        )
        left = self._placed.ttl(other_id)
        if left is not None:
            self._placed.add(call_id, left)
        elif worker is not None and worker.decode() == self.worker_id:
            self._placed.add(call_id, 3600.0)  # the store keeps the real expiry

    async def report(self, call_id: str, message: Mapping[str, Any]) -> int:
        data = encode_message(message)
        owner = await self.lookup(call_id)
        holder: str | None = self.worker_id if self._placed.ttl(call_id) is not None else None
        if holder is None:
            key = f"{self.prefix}:placed:{call_id}"
            raw = await self._call("placed-call lookup", lambda: self._redis().get(key))
            holder = raw.decode() if raw else None
        targets = {w for w in (owner.worker if owner else None, holder) if w is not None}
        reached = 0
        for worker in targets:
            if worker == self.worker_id:
                await self._dispatch.dispatch(call_id, data)
                reached += 1
                continue
            channel = f"{self.prefix}:worker:{worker}"
            payload = _REPORT + call_id.encode() + b"\n" + data

            def publish(c: str = channel, p: bytes = payload) -> Any:
                return self._redis().publish(c, p)

            n = await self._call("publish", publish)
            reached += int(int(n) > 0)
        return reached

    async def ping(self) -> None:
        await self._call("ping", lambda: self._redis().ping())

    # ------------------------------------------------------------------ background

    async def run(
        self,
        deliver: Deliver,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self._dispatch.serve, deliver)
                tg.start_soon(self._keep_alive)
                tg.start_soon(self._listen)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout):
                await self._close_client()
            self._bridge.close()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await self._bridge.call(client.aclose)
            except Exception:  # closing a broken connection may fail; nothing is left to do
                pass

    def _outage(self, exc: StateUnavailable) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.error(
                "%s; new calls are refused until it is back, live calls continue (%d here)",
                exc,
                len(self._local),
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "Redis at %s reachable again after %.1fs",
                self.where,
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    async def _keep_alive(self) -> None:
        """Refresh this worker's calls every ``heartbeat`` (re-registering after an outage)."""
        while True:
            await anyio.sleep(self.heartbeat)
            if not self._local:
                continue
            try:
                await self._claim(list(self._local.values()))
            except StateUnavailable as exc:
                self._outage(exc)
            else:
                self._recovered()

    async def _listen(self) -> None:
        """Receive messages for this worker's calls; resubscribe after a lost connection."""
        backoff = 0.1
        while True:
            try:
                await self._subscribed(f"{self.prefix}:worker:{self.worker_id}")
            except StateUnavailable as exc:
                self._outage(exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.1

    async def _subscribed(self, channel: str) -> None:
        pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
        try:
            await self._call("subscribe", lambda: pubsub.subscribe(channel))
            self._recovered()
            wait = min(1.0, self.timeout)
            while True:
                msg = await self._call("receive", lambda: pubsub.get_message(timeout=wait))
                if msg is not None and msg.get("type") == "message":
                    await self._on_message(msg["data"])
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                try:
                    await self._bridge.call(pubsub.aclose)
                except Exception:  # the connection is already broken
                    pass

    async def _on_message(self, payload: bytes) -> None:
        report = payload.startswith(_REPORT)
        call_id, sep, data = payload[len(_REPORT) if report else 0 :].partition(b"\n")
        cid = call_id.decode("utf-8", "replace")
        if not sep or not (report or cid in self._local):
            logger.info("[%s] message for a call not held here (ended?); dropped", cid)
            return
        await self._dispatch.dispatch(cid, data)
