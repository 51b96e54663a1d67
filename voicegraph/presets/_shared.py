"""What the preset graphs share: their option types, two questions asked of a node's ports and
the caller-audio edge."""

from __future__ import annotations

from typing import Literal

from ..frames import AudioFormat
from ..graph import Graph
from ..node import Node

__all__ = ["Interruptible", "Sensitivity", "emittable", "feed_caller_audio", "pinned_format"]

Interruptible = Literal["none", "dtmf", "speech", "any"]
Sensitivity = Literal["low", "medium", "high"]


def emittable(node: Node, port: str, *types: type) -> tuple[type, ...]:
    """The subset of ``types`` the node's output ``port`` can emit (carriers differ: Twilio
    has no clear confirmation, Plivo sends ``clearedAudio``)."""
    declared = node.output(port).types
    return tuple(t for t in types if any(issubclass(t, d) or issubclass(d, t) for d in declared))


def pinned_format(node: Node, port: str) -> AudioFormat | None:
    """The audio format the node's input ``port`` pins (``None``: it takes any)."""
    return node.input(port).format


def feed_caller_audio(g: Graph, name: str, node: Node, carrier_format: AudioFormat) -> None:
    """Connect the caller's audio to ``name``'s ``audio`` input: the oldest audio is dropped
    when the node falls behind, and a converter is inserted when the node pins another format."""
    fmt = pinned_format(node, "audio")
    g.connect(
        "carrier_in.audio",
        f"{name}.audio",
        policy="drop_oldest",
        capacity=100,
        convert=fmt is not None and fmt != carrier_format,
    )
