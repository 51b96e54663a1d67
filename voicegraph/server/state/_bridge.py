"""Await an asyncio library's coroutines (redis-py's asyncio client) from either anyio backend.

On asyncio the coroutine is simply awaited. On Trio it runs on a private asyncio event loop in
one daemon thread, and the awaiting task waits for it in a worker thread (at most
``max_waiting`` at once; more wait their turn), so the Redis state works under both backends at
the cost of a thread hop per operation -- a few per call, never per audio frame. This module is
the one place in ``voicegraph.server.state`` that imports asyncio.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import sniffio

__all__ = ["AsyncioBridge"]

T = TypeVar("T")


class AsyncioBridge:
    """Runs ``fn(*args)`` (a coroutine function of an asyncio library) for anyio callers.

    Cancellation: the waiting task returns at once; the coroutine is cancelled on its loop.
    :meth:`close` stops the private loop (a later call starts a new one)."""

    def __init__(self, max_waiting: int = 64) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._max_waiting = max_waiting
        self._limiter: anyio.CapacityLimiter | None = None

    @staticmethod
    def native() -> bool:
        """Whether the running event loop is asyncio (no thread hop needed)."""
        return sniffio.current_async_library() == "asyncio"

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self.native():
            return await fn(*args)
        loop = self._start()
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_waiting)

        async def job() -> T:
            return await fn(*args)

        future = asyncio.run_coroutine_threadsafe(job(), loop)
        try:
            return await anyio.to_thread.run_sync(
                future.result, abandon_on_cancel=True, limiter=self._limiter
            )
        finally:
            future.cancel()  # no-op once done; otherwise cancels it on its loop

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()
                    loop.close()

                self._thread = threading.Thread(
                    target=serve, name="voicegraph-asyncio-bridge", daemon=True
                )
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def close(self) -> None:
        """Stop the private loop, if one runs (pending coroutines are abandoned)."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
