"""Which event loop runs voicegraph: asyncio (the default, on uvloop where it is installed) or Trio.

The engine, nodes and transports are written against anyio and run on either. The few places
that must know the backend -- the provider WebSocket client (:mod:`voicegraph.wsio`), the web
framework and the ASGI server (:mod:`voicegraph.server`) -- ask :func:`current_backend`.
:func:`new_waker` is the one wake-up primitive chosen here per backend, for hot paths.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "BackendError",
    "check_backend",
    "clock",
    "Waker",
    "current_backend",
    "new_waker",
    "run",
    "spawn_system_task",
    "uvloop_available",
]

T = TypeVar("T")

BACKENDS = ("asyncio", "trio")
DEFAULT_BACKEND = "asyncio"


class BackendError(ValueError):
    """An unknown backend name was given."""


def check_backend(backend: str) -> str:
    """Return ``backend`` if voicegraph runs on it; raise :class:`BackendError` otherwise."""
    if backend not in BACKENDS:
        raise BackendError(f"backend={backend!r} is not supported; use 'asyncio' or 'trio'")
    return backend


def uvloop_available() -> bool:
    """True where uvloop is installed (it is a dependency on CPython outside Windows)."""
    return importlib.util.find_spec("uvloop") is not None


def current_backend() -> str:
    """``"asyncio"`` or ``"trio"``: the event loop running the calling task."""
    import sniffio

    name = sniffio.current_async_library()
    return "trio" if name == "trio" else "asyncio"


def clock() -> Callable[[], float]:
    """The running event loop's clock, the one ``anyio.current_time()`` reads, as a plain
    function: for hot paths that read it per frame (no backend look-up per reading)."""
    if current_backend() == "trio":
        import trio

        return trio.current_time
    import asyncio

    return asyncio.get_running_loop().time


def backend_options(backend: str) -> dict[str, Any]:
    """anyio's ``backend_options`` for ``backend``: uvloop on asyncio where available."""
    if check_backend(backend) == "asyncio" and uvloop_available():
        return {"use_uvloop": True}
    return {}


def run(fn: Callable[..., Awaitable[T]], *args: Any, backend: str = DEFAULT_BACKEND) -> T:
    """``anyio.run(fn, *args)`` on ``backend`` (asyncio uses uvloop where it is installed)."""
    import anyio

    return anyio.run(fn, *args, backend=backend, backend_options=backend_options(backend))


_system_tasks: set[Any] = set()  # asyncio keeps only weak references to running tasks


def spawn_system_task(fn: Callable[[], Awaitable[Any]]) -> None:
    """Run ``fn()`` in a task that belongs to the event loop, not to the caller's task group
    (a process-wide service such as :class:`voicegraph.pacer.Pacer`'s ticker, which outlives
    the call that first needed it). It is cancelled when the loop ends; it must not raise."""
    if current_backend() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(fn)
        return
    import asyncio

    task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(fn())  # type: ignore[arg-type]
    _system_tasks.add(task)
    task.add_done_callback(_system_tasks.discard)


class Waker(Protocol):
    """One task waits, anything on the event loop (a task, a protocol callback) wakes it.

    ``wait()`` returns what to await; a ``wake()`` with nobody waiting is lost, so the waiter
    checks its condition before it waits (no await in between) and again after. One waiter
    at a time; cancelling it is safe (its wait is simply over)."""

    def wait(self) -> Awaitable[None]: ...

    def wait_until(self, deadline: float) -> Awaitable[None]:
        """Like :meth:`wait`, but also over once ``anyio.current_time()`` reaches
        ``deadline``."""
        ...

    def wake(self) -> None: ...


def new_waker() -> Waker:
    """A :class:`Waker` for the running backend: on asyncio a bare loop future per wait, about
    half the cost of ``anyio.Event`` (no waiter list, no loop look-up per wait or set); on Trio
    an ``anyio.Event`` per wait."""
    if current_backend() == "trio":
        return _EventWaker()
    import asyncio

    return _FutureWaker(asyncio.get_running_loop())


class _FutureWaker:
    __slots__ = ("_future", "_loop")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._future: Any = None

    def wait(self) -> Awaitable[None]:
        self._future = future = self._loop.create_future()
        return future  # type: ignore[no-any-return]

    async def wait_until(self, deadline: float) -> None:
        # a loop timer settles the future: no cancel scope, no cancellation to deliver
        self._future = future = self._loop.create_future()
        timer = self._loop.call_at(deadline, _settle, future)
        try:
            await future
        finally:
            timer.cancel()

    def wake(self) -> None:
        future = self._future
        if future is not None:
            self._future = None
            if not future.done():  # done: its waiter was cancelled
                future.set_result(None)


def _settle(future: Any) -> None:
    if not future.done():
        future.set_result(None)


class _EventWaker:
    __slots__ = ("_event", "_new")

    def __init__(self) -> None:
        import anyio

        self._new = anyio.Event
        self._event: Any = None

    def wait(self) -> Awaitable[None]:
        self._event = event = self._new()
        return event.wait()

    async def wait_until(self, deadline: float) -> None:
        import anyio

        self._event = event = self._new()
        with anyio.CancelScope(deadline=deadline):
            await event.wait()

    def wake(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()
