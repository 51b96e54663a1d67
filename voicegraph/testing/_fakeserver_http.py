"""FakeServer's asyncio engine: HTTP/1.1 for fakes that serve only HTTP, on a plain asyncio
protocol (asyncio only).

On the load side of a benchmark a request through Hypercorn waits for several turns of the
event loop (its connection task, its ASGI queues, the app's task) before the fake sees it; here
the request is parsed in the protocol's callback and one task per connection runs the fake's
:meth:`~voicegraph.testing.fakeserver.FakeServer.http`, as Hypercorn would, through the same ASGI
messages (so both engines answer alike).

What it speaks: keep-alive (HTTP/1.0 and ``Connection: close`` close after the response),
pipelined requests in order, request bodies by ``Content-Length`` (a chunked request body gets
``501``: the clients the fakes serve send lengths), responses with their ``content-length`` as
given or else chunked. A head over 64 KiB gets ``431``, a body over the fake's ``max_body``
``413``; both close the connection. A handler that fails before its response starts gets
``500``; one that fails after drops the connection without the last chunk, as Hypercorn does.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import anyio

from voicegraph.backends import Waker, new_waker

if TYPE_CHECKING:
    from .fakeserver import FakeServer

__all__ = ["serve_http"]

MAX_HEAD = 64 * 1024
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
}


class _Request:
    __slots__ = ("body", "close", "scope")

    def __init__(self, scope: dict[str, Any], body: bytes, close: bool) -> None:
        self.scope, self.body, self.close = scope, body, close


class _Connection(asyncio.Protocol):
    """One client connection: parses requests as bytes arrive; a task answers them in order."""

    def __init__(self, fake: FakeServer, arrived: _Arrivals) -> None:
        self.fake, self.arrived = fake, arrived
        self.buf = bytearray()
        self.requests: collections.deque[_Request] = collections.deque()
        # made by the connection's task (a protocol callback has no backend to ask); a wake
        # before it exists is not needed: the task checks its condition before it waits
        self.waker: Waker | None = None
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] | None = None
        self.lost = False
        self.refused = False  # a malformed or oversized request: no more parsing

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else None
        self.arrived.add(self)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        self.buf += data
        while not self.refused:
            request = self._parse()
            if request is None:
                break
            self.requests.append(request)
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()

    def _wake(self) -> None:
        if self.waker is not None:
            self.waker.wake()

    # -- parsing

    def _parse(self) -> _Request | None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._refuse(431, b"request head too large")
            return None
        if end > MAX_HEAD:
            self._refuse(431, b"request head too large")
            return None
        lines = bytes(self.buf[:end]).split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not name or name != name.strip():
                    raise ValueError(line)
                headers.append((name.lower(), value.strip()))
        except ValueError:
            self._refuse(400, b"malformed request")
            return None
        fields = dict(headers)
        if b"transfer-encoding" in fields:
            self._refuse(501, b"this fake reads request bodies by content-length only")
            return None
        try:
            length = int(fields.get(b"content-length", b"0"))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self._refuse(400, b"bad content-length")
            return None
        if length > self.fake.max_body:
            self._refuse(413, b"request body too large")
            return None
        if len(self.buf) < end + 4 + length:
            return None
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        path, _, query = target.partition("?")
        connection = fields.get(b"connection", b"").lower()
        close = version == "HTTP/1.0" or connection == b"close"
        scope = {
            "type": "http",
            "http_version": version.removeprefix("HTTP/"),
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "headers": headers,
            "client": self.peer,
            "server": ("127.0.0.1", self.fake.port),
        }
        return _Request(scope, body, close)

    def _refuse(self, status: int, text: bytes) -> None:
        self.refused = True
        self._write_response(status, text)
        if self.transport is not None:
            self.transport.close()

    def _write_response(self, status: int, text: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS.get(status, b""), len(text), text)
        )

    # -- answering

    async def _next(self, waker: Waker) -> _Request | None:
        while not self.requests:
            if self.lost or self.refused:
                return None
            await waker.wait()
        return self.requests.popleft()

    async def _serve(self) -> None:
        self.waker = waker = new_waker()
        try:
            while (request := await self._next(waker)) is not None:
                if not await self._answer(request, waker) or request.close:
                    break
        finally:
            if self.transport is not None:
                self.transport.close()

    async def _answer(self, request: _Request, waker: Waker) -> bool:
        """Run the fake's handler for ``request``; ``False``: the connection must close."""
        transport = self.transport
        assert transport is not None
        state = {"started": False, "chunked": False, "done": False}
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            while not self.lost:  # nothing more to read: only the client's leaving is news
                await waker.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if self.lost:
                return  # writes after a disconnect are dropped, as Hypercorn drops them
            if message["type"] == "http.response.start":
                status = int(message["status"])
                names = {bytes(k).lower() for k, _ in message.get("headers", [])}
                head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
                head += [bytes(k) + b": " + bytes(v) + b"\r\n" for k, v in message["headers"]]
                if b"content-length" not in names:
                    state["chunked"] = True
                    head.append(b"transfer-encoding: chunked\r\n")
                if request.close:
                    head.append(b"connection: close\r\n")
                transport.write(b"".join(head) + b"\r\n")
                state["started"] = True
                return
            body = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if state["chunked"]:
                out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
                transport.write(out + (b"" if more else b"0\r\n\r\n"))
            elif body:
                transport.write(body)
            if not more:
                state["done"] = True

        try:
            await self.fake._serve_http(request.scope, receive, send)
        except Exception:
            from .fakeserver import logger

            logger.exception("fake %s failed", type(self.fake).__name__)
            if not state["started"]:
                self._write_response(500, b"fake handler failed")
            return False
        return bool(state["done"]) and not self.lost


class _Arrivals:
    """New connections, handed from the protocol's callback (where no task runs, so anyio
    cannot start one) to the task that starts their tasks."""

    def __init__(self, waker: Waker) -> None:
        self.new: collections.deque[_Connection] = collections.deque()
        self.waker = waker

    def add(self, conn: _Connection) -> None:
        self.new.append(conn)
        self.waker.wake()

    async def next(self) -> _Connection:
        while not self.new:
            await self.waker.wait()
        return self.new.popleft()


async def serve_http(
    fake: FakeServer,
    sock: Any,
    tg: anyio.abc.TaskGroup,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``fake``'s HTTP on the listening ``sock`` until cancelled; connections' tasks run
    in ``tg`` (the fake's, cancelled when it stops)."""
    loop = asyncio.get_running_loop()
    arrived = _Arrivals(new_waker())
    server = await loop.create_server(lambda: _Connection(fake, arrived), sock=sock)
    task_status.started()
    try:
        while True:
            tg.start_soon((await arrived.next())._serve)
    finally:
        server.close()
