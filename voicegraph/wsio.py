"""One narrow WebSocket interface for every edge: carrier sockets (server side, raw ASGI or the
media listener) and provider sockets (client side: picows on asyncio by default, ``websockets``
on asyncio when chosen, trio-websocket on Trio).

Transports and provider nodes depend only on :class:`MessageSocket`; the adapters here, in
:mod:`voicegraph._picows` and in :mod:`voicegraph.server.carriers` (and the media listener's,
``voicegraph.server._media_*``) are the only code that knows a WebSocket library.
:func:`connect_websocket` picks the client library by the running backend and, on asyncio, by
``engine=`` or the ``VOICEGRAPH_WS_CLIENT`` environment variable (:data:`CLIENT_ENGINES`; picows
costs a third of ``websockets``' CPU per message, see docs/benchmarks.md). Every client gets
the same limits (message size, connect and close timeouts), no compression and no library
pings (keep-alive and reconnect live above this interface, in ``nodes.providers.base``).
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import anyio

from .backends import current_backend

__all__ = [
    "CLIENT_ENGINES",
    "DEFAULT_ENGINE",
    "ENGINE_ENV",
    "AsyncioWebSocketClient",
    "MessageSocket",
    "PushSocket",
    "SocketClosed",
    "WebSocketClient",
    "WebSocketEngineError",
    "check_engine",
    "connect_websocket",
    "describe",
    "engine_from_env",
]

DEFAULT_MAX_MESSAGE = 1 << 20

CLIENT_ENGINES = ("picows", "websockets")
"""The client libraries for provider sockets on asyncio (Trio always uses trio-websocket)."""
ENGINE_ENV = "VOICEGRAPH_WS_CLIENT"
"""The environment variable that picks the asyncio client for the whole process."""


class WebSocketEngineError(ValueError):
    """An unknown WebSocket client library was named."""


def check_engine(engine: str, source: str = "engine") -> str:
    """Return ``engine`` if it names an asyncio client (:data:`CLIENT_ENGINES`); raise
    :class:`WebSocketEngineError` otherwise. ``source`` names where the value came from."""
    if engine not in CLIENT_ENGINES:
        allowed = " or ".join(repr(name) for name in CLIENT_ENGINES)
        raise WebSocketEngineError(
            f"{source}={engine!r} is not a WebSocket client library; use {allowed}"
        )
    return engine


def engine_from_env(environ: Mapping[str, str]) -> str:
    """The asyncio client named by ``VOICEGRAPH_WS_CLIENT`` in ``environ``, else picows."""
    value = environ.get(ENGINE_ENV, "").strip()
    return check_engine(value, ENGINE_ENV) if value else "picows"


DEFAULT_ENGINE = engine_from_env(os.environ)
"""The asyncio client of this process, read once at import: an unknown name fails here, before
any call, rather than at a call's first provider socket."""


class SocketClosed(Exception):
    """The peer closed the socket (or it broke). ``code``/``reason`` as received, if any."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"socket closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


@runtime_checkable
class MessageSocket(Protocol):
    """A message-oriented WebSocket.

    ``receive`` returns one whole message (``str`` for text, ``bytes`` for binary) and raises
    :class:`SocketClosed` once the socket is closed. ``send`` raises :class:`SocketClosed` if it
    is closed. ``close`` is idempotent and never raises."""

    async def send(self, message: str | bytes) -> None: ...

    async def receive(self) -> str | bytes: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


@runtime_checkable
class PushSocket(Protocol):
    """Optional beside :class:`MessageSocket`: a socket that can hand each message to a
    callback as it arrives, instead of waking a task blocked in ``receive`` (one task switch
    less per message; :class:`~voicegraph.transports.CarrierIn` uses it where offered).

    ``set_receiver(on_message, on_closed)`` first hands over, in order, what is already
    queued, then calls ``on_message(message)`` for every later whole message, in order, on the
    event loop, never re-entrantly; ``on_closed(exc)`` is called once, after the last message,
    when the peer closes the socket or the connection breaks. The callbacks must not raise or
    block, and nothing queues behind them: whoever sets them bounds what it keeps. While they
    are set ``receive`` must not be called. ``set_receiver(None, None)`` detaches them:
    later messages queue for ``receive`` again."""

    def set_receiver(
        self,
        on_message: Callable[[str | bytes], None] | None,
        on_closed: Callable[[SocketClosed], None] | None,
    ) -> None: ...


class WebSocketClient:
    """:class:`MessageSocket` over a trio-websocket client connection (Trio backend)."""

    def __init__(self, conn: object) -> None:
        from trio_websocket import ConnectionClosed

        self._conn = conn
        # looked up once: an import statement per message costs more than the send itself
        self._closed: type[Exception] = ConnectionClosed

    async def send(self, message: str | bytes) -> None:
        try:
            await self._conn.send_message(message)  # type: ignore[attr-defined]
        except self._closed as exc:
            raise _closed(exc) from None

    async def receive(self) -> str | bytes:
        try:
            return await self._conn.get_message()  # type: ignore[attr-defined,no-any-return]
        except self._closed as exc:
            raise _closed(exc) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            try:
                await self._conn.aclose(code, reason)  # type: ignore[attr-defined]
            except Exception:  # close never raises (see MessageSocket)
                pass


def handshake_refused(status: int) -> SocketClosed:
    """The error for a handshake answered with HTTP ``status`` instead of 101. No client
    follows a redirect: the handshake carries the provider's credentials, which go only to the
    URL that was configured."""
    if 300 <= status < 400:
        return SocketClosed(
            status,
            f"handshake answered with a redirect (HTTP {status}), not followed: credentials "
            "go only to the configured URL; point base_url at the service itself",
        )
    return SocketClosed(status, f"handshake rejected with HTTP {status}")


def describe(exc: BaseException) -> str:
    """``exc`` and its causes as one line (``Type: text <- Cause: text``), so a log line keeps
    the root cause even where the outer error says nothing."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 5:
        if isinstance(seen, BaseExceptionGroup):
            seen = seen.exceptions[0]  # e.g. one error per address tried: the first tells
            continue
        text = str(seen)
        parts.append(f"{type(seen).__name__}: {text}" if text else type(seen).__name__)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return " <- ".join(parts)


