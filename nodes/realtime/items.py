"""The model's output items as an OpenAI Realtime node tracks them: audio items and tool calls.

Each assistant audio item plays as one utterance (the ``utterance_id`` playout and barge-in
speak of): :class:`ItemBook` maps item ids to :class:`AudioItem` (its utterance, how much audio
arrived, whether it was interrupted, truncated or finished), so a played position can be turned
back into an ``item.truncate`` (:meth:`ItemBook.truncation`). It also remembers the function name of each call whose item
was announced, for ``function_call_arguments.done`` events that omit it. Both are bounded: the
oldest entries are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

from voicegraph.frames import PlayedPosition

from . import messages as m

__all__ = ["AudioItem", "ItemBook"]


class AudioItem:
    """An assistant audio item: its utterance and how much audio was received for it."""

    __slots__ = ("done", "interrupted", "received", "truncated", "utterance")

    def __init__(self, utterance: int) -> None:
        self.utterance = utterance
        self.received = 0
        """Bytes of its audio received."""
        self.interrupted = False
        """Its remaining audio must not reach the caller (barge-in)."""
        self.truncated = False
        """The service was told where the caller stopped hearing it."""
        self.done = False
        """Its AudioDone went out."""


class ItemBook:
    """Audio items by item id (the newest is :attr:`current`) and function names by call id,
    each keeping the last ``keep``."""

    __slots__ = ("_calls", "_items", "current", "keep", "last_utterance")

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self._items: OrderedDict[str, AudioItem] = OrderedDict()
        self._calls: OrderedDict[str, str] = OrderedDict()
        self.current: AudioItem | None = None
        """The audio item seen last (the one playing, unless interrupted or done)."""
        self.last_utterance = 0
        """The utterance id given to the newest item (0: none yet)."""

    def item(self, item_id: str, utterance: int | None = None) -> AudioItem:
        """The audio item ``item_id``; a new one becomes :attr:`current` and plays as
        ``utterance`` (default: the next utterance id)."""
        item = self._items.get(item_id)
        if item is None:
            if utterance is None:
                self.last_utterance += 1
                utterance = self.last_utterance
            item = self._items[item_id] = AudioItem(utterance)
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
            self.current = item
        return item

    def find(self, utterance_id: int) -> tuple[str, AudioItem] | None:
        """The newest item that plays as ``utterance_id``, with its id (``None``: none known)."""
        for item_id, item in reversed(self._items.items()):
            if item.utterance == utterance_id:
                return item_id, item
        return None

    def interrupt(self, utterance_id: int = 0) -> None:
        """The caller barged in on ``utterance_id`` (0: the current item): its remaining audio
        must not reach the caller."""
        if not utterance_id:
            item = self.current
        else:
            found = self.find(utterance_id)
            item = found[1] if found else None
        if item is not None:
            item.interrupted = True

    def truncation(self, pos: PlayedPosition, bytes_per_ms: int) -> m.ItemTruncate | None:
        """The ``item.truncate`` that cuts the model's memory of an interrupted utterance to
        what the caller heard (``pos``), once per item; ``None`` when there is nothing to cut
        (a completed utterance, an unknown one, one already cut or one without audio)."""
        if pos.complete:
            return None
        found = self.find(pos.utterance_id)
        if found is None:
            return None
        item_id, item = found
        item.interrupted = True
        if item.truncated:
            return None
        item.truncated = True
        produced_ms = item.received // bytes_per_ms
        if produced_ms == 0:
            # Nothing of it was produced: the service refuses to truncate an item without audio.
            return None
        # Clamp to what the service produced: it rejects positions past the item's audio.
        end_ms = min(int(pos.played * 1000), produced_ms)
        return m.ItemTruncate(item_id=item_id, content_index=0, audio_end_ms=end_ms)

    def close_current(self) -> AudioItem | None:
        """Mark the current item done if it is still playing (a session ended under it);
        returns it then, so its end can be reported."""
        item = self.current
        if item is None or item.interrupted or item.done:
            return None
        item.done = True
        return item

    def name_call(self, call_id: str, name: str) -> None:
        """Remember that call ``call_id`` calls function ``name``."""
        self._calls[call_id] = name
        while len(self._calls) > self.keep:
            self._calls.popitem(last=False)

    def call_name(self, call_id: str) -> str:
        """The function name remembered for ``call_id`` (forgotten now; ``""``: unknown)."""
        return self._calls.pop(call_id, "")
