"""G.711 µ-law codec: the C codec where the interpreter has it, numpy tables otherwise.

The encoder is the audioop-compatible variant of the reference algorithm (Sun ``g711.c``, as in
CPython's ``audioop.lin2ulaw``): the sample is first shifted to 14 bits (floor), then encoded
with the 16-bit algorithm. Results are byte-identical to ``audioop``, ``audioop-lts`` and
Pipecat; the plain 16-bit variant differs by one step for 381 negative inputs (see
``docs/audio.md``).

Which implementation runs: ``audioop`` (the standard library up to Python 3.12; the
``audioop-lts`` package, a dependency from 3.13 on) on little-endian hosts, about 0.1 µs per
20 ms frame; else the numpy lookup tables (one ``numpy.take`` per frame, about 1.3 µs), which
are also what :mod:`voicegraph.nodes.convert` indexes with sample arrays. Both give the same
bytes (``tests/test_g711.py`` checks each against the reference).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import numpy as np

from voicegraph.frames import AudioFormat, AudioFrame, Frame
from voicegraph.node import In, Out, Stage

from .pcm import check_audio

__all__ = [
    "MulawDecode",
    "MulawEncode",
    "ULAW_SILENCE",
    "pcm16_to_ulaw",
    "ulaw_to_pcm16",
]

ULAW_SILENCE = 0xFF
"""The µ-law code for silence (0xFF; 0x7F, "negative zero", also decodes to 0)."""

_BIAS = 0x84
_CLIP = 32635


def _build_decode_table() -> np.ndarray[Any, np.dtype[np.int16]]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -mag, mag).astype("<i2")


def _build_encode_table() -> np.ndarray[Any, np.dtype[np.uint8]]:
    # Index = the sample's 16 bits read as unsigned, so a PCM16 buffer viewed as uint16 indexes
    # the table directly.
    s = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    s = (s >> 2) << 2  # audioop: arithmetic shift to 14 bits first
    sign = np.where(s < 0, 0x80, 0x00)
    mag = np.minimum(np.abs(s), _CLIP) + _BIAS
    exponent = np.zeros_like(mag)
    top = mag >> 7  # 1..255 after biasing; exponent = index of its highest set bit
    for e in range(1, 8):
        exponent[top >= (1 << e)] = e
    mantissa = (mag >> (exponent + 3)) & 0x0F
    table: np.ndarray[Any, np.dtype[np.uint8]] = (
        ~(sign | (exponent << 4) | mantissa) & 0xFF
    ).astype(np.uint8)
    return table


_DECODE = _build_decode_table()
_ENCODE = _build_encode_table()


def numpy_decode(data: bytes) -> bytes:
    """µ-law → PCM16 LE by the numpy table (the fallback; no length check)."""
    return _DECODE.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def numpy_encode(data: bytes) -> bytes:
    """PCM16 LE → µ-law by the numpy table (the fallback; ``data`` of even length)."""
    return _ENCODE.take(np.frombuffer(data, dtype="<u2")).tobytes()


def _load_audioop() -> ModuleType | None:
    """The C codec module, or ``None`` where there is none (or it would give big-endian PCM)."""
    if sys.byteorder != "little":
        return None
    try:
        with warnings.catch_warnings():
            # 3.11/3.12 warn that audioop is deprecated (removed in 3.13, where audioop-lts
            # provides it): an implementation detail here, not the user's concern.
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
    except ImportError:
        return None
    return audioop


_AUDIOOP = _load_audioop()
C_CODEC = _AUDIOOP is not None
"""Whether the C codec (``audioop`` / ``audioop-lts``) is in use rather than the numpy tables."""

_decode: Callable[[bytes], bytes]
_encode: Callable[[bytes], bytes]
if _AUDIOOP is not None:
    _ulaw2lin, _lin2ulaw = _AUDIOOP.ulaw2lin, _AUDIOOP.lin2ulaw

    def _decode(data: bytes) -> bytes:
        return _ulaw2lin(data, 2)  # type: ignore[no-any-return]

    def _encode(data: bytes) -> bytes:
        return _lin2ulaw(data, 2)  # type: ignore[no-any-return]

else:
    _decode, _encode = numpy_decode, numpy_encode


def ulaw_to_pcm16(data: bytes) -> bytes:
    """Decode µ-law bytes to PCM16 LE bytes (two bytes out per byte in)."""
    return _decode(data)


def pcm16_to_ulaw(data: bytes) -> bytes:
    """Encode PCM16 LE bytes to µ-law bytes (audioop-compatible). Raises ``ValueError`` for an
    odd number of bytes."""
    if len(data) % 2:
        raise ValueError(f"PCM16 data of {len(data)} bytes has an odd length")
    return _encode(data)


class MulawDecode(Stage):
    """µ-law → PCM16 at the same rate (default 8 kHz). Other frame types pass through.

    Input ``"in"`` pins ``mulaw/<rate>``, output ``"out"`` pins ``pcm16/<rate>``. Stateless:
    latency 0. Raises :class:`~voicegraph.nodes.audio.pcm.AudioInputError` for audio in another
    format or empty frames."""

    def __init__(self, sample_rate: int = 8000) -> None:
        super().__init__()
        self.in_format = AudioFormat("mulaw", sample_rate)
        self.inputs = (In("in", format=self.in_format),)
        self.outputs = (Out("out", format=AudioFormat("pcm16", sample_rate)),)

    def process(self, port: str, frame: Frame) -> Frame | Iterable[Frame] | None:
        if type(frame) is not AudioFrame:
            return frame
        fmt = self.in_format
        if frame.encoding != "mulaw" or frame.sample_rate != fmt.sample_rate or not frame.data:
            check_audio(self.name or "MulawDecode", frame, fmt)  # raises, naming the problem
        return AudioFrame(
            data=_decode(frame.data),
            encoding="pcm16",
            sample_rate=frame.sample_rate,
            timestamp=frame.timestamp,
            capture_time=frame.capture_time,
            utterance_id=frame.utterance_id,
        )


class MulawEncode(Stage):
    """PCM16 → µ-law at the same rate (default 8 kHz). Other frame types pass through.

    Input ``"in"`` pins ``pcm16/<rate>``, output ``"out"`` pins ``mulaw/<rate>``. Stateless:
    latency 0. Raises :class:`~voicegraph.nodes.audio.pcm.AudioInputError` for audio in another
    format, empty frames or odd-length PCM."""

    def __init__(self, sample_rate: int = 8000) -> None:
        super().__init__()
        self.in_format = AudioFormat("pcm16", sample_rate)
        self.inputs = (In("in", format=self.in_format),)
        self.outputs = (Out("out", format=AudioFormat("mulaw", sample_rate)),)

    def process(self, port: str, frame: Frame) -> Frame | Iterable[Frame] | None:
        if type(frame) is not AudioFrame:
            return frame
        fmt, data = self.in_format, frame.data
        if (
            frame.encoding != "pcm16"
            or frame.sample_rate != fmt.sample_rate
            or not data
            or len(data) & 1
        ):
            check_audio(self.name or "MulawEncode", frame, fmt)  # raises, naming the problem
        return AudioFrame(
            data=_encode(data),
            encoding="mulaw",
            sample_rate=frame.sample_rate,
            timestamp=frame.timestamp,
            capture_time=frame.capture_time,
            utterance_id=frame.utterance_id,
        )
