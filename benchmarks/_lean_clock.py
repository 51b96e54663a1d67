"""The one 20 ms clock of a load process of the concurrency benchmark: each tick runs every
lean call's :meth:`~benchmarks._lean_caller.LeanCall.tick` from one timer callback, instead of
a task or timer per call (see :mod:`benchmarks._lean_caller`)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ._lean_caller import CHUNK

if TYPE_CHECKING:
    from ._lean_caller import LeanCall

__all__ = ["Clock"]

TIMER_GRAIN = 0.001  # uvloop's timers fire on a millisecond grid, up to a millisecond early


class Clock:
    """The 20 ms clock of a load process: each tick runs :meth:`LeanCall.tick` of every call
    on the line (a call joins once its stream is open, and leaves when it ends). Ticks keep
    their schedule (to the event loop's millisecond): a late one is followed at once by the
    next (the audio still leaves at 20 ms per chunk on average); more than a second behind,
    the clock starts afresh. While :attr:`recording`, how late each tick ran is counted
    (one bucket per millisecond, bounded)."""

    def __init__(self) -> None:
        self.calls: dict[LeanCall, None] = {}  # an ordered set
        self.recording = False
        self.late_ms = [0] * 1001  # bucket i: i ms late (the last: a second or more)
        self.restarts = 0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due = time.monotonic() + CHUNK
        self._handle = asyncio.get_running_loop().call_later(CHUNK, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        now = time.monotonic()
        late = now - self._due
        loop = asyncio.get_running_loop()
        if late < -TIMER_GRAIN:  # not yet spoken
            self._handle = loop.call_later(max(-late, TIMER_GRAIN), self._fire)
            return
        if self.recording:
            self.late_ms[min(max(int(late * 1000), 0), 1000)] += 1
        for call in tuple(self.calls):
            call.tick(now)
        if late > 1.0:
            self.restarts += 1
            self._due = now
        self._due += CHUNK
        self._handle = loop.call_later(max(self._due - time.monotonic(), 0.0), self._fire)

    def lateness(self) -> dict[str, float]:
        """How late the recorded ticks ran: p50, p99 and max in ms (bucket floors), and their
        count."""
        n = sum(self.late_ms)
        out: dict[str, float] = {"ticks": n, "restarts": self.restarts}
        for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
            rank, seen = max(1, round(q * n)), 0
            for ms, count in enumerate(self.late_ms):
                seen += count
                if seen >= rank:
                    out[name] = float(ms)
                    break
            else:
                out[name] = float("nan")
        return out
