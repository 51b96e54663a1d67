"""The media listener on picows: a :class:`~voicegraph.wsio.MessageSocket` over picows's
callback API, and its server. asyncio only (picows is), like the other backend adapters.

picows hands over each frame in a callback. With a receiver set (:class:`~voicegraph.wsio.PushSocket`,
what the carrier reader uses) each whole message goes straight to it from that callback; else
the socket keeps whole messages in a short queue for ``receive`` and stops reading from the peer
while it is full (back-pressure reaches TCP instead of memory).
A write never blocks in picows: it lands in the transport's buffer, and the buffer's high
water mark (``pause_writing``) is what a blocked peer looks like here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from ..wsio import SocketClosed
from .carriers import WRITE_TIMEOUT, StreamGrant, StreamRefusal, judge_handshake, run_stream

if TYPE_CHECKING:
    from .agent_runtime import AgentRuntime
    from .media import MediaListener

__all__ = ["PicowsSocket", "serve_picows"]

logger = logging.getLogger("voicegraph.server")

INBOX = 64
"""Whole messages queued per socket before reading from the peer pauses (1.3 s of media)."""
WRITE_BUFFER = 256 * 1024
"""Bytes queued for the peer before a write waits (about 20 s of µ-law media as JSON)."""


class PicowsSocket(WSListener):
    """One accepted carrier socket. ``receive`` returns the messages that arrived before the
    peer left, then raises ``SocketClosed``; ``send`` raises it once closed, and ends the call
    (``on_blocked``) when the peer has not read for ``write_timeout`` seconds; ``close`` is
    idempotent and never raises."""

    def __init__(self, max_message: int, write_timeout: float = WRITE_TIMEOUT) -> None:
        super().__init__()
        self.max_message = max_message
        self.write_timeout = write_timeout
        self.closed = False
        self.close_code: int | None = None
        self.blocked = False
        self.on_blocked: Callable[[], None] | None = None
        self.on_connected: Callable[[PicowsSocket], None] | None = None
        self._transport: WSTransport | None = None
        self._inbox: deque[str | bytes] = deque()
        self._parts: list[bytes] = []
        self._parts_text = False
        self._parts_size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._gone = False  # the peer closed or the connection broke
        self._gone_reason = ""
        self._reading = True
        self._on_message: Callable[[str | bytes], None] | None = None
        self._on_closed: Callable[[SocketClosed], None] | None = None
        self._told_closed = False
        self._writable = asyncio.Event()
        self._writable.set()

    # ------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        transport.underlying_transport.set_write_buffer_limits(high=WRITE_BUFFER)
        if self.on_connected is not None:
            self.on_connected(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            if frame.fin and not self._parts:
                if kind == WSMsgType.BINARY:
                    self._push(frame.get_payload_as_bytes())
                else:
                    try:
                        self._push(frame.get_payload_as_utf8_text())
                    except UnicodeDecodeError:
                        self._lose(transport, WSCloseCode.INVALID_TEXT)
            else:  # the first piece of a fragmented message
                self._parts, self._parts_text, self._parts_size = [], kind == WSMsgType.TEXT, 0
                self._part(frame)
        elif kind == WSMsgType.CONTINUATION:
            self._part(frame)
        elif kind == WSMsgType.CLOSE:
            got: Any = frame.get_close_code()  # an int for codes picows has no name for
            code = int(getattr(got, "value", got))
            self.close_code = code or None
            self._gone_reason = frame.get_close_reason() or ""
            self._lose(transport, _close_code(code))  # the close handshake: echo its code

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._gone = True
        self._writable.set()  # a waiting write sees the socket closed
        self._wake()
        self._tell_closed()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --------------------------------------------------------------- MessageSocket

    async def receive(self) -> str | bytes:
        if self.closed:
            raise SocketClosed(self.close_code, "closed")
        while not self._inbox:
            if self.closed or self._gone:
                raise SocketClosed(self.close_code, self._gone_reason or "closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._inbox.popleft()
        if not self._reading and len(self._inbox) <= INBOX // 2 and self._transport is not None:
            self._reading = True
            self._transport.underlying_transport.resume_reading()
        return message

    # ------------------------------------------------------------------ PushSocket

    def set_receiver(
        self,
        on_message: Callable[[str | bytes], None] | None,
        on_closed: Callable[[SocketClosed], None] | None,
    ) -> None:
        """Hand every whole message to ``on_message`` from picows's callback (queued ones
        first) and the socket's end to ``on_closed``; ``None`` queues for ``receive`` again."""
        self._on_message, self._on_closed = on_message, on_closed
        if on_message is None:
            return
        inbox = self._inbox
        while inbox and self._on_message is on_message:
            on_message(inbox.popleft())
        if not self._reading and self._transport is not None:
            self._reading = True
            self._transport.underlying_transport.resume_reading()
        if self._gone:
            self._tell_closed()

    async def send(self, message: str | bytes) -> None:
        transport = self._transport
        if self.closed or self._gone or transport is None:
            raise SocketClosed(self.close_code, "closed")
        if not self._writable.is_set():
            with anyio.move_on_after(self.write_timeout):
                await self._writable.wait()
            if not self._writable.is_set():
                # A peer that stops reading would otherwise hold the call (and its slot)
                # until TCP gives up, which can take many minutes.
                self.closed = self.blocked = True
                transport.disconnect(graceful=False)
                if self.on_blocked is not None:
                    self.on_blocked()
                raise SocketClosed(
                    None, f"peer stopped reading: a write blocked {self.write_timeout:g}s"
                )
            if self._gone:
                raise SocketClosed(self.close_code, "closed")
        if isinstance(message, str):
            transport.send(WSMsgType.TEXT, message)
        else:
            transport.send(WSMsgType.BINARY, message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        transport = self._transport
        if transport is None or self._gone:
            return
        try:
            transport.send_close(_close_code(code), reason.encode()[:120])
            transport.disconnect(graceful=self._writable.is_set())
        except Exception:  # close never raises (MessageSocket contract)
            pass

    # ---------------------------------------------------------------------- inside

    def _push(self, message: str | bytes) -> None:
        on_message = self._on_message
        if on_message is not None:
            # No queue and no pause_reading on this path: the receiver bounds what it keeps
            # (the carrier reader's backlog drops the oldest caller audio).
            if not self.closed:  # after our own close, as ``receive`` would raise
                on_message(message)
            return
        self._inbox.append(message)
        if self._reading and len(self._inbox) >= INBOX and self._transport is not None:
            self._reading = False
            self._transport.underlying_transport.pause_reading()
        self._wake()

    def _part(self, frame: WSFrame) -> None:
        self._parts_size += frame.payload_size
        if self._parts_size > self.max_message:
            self._parts = []
            self._gone_reason = "message too big"
            assert self._transport is not None
            self._lose(self._transport, WSCloseCode.MESSAGE_TOO_BIG)
            return
        self._parts.append(frame.get_payload_as_bytes())
        if frame.fin:
            whole = b"".join(self._parts)
            self._parts = []
            if self._parts_text:
                try:
                    self._push(whole.decode())
                except UnicodeDecodeError:
                    self._lose(self._transport, WSCloseCode.INVALID_TEXT)  # type: ignore[arg-type]
            else:
                self._push(whole)

    def _lose(self, transport: WSTransport, code: Any) -> None:
        """End the connection from a callback (peer's close, oversize, bad text)."""
        self._gone = True
        if not transport.is_close_frame_sent:
            transport.send_close(code)
        transport.disconnect()
        self._wake()
        self._tell_closed()

    def _tell_closed(self) -> None:
        on_closed = self._on_closed
        if on_closed is not None and not self._told_closed:
            self._told_closed = True
            on_closed(SocketClosed(self.close_code, self._gone_reason or "closed"))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _close_code(code: int) -> Any:
    """``code`` as picows takes it (it knows the standard codes only): else 1000."""
    try:
        return WSCloseCode(code) if code else WSCloseCode.OK
    except ValueError:
        return WSCloseCode.OK


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
