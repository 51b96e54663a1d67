"""Cut streamed text into speakable phrases as soon as each is complete.

A TTS that waits for the whole reply before speaking adds the reply's generation time to the
caller's wait. Cutting at sentence ends (and at clause ends once a phrase is long enough) lets
the first phrase be synthesised while the rest is still being written.
"""

from __future__ import annotations

import re

__all__ = ["PhraseSplitter"]

# A sentence ends at . ! ? or an ellipsis (with closing quotes/brackets) followed by whitespace:
# "3.5" and "e.g.x" do not end one, and a delta ending in "." waits for the next character.
_SENTENCE = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s|\n")
_CLAUSE = re.compile(r"[,;:\u2014]\s")


class PhraseSplitter:
    """Accumulates text deltas of one utterance and returns the phrases that are complete.

    ``max_chars``: a phrase without punctuation is cut at the last space before this length, so
    one phrase never grows without bound. ``min_clause_chars``: commas, semicolons and colons
    end a phrase only once it is at least this long (short clauses sound choppy alone)."""

    __slots__ = ("_buf", "max_chars", "min_clause_chars")

    def __init__(self, max_chars: int = 250, min_clause_chars: int = 40) -> None:
        if max_chars < 1 or min_clause_chars < 0:
            raise ValueError("max_chars must be >= 1 and min_clause_chars >= 0")
        self.max_chars = max_chars
        self.min_clause_chars = min_clause_chars
        self._buf = ""

    @property
    def pending(self) -> int:
        """Characters held back, waiting for a phrase boundary."""
        return len(self._buf)

    def feed(self, text: str) -> list[str]:
        """Add ``text``; return the phrases it completed (possibly none), in order."""
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._boundary()
            if cut is None:
                break
            phrase, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if phrase:
                out.append(phrase)
        return out

    def flush(self) -> str:
        """Return whatever is left (the utterance ended) and reset."""
        rest, self._buf = self._buf.strip(), ""
        return rest

    def _boundary(self) -> int | None:
        buf, limit = self._buf, self.max_chars
        best: int | None = None
        m = _SENTENCE.search(buf, 0, limit + 1)
        if m is not None:
            best = m.end()
        for c in _CLAUSE.finditer(buf, 0, best if best is not None else limit + 1):
            if c.end() >= self.min_clause_chars:
                best = c.end()
                break
        if best is None and len(buf) > limit:
            space = buf.rfind(" ", 0, limit)
            best = space + 1 if space > 0 else limit
        return best
