"""A small base for fake provider servers: a raw ASGI app served by Hypercorn on 127.0.0.1:0
(its asyncio or trio worker, whichever backend the test runs on).

Subclass :class:`FakeServer` and override :meth:`FakeServer.websocket` and/or
:meth:`FakeServer.http`. Use it as an async context manager; :attr:`FakeServer.port`,
:attr:`FakeServer.ws_url` and :attr:`FakeServer.http_url` are valid inside. Leaving the context
cancels every connection at once (fakes are for tests, not for graceful shutdown).

Raw ASGI rather than a web framework keeps full control over what a real service does on the
wire: handshake refusals with a status code and headers, close codes with reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import anyio

from voicegraph.wsio import SocketClosed

__all__ = ["FakeServer", "HTTPRequest", "HTTPResponse", "WebSocketPeer"]

logger = logging.getLogger("voicegraph.testing.fakeserver")

_Scope = dict[str, Any]


def _headers(scope: _Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _raw_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[list[bytes]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [[k.encode("latin-1"), v.encode("latin-1")] for k, v in items]


class WebSocketPeer:
    """The server side of one client WebSocket (before and after the handshake).

    ``path``, ``query`` (name -> values) and ``headers`` (lower-case names) describe the
    handshake. Call :meth:`accept` or :meth:`reject` first. :meth:`receive` raises
    :class:`~voicegraph.wsio.SocketClosed` once the client is gone."""

    def __init__(self, scope: _Scope, receive: Any, send: Any) -> None:
        self.path: str = scope["path"]
        self.query: dict[str, list[str]] = parse_qs(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        self.headers = _headers(scope)
        self._receive = receive
        self._send = send
        self.accepted = False
        self.closed = False
        self.close_code: int | None = None

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name`` (``None`` if absent)."""
        values = self.query.get(name)
        return values[0] if values else None

    async def accept(self, headers: Mapping[str, str] | None = None) -> None:
        """Complete the handshake (status 101)."""
        msg = await self._receive()
        if msg["type"] != "websocket.connect":
            raise SocketClosed(None, "client left before the handshake")
        await self._send({"type": "websocket.accept", "headers": _raw_headers(headers or {})})
        self.accepted = True

    async def reject(
        self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> None:
        """Refuse the handshake with an HTTP ``status`` (no upgrade)."""
        await self._receive()
        await self._send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": _raw_headers({"content-type": "text/plain", **(headers or {})}),
            }
        )
        await self._send({"type": "websocket.http.response.body", "body": body})
        self.closed = True

    async def receive(self) -> str | bytes:
        """Next client message (``str`` text or ``bytes`` binary)."""
        if self.closed:
            raise SocketClosed(self.close_code, "closed")
        msg = await self._receive()
        if msg["type"] == "websocket.receive":
            text = msg.get("text")
            return text if text is not None else msg.get("bytes") or b""
        self.closed = True
        self.close_code = msg.get("code")
        raise SocketClosed(self.close_code, msg.get("reason") or "")

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) message."""
        if self.closed:
            raise SocketClosed(self.close_code, "closed")
        key = "text" if isinstance(message, str) else "bytes"
        await self._send({"type": "websocket.send", key: message})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason`` (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:  # the peer may already be gone; close never raises
            pass


class HTTPRequest:
    """One HTTP request: ``method``, ``path``, ``query``, ``headers`` (lower-case), ``body``."""

    def __init__(self, scope: _Scope, body: bytes) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        self.headers = _headers(scope)
        self.body = body


class HTTPResponse:
    """Writes one HTTP response, whole (:meth:`send_json`, :meth:`send_text`) or streamed
    (:meth:`start`, then :meth:`write` for each chunk, then :meth:`end`)."""

    def __init__(self, send: Any, receive: Any = None) -> None:
        self._send = send
        self._receive = receive
        self.started = False
        self.ended = False

    async def wait_disconnected(self) -> None:
        """Return once the client has closed the connection (to stop streaming to nobody:
        the server silently discards writes after a disconnect)."""
        if self._receive is None:
            await anyio.sleep_forever()
        while (await self._receive())["type"] != "http.disconnect":
            pass

    async def start(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        self.started = True
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": _raw_headers(headers or {}),
            }
        )

    async def write(self, chunk: bytes | str) -> None:
        data = chunk.encode() if isinstance(chunk, str) else chunk
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        if not self.ended:
            self.ended = True
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def send_text(
        self, status: int, body: str | bytes, content_type: str = "text/plain"
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        await self.start(status, {"content-type": content_type, "content-length": str(len(data))})
        self.ended = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def send_json(self, status: int, body: bytes) -> None:
        """Send ``body`` (already-encoded JSON, e.g. ``msgspec.json.encode(...)``)."""
        await self.send_text(status, body, "application/json")


class FakeServer:
    """Base of the fakes: serves :meth:`websocket` and :meth:`http` on 127.0.0.1:0.

    ``max_body`` bounds HTTP request bodies (413 beyond); ``max_message`` bounds WebSocket
    messages (Hypercorn closes the socket beyond)."""

    def __init__(self, *, max_body: int = 1 << 20, max_message: int = 1 << 20) -> None:
        self.max_body = max_body
        self.max_message = max_message
        self.port = 0
        self._tg: anyio.abc.TaskGroup | None = None

    # -- to override

    async def websocket(self, ws: WebSocketPeer) -> None:
        """Serve one WebSocket connection (default: refuse with 404)."""
        await ws.reject(404, body=b"no WebSocket here")

    async def http(self, request: HTTPRequest, response: HTTPResponse) -> None:
        """Serve one HTTP request (default: 404)."""
        await response.send_text(404, "not found")

    # -- addresses

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>`` (no path)."""
        self._check_running()
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no path)."""
        self._check_running()
        return f"http://127.0.0.1:{self.port}"

    def _check_running(self) -> None:
        if not self.port:
            raise RuntimeError(
                f"{type(self).__name__} is not running; use it as `async with {type(self).__name__}(...)`"
            )

    # -- lifecycle

    async def __aenter__(self) -> FakeServer:
        from voicegraph.server.asgi import hypercorn_config, listen_socket, serve_hypercorn

        # The socket listens before Hypercorn runs (its port is known at once and early
        # connections wait in the backlog); Hypercorn's asyncio or trio worker, as the running
        # backend, takes it over.
        sock = listen_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        config = hypercorn_config(
            sock, errorlog=logger, max_message=self.max_message, graceful_timeout=0.1
        )
        never = anyio.Event()  # a trigger: without one Hypercorn would take over the signals
        self._tg = await anyio.create_task_group().__aenter__()
        self._tg.start_soon(serve_hypercorn, self._asgi, config, never.wait)
        self.port = port
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        self.port = 0
        return await self._tg.__aexit__(exc_type, exc, tb)

    # -- ASGI

    async def _asgi(self, scope: _Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            ws = WebSocketPeer(scope, receive, send)
            try:
                await self.websocket(ws)
            except SocketClosed:
                pass
            finally:
                if ws.accepted:
                    with anyio.CancelScope(shield=True):
                        await ws.close()
        elif kind == "http":
            body = bytearray()
            more = True
            while more:
                msg = await receive()
                if msg["type"] != "http.request":
                    return
                body += msg.get("body", b"")
                more = msg.get("more_body", False)
                if len(body) > self.max_body:
                    await HTTPResponse(send).send_text(413, "request body too large")
                    return
            response = HTTPResponse(send, receive)
            await self.http(HTTPRequest(scope, bytes(body)), response)
            if response.started:
                await response.end()
            else:
                await response.send_text(500, "fake handler sent no response")
