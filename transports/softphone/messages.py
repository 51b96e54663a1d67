"""Wire messages of the softphone protocol (see :mod:`voicegraph.transports.softphone`).

Text frames are JSON objects tagged by ``"type"``; audio travels in binary frames and has no
Struct here. Field names are camelCase, as the page's JavaScript writes them.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Clear",
    "ClearedIn",
    "DtmfIn",
    "EventOut",
    "HangupIn",
    "Inbound",
    "LatencyEvent",
    "MarkIn",
    "MarkOut",
    "Start",
    "Started",
    "TranscriptEvent",
]


class _In(msgspec.Struct, tag_field="type", forbid_unknown_fields=False, frozen=True):
    """Base of page -> server messages."""


class Start(_In, tag="start", frozen=True):
    """First message of a call: the page's audio format and the softphone token."""

    sampleRate: int
    token: str = ""
    encoding: str = "pcm16"


class MarkIn(_In, tag="mark", frozen=True):
    """A mark echoed by the page: ``played`` when playback reached it, ``False`` when a
    ``clear`` dropped the audio before it."""

    name: str
    played: bool = True


class ClearedIn(_In, tag="cleared", frozen=True):
    """The page stopped and dropped every scheduled chunk after a ``clear``."""


class DtmfIn(_In, tag="dtmf", frozen=True):
    """A keypad digit pressed on the page."""

    digit: str


class HangupIn(_In, tag="hangup", frozen=True):
    """The person ended the call."""


Inbound = Start | MarkIn | ClearedIn | DtmfIn | HangupIn


class _Out(msgspec.Struct, tag_field="type", frozen=True):
    """Base of server -> page messages."""


class Started(_Out, tag="started", frozen=True):
    """The call was accepted; ``sampleRate`` is the rate of the binary audio both ways."""

    callId: str
    sampleRate: int


class MarkOut(_Out, tag="mark", frozen=True):
    """Echo ``name`` back once the audio sent before it has been played."""

    name: str


class Clear(_Out, tag="clear", frozen=True):
    """Stop playback now and drop everything scheduled (barge-in)."""


class TranscriptEvent(msgspec.Struct, tag_field="kind", tag="transcript", frozen=True):
    """A line of the conversation: ``role`` is ``"caller"`` or ``"agent"``. Agent lines arrive
    in pieces (``final`` on the last piece of a reply)."""

    role: str
    text: str
    final: bool = True
    utterance: int = 0


class LatencyEvent(msgspec.Struct, tag_field="kind", tag="latency", frozen=True):
    """One turn's timeline in milliseconds from the end of the caller's speech
    (see :mod:`voicegraph.timeline` for the stages)."""

    turn: int
    ms: dict[str, float]


class EventOut(_Out, tag="event", frozen=True):
    """Something for the page to show (not needed for the call itself)."""

    event: TranscriptEvent | LatencyEvent
