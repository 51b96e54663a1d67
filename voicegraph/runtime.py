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
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from .channel import EndOfInput, Inbox
from .frames import Frame
from .graph import Edge, Graph
from .node import Actor, Node, Stage

__all__ = ["Call", "CallResult", "NodeFailure"]

logger = logging.getLogger("voicegraph.call")

Route = Callable[[Frame], Awaitable[None]]


class NodeFailure(Exception):
    """A node raised: carries the node's name, the call id and the original exception."""

    def __init__(self, node: str, call_id: str, exc: BaseException, phase: str = "run") -> None:
        super().__init__(
            f"call {call_id}: node {node!r} failed in {phase}: {type(exc).__name__}: {exc}"
        )
        self.node = node
        self.call_id = call_id
        self.exc = exc
        self.phase = phase


@dataclass
class _StageFailed(Exception):
    """A fused stage raised inside its sender's task: carries the stage's name."""

    def __init__(self, node: str, exc: Exception) -> None:
        super().__init__(node)
        self.node = node
        self.exc = exc


@dataclass
class CallResult:
    """How a call ended."""

    call_id: str
    reason: str
    error: NodeFailure | None = None
    duration: float = 0.0
    stop_errors: list[NodeFailure] = field(default_factory=list)
    also_failed: list[NodeFailure] = field(default_factory=list)
    """Nodes that failed after :attr:`error` while the ``on_error`` hook ran (logged, and left
    to the hook, so an apology is not cut short)."""
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


class _CallLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        node = extra.get("node")
        prefix = f"[{extra['call_id']}] {node}: " if node else f"[{extra['call_id']}] "
        kwargs.setdefault("extra", {}).update(extra)
        return prefix + str(msg), kwargs


