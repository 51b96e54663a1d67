"""Speech and text: the caller's voice activity, transcripts and turns, the agent's words and
their timings, and the interruption that cuts the agent off (barge-in)."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from .base import Frame, Kind

__all__ = [
    "AgentText",
    "EndOfTurn",
    "Interrupt",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "SpeechStopped",
    "Transcript",
    "Word",
    "WordTimestamps",
]


class Word(msgspec.Struct, frozen=True):
    """A word with its start/end time in seconds (relative to its stream or utterance)."""

    text: str
    start: float
    end: float
    confidence: float | None = None


# ---------------------------------------------------------------- the caller


class SpeechStarted(Frame, frozen=True, kw_only=True):
    """Voice activity began at media time ``timestamp``."""

    kind: ClassVar[Kind] = Kind.CONTROL
    timestamp: float = 0.0
    capture_time: float = 0.0


class SpeechStopped(Frame, frozen=True, kw_only=True):
    """Voice activity ended at media time ``timestamp``."""

    kind: ClassVar[Kind] = Kind.CONTROL
    timestamp: float = 0.0
    capture_time: float = 0.0


class SpeechPaused(SpeechStopped, frozen=True, kw_only=True):
    """An early, provisional stop: the caller fell silent ``silence`` seconds ago, well before
    the VAD would say ``SpeechStopped`` (a VAD with ``pause`` set emits it). A subclass of
    ``SpeechStopped``, so an STT that finalizes on a stop finalizes here already; a
    ``SpeechResumed`` follows if voice comes back before the real ``SpeechStopped``."""

    silence: float = 0.0


class SpeechResumed(SpeechStarted, frozen=True, kw_only=True):
    """Voice came back after a ``SpeechPaused`` (a ``SpeechStarted`` for every consumer)."""


class Transcript(Frame, frozen=True, kw_only=True):
    """Speech-to-text output. ``is_final`` marks a settled segment; ``speech_final`` is the
    provider's end-of-utterance hint (e.g. Deepgram endpointing)."""

    kind: ClassVar[Kind] = Kind.MEDIA
    text: str
    is_final: bool = False
    speech_final: bool = False
    words: tuple[Word, ...] = ()
    start: float = 0.0
    end: float = 0.0
    confidence: float | None = None
    capture_time: float = 0.0


class EndOfTurn(Frame, frozen=True, kw_only=True):
    """The caller finished a turn; ``text`` is what they said."""

    kind: ClassVar[Kind] = Kind.CONTROL
    text: str = ""
    reason: str = ""
    capture_time: float = 0.0
    stt_final_time: float = 0.0


class Interrupt(Frame, frozen=True, kw_only=True):
    """Stop what is being said now (barge-in). ``utterance_id`` 0 means whatever is current."""

    kind: ClassVar[Kind] = Kind.CONTROL
    reason: str = "barge-in"
    utterance_id: int = 0
    capture_time: float = 0.0


# ----------------------------------------------------------------- the agent


class AgentText(Frame, frozen=True, kw_only=True):
    """A piece of the agent's reply for ``utterance_id``; ``last`` closes the utterance."""

    kind: ClassVar[Kind] = Kind.MEDIA
    text: str
    utterance_id: int = 0
    last: bool = False
    end_call: bool = False


class WordTimestamps(Frame, frozen=True, kw_only=True):
    """Word timings of agent speech for ``utterance_id``, in seconds from the start of that
    utterance's audio (from the TTS), so heard text can be derived from played audio. An event:
    ordered with the audio on its edge, never dropped, and allowed on feedback edges."""

    kind: ClassVar[Kind] = Kind.EVENT
    utterance_id: int
    words: tuple[Word, ...]
