"""The HTTP client under :class:`~voicegraph.nodes.OpenAIChatLLM`: one streaming POST, two
libraries behind it.

On asyncio the default is aiohttp. Under load what a request costs is the number of times it
waits for the event loop (each wait queues behind every call's ready work): an httpx request
reaches the socket after 8 turns of the loop, aiohttp's after 3, and aiohttp spends less than
half of httpx's CPU per streamed reply (docs/benchmarks.md). httpx serves Trio (aiohttp is
asyncio only) and asyncio when chosen with ``engine="httpx"`` or the ``VOICEGRAPH_HTTP_CLIENT``
environment variable. Both honour the ``HTTP(S)_PROXY`` / ``NO_PROXY`` variables, read when the
pool opens (aiohttp's own reading of them runs in a thread on every request: a hand-off to a
thread and back in each turn's latency), verify TLS with the same context, and keep one
connection pool per client (per event loop).

Library errors are turned into :class:`TransportFailure` here, so the caller handles one type.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment  # type: ignore[attr-defined]

from voicegraph.backends import current_backend

__all__ = [
    "DEFAULT_HTTP_ENGINE",
    "HTTP_ENGINES",
    "HTTP_ENGINE_ENV",
    "HTTPEngineError",
    "Reply",
    "StreamingClient",
    "TransportFailure",
    "check_http_engine",
]

HTTP_ENGINES = ("aiohttp", "httpx")
"""The HTTP client libraries on asyncio (Trio always uses httpx)."""
HTTP_ENGINE_ENV = "VOICEGRAPH_HTTP_CLIENT"
"""The environment variable that picks the asyncio HTTP client for the whole process."""
MAX_LINE = 1 << 20
"""Longest server-sent-events line accepted (bytes); a longer one fails the stream."""


class HTTPEngineError(ValueError):
    """An unknown HTTP client library was named."""


def check_http_engine(engine: str, source: str = "engine") -> str:
    """Return ``engine`` if it names an HTTP client (:data:`HTTP_ENGINES`); raise
    :class:`HTTPEngineError` otherwise. ``source`` names where the value came from."""
    if engine not in HTTP_ENGINES:
        allowed = " or ".join(repr(name) for name in HTTP_ENGINES)
        raise HTTPEngineError(f"{source}={engine!r} is not an HTTP client library; use {allowed}")
    return engine


def http_engine_from_env(environ: Mapping[str, str]) -> str:
    """The asyncio client named by ``VOICEGRAPH_HTTP_CLIENT`` in ``environ``, else aiohttp."""
    value = environ.get(HTTP_ENGINE_ENV, "").strip()
    return check_http_engine(value, HTTP_ENGINE_ENV) if value else "aiohttp"


DEFAULT_HTTP_ENGINE = http_engine_from_env(os.environ)
"""The asyncio HTTP client of this process, read once at import: an unknown name fails here,
before anything is served."""


class TransportFailure(Exception):
    """The server could not be reached, or the connection broke or went quiet (``timeout``)."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class Reply(Protocol):
    """A response whose body is read as it arrives."""

    status: int
    reason: str

    def lines(self) -> AsyncGenerator[str, None]:
        """The body's lines, without their line endings."""
        ...

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body (an error response's)."""
        ...


class StreamingClient:
    """POSTs whose responses stream, over a connection pool of at most ``max_connections``.

    ``timeout`` bounds connecting and each wait for more of the body; ``connect_timeout``
    bounds connecting (including waiting for a free connection of the pool). ``engine``: see
    the module docs (``None``: :data:`DEFAULT_HTTP_ENGINE` on asyncio, httpx on Trio)."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        timeout: float,
        connect_timeout: float,
        tls: ssl.SSLContext,
        max_connections: int,
        engine: str | None = None,
    ) -> None:
        self.engine = None if engine is None else check_http_engine(engine)
        self._headers = dict(headers)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._tls = tls
        self._max_connections = max_connections
        self._httpx: Any = None
        self._aiohttp: Any = None
        self._loop: Any = None
        self._proxies: dict[str, str | None] = {}  # per scheme://host:port

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> AbstractAsyncContextManager[Reply]:
        """Send ``body`` to ``url``; the context yields the response once its headers are in
        and closes it on exit (early exit included). Raises :class:`TransportFailure`."""
        if current_backend() == "trio":
            if self.engine == "aiohttp":
                raise HTTPEngineError(
                    "engine='aiohttp' runs on asyncio only; use engine='httpx' (or none) on Trio"
                )
            return self._post_httpx(url, body, headers)
        if (self.engine or DEFAULT_HTTP_ENGINE) == "aiohttp":
            return self._post_aiohttp(url, body, headers)
        return self._post_httpx(url, body, headers)

    async def aclose(self) -> None:
        """Close the pools (the client can still be used afterwards: it reopens)."""
        import anyio

        clients, self._httpx, self._aiohttp = (self._httpx, self._aiohttp), None, None
        with anyio.CancelScope(shield=True):
            if clients[0] is not None:
                await clients[0].aclose()
            if clients[1] is not None:
                await clients[1].close()

    # ---------------------------------------------------------------- httpx

    @asynccontextmanager
    async def _post_httpx(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[Reply]:
        import httpx

        if self._httpx is None:
            self._httpx = httpx.AsyncClient(
                headers=self._headers,
                timeout=httpx.Timeout(self._timeout, connect=self._connect_timeout),
                verify=self._tls,
                limits=httpx.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=self._max_connections,
                ),
            )
        with _failures((httpx.TimeoutException,), (httpx.TransportError,)):
            async with self._httpx.stream("POST", url, content=body, headers=headers) as r:
                yield _HttpxReply(r)

    # -------------------------------------------------------------- aiohttp

    async def _session(self) -> Any:
        import asyncio

        import aiohttp

        loop = asyncio.get_running_loop()
        if self._aiohttp is not None and self._loop is not loop:
            # The client outlived an anyio.run: its pool belongs to an event loop that has
            # gone, and so do its sockets. Mark that pool closed (nothing to await on a dead
            # loop) and open one on this loop.
            old, self._aiohttp = self._aiohttp, None
            connector = old.connector
            old.detach()
            if connector is not None and self._loop.is_closed():
                await connector.close()
        if self._aiohttp is None:
            self._loop = loop
            self._aiohttp = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, limit_per_host=0, ssl=self._tls
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self._connect_timeout, sock_read=self._timeout
                ),
                trust_env=False,  # proxies: _proxy(), once per origin
                read_bufsize=MAX_LINE // 2,  # lines up to twice this are read whole
                auto_decompress=True,
            )
        return self._aiohttp

    def _proxy(self, url: str) -> str | None:
        """The proxy for ``url`` from ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` (as httpx
        reads them), looked up once per origin."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            if len(self._proxies) >= 64:
                self._proxies.clear()
            proxy = getproxies_environment().get(parts.scheme)
            if proxy and proxy_bypass_environment(parts.hostname or ""):
                proxy = None
            self._proxies[origin] = proxy or None
        return self._proxies[origin]

    @asynccontextmanager
    async def _post_aiohttp(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[Reply]:

        session = await self._session()
        with _failures(*_aiohttp_errors()):
            # no redirects, as with httpx: the request carries the API key (aiohttp would drop it
            # only for another origin) and a 3xx is a misconfigured base_url, reported as such
            async with session.post(
                url, data=body, headers=headers, proxy=self._proxy(url), allow_redirects=False
            ) as r:
                yield _AiohttpReply(r)


@contextmanager
def _failures(
    timeouts: tuple[type[Exception], ...], errors: tuple[type[Exception], ...]
) -> Iterator[None]:
    """A library's ``timeouts`` and transport ``errors`` raised in the block, as
    :class:`TransportFailure` (the caller handles one type)."""
    try:
        yield
    except timeouts as exc:
        raise TransportFailure(type(exc).__name__, timeout=True) from None
    except errors as exc:
        raise TransportFailure(type(exc).__name__) from None


def _aiohttp_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    import aiohttp

    # aiohttp's connect and read timeouts derive from TimeoutError
    return (TimeoutError,), (aiohttp.ClientError,)


class _HttpxReply:
    def __init__(self, response: Any) -> None:
        self._r = response
        self.status: int = response.status_code
        self.reason: str = response.reason_phrase

    async def lines(self) -> AsyncGenerator[str, None]:
        import httpx

        with _failures((httpx.TimeoutException,), (httpx.TransportError,)):
            async for line in self._r.aiter_lines():
                yield line

    async def read(self, limit: int) -> bytes:
        import httpx

        out = bytearray()
        try:
            async for part in self._r.aiter_bytes():
                out += part
                if len(out) >= limit:
                    break
        except httpx.TransportError:
            pass  # what arrived is the error's text; the status says the rest
        return bytes(out[:limit])


class _AiohttpReply:
    def __init__(self, response: Any) -> None:
        self._r = response
        self.status: int = response.status
        self.reason: str = response.reason or ""

    async def lines(self) -> AsyncGenerator[str, None]:
        with _failures(*_aiohttp_errors()):
            try:
                async for raw in self._r.content:
                    yield raw.decode("utf-8", "replace").rstrip("\r\n")
            except ValueError:  # aiohttp's "line too long"
                raise TransportFailure(f"a line of the stream exceeds {MAX_LINE} bytes") from None

    async def read(self, limit: int) -> bytes:
        import aiohttp

        out = bytearray()
        try:
            while len(out) < limit:  # read() returns what has arrived: loop to the body's end
                chunk = await self._r.content.read(limit - len(out))
                if not chunk:
                    break
                out += chunk
        except (aiohttp.ClientError, TimeoutError):
            pass  # what arrived is the error's text; the status says the rest
        return bytes(out)
