"""The call runtime: compile a graph and run it in one anyio task group.

:class:`Call` runs one graph. It starts every node, runs every actor in its own task (inline
stages run in their senders' tasks), and ends in exactly one of these ways, reported by
:class:`CallResult.reason`:

* ``"completed"`` -- every actor returned (inputs drained);
* ``"error"`` -- a node raised; :attr:`CallResult.error` is a :class:`NodeFailure` naming the node
  and the call id;
* ``"max_duration"`` / ``"idle_timeout"`` -- a deadline policy fired;
* ``"stopped"`` (or the reason given to :meth:`Call.stop`) -- someone asked it to end;
* cancellation from outside propagates after teardown (there is then no result).

Whatever the way, every node whose ``start`` was entered gets its ``stop`` (shielded, under
``stop_timeout``), and no task is left behind: all tasks live in the call's task group.

The pieces: :mod:`voicegraph.wiring` compiles the graph into inboxes and routes (fusing
stages), :mod:`voicegraph.supervision` decides how the call ends (failure policy, deadlines,
teardown), :mod:`voicegraph.outcome` holds the result types (re-exported here). This module is
the call itself: its event bus, its operations and its run.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from .frames import Frame
from .graph import Graph
from .node import Actor, Node
from .outcome import CallResult, NodeFailure, StageFailed
from .supervision import Supervisor
from .wiring import Wiring

__all__ = ["Call", "CallResult", "NodeFailure"]

logger = logging.getLogger("voicegraph.call")


class _CallLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        node = extra.get("node")
        prefix = f"[{extra['call_id']}] {node}: " if node else f"[{extra['call_id']}] "
        kwargs.setdefault("extra", {}).update(extra)
        return prefix + str(msg), kwargs


class Call:
    """Runs one graph as one call.

    ``max_duration`` / ``idle_timeout`` (seconds, ``None`` = off) are runtime policies. Idle
    means no frame was received by any node for ``idle_timeout``. ``on_max_duration`` (an async
    callable taking the call) runs when ``max_duration`` is reached, with the graph still
    running, for at most ``grace`` seconds -- the hook for a spoken goodbye.
    ``trace=True`` records every edge delivery as ``(monotonic time, src, dst, frame type)`` in
    :attr:`trace` (bounded); off, it costs nothing on the per-frame path.
    """

    def __init__(
        self,
        graph: Graph,
        call_id: str | None = None,
        *,
        max_duration: float | None = None,
        idle_timeout: float | None = None,
        on_max_duration: Callable[[Call], Awaitable[None]] | None = None,
        on_error: Callable[[Call, NodeFailure], Awaitable[None]] | None = None,
        grace: float = 10.0,
        stop_timeout: float = 5.0,
        trace: bool = False,
        trace_limit: int = 100_000,
    ) -> None:
        graph.validate()
        self.graph = graph
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self.max_duration = max_duration
        self.idle_timeout = idle_timeout
        self.on_max_duration = on_max_duration
        self.on_error = on_error
        self.grace = grace
        self.stop_timeout = stop_timeout
        self.log = _CallLog(logger, {"call_id": self.call_id})
        self.trace: deque[tuple[float, str, str, str]] | None = (
            deque(maxlen=trace_limit) if trace else None
        )
        self.recent_events: deque[Frame] = deque(maxlen=1024)
        self._subscribers: list[Callable[[Frame], None]] = []
        self._sup = Supervisor(self.call_id, self.log, None, grace)
        self._running = False
        self._ran = False
        self.result: CallResult | None = None
        """How the call ended, once :meth:`run` has returned (for observers such as
        ``AgentRuntime(on_call=...)`` that do not await ``run`` themselves)."""
        self._compile()

    # ------------------------------------------------------------------ compile

    def _compile(self) -> None:
        for name, node in self.graph.nodes.items():
            node.call = self
            node.log = _CallLog(
                logging.getLogger(f"voicegraph.node.{type(node).__name__}"),
                {"call_id": self.call_id, "node": name},
            )
        self._wiring = Wiring(self.graph, self, self.trace)
        self._actors = self._wiring.actors

    # ---------------------------------------------------------------- events

    def publish(self, event: Frame) -> None:
        """Hand ``event`` to every subscriber (synchronously) and keep it in
        :attr:`recent_events` (bounded)."""
        self.recent_events.append(event)
        for cb in list(self._subscribers):
            cb(event)

    def subscribe(self, callback: Callable[[Frame], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every published event; returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def wait_event(
        self,
        predicate: Callable[[Frame], bool],
        timeout: float | None = None,
        *,
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> Frame | None:
        """Wait for a published event matching ``predicate``; ``None`` on timeout.

        ``after`` (an async callable) runs once the wait is registered, so an event it causes
        cannot be missed (e.g. inject a frame, then wait for its delivery); ``timeout`` covers
        it too."""
        got: list[Frame] = []
        ready = anyio.Event()

        def cb(ev: Frame) -> None:
            if not got and predicate(ev):
                got.append(ev)
                ready.set()

        unsub = self.subscribe(cb)
        try:
            with anyio.move_on_after(timeout if timeout is not None else float("inf")):
                if after is not None:
                    await after()
                await ready.wait()
        finally:
            unsub()
        return got[0] if got else None

    # ------------------------------------------------------------ operations

    async def inject(self, node: str, port: str, frame: Frame) -> None:
        """Deliver ``frame`` to input ``port`` of ``node`` as if an edge had sent it."""
        self.graph[node].input(port)  # raises KeyError for an unknown port
        await self._wiring.inject(node, port, frame)

    def stop(self, reason: str = "stopped") -> None:
        """End the call now (from any task of this event loop). Idempotent; first reason wins."""
        self._sup.stop(reason)

    async def end_politely(
        self,
        frame: Frame,
        into: str,
        delivered: Callable[[Frame], bool],
        timeout: float = 10.0,
        reason: str = "ended",
    ) -> bool:
        """Send ``frame`` into input ``into`` (``"node.port"``), wait until an event matching
        ``delivered`` is published (downstream confirms delivery) or ``timeout`` passes, then
        stop the call. Returns whether delivery was confirmed."""
        node, _, port = into.partition(".")
        port = port or self.graph[node].inputs[0].name
        got = await self.wait_event(
            delivered, timeout, after=lambda: self.inject(node, port, frame)
        )
        if got is None:
            self.log.warning("polite end: delivery not confirmed within %.1fs", timeout)
        self.stop(reason)
        return got is not None

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-node counters: frames in/out, and per input port received/dropped/high-water."""
        return self._wiring.stats()

    # ------------------------------------------------------------------- run

    async def run(self) -> CallResult:
        """Run the call to its end and return how it ended (see module docs)."""
        if self._ran:
            raise RuntimeError(f"call {self.call_id} already ran; build a new graph and Call")
        self._ran = True
        sup = self._sup
        on_error = self.on_error  # hooks and grace as set when the call starts
        sup.on_error = (lambda failure: on_error(self, failure)) if on_error else None
        sup.grace = self.grace
        t0 = anyio.current_time()
        started: list[Node] = []
        nodes = list(self.graph.nodes.values())
        try:
            with anyio.CancelScope() as scope:
                sup.scope = scope
                if sup.reason is not None:
                    scope.cancel()
                async with anyio.create_task_group() as tg:
                    for n in nodes:
                        started.append(n)
                        tg.start_soon(self._start_node, n)
                if sup.failure is None:
                    async with anyio.create_task_group() as tg:
                        sup.actor_tg = tg
                        self._running = True
                        self._remaining = len(self._actors)
                        if not self._actors:
                            sup.reason = sup.reason or "completed"
                        for name, actor in self._actors.items():
                            tg.start_soon(self._run_actor, name, actor)
                        if self.max_duration is not None:
                            hook = self._on_max if self.on_max_duration is not None else None
                            tg.start_soon(sup.max_duration_watch, self.max_duration, hook)
                        if self.idle_timeout is not None:
                            tg.start_soon(sup.idle_watch, self.idle_timeout, self._wiring.activity)
                        if not self._actors:
                            scope.cancel()
        finally:
            self._running = False
            with anyio.CancelScope(shield=True):
                await sup.stop_all(started, self.stop_timeout)
        self.result = CallResult(
            call_id=self.call_id,
            reason=sup.reason or "completed",
            error=sup.failure,
            duration=anyio.current_time() - t0,
            stop_errors=sup.stop_errors,
            also_failed=sup.also_failed,
            stats=self.stats(),
        )
        return self.result

    async def _on_max(self) -> None:
        if self.on_max_duration is not None:
            await self.on_max_duration(self)

    async def _start_node(self, node: Node) -> None:
        try:
            await node.start()
        except Exception as exc:
            self._sup.fail(node.name, exc, "start")

    async def _run_actor(self, name: str, actor: Actor) -> None:
        try:
            await actor.run()
            await self._wiring.close_outputs(name)
        except StageFailed as exc:
            self._sup.fail(exc.node, exc.exc, "process")
            return
        except Exception as exc:
            self._sup.fail(name, exc, "run")
            return
        finally:
            actor.inbox.close_receiving()
        self._remaining -= 1
        if self._remaining == 0:
            self._sup.stop("completed")
