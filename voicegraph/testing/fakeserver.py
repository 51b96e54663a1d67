"""A small base for fake provider servers on 127.0.0.1:0, served by one of two engines.

* ``engine="hypercorn"`` (the default): a raw ASGI app served by Hypercorn, its asyncio or trio
  worker, whichever backend the test runs on. Serves WebSocket and HTTP.
* ``engine="picows"``: the WebSocket side on picows (asyncio only; the ``media`` extra), several
  times cheaper per message, for fakes on the load side of a benchmark. It serves no HTTP: a
  fake that overrides :meth:`FakeServer.http` refuses it when constructed (stay on Hypercorn),
  and a plain HTTP ``GET`` gets the default ``404 not found``.
* ``engine="asyncio"``: HTTP/1.1 on a plain asyncio protocol (asyncio only), for HTTP-only fakes
  on the load side of a benchmark (the chat fake): a request reaches the fake in fewer turns of
  the event loop than through Hypercorn. It serves no WebSocket: a fake that overrides
  :meth:`FakeServer.websocket` or :meth:`FakeServer.handshake` refuses it when constructed.

Subclass :class:`FakeServer` and override :meth:`FakeServer.handshake` with
:meth:`FakeServer.websocket`, and/or :meth:`FakeServer.http`. Use it as an async context
manager; :attr:`FakeServer.port`, :attr:`FakeServer.ws_url` and :attr:`FakeServer.http_url` are
valid inside. Leaving the context cancels every connection at once (fakes are for tests, not for
graceful shutdown).

The handshake is judged synchronously, from the request alone: :meth:`FakeServer.handshake`
returns :class:`Accept` or :class:`Refuse`, and each engine sends that verdict (picows needs it
before it answers, from inside its callback), so a refusal has the same status, headers and
body on both. :meth:`FakeServer.websocket` then serves the accepted connection. A fake whose
``handshake`` returns ``None`` (the default) decides inside ``websocket`` with
:meth:`WebSocketPeer.accept` / :meth:`WebSocketPeer.reject` instead: Hypercorn only.

Raw ASGI rather than a web framework keeps full control over what a real service does on the
wire: handshake refusals with a status code and headers, close codes with reasons.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs

import anyio

from voicegraph.wsio import SocketClosed

from ._fake_http import HTTPRequest, HTTPResponse, _headers, _raw_headers

__all__ = [
    "Accept",
    "FakeServer",
    "FakeServerError",
    "HTTPRequest",
    "HTTPResponse",
    "Refuse",
    "WebSocketPeer",
]

logger = logging.getLogger("voicegraph.testing.fakeserver")

_Scope = dict[str, Any]
Engine = Literal["hypercorn", "picows", "asyncio"]
ENGINES = ("hypercorn", "picows", "asyncio")


class FakeServerError(ValueError):
    """A fake asked for something its engine cannot do (the message says what to change)."""


class Accept:
    """:meth:`FakeServer.handshake`'s yes: status 101 with ``headers``; ``state`` is handed to
    :meth:`FakeServer.websocket` as ``ws.state`` (what the handshake already worked out)."""

    def __init__(self, headers: Mapping[str, str] | None = None, state: Any = None) -> None:
        self.headers = dict(headers or {})
        self.state = state


class Refuse:
    """:meth:`FakeServer.handshake`'s no: HTTP ``status`` with ``headers`` (``content-type``
    defaults to ``text/plain``) and ``body``; no upgrade."""

    def __init__(
        self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> None:
        self.status = status
        given = {k.lower(): v for k, v in (headers or {}).items()}
        self.headers = {"content-type": "text/plain", **given}
        self.body = body


class WebSocketPeer:
    """The server side of one client WebSocket (before and after the handshake), the same on
    both engines.

    ``path``, ``query`` (name -> values) and ``headers`` (lower-case names) describe the
    handshake; ``state`` is what :meth:`FakeServer.handshake` accepted it with. A fake that
    decides inside :meth:`FakeServer.websocket` calls :meth:`accept` or :meth:`reject` first.
    :meth:`receive` raises :class:`~voicegraph.wsio.SocketClosed` once the client is gone."""

    def __init__(self, path: str, query_string: str, headers: dict[str, str]) -> None:
        self.path = path
        self.query: dict[str, list[str]] = parse_qs(query_string, keep_blank_values=True)
        self.headers = headers
        self.state: Any = None
        self.accepted = False
        self.closed = False
        self.close_code: int | None = None

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name`` (``None`` if absent)."""
        values = self.query.get(name)
        return values[0] if values else None

    async def accept(self, headers: Mapping[str, str] | None = None) -> None:
        """Complete the handshake (status 101)."""
        raise NotImplementedError

    async def reject(
        self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> None:
        """Refuse the handshake with an HTTP ``status`` (no upgrade)."""
        raise NotImplementedError

    async def receive(self) -> str | bytes:
        """Next client message (``str`` text or ``bytes`` binary)."""
        raise NotImplementedError

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) message."""
        raise NotImplementedError

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason`` (idempotent)."""
        raise NotImplementedError

    def _check_undecided(self) -> None:
        if self.accepted or self.closed:
            raise RuntimeError("this handshake is already decided (by handshake() or before)")


