"""What the preset graphs share: their option types and two questions asked of a node's ports."""

from __future__ import annotations

from typing import Literal

from ..frames import AudioFormat
from ..node import Node

__all__ = ["Interruptible", "Sensitivity", "emittable", "pinned_format"]

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
