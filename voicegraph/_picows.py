"""A :class:`~voicegraph.wsio.MessageSocket` over picows's callback API, for both ends: the
media listener's accepted carrier sockets (:mod:`voicegraph.server._media_picows`) and the
provider client sockets (:func:`connect_picows`, what :func:`voicegraph.wsio.connect_websocket`
opens on asyncio). asyncio only (picows is), like the other backend adapters.

picows hands over each frame in a callback, with no reader task. With a receiver set
(:class:`~voicegraph.wsio.PushSocket`, what the carrier reader uses) each whole message goes
straight to it from that callback; else the socket keeps whole messages in a short queue for
``receive`` and stops reading from the peer while it is full (back-pressure reaches TCP instead
of memory). A write never blocks in picows: it lands in the transport's buffer, and the
buffer's high-water mark (``pause_writing``) is what a slow peer looks like here; ``send`` then
waits until the buffer drains (or, with a ``write_timeout``, gives up on the peer).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSHandshakeError,
    WSListener,
    WSMsgType,
    WSTransport,
)

from .wsio import SocketClosed, describe, handshake_refused

__all__ = ["INBOX", "WRITE_BUFFER", "PicowsSocket", "connect_picows"]

INBOX = 64
"""Whole messages queued per socket before reading from the peer pauses (1.3 s of carrier
media; for a provider, a few seconds of results or TTS audio)."""
WRITE_BUFFER = 256 * 1024
"""Bytes queued for the peer before a write waits (about 20 s of µ-law media as JSON, or of
STT audio)."""


# looked up once: an enum attribute per frame costs more than the comparison
_TEXT, _BINARY = WSMsgType.TEXT, WSMsgType.BINARY


class PicowsSocket(WSListener):
    """One picows WebSocket. ``receive`` returns the messages that arrived before the socket
    closed, then raises ``SocketClosed`` with the peer's close code and reason, else ours, else
    1006; ``send`` raises it once closed and waits while the write buffer is over its high-water
    mark -- for at most ``write_timeout`` seconds when one is given, after which the peer is
    dropped (``blocked`` reads True and ``on_blocked`` has been called); ``close`` is idempotent,
    never raises, and waits up to ``close_timeout`` seconds for the peer's close frame (0: send
    ours and drop the connection at once, as a server may).

    ``max_message`` bounds a whole message, fragments included: a larger one closes the socket
    with 1009. Set picows's ``max_frame_size`` to it as well, so one oversized frame is refused
    before it is buffered."""

    def __init__(
        self, max_message: int, write_timeout: float | None = None, close_timeout: float = 0.0
    ) -> None:
        super().__init__()
        self.max_message = max_message
        self.write_timeout = write_timeout
        self.close_timeout = close_timeout
        self.closed = False  # close() was called (or the peer was dropped)
        self.close_code: int | None = None  # the peer's close code, if its close frame came
        self.blocked = False
        self.on_blocked: Callable[[], None] | None = None
        self._transport: WSTransport | None = None
        self._inbox: deque[str | bytes] = deque()
        self._parts: list[bytes] = []
        self._parts_text = False
        self._parts_size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._gone = False  # the peer closed or the connection broke
        self._peer_reason = ""
        self._ours: tuple[int, str] | None = None  # the close frame we sent
        self._reading = True
        self._on_message: Callable[[str | bytes], None] | None = None
        self._on_closed: Callable[[SocketClosed], None] | None = None
        self._told_closed = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._disconnected = asyncio.Event()
        self._watch: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        transport.underlying_transport.set_write_buffer_limits(high=WRITE_BUFFER)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self._gone:
            return
        kind = frame.msg_type
        if kind is _BINARY or kind is _TEXT:
            if transport.is_close_frame_sent and not self.closed:
                # picows closed the socket on a protocol error (a frame over max_frame_size
                # among them) yet goes on parsing what follows: nothing after it counts
                self._lose(transport, WSCloseCode.PROTOCOL_ERROR, "")
            elif frame.payload_size > self.max_message:
                self._lose(transport, WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            elif frame.fin and not self._parts:  # a whole message: by far the usual case
                if kind is _BINARY:
                    self._push(frame.get_payload_as_bytes())
                else:
                    try:
                        self._push(frame.get_payload_as_utf8_text())
                    except UnicodeDecodeError:
                        self._lose(transport, WSCloseCode.INVALID_TEXT, "invalid UTF-8")
            else:  # the first piece of a fragmented message
                self._parts, self._parts_text, self._parts_size = [], kind is _TEXT, 0
                self._part(transport, frame)
        elif kind == WSMsgType.CONTINUATION:
            self._part(transport, frame)
        elif kind == WSMsgType.CLOSE:
            got: Any = frame.get_close_code()  # an int for codes picows has no name for
            code = int(getattr(got, "value", got))
            self.close_code = code or 1005  # RFC 6455: a close frame without a status
            self._peer_reason = frame.get_close_reason() or ""
            self._lose(transport, _close_code(code), "")  # the close handshake: echo its code

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._gone = True
        self._note_sent(transport)
        self._writable.set()  # a waiting write sees the socket closed
        self._disconnected.set()
        self._wake()
        self._tell_closed()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --------------------------------------------------------------- MessageSocket

    async def receive(self) -> str | bytes:
        while not self._inbox:
            if self.closed or self._gone:
                raise self.ended()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.closed:
            raise self.ended()
        message = self._inbox.popleft()
        if not self._reading and len(self._inbox) <= INBOX // 2 and self._transport is not None:
            self._reading = True
            self._transport.underlying_transport.resume_reading()
        return message

    async def send(self, message: str | bytes) -> None:
        transport = self._transport
        if self.closed or self._gone or transport is None:
            raise self.ended()
        if not self._writable.is_set():
            if self.write_timeout is None:
                await self._writable.wait()  # until the buffer drains or the socket closes
            else:
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
            if self.closed or self._gone:
                raise self.ended()
        if isinstance(message, str):
            transport.send(WSMsgType.TEXT, message)
        else:
            transport.send(WSMsgType.BINARY, message)

    def send_nowait(self, message: str | bytes) -> bool:
        """Send ``message`` now if that needs no wait: the socket is open and its write
        buffer under the high-water mark. False: nothing was sent (``send`` would wait, or
        raise)."""
        transport = self._transport
        if self.closed or self._gone or transport is None or not self._writable.is_set():
            return False
        try:
            transport.send(_TEXT if isinstance(message, str) else _BINARY, message)
        except Exception:  # nothing sent: ``send`` meets it again, in the caller's own task
            return False
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self._wake()  # a task blocked in receive sees the socket closed
        transport = self._transport
        if transport is None or self._gone:
            return
        try:
            if not transport.is_close_frame_sent:
                self._ours = (code, reason)
                transport.send_close(_close_code(code), reason.encode()[:120])
            if self.close_timeout > 0:
                # RFC 6455: the server closes TCP after echoing our close frame. Shielded, so
                # a cancelled caller still ends the connection cleanly; bounded all the same.
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.close_timeout):
                    await self._disconnected.wait()
                if not self._gone:  # no echo in time: nothing left worth flushing to it
                    transport.disconnect(graceful=False)
            elif not self._gone:
                transport.disconnect(graceful=self._writable.is_set())
        except Exception:  # close never raises (MessageSocket contract)
            pass

    def ended(self) -> SocketClosed:
        """How the socket ended: the peer's close frame, else ours, else an abnormal
        closure (1006), as the other clients report it."""
        if self.close_code is not None:
            return SocketClosed(self.close_code, self._peer_reason)
        if self._ours is not None:
            return SocketClosed(*self._ours)
        return SocketClosed(1006, "")

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

    def _part(self, transport: WSTransport, frame: WSFrame) -> None:
        self._parts_size += frame.payload_size
        if self._parts_size > self.max_message:
            self._parts = []
            self._lose(transport, WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        self._parts.append(frame.get_payload_as_bytes())
        if frame.fin:
            whole = b"".join(self._parts)
            self._parts = []
            if self._parts_text:
                try:
                    self._push(whole.decode())
                except UnicodeDecodeError:
                    self._lose(transport, WSCloseCode.INVALID_TEXT, "invalid UTF-8")
            else:
                self._push(whole)

    def _lose(self, transport: WSTransport, code: Any, reason: str) -> None:
        """End the connection from a callback (peer's close, oversize, bad text)."""
        self._gone = True
        if not transport.is_close_frame_sent:
            if self._ours is None:
                self._ours = (int(code), reason)
            transport.send_close(code, reason.encode())
        self._note_sent(transport)
        transport.disconnect()
        self._writable.set()
        self._wake()
        self._tell_closed()

    def _note_sent(self, transport: WSTransport) -> None:
        """Remember the close frame picows sent by itself (on a protocol error), if any."""
        if self._ours is None:
            sent = getattr(getattr(transport, "close_handshake", None), "sent", None)
            if sent is not None:
                self._ours = (int(sent.code), sent.reason or "")

    def _tell_closed(self) -> None:
        on_closed = self._on_closed
        if on_closed is not None and not self._told_closed:
            self._told_closed = True
            on_closed(self.ended())

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _close_code(code: int) -> Any:
    """``code`` as picows takes it (older releases know the standard codes only: else 1000)."""
    try:
        return WSCloseCode(code) if code else WSCloseCode.OK
    except ValueError:
        return WSCloseCode.OK


@asynccontextmanager
async def connect_picows(
    url: str,
    headers: Mapping[str, str] | None,
    *,
    tls: ssl.SSLContext | None,
    connect_timeout: float,
    max_message_size: int,
    close_timeout: float,
) -> AsyncIterator[PicowsSocket]:
    """A client :class:`PicowsSocket` to ``url``, with the contract of
    :func:`voicegraph.wsio.connect_websocket` (which checks the URL and picks the engine).

    No pings of our own (picows answers the peer's), no redirects, no proxy, no compression
    (picows has none) and no User-Agent header (picows sends none)."""
    from picows import ws_connect

    abandoned = False
    made: list[PicowsSocket] = []

    def listener() -> PicowsSocket:
        # picows calls this once the peer accepted the handshake. If we gave up meanwhile
        # (timeout, cancellation), raising here makes picows drop the connection instead of
        # leaving it open with nobody holding it.
        if abandoned:
            raise ConnectionAbortedError("the caller stopped waiting for the handshake")
        made.append(PicowsSocket(max_message_size, None, close_timeout))
        return made[0]

    try:
        with anyio.fail_after(connect_timeout):
            await ws_connect(
                listener,
                url,
                ssl_context=tls,
                extra_headers=dict(headers or {}),
                # a handshake left unanswered is dropped by picows itself after this long
                websocket_handshake_timeout=connect_timeout,
                max_frame_size=max_message_size,
                enable_auto_ping=False,  # keep-alive is the provider node's (both backends)
                max_redirects=0,  # a redirect is a refused handshake (as on trio-websocket)
                proxy=None,
                use_aiofastnet=False,  # the event loop's own transports, as the media listener
            )
    except BaseException as exc:
        abandoned = True
        if made and made[0]._transport is not None:  # accepted just as we gave up
            made[0]._transport.disconnect(graceful=False)
        error = _connect_error(exc, connect_timeout)
        if error is exc:
            raise
        # the cause stays chained where it is the reason (a refused connection, a bad reply)
        raise error from (exc if isinstance(error, SocketClosed) and error.code is None else None)
    if not made:  # picows returns without a listener when the peer hung up mid-handshake
        raise SocketClosed(
            None, "cannot connect: the server closed the connection in the handshake"
        )
    sock = made[0]
    if sock._transport is not None:
        # picows keeps a protocol error that dropped the connection for wait_disconnected(),
        # and asyncio logs it if nobody takes it: ``receive`` reports it instead
        sock._watch = asyncio.ensure_future(sock._transport.wait_disconnected())
        sock._watch.add_done_callback(_retrieve)
    try:
        yield sock
    finally:
        await sock.close()


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():  # taking the exception is what marks it as seen
        future.exception()


def _connect_error(exc: BaseException, connect_timeout: float) -> BaseException:
    """What ``connect_websocket`` raises for ``exc`` from picows's ``ws_connect`` (the same as
    the other clients); anything else (cancellation included) goes up as it is."""
    if isinstance(exc, TimeoutError):
        return TimeoutError(f"WebSocket connect timed out after {connect_timeout}s")
    if isinstance(exc, WSHandshakeError):
        status = getattr(getattr(exc, "response", None), "status", None)
        if status is not None and int(status) != 101:
            return handshake_refused(int(status))
    if isinstance(exc, WSError):
        return SocketClosed(None, f"handshake failed: {describe(exc)}")
    if isinstance(exc, OSError):
        return SocketClosed(None, f"cannot connect: {describe(exc)}")
    return exc
