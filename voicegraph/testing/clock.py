"""Virtual time for tests, on both backends: timers fire in order, at their exact deadlines, and
take no real time.

Trio has this built in (``trio.testing.MockClock`` with ``autojump_threshold=0``); asyncio gets
:class:`VirtualClockEventLoop`, whose clock jumps straight to the next timer whenever every task
is blocked and no I/O is ready. Use :func:`virtual_clock` to get either as an anyio backend::

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(request):
        return virtual_clock(request.param)

or ``anyio.run(main, backend=name, backend_options=virtual_clock(name)[1])``.

Like Trio's autojump clock, time also jumps while a worker thread computes; keep virtual-time
tests free of threads whose timing matters.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

__all__ = ["VirtualClockEventLoop", "virtual_clock"]


class _AutojumpSelector(selectors.DefaultSelector):
    """Polls without blocking; when nothing is ready and the loop would sleep until its next
    timer, advances the virtual clock by that sleep instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # no timer pending: only I/O (e.g. a thread's wake-up) can help
            return super().select(None)
        self.now += timeout
        return []


class VirtualClockEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time (starting at 0): see the module docstring."""

    def __init__(self) -> None:
        self._autojump = _AutojumpSelector()
        super().__init__(self._autojump)

    def time(self) -> float:
        return self._autojump.now


def virtual_clock(backend: str = "asyncio") -> tuple[str, dict[str, Any]]:
    """``(backend, backend_options)`` for anyio that run ``backend`` on a fresh virtual clock."""
    if backend == "trio":
        import trio.testing

        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
    if backend == "asyncio":
        return "asyncio", {"loop_factory": VirtualClockEventLoop}
    raise ValueError(f"backend={backend!r} is not supported; use 'asyncio' or 'trio'")
