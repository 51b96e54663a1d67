"""The clock of a load process of the concurrency benchmark: each call's 20 ms tick
(:meth:`~benchmarks._lean_caller.LeanCall.tick`) runs from one shared timer, instead of a task
or timer per call (see :mod:`benchmarks._lean_caller`).

A carrier paces every call's stream on its own, so the media of many calls reaches a server
spread over each 20 ms, not all at one instant. The clock keeps that: it has ``phases`` slots
evenly spaced over the 20 ms, a call joins the slot with the fewest calls, and each firing of
the timer ticks one slot's calls. ``phases=1`` ticks every call at once: every 20 ms the server
gets one burst per load process (a harsher load than a carrier's, kept to measure bursts)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ._lean_caller import CHUNK

if TYPE_CHECKING:
    from ._lean_caller import LeanCall

__all__ = ["PHASES", "Clock"]

TIMER_GRAIN = 0.001  # uvloop's timers fire on a millisecond grid, up to a millisecond early
PHASES = 10  # slots per 20 ms: one every 2 ms (uvloop's timers are millisecond-grained)


class Clock:
    """The clock of a load process: every 20 ms, each call on the line (from when its stream
    is open until it ends) runs :meth:`LeanCall.tick`, in its slot of the 20 ms. Firings keep
    their schedule (to the event loop's millisecond): a late one is followed at once by the
    next (the audio still leaves at 20 ms per chunk on average); more than a second behind,
    the clock starts afresh. While :attr:`recording`, how late each firing ran is counted
    (one bucket per millisecond, bounded)."""

    def __init__(self, phases: int = PHASES) -> None:
        if not 1 <= phases <= 20:
            raise ValueError(f"phases must be 1..20 (slots per 20 ms), got {phases}")
        self.phases = phases
        self.slots: list[dict[LeanCall, None]] = [{} for _ in range(phases)]  # ordered sets
        self._slot_of: dict[LeanCall, int] = {}
        self.recording = False
        self.late_ms = [0] * 1001  # bucket i: i ms late (the last: a second or more)
        self.restarts = 0
        self._next = 0  # the slot the next firing ticks
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    @property
    def period(self) -> float:
        return CHUNK / self.phases

    def join(self, call: LeanCall) -> None:
        """Tick ``call`` from now on, in the slot with the fewest calls."""
        if call in self._slot_of:
            return
        k = min(range(self.phases), key=lambda i: len(self.slots[i]))
        self.slots[k][call] = None
        self._slot_of[call] = k

    def leave(self, call: LeanCall) -> None:
        """Stop ticking ``call`` (a no-op when it is not on the clock)."""
        k = self._slot_of.pop(call, None)
        if k is not None:
            self.slots[k].pop(call, None)

    @property
    def calls(self) -> int:
        return len(self._slot_of)

    def start(self) -> None:
        self._due = time.monotonic() + self.period
        self._handle = asyncio.get_running_loop().call_later(self.period, self._fire)

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
        slot = self.slots[self._next]
        self._next = (self._next + 1) % self.phases
        for call in tuple(slot):
            call.tick(now)
        if late > 1.0:
            self.restarts += 1
            self._due = now
        self._due += self.period
        self._handle = loop.call_later(max(self._due - time.monotonic(), 0.0), self._fire)

    def lateness(self) -> dict[str, float]:
        """How late the recorded firings ran: p50, p99 and max in ms (bucket floors), and
        their count."""
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
