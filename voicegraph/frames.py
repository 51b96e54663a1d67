"""Typed frames: the only values that travel over graph edges.

Frames are frozen ``msgspec.Struct`` s: cheap to build, hashable, and serialisable to msgpack or
JSON for recording and replay (:func:`encode_frame` / :func:`decode_frame`). The taxonomy is small
and closed per class: every class states its scheduling class once, in the class variable
``kind``:

* ``Kind.MEDIA`` -- ordered data (audio, transcripts, agent text, playback marks). Queued in the
  edge's media lane; may be dropped only on edges whose policy says so.
* ``Kind.CONTROL`` -- overtakes queued media (speech started/stopped, interrupt, clear, end of
  turn, hang-up, DTMF). Never dropped.
* ``Kind.EVENT`` -- facts and metrics (mark acknowledged, timeline marks, errors). Ordered with
  media on an edge, never dropped, and also publishable on the call's event bus.

Times: ``timestamp`` is media time in seconds from the start of the stream the frame belongs to;
``capture_time`` is ``time.monotonic()`` when the frame (or the audio it derives from) entered the
process. Both are floats in seconds.

User code may define further frame classes by subclassing :class:`Frame` (and setting ``kind``);
they take part in msgpack round trips automatically.
"""

from __future__ import annotations

import enum
import time
from typing import Any, ClassVar, Literal

import msgspec

__all__ = [
    "AgentText",
    "AnsweredBy",
    "AudioFormat",
    "AudioDone",
    "AudioFrame",
    "CallStatus",
    "Cleared",
    "Clear",
    "DTMF",
    "Delivered",
    "Encoding",
    "EndOfTurn",
    "ErrorEvent",
    "Frame",
    "Hangup",
    "Interrupt",
    "Kind",
    "MarkAck",
    "PlaybackMark",
    "PlayedPosition",
    "RecordingReady",
    "Say",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "SpeechStopped",
    "StreamStarted",
    "TimelineMark",
    "ToolCallRequest",
    "ToolCallResult",
    "Transcript",
    "Word",
    "WordTimestamps",
    "bytes_per_sample",
    "decode_frame",
    "encode_frame",
]


class Kind(enum.IntEnum):
    """Scheduling class of a frame type."""

    MEDIA = 0
    CONTROL = 1
    EVENT = 2


Encoding = Literal["pcm16", "mulaw"]
"""Audio encodings on edges: PCM16 little-endian mono, or G.711 µ-law (1 byte/sample)."""

_BYTES_PER_SAMPLE = {"pcm16": 2, "mulaw": 1}


def bytes_per_sample(encoding: str) -> int:
    """Bytes per sample of ``encoding`` (``"pcm16"`` -> 2, ``"mulaw"`` -> 1)."""
    try:
        return _BYTES_PER_SAMPLE[encoding]
    except KeyError:
        raise ValueError(
            f"unknown audio encoding {encoding!r}; use one of {sorted(_BYTES_PER_SAMPLE)}"
        ) from None


class AudioFormat(msgspec.Struct, frozen=True):
    """An audio format on a port: encoding and sample rate (mono)."""

    encoding: Encoding
    sample_rate: int

    def __str__(self) -> str:
        return f"{self.encoding}/{self.sample_rate}"

    def bytes_for(self, seconds: float) -> int:
        """Number of bytes holding ``seconds`` of audio in this format."""
        return int(round(self.sample_rate * seconds)) * bytes_per_sample(self.encoding)

    def duration_of(self, nbytes: int) -> float:
        """Seconds of audio in ``nbytes`` bytes of this format."""
        return nbytes / (bytes_per_sample(self.encoding) * self.sample_rate)


_registry: dict[str, type[Frame]] = {}


