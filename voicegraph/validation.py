"""Build-time checks of a graph: every edge's frame types and audio formats, required ports,
one queue per input port, and cycles that could deadlock or recurse.

Functions of a graph's parts (its nodes by name and its edges), so the builder
(:mod:`voicegraph.graph`) calls them without this module importing it. Each raises a
:class:`~voicegraph.edges.GraphError` subclass naming both nodes and what to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .channel import Policy
from .edges import (
    AudioFormatMismatch,
    Edge,
    FrameTypeMismatch,
    GraphError,
    IllegalCycle,
    UnconnectedPort,
    UnknownPort,
    overlaps,
)
from .frames import AudioFrame, Frame, Kind
from .node import Node, Stage

__all__ = ["check_edge", "emitted", "policy_of", "validate"]


def emitted(nodes: Mapping[str, Node], edge: Edge) -> tuple[type[Frame], ...]:
    """The frame classes ``edge`` may carry: its filter, else its source port's types."""
    out = nodes[edge.src].output(edge.src_port)
    return edge.types if edge.types is not None else out.types


def policy_of(nodes: Mapping[str, Node], e: Edge) -> Policy:
    """The overflow policy of ``e``: its own, else its destination port's."""
    return e.policy or nodes[e.dst].input(e.dst_port).policy


def check_edge(nodes: Mapping[str, Node], edge: Edge) -> None:
    """Check one edge's ports, frame types, feedback rule and audio formats."""
    src, dst = nodes[edge.src], nodes[edge.dst]
    try:
        out, inp = src.output(edge.src_port), dst.input(edge.dst_port)
    except KeyError as exc:
        missing_on_src = exc.args[0] == edge.src_port and not any(
            p.name == edge.src_port for p in src.outputs
        )
        raise UnknownPort(
            f"edge {edge.label()}: {edge.src if missing_on_src else edge.dst} "
            f"has no port {exc.args[0]!r}"
        ) from None
    where = (
        f"{edge.src}.{edge.src_port} ({type(src).__name__}) -> "
        f"{edge.dst}.{edge.dst_port} ({type(dst).__name__})"
    )
    if edge.types is not None:
        for t in edge.types:
            if not overlaps(out.types, t):
                raise FrameTypeMismatch(
                    f"{where}: edge filter {t.__name__} is never emitted by "
                    f"{edge.src}.{edge.src_port} (emits {out.describe_types()})"
                )
    carried = emitted(nodes, edge)
    for t in carried:
        if not overlaps(inp.types, t):
            raise FrameTypeMismatch(
                f"{where}: {edge.src} emits {t.__name__} but {edge.dst}.{edge.dst_port} "
                f"accepts only {inp.describe_types()}; filter the edge with types=(...) or "
                "connect another port"
            )
    if edge.feedback:
        bad = [t.__name__ for t in carried if t.kind is Kind.MEDIA]
        if bad:
            raise IllegalCycle(
                f"{where}: a feedback edge may carry only control and event frames, "
                f"not {', '.join(bad)}; filter it with types=(...)"
            )
    carries_audio = any(overlaps((AudioFrame,), t) for t in carried)
    if carries_audio and out.format is not None and inp.format is not None:
        if out.format != inp.format:
            raise AudioFormatMismatch(
                f"{where}: {edge.src} sends {out.format} audio but {edge.dst} expects "
                f"{inp.format}; insert a converter or connect with convert=True"
            )


def validate(name: str, nodes: Mapping[str, Node], edges: Sequence[Edge], fuse: bool) -> None:
    """Check the whole graph ``name``; raise on the first problem."""
    if not nodes:
        raise GraphError(f"graph {name!r} has no nodes")
    for e in edges:
        check_edge(nodes, e)
    for node_name, node in nodes.items():
        _check_required(node_name, node, edges)
        if isinstance(node, Stage) and len(node.outputs) != 1:
            raise GraphError(f"stage {node_name!r} must have exactly one output port")
    lanes: dict[tuple[str, str], tuple[Edge, str, int]] = {}
    for e in edges:
        port = nodes[e.dst].input(e.dst_port)
        lane = (policy_of(nodes, e), e.capacity or port.capacity)
        seen = lanes.setdefault((e.dst, e.dst_port), (e, *lane))
        if seen[1:] != lane:
            raise GraphError(
                f"edges {seen[0].label()} and {e.label()} feed one port with different "
                f"policy/capacity ({seen[1]}/{seen[2]} vs {lane[0]}/{lane[1]}); a port has "
                "one queue, so give them the same"
            )
    _check_cycles(nodes, edges, fuse)


def _check_required(name: str, node: Node, edges: Sequence[Edge]) -> None:
    for p in node.inputs:
        if p.required and not any(e.dst == name and e.dst_port == p.name for e in edges):
            raise UnconnectedPort(
                f"required input {name}.{p.name} ({type(node).__name__}, accepts "
                f"{p.describe_types()}) has no edge; connect a node to it"
            )
    for q in node.outputs:
        if q.required and not any(e.src == name and e.src_port == q.name for e in edges):
            raise UnconnectedPort(
                f"required output {name}.{q.name} ({type(node).__name__}, emits "
                f"{q.describe_types()}) has no edge; connect it to a node"
            )


def _find_cycle(edges: Sequence[Edge], among: set[str] | None = None) -> list[str] | None:
    """One cycle of ``edges`` (limited to the nodes ``among``), as node names, or ``None``."""
    adj: dict[str, list[str]] = {}
    for e in edges:
        if among is None or (e.src in among and e.dst in among):
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


def _check_cycles(nodes: Mapping[str, Node], edges: Sequence[Edge], fuse: bool) -> None:
    # A cycle can deadlock when every edge on it may block: it needs a feedback edge
    # (control/event only) or a drop_oldest edge. A cycle of fused stages only would recurse
    # forever, whatever its edges.
    blocking = [e for e in edges if not e.feedback and policy_of(nodes, e) == "block"]
    cyc = _find_cycle(blocking)
    if cyc:
        raise IllegalCycle(
            f"cycle {' -> '.join(cyc)} has only blocking edges and could deadlock; mark the "
            "edge going back upstream feedback=True (control/event frames only) or make it "
            "drop_oldest"
        )
    if fuse:
        stages = {n for n, node in nodes.items() if isinstance(node, Stage)}
        cyc = _find_cycle(edges, stages)
        if cyc:
            raise IllegalCycle(
                f"cycle {' -> '.join(cyc)} consists only of inline stages and would recurse "
                "forever; put an actor on it or build the graph with fuse=False"
            )
