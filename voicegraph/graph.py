"""The graph builder: named nodes and typed edges, added, connected (with converters inserted
on request), modified and inspected.

A :class:`Graph` is a plain value: add nodes, connect ports, inspect, modify (``replace``,
``insert``, ``remove``), render, then run it with :class:`~voicegraph.runtime.Call`. A graph
holds node *instances*, which keep per-call state, so build one graph per call (presets are
functions that do that).

Validation (``validate()``, also run by ``Call``; the checks live in :mod:`voicegraph.validation`)
raises a subclass of :class:`GraphError` (:mod:`voicegraph.edges`) naming both nodes and the
reason: unknown node or port, frame-type mismatch, audio-format mismatch, unconnected required
port, illegal cycle. Rendering: :mod:`voicegraph.mermaid`.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import mermaid, validation
from .channel import Policy
from .edges import (
    AudioFormatMismatch,
    Edge,
    FrameTypeMismatch,
    GraphError,
    IllegalCycle,
    UnconnectedPort,
    UnknownNode,
    UnknownPort,
)
from .frames import AudioFormat, Frame
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

    def _check_edge(self, edge: Edge) -> None:
        validation.check_edge(self._nodes, edge)

    def validate(self) -> None:
        """Check the whole graph; raise a :class:`GraphError` subclass on the first problem
        (see :mod:`voicegraph.validation`)."""
        validation.validate(self.name, self._nodes, self.edges, self.fuse)

    # ----------------------------------------------------------------- render

    def to_mermaid(self) -> str:
        """Render as a Mermaid flowchart: actors as boxes, inline stages as stadiums, edges
        labelled with frame types and audio formats; feedback edges dashed."""
        return mermaid.to_mermaid(self._nodes, self.edges)

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self._nodes)} nodes, {len(self.edges)} edges>"


def format_of(node: Node, port: str, direction: str = "out") -> AudioFormat | None:
    """The pinned audio format of a node's port, or ``None``."""
    return (node.output(port) if direction == "out" else node.input(port)).format