class Frame(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of every frame. Subclasses set ``kind`` (default ``Kind.MEDIA``)."""

    kind: ClassVar[Kind] = Kind.MEDIA

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _registry[cls.__name__] = cls
        global _decoder
        _decoder = None


# ---------------------------------------------------------------- media


class AudioFrame(Frame, frozen=True, kw_only=True):
    """Mono audio: PCM16 LE or µ-law bytes at ``sample_rate``.

    ``utterance_id`` ties agent audio to the agent utterance it speaks (0 for caller audio), so
    that playout can drop audio of an utterance that was interrupted.
    """

    kind: ClassVar[Kind] = Kind.MEDIA
    data: bytes
    encoding: Encoding = "pcm16"
    sample_rate: int = 8000
    timestamp: float = 0.0
    capture_time: float = 0.0
    utterance_id: int = 0

    @property
    def format(self) -> AudioFormat:
        return AudioFormat(self.encoding, self.sample_rate)

    @property
    def duration(self) -> float:
        """Seconds of audio in this frame."""
        return len(self.data) / (_BYTES_PER_SAMPLE[self.encoding] * self.sample_rate)


class Word(msgspec.Struct, frozen=True):
    """A word with its start/end time in seconds (relative to its stream or utterance)."""

    text: str
    start: float
    end: float
    confidence: float | None = None


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


class AudioDone(Frame, frozen=True, kw_only=True):
    """No more audio follows for ``utterance_id`` (sent by a TTS or realtime node after the
    utterance's last audio frame), so playout can tell when the whole utterance was played."""

    kind: ClassVar[Kind] = Kind.MEDIA
    utterance_id: int


class PlaybackMark(Frame, frozen=True, kw_only=True):
    """Ask the carrier to echo ``name`` once everything sent before it has been played."""

    kind: ClassVar[Kind] = Kind.MEDIA
    name: str


class ToolCallRequest(Frame, frozen=True, kw_only=True):
    """A model asks for a tool call (realtime mode)."""

    kind: ClassVar[Kind] = Kind.MEDIA
    call_id: str
    name: str
    arguments: str


class ToolCallResult(Frame, frozen=True, kw_only=True):
    """The output of a tool call, to be returned to the model."""

    kind: ClassVar[Kind] = Kind.MEDIA
    call_id: str
    output: str


# -------------------------------------------------------------- control


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


class Interrupt(Frame, frozen=True, kw_only=True):
    """Stop what is being said now (barge-in). ``utterance_id`` 0 means whatever is current."""

    kind: ClassVar[Kind] = Kind.CONTROL
    reason: str = "barge-in"
    utterance_id: int = 0
    capture_time: float = 0.0


class Say(Frame, frozen=True, kw_only=True):
    """Ask a node that produces its own speech (a realtime model) to say ``text`` once what it
    is saying now is over, as utterance ``utterance_id`` (0: a fresh id). A request, not
    media: the model speaks it, so it may travel on a feedback edge."""

    kind: ClassVar[Kind] = Kind.CONTROL
    text: str
    utterance_id: int = 0


class Clear(Frame, frozen=True, kw_only=True):
    """Tell the carrier to drop audio it has buffered but not yet played."""

    kind: ClassVar[Kind] = Kind.CONTROL
    generation: int = 0


class EndOfTurn(Frame, frozen=True, kw_only=True):
    """The caller finished a turn; ``text`` is what they said."""

    kind: ClassVar[Kind] = Kind.CONTROL
    text: str = ""
    reason: str = ""
    capture_time: float = 0.0
    stt_final_time: float = 0.0


class Hangup(Frame, frozen=True, kw_only=True):
    """End the call (sent by the agent or runtime; emitted by a transport when the caller left)."""

    kind: ClassVar[Kind] = Kind.CONTROL
    reason: str = ""


class DTMF(Frame, frozen=True, kw_only=True):
    """A keypad digit from the caller (0-9, *, #, A-D)."""

    kind: ClassVar[Kind] = Kind.CONTROL
    digit: str
    timestamp: float = 0.0


# --------------------------------------------------------------- events


class StreamStarted(Frame, frozen=True, kw_only=True):
    """A carrier stream began: identifiers and the custom parameters it carried."""

    kind: ClassVar[Kind] = Kind.EVENT
    stream_id: str
    call_sid: str = ""
    from_number: str = ""
    to_number: str = ""
    encoding: Encoding = "mulaw"
    sample_rate: int = 8000
    params: tuple[tuple[str, str], ...] = ()


class MarkAck(Frame, frozen=True, kw_only=True):
    """The carrier reports that playback reached the mark ``name``."""

    kind: ClassVar[Kind] = Kind.EVENT
    name: str


class Cleared(Frame, frozen=True, kw_only=True):
    """The carrier confirmed a clear (Plivo ``clearedAudio``)."""

    kind: ClassVar[Kind] = Kind.EVENT


class PlayedPosition(Frame, frozen=True, kw_only=True):
    """How much of an utterance the caller heard: seconds acknowledged by the carrier.

    ``complete`` is true when the whole utterance was played; false after an interruption."""

    kind: ClassVar[Kind] = Kind.EVENT
    utterance_id: int
    played: float
    sent: float
    generation: int = 0
    complete: bool = False


class Delivered(Frame, frozen=True, kw_only=True):
    """Downstream confirms that the frame tagged ``ref`` was delivered (see polite end)."""

    kind: ClassVar[Kind] = Kind.EVENT
    ref: str


class TimelineMark(Frame, frozen=True, kw_only=True):
    """One point of a turn's latency timeline (``stage`` e.g. ``"stt_final"``)."""

    kind: ClassVar[Kind] = Kind.EVENT
    turn: int
    stage: str
    time: float = msgspec.field(default_factory=time.monotonic)


class ErrorEvent(Frame, frozen=True, kw_only=True):
    """A node reports an error (fatal or not) with its name."""

    kind: ClassVar[Kind] = Kind.EVENT
    node: str
    message: str
    fatal: bool = False


# ------------------------------------------------------- the call as a whole


class AnsweredBy(Frame, frozen=True, kw_only=True):
    """Who answered an outbound call, as the carrier's machine detection says.

    ``result``: ``"human"``, ``"machine"`` or ``"unknown"``; ``detail``: the carrier's own
    word (Twilio ``machine_end_beep``, Plivo ``true``...); ``greeting_over``: the carrier
    already waited for the end of the machine's greeting (Twilio's ``machine_end_*``), so a
    message can be left at once."""

    kind: ClassVar[Kind] = Kind.CONTROL
    result: Literal["human", "machine", "unknown"]
    detail: str = ""
    greeting_over: bool = False


class CallStatus(Frame, frozen=True, kw_only=True):
    """A call-progress report from the carrier's status callback.

    ``status``: ``initiated``, ``ringing``, ``answered``, ``completed``, ``busy``,
    ``no-answer``, ``failed`` or ``canceled`` (the last five are final); ``duration``: seconds
    the call was connected (final statuses), ``carrier_status`` the carrier's own word,
    ``at``: ``time.time()`` when it arrived."""

    kind: ClassVar[Kind] = Kind.EVENT
    call_id: str
    status: str
    duration: float | None = None
    carrier_status: str = ""
    reason: str = ""
    at: float = msgspec.field(default_factory=time.time)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


class RecordingReady(Frame, frozen=True, kw_only=True):
    """A recording of the call is available: the carrier's URL (``carrier=True``) or the path
    the recorder node wrote (``carrier=False``; empty when it went to a callback)."""

    kind: ClassVar[Kind] = Kind.EVENT
    call_id: str
    url: str
    duration: float = 0.0
    carrier: bool = True


# ------------------------------------------------------------ recording

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Any] | None = None


def encode_frame(frame: Frame) -> bytes:
    """Serialise a frame to msgpack (the class name is the tag)."""
    return _encoder.encode(frame)


def decode_frame(data: bytes) -> Frame:
    """Decode msgpack written by :func:`encode_frame` back into the same frame class.

    Raises ``msgspec.ValidationError`` for unknown frame types or malformed fields."""
    global _decoder
    if _decoder is None:
        union = tuple(_registry.values())
        _decoder = msgspec.msgpack.Decoder(union[0] if len(union) == 1 else _union(union))
    return _decoder.decode(data)  # type: ignore[no-any-return]


def _union(types: tuple[type, ...]) -> Any:
    from functools import reduce
    from operator import or_

    return reduce(or_, types)
