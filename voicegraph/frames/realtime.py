"""Requests to a model that speaks for itself (realtime mode): say this, and tool calls."""

from __future__ import annotations

from typing import ClassVar

from .base import Frame, Kind

__all__ = ["Say", "ToolCallRequest", "ToolCallResult"]


class Say(Frame, frozen=True, kw_only=True):
    """Ask a node that produces its own speech (a realtime model) to say ``text`` once what it
    is saying now is over, as utterance ``utterance_id`` (0: a fresh id). A request, not
    media: the model speaks it, so it may travel on a feedback edge."""

    kind: ClassVar[Kind] = Kind.CONTROL
    text: str
    utterance_id: int = 0


class ToolCallRequest(Frame, frozen=True, kw_only=True):
    """A model asks for a tool call (realtime mode)."""

    kind: ClassVar[Kind] = Kind.MEDIA
    call_id: str
    name: str
    arguments: str


class ToolCallResult(Frame, frozen=True, kw_only=True):
    """The output of a tool call, to be returned to the model."""

    kind: ClassVar[Kind] = Kind.MEDIA
    call_id: str
    output: str
