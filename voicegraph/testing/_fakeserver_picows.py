"""FakeServer's picows engine: the fakes' WebSocket side on picows, asyncio only (picows is).

Each connection is a :class:`~voicegraph.server._media_picows.PicowsSocket` (the media
listener's socket) behind a :class:`~voicegraph.testing.fakeserver.WebSocketPeer`. picows asks
for the handshake's verdict inside its callback, so the fake's synchronous
:meth:`~voicegraph.testing.fakeserver.FakeServer.handshake` answers it there; the accepted
connection's :meth:`~voicegraph.testing.fakeserver.FakeServer.websocket` runs as a task in the
fake's task group once picows has sent the 101.

What Hypercorn does and picows would do differently is made the same here (a plain HTTP
``GET`` gets the default 404; a failing ``websocket`` is logged and its socket closed with 1000)
or refused with :class:`~voicegraph.testing.fakeserver.FakeServerError` (a close code or reason
picows cannot send).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote

import anyio
from picows import (
    WSCloseCode,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from voicegraph.server._media_picows import PicowsSocket
from voicegraph.wsio import SocketClosed

from .fakeserver import FakeServerError, Refuse, WebSocketPeer, logger

if TYPE_CHECKING:
    from .fakeserver import FakeServer

__all__ = ["serve_picows"]

_CLOSE_CODES = frozenset(code.value for code in WSCloseCode if code.value >= 1000)
MAX_REASON = 120
"""Bytes of a close reason picows sends (the frame allows 123)."""
HANDSHAKE_TIMEOUT = 5.0
"""Seconds a client has to send its whole handshake request."""


class _PicowsPeer(WebSocketPeer):
    """A :class:`WebSocketPeer` over a picows socket (accepted by ``handshake``)."""

    def __init__(self, request: WSUpgradeRequest, headers: dict[str, str], sock: PicowsSocket):
        path, _, query = request.path.decode("latin-1").partition("?")
        super().__init__(unquote(path), query, headers)
        self._sock = sock

    async def accept(self, headers: Mapping[str, str] | None = None) -> None:
        self._check_undecided()  # handshake() decided before this peer could exist

    async def reject(
        self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> None:
        self._check_undecided()

    async def receive(self) -> str | bytes:
        if self.closed:
            raise SocketClosed(self.close_code, "closed")
        try:
            return await self._sock.receive()
        except SocketClosed as exc:
            self.closed = True
            self.close_code = exc.code
            raise

    async def send(self, message: str | bytes) -> None:
        if self.closed:
            raise SocketClosed(self.close_code, "closed")
        await self._sock.send(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        if code not in _CLOSE_CODES or len(reason.encode()) > MAX_REASON:
            # picows would send 1000 or cut the reason: say so rather than differ from Hypercorn
            raise FakeServerError(
                f"engine='picows' closes with a standard code (1000-1014) and a reason of at "
                f"most {MAX_REASON} bytes, not {code} {reason!r}: use engine='hypercorn'"
            )
        self.closed = True
        self.close_code = code
        await self._sock.close(code, reason)


async def serve_picows(
    fake: FakeServer,
    sock: socket.socket,
    tg: anyio.abc.TaskGroup,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``fake``'s WebSocket side on the bound ``sock`` until cancelled; each accepted
    connection runs in ``tg`` (the fake's task group, cancelled when it stops)."""

    def judge(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if headers.get("upgrade", "").lower() != "websocket":
            # Hypercorn would hand a plain request to FakeServer.http, which no fake on this
            # engine overrides (checked at construction): its default answer.
            return _refusal(Refuse(404, body=b"not found"))
        ws = PicowsSocket(fake.max_message)
        peer = _PicowsPeer(request, headers, ws)
        verdict = fake.handshake(peer)
        if verdict is None:
            raise FakeServerError(f"{type(fake).__name__}.handshake() decided nothing")
        if isinstance(verdict, Refuse):
            return _refusal(verdict)
        peer.state = verdict.state
        ws.on_connected = lambda _: started(peer)
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(verdict.headers), ws
        )

    def started(peer: _PicowsPeer) -> None:
        peer.accepted = True
        tg.start_soon(serve, peer)

    async def serve(peer: _PicowsPeer) -> None:
        try:
            await fake.websocket(peer)
        except SocketClosed:
            pass
        except Exception:  # as on Hypercorn: logged, and the socket closed as below
            logger.exception("%s failed serving a WebSocket", type(fake).__name__)
        finally:
            with anyio.CancelScope(shield=True):
                await peer.close()

    server = await ws_create_server(
        judge,
        sock=sock,
        websocket_handshake_timeout=HANDSHAKE_TIMEOUT,
        max_frame_size=fake.max_message,
        use_aiofastnet=False,
    )
    task_status.started()
    try:
        await anyio.sleep_forever()
    finally:
        server.close()


def _refusal(refuse: Refuse) -> WSUpgradeResponseWithListener:
    response = WSUpgradeResponse.create_error_response(refuse.status, refuse.body, refuse.headers)
    return WSUpgradeResponseWithListener(response, None)
