"""One process-wide clock for the many small deadlines of live calls.

Every call's playout and provider keep-alive used to wait on a timer of its own (a cancel scope
per wait). With hundreds of calls that is thousands of timers a second, each armed, cancelled
and fired separately. The :class:`Pacer` instead keeps every deadline in one heap per event loop
and one ticker task that sleeps until the earliest; deadlines are rounded up to a grid
(``grid`` seconds, chosen by the waiter), so deadlines that fall within one grid step share one
wake-up of the ticker, which then wakes every due waiter at once.

The ticker runs only while deadlines are pending (it is started again by the next one) and
never raises. Waiters do not create cancel scopes: they wait on their own event, which the
ticker (or a frame arriving) sets. The ticker sleeps on a backend waker with a deadline (on
asyncio a loop timer settling a future), not in a cancel scope: no cancellation per tick. See
:meth:`voicegraph.channel.Inbox.receive_until`.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable

import anyio
from anyio.lowlevel import RunVar

from .backends import Waker, new_waker, spawn_system_task

__all__ = ["Pacer", "PacerHandle", "current_pacer"]

logger = logging.getLogger("voicegraph.pacer")

_pacer: RunVar[Pacer] = RunVar("voicegraph_pacer")

PHASE_STEP = 0.002
"""Spacing of the phases :meth:`Pacer.spread` hands out: a whole number of milliseconds, as
uvloop's timers are."""


def current_pacer() -> Pacer:
    """The pacer of the running event loop (created on first use)."""
    try:
        return _pacer.get()
    except LookupError:
        pacer = Pacer()
        _pacer.set(pacer)
        return pacer


class PacerHandle:
    """A scheduled callback; :meth:`cancel` before it fires and it never will."""

    __slots__ = ("_pacer", "callback", "cancelled", "fired", "when")

    def __init__(self, pacer: Pacer, when: float, callback: Callable[[], None]) -> None:
        self._pacer = pacer
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.fired = False

    @property
    def pending(self) -> bool:
        """Neither fired nor cancelled."""
        return not (self.fired or self.cancelled)

    def cancel(self) -> None:
        """Do not fire (a no-op once fired)."""
        if not (self.cancelled or self.fired):
            self._pacer._live -= 1
        self.cancelled = True


def on_grid(when: float, grid: float, phase: float = 0.0) -> float:
    """``when`` rounded up to the grid ``phase + k * grid`` (unchanged for ``grid <= 0``); a
    value a hair past a grid point (float error) stays on it, so exact deadlines are not pushed
    a step."""
    if grid <= 0 or not math.isfinite(when):
        return when
    steps = (when - phase) / grid
    # Rounded to the nanosecond: ``k * grid`` can land a hair above the decimal instant (e.g.
    # 1234.5650000000001), which uvloop's millisecond clock (``ms / 1000``) never equals; a
    # timeout there re-armed itself on every loop iteration until the next millisecond.
    return round(math.ceil(steps - 1e-6) * grid + phase, 9)


class Pacer:
    """Deadlines of one event loop, served by one ticker task (see the module docs)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, PacerHandle]] = []
        self._seq = 0
        self._live = 0  # handles in the heap neither fired nor cancelled
        self._running = False
        self._sleeping_until = math.inf
        self._changed: Waker | None = None
        self._waker: Waker | None = None
        self.wakeups = 0
        """Times the ticker woke (a figure for benchmarks)."""
        self._phases = 0

    def spread(self, grid: float) -> float:
        """A phase for a new waiter on ``grid`` (for :meth:`call_at`): successive waiters get
        successive slots, ``PHASE_STEP`` apart, so the waiters of many calls are woken a few at
        a time through each grid step rather than all at once. A burst of every call's work at
        one instant makes everything else that falls due then (another call's transcript or
        reply) wait behind all of it."""
        slots = int(grid / PHASE_STEP + 1e-9)
        if slots <= 1:
            return 0.0
        phase = round((self._phases % slots) * PHASE_STEP, 9)
        self._phases += 1
        return phase

    def call_at(
        self, when: float, callback: Callable[[], None], grid: float = 0.0, phase: float = 0.0
    ) -> PacerHandle:
        """Call ``callback()`` (synchronously, from the ticker) once ``anyio.current_time()``
        reaches ``when`` rounded up to the grid ``phase + k * grid`` (see :meth:`spread`). The
        callback must not raise or block."""
        when = on_grid(when, grid, phase)
        handle = PacerHandle(self, when, callback)
        self._seq += 1
        self._live += 1
        heapq.heappush(self._heap, (when, self._seq, handle))
        if len(self._heap) > 64 and len(self._heap) > 4 * self._live:
            self._compact()
        if not self._running:
            self._running = True
            spawn_system_task(self._tick)
        elif when < self._sleeping_until and self._changed is not None:
            self._changed.wake()  # the ticker sleeps past this one: wake it to re-aim
        return handle

    def _new_waker(self) -> Waker:
        self._waker = waker = new_waker()
        return waker

    def _compact(self) -> None:
        # Waiters re-arm often (a frame arrived, the deadline moved); drop what they left behind.
        self._heap = [e for e in self._heap if e[2].pending]
        heapq.heapify(self._heap)

    async def _tick(self) -> None:
        try:
            while True:
                heap = self._heap
                now = anyio.current_time()
                while heap and (heap[0][2].cancelled or heap[0][0] <= now):
                    _, _, handle = heapq.heappop(heap)
                    if handle.cancelled:
                        continue
                    handle.fired = True
                    self._live -= 1
                    try:
                        handle.callback()
                    except Exception:  # a waiter's bug must not stop every other call's clock
                        logger.exception("pacer callback failed")
                if not heap:
                    return
                target = heap[0][0]
                self._sleeping_until = target
                self._changed = changed = self._waker or self._new_waker()
                await changed.wait_until(target)  # exactly on the grid (see on_grid)
                self._changed = None
                self._sleeping_until = math.inf
                self.wakeups += 1
        finally:
            self._running = False
            self._changed = None
            self._sleeping_until = math.inf
