"""The executor's wiring: a validated graph compiled into inboxes and routes.

Every actor gets an :class:`~voicegraph.channel.Inbox` with one lane per connected input port.
Every output port gets a *route*: the function its node's ``send`` calls, which checks the
frame's type and hands it to each edge's *deliverer*. A deliverer queues the frame in the
destination actor's inbox (a channel hop: the receiving task wakes), or, for a fused
:class:`~voicegraph.node.Stage`, runs the stage right away in the sender's task (a function
call). Consecutive fused stages compose into one synchronous segment, so a chain such as
mu-law decode -> VAD costs no task switch at all. With ``Graph(fuse=False)`` each stage runs as
an actor of its own (:class:`StageRunner`); what is delivered, and in which order, is the same.

Edge filters (``types=``) are decided by the route once per frame class, so a frame that no
edge takes (e.g. the VAD's audio on edges that carry only speech events) costs no call.
Per-frame type checks where a source may emit more than its destination accepts, and tracing,
wrap deliverers only where needed (a filter then stays inside them, after them), so a plain
edge costs nothing extra per frame.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .channel import EndOfInput, Inbox
from .edges import Edge
from .frames import Frame
from .graph import Graph
from .node import Actor, CallContext, Stage
from .outcome import StageFailed

__all__ = ["Route", "StageRunner", "Wiring"]

Route = Callable[[Frame], Awaitable[None]]
Trace = deque[tuple[float, str, str, str]]


class StageRunner(Actor):
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


class Wiring:
    """A graph compiled for one call: :attr:`actors` (each with its inbox and routes) and the
    fused :attr:`inline` stages. ``call`` becomes the ``call`` of each stage runner; ``trace``
    (a bounded deque, or ``None``) records every delivery."""

    def __init__(self, graph: Graph, call: CallContext, trace: Trace | None) -> None:
        self.graph = graph
        self.trace = trace
        nodes = self.nodes = graph.nodes
        self.inline: dict[str, Stage] = {}
        self.actors: dict[str, Actor] = {}
        for name, node in nodes.items():
            if isinstance(node, Stage) and graph.fuse:
                self.inline[name] = node
                continue
            actor = StageRunner(node) if isinstance(node, Stage) else node
            if not isinstance(actor, Actor):  # Graph.add admits only actors and stages
                raise TypeError(f"node {name!r} is neither an Actor nor a Stage")
            actor.name, actor.call, actor.log = name, call, node.log
            actor.inbox = Inbox(name)
            actor._routes = {}
            self.actors[name] = actor
        # inbox lanes and writer counts
        self._inline_writers: dict[str, int] = {n: 0 for n in self.inline}
        for e in graph.edges:
            port = nodes[e.dst].input(e.dst_port)
            if e.dst in self.actors:
                inbox = self.actors[e.dst].inbox
                inbox.add_port(e.dst_port, e.capacity or port.capacity, e.policy or port.policy)
                inbox.add_writer(e.dst_port)
            else:
                self._inline_writers[e.dst] += 1
        for name, actor in self.actors.items():
            for p in nodes[name].inputs:  # unconnected optional inputs still accept inject()
                if not actor.inbox.has_port(p.name):
                    actor.inbox.add_port(p.name, p.capacity, p.policy)
        # routes; a fused stage's deliverer looks its stage's route up when called
        self._stage_routes: dict[str, Route] = {}
        self._deliver_cache: dict[tuple[str, str], Route] = {}
        for name, node in nodes.items():
            routes = {p.name: self._make_route(name, p.name) for p in node.outputs}
            if name in self.actors:
                self.actors[name]._routes = routes
            else:
                self._stage_routes[name] = routes[node.outputs[0].name]
        self._out_edges: dict[str, list[Edge]] = {}
        for e in graph.edges:
            self._out_edges.setdefault(e.src, []).append(e)

    # ------------------------------------------------------------------ routes

    def _deliverer(self, e: Edge) -> tuple[tuple[type, ...] | None, Route]:
        """Edge ``e``'s deliverer, and the frame classes the route must pick for it (``None``:
        every frame). A plain ``types=`` filter is left to the route, which then skips the
        edge without a call; behind a type check or tracing it stays inside, after them."""
        key = (e.dst, e.dst_port)
        if key in self._deliver_cache:
            d = self._deliver_cache[key]
        elif e.dst in self.actors:
            d = functools.partial(self.actors[e.dst].inbox.send, e.dst_port)
        else:
            d = self.inline_deliverer(e.dst, e.dst_port)
        self._deliver_cache[key] = d
        narrows = self._narrows(e)
        if e.types is not None and not narrows and self.trace is None:
            return e.types, d
        if e.types is not None:
            inner_f, types = d, e.types

            async def filtered(frame: Frame) -> None:
                if isinstance(frame, types):
                    await inner_f(frame)

            d = filtered
        if narrows:
            # the source may emit something wider than the destination accepts: check each frame
            inner_n, label = d, e.label()
            accepted = self.nodes[e.dst].input(e.dst_port).types

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
        return None, d

    def _narrows(self, e: Edge) -> bool:
        accepted = self.nodes[e.dst].input(e.dst_port).types
        emitted = e.types or self.nodes[e.src].output(e.src_port).types
        return not all(any(issubclass(t, a) for a in accepted) for t in emitted)

    def _checker(self, name: str, port: str) -> tuple[set[type], Callable[[type], None]]:
        """The set of frame classes known to be declared on ``name.port``, and the function
        that checks (and remembers) a new class."""
        declared = self.nodes[name].output(port).types
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
        stats = self.nodes[name].stats
        edges = [
            self._deliverer(e) for e in self.graph.edges if e.src == name and e.src_port == port
        ]
        ok, check = self._checker(name, port)

        if len(edges) == 1 and edges[0][0] is None:
            only = edges[0][1]

            async def route1(frame: Frame) -> None:
                if frame.__class__ not in ok:
                    check(frame.__class__)
                stats.frames_out += 1
                await only(frame)

            return route1

        # The deliverers each frame class goes to, in edge order: the edge filters are decided
        # once per class, so a frame no edge takes costs no call at all. Bounded: only classes
        # the port declares get an entry.
        targets: dict[type, tuple[Route, ...]] = {}

        def admit(cls: type) -> tuple[Route, ...]:
            if cls not in ok:
                check(cls)  # raises for a class the port does not declare
            chosen = targets[cls] = tuple(
                d for types, d in edges if types is None or issubclass(cls, types)
            )
            return chosen

        async def route(frame: Frame) -> None:
            chosen = targets.get(frame.__class__)
            if chosen is None:
                chosen = admit(frame.__class__)
            stats.frames_out += 1
            for d in chosen:
                await d(frame)

        return route

    # ----------------------------------------------------------- fused stages

    def _next_inline(self, name: str) -> tuple[str, str] | None:
        """Where a fused stage's output goes, if it is one plain edge into another fused stage
        (then both run as one synchronous segment)."""
        port = self.inline[name].outputs[0].name
        edges = [e for e in self.graph.edges if e.src == name and e.src_port == port]
        if len(edges) != 1 or self.trace is not None:
            return None
        e = edges[0]
        if e.dst not in self.inline or e.types is not None or self._narrows(e):
            return None
        return e.dst, e.dst_port

    def _sync_segment(self, name: str, port: str) -> tuple[Callable[[Frame], Any], str]:
        """Compose consecutive fused stages into one synchronous function (a hop costs a
        function call). Returns it and the name of the segment's last stage, whose async route
        carries the segment's output."""
        stage = self.inline[name]
        stats, process = stage.stats, stage.process
        nxt = self._next_inline(name)
        if nxt is None:

            def last(frame: Frame) -> Any:
                stats.frames_in += 1
                try:
                    return process(port, frame)
                except Exception as exc:
                    raise StageFailed(name, exc) from exc

            return last, name
        ok, check = self._checker(name, stage.outputs[0].name)
        after, tail = self._sync_segment(*nxt)

        def step(frame: Frame) -> Any:
            stats.frames_in += 1
            try:
                res = process(port, frame)
            except Exception as exc:
                raise StageFailed(name, exc) from exc
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

    def inline_deliverer(self, name: str, port: str) -> Route:
        """The deliverer into fused stage ``name``'s input ``port``: runs the stage (and the
        fused stages after it) now, then sends what comes out on the segment's route."""
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

    # ------------------------------------------------------------- operations

    async def inject(self, node: str, port: str, frame: Frame) -> None:
        """Deliver ``frame`` to ``node.port`` as if an edge had sent it."""
        if node in self.actors:
            await self.actors[node].inbox.send(port, frame)
        else:
            await self.inline_deliverer(node, port)(frame)

    async def close_outputs(self, name: str) -> None:
        """Actor ``name`` is done: close its edges. A fused stage whose writers are all done
        flushes (``finish``) and closes its own edges in turn."""
        for e in self._out_edges.get(name, ()):
            if e.dst in self.actors:
                self.actors[e.dst].inbox.close_writer(e.dst_port)
            else:
                self._inline_writers[e.dst] -= 1
                if self._inline_writers[e.dst] == 0:
                    stage = self.inline[e.dst]
                    try:
                        res = stage.finish()
                    except Exception as exc:
                        raise StageFailed(e.dst, exc) from exc
                    if res is not None:
                        out = self._stage_routes[e.dst]
                        for f in [res] if isinstance(res, Frame) else res:
                            await out(f)
                    await self.close_outputs(e.dst)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-node counters: frames in/out, and per input port received/dropped/high-water."""
        out: dict[str, dict[str, Any]] = {}
        for name, node in self.nodes.items():
            entry: dict[str, Any] = {"frames_out": node.stats.frames_out}
            actor = self.actors.get(name)
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

    def activity(self) -> int:
        """Frames received by any node so far (the idle watch compares two readings)."""
        total = sum(s.frames_in for s in (n.stats for n in self.inline.values()))
        for a in self.actors.values():
            total += sum(p.received for p in a.inbox.ports.values())
        return total
