"""The graph builder: named nodes, typed edges, build-time validation, Mermaid rendering.

A :class:`Graph` is a plain value: add nodes, connect ports, inspect, modify (``replace``,
``insert``, ``remove``), render, then run it with :class:`~voicegraph.runtime.Call`. A graph
holds node *instances*, which keep per-call state, so build one graph per call (presets are
functions that do that).

Validation (``validate()``, also run by ``Call``) raises a subclass of :class:`GraphError` naming
both nodes and the reason: unknown node or port, frame-type mismatch, audio-format mismatch,
unconnected required port, illegal cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .channel import Policy
from .frames import AudioFormat, AudioFrame, Frame, Kind
from .node import Actor, In, Node, Out, Stage

__all__ = [
    "AudioFormatMismatch",
    "Edge",
    "FrameTypeMismatch",
    "Graph",
    "GraphError",
    "IllegalCycle",
    "UnconnectedPort",
    "UnknownNode",
    "UnknownPort",
]


class GraphError(ValueError):
    """A graph cannot be built as drawn. The message says which nodes and what to change."""


class UnknownNode(GraphError):
    pass


class UnknownPort(GraphError):
    pass


class FrameTypeMismatch(GraphError):
    pass


class AudioFormatMismatch(GraphError):
    pass


class UnconnectedPort(GraphError):
    pass


class IllegalCycle(GraphError):
    pass


@dataclass(frozen=True)
class Edge:
    """A connection from ``src.src_port`` to ``dst.dst_port``.

    ``types`` (optional) filters the frame types the edge carries; ``feedback`` marks an edge
    that carries only control/event frames back upstream, which makes a cycle legal."""

    src: str
    src_port: str
    dst: str
    dst_port: str
    policy: Policy | None = None
    capacity: int | None = None
    types: tuple[type[Frame], ...] | None = None
    feedback: bool = False

    def label(self) -> str:
        return f"{self.src}.{self.src_port} -> {self.dst}.{self.dst_port}"


def _accepts(accepted: tuple[type[Frame], ...], t: type[Frame]) -> bool:
    return any(issubclass(t, a) for a in accepted)


def _overlaps(accepted: tuple[type[Frame], ...], t: type[Frame]) -> bool:
    return any(issubclass(t, a) or issubclass(a, t) for a in accepted)


class Graph:
    """A call's graph of named nodes. ``fuse``: run stages inline in their sender's task."""

    def __init__(self, name: str = "graph", *, fuse: bool = True) -> None:
        self.name = name
        self.fuse = fuse
        self._nodes: dict[str, Node] = {}
        self.edges: list[Edge] = []

    # ---------------------------------------------------------------- building

    @property
    def nodes(self) -> dict[str, Node]:
        return dict(self._nodes)

    def __getitem__(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise UnknownNode(
                f"graph {self.name!r} has no node {name!r} (nodes: {', '.join(self._nodes)})"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def add(self, name: str, node: Node) -> Node:
        """Add ``node`` under ``name`` and return it."""
        if not isinstance(node, (Actor, Stage)):
            raise TypeError(f"node {name!r}: expected an Actor or Stage, got {type(node).__name__}")
        if not name or "." in name:
            raise GraphError(f"node name {name!r} must be non-empty and contain no '.'")
        if name in self._nodes:
            raise GraphError(f"graph {self.name!r} already has a node named {name!r}")
        if any(n is node for n in self._nodes.values()):
            raise GraphError(f"node {name!r} is already in this graph under another name")
        if not hasattr(node, "stats"):
            raise GraphError(
                f"node {name!r} ({type(node).__name__}) did not call Node.__init__; "
                "call super().__init__() in its __init__"
            )
        node.name = name
        self._nodes[name] = node
        return node

    def _resolve(self, ref: str, direction: str) -> tuple[str, str]:
        node_name, _, port = ref.partition(".")
        node = self[node_name]
        ports: tuple[In, ...] | tuple[Out, ...] = (
            node.outputs if direction == "out" else node.inputs
        )
        if not port:
            if len(ports) != 1:
                names = ", ".join(p.name for p in ports) or "none"
                raise UnknownPort(
                    f"{node_name}: name the {direction}put port in {ref!r} "
                    f"({direction}puts: {names})"
                )
            return node_name, ports[0].name
        if not any(p.name == port for p in ports):
            names = ", ".join(p.name for p in ports) or "none"
            raise UnknownPort(
                f"node {node_name!r} has no {direction}put port {port!r} ({direction}puts: {names})"
            )
        return node_name, port

    def connect(
        self,
        src: str,
        dst: str,
        *,
        policy: Policy | None = None,
        capacity: int | None = None,
        types: tuple[type[Frame], ...] | None = None,
        feedback: bool = False,
        convert: bool = False,
    ) -> Edge:
        """Connect output ``"node.port"`` to input ``"node.port"`` (the port may be omitted when
        the node has exactly one). With ``convert=True`` an audio converter stage is inserted
        when the two ports pin different audio formats. Checks types and formats at once."""
        s, sp = self._resolve(src, "out")
        d, dp = self._resolve(dst, "in")
        if policy not in (None, "block", "drop_oldest"):
            raise GraphError(f"edge {s}.{sp} -> {d}.{dp}: unknown policy {policy!r}")
        edge = Edge(s, sp, d, dp, policy, capacity, tuple(types) if types else None, feedback)
        if convert:
            sfmt = self._nodes[s].output(sp).format
            dfmt = self._nodes[d].input(dp).format
            if sfmt is not None and dfmt is not None and sfmt != dfmt:
                from voicegraph.nodes.convert import make_converter  # lazy: engine stays pure

                name = f"{s}_to_{d}_convert"
                self.add(name, make_converter(sfmt, dfmt))
                self.connect(src, name, policy=policy, capacity=capacity, types=types)
                return self.connect(name, dst, policy=policy, capacity=capacity, feedback=feedback)
        self._check_edge(edge)
        self.edges.append(edge)
        return edge

    def chain(self, *names: str, policy: Policy | None = None) -> None:
        """Connect each node's single output to the next node's single input."""
        for a, b in zip(names, names[1:], strict=False):
            self.connect(a, b, policy=policy)

    def remove(self, name: str) -> Node:
        """Remove a node and every edge touching it."""
        node = self[name]
        del self._nodes[name]
        self.edges = [e for e in self.edges if name not in (e.src, e.dst)]
        return node

    def replace(self, name: str, node: Node) -> Node:
        """Put ``node`` in place of node ``name``, keeping its edges (re-checked)."""
        old = self[name]
        edges = [e for e in self.edges if name in (e.src, e.dst)]
        self.remove(name)
        self.add(name, node)
        try:
            for e in edges:
                self._check_edge(e)
                self.edges.append(e)
        except GraphError:
            self.remove(name)
            self.add(name, old)
            self.edges.extend(e for e in edges if e not in self.edges)
            raise
        return node

    def insert(self, name: str, node: Node, *, after: str) -> Node:
        """Insert a single-input, single-output ``node`` on every edge leaving ``after``
        (``"node.port"``): ``after -> X`` becomes ``after -> name -> X``."""
        s, sp = self._resolve(after, "out")
        moving = [e for e in self.edges if (e.src, e.src_port) == (s, sp)]
        if not moving:
            raise UnconnectedPort(f"{s}.{sp} has no edges to insert {name!r} into")
        self.add(name, node)
        self.edges = [e for e in self.edges if e not in moving]
        self.connect(f"{s}.{sp}", name)
        for e in moving:
            self.connect(
                name,
                f"{e.dst}.{e.dst_port}",
                policy=e.policy,
                capacity=e.capacity,
                types=e.types,
                feedback=e.feedback,
            )
        return node

    # -------------------------------------------------------------- validation

    def _emitted(self, edge: Edge) -> tuple[type[Frame], ...]:
        out = self._nodes[edge.src].output(edge.src_port)
        return edge.types if edge.types is not None else out.types

    def _check_edge(self, edge: Edge) -> None:
        src, dst = self._nodes[edge.src], self._nodes[edge.dst]
        try:
            out, inp = src.output(edge.src_port), dst.input(edge.dst_port)
        except KeyError as exc:
            raise UnknownPort(
                f"edge {edge.label()}: {edge.src if exc.args[0] == edge.src_port and not any(p.name == edge.src_port for p in src.outputs) else edge.dst} "
                f"has no port {exc.args[0]!r}"
            ) from None
        where = f"{edge.src}.{edge.src_port} ({type(src).__name__}) -> {edge.dst}.{edge.dst_port} ({type(dst).__name__})"
        if edge.types is not None:
            for t in edge.types:
                if not _overlaps(out.types, t):
                    raise FrameTypeMismatch(
                        f"{where}: edge filter {t.__name__} is never emitted by "
                        f"{edge.src}.{edge.src_port} (emits {out.describe_types()})"
                    )
        for t in self._emitted(edge):
            if not _overlaps(inp.types, t):
                raise FrameTypeMismatch(
                    f"{where}: {edge.src} emits {t.__name__} but {edge.dst}.{edge.dst_port} "
                    f"accepts only {inp.describe_types()}; filter the edge with types=(...) or "
                    "connect another port"
                )
        if edge.feedback:
            bad = [t.__name__ for t in self._emitted(edge) if t.kind is Kind.MEDIA]
            if bad:
                raise IllegalCycle(
                    f"{where}: a feedback edge may carry only control and event frames, "
                    f"not {', '.join(bad)}; filter it with types=(...)"
                )
        carries_audio = any(_overlaps((AudioFrame,), t) for t in self._emitted(edge))
        if carries_audio and out.format is not None and inp.format is not None:
            if out.format != inp.format:
                raise AudioFormatMismatch(
                    f"{where}: {edge.src} sends {out.format} audio but {edge.dst} expects "
                    f"{inp.format}; insert a converter or connect with convert=True"
                )

    def validate(self) -> None:
        """Check the whole graph; raise a :class:`GraphError` subclass on the first problem."""
        if not self._nodes:
            raise GraphError(f"graph {self.name!r} has no nodes")
        for e in self.edges:
            self._check_edge(e)
        for name, node in self._nodes.items():
            for p in node.inputs:
                if p.required and not any(
                    e.dst == name and e.dst_port == p.name for e in self.edges
                ):
                    raise UnconnectedPort(
                        f"required input {name}.{p.name} ({type(node).__name__}, accepts "
                        f"{p.describe_types()}) has no edge; connect a node to it"
                    )
            for q in node.outputs:
                if q.required and not any(
                    e.src == name and e.src_port == q.name for e in self.edges
                ):
                    raise UnconnectedPort(
                        f"required output {name}.{q.name} ({type(node).__name__}, emits "
                        f"{q.describe_types()}) has no edge; connect it to a node"
                    )
            if isinstance(node, Stage) and len(node.outputs) != 1:
                raise GraphError(f"stage {name!r} must have exactly one output port")
        lanes: dict[tuple[str, str], tuple[Edge, str, int]] = {}
        for e in self.edges:
            port = self._nodes[e.dst].input(e.dst_port)
            lane = (self._policy(e), e.capacity or port.capacity)
            seen = lanes.setdefault((e.dst, e.dst_port), (e, *lane))
            if seen[1:] != lane:
                raise GraphError(
                    f"edges {seen[0].label()} and {e.label()} feed one port with different "
                    f"policy/capacity ({seen[1]}/{seen[2]} vs {lane[0]}/{lane[1]}); a port has "
                    "one queue, so give them the same"
                )
        self._check_cycles()

    def _check_cycles(self) -> None:
        # A cycle can deadlock when every edge on it may block: it needs a feedback edge
        # (control/event only) or a drop_oldest edge. A cycle of fused stages only would recurse
        # forever, whatever its edges.
        def find(edges: list[Edge], nodes: set[str] | None = None) -> list[str] | None:
            adj: dict[str, list[str]] = {}
            for e in edges:
                if nodes is None or (e.src in nodes and e.dst in nodes):
                    adj.setdefault(e.src, []).append(e.dst)
            color: dict[str, int] = {}
            stack: list[str] = []

            def dfs(u: str) -> list[str] | None:
                color[u] = 1
                stack.append(u)
                for v in adj.get(u, ()):
                    if color.get(v, 0) == 1:
                        return stack[stack.index(v) :] + [v]
                    if color.get(v, 0) == 0:
                        found = dfs(v)
                        if found:
                            return found
                stack.pop()
                color[u] = 2
                return None

            for n in list(adj):
                if color.get(n, 0) == 0:
                    found = dfs(n)
                    if found:
                        return found
            return None

        blocking = [e for e in self.edges if not e.feedback and self._policy(e) == "block"]
        cyc = find(blocking)
        if cyc:
            raise IllegalCycle(
                f"cycle {' -> '.join(cyc)} has only blocking edges and could deadlock; mark the "
                "edge going back upstream feedback=True (control/event frames only) or make it "
                "drop_oldest"
            )
        if self.fuse:
            stages = {n for n, node in self._nodes.items() if isinstance(node, Stage)}
            cyc = find(self.edges, stages)
            if cyc:
                raise IllegalCycle(
                    f"cycle {' -> '.join(cyc)} consists only of inline stages and would recurse "
                    "forever; put an actor on it or build the graph with fuse=False"
                )

    def _policy(self, e: Edge) -> Policy:
        return e.policy or self._nodes[e.dst].input(e.dst_port).policy

    # ----------------------------------------------------------------- render

    def to_mermaid(self) -> str:
        """Render as a Mermaid flowchart: actors as boxes, inline stages as stadiums, edges
        labelled with frame types and audio formats; feedback edges dashed."""
        lines = ["flowchart LR"]
        for name, node in self._nodes.items():
            label = f"{name}<br/><small>{type(node).__name__}</small>"
            if isinstance(node, Stage):
                lines.append(f'    {name}(["{label}"])')
            else:
                lines.append(f'    {name}["{label}"]')
        for e in self.edges:
            out = self._nodes[e.src].output(e.src_port)
            parts = [t.__name__ for t in self._emitted(e)]
            if out.format is not None and any(
                _overlaps((AudioFrame,), t) for t in self._emitted(e)
            ):
                parts.append(str(out.format))
            pol = self._policy(e)
            if pol != "block":
                parts.append(pol)
            label = " ".join(parts).replace('"', "'")
            arrow = "-.->" if e.feedback else "-->"
            lines.append(f'    {e.src} {arrow}|"{label}"| {e.dst}')
        return "\n".join(lines) + "\n"

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self._nodes)} nodes, {len(self.edges)} edges>"


def format_of(node: Node, port: str, direction: str = "out") -> AudioFormat | None:
    """The pinned audio format of a node's port, or ``None``."""
    return (node.output(port) if direction == "out" else node.input(port)).format
