"""Keep the garbage collector's long pauses out of live calls.

CPython's cycle collector stops the event loop while it runs, and a full collection (of the
oldest generation) visits every object the collector tracks. In a voice server those are the
live calls' graphs, tasks and buffers: measured on the 2-core benchmark VM, a full collection
with 50 calls up took 30-60 ms, long enough to show in every call's latency, and CPython starts
one every few seconds under a steady call load (whenever a quarter more objects have survived
into the oldest generation). The young and middle generations' collections keep running.

:class:`GcPolicy` is what :class:`~voicegraph.server.AgentRuntime` does about it (its
``gc_policy=``; ``None`` leaves the collector alone):

* at start, once the first call's modules are imported, freeze every object alive (modules,
  classes, the runtime; the process's first start collects first): no later collection visits
  them again;
* on CPython 3.11-3.13, take the full collections over: the oldest generation's threshold is
  raised so CPython no longer starts them, and the runtime runs one when the garbage of ended
  calls is due -- when the last live call ends (nobody waits then; once :data:`IDLE_AFTER`
  calls ended since the last one), after ``every_calls`` calls ended since the last one, or
  at the first call end ``max_interval`` seconds after it. Memory held by garbage cycles is
  therefore bounded by those two numbers;
* on CPython 3.11-3.13, keep the young collections that remain short (``young``): a young
  collection visits every object allocated since the last one that is still alive, and a
  middle one everything that survived the young ones since the last middle one. With
  CPython's ``(700, 10)`` they took 0.9 ms (young) and 5-9 ms (middle) at 150 calls on the
  benchmark VM; at 60 % load a 6 ms pause holds every call's next step for 6 ms and leaves a
  backlog that takes about as long again to clear. At ``(150, 2)``: 0.2 ms and 0.7 ms at the
  median (rarely up to 5 ms), more often, for about twice the collector's CPU (2.3 % of a core
  at 150 calls instead of 1.1 %). Cycles that outlive two young collections wait for the
  next full collection.

From 3.14 on, CPython's collector is incremental (short pauses); only the freeze applies there.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["GcPolicy", "held"]

logger = logging.getLogger("voicegraph.server")

_GENERATIONAL = sys.implementation.name == "cpython" and sys.version_info < (3, 14)
_NEVER = 1_000_000_000  # young collections between full ones: in practice never
_held: list[GcPolicy] = []  # started policies of the process (one entry per start)
_saved: list[tuple[int, int, int]] = []  # the thresholds before the first of them
_collected_once: list[bool] = []
IDLE_AFTER = 10
"""Calls ended since the last full collection for one to run when the last live call ends."""
YOUNG = (150, 2)
"""The default ``GcPolicy.young``: allocations (net of frees) between young collections, and
young collections per middle one."""


@dataclass
class GcPolicy:
    """When the runtime runs full garbage collections (see the module docs).

    ``every_calls``: at most this many calls end between two full collections;
    ``max_interval``: seconds after which the next call end runs one anyway; ``young``: the
    collector's first two thresholds while the policy holds (``None``: CPython's own, e.g.
    ``(700, 10)``). The thresholds are process-wide: the first policy started sets them."""

    every_calls: int = 200
    max_interval: float = 300.0
    young: tuple[int, int] | None = YOUNG
    full_collections: int = field(default=0, init=False)
    """Full collections the policy ran (a figure for monitoring)."""
    last_pause: float = field(default=0.0, init=False)
    """Seconds the last of them took."""

    def __post_init__(self) -> None:
        if not 1 <= self.every_calls <= 100_000:
            raise ValueError(f"GcPolicy every_calls must be 1..100000, got {self.every_calls}")
        if not 1.0 <= self.max_interval <= 86_400:
            raise ValueError(
                f"GcPolicy max_interval must be 1..86400 seconds, got {self.max_interval}"
            )
        if self.young is not None:
            young = self.young
            if (
                not isinstance(young, (tuple, list))
                or len(young) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in young)
                or not 10 <= young[0] <= 100_000
                or not 1 <= young[1] <= 1000
            ):
                raise ValueError(
                    "GcPolicy young must be (allocations per young collection 10..100000, "
                    f"young collections per middle one 1..1000), or None; got {self.young!r}"
                )
            self.young = (young[0], young[1])
        self._started = 0
        self._ended = 0
        self._last = time.monotonic()

    @property
    def owns_full_collections(self) -> bool:
        """Whether this interpreter's full collections are started by the policy now."""
        return _GENERATIONAL and self._started > 0

    def start(self) -> None:
        """Collect, freeze what is alive, and take the full collections over. Pair each call
        with :meth:`stop`; several runtimes of one process share the one collector."""
        if not _collected_once:
            _collected_once.append(True)
            gc.collect()  # start-up garbage is not frozen with the rest (later starts: cheap)
        gc.freeze()
        if not _held and _GENERATIONAL:
            _saved[:] = [gc.get_threshold()]
            young, middle, _ = _saved[0]
            if self.young is not None:
                young, middle = self.young
            gc.set_threshold(young, middle, _NEVER)
        _held.append(self)
        self._started += 1
        self._last = time.monotonic()

    def stop(self) -> None:
        """Undo :meth:`start`: the last runtime to stop gives the collector back its
        thresholds and its frozen objects (no-op if not started)."""
        if self._started == 0:
            return
        self._started -= 1
        _held.remove(self)
        if not _held:
            if _saved:
                gc.set_threshold(*_saved.pop())
            gc.unfreeze()

    def call_ended(self, live_calls: int) -> None:
        """A call ended, ``live_calls`` remain: run a full collection if one is due."""
        if not self.owns_full_collections:
            return
        self._ended += 1
        if (
            (live_calls == 0 and self._ended >= min(IDLE_AFTER, self.every_calls))
            or self._ended >= self.every_calls
            or time.monotonic() - self._last >= self.max_interval
        ):
            self.collect()

    def collect(self) -> None:
        """Run a full collection now."""
        began = time.monotonic()
        gc.collect()
        self._last = end = time.monotonic()
        self._ended = 0
        self.full_collections += 1
        self.last_pause = end - began
        if self.last_pause > 0.05:
            logger.info("full garbage collection took %.0f ms", 1000 * self.last_pause)


@contextmanager
def held(policy: GcPolicy | None) -> Iterator[None]:
    """``policy`` started for the block and stopped after it (``None``: nothing to do)."""
    if policy is None:
        yield
        return
    policy.start()
    try:
        yield
    finally:
        policy.stop()
