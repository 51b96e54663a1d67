"""Counters, time-to-first-byte and the bounded outage buffer of a provider node."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import anyio

__all__ = ["ProviderMetrics", "SendBuffer"]


class ProviderMetrics:
    """Counters and time-to-first-byte of one provider node.

    A request (an utterance, a turn) starts with :meth:`request_started`; its first response
    byte calls :meth:`first_byte`, which records the TTFB once. Pending requests and the TTFB
    history are bounded."""

    __slots__ = (
        "buffered_high_water",
        "connects",
        "dropped_bytes",
        "dropped_messages",
        "last_ttfb",
        "on_first_byte",
        "ttfb",
        "_pending",
    )

    MAX_PENDING = 256

    def __init__(self, history: int = 1000) -> None:
        self.connects = 0
        self.dropped_messages = 0
        self.dropped_bytes = 0
        self.buffered_high_water = 0
        self.last_ttfb: float | None = None
        self.ttfb: deque[float] = deque(maxlen=history)
        self._pending: dict[object, float] = {}
        self.on_first_byte: Callable[[float], None] | None = None
        """Called with each recorded TTFB (the provider base publishes it as an event)."""

    @property
    def reconnects(self) -> int:
        """Successful connections after the first one."""
        return max(0, self.connects - 1)

    def request_started(self, key: object, at: float | None = None) -> None:
        """Start timing request ``key`` (at ``anyio.current_time()`` unless ``at`` is given)."""
        if key in self._pending:
            return
        if len(self._pending) >= self.MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        self._pending[key] = anyio.current_time() if at is None else at

    def first_byte(self, key: object) -> float | None:
        """Record the first response of ``key``; returns its TTFB, or ``None`` if ``key`` was
        not pending (not started, or already answered)."""
        t0 = self._pending.pop(key, None)
        if t0 is None:
            return None
        value = anyio.current_time() - t0
        self.last_ttfb = value
        self.ttfb.append(value)
        if self.on_first_byte is not None:
            self.on_first_byte(value)
        return value

    def oldest_pending(self) -> float | None:
        """When the oldest unanswered request started (``None``: nothing is pending)."""
        return min(self._pending.values(), default=None)

    def restart_pending(self, at: float) -> None:
        """Time every pending request from ``at`` (after a reconnect gave them a new chance)."""
        for key in self._pending:
            self._pending[key] = at

    def request_abandoned(self, key: object) -> None:
        """Forget ``key`` without recording a TTFB (e.g. cancelled before any response)."""
        self._pending.pop(key, None)

    def as_dict(self) -> dict[str, object]:
        values = list(self.ttfb)
        return {
            "connects": self.connects,
            "reconnects": self.reconnects,
            "dropped_messages": self.dropped_messages,
            "dropped_bytes": self.dropped_bytes,
            "buffered_high_water": self.buffered_high_water,
            "last_ttfb": self.last_ttfb,
            "ttfb_count": len(values),
            "ttfb_mean": sum(values) / len(values) if values else None,
        }


class SendBuffer:
    """Bounded FIFO of wire messages held while the socket is down.

    Past ``max_messages`` or ``max_bytes`` the oldest messages are dropped and counted in the
    given :class:`ProviderMetrics`."""

    __slots__ = ("_items", "_nbytes", "max_bytes", "max_messages", "metrics")

    def __init__(self, max_messages: int, max_bytes: int, metrics: ProviderMetrics) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._items: deque[str | bytes] = deque()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def append(self, message: str | bytes) -> None:
        size = len(message)
        if size > self.max_bytes or self.max_messages == 0:
            self._count_drop(size)
            return
        self._items.append(message)
        self._nbytes += size
        while len(self._items) > self.max_messages or self._nbytes > self.max_bytes:
            self._count_drop(len(self._pop()))
        n = len(self._items)
        if n > self.metrics.buffered_high_water:
            self.metrics.buffered_high_water = n

    def binary_bytes(self) -> int:
        """Bytes held in binary messages (e.g. audio), for mapping stream times on reconnect."""
        return sum(len(m) for m in self._items if isinstance(m, bytes))

    def popleft(self) -> str | bytes:
        return self._pop()

    def appendleft(self, message: str | bytes) -> None:
        """Put back a message whose send failed (it was the oldest)."""
        self._items.appendleft(message)
        self._nbytes += len(message)

    def clear_as_dropped(self) -> int:
        """Drop everything (counted); returns how many messages were dropped."""
        n = len(self._items)
        self.metrics.dropped_messages += n
        self.metrics.dropped_bytes += self._nbytes
        self._items.clear()
        self._nbytes = 0
        return n

    def _pop(self) -> str | bytes:
        m = self._items.popleft()
        self._nbytes -= len(m)
        return m

    def _count_drop(self, size: int) -> None:
        self.metrics.dropped_messages += 1
        self.metrics.dropped_bytes += size
