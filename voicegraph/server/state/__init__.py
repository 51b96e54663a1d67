"""Call state that workers and machines share: single-use stream tokens, admission, the call
registry and a channel to the worker holding a call (see :mod:`voicegraph.server.state.base`).

``AgentRuntime(state=None)`` keeps it in process (:class:`MemoryState`);
``state="redis://host:6379/0"`` shares it through Redis (:class:`RedisState`, needs
``pip install 'voicegraph[redis]'``); any object with the :class:`CallState` methods also works.
"""

from __future__ import annotations

from typing import Any

from .base import CallRecord, CallState, StateUnavailable
from .memory import MemoryState
from .redis import RedisState, RedisStateError  # imports the redis package only when built

__all__ = [
    "CallRecord",
    "CallState",
    "MemoryState",
    "RedisState",
    "RedisStateError",
    "StateUnavailable",
    "open_state",
]


def open_state(spec: Any) -> CallState:
    """The state ``AgentRuntime(state=spec)`` names: None (in process), a Redis URL, or a
    :class:`CallState` object. ``ValueError`` (a ``RedisStateError`` for Redis problems) says
    what to change otherwise."""
    if spec is None:
        return MemoryState()
    if isinstance(spec, str):
        return RedisState(spec)
    if isinstance(spec, CallState):
        return spec
    raise ValueError(
        f"state={type(spec).__name__} is not a state: pass None, a Redis URL such as "
        "'redis://localhost:6379/0', or a CallState object"
    )
