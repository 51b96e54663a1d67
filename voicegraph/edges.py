"""What a graph is made of and how it can be wrong: :class:`Edge` and the :class:`GraphError`
family (each error names both nodes and says what to change)."""

from __future__ import annotations

from dataclasses import dataclass

from .channel import Policy
from .frames import Frame

__all__ = [
    "AudioFormatMismatch",
    "Edge",
    "FrameTypeMismatch",
    "GraphError",
    "IllegalCycle",
    "UnconnectedPort",
    "UnknownNode",
    "UnknownPort",
    "overlaps",
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


def overlaps(accepted: tuple[type[Frame], ...], t: type[Frame]) -> bool:
    """Whether frames of class ``t`` may be among ``accepted`` (either is a subclass)."""
    return any(issubclass(t, a) or issubclass(a, t) for a in accepted)
