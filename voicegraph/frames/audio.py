"""Audio and its playback: formats, audio frames, and the carrier's playback reports
(marks, clears, how much of an utterance was heard)."""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from .base import Frame, Kind

__all__ = [
    "AudioDone",
    "AudioFormat",
    "AudioFrame",
    "Clear",
    "Cleared",
    "Encoding",
    "MarkAck",
    "PlaybackMark",
    "PlayedPosition",
    "bytes_per_sample",
]

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


class AudioDone(Frame, frozen=True, kw_only=True):
    """No more audio follows for ``utterance_id`` (sent by a TTS or realtime node after the
    utterance's last audio frame), so playout can tell when the whole utterance was played."""

    kind: ClassVar[Kind] = Kind.MEDIA
    utterance_id: int


class PlaybackMark(Frame, frozen=True, kw_only=True):
    """Ask the carrier to echo ``name`` once everything sent before it has been played."""

    kind: ClassVar[Kind] = Kind.MEDIA
    name: str


class Clear(Frame, frozen=True, kw_only=True):
    """Tell the carrier to drop audio it has buffered but not yet played."""

    kind: ClassVar[Kind] = Kind.CONTROL
    generation: int = 0


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