class _StageRunner(Actor):
    """Runs an unfused stage as an actor: receive, process, send; flush at end of input."""

    def __init__(self, stage: Stage) -> None:
        super().__init__()
        self.stage = stage
        self.stats = stage.stats

    async def run(self) -> None:
        stage, out = self.stage, self._routes[self.stage.outputs[0].name]
        while True:
            try:
                port, frame = await self.inbox.receive()
            except EndOfInput:
                break
            res = stage.process(port, frame)
            if res is not None:
                if isinstance(res, Frame):
                    await out(res)
                else:
                    for f in res:
                        await out(f)
        res = stage.finish()
        if res is not None:
            for f in [res] if isinstance(res, Frame) else res:
                await out(f)


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
        self._scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._reason: str | None = None
        self._failure: NodeFailure | None = None
        self._stop_errors: list[NodeFailure] = []
        self._hook_running = False
        self._also_failed: list[NodeFailure] = []
        self._running = False
        self._ran = False
        self._actor_tg: anyio.abc.TaskGroup | None = None
        self.result: CallResult | None = None
        """How the call ended, once :meth:`run` has returned (for observers such as
        ``AgentRuntime(on_call=...)`` that do not await ``run`` themselves)."""
        self._compile()

    # ------------------------------------------------------------------ compile

    def _compile(self) -> None:
        g = self.graph
        nodes = g.nodes
        fuse = g.fuse
        self._inline: dict[str, Stage] = {}
        self._actors: dict[str, Actor] = {}
        for name, node in nodes.items():
            node.call = self
            node.log = _CallLog(
                logging.getLogger(f"voicegraph.node.{type(node).__name__}"),
                {"call_id": self.call_id, "node": name},
            )
            if isinstance(node, Stage) and fuse:
                self._inline[name] = node
            else:
                actor = _StageRunner(node) if isinstance(node, Stage) else node
                if not isinstance(actor, Actor):  # Graph.add admits only actors and stages
                    raise TypeError(f"node {name!r} is neither an Actor nor a Stage")
                actor.name, actor.call, actor.log = name, self, node.log
                actor.inbox = Inbox(name)
                actor._routes = {}
                self._actors[name] = actor
        # inbox lanes and writer counts
        self._inline_writers: dict[str, int] = {n: 0 for n in self._inline}
        for e in g.edges:
            dst = nodes[e.dst]
            port = dst.input(e.dst_port)
            if e.dst in self._actors:
                inbox = self._actors[e.dst].inbox
                inbox.add_port(e.dst_port, e.capacity or port.capacity, e.policy or port.policy)
                inbox.add_writer(e.dst_port)
            else:
                self._inline_writers[e.dst] += 1
        for name, actor in self._actors.items():
            for p in nodes[name].inputs:  # unconnected optional inputs still accept inject()
                if not actor.inbox.has_port(p.name):
                    actor.inbox.add_port(p.name, p.capacity, p.policy)
        # routes, built for inline stages first so actor routes can call into them
        self._stage_routes: dict[str, Route] = {}
        self._deliver_cache: dict[tuple[str, str], Route] = {}
        for name, node in nodes.items():
            routes = {p.name: self._make_route(name, p.name) for p in node.outputs}
            if name in self._actors:
                self._actors[name]._routes = routes
            else:
                self._stage_routes[name] = routes[node.outputs[0].name]
        self._out_edges: dict[str, list[Edge]] = {}
        for e in g.edges:
            self._out_edges.setdefault(e.src, []).append(e)

    def _deliverer(self, e: Edge) -> Route:
        key = (e.dst, e.dst_port)
        if key in self._deliver_cache:
            d = self._deliver_cache[key]
        elif e.dst in self._actors:
            d = functools.partial(self._actors[e.dst].inbox.send, e.dst_port)
        else:
            d = self._make_inline(e.dst, e.dst_port)
        self._deliver_cache[key] = d
        nodes = self.graph.nodes
        if e.types is not None:
            inner_f, types = d, e.types

            async def filtered(frame: Frame) -> None:
                if isinstance(frame, types):
                    await inner_f(frame)

            d = filtered
        if self._narrows(e):
            # the source may emit something wider than the destination accepts: check each frame
            inner_n, label = d, e.label()
            accepted = nodes[e.dst].input(e.dst_port).types

            async def narrowed(frame: Frame) -> None:
                if not isinstance(frame, accepted):
                    raise TypeError(
                        f"{label}: {type(frame).__name__} is not accepted by the destination "
                        f"(accepts {', '.join(t.__name__ for t in accepted)})"
                    )
                await inner_n(frame)

            d = narrowed
        if self.trace is not None:
            inner_t, trace, src, dst = d, self.trace, e.src, e.dst

            async def traced(frame: Frame) -> None:
                trace.append((time.monotonic(), src, dst, type(frame).__name__))
                await inner_t(frame)

            d = traced
        return d

    def _narrows(self, e: Edge) -> bool:
        nodes = self.graph.nodes
        accepted = nodes[e.dst].input(e.dst_port).types
        emitted = e.types or nodes[e.src].output(e.src_port).types
        return not all(any(issubclass(t, a) for a in accepted) for t in emitted)

    def _checker(self, name: str, port: str) -> tuple[set[type], Callable[[type], None]]:
        """The set of frame classes known to be declared on ``name.port``, and the function
        that checks (and remembers) a new class."""
        declared = self.graph.nodes[name].output(port).types
        ok: set[type] = set()

        def check(cls: type) -> None:
            if not issubclass(cls, declared):
                raise TypeError(
                    f"node {name!r} sent {cls.__name__} on output {name}.{port}, which declares "
                    f"only {', '.join(t.__name__ for t in declared)}"
                )
            ok.add(cls)

        return ok, check

    def _make_route(self, name: str, port: str) -> Route:
        stats = self.graph.nodes[name].stats
        deliverers = [
            self._deliverer(e) for e in self.graph.edges if e.src == name and e.src_port == port
        ]
        ok, check = self._checker(name, port)

        if len(deliverers) == 1:
            only = deliverers[0]

            async def route1(frame: Frame) -> None:
                if frame.__class__ not in ok:
                    check(frame.__class__)
                stats.frames_out += 1
                await only(frame)

            return route1

        async def route(frame: Frame) -> None:
            if frame.__class__ not in ok:
                check(frame.__class__)
            stats.frames_out += 1
            for d in deliverers:
                await d(frame)

        return route

    def _next_inline(self, name: str) -> tuple[str, str] | None:
        """Where a fused stage's output goes, if it is one plain edge into another fused stage
        (then both run as one synchronous segment)."""
        port = self._inline[name].outputs[0].name
        edges = [e for e in self.graph.edges if e.src == name and e.src_port == port]
        if len(edges) != 1 or self.trace is not None:
            return None
        e = edges[0]
        if e.dst not in self._inline or e.types is not None or self._narrows(e):
            return None
        return e.dst, e.dst_port

    def _sync_segment(self, name: str, port: str) -> tuple[Callable[[Frame], Any], str]:
        """Compose consecutive fused stages into one synchronous function (a hop costs a
        function call). Returns it and the name of the segment's last stage, whose async route
        carries the segment's output."""
        stage = self._inline[name]
        stats, process = stage.stats, stage.process
        nxt = self._next_inline(name)
        if nxt is None:

            def last(frame: Frame) -> Any:
                stats.frames_in += 1
                try:
                    return process(port, frame)
                except Exception as exc:
                    raise _StageFailed(name, exc) from exc

            return last, name
        ok, check = self._checker(name, stage.outputs[0].name)
        after, tail = self._sync_segment(*nxt)

        def step(frame: Frame) -> Any:
            stats.frames_in += 1
            try:
                res = process(port, frame)
            except Exception as exc:
                raise _StageFailed(name, exc) from exc
            if res is None:
                return None
            if isinstance(res, Frame):
                if res.__class__ not in ok:
                    check(res.__class__)
                stats.frames_out += 1
                return after(res)
            out: list[Frame] = []
            for f in res:
                if f.__class__ not in ok:
                    check(f.__class__)
                stats.frames_out += 1
                r = after(f)
                if r is None:
                    continue
                if isinstance(r, Frame):
                    out.append(r)
                else:
                    out.extend(r)
            return out

        return step, tail

    def _make_inline(self, name: str, port: str) -> Route:
        segment, tail = self._sync_segment(name, port)
        routes = self._stage_routes

        async def deliver(frame: Frame) -> None:
            res = segment(frame)
            if res is None:
                return
            out = routes[tail]
            if isinstance(res, Frame):
                await out(res)
            else:
                for f in res:
                    await out(f)

        return deliver

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
        n = self.graph[node]
        n.input(port)  # raises KeyError for an unknown port
        if node in self._actors:
            await self._actors[node].inbox.send(port, frame)
        else:
            await self._make_inline(node, port)(frame)

    def stop(self, reason: str = "stopped") -> None:
        """End the call now (from any task of this event loop). Idempotent; first reason wins."""
        if self._reason is None:
            self._reason = reason
        if self._scope is not None:
            self._scope.cancel()

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
        out: dict[str, dict[str, Any]] = {}
        for name, node in self.graph.nodes.items():
            entry: dict[str, Any] = {"frames_out": node.stats.frames_out}
            actor = self._actors.get(name)
            if actor is not None:
                ports = {p: s.as_dict() for p, s in actor.inbox.ports.items()}
                entry["frames_in"] = sum(p["received"] for p in ports.values())
                entry["dropped"] = (
                    sum(p["dropped"] for p in ports.values()) + actor.inbox.dropped_after_close
                )
                entry["high_water"] = max((p["high_water"] for p in ports.values()), default=0)
                entry["ports"] = ports
            else:
                entry["frames_in"] = node.stats.frames_in
                entry["dropped"] = 0
                entry["high_water"] = 0
            out[name] = entry
        return out

    def _activity(self) -> int:
        total = sum(s.frames_in for s in (n.stats for n in self._inline.values()))
        for a in self._actors.values():
            total += sum(p.received for p in a.inbox.ports.values())
        return total

    # ------------------------------------------------------------------- run

    def _fail(self, node: str, exc: BaseException, phase: str) -> None:
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # a node's own task group wrapped a single error
        failure = NodeFailure(node, self.call_id, exc, phase)
        if self._failure is None:
            self._failure = failure
            self._reason = self._reason or "error"
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
            if self.on_error is not None and self._actor_tg is not None:
                # the rest of the graph keeps running while the hook speaks (bounded by grace)
                self._hook_running = True
                self._actor_tg.start_soon(self._error_hook, failure)
                return
        elif self._hook_running:
            # An outage often fails several nodes at once: the later failures must not cut
            # the apology short; the hook ends the call when it is done (bounded by grace).
            self._also_failed.append(failure)
            self.log.warning(
                "node %r also failed in %s while the error hook runs: %s: %s",
                node,
                phase,
                type(exc).__name__,
                exc,
            )
            return
        if self._scope is not None:
            self._scope.cancel()

    async def _error_hook(self, failure: NodeFailure) -> None:
        assert self.on_error is not None
        with anyio.move_on_after(self.grace):
            try:
                await self.on_error(self, failure)
            except Exception as exc:
                self.log.error("on_error hook failed: %s", exc, exc_info=exc)
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> CallResult:
        """Run the call to its end and return how it ended (see module docs)."""
        if self._ran:
            raise RuntimeError(f"call {self.call_id} already ran; build a new graph and Call")
        self._ran = True
        t0 = anyio.current_time()
        started: list[Node] = []
        nodes = list(self.graph.nodes.values())
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._reason is not None:
                    scope.cancel()
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    for n in nodes:
                        started.append(n)
                        tg.start_soon(self._start_node, n)
                if self._failure is None:
                    async with anyio.create_task_group() as tg:
                        self._actor_tg = tg
                        self._running = True
                        self._remaining = len(self._actors)
                        if not self._actors:
                            self._reason = self._reason or "completed"
                        for name, actor in self._actors.items():
                            tg.start_soon(self._run_actor, name, actor)
                        if self.max_duration is not None:
                            tg.start_soon(self._max_duration_watch)
                        if self.idle_timeout is not None:
                            tg.start_soon(self._idle_watch)
                        if not self._actors:
                            scope.cancel()
        finally:
            self._running = False
            with anyio.CancelScope(shield=True):
                await self._stop_all(started)
        self.result = CallResult(
            call_id=self.call_id,
            reason=self._reason or "completed",
            error=self._failure,
            duration=anyio.current_time() - t0,
            stop_errors=self._stop_errors,
            also_failed=self._also_failed,
            stats=self.stats(),
        )
        return self.result

    async def _start_node(self, node: Node) -> None:
        try:
            await node.start()
        except Exception as exc:
            self._fail(node.name, exc, "start")

    async def _run_actor(self, name: str, actor: Actor) -> None:
        try:
            await actor.run()
            await self._close_outputs(name)
        except _StageFailed as exc:
            self._fail(exc.node, exc.exc, "process")
            return
        except Exception as exc:
            self._fail(name, exc, "run")
            return
        finally:
            actor.inbox.close_receiving()
        self._remaining -= 1
        if self._remaining == 0:
            if self._reason is None:
                self._reason = "completed"
            if self._scope is not None:
                self._scope.cancel()

    async def _close_outputs(self, name: str) -> None:
        for e in self._out_edges.get(name, ()):
            if e.dst in self._actors:
                self._actors[e.dst].inbox.close_writer(e.dst_port)
            else:
                self._inline_writers[e.dst] -= 1
                if self._inline_writers[e.dst] == 0:
                    stage = self._inline[e.dst]
                    try:
                        res = stage.finish()
                    except Exception as exc:
                        raise _StageFailed(e.dst, exc) from exc
                    if res is not None:
                        out = self._stage_routes[e.dst]
                        for f in [res] if isinstance(res, Frame) else res:
                            await out(f)
                    await self._close_outputs(e.dst)

    async def _max_duration_watch(self) -> None:
        assert self.max_duration is not None
        await anyio.sleep(self.max_duration)
        if self._reason is None:
            self._reason = "max_duration"
        self.log.info("max duration %.0fs reached", self.max_duration)
        if self.on_max_duration is not None:
            with anyio.move_on_after(self.grace):
                try:
                    await self.on_max_duration(self)
                except Exception as exc:
                    self.log.error("on_max_duration hook failed: %s", exc, exc_info=exc)
        self.stop("max_duration")

    async def _idle_watch(self) -> None:
        assert self.idle_timeout is not None
        step = self.idle_timeout / 4
        last, since = self._activity(), anyio.current_time()
        while True:
            await anyio.sleep(step)
            now, seen = anyio.current_time(), self._activity()
            if seen != last:
                last, since = seen, now
            elif now - since >= self.idle_timeout:
                self.log.info("idle for %.1fs, ending call", now - since)
                self.stop("idle_timeout")
                return

    async def _stop_all(self, started: Iterable[Node]) -> None:
        async def stop_one(node: Node) -> None:
            try:
                await node.stop()
            except Exception as exc:
                failure = NodeFailure(node.name, self.call_id, exc, "stop")
                self._stop_errors.append(failure)
                self.log.error("node %r failed in stop: %s", node.name, exc, exc_info=exc)

        with anyio.move_on_after(self.stop_timeout) as scope:
            async with anyio.create_task_group() as tg:
                for n in started:
                    tg.start_soon(stop_one, n)
        if scope.cancelled_caught:
            self.log.error(
                "stop timed out after %.1fs; some nodes did not release", self.stop_timeout
            )
            self._stop_errors.append(
                NodeFailure("*", self.call_id, TimeoutError("stop timed out"), "stop")
            )
