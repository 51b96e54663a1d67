"""Events nodes publish on a call's event bus for observers (metrics, traces, logs).

Besides the per-turn :class:`~voicegraph.frames.TimelineMark` s (see :mod:`voicegraph.timeline`),
a call publishes:

* :class:`ProviderEvent` -- a provider connection attempt, a dropped connection, a provider
  that gave up, or one request's time to first byte (STT finalize, TTS utterance, realtime turn,
  LLM round);
* :class:`ToolEvent` -- a tool the agent ran.

Conversation moments travel as ``TimelineMark(turn=-1, stage=...)`` (stages
``barge_in_decision``, ``clear_sent``, ``false_interruption``, ``apology``). Times are
``time.monotonic()`` seconds. Events carry no audio, text or credentials: names, times and a
short error category only.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from .frames import Frame, Kind

__all__ = ["CONVERSATION_STAGES", "ProviderEvent", "ToolEvent"]

CONVERSATION_STAGES = ("barge_in_decision", "clear_sent", "false_interruption", "apology")
"""Stages of the ``TimelineMark(turn=-1)`` events: moments of the conversation, not of a turn."""

ProviderWhat = Literal["connect", "disconnect", "failed", "request"]


class ProviderEvent(Frame, frozen=True, kw_only=True):
    """Something a provider connection or request did.

    ``what``: ``"connect"`` (a handshake from ``start`` to ``end``; ``ok`` false when it
    failed; ``reconnect`` true for every attempt after the first successful connection),
    ``"disconnect"`` (an open socket dropped; it will be reconnected), ``"failed"`` (the
    provider gave up: ``error`` is ``"unavailable"``, ``"auth"`` or ``"protocol"``) or
    ``"request"`` (one request from ``start`` to its first response at ``first``, ending at
    ``end``; ``turn`` is the timeline turn when known, else 0). ``error`` is a short category,
    never a message from the peer."""

    kind: ClassVar[Kind] = Kind.EVENT
    provider: str
    what: ProviderWhat
    start: float
    end: float
    first: float = 0.0
    ok: bool = True
    reconnect: bool = False
    error: str = ""
    node: str = ""
    turn: int = 0


class ToolEvent(Frame, frozen=True, kw_only=True):
    """The agent ran tool ``name`` from ``start`` to ``end`` for timeline turn ``turn`` (0 when
    unknown); ``ok`` false when it raised or timed out (the model got an error result)."""

    kind: ClassVar[Kind] = Kind.EVENT
    name: str
    start: float
    end: float
    ok: bool = True
    turn: int = 0
