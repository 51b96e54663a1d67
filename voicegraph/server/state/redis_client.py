"""The connection to one Redis: redis-py's asyncio client and its connection pool, usable from
either backend, with every failure turned into :class:`~voicegraph.server.state.StateUnavailable`.

redis-py's client is asyncio-only: on the asyncio backend it runs in the worker's loop; on Trio
it runs on a private asyncio loop in one thread (:mod:`voicegraph.server.state._bridge`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio

from ._bridge import AsyncioBridge
from .base import StateUnavailable

__all__ = ["RedisConnection", "where"]


def where(url: str) -> str:
    """host:port/db of a Redis URL, without credentials (for logs and errors)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 6379}{parts.path or ''}"


class RedisConnection:
    """A bounded pool of connections to the Redis at ``url``, built on first use in the loop
    that runs it, with ``scripts`` (name -> Lua source) registered on it.

    ``timeout``: seconds one operation may take (and one wait for a free connection, of
    ``max_connections``). The caller checks the arguments; the URL never appears in a repr,
    a log or an error (it may hold a password): :attr:`where` does instead."""

    def __init__(
        self, url: str, *, timeout: float, max_connections: int, scripts: Mapping[str, str]
    ) -> None:
        self._url = url
        self.where = where(url)
        self.timeout = timeout
        self.max_connections = max_connections
        self._sources = dict(scripts)
        self._bridge = AsyncioBridge()
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"RedisConnection({self.where!r})"

    def client(self) -> Any:
        """The ``redis.asyncio.Redis`` client (use it inside :meth:`call`)."""
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
                name: client.register_script(source) for name, source in self._sources.items()
            }
            self._client = client
        return self._client

    def script(self, name: str) -> Any:
        """The registered script ``name`` (call it inside :meth:`call`)."""
        self.client()
        return self._scripts[name]

    async def call(self, what: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn()`` (a coroutine function using the client) and return its result;
        :class:`StateUnavailable` naming ``what`` when Redis fails or does not answer in time."""
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

    async def close_quietly(self, close: Callable[[], Awaitable[Any]]) -> None:
        """Run ``close()`` (a pub/sub's ``aclose``, say) where the client runs; a connection
        that is already broken may fail to close, and nothing is left to do then."""
        try:
            await self._bridge.call(close)
        except Exception:
            pass

    async def aclose(self) -> None:
        """Close the pool (within ``timeout``, even when cancelled) and the bridge's loop."""
        client, self._client = self._client, None
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout):
                if client is not None:
                    await self.close_quietly(client.aclose)
        finally:
            self._bridge.close()
