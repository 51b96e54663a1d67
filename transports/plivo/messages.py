"""Plivo Audio Streams wire messages as msgspec Structs (``event`` tag), both directions.

Plivo sends ``sequenceNumber``/``chunk`` as numbers and ``timestamp`` as a string of Unix epoch
ms; every one of them is accepted as either, because Plivo's doc generations disagree and
third-party parsers differ. ``bytes`` fields travel as base64.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "CheckpointOut",
    "ClearAudio",
    "ClearedAudio",
    "Dtmf",
    "DtmfBody",
    "Inbound",
    "Media",
    "MediaBody",
    "MediaFormat",
    "Outbound",
    "PlayAudio",
    "PlayAudioBody",
    "Played",
    "PlayedStream",
    "Start",
    "StartBody",
    "Stop",
]

Number = int | str


class _Event(msgspec.Struct, tag_field="event", omit_defaults=True):
    pass


# --------------------------------------------------------------------- Plivo -> us


class MediaFormat(msgspec.Struct):
    """``start.mediaFormat``: ``audio/x-mulaw`` or ``audio/x-l16`` (possibly with a ``;rate=``
    suffix -- tolerated), and the sample rate."""

    encoding: str
    sampleRate: int = 0


class StartBody(msgspec.Struct):
    callId: str
    streamId: str
    mediaFormat: MediaFormat
    accountId: str = ""
    tracks: list[str] = msgspec.field(default_factory=list)


class Start(_Event, tag="start"):
    """First message: identifiers, format and the ``extraHeaders`` of the ``<Stream>`` XML.

    ``extra_headers`` is documented as a ``k=v`` string; an object is accepted too."""

    start: StartBody
    sequenceNumber: Number = 0
    extra_headers: str | dict[str, str] = ""


class MediaBody(msgspec.Struct):
    payload: bytes
    track: str = "inbound"
    timestamp: Number = ""
    chunk: Number = 0


class Media(_Event, tag="media"):
    media: MediaBody
    sequenceNumber: Number = 0
    streamId: str = ""
    extra_headers: str | dict[str, str] = ""


class DtmfBody(msgspec.Struct):
    digit: str
    track: str = "inbound"
    timestamp: Number = ""


class Dtmf(_Event, tag="dtmf"):
    dtmf: DtmfBody
    sequenceNumber: Number = 0
    streamId: str = ""
    extra_headers: str | dict[str, str] = ""


class PlayedStream(_Event, tag="playedStream"):
    """Everything queued before checkpoint ``name`` has played."""

    name: str
    sequenceNumber: Number = 0
    streamId: str = ""


class Played(PlayedStream, tag="played"):
    """Older doc snippets' spelling of :class:`PlayedStream`."""


class ClearedAudio(_Event, tag="clearedAudio"):
    """Acknowledges our ``clearAudio``."""

    sequenceNumber: Number = 0
    streamId: str = ""


class Stop(_Event, tag="stop"):
    """Not in Plivo's current reference (the socket closing ends a stream) but mentioned by one
    guide: accepted as an end of stream."""

    sequenceNumber: Number = 0
    streamId: str = ""


Inbound = Start | Media | Dtmf | PlayedStream | Played | ClearedAudio | Stop

# --------------------------------------------------------------------- us -> Plivo


class PlayAudioBody(msgspec.Struct):
    contentType: str
    sampleRate: int
    payload: bytes


class PlayAudio(_Event, tag="playAudio"):
    """Audio for playback; its format must match the stream's ``contentType``."""

    media: PlayAudioBody
    # not required by Plivo's schema; harmless, and some integrations expect it
    streamId: str = ""


class CheckpointOut(_Event, tag="checkpoint"):
    """Ask for ``playedStream`` with ``name`` once everything queued before it has played."""

    streamId: str
    name: str


class ClearAudio(_Event, tag="clearAudio"):
    """Drop queued audio; pending checkpoints get no ack; Plivo answers ``clearedAudio``."""

    streamId: str


Outbound = PlayAudio | CheckpointOut | ClearAudio
