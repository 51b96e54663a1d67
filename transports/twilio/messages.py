"""Twilio wire messages as msgspec Structs: Media Streams (``event`` tag) and ConversationRelay
(``type`` tag), both directions.

Inbound unions (:data:`MediaInbound`, :data:`RelayInbound`) are what Twilio sends us; outbound
ones are what we send. The simulated callers in :mod:`voicegraph.testing` use the same structs
from the other side. ``bytes`` fields travel as base64 (msgspec validates it in C).
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Clear",
    "Connected",
    "Dtmf",
    "DtmfBody",
    "Mark",
    "MarkBody",
    "Media",
    "MediaBody",
    "MediaFormat",
    "MediaInbound",
    "MediaOutbound",
    "OutMedia",
    "OutMediaBody",
    "RelayDtmf",
    "RelayEnd",
    "RelayError",
    "RelayInbound",
    "RelayInterrupt",
    "RelayLanguage",
    "RelayOutbound",
    "RelayPlay",
    "RelayPrompt",
    "RelaySendDigits",
    "RelaySetup",
    "RelayText",
    "Start",
    "StartBody",
    "Stop",
    "StopBody",
]

# Twilio documents sequenceNumber/chunk/timestamp as JSON strings; numbers are accepted too
# because it costs nothing and proxies and older fakes send them.
Counter = str | int


class _Event(msgspec.Struct, tag_field="event", omit_defaults=True):
    pass


class _Type(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


# ------------------------------------------------------------ Media Streams, Twilio -> us


class MediaFormat(msgspec.Struct):
    """``start.mediaFormat``: always ``audio/x-mulaw``, 8000, 1 on Media Streams."""

    encoding: str
    sampleRate: int
    channels: int = 1


class StartBody(msgspec.Struct):
    """The ``start`` object: identifiers, tracks, custom parameters, media format."""

    streamSid: str
    mediaFormat: MediaFormat
    accountSid: str = ""
    callSid: str = ""
    tracks: list[str] = msgspec.field(default_factory=list)
    customParameters: dict[str, str] = msgspec.field(default_factory=dict)


class MediaBody(msgspec.Struct):
    """One inbound audio chunk; ``timestamp`` is ms since stream start."""

    payload: bytes
    track: str = "inbound"
    chunk: Counter = ""
    timestamp: Counter = ""


class DtmfBody(msgspec.Struct):
    digit: str
    track: str = "inbound_track"


class MarkBody(msgspec.Struct):
    name: str


class StopBody(msgspec.Struct):
    accountSid: str = ""
    callSid: str = ""


class Connected(_Event, tag="connected", omit_defaults=False):
    """First message of a stream (encoded with every field, as Twilio sends it)."""

    protocol: str = "Call"
    version: str = "1.0.0"


class Start(_Event, tag="start"):
    start: StartBody
    sequenceNumber: Counter = ""
    streamSid: str = ""


class Media(_Event, tag="media"):
    """Inbound caller audio (we send :class:`OutMedia`, which has fewer fields)."""

    media: MediaBody
    sequenceNumber: Counter = ""
    streamSid: str = ""


class Dtmf(_Event, tag="dtmf"):
    dtmf: DtmfBody
    sequenceNumber: Counter = ""
    streamSid: str = ""


class Mark(_Event, tag="mark"):
    """A mark: sent by us, echoed by Twilio once played (or cleared)."""

    mark: MarkBody
    streamSid: str = ""
    sequenceNumber: Counter = ""


class Stop(_Event, tag="stop"):
    stop: StopBody = msgspec.field(default_factory=StopBody)
    sequenceNumber: Counter = ""
    streamSid: str = ""


MediaInbound = Connected | Start | Media | Dtmf | Mark | Stop

# ------------------------------------------------------------ Media Streams, us -> Twilio


class OutMediaBody(msgspec.Struct):
    payload: bytes


class OutMedia(_Event, tag="media"):
    """Audio for playback: raw µ-law 8 kHz, base64 on the wire."""

    streamSid: str
    media: OutMediaBody


class Clear(_Event, tag="clear"):
    """Drop all audio queued for playback (Twilio echoes pending marks)."""

    streamSid: str


MediaOutbound = OutMedia | Mark | Clear

# ---------------------------------------------------------- ConversationRelay, Twilio -> us


class RelaySetup(_Type, tag="setup"):
    """First relay message: the call's identifiers and ``customParameters``."""

    sessionId: str = ""
    accountSid: str = ""
    parentCallSid: str = ""
    callSid: str = ""
    # ``from`` is a keyword in Python; rename keeps the wire name
    from_: str = msgspec.field(default="", name="from")
    to: str = ""
    forwardedFrom: str = ""
    callType: str = ""
    callerName: str = ""
    direction: str = ""
    callStatus: str = ""
    customParameters: dict[str, str] = msgspec.field(default_factory=dict)


class RelayPrompt(_Type, tag="prompt"):
    """Caller speech; ``last=False`` means more fragments of the same turn follow."""

    voicePrompt: str
    lang: str = ""
    last: bool = True


class RelayDtmf(_Type, tag="dtmf"):
    digit: str


class RelayInterrupt(_Type, tag="interrupt"):
    """The caller barged in after hearing ``utteranceUntilInterrupt``."""

    utteranceUntilInterrupt: str = ""
    # seen as a non-integer in the wild: parse as a number
    durationUntilInterruptMs: float = 0.0


class RelayError(_Type, tag="error"):
    description: str = ""


RelayInbound = RelaySetup | RelayPrompt | RelayDtmf | RelayInterrupt | RelayError

# ---------------------------------------------------------- ConversationRelay, us -> Twilio


class RelayText(_Type, tag="text"):
    """One token of agent text for Twilio's TTS; ``last`` ends the talk cycle."""

    token: str
    last: bool  # always written: the talk cycle's end must be explicit
    lang: str | None = None
    interruptible: bool | None = None
    preemptible: bool | None = None


class RelayPlay(_Type, tag="play"):
    source: str
    loop: int = 1
    preemptible: bool | None = None
    interruptible: bool | None = None


class RelaySendDigits(_Type, tag="sendDigits"):
    digits: str


class RelayLanguage(_Type, tag="language"):
    ttsLanguage: str | None = None
    transcriptionLanguage: str | None = None


class RelayEnd(_Type, tag="end"):
    """End the session; ``handoffData`` (a string) goes to the ``<Connect action>`` request."""

    handoffData: str | None = None


RelayOutbound = RelayText | RelayPlay | RelaySendDigits | RelayLanguage | RelayEnd
