"""The concurrency benchmark's ``--gc-probe``: how long each garbage collection of the server
process paused it, by generation, over a measurement window (``gc.callbacks``)."""

from __future__ import annotations

import gc
import time
from typing import Any

__all__ = ["GcPauses"]

MAX_KEPT = 100_000  # pauses kept per generation between two takes
LONG = 0.005  # a pause this long is counted on its own (s)


class GcPauses:
    """Records every collection's pause while :meth:`start` ed; :meth:`take` summarises the
    pauses since the last take and starts a new window."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._began = 0.0
        self._since = time.monotonic()

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        kept = self.pauses[info["generation"]]
        if len(kept) < MAX_KEPT:
            kept.append(time.perf_counter() - self._began)

    def take(self) -> dict[str, dict[str, float]]:
        """Per generation (``young``, ``middle``, ``full``): collections, collections a second,
        the median and longest pause and the total (ms), and pauses of 5 ms or more."""
        now = time.monotonic()
        span = max(now - self._since, 1e-9)
        out = {}
        for gen, name in ((0, "young"), (1, "middle"), (2, "full")):
            p = sorted(self.pauses[gen])
            out[name] = {
                "n": len(p),
                "per_s": len(p) / span,
                "p50_ms": 1000 * p[len(p) // 2] if p else 0.0,
                "max_ms": 1000 * p[-1] if p else 0.0,
                "total_ms": 1000 * sum(p),
                "over_5ms": sum(x >= LONG for x in p),
            }
            self.pauses[gen] = []
        self._since = now
        return out
