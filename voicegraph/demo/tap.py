"""A graph node that watches the conversation: what the caller said, what the agent said, and
how much of it the caller heard. The demo adds it to the cascading preset's graph."""

from __future__ import annotations

from collections.abc import Callable

from voicegraph.dialogue import heard_prefix
from voicegraph.frames import AgentText, EndOfTurn, Frame, PlayedPosition, Word, WordTimestamps
from voicegraph.graph import Graph
from voicegraph.node import Actor, In

__all__ = ["TranscriptTap", "add_tap"]

_MAX_OPEN = 64  # utterances whose playback has not been reported yet


class TranscriptTap(Actor):
    """Reports caller turns and agent utterances as they happen.

    Inputs: ``caller`` (EndOfTurn from the turn detector), ``agent`` (AgentText), ``words``
    (WordTimestamps from the TTS), ``played`` (PlayedPosition from playout). Calls
    ``on_caller(text)`` per turn and ``on_agent(utterance_id, text, heard)`` once an utterance
    was played to the end (``heard == text``) or cut by a barge-in (``heard`` is the part the
    carrier acknowledged, cut at a word boundary)."""

    inputs = (
        In("caller", EndOfTurn),
        In("agent", AgentText),
        In("words", WordTimestamps, required=False),
        In("played", PlayedPosition),
    )

    def __init__(
        self,
        on_caller: Callable[[str], None],
        on_agent: Callable[[int, str, str], None],
    ) -> None:
        super().__init__()
        self.on_caller = on_caller
        self.on_agent = on_agent
        self._text: dict[int, list[str]] = {}
        self._words: dict[int, list[Word]] = {}

    async def handle(self, port: str, frame: Frame) -> None:
        if isinstance(frame, EndOfTurn):
            self.on_caller(frame.text)
        elif isinstance(frame, AgentText):
            self._text.setdefault(frame.utterance_id, []).append(frame.text)
        elif isinstance(frame, WordTimestamps):
            self._words.setdefault(frame.utterance_id, []).extend(frame.words)
        elif isinstance(frame, PlayedPosition):
            uid = frame.utterance_id
            text = "".join(self._text.pop(uid, ())).strip()
            words = self._words.pop(uid, [])
            if frame.complete:
                heard = text
            else:
                heard = heard_prefix(text, words, frame.played, frame.sent)
            self.on_agent(uid, text, heard)
        for d in (self._text, self._words):
            while len(d) > _MAX_OPEN:
                del d[next(iter(d))]


def add_tap(graph: Graph, tap: TranscriptTap, name: str = "transcript") -> None:
    """Fan the cascading graph's turns, agent text, word timings and playback reports out to
    ``tap`` too (the other edges are untouched)."""
    graph.add(name, tap)
    graph.connect("turns.out", f"{name}.caller", types=(EndOfTurn,))
    graph.connect("agent.text", f"{name}.agent")
    graph.connect("tts.audio", f"{name}.words", types=(WordTimestamps,))
    graph.connect("playout.events", f"{name}.played")
