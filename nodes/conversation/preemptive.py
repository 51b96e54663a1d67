"""Preemptive replies: the agent starts answering before the end of the turn is confirmed.

On an :class:`~voicegraph.nodes.conversation.turn_policy.EarlyTurn` the agent node starts the reply at once, behind
a closed gate: the model streams, but no text reaches the TTS and nothing enters the history.
The ``EndOfTurn`` that confirms the same text opens the gate, and the text held so far goes out
at once (the reply plays as if the model had answered instantly). ``TurnContinues``, or a
confirmed turn with different text, cancels it: the model's stream is closed, nothing was
played, nothing was recorded. Tools wait for the gate too (``Turn.confirmed()``), so a reply
that is thrown away has no side effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

__all__ = ["HeldReply", "same_turn"]


def same_turn(a: str, b: str) -> bool:
    """Whether two transcripts of a turn are the same words (case and spacing aside)."""
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


@dataclass
class HeldReply:
    """A reply prepared for ``text`` that waits for the turn's confirmation.

    ``gate`` opens on :meth:`release`; ``scope`` cancels the reply task; ``commit`` is called
    once, at release, to enter the turn into the history and make the reply current."""

    text: str
    gate: anyio.Event
    scope: anyio.CancelScope
    commit: Any
    released: bool = False

    def matches(self, text: str) -> bool:
        return same_turn(self.text, text)

    def release(self, frame: Any) -> None:
        """The turn is confirmed: record it and let the held text out."""
        if self.released:
            return
        self.released = True
        self.commit(frame)
        self.gate.set()

    def cancel(self) -> None:
        """The caller went on: stop the reply; it was never played nor recorded."""
        if not self.released:
            self.scope.cancel()
