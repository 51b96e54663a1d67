"""Event-loop lag: how late the loop wakes a sleeping task (asyncio or Trio, through anyio).

One task sleeps ``interval`` seconds again and again; the time it wakes up later than asked is
the lag -- time the loop spent running something else without yielding (a blocking call in a
tool, a CPU-heavy frame path, an overloaded process). Every call on the loop suffered it too:
their audio was late by as much. Above ``threshold`` a warning names the active calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import anyio

__all__ = ["LoopLag", "LoopLagError"]

logger = logging.getLogger("voicegraph.looplag")

MAX_NAMED_CALLS = 20


class LoopLagError(ValueError):
    """The lag monitor's options cannot work (the message says which and why)."""


class LoopLag:
    """Measures event-loop lag; :meth:`run` is the monitoring task.

    ``threshold``: seconds of lag that log a warning naming the active calls (at most one
    warning per ``warn_every`` seconds; the rest are counted in :attr:`stalls`).
    ``interval``: seconds between measurements. :attr:`last` and :attr:`max` hold the last and
    the largest lag seen; ``on_sample(lag, stalled)`` (the metrics' hook) gets every one."""

    def __init__(
        self, threshold: float = 0.1, *, interval: float = 0.25, warn_every: float = 10.0
    ) -> None:
        if not 0 < threshold <= 60:
            raise LoopLagError(f"threshold={threshold!r}: give seconds between 0 and 60")
        if not 0.001 <= interval <= 60:
            raise LoopLagError(f"interval={interval!r}: give seconds between 0.001 and 60")
        if not 0 <= warn_every <= 3600:
            raise LoopLagError(f"warn_every={warn_every!r}: give seconds between 0 and 3600")
        self.threshold = threshold
        self.interval = interval
        self.warn_every = warn_every
        self.last = 0.0
        self.max = 0.0
        self.samples = 0
        self.stalls = 0
        self._warned = float("-inf")
        self.on_sample: list[Callable[[float, bool], None]] = []

    def __repr__(self) -> str:
        return f"LoopLag(threshold={self.threshold}, interval={self.interval})"

    def record(self, lag: float, active_calls: Callable[[], Iterable[str]] = tuple) -> None:
        """Account one measured ``lag`` (seconds); warn if it is above the threshold."""
        self.samples += 1
        self.last = lag
        self.max = max(self.max, lag)
        stalled = lag > self.threshold
        for hook in self.on_sample:
            hook(lag, stalled)
        if not stalled:
            return
        self.stalls += 1
        now = anyio.current_time()
        if self.warn_every and now - self._warned < self.warn_every:
            return
        self._warned = now
        calls = list(active_calls())
        named = ", ".join(calls[:MAX_NAMED_CALLS])
        more = f" and {len(calls) - MAX_NAMED_CALLS} more" if len(calls) > MAX_NAMED_CALLS else ""
        logger.warning(
            "event loop lagged %.0f ms (threshold %.0f ms); %d active call(s) delayed: %s%s",
            lag * 1000,
            self.threshold * 1000,
            len(calls),
            named or "none",
            more,
        )

    async def run(self, active_calls: Callable[[], Iterable[str]] = tuple) -> None:
        """Measure until cancelled. ``active_calls()`` names the calls a warning lists."""
        interval = self.interval
        while True:
            t0 = anyio.current_time()
            await anyio.sleep(interval)
            self.record(max(0.0, anyio.current_time() - t0 - interval), active_calls)
