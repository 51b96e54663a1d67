"""The carrier's side of outbound audio: a playback buffer drained by a clock.

A carrier plays what it is sent at real time, in order, and acknowledges a mark (Twilio
``mark``, Plivo ``checkpoint``) only when playback reaches it. :class:`Playback` models exactly
that for the simulated callers: audio and marks queue in arrival order; a player task takes one
20 ms tick of audio at a time, appends it to what the caller heard, and sleeps until that audio
would have finished playing (``rate`` > 1 plays faster, for quick tests); a mark at the head of
the queue is acknowledged at once. ``clear`` drops unplayed audio and returns the marks still
pending, which Twilio echoes and Plivo silently forgets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from voicegraph.frames import AudioFormat

TICK = 0.02


class Playback:
    """Outbound playback of one simulated call (see module docs).

    ``on_mark(name)`` is awaited when playback reaches a mark. ``max_seconds`` bounds the
    queued audio (Twilio keeps ~10 minutes, Plivo ~60 s); audio beyond it is dropped and counted
    in :attr:`dropped_bytes`."""

    def __init__(
        self,
        fmt: AudioFormat,
        on_mark: Callable[[str], Awaitable[None]],
        *,
        rate: float = 1.0,
        max_seconds: float = 600.0,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"playback rate must be > 0, got {rate}")
        self.format = fmt
        self.rate = rate
        self.heard = bytearray()
        self.dropped_bytes = 0
        self._on_mark = on_mark
        self._queue: deque[bytes | str] = deque()
        self._queued_bytes = 0
        self._max_bytes = fmt.bytes_for(max_seconds)
        width = 1 if fmt.encoding == "mulaw" else 2
        self._tick_bytes = int(fmt.sample_rate * TICK) * width
        self._changed = anyio.Event()

    @property
    def heard_seconds(self) -> float:
        return self.format.duration_of(len(self.heard))

    @property
    def queued_seconds(self) -> float:
        """Audio received but not yet played."""
        return self.format.duration_of(self._queued_bytes)

    def add_audio(self, data: bytes) -> None:
        room = self._max_bytes - self._queued_bytes
        if len(data) > room:
            self.dropped_bytes += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        if data:
            self._queue.append(data)
            self._queued_bytes += len(data)
            self._notify()

    def add_mark(self, name: str) -> None:
        self._queue.append(name)
        self._notify()

    def clear(self) -> list[str]:
        """Drop unplayed audio; return the marks that were still pending, in order."""
        pending = [item for item in self._queue if isinstance(item, str)]
        self._queue.clear()
        self._queued_bytes = 0
        self._notify()
        return pending

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_changed(self) -> None:
        """Wait until audio is heard, a mark reached, or something queued or cleared."""
        await self._changed.wait()

    async def run(self) -> None:
        """Play forever (until cancelled)."""
        queue = self._queue
        deadline: float | None = None
        while True:
            if not queue:
                deadline = None  # an underrun: playback restarts when audio comes
                await self._changed.wait()
                continue
            head = queue[0]
            if isinstance(head, str):
                queue.popleft()
                await self._on_mark(head)
                self._notify()
                continue
            piece = head[: self._tick_bytes]
            if len(piece) == len(head):
                queue.popleft()
            else:
                queue[0] = head[len(piece) :]
            self._queued_bytes -= len(piece)
            self.heard += piece
            self._notify()
            now = anyio.current_time()
            deadline = (
                max(deadline or now, now - 1.0) + self.format.duration_of(len(piece)) / self.rate
            )
            await anyio.sleep_until(deadline)
