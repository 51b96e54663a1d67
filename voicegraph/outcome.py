"""How a call ends: :class:`CallResult`, and :class:`NodeFailure` for a node that raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallResult", "NodeFailure", "StageFailed"]


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


class StageFailed(Exception):
    """A fused stage raised inside its sender's task: carries the stage's name, so the failure
    is reported under the stage and not under the actor whose task ran it."""

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