_tls: list[ssl.SSLContext] = []


def tls_context() -> ssl.SSLContext:
    """One client TLS context (default verification) for every ``wss://`` socket of the
    process: creating one loads the CA certificates, ~20 ms of CPU per connection that would
    stall every other call on the event loop."""
    if not _tls:
        _tls.append(ssl.create_default_context())
    return _tls[0]


def _closed(exc: Exception) -> SocketClosed:
    reason = getattr(exc, "reason", None)
    return SocketClosed(getattr(reason, "code", None), getattr(reason, "reason", "") or "")


@asynccontextmanager
async def connect_websocket(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    connect_timeout: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE,
    close_timeout: float = 1.0,
    engine: str | None = None,
) -> AsyncIterator[MessageSocket]:
    """Open a client WebSocket to ``url`` (``ws://`` or ``wss://``) with extra ``headers``.

    Raises ``TimeoutError`` after ``connect_timeout``, :class:`SocketClosed` with the HTTP
    status as ``code`` if the server refuses the handshake, and :class:`SocketClosed` with no
    code (``"cannot connect: ..."``) if it cannot be reached. ``wss://`` verifies the server's
    certificate and host name with :func:`tls_context`. A message over ``max_message_size``
    closes the socket with 1009. The socket is closed on exit, including on cancellation; the
    close handshake waits at most ``close_timeout`` (on ``websockets`` a cancelled caller's
    reader is gone and the handshake cannot complete, so this bound is what a cancelled socket
    costs; picows and trio-websocket read without the caller's task).

    ``engine`` picks the client library on asyncio: ``"picows"`` or ``"websockets"``
    (:data:`CLIENT_ENGINES`); ``None`` means :data:`DEFAULT_ENGINE` (picows unless the
    ``VOICEGRAPH_WS_CLIENT`` environment variable names the other). Trio always uses
    trio-websocket."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"WebSocket URL must start with ws:// or wss://, got {url!r}")
    engine = DEFAULT_ENGINE if engine is None else check_engine(engine)
    opener: Callable[..., AbstractAsyncContextManager[MessageSocket]]
    if current_backend() == "trio":
        opener = _connect_trio
    elif engine == "picows":
        opener = _connect_picows
    else:
        opener = _connect_asyncio
    async with opener(url, headers, connect_timeout, max_message_size, close_timeout) as sock:
        yield sock


@asynccontextmanager
async def _connect_picows(
    url: str,
    headers: Mapping[str, str] | None,
    connect_timeout: float,
    max_message_size: int,
    close_timeout: float,
) -> AsyncIterator[MessageSocket]:
    from ._picows import connect_picows

    async with connect_picows(
        url,
        headers,
        tls=tls_context() if url.startswith("wss:") else None,  # one context per process
        connect_timeout=connect_timeout,
        max_message_size=max_message_size,
        close_timeout=close_timeout,
    ) as sock:
        yield sock


@asynccontextmanager
async def _connect_trio(
    url: str,
    headers: Mapping[str, str] | None,
    connect_timeout: float,
    max_message_size: int,
    close_timeout: float,
) -> AsyncIterator[WebSocketClient]:
    from trio_websocket import (
        ConnectionRejected,
        ConnectionTimeout,
        HandshakeError,
        open_websocket_url,
    )

    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    cm = open_websocket_url(
        url,
        ssl_context=tls_context() if url.startswith("wss:") else None,
        extra_headers=extra,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=close_timeout,
    )
    # trio-websocket's own connect_timeout does not end a handshake the server never answers
    # (its reader task keeps the context manager's nursery open): this scope does. It encloses
    # the whole context manager, nursery included, so it nests properly; once connected its
    # deadline is lifted for the socket's life.
    with anyio.CancelScope(deadline=anyio.current_time() + connect_timeout) as guard:
        try:
            conn = await cm.__aenter__()
        except ConnectionTimeout:
            raise TimeoutError(f"WebSocket connect timed out after {connect_timeout}s") from None
        except ConnectionRejected as exc:
            raise handshake_refused(exc.status_code) from None
        except HandshakeError as exc:
            # trio-websocket's HandshakeError often has no text of its own; the reason (a DNS
            # failure, a refused connection) is its cause: keep it in the message and chain.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, OSError):
                raise SocketClosed(None, f"cannot connect: {describe(cause)}") from exc
            raise SocketClosed(None, f"handshake failed: {describe(exc)}") from exc
        except OSError as exc:
            raise SocketClosed(None, f"cannot connect: {describe(exc)}") from exc
        guard.deadline = math.inf
        try:
            if guard.cancel_called:  # the deadline passed just as the handshake completed
                raise TimeoutError(f"WebSocket connect timed out after {connect_timeout}s")
            yield WebSocketClient(conn)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await cm.__aexit__(None, None, None)
                except Exception:  # closing a broken socket is not an error here
                    pass
    if guard.cancelled_caught:
        raise TimeoutError(f"WebSocket connect timed out after {connect_timeout}s")


class AsyncioWebSocketClient:
    """:class:`MessageSocket` over a ``websockets`` asyncio client connection
    (``engine="websockets"``)."""

    def __init__(self, conn: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        self._conn = conn
        # looked up once: an import statement per message costs more than the send itself
        self._closed: type[Exception] = ConnectionClosed

    async def send(self, message: str | bytes) -> None:
        try:
            await self._conn.send(message)
        except self._closed as exc:
            raise _ws_closed(exc) from None

    async def receive(self) -> str | bytes:
        try:
            return await self._conn.recv()  # type: ignore[no-any-return]
        except self._closed as exc:
            raise _ws_closed(exc) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            try:
                await self._conn.close(code, reason)
            except Exception:  # close never raises (see MessageSocket)
                pass


def _ws_closed(exc: Exception) -> SocketClosed:
    # The peer's close frame if one came, else ours (e.g. 1009 for a message over the size
    # limit), else an abnormal closure (1006): what trio-websocket reports in each case.
    frame = getattr(exc, "rcvd", None) or getattr(exc, "sent", None)
    if frame is None:
        return SocketClosed(1006, "")
    return SocketClosed(frame.code, frame.reason or "")


@asynccontextmanager
async def _connect_asyncio(
    url: str,
    headers: Mapping[str, str] | None,
    connect_timeout: float,
    max_message_size: int,
    close_timeout: float,
) -> AsyncIterator[AsyncioWebSocketClient]:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus

    class NoRedirects(connect):  # websockets' connect is a class, used as a call
        def process_redirect(self, exc: Exception) -> Exception | str:
            return exc  # never followed (see handshake_refused): the 3xx goes up as it is

    try:
        conn = await NoRedirects(
            url,
            additional_headers=dict(headers or {}),
            max_size=max_message_size,
            open_timeout=connect_timeout,
            close_timeout=close_timeout,
            ping_interval=None,  # keep-alive is the provider node's (same on both backends)
            compression=None,  # trio-websocket does not compress either; saves CPU on audio
            proxy=None,  # like trio-websocket: connect directly
            user_agent_header=None,
            ssl=tls_context() if url.startswith("wss:") else None,  # one context per process
        )
    except TimeoutError:
        raise TimeoutError(f"WebSocket connect timed out after {connect_timeout}s") from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise handshake_refused(status) from None
    except InvalidHandshake as exc:
        raise SocketClosed(None, f"handshake failed: {describe(exc)}") from exc
    except OSError as exc:
        raise SocketClosed(None, f"cannot connect: {describe(exc)}") from exc
    client = AsyncioWebSocketClient(conn)
    try:
        yield client
    finally:
        await client.close()
