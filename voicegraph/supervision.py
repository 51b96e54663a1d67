"""A call's supervision: the failure policy, its deadlines and its teardown.

* The first node to fail decides: the call ends with reason ``"error"`` and that
  :class:`~voicegraph.outcome.NodeFailure` -- unless an ``on_error`` hook is set, which then
  runs (bounded by ``grace``) with the rest of the graph still up, e.g. to apologise; failures
  while it runs are logged and kept in ``also_failed``, not allowed to cut it short.
* ``max_duration`` ends the call after its hook (bounded by ``grace``); ``idle_timeout`` ends
  it when no node received a frame for that long.
* Teardown stops every started node concurrently, shielded, under ``stop_timeout``.

The first reason given wins. :class:`Supervisor` knows the call only by its id, its logger and
the cancel scope and task group :class:`~voicegraph.runtime.Call` hands it while running.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import anyio.abc

from .node import Node
from .outcome import NodeFailure

__all__ = ["Supervisor"]

ErrorHook = Callable[[NodeFailure], Awaitable[None]]


class Supervisor:
    """Decides how one call ends (see the module docs). ``scope`` (the call's cancel scope)
    and ``actor_tg`` (the task group its actors run in) are set by the call while it runs."""

    def __init__(
        self,
        call_id: str,
        log: logging.Logger | logging.LoggerAdapter[Any],
        on_error: ErrorHook | None,
        grace: float,
    ) -> None:
        self.call_id = call_id
        self.log = log
        self.on_error = on_error
        self.grace = grace
        self.reason: str | None = None
        self.failure: NodeFailure | None = None
        self.stop_errors: list[NodeFailure] = []
        self.also_failed: list[NodeFailure] = []
        self.hook_running = False
        self.scope: anyio.CancelScope | None = None
        self.actor_tg: anyio.abc.TaskGroup | None = None

    def stop(self, reason: str) -> None:
        """End the call now; the first reason wins."""
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()

    def fail(self, node: str, exc: BaseException, phase: str) -> None:
        """Node ``node`` raised ``exc`` in ``phase`` (start, run, process)."""
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # a node's own task group wrapped a single error
        failure = NodeFailure(node, self.call_id, exc, phase)
        if self.failure is None:
            self.failure = failure
            self.reason = self.reason or "error"
            # errors caused by a peer (bad input, a provider down) carry log_traceback = False
            cause = exc.__cause__
            self.log.log(
                logging.ERROR if getattr(exc, "log_traceback", True) else logging.WARNING,
                "node %r failed in %s: %s: %s%s",
                node,
                phase,
                type(exc).__name__,
                exc,
                f" (caused by {type(cause).__name__}: {cause})" if cause is not None else "",
                exc_info=exc if getattr(exc, "log_traceback", True) else None,
            )
            if self.on_error is not None and self.actor_tg is not None:
                # the rest of the graph keeps running while the hook speaks (bounded by grace)
                self.hook_running = True
                self.actor_tg.start_soon(self._error_hook, self.on_error, failure)
                return
        elif self.hook_running:
            # An outage often fails several nodes at once: the later failures must not cut
            # the apology short; the hook ends the call when it is done (bounded by grace).
            self.also_failed.append(failure)
            self.log.warning(
                "node %r also failed in %s while the error hook runs: %s: %s",
                node,
                phase,
                type(exc).__name__,
                exc,
            )
            return
        if self.scope is not None:
            self.scope.cancel()

    async def _error_hook(self, hook: ErrorHook, failure: NodeFailure) -> None:
        with anyio.move_on_after(self.grace):
            try:
                await hook(failure)
            except Exception as exc:
                self.log.error("on_error hook failed: %s", exc, exc_info=exc)
        if self.scope is not None:
            self.scope.cancel()

    async def max_duration_watch(
        self, max_duration: float, hook: Callable[[], Awaitable[None]] | None
    ) -> None:
        """End the call after ``max_duration`` s, once ``hook`` (bounded by grace) is done."""
        await anyio.sleep(max_duration)
        if self.reason is None:
            self.reason = "max_duration"
        self.log.info("max duration %.0fs reached", max_duration)
        if hook is not None:
            with anyio.move_on_after(self.grace):
                try:
                    await hook()
                except Exception as exc:
                    self.log.error("on_max_duration hook failed: %s", exc, exc_info=exc)
        self.stop("max_duration")

    async def idle_watch(self, idle_timeout: float, activity: Callable[[], int]) -> None:
        """End the call once ``activity()`` (frames received) stays put for ``idle_timeout``."""
        step = idle_timeout / 4
        last, since = activity(), anyio.current_time()
        while True:
            await anyio.sleep(step)
            now, seen = anyio.current_time(), activity()
            if seen != last:
                last, since = seen, now
            elif now - since >= idle_timeout:
                self.log.info("idle for %.1fs, ending call", now - since)
                self.stop("idle_timeout")
                return

    async def stop_all(self, started: Iterable[Node], stop_timeout: float) -> None:
        """Run every started node's ``stop`` concurrently, under ``stop_timeout``; failures
        and a timeout land in :attr:`stop_errors`."""

        async def stop_one(node: Node) -> None:
            try:
                await node.stop()
            except Exception as exc:
                failure = NodeFailure(node.name, self.call_id, exc, "stop")
                self.stop_errors.append(failure)
                self.log.error("node %r failed in stop: %s", node.name, exc, exc_info=exc)

        with anyio.move_on_after(stop_timeout) as scope:
            async with anyio.create_task_group() as tg:
                for n in started:
                    tg.start_soon(stop_one, n)
        if scope.cancelled_caught:
            self.log.error("stop timed out after %.1fs; some nodes did not release", stop_timeout)
            self.stop_errors.append(
                NodeFailure("*", self.call_id, TimeoutError("stop timed out"), "stop")
            )
