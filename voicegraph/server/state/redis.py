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

This module is the store's logic; the connection to Redis (redis-py's asyncio client on either
backend) is :mod:`voicegraph.server.state.redis_client`, the Lua scripts are
:mod:`voicegraph.server.state.redis_scripts`. Needs Redis 6.2 or newer (a single primary; Redis
Cluster is not supported).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import msgspec

from .base import (
    CallRecord,
    Deliver,
    Dispatcher,
    PlacedHere,
    StateUnavailable,
    encode_message,
    new_worker_id,
)
from .redis_client import RedisConnection
from .redis_scripts import SCRIPTS

__all__ = ["RedisState", "RedisStateError"]

logger = logging.getLogger("voicegraph.server.state")

_REPORT = b"!"  # a payload for a dial handle's holder: delivered whether or not a call is live

_record_decoder = msgspec.json.Decoder(CallRecord)
_CLAIM_BATCH = 200


class RedisStateError(ValueError):
    """A Redis state was configured wrongly (the message says what to change)."""


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
        self._redis = RedisConnection(
            url, timeout=timeout, max_connections=max_connections, scripts=SCRIPTS
        )
        self.where = self._redis.where
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.max_connections = max_connections
        self.worker_id = new_worker_id()
        self.keys = (f"{prefix}:calls", f"{prefix}:owners")
        self._local: dict[str, CallRecord] = {}
        self._dispatch = Dispatcher()
        self._placed = PlacedHere()
        self._down_since: float | None = None

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"RedisState({self.where!r}, prefix={self.prefix!r}, worker={self.worker_id!r})"

    # -------------------------------------------------------------------- CallState

    async def redeem_token(self, nonce: str, expires_at: int) -> bool:
        seconds = max(1, expires_at - int(time.time()) + 1)
        key = f"{self.prefix}:token:{nonce}"
        done = await self._redis.call(
            "token redemption",
            lambda: self._redis.client().set(key, self.worker_id, nx=True, ex=seconds),
        )
        return bool(done)

    async def admit(self, call_id: str, limit: int, ttl: float) -> bool:
        ok = await self._redis.call(
            "admission",
            lambda: self._redis.script("admit")(keys=self.keys, args=[call_id, limit, ttl]),
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
                return self._redis.script("claim")(keys=self.keys, args=batch)

            await self._redis.call("registration", claim)

    async def release(self, call_id: str) -> None:
        self._local.pop(call_id, None)

        async def forget() -> Any:
            pipe = self._redis.client().pipeline(transaction=True)
            pipe.zrem(self.keys[0], call_id)
            pipe.hdel(self.keys[1], call_id)
            return await pipe.execute()

        await self._redis.call("release", forget)

    async def lookup(self, call_id: str) -> CallRecord | None:
        local = self._local.get(call_id)
        if local is not None:
            return local
        raw = await self._redis.call(
            "lookup", lambda: self._redis.script("lookup")(keys=self.keys, args=[call_id])
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
        receivers = await self._redis.call(
            "publish", lambda: self._redis.client().publish(channel, payload)
        )
        return int(receivers) > 0

    async def place(self, call_id: str, ttl: float) -> None:
        self._placed.add(call_id, ttl)
        key, ms = f"{self.prefix}:placed:{call_id}", max(1000, int(ttl * 1000))
        await self._redis.call(
            "placed call", lambda: self._redis.client().set(key, self.worker_id, px=ms)
        )

    async def alias_placed(self, other_id: str, call_id: str) -> None:
        keys = [f"{self.prefix}:placed:{other_id}", f"{self.prefix}:placed:{call_id}"]
        worker = await self._redis.call(
            "placed-call alias", lambda: self._redis.script("alias")(keys=keys, args=[])
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
            raw = await self._redis.call(
                "placed-call lookup", lambda: self._redis.client().get(key)
            )
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
                return self._redis.client().publish(c, p)

            n = await self._redis.call("publish", publish)
            reached += int(int(n) > 0)
        return reached

    async def ping(self) -> None:
        await self._redis.call("ping", lambda: self._redis.client().ping())

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
            await self._redis.aclose()

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
        pubsub = self._redis.client().pubsub(ignore_subscribe_messages=True)
        try:
            await self._redis.call("subscribe", lambda: pubsub.subscribe(channel))
            self._recovered()
            wait = min(1.0, self.timeout)
            while True:
                msg = await self._redis.call("receive", lambda: pubsub.get_message(timeout=wait))
                if msg is not None and msg.get("type") == "message":
                    await self._on_message(msg["data"])
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await self._redis.close_quietly(pubsub.aclose)

    async def _on_message(self, payload: bytes) -> None:
        report = payload.startswith(_REPORT)
        call_id, sep, data = payload[len(_REPORT) if report else 0 :].partition(b"\n")
        cid = call_id.decode("utf-8", "replace")
        if not sep or not (report or cid in self._local):
            logger.info("[%s] message for a call not held here (ended?); dropped", cid)
            return
        await self._dispatch.dispatch(cid, data)
