"""The media listener on picows: its server, and the accepted carrier socket
(:class:`PicowsSocket`, the shared picows socket of :mod:`voicegraph._picows` with the carrier's
write timeout and a hook that starts the call). asyncio only (picows is), like the other
backend adapters.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from picows import (
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from .. import _picows
from .._picows import INBOX, WRITE_BUFFER
from .carriers import WRITE_TIMEOUT, StreamGrant, StreamRefusal, judge_handshake, run_stream

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime
    from .media import MediaListener

__all__ = ["INBOX", "WRITE_BUFFER", "PicowsSocket", "serve_picows"]

logger = logging.getLogger("voicegraph.server")


class PicowsSocket(_picows.PicowsSocket):
    """One accepted carrier socket: ``send`` ends the call (``on_blocked``) when the peer has
    not read for ``write_timeout`` seconds; ``close`` sends the close frame and drops the
    connection at once. ``on_connected`` is called once the handshake is done."""

    def __init__(self, max_message: int, write_timeout: float = WRITE_TIMEOUT) -> None:
        super().__init__(max_message, write_timeout)
        self.write_timeout: float = write_timeout
        self.on_connected: Callable[[PicowsSocket], None] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        if self.on_connected is not None:
            self.on_connected(self)


async def serve_picows(
    listener: MediaListener, runtime: AgentRuntime, sock: socket.socket, calls: Any
) -> asyncio.Server:
    """Start picows on the bound ``sock``; each accepted stream's call runs in ``calls`` (a
    task group). Returns the server (close it to stop accepting)."""

    def judge(request: WSUpgradeRequest) -> Any:
        path = request.path.decode("latin-1").split("?", 1)[0]
        headers = {k.lower(): v for k, v in request.headers.items()}
        url = listener.stream_url(runtime, "ws", headers) + path
        verdict = judge_handshake(runtime, path, headers, url)
        if isinstance(verdict, StreamRefusal):
            response = WSUpgradeResponse.create_error_response(
                verdict.status, verdict.body.encode()
            )
            return WSUpgradeResponseWithListener(response, None)
        ws = PicowsSocket(listener.max_message, runtime.write_timeout)
        ws.on_connected = partial(started, verdict, path)
        return ws

    def started(grant: StreamGrant, path: str, ws: PicowsSocket) -> None:
        # Counted as waiting at once (run_stream counts it again until its start message),
        # so handshakes handled in one loop tick cannot all pass max_waiting_streams.
        runtime.waiting_streams += 1
        calls.start_soon(run, ws, grant, path)

    async def run(ws: PicowsSocket, grant: StreamGrant, path: str) -> None:
        runtime.waiting_streams -= 1
        await run_stream(runtime, ws, grant, path)

    return await ws_create_server(
        judge,
        sock=sock,
        websocket_handshake_timeout=listener.handshake_timeout,
        max_frame_size=listener.max_message,
        use_aiofastnet=False,
    )
