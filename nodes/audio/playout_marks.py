"""The mark ledger of :class:`~voicegraph.nodes.audio.playout.Playout`: proof of what was played.

Every chunk sent to the carrier gets a sequence number; a mark named
``<prefix><generation>.<sequence>`` goes out after some chunks, and the carrier's echo of it
acknowledges that chunk and every earlier one (carriers play in order). :class:`MarkLedger`
keeps the chunks awaiting an echo (bounded) and, per utterance, how much was sent and how much
was acknowledged as played (:class:`UtteranceProgress`). A clear starts a new generation, so
echoes of marks sent before it are recognised as late and ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["MarkLedger", "UtteranceProgress"]


@dataclass(slots=True)
class UtteranceProgress:
    """What became of one utterance's audio (seconds)."""

    sent: float = 0.0
    played: float = 0.0
    """Acknowledged by echoed marks (never more than the caller heard)."""
    chunks_sent: int = 0
    chunks_played: int = 0
    all_sent: bool = False
    """Its AudioDone passed the send point: no more of it will be sent."""

    @property
    def finished(self) -> bool:
        """All of it was sent and every chunk acknowledged."""
        return self.all_sent and self.chunks_played >= self.chunks_sent


class MarkLedger:
    """Chunks sent and not yet acknowledged, and each utterance's progress.

    ``max_unacked`` bounds the chunks awaiting an echo: beyond it the oldest are forgotten
    (counted in :attr:`forgotten_marks`), so a carrier that never echoes cannot grow memory.
    Utterance id 0 is tracked like any other here; the caller decides what it reports."""

    __slots__ = (
        "forgotten_marks",
        "generation",
        "late_marks",
        "max_unacked",
        "prefix",
        "seq",
        "unknown_marks",
        "utts",
        "_outstanding",
    )

    def __init__(self, prefix: str, max_unacked: int) -> None:
        self.prefix = prefix
        self.max_unacked = max_unacked
        self.generation = 0
        """Bumped by every :meth:`clear`; mark names carry it."""
        self.seq = 0
        """Sequence number of the last chunk sent."""
        self.utts: dict[int, UtteranceProgress] = {}
        self._outstanding: deque[tuple[int, int, float]] = deque()  # (seq, utt, seconds)
        self.late_marks = 0
        """Echoes of marks sent before the last clear (ignored)."""
        self.unknown_marks = 0
        """Echoes whose name is not one of ours (ignored)."""
        self.forgotten_marks = 0
        """Chunks forgotten unacknowledged because more than ``max_unacked`` awaited an echo."""

    @property
    def unacknowledged(self) -> bool:
        """Whether some chunk sent awaits its echo."""
        return bool(self._outstanding)

    @property
    def oldest_utterance(self) -> int | None:
        """The utterance of the oldest chunk awaiting an echo (``None``: none awaits one)."""
        return self._outstanding[0][1] if self._outstanding else None

    def progress(self, utt: int) -> UtteranceProgress:
        """The progress of utterance ``utt``, tracked from now on if it was not."""
        u = self.utts.get(utt)
        if u is None:
            u = self.utts[utt] = UtteranceProgress()
        return u

    def next_chunk(self) -> str:
        """Number the chunk about to go out; returns the name of a mark that would follow it."""
        self.seq += 1
        return f"{self.prefix}{self.generation}.{self.seq}"

    def sent(self, utt: int, u: UtteranceProgress, seconds: float) -> None:
        """Record the chunk numbered by :meth:`next_chunk` (``seconds`` of utterance ``utt``)."""
        u.sent += seconds
        u.chunks_sent += 1
        self._outstanding.append((self.seq, utt, seconds))
        if len(self._outstanding) > self.max_unacked:
            self._outstanding.popleft()
            self.forgotten_marks += 1

    def ack(self, name: str) -> dict[int, tuple[UtteranceProgress, bool]]:
        """Take the echo of mark ``name``: every chunk up to it was played. Returns the
        utterances that advanced, each with whether this was its first acknowledged chunk; an
        unknown or late name changes nothing (counted)."""
        gen, seq = self._parse(name)
        if gen is None or seq is None:
            self.unknown_marks += 1
            return {}
        if gen != self.generation:
            self.late_marks += 1
            return {}
        touched: dict[int, tuple[UtteranceProgress, bool]] = {}
        out = self._outstanding
        while out and out[0][0] <= seq:
            _, utt, seconds = out.popleft()
            u = self.utts.get(utt)
            if u is not None:
                first = touched[utt][1] if utt in touched else not u.chunks_played
                u.played += seconds
                u.chunks_played += 1
                touched[utt] = (u, first)
        return touched

    def clear(self) -> tuple[int, dict[int, UtteranceProgress]]:
        """Forget everything sent and start a new generation. Returns the old generation and
        the utterances that were still tracked (each unfinished)."""
        utts, self.utts = self.utts, {}
        self._outstanding.clear()
        old = self.generation
        self.generation += 1
        return old, utts

    def _parse(self, name: str) -> tuple[int | None, int | None]:
        if not name.startswith(self.prefix):
            return None, None
        gen, _, seq = name[len(self.prefix) :].partition(".")
        if not (gen.isdigit() and seq.isdigit()):
            return None, None
        return int(gen), int(seq)
