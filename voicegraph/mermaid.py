"""Render a graph as a Mermaid flowchart (:meth:`voicegraph.graph.Graph.to_mermaid`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .edges import Edge, overlaps
from .frames import AudioFrame
from .node import Node, Stage
from .validation import emitted, policy_of

__all__ = ["to_mermaid"]


def to_mermaid(nodes: Mapping[str, Node], edges: Sequence[Edge]) -> str:
    """Actors as boxes, inline stages as stadiums, edges labelled with frame types and audio
    formats (and their policy when not ``block``); feedback edges dashed."""
    lines = ["flowchart LR"]
    for name, node in nodes.items():
        label = f"{name}<br/><small>{type(node).__name__}</small>"
        if isinstance(node, Stage):
            lines.append(f'    {name}(["{label}"])')
        else:
            lines.append(f'    {name}["{label}"]')
    for e in edges:
        out = nodes[e.src].output(e.src_port)
        carried = emitted(nodes, e)
        parts = [t.__name__ for t in carried]
        if out.format is not None and any(overlaps((AudioFrame,), t) for t in carried):
            parts.append(str(out.format))
        pol = policy_of(nodes, e)
        if pol != "block":
            parts.append(pol)
        label = " ".join(parts).replace('"', "'")
        arrow = "-.->" if e.feedback else "-->"
        lines.append(f'    {e.src} {arrow}|"{label}"| {e.dst}')
    return "\n".join(lines) + "\n"