class _AsgiPeer(WebSocketPeer):
    """A :class:`WebSocketPeer` over Hypercorn's ASGI messages."""

    def __init__(self, scope: _Scope, receive: Any, send: Any) -> None:
        super().__init__(
            scope["path"], scope.get("query_string", b"").decode("latin-1"), _headers(scope)
        )
        self._receive = receive
        self._send = send

    async def accept(self, headers: Mapping[str, str] | None = None) -> None:
        self._check_undecided()
        msg = await self._receive()
        if msg["type"] != "websocket.connect":
            raise SocketClosed(None, "client left before the handshake")
        await self._send({"type": "websocket.accept", "headers": _raw_headers(headers or {})})
        self.accepted = True

    async def reject(
        self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> None:
        self._check_undecided()
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
        if self.closed:
            raise SocketClosed(self.close_code, "closed")
        key = "text" if isinstance(message, str) else "bytes"
        await self._send({"type": "websocket.send", key: message})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:  # the peer may already be gone; close never raises
            pass


class FakeServer:
    """Base of the fakes: serves :meth:`websocket` and :meth:`http` on 127.0.0.1:0.

    ``max_body`` bounds HTTP request bodies (413 beyond); ``max_message`` bounds WebSocket
    messages (the engine closes the socket beyond). ``engine``: ``"hypercorn"``, ``"picows"`` or
    ``"asyncio"`` (see the module docstring); a fake that cannot run on its engine says so here."""

    def __init__(
        self, *, max_body: int = 1 << 20, max_message: int = 1 << 20, engine: Engine = "hypercorn"
    ) -> None:
        self.max_body = max_body
        self.max_message = max_message
        self.engine = _check_engine(type(self), engine)
        self.port = 0
        self._tg: anyio.abc.TaskGroup | None = None

    # -- to override

    def handshake(self, ws: WebSocketPeer) -> Accept | Refuse | None:
        """Judge a client's handshake from ``ws.path``, ``ws.query`` and ``ws.headers``, without
        waiting (picows asks from inside a callback): :class:`Accept` or :class:`Refuse`.
        ``None`` (the default) leaves the decision to :meth:`websocket` (Hypercorn only)."""
        return None

    async def websocket(self, ws: WebSocketPeer) -> None:
        """Serve one WebSocket connection: the accepted one when :meth:`handshake` decided,
        else decide first (default: refuse with 404)."""
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
        from voicegraph.backends import current_backend
        from voicegraph.server.asgi import hypercorn_config, listen_socket, serve_hypercorn

        if self.engine != "hypercorn" and current_backend() != "asyncio":
            raise FakeServerError(
                f"{type(self).__name__}(engine={self.engine!r}) runs on asyncio only: "
                "use engine='hypercorn' on Trio"
            )
        # The socket listens before the engine runs (its port is known at once and early
        # connections wait in the backlog); the engine takes it over.
        sock = listen_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        self._tg = await anyio.create_task_group().__aenter__()
        if self.engine == "picows":
            from ._fakeserver_picows import serve_picows

            await self._tg.start(serve_picows, self, sock, self._tg)
        elif self.engine == "asyncio":
            from ._fakeserver_http import serve_http

            await self._tg.start(serve_http, self, sock, self._tg)
        else:
            # Hypercorn's asyncio or trio worker, as the running backend.
            config = hypercorn_config(
                sock, errorlog=logger, max_message=self.max_message, graceful_timeout=0.1
            )
            never = anyio.Event()  # a trigger: without one Hypercorn would take over the signals
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
            ws = _AsgiPeer(scope, receive, send)
            try:
                verdict = self.handshake(ws)
                if isinstance(verdict, Refuse):
                    await ws.reject(verdict.status, verdict.headers, verdict.body)
                    return
                if verdict is not None:
                    ws.state = verdict.state
                    await ws.accept(verdict.headers)
                await self.websocket(ws)
            except SocketClosed:
                pass
            finally:
                if ws.accepted:
                    with anyio.CancelScope(shield=True):
                        await ws.close()
        elif kind == "http":
            await self._serve_http(scope, receive, send)

    async def _serve_http(self, scope: _Scope, receive: Any, send: Any) -> None:
        """One HTTP request through :meth:`http`, over ASGI messages (both HTTP engines)."""
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


def _check_engine(cls: type[FakeServer], engine: str) -> Engine:
    """``engine`` if ``cls`` can run on it, else :class:`FakeServerError` saying what to change."""
    name = cls.__name__
    if engine == "hypercorn":
        return "hypercorn"
    if engine == "asyncio":
        if cls.websocket is not FakeServer.websocket or cls.handshake is not FakeServer.handshake:
            raise FakeServerError(
                f"{name} serves WebSockets, which engine='asyncio' does not: use engine='picows' "
                "or engine='hypercorn'"
            )
        return "asyncio"
    if engine != "picows":
        raise FakeServerError(f"engine must be one of {ENGINES}, got {engine!r}")
    if cls.http is not FakeServer.http:
        raise FakeServerError(
            f"{name} serves HTTP, which engine='picows' does not: use engine='hypercorn'"
        )
    if cls.handshake is FakeServer.handshake:
        raise FakeServerError(
            f"{name} decides its handshakes inside websocket(), which picows cannot wait for: "
            "use engine='hypercorn' (or give it a handshake() method)"
        )
    if importlib.util.find_spec("picows") is None:
        raise FakeServerError(
            "engine='picows' needs picows: pip install 'voicegraph[media]' "
            "or use engine='hypercorn'"
        )
    return "picows"
