"""The media listener on ``websockets``' asyncio server (``MediaListener(engine="websockets")``):
always installed, leaner than Hypercorn, heavier than picows. asyncio only.
"""

from __future__ import annotations

import socket
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..wsio import SocketClosed
from .carriers import WRITE_TIMEOUT, StreamGrant, StreamRefusal, judge_handshake, run_stream

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime
    from .media import MediaListener

__all__ = ["WebsocketsSocket", "serve_websockets"]

WRITE_BUFFER = 256 * 1024
"""Bytes queued for the peer before a write waits (as on picows)."""


class WebsocketsSocket:
    """One accepted carrier socket on a ``websockets`` server connection (MessageSocket
    semantics as :class:`~voicegraph.server.carriers.AsgiSocket`)."""

    def __init__(self, conn: Any, write_timeout: float = WRITE_TIMEOUT) -> None:
        self._conn = conn
        self.write_timeout = write_timeout
        self.closed = False
        self.blocked = False
        self.on_blocked: Callable[[], None] | None = None

    async def receive(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed

        if self.closed:
            raise SocketClosed(None, "closed")
        try:
            message: str | bytes = await self._conn.recv()
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise SocketClosed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
        return message

    async def send(self, message: str | bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        if self.closed:
            raise SocketClosed(None, "closed")
        try:
            with anyio.move_on_after(self.write_timeout) as scope:
                await self._conn.send(message)
        except ConnectionClosed as exc:
            self.closed = True
            raise SocketClosed(exc.rcvd.code if exc.rcvd else None, "closed") from None
        if scope.cancelled_caught:
            self.closed = self.blocked = True
            self._conn.transport.abort()
            if self.on_blocked is not None:
                self.on_blocked()
            raise SocketClosed(
                None, f"peer stopped reading: a write blocked {self.write_timeout:g}s"
            )

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            try:
                await self._conn.close(code, reason[:120])
            except Exception:  # close never raises (MessageSocket contract)
                pass


async def serve_websockets(
    listener: MediaListener, runtime: AgentRuntime, sock: socket.socket, calls: Any
) -> Any:
    """Start ``websockets``' server on the bound ``sock``. Its handler tasks run the calls
    (``calls`` is not needed: the server's close ends them). Returns the server."""
    from websockets.asyncio.server import serve

    grants: weakref.WeakKeyDictionary[Any, tuple[StreamGrant, str]] = weakref.WeakKeyDictionary()

    def judge(conn: Any, request: Any) -> Any:
        path = request.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        url = listener.stream_url(runtime, "ws", headers) + path
        verdict = judge_handshake(runtime, path, headers, url)
        if isinstance(verdict, StreamRefusal):
            return conn.respond(verdict.status, verdict.body)
        grants[conn] = (verdict, path)
        return None

    async def handler(conn: Any) -> None:
        grant, path = grants.pop(conn)
        await run_stream(runtime, WebsocketsSocket(conn, runtime.write_timeout), grant, path)

    return await serve(
        handler,
        sock=sock,
        process_request=judge,
        open_timeout=listener.handshake_timeout,
        max_size=listener.max_message,
        compression=None,
        ping_interval=None,
        write_limit=WRITE_BUFFER,
    )
