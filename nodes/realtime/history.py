"""The conversation a realtime model node has had, as the caller heard it, for replay.

A reconnect starts a new model session that remembers nothing. :class:`HeardHistory` keeps the
caller's transcribed turns and the model's replies cut to what playout acknowledged as played
(a reply nobody heard any of is left out), bounded to the last ``max_items`` messages, and
turns them into ``conversation.item.create`` events for the new session.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from voicegraph.dialogue import heard_prefix
from voicegraph.frames import PlayedPosition

from . import messages as m

__all__ = ["HeardHistory"]


class _Reply:
    __slots__ = ("full", "heard")

    def __init__(self) -> None:
        self.full = ""
        self.heard: str | None = None  # None until playout reported on it


class HeardHistory:
    """Caller turns and heard model replies, oldest first, at most ``max_items``."""

    def __init__(self, max_items: int = 40) -> None:
        self.max_items = max_items
        self._items: OrderedDict[int, str | _Reply] = OrderedDict()  # caller text or a reply
        self._replies: dict[int, _Reply] = {}
        self._n = 0

    def _add(self, value: str | _Reply) -> None:
        self._n += 1
        self._items[self._n] = value
        while len(self._items) > self.max_items:
            _, old = self._items.popitem(last=False)
            if isinstance(old, _Reply):
                self._replies = {u: r for u, r in self._replies.items() if r is not old}

    def caller(self, text: str) -> None:
        """The caller said ``text`` (a final transcript)."""
        if text.strip():
            self._add(text.strip())

    def reply(self, utterance: int, delta: str) -> None:
        """The model said ``delta`` as part of ``utterance``."""
        r = self._replies.get(utterance)
        if r is None:
            r = self._replies[utterance] = _Reply()
            self._add(r)
        r.full += delta

    def played(self, pos: PlayedPosition) -> None:
        """Playout's report of how much of an utterance the caller heard."""
        r = self._replies.get(pos.utterance_id)
        if r is not None:
            r.heard = r.full if pos.complete else heard_prefix(r.full, [], pos.played, pos.sent)

    def items(self, dialect: Literal["ga", "beta"]) -> list[m.MessageItem]:
        """The heard conversation as message items for a new session of ``dialect``."""
        assistant_part = "output_text" if dialect == "ga" else "text"
        out = []
        for value in self._items.values():
            if isinstance(value, str):
                out.append(m.MessageItem(role="user", content=[m.TextPart("input_text", value)]))
            elif value.heard:
                part = m.TextPart(assistant_part, value.heard.strip())
                out.append(m.MessageItem(role="assistant", content=[part]))
        return out
