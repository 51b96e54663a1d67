"""An in-memory :class:`~voicegraph.wsio.MessageSocket` pair, for testing anything that talks
over a socket (carrier edges, provider nodes) without a network.

Messages keep their type (``str`` stays text, ``bytes`` stays binary) and order. Each direction
is bounded (``capacity`` messages): a sender waits when its peer is that far behind, as a real
socket's send buffer would make it. Closing either end works like a WebSocket close: the peer
still receives what was sent before the close, then :class:`~voicegraph.wsio.SocketClosed` with
the close code and reason; sends after the close raise ``SocketClosed`` on both ends.
"""

from __future__ import annotations

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from voicegraph.wsio import SocketClosed

__all__ = ["MemorySocket", "socket_pair"]


class _Shared:
    __slots__ = ("closed_by", "code", "reason")

    def __init__(self) -> None:
        self.closed_by: MemorySocket | None = None
        self.code: int | None = None
        self.reason = ""


class MemorySocket:
    """One end of a :func:`socket_pair`. ``close_code``/``close_reason`` report how the pair was
    closed (by either end); ``closed`` says whether it was."""

    def __init__(
        self,
        name: str,
        tx: MemoryObjectSendStream[str | bytes],
        rx: MemoryObjectReceiveStream[str | bytes],
        shared: _Shared,
    ) -> None:
        self.name = name
        self._tx = tx
        self._rx = rx
        self._shared = shared
        self.sent = 0

    @property
    def closed(self) -> bool:
        return self._shared.closed_by is not None

    @property
    def closed_by_me(self) -> bool:
        """Whether this end closed the pair first."""
        return self._shared.closed_by is self

    @property
    def close_code(self) -> int | None:
        return self._shared.code

    @property
    def close_reason(self) -> str:
        return self._shared.reason

    def _error(self) -> SocketClosed:
        return SocketClosed(self._shared.code, self._shared.reason)

    async def send(self, message: str | bytes) -> None:
        """Queue ``message`` for the peer; waits while the peer is ``capacity`` behind."""
        if not isinstance(message, (str, bytes)):
            raise TypeError(f"a socket message is str or bytes, not {type(message).__name__}")
        if self.closed:
            raise self._error()
        try:
            await self._tx.send(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._error() from None
        self.sent += 1

    async def receive(self) -> str | bytes:
        """The next message from the peer; ``SocketClosed`` once closed and drained."""
        if self.closed_by_me:
            raise self._error()
        try:
            return await self._rx.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise self._error() from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close both directions (idempotent; the first close's code and reason stick)."""
        shared = self._shared
        if shared.closed_by is None:
            shared.closed_by, shared.code, shared.reason = self, code, reason
        self._tx.close()
        self._rx.close()

    def __repr__(self) -> str:
        state = f"closed {self.close_code}" if self.closed else "open"
        return f"<MemorySocket {self.name} {state}>"


def socket_pair(
    capacity: int = 64, names: tuple[str, str] = ("server", "client")
) -> tuple[MemorySocket, MemorySocket]:
    """Two connected in-memory sockets: what one sends, the other receives."""
    a_tx, b_rx = anyio.create_memory_object_stream[str | bytes](capacity)
    b_tx, a_rx = anyio.create_memory_object_stream[str | bytes](capacity)
    shared = _Shared()
    return (
        MemorySocket(names[0], a_tx, a_rx, shared),
        MemorySocket(names[1], b_tx, b_rx, shared),
    )
